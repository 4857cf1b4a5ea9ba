import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomaly_edu import arae
from anomaly_edu.models import MLPAutoencoder
from anomaly_edu.profiles import get_profile


class TinyAE(torch.nn.Module):
    """A 4-pixel autoencoder with a 2-d code, small enough to compute by hand."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(4, 2)
        self.dec = torch.nn.Linear(2, 4)
        with torch.no_grad():
            self.enc.weight.copy_(torch.tensor([[1.0, 0.0, -1.0, 0.5], [0.2, 0.3, 0.0, -0.4]]))
            self.enc.bias.zero_()
            self.dec.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [-1.0, 0.2]]))
            self.dec.bias.fill_(0.1)

    def encode(self, x):
        return self.enc(x.flatten(1))

    def decode(self, z):
        return self.dec(z)


def latent_distance(model, x, x_adv):
    with torch.no_grad():
        return ((model.encode(x_adv) - model.encode(x)) ** 2).sum(1)


def test_latent_attack_moves_the_code_and_stays_in_its_ball():
    torch.manual_seed(0)
    model = MLPAutoencoder()
    x = torch.rand(8, 1, 28, 28) * 0.8 + 0.1
    eps = 0.1
    x_adv = arae.latent_attack(model, x, eps=eps, steps=10)
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # the attack finds a larger latent move than random noise of the same size
    noise = (x + eps * torch.sign(torch.randn_like(x))).clamp(0, 1)
    assert (latent_distance(model, x, x_adv) > latent_distance(model, x, noise)).all()
    assert model.training  # the model's mode is restored


def test_latent_attack_with_more_steps_moves_further():
    torch.manual_seed(0)
    model = MLPAutoencoder()
    x = torch.rand(16, 1, 28, 28)
    torch.manual_seed(1)
    one = latent_distance(model, x, arae.latent_attack(model, x, eps=0.2, steps=1, alpha=0.01))
    torch.manual_seed(1)
    many = latent_distance(model, x, arae.latent_attack(model, x, eps=0.2, steps=20, alpha=0.01))
    assert many.mean() > one.mean()


def test_arae_loss_matches_a_hand_computation():
    model = TinyAE()
    x = torch.tensor([[0.2, 0.4, 0.6, 0.8]])
    gamma = 0.1
    torch.manual_seed(3)
    loss = arae.arae_loss(eps=0.05, steps=3, gamma=gamma)(model, x)
    torch.manual_seed(3)
    x_adv = arae.latent_attack(model, x, eps=0.05, steps=3)
    # by hand: codes, reconstruction of the attacked image, the two mean squared errors
    w_e, w_d = model.enc.weight, model.dec.weight
    z, z_adv = x @ w_e.T, x_adv @ w_e.T
    reconstruction = z_adv @ w_d.T + 0.1
    expected = ((reconstruction - x) ** 2).mean() + gamma * ((z_adv - z) ** 2).mean()
    assert torch.isclose(loss, expected, atol=1e-6)
    assert not torch.equal(x_adv, x)


def test_arae_loss_sends_gradients_through_both_encoder_branches():
    model = TinyAE()
    x = torch.rand(5, 4)
    arae.arae_loss(eps=0.1, steps=2, gamma=1.0)(model, x).backward()
    assert model.enc.weight.grad.abs().sum() > 0 and model.dec.weight.grad.abs().sum() > 0


def test_eps_zero_is_the_plain_autoencoder_loss():
    model = TinyAE()
    x = torch.rand(5, 4)
    loss = arae.arae_loss(eps=0.0, steps=2)(model, x)
    assert torch.isclose(loss, F.mse_loss(model.decode(model.encode(x)), x))


def test_arae_detector_trains_and_scores():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    detector = arae.ARAEDetector(epochs=1, batch_size=32, eps=0.1, steps=2, progress=False).fit(x)
    assert detector.anomaly_score(x[:5]).shape == (5,)
    with pytest.raises(ValueError, match="eps"):
        arae.ARAEDetector(eps=-0.1)


# ------------------------------------------------------------------ occlusion saliency

from anomaly_edu.saliency import occlusion_saliency  # noqa: E402


def test_occlusion_saliency_finds_the_pixels_the_score_reads():
    def score(batch):  # looks only at pixel (2, 3)
        return (batch[:, 0, 2, 3] * 10).numpy()

    image = torch.full((1, 6, 6), 0.5)
    saliency = occlusion_saliency(score, image)
    assert saliency.shape == (6, 6)
    assert saliency[2, 3] == pytest.approx(-5.0)
    assert np.count_nonzero(saliency) == 1


def test_occlusion_patches_cover_their_square():
    def score(batch):
        return batch.flatten(1).sum(1).numpy()

    image = torch.ones(1, 5, 5)
    saliency = occlusion_saliency(score, image, patch=2)
    assert saliency[0, 0] == pytest.approx(-4.0)  # a full 2x2 square
    assert saliency[4, 4] == pytest.approx(-1.0)  # clipped at the corner
    with pytest.raises(ValueError, match="patch"):
        occlusion_saliency(score, image, patch=0)


# ------------------------------------------------------------------ the union variant


def test_rotate_and_shift():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 2, 3] = 1
    shifted = arae.rotate_and_shift(x, 0, 2, 1)
    assert shifted[0, 0, 3, 5] == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(arae.rotate_and_shift(x, 0, 0, 0), x, atol=1e-6)
    turned = arae.rotate_and_shift(arae.rotate_and_shift(x, 90, 0, 0), -90, 0, 0)
    assert torch.allclose(turned, x, atol=1e-5)


def test_spatial_attack_keeps_the_transformation_that_moves_the_code_most():
    torch.manual_seed(0)
    model = MLPAutoencoder()
    x = torch.rand(3, 1, 28, 28)
    angles, shifts = [-10.0, 0.0, 10.0], (0, 2)
    best = arae.spatial_attack(model, x, angles=angles, shifts=shifts)
    with torch.no_grad():
        clean = model.encode(x)
        best_distance = ((model.encode(best) - clean) ** 2).mean(1)
        for a in angles:
            for dx in shifts:
                for dy in shifts:
                    d = ((model.encode(arae.rotate_and_shift(x, a, dx, dy)) - clean) ** 2).mean(1)
                    assert (best_distance >= d - 1e-7).all()


def test_union_attack_is_at_least_as_strong_as_each_part():
    torch.manual_seed(0)
    model = MLPAutoencoder()
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(5)
    union = arae.union_attack(model, x, linf=(0.1, 0.05, 3), l2=(1.0, 0.5, 3), spatial=False)
    torch.manual_seed(5)
    linf_only = arae.union_attack(model, x, linf=(0.1, 0.05, 3), l2=(1e-9, 1e-9, 1), spatial=False)
    assert (latent_distance(model, x, union) >= latent_distance(model, x, linf_only) * 0.999).all()


def test_union_attack_keeps_per_image_the_candidate_that_moves_the_code_most():
    torch.manual_seed(0)
    model = MLPAutoencoder()
    x = torch.rand(4, 1, 28, 28)
    sets = dict(linf=(0.1, 0.05, 3), l2=(1.0, 0.5, 3), angles=[-10.0, 10.0], shifts=(0, 2))
    torch.manual_seed(5)
    candidates = arae.union_candidates(model, x, **sets)
    assert list(candidates) == ["L-inf", "L-2", "rotation and shift"]
    torch.manual_seed(5)
    union = arae.union_attack(model, x, **sets)
    distances = torch.stack([latent_distance(model, x, c) for c in candidates.values()])
    assert torch.allclose(latent_distance(model, x, union), distances.max(0).values)


def test_the_latent_attacks_are_pgd_on_the_encoder_from_the_clean_code():
    """latent_attack and union_candidates' L-inf and L-2 sets give, under one seed, exactly the
    tensors of the code path they replaced: attacks.pgd on the encoder, aimed away from the clean code."""
    from anomaly_edu.attacks import per_example_mse, pgd

    torch.manual_seed(0)
    model = MLPAutoencoder()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        clean_code = model.encode(x)

    def by_pgd(norm, eps, alpha, steps):
        encoder = arae.EncoderOnly(model)
        return pgd(encoder, x, clean_code, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=True,
                   loss_fn=per_example_mse)  # fmt: skip

    torch.manual_seed(5)
    candidates = arae.union_candidates(model, x, linf=(0.1, 0.05, 3), l2=(1.0, 0.5, 3), spatial=False)
    torch.manual_seed(5)
    expected = {"L-inf": by_pgd("linf", 0.1, 0.05, 3), "L-2": by_pgd("l2", 1.0, 0.5, 3)}
    assert list(candidates) == list(expected)
    for name in expected:
        assert torch.equal(candidates[name], expected[name]), name
    torch.manual_seed(7)
    attacked = arae.latent_attack(model, x, eps=0.1, steps=3)
    torch.manual_seed(7)
    assert torch.equal(attacked, by_pgd("linf", 0.1, None, 3))
    assert torch.equal(arae.latent_attack(model, x, eps=0, steps=3), x)


# ------------------------------------------------------------------ the union variant's objective: combine

# Three fixed "attacked" batches of two 4-pixel images, and the clean batch. Per image, the
# batch that moves TinyAE's code most is not the same one: image 0's worst is FIXED_ATTACKS[1],
# image 1's is FIXED_ATTACKS[2] (checked in the test below).
CLEAN = torch.tensor([[0.2, 0.4, 0.6, 0.8], [0.9, 0.1, 0.3, 0.5]])
FIXED_ATTACKS = {
    "L-inf": torch.tensor([[0.3, 0.5, 0.5, 0.7], [0.8, 0.2, 0.4, 0.4]]),
    "L-2": torch.tensor([[0.9, 0.4, 0.0, 0.8], [0.9, 0.1, 0.3, 0.6]]),
    "rotation and shift": torch.tensor([[0.2, 0.4, 0.6, 0.9], [0.0, 0.1, 1.0, 0.5]]),
}


def union_loss_with_fixed_attacks(monkeypatch, combine, gamma=0.2, model=None):
    """The detector's batch loss on CLEAN, its three attacks replaced by FIXED_ATTACKS."""
    monkeypatch.setattr(arae, "union_candidates", lambda model, x, **sets: dict(FIXED_ATTACKS))
    detector = arae.UnionARAEDetector(combine=combine, gamma=gamma)
    return detector.batch_loss()(TinyAE() if model is None else model, CLEAN)


