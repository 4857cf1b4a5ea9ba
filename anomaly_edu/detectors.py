"""Anomaly detectors with scikit-learn's habits. Introduced in Lecture 1.

Every detector of the course (here, and ARAE in Lecture 4) follows :class:`Detector`:

- ``__init__`` stores its settings as given; the defaults are the quick
  profile's (:mod:`anomaly_edu.profiles`);
- ``fit(x_normal)`` trains a fresh model on normal images only, every time it
  is called, and returns the detector;
- ``anomaly_score(x)`` returns one **anomaly score** per image as a NumPy
  array: **higher means more anomalous**.

Why ``anomaly_score`` and not a scikit-learn name: in scikit-learn, ``score(X, y)``
is one number for a whole data set (how well a model fits it), and both
``score_samples`` and ``decision_function`` of its outlier detectors give
*higher* values to *more normal* samples (PyOD's ``decision_function`` means
the opposite). Each of those names would say something else to a reader who
knows one of the libraries; ``anomaly_score`` says what it returns.

The detectors here:

- :class:`MeanImageDetector`: squared distance to the mean training image (a trivial baseline)
- :class:`PCADetector`: reconstruction error of PCA on raw pixels (the other trivial baseline)
- :class:`AEDetector`: reconstruction error of an autoencoder
- :class:`DAEDetector`: the same, trained to remove Gaussian noise
- :class:`OCSVMDetector`: scikit-learn's one-class SVM on raw pixels
- :class:`DeepSVDDDetector`: distance to a centre in a learned feature space

:mod:`anomaly_edu.experiments.methods` lists them (and the later lectures' detectors) by name.
"""

from __future__ import annotations

__lecture__ = 1

import abc
import copy
import inspect

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.svm import OneClassSVM

from .data import check_images
from .models import DeepSVDDNet, MLPAutoencoder
from .profiles import PROFILES
from .training import denoising_loss, pick_device, predict_in_batches, reconstruction_loss, seeded, train

QUICK = PROFILES["quick"]  # the detectors' default settings


class Detector(abc.ABC):
    """The interface every detector follows (see the module's docstring); a
    detector class must define both methods. Lecture 1."""

    @abc.abstractmethod
    def fit(self, x: torch.Tensor) -> Detector:
        """Train a fresh model on normal images ``x`` (N, C, H, W) in [0, 1]; return ``self``."""

    @abc.abstractmethod
    def anomaly_score(self, x: torch.Tensor) -> np.ndarray:
        """One anomaly score per image of ``x``; higher = more anomalous."""

    @classmethod
    def param_names(cls) -> list[str]:
        """The names of the settings ``__init__`` takes, those a subclass passes
        on to its parent's ``__init__`` (``**training``) included."""
        names = []
        for klass in cls.__mro__:
            for name, parameter in inspect.signature(klass.__dict__.get("__init__", object)).parameters.items():
                passed_on = parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
                if name != "self" and not passed_on and name not in names:
                    names.append(name)
        return names

    def get_params(self) -> dict:
        """The settings given to ``__init__`` (scikit-learn's name for them)."""
        return {name: getattr(self, name) for name in self.param_names()}

    def checkpoint_settings(self) -> dict:
        """What a training checkpoint of this detector must have been written
        with: its class and settings, but not where it runs or how it reports
        (a run may resume on another device), nor its number of epochs (a
        checkpoint of 10 epochs goes on into a fit of 20). Lecture 1."""
        ignored = ("device", "progress", "epochs")
        return {"detector": type(self).__name__, **{k: v for k, v in self.get_params().items() if k not in ignored}}

    def _check_fitted(self, fitted_attribute: str) -> None:
        if getattr(self, fitted_attribute, None) is None:
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(x_normal) before score")


# ---------------------------------------------------------------- the trivial baselines
# Every table shows them: a deep detector is only worth its training if it beats the average picture.


