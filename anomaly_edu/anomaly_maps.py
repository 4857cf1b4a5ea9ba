"""Anomaly maps: where in an image a detector sees the anomaly. Introduced in Lecture 6.

An anomaly map gives every pixel a score (higher = more anomalous); the
localisation metrics of :mod:`anomaly_edu.metrics` compare it with the defect
mask. An image's score can be read off its map (its mean or its maximum).

- :func:`squared_error_map` / :func:`ssim_error_map`: the per-pixel error of a
  reconstruction, by squared difference or by (1 - SSIM), the structural
  similarity of the 11x11 neighbourhood of each pixel (kornia's implementation)
- :func:`ssim_loss`: the training loss of an autoencoder with SSIM loss
- :class:`MapAEDetector` / :class:`SSIMAEDetector`: the convolutional
  autoencoder of the MVTec table's AE_L2 and AE_SSIM rows, with its anomaly map
- :func:`image_scores` / :func:`resize_maps`: from maps to image scores, and
  maps to the size of each mask

Puzzle-AE's map (its per-pixel error averaged over the puzzles) is
:meth:`anomaly_edu.puzzle_ae.PuzzleAEDetector.anomaly_map`, computed by
:func:`anomaly_edu.puzzle_ae.permutation_error_maps`.
"""

from __future__ import annotations

__lecture__ = 6

import numpy as np
import torch
import torch.nn.functional as F
from kornia.metrics import ssim

from .data import check_images
from .detectors import AEDetector
from .models import ConvAutoencoder
from .profiles import PROFILES
from .training import BatchLoss, predict_in_batches, reconstruction_loss

QUICK = PROFILES["quick"]["ae-l2"]
IMAGE_SCORES = ("mean", "max")
LOSSES = ("l2", "ssim")


def squared_error_map(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared error, summed over the channels: (N, C, H, W) -> (N, H, W). Lecture 6."""
    return (reconstruction - x).pow(2).sum(1)


def ssim_error_map(x: torch.Tensor, reconstruction: torch.Tensor, window: int = 11) -> torch.Tensor:
    """1 - SSIM of each pixel's ``window`` x ``window`` neighbourhood (Gaussian
    weights; pixel values in [0, 1]), averaged over the channels: (N, H, W).
    0 where the two images agree in mean, contrast and structure, up to 2
    where they are opposite. Lecture 6."""
    return 1 - ssim(reconstruction, x, window, max_val=1.0).mean(1)


def ssim_loss(window: int = 11) -> BatchLoss:
    """The batch loss of an autoencoder trained with SSIM: the mean of
    :func:`ssim_error_map` over the batch. Lecture 6."""

    def loss(model, x, y=None):
        return ssim_error_map(x, model(x), window).mean()

    return loss


def image_scores(maps: torch.Tensor, how: str = "mean") -> np.ndarray:
    """One score per image from its (H, W) map: the map's mean or maximum. Lecture 6."""
    if how not in IMAGE_SCORES:
        raise ValueError(f"unknown image score {how!r}; choose one of {', '.join(IMAGE_SCORES)}")
    flat = maps.flatten(1)
    return (flat.mean(1) if how == "mean" else flat.amax(1)).cpu().numpy()


def resize_maps(maps: torch.Tensor, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Each (H, W) map of ``maps`` resized (bilinear) to the matching (height,
    width) of ``shapes``, e.g. the sizes of the ground-truth masks, as float32
    arrays. Lecture 6."""
    if len(maps) != len(shapes):
        raise ValueError(f"need one shape per map, got {len(shapes)} shapes for {len(maps)} maps")
    resized = []
    for score_map, shape in zip(maps, shapes):
        big = F.interpolate(score_map[None, None].float(), size=tuple(shape), mode="bilinear", align_corners=False)
        resized.append(big[0, 0].cpu().numpy())
    return resized


class MapAEDetector(AEDetector):
    """A convolutional autoencoder that scores pixels: the AE_L2 and AE_SSIM
    rows of the MVTec table (Bergmann et al. 2019 compare the two losses).
    Lecture 6.

    ``loss="l2"`` trains with the mean squared error and maps each pixel's
    squared error; ``loss="ssim"`` trains with (1 - SSIM) and maps (1 - SSIM)
    of each pixel's ``window`` x ``window`` neighbourhood. The image score is
    the map's ``image_score``: its mean (default) or its maximum. The network
    is :class:`~anomaly_edu.models.ConvAutoencoder` with ``widths`` (one
    halving each) and ``latent_dim``; images must be square, with a side
    divisible by 2 ** len(widths). Another network can be given as ``model``
    (``fit`` trains a fresh copy of it).
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        *,
        loss: str = QUICK["loss"],
        widths: tuple[int, ...] = tuple(QUICK["widths"]),
        latent_dim: int = QUICK["latent_dim"],
        image_score: str = QUICK["image_score"],
        window: int = QUICK["window"],
        epochs: int = QUICK["epochs"],
        batch_size: int = QUICK["batch_size"],
        lr: float = QUICK["lr"],
        seed: int = 0,
        device=None,
        progress: bool = True,
    ):
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if image_score not in IMAGE_SCORES:
            raise ValueError(f"unknown image score {image_score!r}; choose one of {', '.join(IMAGE_SCORES)}")
        super().__init__(
            model, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, progress=progress
        )
        self.loss, self.widths, self.latent_dim = loss, widths, latent_dim
        self.image_score, self.window = image_score, window

    def default_model(self, image_shape: tuple) -> torch.nn.Module:
        channels, height, width = image_shape
        if height != width:
            raise ValueError(f"{type(self).__name__} takes square images, got {height}x{width}: resize them first")
        return ConvAutoencoder(channels, height, self.latent_dim, tuple(self.widths))

    def batch_loss(self):
        return reconstruction_loss if self.loss == "l2" else ssim_loss(self.window)

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, H, W) map of each image of ``x``: squared error or 1 - SSIM."""
        self._check_fitted("model_")
        x = check_images(x).to(self.device_)
        self.model_.eval()
        if self.loss == "l2":
            return predict_in_batches(lambda b: squared_error_map(b, self.model_(b)), x, 256)
        return predict_in_batches(lambda b: ssim_error_map(b, self.model_(b), self.window), x, 256)

    def anomaly_score(self, x: torch.Tensor) -> np.ndarray:
        """The mean (or maximum) of each image's anomaly map; higher = more anomalous."""
        return image_scores(self.anomaly_map(x), self.image_score)

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """The score of :meth:`anomaly_score` as a tensor that gradients flow through
        (for attacks on the detector, Lecture 7)."""
        self._check_fitted("model_")
        self.model_.eval()
        reconstruction = self.model_(x)
        if self.loss == "l2":
            maps = squared_error_map(x, reconstruction)
        else:
            maps = ssim_error_map(x, reconstruction, self.window)
        return maps.flatten(1).mean(1) if self.image_score == "mean" else maps.flatten(1).amax(1)

    def score_and_map(self, x: torch.Tensor) -> tuple[np.ndarray, torch.Tensor]:
        """:meth:`anomaly_score` and :meth:`anomaly_map` of ``x``, from one reconstruction."""
        maps = self.anomaly_map(x)
        return image_scores(maps, self.image_score), maps


class SSIMAEDetector(MapAEDetector):
    """:class:`MapAEDetector` trained and scored with SSIM by default: the
    AE_SSIM row (its other settings are the AE_L2 row's). Lecture 6."""

    def __init__(self, model: torch.nn.Module | None = None, *, loss: str = "ssim", **settings):
        super().__init__(model, loss=loss, **settings)
