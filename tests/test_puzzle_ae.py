"""Puzzle-AE (Lecture 5): the shortcut-removing perturbation, the U-Net, the
scoring over permutations and the detector."""

import numpy as np
import pytest
import torch

from anomaly_edu.attacks import per_example_mse
from anomaly_edu.puzzle_ae import (
    Discriminator,
    PuzzleAEDetector,
    PuzzleGAN,
    UNet,
    aggregate,
    permutation_errors,
    puzzle_input,
)
from anomaly_edu.puzzles import apply_permutation, puzzle_permutations
from anomaly_edu.shortcut import permutation_accuracy, remove_shortcut, seam_band

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


def test_the_discriminator_gives_a_probability_and_features():
    p, features = Discriminator(channels=3, size=32)(torch.rand(4, 3, 32, 32))
    assert p.shape == (4,) and ((p > 0) & (p < 1)).all()
    assert features.ndim == 2 and len(features) == 4


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
    assert detector.score(x_val).mean() == pytest.approx(1.0, abs=1e-4)


def test_score_takes_another_aggregation_without_refitting():
    x = images(24)
    detector = PuzzleAEDetector(**TINY).fit(x)
    per_puzzle = detector.permutation_scores(x[:5])
    np.testing.assert_allclose(detector.score(x[:5], "max"), per_puzzle.amax(1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(detector.score(x[:5]), per_puzzle.mean(1).numpy(), rtol=1e-6)


@pytest.mark.parametrize("variant", ["pae", "cpae", "cpae-g"])
def test_every_variant_trains_and_scores(variant):
    detector = PuzzleAEDetector(variant=variant, **TINY).fit(images(24, channels=3, size=32))
    scores = detector.score(images(6, seed=2, channels=3, size=32))
    assert scores.shape == (6,) and np.isfinite(scores).all()
    assert isinstance(detector.model_, PuzzleGAN) == (variant == "cpae-g")


def test_the_texture_puzzles_are_the_two_tile_swaps():
    detector = PuzzleAEDetector(puzzles="swaps", **TINY).fit(images(24))
    assert detector.permutation_scores(images(3)).shape == (3, 6)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown Puzzle-AE variant 'cpae-x'; choose one of pae, cpae, cpae-g"):
        PuzzleAEDetector(variant="cpae-x")
    with pytest.raises(ValueError, match="unknown aggregation 'mean'"):
        PuzzleAEDetector(aggregation="mean")
    with pytest.raises(ValueError, match="unknown puzzle set"):
        PuzzleAEDetector(puzzles="rotations")
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
    np.testing.assert_allclose(resumed.score(x[:4]), first.score(x[:4]), rtol=1e-5)
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