def by_hand(x_adv, target, gamma, model=None):
    """mean((Dec(Enc(x_adv)) - target)^2) + gamma * mean((Enc(target) - Enc(x_adv))^2) for
    TinyAE, written out with its weights (gradients reach them through both codes)."""
    model = TinyAE() if model is None else model
    (w_e, b_e), (w_d, b_d) = model.enc.parameters(), model.dec.parameters()
    z_adv, z = x_adv @ w_e.T + b_e, target @ w_e.T + b_e
    reconstruction = z_adv @ w_d.T + b_d
    return ((reconstruction - target) ** 2).mean() + gamma * ((z - z_adv) ** 2).mean()


def gradients(model):
    return [parameter.grad.clone() for parameter in model.parameters()]


def test_combine_all_is_the_published_objective(monkeypatch):
    # MNIST-union/code.py: criterion(cat([x, x, x]), AE(cat([adv1, adv2, adv3])))
    # + 0.2 * criterion(Enc(cat([x, x, x])), Enc(cat([adv1, adv2, adv3]))), nn.MSELoss means
    model, hand_model = TinyAE(), TinyAE()
    loss = union_loss_with_fixed_attacks(monkeypatch, "all", model=model)
    expected = by_hand(torch.cat(list(FIXED_ATTACKS.values())), torch.cat([CLEAN] * 3), 0.2, hand_model)
    assert torch.isclose(loss, expected, rtol=1e-6)
    # the same gradients: the clean codes are not detached, so both encoder branches train
    loss.backward(), expected.backward()
    for got, want in zip(gradients(model), gradients(hand_model)):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)
    # the same as the mean of the three batches' ARAE losses (equal batch sizes)
    each = [by_hand(batch, CLEAN, 0.2) for batch in FIXED_ATTACKS.values()]
    assert torch.isclose(loss, torch.stack(each).mean(), rtol=1e-6)


