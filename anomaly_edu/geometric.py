"""GT: anomaly detection with geometric transformations (Golan & El-Yaniv 2018),
the baseline of the talk's "generality" table. Introduced in Lecture 6.

A classifier learns, on normal images only, *which* transformation was applied
to an image. On a normal image it knows the answer; on an anomaly it is unsure,
because it has never seen what that kind of image looks like upright.

The course uses the 8 symmetries of the square: rotations by 0, 90, 180 and 270
degrees, each with and without a horizontal flip (:data:`GEOMETRIC_TRANSFORMS`).
The original paper used 72 transformations (these 8 combined with 9
translations); ours is the course's smaller set.

Score of an image x, from p(t | T_t(x)), the probability the classifier gives
the right transformation t of the transformed image (:data:`SCORINGS`):

* ``"probability"``, the GT code's "simplified normality score" with the sign
  flipped: minus the mean over the 8 transformations of p(t | T_t(x));
* ``"log"``, the course's: the mean of ``-log p(t | T_t(x))``, the classifier's
  surprise at the right answer, which weighs one confident mistake more.

Higher = more anomalous for both. The code's final score fits a Dirichlet
distribution to the softmax outputs of normal images, which we leave out.
"""

from __future__ import annotations

__lecture__ = 6

import numpy as np
import torch
import torch.nn.functional as F

from .data import check_images
from .detectors import Detector
from .profiles import PROFILES
from .training import classification_loss, pick_device, predict_in_batches, seeded, train

QUICK = PROFILES["quick"]["gt"]  # the detector's default settings

# How the probabilities of the right transformations make an anomaly score (see gt_score).
SCORINGS = ("probability", "log")

# Transformation k: rotation by (k % 4) * 90 degrees counter-clockwise, after a
# horizontal flip when k >= 4.
GEOMETRIC_TRANSFORMS = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip",
    "flip+rot90",
    "flip+rot180",
    "flip+rot270",
)


def apply_transform(x: torch.Tensor, index: int) -> torch.Tensor:
    """Transformation ``index`` of :data:`GEOMETRIC_TRANSFORMS` applied to a batch
    ``x`` (N, C, H, W) of square images. Lecture 6.

    The flip (indices 4-7) mirrors the width axis (``torch.flip(x, dims=(3,))``)
    and comes first; then ``torch.rot90(x, index % 4, dims=(2, 3))`` rotates by
    ``index % 4`` quarter turns counter-clockwise (as the image is drawn, row 0
    on top): the top-right pixel goes to the top left.
    """
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[2] != x.shape[3]:
        raise ValueError(
            f"geometric transformations need square images, got {x.shape[2]}x{x.shape[3]}: a quarter turn "
            "would change their shape; resize or crop them to a square first"
        )
    if not 0 <= index < len(GEOMETRIC_TRANSFORMS):
        raise ValueError(f"transform index must be in 0..{len(GEOMETRIC_TRANSFORMS) - 1}, got {index}")
    if index >= 4:
        x = torch.flip(x, dims=(3,))
    return torch.rot90(x, index % 4, dims=(2, 3))


