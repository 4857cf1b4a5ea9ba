"""Puzzle-AE (Lecture 5): the shortcut-removing perturbation, the U-Net, the
scoring over permutations and the detector."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from anomaly_edu import puzzle_ae
from anomaly_edu.attacks import per_example_mse
from anomaly_edu.profiles import get_profile
from anomaly_edu.puzzle_ae import (
    DISCRIMINATOR_LR,
    PuzzleAEDetector,
    aggregate,
    permutation_errors,
    puzzle_gan_loss,
    puzzle_input,
    puzzle_loss,
    zoomed_copies,
)
from anomaly_edu.puzzle_networks import CourseDiscriminator, Discriminator, PuzzleGAN, UNet, upsample_to
from anomaly_edu.puzzles import apply_permutation, puzzle_permutations, swap_permutations
from anomaly_edu.shortcut import (
    permutation_accuracy,
    published_shortcut_perturbation,
    remove_shortcut,
    seam_band,
)

TINY = dict(widths=(2, 4), epochs=1, batch_size=8, val_size=4, progress=False, device="cpu")


def images(n=16, seed=0, channels=1, size=28):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ the shortcut-removing perturbation


def test_the_perturbation_stays_within_eps_and_never_touches_the_target():
    torch.manual_seed(0)
    unet = UNet(widths=(4, 8))
    x = images(8)
    target = x.clone()
    puzzled = apply_permutation(x, puzzle_permutations(2)[5], 2)
    perturbed = remove_shortcut(unet, puzzled, target, eps=0.1)
    assert torch.equal(target, x), "the clean target must never be modified"
    assert (perturbed - puzzled).abs().max() <= 0.1 + 1e-6, "the random start is counted once: at most eps"
    assert perturbed.min() >= 0 and perturbed.max() <= 1
    assert (perturbed - puzzled).abs().max() > 0.05


def test_the_published_codes_double_random_start_would_exceed_eps():
    """The plausible wrong answer: a random start, then a step of eps with no
    projection, can move a pixel by up to 2 eps. Ours never does."""
    torch.manual_seed(0)
    x = images(8)
    start = x + torch.empty_like(x).uniform_(-0.1, 0.1)
    buggy = (start + 0.1 * torch.sign(torch.randn_like(x))).clamp(0, 1)
    assert (buggy - x).abs().max() > 0.15
    ours = remove_shortcut(UNet(widths=(4, 8)), x, x, eps=0.1)
    assert (ours - x).abs().max() <= 0.1 + 1e-6


def test_the_perturbation_raises_the_reconstruction_loss_over_its_random_start():
    torch.manual_seed(0)
    unet = UNet(widths=(4, 8))
    x = images(32)
    losses = []
    for _ in range(5):
        torch.manual_seed(1)
        perturbed = remove_shortcut(unet, x, x, eps=0.1)
        torch.manual_seed(1)
        random_only = (x + torch.empty_like(x).uniform_(-0.1, 0.1)).clamp(0, 1)
        with torch.no_grad():
            losses.append((per_example_mse(unet(perturbed), x).mean(), per_example_mse(unet(random_only), x).mean()))
    assert all(attacked > random for attacked, random in losses)


def test_the_published_perturbation_reaches_twice_eps_and_never_sees_the_target():
    """The authors' code: a random start, then a step of eps added on top of it
    (up to 2 eps), aimed at the noisy input itself rather than the clean image."""
    unet = UNet(widths=(4, 8))
    puzzled = apply_permutation(images(16), puzzle_permutations(2)[5], 2)
    torch.manual_seed(3)
    perturbed = published_shortcut_perturbation(unet, puzzled, images(16), eps=0.1)
    moved = (perturbed - puzzled).abs()
    assert moved.max() > 0.15 and moved.max() <= 0.2 + 1e-6
    inside = (puzzled > 0.2) & (puzzled < 0.8)  # pixels that no clipping to [0, 1] touches
    assert moved[inside].mean() == pytest.approx(0.1, abs=0.02), "on average about eps"
    assert (moved[inside] > 0.1 + 1e-6).float().mean() > 0.2, "a good share of pixels beyond eps"
    assert perturbed.min() >= 0 and perturbed.max() <= 1
    # remove_shortcut's clean target changes its step; the published one never reads its target
    another_target = images(16, seed=1)
    torch.manual_seed(3)
    again = published_shortcut_perturbation(unet, puzzled, another_target, eps=0.1)
    torch.testing.assert_close(again, perturbed)
    torch.manual_seed(3)
    course = remove_shortcut(unet, puzzled, images(16), eps=0.1)
    assert (course - puzzled).abs().max() <= 0.1 + 1e-6


def test_the_published_perturbation_steps_along_the_gradient_of_its_own_noisy_input():
    """Against a hand computation: with the start drawn from the same seed, the
    step is eps times the sign of the gradient of |U(x0) - (x + d0)|^2 at x0."""
    unet = UNet(widths=(4, 8))
    x = 0.2 + 0.6 * images(4)  # no pixel near 0 or 1: no clipping
    eps = 0.05
    torch.manual_seed(7)
    perturbed = published_shortcut_perturbation(unet, x, x, eps=eps)
    torch.manual_seed(7)
    start = torch.empty_like(x).uniform_(-eps, eps)
    x0 = (x + start).requires_grad_(True)
    ((unet(x0) - (x + start)) ** 2).sum().backward()
    expected = x + start + (start + 2.0 * x0.grad.sign()).clamp(-eps, eps)
    torch.testing.assert_close(perturbed, expected)


def test_the_seam_band_marks_the_rows_and_columns_beside_each_seam():
    band = seam_band((1, 28, 28), grid=2, width=1)
    assert band[13].all() and band[14].all() and band[:, 13].all() and band[:, 14].all()
    assert band.sum() == 2 * 2 * 28 - 4
    assert band[0, 0] == 0 and band[12, 12] == 0
    with pytest.raises(ValueError, match="width must be between 1 and half a tile"):
        seam_band((1, 28, 28), grid=2, width=8)


# ------------------------------------------------------------------ the networks


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 64), (1, 27)])
def test_the_unet_gives_an_image_of_its_inputs_shape(channels, size):
    unet = UNet(channels=channels, widths=(4, 8, 16, 16, 16))
    assert unet(torch.rand(2, channels, size, size)).shape == (2, channels, size, size)


def test_the_unet_has_the_published_widths_by_default_and_no_batch_norm():
    unet = UNet()
    assert unet.widths == (64, 128, 256, 512, 512)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in unet.modules())
    assert unet.down[0][0].kernel_size == (3, 3) and unet.out.kernel_size == (1, 1)


def n_weights(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_unet_has_as_many_weights_as_the_authors_at_their_widths():
    # counted on the Puzzle-AE code's models/Unet.py (e08befb), bilinear, one channel in and out
    assert n_weights(UNet()) == 17_257_409
    assert n_weights(UNet(widths=(16, 32, 64, 128, 128))) == 1_079_537


def test_the_courses_earlier_networks_stay_as_a_named_build_for_the_stored_models():
    course = UNet(build="course")  # the up blocks narrow at their first convolution: fewer weights
    assert n_weights(course) == 13_386_241
    assert [block[0].out_channels for block in course.up] == [256, 128, 64, 64]
    assert course(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    p, features = CourseDiscriminator(size=28)(torch.rand(3, 1, 28, 28))
    assert p.shape == (3,) and features.shape == (3, 128 * 3 * 3)
    detector = PuzzleAEDetector(variant="cpae-g", networks="course", **TINY)
    model = detector.new_model((1, 28, 28))
    assert model.unet.build == "course" and isinstance(model.discriminator, CourseDiscriminator)
    assert get_profile("quick")["puzzle-ae"]["networks"] == "course"
    assert get_profile("full")["puzzle-ae"]["networks"] == "published"
    with pytest.raises(ValueError, match="unknown networks 'theirs'; choose 'published'"):
        PuzzleAEDetector(networks="theirs")


def test_each_unet_block_going_up_halves_the_concatenated_width_first():
    unet = UNet()  # their up1 to up4: Up(1024, 256), Up(512, 128), Up(256, 64), Up(128, 64)
    shapes = [(block[0].in_channels, block[0].out_channels, block[2].out_channels) for block in unet.up]
    assert shapes == [(1024, 512, 256), (512, 256, 128), (256, 128, 64), (128, 64, 64)]


def test_upsampling_doubles_with_aligned_corners_then_pads_the_right_and_bottom():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    up = upsample_to(x, torch.zeros(1, 1, 5, 5))
    # x2 with align_corners=True keeps the corners exactly: 0, 1/3, 2/3, 1 of the way
    expected = torch.tensor([[0.0, 1 / 3, 2 / 3, 1.0], [2 / 3, 1.0, 4 / 3, 5 / 3], [4 / 3, 5 / 3, 2.0, 7 / 3]])
    expected = torch.cat([expected, torch.tensor([[2.0, 7 / 3, 8 / 3, 3.0]])])
    torch.testing.assert_close(up[0, 0, :4, :4], expected)
    assert up.shape == (1, 1, 5, 5) and (up[0, 0, 4] == 0).all() and (up[0, 0, :, 4] == 0).all()


def test_the_channels_last_unet_gives_the_same_image_and_gradients():
    torch.manual_seed(0)
    plain = UNet(widths=(8, 16, 32, 32, 32), channels_last=False)
    fast = UNet(widths=(8, 16, 32, 32, 32), channels_last=True)
    fast.load_state_dict(plain.state_dict())
    x = torch.rand(4, 1, 28, 28)
    losses = [torch.nn.functional.mse_loss(net(x), x) for net in (plain, fast)]
    for loss in losses:
        loss.backward()
    torch.testing.assert_close(losses[0], losses[1], atol=1e-6, rtol=1e-5)
    for p_plain, p_fast in zip(plain.parameters(), fast.parameters()):
        torch.testing.assert_close(p_plain.grad, p_fast.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "channels,size,widths,last_kernel",
    [(1, 28, [64, 128, 256], 3), (3, 32, [64, 128, 256], 4), (1, 128, [64, 128, 256, 512, 1024], 4)],
)
def test_the_discriminator_is_the_dcgan_encoder_of_the_authors(channels, size, widths, last_kernel):
    torch.manual_seed(0)
    discriminator = Discriminator(channels=channels, size=size)
    convs = [m for m in discriminator.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == widths and all(c.bias is None for c in convs)
    assert not isinstance(discriminator.features[1], torch.nn.BatchNorm2d)  # none after the first layer
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in discriminator.features) == len(widths) - 1
    assert discriminator.classify.kernel_size == (last_kernel, last_kernel)
    p, features = discriminator(torch.rand(4, channels, size, size))
    assert p.shape == (4,) and ((p > 0) & (p < 1)).all()
    assert features.shape == (4, widths[-1], last_kernel, last_kernel)
    # DCGAN's initialisation: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales, zero shifts
    weights = torch.cat([c.weight.flatten() for c in convs])
    assert abs(weights.mean()) < 0.002 and 0.018 < weights.std() < 0.022
    norms = [m for m in discriminator.features if isinstance(m, torch.nn.BatchNorm2d)]
    assert all((m.bias == 0).all() and abs(m.weight.mean() - 1) < 0.01 for m in norms)


def test_cpae_g_reports_the_reconstruction_error_the_schedule_watches_and_trains_both_networks():
    torch.manual_seed(0)
    model = PuzzleGAN(UNet(widths=(4, 8)), Discriminator(size=28))
    x = images(8)
    with torch.no_grad():  # the puzzle and tile that the loss will draw from the same random state
        torch.manual_seed(0)
        x_in = puzzle_input(model.unet, x, puzzle_permutations(2), grid=2, colour=True, eps=0.0)
    torch.manual_seed(0)
    loss = puzzle_gan_loss(grid=2, perms=puzzle_permutations(2), eps=0.0)(model, x)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(model.unet(x_in), x))
    loss.backward()
    assert all(p.grad is not None for p in model.unet.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.discriminator.parameters())


def test_the_training_input_is_puzzled_and_leaves_x_alone():
    torch.manual_seed(0)
    x = images(4)
    before = x.clone()
    x_in = puzzle_input(UNet(widths=(2, 4)), x, puzzle_permutations(2), grid=2, colour=True, eps=0.0)
    assert torch.equal(x, before)
    candidates = [apply_permutation(x, p, 2) for p in puzzle_permutations(2)]
    # one tile zeroed, everything else one of the 23 puzzles
    assert any(((x_in == c) | (x_in == 0)).all() for c in candidates)


# ------------------------------------------------------------------ scoring


def test_permutation_errors_equal_a_plain_loop_over_permutations():
    torch.manual_seed(0)
    unet = UNet(widths=(2, 4)).eval()
    x = images(10)
    perms = puzzle_permutations(2)
    batched = permutation_errors(unet, x, perms, 2, images_per_pass=46)  # two images per pass
    with torch.no_grad():
        looped = torch.stack([per_example_mse(unet(apply_permutation(x, p, 2)), x) for p in perms], dim=1)
    assert batched.shape == (10, 23)
    torch.testing.assert_close(batched, looped)


def test_aggregations_have_their_known_answers():
    errors = torch.tensor([[1.0, 2.0, 6.0], [3.0, 3.0, 3.0]])
    assert aggregate(errors, "avg").tolist() == [3.0, 3.0]
    assert aggregate(errors, "max").tolist() == [6.0, 3.0]
    assert aggregate(errors, "min").tolist() == [1.0, 3.0]
    with pytest.raises(ValueError, match="unknown aggregation 'median'; choose one of avg, max, min"):
        aggregate(errors, "median")


# ------------------------------------------------------------------ the detector


def test_the_normalisers_make_every_puzzle_average_one_on_the_validation_images():
    x, x_val = images(24), images(12, seed=1)
    detector = PuzzleAEDetector(**TINY).fit(x, x_val=x_val)
    per_puzzle = detector.permutation_scores(x_val).mean(0)
    torch.testing.assert_close(per_puzzle, torch.ones(23), rtol=1e-4, atol=1e-4)
    assert detector.anomaly_score(x_val).mean() == pytest.approx(1.0, abs=1e-4)


def test_score_takes_another_aggregation_without_refitting():
    x = images(24)
    detector = PuzzleAEDetector(**TINY).fit(x)
    per_puzzle = detector.permutation_scores(x[:5])
    np.testing.assert_allclose(detector.anomaly_score(x[:5], "max"), per_puzzle.amax(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(detector.anomaly_score(x[:5]), per_puzzle.mean(1).numpy(), rtol=1e-6)


@pytest.mark.parametrize("variant", ["pae", "cpae", "cpae-g"])
def test_every_variant_trains_and_scores(variant):
    detector = PuzzleAEDetector(variant=variant, **TINY).fit(images(24, channels=3, size=32))
    scores = detector.anomaly_score(images(6, seed=2, channels=3, size=32))
    assert scores.shape == (6,) and np.isfinite(scores).all()
    assert isinstance(detector.model_, PuzzleGAN) == (variant == "cpae-g")


def test_textures_train_on_swaps_and_are_scored_with_every_puzzle_as_published():
    published = PuzzleAEDetector(puzzles="swaps", **TINY).fit(images(24))
    assert torch.equal(published.training_permutations(), swap_permutations(2))
    assert published.permutation_scores(images(3)).shape == (3, 23)
    trained_only = PuzzleAEDetector(puzzles="swaps", score_puzzles="trained", **TINY).fit(images(24))
    assert trained_only.permutation_scores(images(3)).shape == (3, 6)


def test_zoomed_copies_zoom_about_the_centre_within_the_published_range():
    x = torch.zeros(1, 1, 64, 64)
    x[..., 16:48, 16:48] = 1.0  # a centred square, half the width of the image
    copies = zoomed_copies(x, 5, seed=0)
    assert copies.shape == (5, 1, 64, 64)
    widths = (copies[:, 0, 32] > 0.5).sum(1).float()  # the square's width along the middle row
    assert ((widths >= 32 * 1.05 - 2) & (widths <= 32 * 1.2 + 2)).all(), widths
    assert len(set(widths.tolist())) > 1, "each copy draws its own zoom"
    torch.testing.assert_close(copies[:, :, 32, 32], torch.ones(5, 1)), "the centre stays put"
    torch.testing.assert_close(zoomed_copies(x, 5, seed=0), copies)


def test_zoomed_copies_are_added_to_the_training_images(monkeypatch):
    trained_on = []

    def recording_train(model, x, *args, **kwargs):
        trained_on.append(x)
        return real_train(model, x, *args, **kwargs)

    real_train = puzzle_ae.train
    monkeypatch.setattr(puzzle_ae, "train", recording_train)
    x = images(24)
    PuzzleAEDetector(zoomed_copies=3, **TINY).fit(x)
    assert len(trained_on[0]) == 4 * (24 - 4), "the 20 training images (4 are held out) and 3 zoomed copies"
    originals, copies = trained_on[0][:20], trained_on[0][20:]
    held_out = PuzzleAEDetector(**TINY)._hold_out(x)[1]
    assert not any(torch.equal(image, h) for image in originals for h in held_out)
    torch.testing.assert_close(copies, zoomed_copies(originals, 3, seed=0))


def test_the_schedule_is_the_published_one_and_spares_the_discriminator():
    detector = PuzzleAEDetector(variant="cpae-g", lr_factor=0.5, lr_patience=2, **TINY)
    optimizer = detector._optimizer(detector.new_model((1, 28, 28)))
    scheduler = detector._scheduler(optimizer)
    for loss in [1.0, 1.0, 1.0]:  # two epochs without progress: still patient
        scheduler.step(loss)
    assert [group["lr"] for group in optimizer.param_groups] == [detector.lr, DISCRIMINATOR_LR]
    scheduler.step(1.0)  # the third: the U-Net's rate halves, the discriminator's never changes
    assert [group["lr"] for group in optimizer.param_groups] == [detector.lr * 0.5, DISCRIMINATOR_LR]
    mnist, medical = get_profile("full", "mnist")["puzzle-ae"], get_profile("full", "medical")["puzzle-ae"]
    assert (mnist["lr_factor"], mnist["lr_patience"]) == (0.5, 30)
    assert (medical["lr_factor"], medical["lr_patience"]) == (0.8, 50)


def test_the_full_profile_trains_the_published_method():
    full = get_profile("full", "mvtec")["puzzle-ae"]
    assert (full["variant"], full["shortcut"], full["zoomed_copies"], full["score_puzzles"]) == (
        "cpae-g",
        "published",
        3,
        "all",
    )
    # the code's batches: 64 on MNIST, 8 on MVTec and medical images (the quick profile uses 16)
    assert get_profile("full", "mnist")["puzzle-ae"]["batch_size"] == 64
    assert full["batch_size"] == 8 and get_profile("quick", "mnist")["puzzle-ae"]["batch_size"] == 16


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown Puzzle-AE variant 'cpae-x'; choose one of pae, cpae, cpae-g"):
        PuzzleAEDetector(variant="cpae-x")
    with pytest.raises(ValueError, match="unknown aggregation 'mean'"):
        PuzzleAEDetector(aggregation="mean")
    with pytest.raises(ValueError, match="unknown puzzle set"):
        PuzzleAEDetector(puzzles="rotations")
    with pytest.raises(ValueError, match="unknown shortcut 'clean'; choose one of published, clean-target"):
        PuzzleAEDetector(shortcut="clean")
    with pytest.raises(ValueError, match="unknown score_puzzles 'some'"):
        PuzzleAEDetector(score_puzzles="some")
    with pytest.raises(ValueError, match="need 0 < lr_factor < 1"):
        PuzzleAEDetector(lr_factor=1.5)
    with pytest.raises(ValueError, match="3x3 grid does not divide 28x28"):
        PuzzleAEDetector(grid=3, **TINY).fit(images(24))
    with pytest.raises(ValueError, match="val_size=851 normal images cannot be held out of 24"):
        PuzzleAEDetector(**{**TINY, "val_size": 851}).fit(images(24))


def test_the_checkpoint_holds_the_scheduler_and_gives_back_the_same_detector(tmp_path):
    x = images(24)
    settings = {**TINY, "epochs": 2}
    checkpoint = tmp_path / "puzzle.pt"
    first = PuzzleAEDetector(**settings).fit(x, checkpoint=checkpoint)
    stored = torch.load(checkpoint, weights_only=True)
    assert len(stored["history"]) == 2 and "num_bad_epochs" in stored["scheduler"]
    resumed = PuzzleAEDetector(**settings).fit(x, checkpoint=checkpoint)  # nothing left to train
    np.testing.assert_allclose(resumed.anomaly_score(x[:4]), first.anomaly_score(x[:4]), rtol=1e-5)
    with pytest.raises(ValueError, match="other settings"):
        PuzzleAEDetector(**{**settings, "eps": 0.05}).fit(x, checkpoint=checkpoint)


# ------------------------------------------------------------------ the shortcut, measured


def tiles_of_four_greys(n, seed=0):
    """Images whose four tiles have four different grey levels (plus a little
    noise): the content alone tells which puzzle was applied."""
    noise = 0.05 * torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    levels = torch.tensor([0.0, 0.3, 0.6, 0.9]).view(2, 2).repeat_interleave(14, 0).repeat_interleave(14, 1)
    return (levels + noise).clamp(0, 1)


def test_the_permutation_classifier_learns_a_puzzle_its_input_gives_away():
    accuracy = permutation_accuracy(tiles_of_four_greys(300), tiles_of_four_greys(100, seed=1), epochs=4, batch_size=16)
    assert accuracy > 0.9
    seams_only = permutation_accuracy(
        tiles_of_four_greys(300), tiles_of_four_greys(100, seed=1), band=2, epochs=6, batch_size=16
    )
    assert seams_only > 0.5, "the seams of these images carry the grey levels too (chance: 1 / 23)"


def test_the_permutation_classifier_is_at_chance_when_nothing_gives_the_puzzle_away():
    noise = torch.rand(400, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    accuracy = permutation_accuracy(noise[:300], noise[300:], epochs=2)
    assert accuracy < 0.15  # chance: 1 / 23, about 0.04


# ------------------------------------------------------------------ tests that tell a working Puzzle-AE


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


def puzzled_target_mutant(*, grid, perms, colour, eps, shortcut="published"):
    """A plausible wrong Puzzle-AE loss: the target is the puzzled input, not the
    original image (an autoencoder, with extra steps)."""

    def loss(model, x, y=None):
        puzzled = puzzle_input(model, x, perms, grid=grid, colour=colour, eps=eps, shortcut=shortcut)
        return F.mse_loss(model(puzzled), puzzled)

    return loss


def check_the_loss_targets_the_original_image(make_loss):
    """For the identity network and no perturbation, the Puzzle-AE loss is the
    mean squared error between the puzzled image and the original."""
    x = images(6)
    perms = puzzle_permutations(2)
    loss = make_loss(grid=2, perms=perms, colour=False, eps=0.0)
    generator_state = torch.random.get_rng_state()
    value = loss(Identity(), x)
    torch.random.set_rng_state(generator_state)  # the same random puzzle again
    puzzled = puzzle_input(Identity(), x, perms, grid=2, colour=False, eps=0.0)
    assert value.item() > 0.01
    assert value.item() == pytest.approx(F.mse_loss(puzzled, x).item(), rel=1e-6)


def test_the_loss_of_the_identity_network_is_the_error_of_the_puzzle_itself():
    check_the_loss_targets_the_original_image(puzzle_loss)


def test_the_puzzled_target_mutant_fails_that_check():
    with pytest.raises(AssertionError):
        check_the_loss_targets_the_original_image(puzzled_target_mutant)


def tile_patterns():
    """Four 4x4 patterns, one per tile of an 8x8 image: a bar, another bar, a
    diagonal and a corner block. Which pattern sits where is what a network
    that solves the puzzle must learn."""
    patterns = torch.zeros(4, 4, 4)
    patterns[0, 1, :] = 1
    patterns[1, :, 1] = 1
    patterns[2] = torch.eye(4)
    patterns[3, 2:, 2:] = 1
    top = torch.cat([patterns[0], patterns[1]], 1)
    bottom = torch.cat([patterns[2], patterns[3]], 1)
    return torch.cat([top, bottom], 0).view(1, 1, 8, 8)


def structured_toy(n, seed, brightness=(0.1, 1.0)):
    """Normal images: the four patterns in their places, each image at its own
    brightness. The brightness varies so much that the distance to the mean
    image is a poor score."""
    scale = torch.empty(n, 1, 1, 1).uniform_(*brightness, generator=torch.Generator().manual_seed(seed))
    return scale * tile_patterns()


def test_puzzle_ae_learns_a_structured_toy_and_beats_the_mean_image():
    """Anomalies: images of average brightness whose corner block is missing.
    Their distance to the mean image is smaller than that of many normal images
    (the mean-image AUROC is about 72), but a network that has learned where
    every pattern belongs reconstructs the block and misses it."""
    x_train = structured_toy(400, seed=0)
    anomalies = structured_toy(100, seed=2, brightness=(0.55, 0.65))
    anomalies[..., 4:, 4:] = 0
    x_test = torch.cat([structured_toy(100, seed=1), anomalies])
    y_test = np.r_[np.zeros(100), np.ones(100)]
    mean_image = x_train.mean(0)
    mean_image_auroc = 100 * roc_auc_score(y_test, ((x_test - mean_image) ** 2).flatten(1).sum(1))
    detector = PuzzleAEDetector(
        widths=(16, 32), epochs=12, batch_size=16, lr=3e-3, eps=0.0, val_size=50, progress=False, device="cpu"
    ).fit(x_train)
    auroc = 100 * roc_auc_score(y_test, detector.anomaly_score(x_test))
    assert mean_image_auroc < 80
    assert auroc > 95 and auroc > mean_image_auroc + 15
    # it has learned the puzzle: its error is far below that of always answering the mean image
    mean_image_error = ((x_train - mean_image) ** 2).mean().item()
    assert detector.history_[-1] < 0.2 * mean_image_error


def test_the_loss_functions_and_the_detector_share_one_shortcut_default():
    import inspect

    default = PuzzleAEDetector().shortcut
    for function in (puzzle_ae.puzzle_input, puzzle_ae.puzzle_loss, puzzle_ae.puzzle_gan_loss):
        assert inspect.signature(function).parameters["shortcut"].default == default, function.__name__
    assert default == get_profile("quick")["puzzle-ae"]["shortcut"]