def test_combine_worst_trains_on_the_attacked_image_that_moves_the_code_most(monkeypatch):
    model = TinyAE()
    moves = torch.stack([latent_distance(model, CLEAN, batch) for batch in FIXED_ATTACKS.values()])
    assert moves.argmax(0).tolist() == [1, 2]  # the worst batch differs between the two images
    worst = torch.stack([FIXED_ATTACKS["L-2"][0], FIXED_ATTACKS["rotation and shift"][1]])
    loss = union_loss_with_fixed_attacks(monkeypatch, "worst")
    assert torch.isclose(loss, by_hand(worst, CLEAN, 0.2), rtol=1e-6)


def test_combine_all_and_worst_give_different_losses(monkeypatch):
    # "all" also trains on the two batches that move each code less than the worst one
    all_three = union_loss_with_fixed_attacks(monkeypatch, "all")
    worst = union_loss_with_fixed_attacks(monkeypatch, "worst")
    assert abs(all_three.item() - worst.item()) > 0.05 * worst.item()


def test_combine_is_checked_and_set_by_the_profiles():
    with pytest.raises(ValueError, match="unknown combine 'mean'.*'all'.*'worst'"):
        arae.UnionARAEDetector(combine="mean")
    from anomaly_edu import profiles

    # both profiles train the published objective; "worst" is the course's named alternative
    assert profiles.settings("full", "arae-union")["combine"] == "all"
    assert profiles.settings("quick", "arae-union")["combine"] == "all"
    assert arae.UnionARAEDetector().combine == "all"  # the default is the quick profile's