def transformed_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``x`` (N, C, H, W) under every transformation: the 8N
    images (all N under transformation 0, then all N under 1, ...) and their
    labels, the index of the transformation. Lecture 6."""
    x_all = torch.cat([apply_transform(x, k) for k in range(len(GEOMETRIC_TRANSFORMS))])
    labels = torch.arange(len(GEOMETRIC_TRANSFORMS), device=x.device).repeat_interleave(len(x))
    return x_all, labels


class TransformClassifier(torch.nn.Module):
    """A small CNN that tells which of the 8 transformations was applied. Lecture 6.

    One block per entry of ``widths``: a 3x3 convolution, batch norm, ReLU and
    2x max-pooling; then global average pooling and a linear layer to 8 logits.
    It takes square images of any size from ``2 ** len(widths)`` up (8 for the
    default three blocks). The paper used a Wide ResNet; this is a lighter stand-in.
    """

    def __init__(self, channels: int = 1, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        blocks, c_in = [], channels
        for width in widths:
            blocks += [
                torch.nn.Conv2d(c_in, width, 3, padding=1),
                torch.nn.BatchNorm2d(width),
                torch.nn.ReLU(),
                torch.nn.MaxPool2d(2),
            ]
            c_in = width
        self.min_size = 2 ** len(widths)
        self.features = torch.nn.Sequential(*blocks, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.classify = torch.nn.Linear(c_in, len(GEOMETRIC_TRANSFORMS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(f"images must be at least {self.min_size}x{self.min_size}, got {tuple(x.shape[-2:])}")
        return self.classify(self.features(x))


def right_transform_log_probabilities(
    model: torch.nn.Module, x: torch.Tensor, images_per_pass: int = 2048
) -> torch.Tensor:
    """log p(t | T_t(x)) for every image of ``x`` and every transformation t:
    shape (N, 8). All 8 transformed copies of a chunk of images go through
    ``model`` in one batch. Lecture 6."""
    n_transforms = len(GEOMETRIC_TRANSFORMS)
    model.eval()

    def log_probabilities(batch):
        x_all, labels = transformed_batch(batch)
        log_p = F.log_softmax(model(x_all), dim=1).gather(1, labels[:, None]).squeeze(1)
        return log_p.view(n_transforms, len(batch)).T  # (B, 8): row i, column t

    return predict_in_batches(log_probabilities, x, max(1, images_per_pass // n_transforms))


def check_scoring(scoring: str) -> str:
    """``scoring`` if it is one of :data:`SCORINGS`, else a ValueError. Lecture 6."""
    if scoring not in SCORINGS:
        raise ValueError(
            f"unknown scoring {scoring!r}; choose 'probability' (the GT code's: minus the mean probability of "
            "the right transformation) or 'log' (the mean of -log p)"
        )
    return scoring


def gt_score(log_probabilities: torch.Tensor, scoring: str) -> torch.Tensor:
    """The anomaly score of each image from ``log p(t | T_t(x))``, shape (N,
    transformations): ``"probability"``, minus the mean of the probabilities
    (the GT code's simplified normality score, negated); ``"log"``, the mean of
    ``-log p``. Higher = more anomalous. Lecture 6."""
    if check_scoring(scoring) == "probability":
        return -log_probabilities.exp().mean(1)
    return -log_probabilities.mean(1)


class GTDetector(Detector):
    """GT as a detector (see the module's docstring). Lecture 6.

    ``fit(x)`` trains a fresh :class:`TransformClassifier` with cross-entropy
    on the 8 transformed copies of every normal image (mini-batches of
    ``batch_size`` transformed images, shuffled together). ``score(x)`` is
    :func:`gt_score` with ``scoring``: ``"probability"`` (the GT code's, the
    full profile's) or ``"log"`` (the course's, the quick profile's); higher =
    more anomalous. ``score(x, scoring="log")`` reuses the fitted network with
    the other scoring, so both are measured on the same run. Fitted:
    ``model_``, ``history_`` (mean loss per epoch), ``device_``.

    Read from the GT code (izikgo/AnomalyDetectionTransformations at 6327041,
    ``experiments.py``, ``_transformations_experiment``): its "simplified
    normality score" (lines 55-65, commented out) predicts, for each
    transformation t, the softmax of the images transformed by t and keeps the
    probability of t, then averages these probabilities over the
    transformations: a normality score (higher = more normal), whose negative
    is our ``"probability"`` score. The score it runs (lines 67-111) is the
    Dirichlet one. Other differences from that code, which we keep:

    * 8 transformations instead of 72: it combines the flip, translations by
      0 or +-8 pixels in x and in y (reflected at the border) and the 4 quarter
      turns (``transformations.py``, ``Transformer(8, 8)``; the same file's
      ``SimpleTransformer`` is our 8, in our order);
    * the network: a Wide ResNet 10-4 (16-8 for cats vs dogs) with an L2
      penalty of 2.5e-4 times the squared weights
      (``models/wide_residual_network.py``) instead of our small CNN without
      one; both trained with Adam, learning rate 1e-3
      (Keras's default), cross-entropy, batches of 128, every image under every
      transformation, shuffled;
    * the epochs: ``ceil(200 / number of transformations)``, 3 for its 72; the
      full profile takes the same rule's 25 for our 8, the quick profile 5;
    * the images: scaled to [-1, 1], and 28 x 28 images (Fashion-MNIST)
      zero-padded to 32 x 32 before the scaling (``utils.py``); ours stay in
      [0, 1] at their size;
    * its experiments (CIFAR-10, CIFAR-100's 20 super-classes, Fashion-MNIST,
      cats vs dogs) have no MNIST run.
    """

    def __init__(
        self,
        *,
        widths: tuple[int, ...] = tuple(QUICK["widths"]),
        epochs: int = QUICK["epochs"],
        batch_size: int = QUICK["batch_size"],
        lr: float = QUICK["lr"],
        scoring: str = QUICK["scoring"],
        seed: int = 0,
        device=None,
        progress: bool = True,
    ):
        check_scoring(scoring)
        self.widths, self.epochs, self.batch_size, self.lr = widths, epochs, batch_size, lr
        self.scoring, self.seed, self.device, self.progress = scoring, seed, device, progress

    def new_model(self, image_shape: tuple) -> torch.nn.Module:
        """A fresh, untrained classifier for images of shape (C, H, W)."""
        return TransformClassifier(channels=image_shape[0], widths=tuple(self.widths))

    def fit(self, x: torch.Tensor, checkpoint=None, checkpoint_every: int = 1) -> GTDetector:
        """Train a fresh classifier on normal images ``x`` (N, C, H, W) in [0, 1],
        square. ``checkpoint``: as :meth:`~anomaly_edu.detectors.AEDetector.fit`."""
        check_images(x, "training images")
        self.device_ = pick_device(self.device)
        x_all, labels = transformed_batch(x.to(self.device_))
        with seeded(self.seed):
            self.model_ = self.new_model(tuple(x.shape[1:])).to(self.device_)
            self.history_ = train(
                self.model_,
                x_all,
                labels,
                batch_loss=classification_loss,
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                seed=self.seed,
                progress=self.progress,
                desc="GT",
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                settings=self.checkpoint_settings(),
            )
        return self

    def _log_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted("model_")
        return right_transform_log_probabilities(self.model_, check_images(x).to(self.device_))

    def transform_probabilities(self, x: torch.Tensor) -> np.ndarray:
        """p(t | T_t(x)), the probability the classifier gives the right
        transformation, for every image of ``x`` (rows) and transformation t
        (columns, in the order of :data:`GEOMETRIC_TRANSFORMS`): shape (N, 8)."""
        return self._log_probabilities(x).exp().cpu().numpy()

    def anomaly_score(self, x: torch.Tensor, scoring: str | None = None) -> np.ndarray:
        """:func:`gt_score` per image of ``x`` (``scoring`` defaults to the
        detector's); higher = more anomalous."""
        scoring = check_scoring(scoring or self.scoring)  # refused before any work
        return gt_score(self._log_probabilities(x), scoring).cpu().numpy()
