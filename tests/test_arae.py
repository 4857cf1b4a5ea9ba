import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomaly_edu import arae
from anomaly_edu.models import MLPAutoencoder


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
    assert detector.score(x[:5]).shape == (5,)
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