def test_a_single_attacked_batch_in_a_list_is_the_arae_loss():
    model, x = TinyAE(), CLEAN
    x_adv = FIXED_ATTACKS["L-inf"]
    as_list = arae.robust_reconstruction_loss(lambda m, xb: [x_adv], 0.3)(model, x)
    as_tensor = arae.robust_reconstruction_loss(lambda m, xb: x_adv, 0.3)(model, x)
    assert torch.equal(as_list, as_tensor)


@pytest.mark.parametrize("dataset,epochs", [("mnist", 1600), ("fashion-mnist", 8000), ("coil100", 1000)])
def test_the_full_profile_trains_arae_as_long_as_the_authors_code_on_each_data_set(dataset, epochs):
    assert get_profile("full", dataset)["arae"]["epochs"] == epochs


def test_reconstruction_nearness_measures_both_distances_against_a_hand_computation():
    class Copier:  # reconstructs every image exactly: nearer its input than any normal image
        def reconstruct(self, x):
            return x.clone()

    class Averager:  # draws the same grey image whatever it is given
        def reconstruct(self, x):
            return torch.full_like(x, 0.5)

    normal = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    x = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])  # one pixel of four differs from the all-zero normal image
    to_input, to_normal = arae.reconstruction_nearness(Copier(), x, normal)
    assert to_input.tolist() == [0.0] and to_normal.tolist() == pytest.approx([0.5])  # sqrt(1 / 4)
    to_input, to_normal = arae.reconstruction_nearness(Averager(), x, normal)
    assert to_input.tolist() == pytest.approx([0.5]) and to_normal.tolist() == pytest.approx([0.5])