class MeanImageDetector(Detector):
    """The simplest detector: score an image by its squared distance to the mean
    training image (sum of squared pixel differences, the units of the
    autoencoder's reconstruction error). It has no settings. Lecture 1."""

    def fit(self, x: torch.Tensor) -> MeanImageDetector:
        """Average the normal images ``x`` (N, C, H, W) in [0, 1]."""
        self.mean_ = check_images(x, "training images").mean(0)
        return self

    def anomaly_score(self, x: torch.Tensor) -> np.ndarray:
        """Squared distance of each image to the mean image; higher = more anomalous."""
        with torch.no_grad():
            return self.differentiable_score(check_images(x)).cpu().numpy()

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """The score of :meth:`anomaly_score` as a tensor that gradients flow through
        (for attacks on the detector, Lecture 7)."""
        self._check_fitted("mean_")
        return ((x - self.mean_.to(x.device)) ** 2).flatten(1).sum(1)


class PCADetector(Detector):
    """PCA on flattened pixels (scikit-learn): project an image on the first
    ``n_components`` principal components of the normal images and score it by
    the squared error of that reconstruction (a linear autoencoder). An int
    ``n_components`` is a number of components, a float in (0, 1) the fraction of
    the training images' variance to keep. ``max_train`` caps the number of
    training images (a random, seeded subset; None: all). Lecture 1."""

    def __init__(
        self,
        *,
        n_components: int | float = QUICK["pca"]["n_components"],
        max_train: int | None = QUICK["pca"]["max_train"],
        seed: int = 0,
    ):
        is_int = isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool)
        if not (is_int and n_components >= 1 or isinstance(n_components, float) and 0 < n_components < 1):
            raise ValueError(
                f"n_components must be a number of components (an int >= 1) or a fraction of variance "
                f"to keep (a float strictly between 0 and 1), got {n_components!r}"
            )
        if max_train is not None and (isinstance(max_train, bool) or not isinstance(max_train, (int, np.integer))):
            raise ValueError(f"max_train must be a number of images (an int >= 1) or None for all, got {max_train!r}")
        if max_train is not None and max_train < 1:
            raise ValueError(f"max_train must be >= 1 (or None for all training images), got {max_train}")
        self.n_components, self.max_train, self.seed = n_components, max_train, seed

    def fit(self, x: torch.Tensor) -> PCADetector:
        """Fit a fresh PCA on normal images ``x`` (N, C, H, W) in [0, 1]."""
        features = check_images(x, "training images").flatten(1).cpu().double().numpy()
        if self.max_train is not None and len(features) > self.max_train:
            keep = np.random.default_rng(self.seed).choice(len(features), self.max_train, replace=False)
            features = features[keep]
        most = min(features.shape)
        if isinstance(self.n_components, float):
            if len(features) < 2:
                raise ValueError("PCA needs at least 2 training images to measure their variance")
        elif self.n_components > most:
            raise ValueError(
                f"n_components={self.n_components} but PCA can find at most {most} components in "
                f"{len(features)} training images of {features.shape[1]} pixels"
                + (f" (max_train={self.max_train})" if self.max_train is not None else "")
                + f": ask for at most {most}, a fraction of variance such as 0.9, or more training images"
            )
        self.pca_ = PCA(n_components=self.n_components, random_state=self.seed).fit(features)
        return self

    def anomaly_score(self, x: torch.Tensor) -> np.ndarray:
        """Squared error of the projection on the components; higher = more anomalous."""
        self._check_fitted("pca_")
        features = check_images(x).flatten(1).cpu().double().numpy()
        reconstructed = self.pca_.inverse_transform(self.pca_.transform(features))
        return ((features - reconstructed) ** 2).sum(1)

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """The score of :meth:`anomaly_score` computed in torch, so that gradients flow
        through it (for attacks on the detector, Lecture 7): the part of the
        centred image that the components do not span, squared and summed."""
        self._check_fitted("pca_")
        components = torch.as_tensor(self.pca_.components_, dtype=x.dtype, device=x.device)
        centred = x.flatten(1) - torch.as_tensor(self.pca_.mean_, dtype=x.dtype, device=x.device)
        residual = centred - (centred @ components.T) @ components
        return (residual**2).sum(1)


