"""Anomaly detectors with scikit-learn's habits: ``fit(x_normal)`` on normal
images only, then ``score(x)`` returns one number per image, higher = more
anomalous. Introduced in Lecture 1.

- :class:`AEDetector`: reconstruction error of an autoencoder
- :class:`DAEDetector`: the same, trained to remove Gaussian noise
- :class:`OCSVMDetector`: scikit-learn's one-class SVM on raw pixels
- :class:`DeepSVDDDetector`: distance to a centre in a learned feature space
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import OneClassSVM

from .data import check_images
from .models import DeepSVDDNet, MLPAutoencoder
from .training import denoising_loss, pick_device, predict_in_batches, reconstruction_loss, set_seed, train


def reconstruction_error(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Per-image sum of squared differences between ``x`` and ``model(x)``. Lecture 1."""
    model.eval()
    return predict_in_batches(lambda b: ((model(b) - b) ** 2).flatten(1).sum(1), x, batch_size)


class AEDetector:
    """Autoencoder detector: train an autoencoder on normal images, score an
    image by its reconstruction error (sum of squared pixel errors). Lecture 1.

    ``model`` defaults to the talk's :class:`~anomaly_edu.models.MLPAutoencoder`.
    """

    def __init__(self, model: torch.nn.Module | None = None, *, epochs: int = 15,
                 batch_size: int = 128, lr: float = 1e-3, seed: int = 0, device=None,
                 progress: bool = True):
        self.model, self.epochs, self.batch_size, self.lr = model, epochs, batch_size, lr
        self.seed, self.device, self.progress = seed, pick_device(device), progress
        self.history_: list[float] = []

    def default_model(self, image_shape: tuple) -> torch.nn.Module:
        """The network ``fit`` trains when none was given: the talk's MLP."""
        return MLPAutoencoder(image_shape=image_shape)

    def batch_loss(self):
        """The batch loss this detector trains with (for the training loop)."""
        return reconstruction_loss

    def fit(self, x: torch.Tensor) -> "AEDetector":
        """Train on normal images ``x`` (N, C, H, W) in [0, 1]."""
        check_images(x, "training images")
        set_seed(self.seed)
        if self.model is None:
            self.model = self.default_model(tuple(x.shape[1:]))
        self.model.to(self.device)
        self.history_ = train(self.model, x.to(self.device), batch_loss=self.batch_loss(),
                              epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                              seed=self.seed, progress=self.progress, desc=type(self).__name__)
        return self

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder's reconstruction of ``x``."""
        self._check_fitted()
        return predict_in_batches(self.model, check_images(x).to(self.device))

    def score(self, x: torch.Tensor) -> np.ndarray:
        """Reconstruction error per image; higher = more anomalous."""
        self._check_fitted()
        return reconstruction_error(self.model, check_images(x).to(self.device)).cpu().numpy()

    def _check_fitted(self):
        if not self.history_:
            raise RuntimeError(f"call {type(self).__name__}.fit(x_normal) before scoring")


class DAEDetector(AEDetector):
    """Denoising autoencoder: trained to reconstruct the clean image from a copy
    with Gaussian noise (``noise_std``); scored on clean images. The published
    code does not give its noise level; the course uses 0.2 and shows the effect
    of the choice. Lecture 1."""

    def __init__(self, model: torch.nn.Module | None = None, *, noise_std: float = 0.2, **kwargs):
        super().__init__(model, **kwargs)
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.noise_std = noise_std

    def batch_loss(self):
        return denoising_loss(self.noise_std)


class OCSVMDetector:
    """One-class SVM (scikit-learn) on flattened pixels; score = minus the SVM's
    decision function. ``max_train`` caps the number of training images (a
    random, seeded subset) because the SVM's cost grows quadratically. Lecture 1."""

    def __init__(self, *, kernel: str = "rbf", nu: float = 0.1, gamma="scale",
                 max_train: int | None = None, seed: int = 0):
        self.kernel, self.nu, self.gamma, self.max_train, self.seed = kernel, nu, gamma, max_train, seed
        self.svm_: OneClassSVM | None = None

    def fit(self, x: torch.Tensor) -> "OCSVMDetector":
        """Fit on normal images ``x`` (N, C, H, W) in [0, 1]."""
        features = check_images(x, "training images").flatten(1).cpu().numpy()
        if self.max_train is not None and len(features) > self.max_train:
            keep = np.random.default_rng(self.seed).choice(len(features), self.max_train, replace=False)
            features = features[keep]
        self.svm_ = OneClassSVM(kernel=self.kernel, nu=self.nu, gamma=self.gamma).fit(features)
        return self

    def score(self, x: torch.Tensor) -> np.ndarray:
        """Minus the SVM's signed distance to its boundary; higher = more anomalous."""
        if self.svm_ is None:
            raise RuntimeError("call OCSVMDetector.fit(x_normal) before scoring")
        return -self.svm_.decision_function(check_images(x).flatten(1).cpu().numpy())


