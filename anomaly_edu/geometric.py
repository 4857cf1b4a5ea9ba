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
  surprise at the right answer, which weighs one confident mistake more;
* ``"dirichlet"``, the score the GT code runs: for each transformation t, a
  Dirichlet distribution fitted (maximum likelihood) to the classifier's whole
  softmax on the normal training images transformed by t; an image's score is
  minus the sum over t of the log-density (up to a constant) of its softmax
  under t's distribution, ``-sum_t sum_k (alpha_tk - 1) log p_k(T_t(x))``.

Higher = more anomalous for all three.
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
SCORINGS = ("probability", "log", "dirichlet")

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


def transform_log_softmax(model: torch.nn.Module, x: torch.Tensor, images_per_pass: int = 2048) -> torch.Tensor:
    """The classifier's log-softmax over the transformations for every image of
    ``x`` under every transformation t: shape (N, 8 transformations applied,
    8 answers). All 8 transformed copies of a chunk of images go through
    ``model`` in one batch. Lecture 6."""
    n_transforms = len(GEOMETRIC_TRANSFORMS)
    model.eval()

    def log_softmax(batch):
        log_p = F.log_softmax(model(transformed_batch(batch)[0]), dim=1)  # (8B, 8): transformation-major
        return log_p.view(n_transforms, len(batch), n_transforms).transpose(0, 1)

    return predict_in_batches(log_softmax, x, max(1, images_per_pass // n_transforms))


def right_transform_log_probabilities(
    model: torch.nn.Module, x: torch.Tensor, images_per_pass: int = 2048
) -> torch.Tensor:
    """log p(t | T_t(x)) for every image of ``x`` and every transformation t:
    shape (N, 8), the diagonal of :func:`transform_log_softmax`. Lecture 6."""
    return transform_log_softmax(model, x, images_per_pass).diagonal(dim1=1, dim2=2)


def inverse_digamma(y: torch.Tensor, newton_steps: int = 5) -> torch.Tensor:
    """The x > 0 with digamma(x) = y, elementwise: Minka's starting point, then
    Newton's method (digamma is increasing, so the root is unique). Lecture 6."""
    euler_gamma = 0.5772156649015329
    x = torch.where(y >= -2.22, torch.exp(y) + 0.5, -1 / (y + euler_gamma))
    for _ in range(newton_steps):
        x = x - (torch.special.digamma(x) - y) / torch.special.polygamma(1, x)
    return x


def fit_dirichlet(log_p: torch.Tensor, iterations: int = 1000, tolerance: float = 1e-9) -> torch.Tensor:
    """Maximum-likelihood parameters alpha (K,) of a Dirichlet distribution
    from the logs of N observed probability vectors ``log_p`` (N, K), by
    Minka's fixed point: alpha_k <- inverse_digamma(digamma(sum alpha) +
    mean log p_k), which converges from any positive start (here: all ones).
    In float64. Lecture 6."""
    mean_log_p = log_p.double().mean(0)
    alpha = torch.ones_like(mean_log_p)
    for _ in range(iterations):
        new = inverse_digamma(torch.special.digamma(alpha.sum()) + mean_log_p)
        if (new - alpha).abs().max() < tolerance:
            return new
        alpha = new
    return alpha


def check_scoring(scoring: str) -> str:
    """``scoring`` if it is one of :data:`SCORINGS`, else a ValueError. Lecture 6."""
    if scoring not in SCORINGS:
        raise ValueError(
            f"unknown scoring {scoring!r}; choose 'dirichlet' (the GT code's), 'probability' (the GT code's "
            "simplified score: minus the mean probability of the right transformation) or 'log' (the mean of -log p)"
        )
    return scoring


def gt_score(log_softmax: torch.Tensor, scoring: str, alphas: torch.Tensor | None = None) -> torch.Tensor:
    """The anomaly score of each image from the classifier's log-softmax of its
    transformed copies (N, 8, 8), see :func:`transform_log_softmax`:
    ``"probability"``, minus the mean of the probabilities of the right
    transformations (the GT code's simplified normality score, negated);
    ``"log"``, the mean of their ``-log p``; ``"dirichlet"``, minus the sum over
    the transformations of the Dirichlet log-density (without its constant)
    under ``alphas`` (8, 8), one row per transformation (:func:`fit_dirichlet`).
    Higher = more anomalous. Lecture 6."""
    if check_scoring(scoring) == "dirichlet":
        if alphas is None:
            raise ValueError("the dirichlet scoring needs the alphas fitted on the normal training images")
        return -((alphas - 1) * log_softmax.double()).sum((1, 2)).float()
    log_right = log_softmax.diagonal(dim1=1, dim2=2)
    if scoring == "probability":
        return -log_right.exp().mean(1)
    return -log_right.mean(1)


class GTDetector(Detector):
    """GT as a detector (see the module's docstring). Lecture 6.

    ``fit(x)`` trains a fresh :class:`TransformClassifier` with cross-entropy
    on the 8 transformed copies of every normal image (mini-batches of
    ``batch_size`` transformed images, shuffled together), then fits each
    transformation's Dirichlet on the training images. ``anomaly_score(x)`` is
    :func:`gt_score` with ``scoring``: ``"dirichlet"`` (the GT code's, the full
    profile's), ``"probability"`` (the code's simplified score) or ``"log"``
    (the course's, the quick profile's); higher = more anomalous.
    ``anomaly_score(x, scoring="log")`` reuses the fitted network with another
    scoring, so all three are measured on the same run. Fitted: ``model_``,
    ``dirichlet_alphas_`` (8, 8), ``history_`` (mean loss per epoch), ``device_``.

    Read from the GT code (izikgo/AnomalyDetectionTransformations at 6327041,
    ``experiments.py``, ``_transformations_experiment``): its "simplified
    normality score" (lines 55-65, commented out) predicts, for each
    transformation t, the softmax of the images transformed by t and keeps the
    probability of t, then averages these probabilities over the
    transformations: a normality score (higher = more normal), whose negative
    is our ``"probability"`` score. The score it runs (lines 67-111) is our
    ``"dirichlet"``: it fits a Dirichlet per transformation to the softmax of
    the transformed training images and sums the test images' log-densities
    (the code starts the fixed point from a moment estimate; we start from
    ones: the maximum is the same). Other differences from that code, which we keep:

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
        training_log_softmax = transform_log_softmax(self.model_, x.to(self.device_))  # (N, 8, 8)
        self.dirichlet_alphas_ = torch.stack([fit_dirichlet(training_log_softmax[:, t]) for t in range(8)])
        return self

    def _log_softmax(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted("model_")
        return transform_log_softmax(self.model_, check_images(x).to(self.device_))

    def transform_probabilities(self, x: torch.Tensor) -> np.ndarray:
        """p(t | T_t(x)), the probability the classifier gives the right
        transformation, for every image of ``x`` (rows) and transformation t
        (columns, in the order of :data:`GEOMETRIC_TRANSFORMS`): shape (N, 8)."""
        return self._log_softmax(x).diagonal(dim1=1, dim2=2).exp().cpu().numpy()

    def anomaly_score(self, x: torch.Tensor, scoring: str | None = None) -> np.ndarray:
        """:func:`gt_score` per image of ``x`` (``scoring`` defaults to the
        detector's); higher = more anomalous."""
        scoring = check_scoring(scoring or self.scoring)  # refused before any work
        alphas = getattr(self, "dirichlet_alphas_", None)
        return gt_score(self._log_softmax(x), scoring, alphas).cpu().numpy()