def reconstruction_error(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Per-image sum of squared differences between ``x`` and ``model(x)``. Lecture 1."""
    model.eval()
    return predict_in_batches(lambda b: ((model(b) - b) ** 2).flatten(1).sum(1), x, batch_size)


class AEDetector(Detector):
    """Autoencoder detector: train an autoencoder on normal images, score an
    image by its reconstruction error (sum of squared pixel errors). Lecture 1.

    ``model`` is the network to train; ``fit`` trains a fresh copy of it (the
    given module itself is never changed). By default it is the talk's
    :class:`~anomaly_edu.models.MLPAutoencoder`. The fitted network is ``model_``.
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        *,
        epochs: int = QUICK["ae"]["epochs"],
        batch_size: int = QUICK["ae"]["batch_size"],
        lr: float = QUICK["ae"]["lr"],
        seed: int = 0,
        device=None,
        progress: bool = True,
    ):
        self.model, self.epochs, self.batch_size, self.lr = model, epochs, batch_size, lr
        self.seed, self.device, self.progress = seed, device, progress

    def default_model(self, image_shape: tuple) -> torch.nn.Module:
        """The network ``fit`` trains when none was given: the talk's MLP."""
        return MLPAutoencoder(image_shape=image_shape)

    def new_model(self, image_shape: tuple) -> torch.nn.Module:
        """A fresh, untrained network: a copy of ``model``, or :meth:`default_model`.
        Call it with the random generators seeded (``fit`` does)."""
        return copy.deepcopy(self.model) if self.model is not None else self.default_model(image_shape)

    def batch_loss(self):
        """The batch loss this detector trains with (for the training loop)."""
        return reconstruction_loss

    def fit(self, x: torch.Tensor, checkpoint=None, checkpoint_every: int = 1) -> AEDetector:
        """Train a fresh network on normal images ``x`` (N, C, H, W) in [0, 1].
        With a ``checkpoint`` file (written every ``checkpoint_every`` epochs),
        an interrupted fit resumes where it stopped (see
        :func:`~anomaly_edu.training.run_epochs`)."""
        check_images(x, "training images")
        self.device_ = pick_device(self.device)
        with seeded(self.seed):
            self.model_ = self.new_model(tuple(x.shape[1:])).to(self.device_)
            self.history_ = train(
                self.model_,
                x.to(self.device_),
                batch_loss=self.batch_loss(),
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                seed=self.seed,
                progress=self.progress,
                desc=type(self).__name__,
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                settings=self.checkpoint_settings(),
            )
        return self

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The fitted autoencoder's reconstruction of ``x``."""
        self._check_fitted("model_")
        return predict_in_batches(self.model_, check_images(x).to(self.device_))

    def anomaly_score(self, x: torch.Tensor) -> np.ndarray:
        """Reconstruction error per image; higher = more anomalous."""
        self._check_fitted("model_")
        return reconstruction_error(self.model_, check_images(x).to(self.device_)).cpu().numpy()

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        """The score of :meth:`anomaly_score` as a tensor that gradients flow through
        (for attacks on the detector, Lecture 7); ``x`` is on the detector's device."""
        self._check_fitted("model_")
        self.model_.eval()
        return ((self.model_(x) - x) ** 2).flatten(1).sum(1)


class DAEDetector(AEDetector):
    """Denoising autoencoder: trained to reconstruct the clean image from a copy
    with Gaussian noise (``noise_std``); scored on clean images. The published
    code does not give its noise level; the course uses 0.2 and shows the effect
    of the choice. Lecture 1."""

    def __init__(
        self, model: torch.nn.Module | None = None, *, noise_std: float = QUICK["dae"]["noise_std"], **training
    ):
        super().__init__(model, **training)  # training: AEDetector's settings (epochs, lr, ...)
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.noise_std = noise_std

    def batch_loss(self):
        return denoising_loss(self.noise_std)


class OCSVMDetector(Detector):
    """One-class SVM (scikit-learn) on flattened pixels; score = minus the SVM's
    decision function. ``max_train`` caps the number of training images (a
    random, seeded subset) because the SVM's cost grows quadratically. Lecture 1."""

    def __init__(
        self,
        *,
        kernel: str = QUICK["ocsvm"]["kernel"],
        nu: float = QUICK["ocsvm"]["nu"],
        gamma=QUICK["ocsvm"]["gamma"],
        max_train: int | None = QUICK["ocsvm"]["max_train"],
        seed: int = 0,
    ):
        self.kernel, self.nu, self.gamma, self.max_train, self.seed = kernel, nu, gamma, max_train, seed

    def fit(self, x: torch.Tensor) -> OCSVMDetector:
        """Fit a fresh SVM on normal images ``x`` (N, C, H, W) in [0, 1]."""
        features = check_images(x, "training images").flatten(1).cpu().numpy()
        if self.max_train is not None and len(features) > self.max_train:
            keep = np.random.default_rng(self.seed).choice(len(features), self.max_train, replace=False)
            features = features[keep]
        with seeded(self.seed):  # libsvm's shuffling draws its seed from NumPy's global generator
            self.svm_ = OneClassSVM(kernel=self.kernel, nu=self.nu, gamma=self.gamma).fit(features)
        return self

    def anomaly_score(self, x: torch.Tensor) -> np.ndarray:
        """Minus the SVM's signed distance to its boundary; higher = more anomalous."""
        self._check_fitted("svm_")
        return -self.svm_.decision_function(check_images(x).flatten(1).cpu().numpy())


