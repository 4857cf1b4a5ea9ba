"""Occlusion saliency: which pixels change a detector's anomaly score when they
are covered. The talk's "occlusion-1" covers one pixel at a time. Lecture 4.
"""

from __future__ import annotations

__lecture__ = 4

from typing import Callable

import numpy as np
import torch

from .data import check_images


def occlusion_saliency(
    score: Callable[[torch.Tensor], np.ndarray], image: torch.Tensor, *, patch: int = 1, fill: float = 0.0
) -> np.ndarray:
    """Map of how much the anomaly score of ``image`` (C, H, W) changes when a
    ``patch`` x ``patch`` square starting at each pixel is set to ``fill``:
    ``score(occluded) - score(image)``, shape (H, W). ``score`` maps a batch of
    images to one score per image (e.g. a detector's ``anomaly_score`` method). All
    occluded copies are scored in one batch. Lecture 4."""
    check_images(image[None], "image")
    if patch < 1:
        raise ValueError(f"patch must be at least 1 pixel, got {patch}")
    _, height, width = image.shape
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    copies = image.repeat(height * width, 1, 1, 1)
    for dr in range(patch):
        for dc in range(patch):
            r = (rows.flatten() + dr).clamp(max=height - 1)
            c = (cols.flatten() + dc).clamp(max=width - 1)
            copies[torch.arange(height * width), :, r, c] = fill
    base = float(np.asarray(score(image[None]))[0])
    return (np.asarray(score(copies)) - base).reshape(height, width)