def global_contrast_normalize(x: torch.Tensor) -> torch.Tensor:
    """Deep SVDD's preprocessing: subtract each image's mean, divide by its mean
    absolute deviation (global contrast normalisation with the L1 norm). Lecture 1."""
    centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
    scale = centred.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    return centred / scale


class DeepSVDDDetector:
    """One-class Deep SVDD (Ruff et al. 2018): map normal images close to a fixed
    centre ``c`` and score by the squared distance to it.

    The centre is the mean output of the untrained network (entries closer to 0
    than 0.1 are pushed to +-0.1, so the trivial all-zero solution is avoided).
    Preprocessing: global contrast normalisation, then min-max scaling with the
    minimum and maximum of the training set. Adam, lr 1e-4, batch 200. Lecture 1.
    """

    def __init__(self, *, epochs: int = 10, batch_size: int = 200, lr: float = 1e-4,
                 weight_decay: float = 1e-6, seed: int = 0, device=None, progress: bool = True):
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.seed, self.device, self.progress = seed, pick_device(device), progress
        self.net = None
        self.center_ = None

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = global_contrast_normalize(check_images(x).to(self.device))
        return (x - self.min_) / (self.max_ - self.min_)

    def fit(self, x: torch.Tensor) -> "DeepSVDDDetector":
        """Train on normal images ``x`` (N, 1, 28, 28) in [0, 1]."""
        check_images(x, "training images")
        set_seed(self.seed)
        gcn = global_contrast_normalize(x.to(self.device))
        self.min_, self.max_ = gcn.min(), gcn.max()
        x = self._preprocess(x)
        self.net = DeepSVDDNet().to(self.device)
        self.net.eval()
        center = predict_in_batches(self.net, x).mean(0)
        center[(center.abs() < 0.1) & (center < 0)] = -0.1
        center[(center.abs() < 0.1) & (center >= 0)] = 0.1
        self.center_ = center

        def distance_loss(net, batch, y=None):
            return ((net(batch) - self.center_) ** 2).sum(1).mean()

        self.history_ = train(self.net, x, batch_loss=distance_loss, epochs=self.epochs,
                              batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                              seed=self.seed, progress=self.progress, desc="DeepSVDD")
        return self

    def score(self, x: torch.Tensor) -> np.ndarray:
        """Squared distance of each image's code to the centre; higher = more anomalous."""
        if self.center_ is None:
            raise RuntimeError("call DeepSVDDDetector.fit(x_normal) before scoring")
        self.net.eval()
        codes = predict_in_batches(self.net, self._preprocess(x))
        return ((codes - self.center_) ** 2).sum(1).cpu().numpy()


def make_detector(method: str, profile: dict, *, seed: int = 0, device=None, progress: bool = True):
    """Build the detector called ``method`` ("ae", "dae", "ocsvm", "dsvdd", and
    from Lecture 4 on "arae" and "arae-union") with the settings of one profile (see
    :mod:`anomaly_edu.profiles`). Lecture 1."""
    s = dict(profile[method]) if method in profile else None
    if method == "ae":
        return AEDetector(seed=seed, device=device, progress=progress, **s)
    if method == "dae":
        return DAEDetector(seed=seed, device=device, progress=progress, **s)
    if method == "ocsvm":
        return OCSVMDetector(seed=seed, **s)
    if method == "dsvdd":
        return DeepSVDDDetector(seed=seed, device=device, progress=progress, **s)
    if method == "arae":
        from .arae import ARAEDetector  # taught in Lecture 4

        return ARAEDetector(seed=seed, device=device, progress=progress, **s)
    if method == "arae-union":
        from .arae import UnionARAEDetector  # taught in Lecture 4

        return UnionARAEDetector(seed=seed, device=device, progress=progress, **s)
    raise ValueError(f"unknown method {method!r}; known methods: ae, dae, ocsvm, dsvdd, arae, arae-union")