def global_contrast_normalize(x: torch.Tensor) -> torch.Tensor:
    """Deep SVDD's preprocessing: subtract each image's mean, divide by its mean
    absolute deviation (global contrast normalisation with the L1 norm). Lecture 1."""
    centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
    scale = centred.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
    return centred / scale


class DeepSVDDDetector(Detector):
    """One-class Deep SVDD (Ruff et al. 2018): map normal images close to a fixed
    centre ``c`` and score by the squared distance to it.

    The centre is the mean output of the untrained network (entries closer to 0
    than 0.1 are pushed to +-0.1, so the trivial all-zero solution is avoided).
    Preprocessing: global contrast normalisation, then min-max scaling with the
    minimum and maximum of the training set. Adam, lr 1e-4, batch 200.

    **Not as published:** Ruff et al. first pretrain the network as the encoder of
    an autoencoder and start Deep SVDD from those weights; the course starts from
    random weights (the simpler method Lecture 1 teaches). The network takes
    1 x 28 x 28 images only. Lecture 1.
    """

    def __init__(
        self,
        *,
        epochs: int = QUICK["dsvdd"]["epochs"],
        batch_size: int = QUICK["dsvdd"]["batch_size"],
        lr: float = QUICK["dsvdd"]["lr"],
        weight_decay: float = QUICK["dsvdd"]["weight_decay"],
        seed: int = 0,
        device=None,
        progress: bool = True,
    ):
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.seed, self.device, self.progress = seed, device, progress

    def new_model(self, image_shape: tuple = DeepSVDDNet.image_shape) -> torch.nn.Module:
        """A fresh, untrained network (it takes 1 x 28 x 28 images only)."""
        return DeepSVDDNet()

    def _preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = global_contrast_normalize(check_images(x).to(self.device_))
        return (x - self.min_) / (self.max_ - self.min_)

    def fit(self, x: torch.Tensor, checkpoint=None, checkpoint_every: int = 1) -> DeepSVDDDetector:
        """Train a fresh network on normal images ``x`` (N, 1, 28, 28) in [0, 1],
        resuming from ``checkpoint`` as :meth:`AEDetector.fit` does."""
        check_images(x, "training images")
        if tuple(x.shape[1:]) != DeepSVDDNet.image_shape:
            raise ValueError(
                f"Deep SVDD's network takes {DeepSVDDNet.image_shape} images, got "
                f"{tuple(x.shape[1:])}; use it on MNIST-like data"
            )
        self.device_ = pick_device(self.device)
        gcn = global_contrast_normalize(x.to(self.device_))
        self.min_, self.max_ = gcn.min(), gcn.max()
        x = self._preprocess(x)
        with seeded(self.seed):
            self.net_ = self.new_model().to(self.device_)
            self.net_.eval()
            center = predict_in_batches(self.net_, x).mean(0)
            center[(center.abs() < 0.1) & (center < 0)] = -0.1
            center[(center.abs() < 0.1) & (center >= 0)] = 0.1

            def distance_loss(net, batch, y=None):
                return ((net(batch) - center) ** 2).sum(1).mean()

            self.history_ = train(
                self.net_,
                x,
                batch_loss=distance_loss,
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                weight_decay=self.weight_decay,
                seed=self.seed,
                progress=self.progress,
                desc="DeepSVDD",
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                settings=self.checkpoint_settings(),
            )
        self.center_ = center
        return self

    def anomaly_score(self, x: torch.Tensor) -> np.ndarray:
        """Squared distance of each image's code to the centre; higher = more anomalous."""
        self._check_fitted("center_")
        codes = predict_in_batches(self.net_, self._preprocess(x))
        return ((codes - self.center_) ** 2).sum(1).cpu().numpy()
