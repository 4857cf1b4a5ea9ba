"""Anomaly maps (Lecture 6): the squared-error and SSIM maps against known
answers, image scores read off the maps, Puzzle-AE's map against its score and a known answer,
and maps resized to the masks' sizes."""

import numpy as np
import pytest
import torch

from anomaly_edu.anomaly_maps import (
    MapAEDetector,
    SSIMAEDetector,
    image_scores,
    resize_maps,
    squared_error_map,
    ssim_error_map,
)
from anomaly_edu.models import ConvAutoencoder
from anomaly_edu.puzzle_ae import PuzzleAEDetector, permutation_error_maps
from anomaly_edu.puzzles import puzzle_permutations

C1, C2 = 0.01**2, 0.03**2  # SSIM's constants for pixel values in [0, 1]


def test_squared_error_map_sums_the_channels():
    x = torch.zeros(2, 3, 4, 5)
    reconstruction = x.clone()
    reconstruction[1, :, 2, 3] = torch.tensor([0.1, 0.2, 0.3])
    got = squared_error_map(x, reconstruction)
    assert got.shape == (2, 4, 5)
    assert got[1, 2, 3].item() == pytest.approx(0.01 + 0.04 + 0.09)
    assert got.sum().item() == pytest.approx(0.14)


def test_ssim_map_of_constant_images_is_its_luminance_term():
    # No variance anywhere: the contrast-structure term is C2 / C2 = 1, so
    # SSIM = (2ab + C1) / (a^2 + b^2 + C1) at every pixel (away from the border).
    a, b = 0.3, 0.7
    x, y = torch.full((1, 1, 32, 32), a), torch.full((1, 1, 32, 32), b)
    expected = 1 - (2 * a * b + C1) / (a * a + b * b + C1)
    got = ssim_error_map(x, y)[0, 8:-8, 8:-8]
    assert torch.allclose(got, torch.full_like(got, expected), atol=1e-3)  # float32 rounding in the variances
    assert torch.allclose(ssim_error_map(x, x), torch.zeros(1, 32, 32), atol=1e-5)


def test_ssim_map_sees_structure_that_the_squared_error_barely_sees():
    # a faint checkerboard in one corner: tiny squared error, large (1 - SSIM)
    x = torch.full((1, 1, 32, 32), 0.5)
    y = x.clone()
    y[0, 0, :8, :8] += 0.05 * ((torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2)
    ssim_map, l2_map = ssim_error_map(x, y)[0], squared_error_map(x, y)[0]
    assert ssim_map[:8, :8].mean() > 0.3 and l2_map[:8, :8].mean() < 0.002
    assert ssim_map[24:, 24:].abs().max() < 1e-4  # far from the change: identical neighbourhoods


def test_image_scores_are_the_mean_or_the_max_of_each_map():
    maps = torch.tensor([[[0.0, 1.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    assert np.allclose(image_scores(maps, "mean"), [0.25, 0.5])
    assert np.allclose(image_scores(maps, "max"), [1.0, 0.5])
    with pytest.raises(ValueError, match="unknown image score"):
        image_scores(maps, "median")


def test_resize_maps_gives_each_map_its_masks_size():
    maps = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4)
    resized = resize_maps(maps, [(8, 8), (3, 7)])
    assert [r.shape for r in resized] == [(8, 8), (3, 7)]
    assert resized[0].dtype == np.float32
    assert resized[0].min() >= 0 and resized[0].max() <= 15  # bilinear: no new extremes
    constant = resize_maps(torch.full((1, 4, 4), 2.0), [(9, 5)])[0]
    assert np.allclose(constant, 2.0)
    with pytest.raises(ValueError, match="one shape per map"):
        resize_maps(maps, [(8, 8)])


def images(n=24, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(n, 1, size, size, generator=g)


@pytest.mark.parametrize("detector_class", [MapAEDetector, SSIMAEDetector])
def test_map_detectors_score_by_the_mean_or_max_of_their_map(detector_class):
    x = images()
    detector = detector_class(widths=[4, 8], latent_dim=8, epochs=2, batch_size=8, progress=False, device="cpu")
    detector.fit(x)
    maps = detector.anomaly_map(x[:5])
    assert maps.shape == (5, 16, 16) and (maps >= -1e-6).all()
    assert np.allclose(detector.anomaly_score(x[:5]), maps.flatten(1).mean(1).numpy(), atol=1e-6)
    scores, same_maps = detector.score_and_map(x[:5])
    assert torch.allclose(same_maps, maps) and np.allclose(scores, detector.anomaly_score(x[:5]))
    detector.image_score = "max"
    assert np.allclose(detector.anomaly_score(x[:5]), maps.flatten(1).amax(1).numpy(), atol=1e-6)


def test_the_l2_map_is_the_squared_error_of_the_reconstruction():
    x = images()
    detector = MapAEDetector(widths=[4, 8], latent_dim=8, epochs=1, batch_size=8, progress=False, device="cpu")
    detector.fit(x)
    expected = ((detector.reconstruct(x) - x) ** 2).sum(1)
    assert torch.allclose(detector.anomaly_map(x), expected, atol=1e-6)


def test_the_ssim_autoencoder_lowers_its_loss_and_settings_are_checked():
    detector = SSIMAEDetector(widths=[4, 8], latent_dim=8, epochs=4, batch_size=8, progress=False, device="cpu")
    detector.fit(images())
    assert detector.loss == "ssim" and detector.history_[-1] < detector.history_[0]
    with pytest.raises(ValueError, match="square"):
        MapAEDetector(widths=[4, 8], epochs=1, progress=False).fit(torch.rand(4, 1, 16, 12))
    with pytest.raises(ValueError, match="multiple of 4"):
        MapAEDetector(widths=[4, 8], epochs=1, progress=False).fit(torch.rand(4, 1, 18, 18))
    with pytest.raises(ValueError, match="unknown loss"):
        MapAEDetector(loss="l1")


def test_conv_autoencoder_depth_follows_its_widths():
    assert ConvAutoencoder()(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)  # Lecture 1's default
    deeper = ConvAutoencoder(3, 64, latent_dim=16, widths=(8, 16, 32, 32))
    assert deeper(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in deeper.modules()) == 4


def test_puzzle_ae_map_averages_to_its_avg_score():
    x = images(n=30, size=16)
    detector = PuzzleAEDetector(widths=[2, 4], epochs=1, val_size=6, progress=False, device="cpu").fit(x)
    scores, maps = detector.score_and_map(x[:4])
    assert maps.shape == (4, 16, 16)
    assert np.allclose(maps.flatten(1).mean(1).numpy(), detector.anomaly_score(x[:4], aggregation="avg"), rtol=1e-5)
    assert np.allclose(scores, detector.anomaly_score(x[:4]), rtol=1e-5)
    assert torch.allclose(detector.anomaly_map(x[:4]), maps)
    max_scores, _ = detector.score_and_map(x[:4], aggregation="max")
    assert np.allclose(max_scores, detector.anomaly_score(x[:4], aggregation="max"), rtol=1e-5)


class Identity(torch.nn.Module):
    """A "U-Net" that gives back what it gets: it never undoes a puzzle."""

    def forward(self, x):
        return x


def test_puzzle_ae_map_of_a_network_that_never_undoes_a_puzzle_counts_the_misplaced_tiles():
    """One bright tile (top left) on black, two channels; a network that returns its input
    errs wherever a puzzle moves that tile: on its own place under the 18 of the 23 puzzles
    that take it away (only 5 keep it: the other 3 tiles' 3! - 1 shuffles), and on each other
    place under the 6 puzzles that put it there. Each error, 1 per pixel, is divided by its
    puzzle's normaliser (2 here)."""
    x = torch.zeros(1, 2, 8, 8)
    x[:, :, :4, :4] = 1.0
    perms = puzzle_permutations(2)
    maps, errors = permutation_error_maps(Identity(), x, perms, 2, torch.full((23,), 2.0))
    expected = torch.full((8, 8), 6 / 23 / 2)
    expected[:4, :4] = 18 / 23 / 2
    assert maps.shape == (1, 8, 8) and torch.allclose(maps[0], expected)
    assert torch.allclose(errors.mean(1), maps.flatten(1).mean(1))  # the map's mean is the "avg" score
    constant = torch.full((3, 1, 8, 8), 0.4)  # every puzzle of a constant image is the image
    assert torch.equal(permutation_error_maps(Identity(), constant, perms, 2, torch.ones(23))[0], torch.zeros(3, 8, 8))
