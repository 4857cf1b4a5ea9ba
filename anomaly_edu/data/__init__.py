"""Data: where the data lives, the MNIST-like loaders, and the one-class splits.

Introduced in Lecture 1. Every image tensor this module returns has shape
(N, C, H, W), dtype float32 and values in [0, 1]; labels are int64.

The data root is one setting: the ``ANOMALY_EDU_DATA`` environment variable, or
``~/.cache/anomaly_edu`` when it is unset. Loaders download into the data root
(through torchvision) when a data set is missing; when that is impossible they
raise :class:`DatasetNotFoundError`, which says which data set, which path was
searched and how to provide it. Nothing here ever falls back to other data.
"""

from __future__ import annotations

__lecture__ = 1

import gzip
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATA_ENV_VAR = "ANOMALY_EDU_DATA"

# name -> (torchvision class name, folder under the data root, number of classes)
DATASETS = {
    "mnist": ("MNIST", "MNIST", 10),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST", 10),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", 10),
}

_IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not under the data root and could not be downloaded."""


class CorruptDataError(ValueError):
    """A data file exists but is truncated or not what it claims to be."""


# ---------------------------------------------------------------- data root


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Return the data root: ``root`` if given, else $ANOMALY_EDU_DATA, else a
    cache folder in the home directory. Lecture 1."""
    if root is None or str(root) == "":
        root = os.environ.get(DATA_ENV_VAR) or Path.home() / ".cache" / "anomaly_edu"
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"the data root {path} is a file, not a folder; point {DATA_ENV_VAR} (or DATA_ROOT) at a folder"
        )
    return path


def _check_name(name: str) -> str:
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    return key


def _first_line(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"


def _missing_message(name: str, searched: Path, reason: str) -> str:
    return (
        f"{name} was not found under the data root: searched {searched}. {reason} "
        f"Provide it by running once on a machine with internet "
        f"(`python -m anomaly_edu data --download {name}`), or copy torchvision's "
        f"layout of {name} there, or point {DATA_ENV_VAR} at a folder that holds it."
    )


# ---------------------------------------------------------------- IDX files (MNIST-like)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format, plain or .gz) into a uint8 array,
    checking its header and length. Lecture 1."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise CorruptDataError(f"cannot read {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise CorruptDataError(
            f"{path} is not an IDX file of unsigned bytes (bad magic number); delete it and download the data set again"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{path} is truncated inside its header; delete it and download again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise CorruptDataError(
            f"{path} holds {len(raw) - header} bytes of data but its header promises "
            f"{expected} (shape {shape}): the file is truncated or corrupt; delete it "
            f"and download the data set again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / (stem + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _download(name: str, root: Path) -> None:
    """Let torchvision download a data set into the data root.

    The addresses and checksums are torchvision's, not ours: its MNIST class
    tries its own list of mirrors in turn (a copy on Amazon S3, then Yann
    LeCun's site), Fashion-MNIST and CIFAR-10 have one address each, and every
    file is checked against the MD5 sum torchvision lists. When they all fail,
    the loader's :class:`DatasetNotFoundError` says where to put a copy by hand
    (torchvision's layout under the data root), and the next call finds it."""
    import torchvision

    tv_name, _, _ = DATASETS[name]
    dataset_class = getattr(torchvision.datasets, tv_name)
    for train in (True, False):
        dataset_class(root=str(root), train=train, download=True)


def _load_idx_dataset(name: str, root: Path, train: bool, download: bool):
    folder = root / DATASETS[name][1] / "raw"
    stems = _IDX_FILES[train]
    paths = [_find_idx(folder, stem) for stem in stems]
    if None in paths and download:
        try:
            _download(name, root)
        except Exception as err:  # no network, no permission, ...
            raise DatasetNotFoundError(
                _missing_message(name, folder, f"Downloading it failed ({_first_line(err)}).")
            ) from None
        paths = [_find_idx(folder, stem) for stem in stems]
    if None in paths:
        missing = [s for s, p in zip(stems, paths) if p is None]
        raise DatasetNotFoundError(_missing_message(name, folder, f"Missing files: {', '.join(missing)}."))
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise CorruptDataError(
            f"{folder}: images of shape {images.shape} do not match labels of shape "
            f"{labels.shape}; delete the folder and download the data set again"
        )
    return images[:, None, :, :], labels


def _load_cifar10(root: Path, train: bool, download: bool):
    import torchvision

    folder = root / DATASETS["cifar10"][1]
    try:
        dataset = torchvision.datasets.CIFAR10(root=str(root), train=train, download=download)
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DatasetNotFoundError(_missing_message("cifar10", folder, str(err))) from None
    except Exception as err:
        raise DatasetNotFoundError(
            _missing_message("cifar10", folder, f"Downloading it failed ({_first_line(err)}).")
        ) from None
    images = np.asarray(dataset.data).transpose(0, 3, 1, 2)  # N, H, W, C -> N, C, H, W
    return images, np.asarray(dataset.targets)


def load_dataset(
    name: str, train: bool = True, *, root=None, device="cpu", download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a whole split of "mnist", "fashion-mnist" or "cifar10".

    Returns ``(images, labels)``: images float32 in [0, 1] of shape (N, C, H, W)
    on ``device``, labels int64. Downloads into the data root when the files are
    missing and ``download`` is true. Lecture 1.
    """
    name = _check_name(name)
    root = data_root(root)
    if name == "cifar10":
        images, labels = _load_cifar10(root, train, download)
    else:
        images, labels = _load_idx_dataset(name, root, train, download)
    x = torch.from_numpy(np.array(images, copy=True)).to(device=device, dtype=torch.float32) / 255.0
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    return x, y


def available_datasets(root=None) -> dict[str, bool]:
    """Which data sets are present under the data root (without downloading). Lecture 1."""
    root = data_root(root)
    present = {}
    for name, (_, folder, _) in DATASETS.items():
        if name == "cifar10":
            present[name] = (root / folder / "data_batch_1").is_file() and (root / folder / "test_batch").is_file()
        else:
            raw = root / folder / "raw"
            present[name] = all(_find_idx(raw, stem) is not None for stems in _IDX_FILES.values() for stem in stems)
    return present


# ---------------------------------------------------------------- checks on inputs


def check_images(x: torch.Tensor, name: str = "images", *, any_shape: bool = False) -> torch.Tensor:
    """Raise a clear error unless ``x`` is a floating-point batch of images
    (N, C, H, W) with values in [0, 1]; return ``x``. ``any_shape=True`` accepts
    any batch (N, ...), e.g. flattened images, as the attacks do. Lecture 1."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if any_shape and x.ndim < 2:
        raise ValueError(
            f"{name} must be a batch of shape (N, ...), got shape {tuple(x.shape)}; "
            "add a batch axis with x.unsqueeze(0)"
        )
    if not any_shape and x.ndim != 4:
        raise ValueError(
            f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}; "
            f"add a channel axis with x.unsqueeze(1) for (N, H, W) images"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor with values in [0, 1], got dtype {x.dtype}; "
            "convert uint8 images with x.float() / 255"
        )
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):  # also catches NaN
        if not bool(torch.isfinite(x).all()):
            problem = f"{name} contains NaN or infinite values"
        else:
            problem = f"{name} has values in [{x.min().item():.4g}, {x.max().item():.4g}]"
        raise ValueError(
            f"{problem}, but images need values in [0, 1]; pass the images before "
            "normalisation (fold any normalisation into the model)"
        )
    return x


# ---------------------------------------------------------------- one-class splits


@dataclass
class OneClassSplit:
    """A one-class anomaly-detection split. Labels: 1 = anomaly, 0 = normal. Lecture 1."""

    x_train: torch.Tensor  # normal images only
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    normal_classes: tuple[int, ...]
    protocol: int
    test_classes: torch.Tensor  # the original class label of every test image
    # Lecture 6: one ground-truth defect mask per test image (bool, at the size the pixel
    # metrics are computed at; all False for a normal image), or None where there are none
    masks_test: list[np.ndarray] | None = None

    def describe(self) -> str:
        """One line with the split's sizes."""
        return (
            f"protocol {self.protocol}, normal classes {list(self.normal_classes)}: "
            f"train {len(self.x_train)} normal; validation {len(self.x_val)} "
            f"({int(self.y_val.sum())} anomalies); test {len(self.x_test)} "
            f"({int((self.y_test == 0).sum())} normal, {int(self.y_test.sum())} anomalies)"
        )


def _check_classes(normal_classes, labels: torch.Tensor) -> tuple[int, ...]:
    if isinstance(normal_classes, int):
        normal_classes = (normal_classes,)
    normal_classes = tuple(int(c) for c in normal_classes)
    known = sorted(set(labels.tolist()))
    unknown = [c for c in normal_classes if c not in known]
    if not normal_classes or unknown:
        raise ValueError(f"normal class {unknown or normal_classes} does not exist; the data set has classes {known}")
    return normal_classes


def _is_normal(labels: torch.Tensor, normal_classes: tuple[int, ...]) -> torch.Tensor:
    return torch.isin(labels, torch.tensor(normal_classes, device=labels.device))


def protocol2_split(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    normal_classes,
    *,
    val_size: int = 0,
    seed: int = 0,
) -> OneClassSplit:
    """The talk's protocol 2: train on every official training image of the
    normal class(es); test on the whole official test set, anomaly = any other
    class. ``val_size`` normal training images may be held out as validation
    (normal only; protocol 2 has no labelled anomalies before the test). Lecture 1.
    """
    (x_tr, y_tr), (x_te, y_te) = train, test
    normal_classes = _check_classes(normal_classes, y_tr)
    x_normal = x_tr[_is_normal(y_tr, normal_classes)]
    if not 0 <= val_size < len(x_normal):
        raise ValueError(f"val_size must be in [0, {len(x_normal)}), got {val_size}")
    order = torch.randperm(len(x_normal), generator=torch.Generator().manual_seed(seed)).to(x_normal.device)
    x_val = x_normal[order[:val_size]]
    x_train = x_normal[order[val_size:]] if val_size else x_normal
    y_test = (~_is_normal(y_te, normal_classes)).long()
    return OneClassSplit(
        x_train,
        x_val,
        torch.zeros(len(x_val), dtype=torch.long, device=x_val.device),
        x_te,
        y_test,
        normal_classes,
        protocol=2,
        test_classes=y_te,
    )


def protocol1_sizes(
    n_normal: int, anomaly_fraction: float, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> dict[str, int]:
    """Split sizes of protocol 1 for ``n_normal`` normal images: ``fractions`` of
    them for train / validation / test (60/20/20 by default; the test takes the
    remainder), and ``int(n * p / (1 - p))`` anomalies added to validation and
    test so that they make a fraction p of each. Lecture 1."""
    if not 0 < anomaly_fraction < 1:
        raise ValueError(f"anomaly_fraction must be in (0, 1), got {anomaly_fraction}")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    n_train = int(fractions[0] * n_normal)
    n_val = int(fractions[1] * n_normal)
    n_test = n_normal - n_train - n_val
    ratio = anomaly_fraction / (1 - anomaly_fraction)
    return {
        "train": n_train,
        "val_normal": n_val,
        "val_anomalies": int(n_val * ratio),
        "test_normal": n_test,
        "test_anomalies": int(n_test * ratio),
    }


def protocol1_split(
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None,
    normal_classes,
    *,
    anomaly_fraction: float,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> OneClassSplit:
    """The talk's protocol 1 (the ARAE code's): official train and test splits
    merged and shuffled; normal images split 60/20/20 (``fractions``) into train,
    validation and test; anomalies appended to the test set so that they make a fraction
    ``anomaly_fraction`` of it, and the next block of anomalies to validation in
    the same proportion. Pass ``test=None`` for a data set with one split only.
    Lecture 1 (used again for COIL-100 in Lecture 4).
    """
    x_all, y_all = train
    if test is not None:
        x_all, y_all = torch.cat([x_all, test[0]]), torch.cat([y_all, test[1]])
    normal_classes = _check_classes(normal_classes, y_all)
    order = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed)).to(x_all.device)
    x_all, y_all = x_all[order], y_all[order]
    normal = _is_normal(y_all, normal_classes)
    x_norm, x_anom = x_all[normal], x_all[~normal]
    n = protocol1_sizes(len(x_norm), anomaly_fraction, fractions)
    needed = n["test_anomalies"] + n["val_anomalies"]
    if needed > len(x_anom):
        raise ValueError(
            f"protocol 1 needs {needed} anomalies for anomaly_fraction="
            f"{anomaly_fraction} but only {len(x_anom)} exist; lower it"
        )
    a, b = n["train"], n["train"] + n["val_normal"]
    x_train, x_val_n, x_test_n = x_norm[:a], x_norm[a:b], x_norm[b:]
    x_test_a = x_anom[: n["test_anomalies"]]
    x_val_a = x_anom[n["test_anomalies"] : needed]
    test_classes = torch.cat([y_all[normal][b:], y_all[~normal][: n["test_anomalies"]]])

    def labelled(normals, anomalies):
        x = torch.cat([normals, anomalies])
        y = torch.cat([torch.zeros(len(normals)), torch.ones(len(anomalies))]).long().to(x.device)
        return x, y

    x_val, y_val = labelled(x_val_n, x_val_a)
    x_test, y_test = labelled(x_test_n, x_test_a)
    return OneClassSplit(x_train, x_val, y_val, x_test, y_test, normal_classes, protocol=1, test_classes=test_classes)


def load_one_class(
    name: str,
    normal_class,
    *,
    protocol: int = 2,
    root=None,
    device="cpu",
    val_size: int = 0,
    anomaly_fraction: float = 0.5,
    seed: int = 0,
    download: bool = True,
) -> OneClassSplit:
    """Load a data set and make its one-class split in one call. Lecture 1."""
    train = load_dataset(name, True, root=root, device=device, download=download)
    test = load_dataset(name, False, root=root, device=device, download=download)
    if protocol == 2:
        return protocol2_split(train, test, normal_class, val_size=val_size, seed=seed)
    if protocol == 1:
        return protocol1_split(train, test, normal_class, anomaly_fraction=anomaly_fraction, seed=seed)
    raise ValueError(f"protocol must be 1 or 2, got {protocol!r}")


# ---------------------------------------------------------------- COIL-100 (Lecture 4)

COIL_FOLDER = "coil-100"
_COIL_NAME = re.compile(r"^obj(\d+)__(\d+)\.png$")


def load_coil100(root=None, *, size: int = 32, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Load COIL-100 from ``<data root>/coil-100/obj{N}__{angle}.png`` (the public
    layout: 100 objects, 72 views each), resized to ``size`` x ``size`` RGB.
    Labels are the object numbers minus 1. COIL-100 has no download here: get
    it from its owners (Columbia University) and unpack it under the data root.
    Lecture 4."""
    from PIL import Image, UnidentifiedImageError

    folder = data_root(root) / COIL_FOLDER
    files = sorted(p for p in folder.glob("*.png") if _COIL_NAME.match(p.name)) if folder.is_dir() else []
    if not files:
        raise DatasetNotFoundError(
            f"coil100 was not found under the data root: searched {folder} for files named "
            f"obj<N>__<angle>.png. Download COIL-100 from Columbia University's CAVE site and unpack "
            f"it so that its PNG files lie in {folder}, or point {DATA_ENV_VAR} at a folder that holds "
            f"coil-100/."
        )
    images, labels = [], []
    for path in files:
        try:
            with Image.open(path) as picture:
                picture = picture.convert("RGB").resize((size, size), Image.BILINEAR)
        except (UnidentifiedImageError, OSError) as err:
            raise CorruptDataError(f"cannot read the image {path}: {err}; replace or delete it") from None
        images.append(np.asarray(picture))
        labels.append(int(_COIL_NAME.match(path.name).group(1)) - 1)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(device=device, dtype=torch.float32) / 255.0
    return x, torch.tensor(labels, device=device)


def coil100_split(
    images: torch.Tensor, labels: torch.Tensor, *, n_normal_classes: int, anomaly_fraction: float, seed: int = 0
) -> OneClassSplit:
    """COIL-100 under the talk's protocol 1: ``n_normal_classes`` objects drawn at
    random (seeded) are normal; 80% of their images train the model and the
    remaining 20% are split evenly into validation and test, each with anomalies
    (other objects) making a fraction ``anomaly_fraction`` of it. The talk used
    1, 4 and 7 normal classes with 50%, 25% and 15% anomalies. The validation
    half exists so that the F1 threshold is never chosen on the test set (the
    published code did that). Lecture 4."""
    classes = sorted(set(labels.tolist()))
    if not 1 <= n_normal_classes < len(classes):
        raise ValueError(f"n_normal_classes must be between 1 and {len(classes) - 1}, got {n_normal_classes}")
    rng = np.random.default_rng(seed)
    normal = [int(c) for c in rng.choice(classes, size=n_normal_classes, replace=False)]
    return protocol1_split(
        (images, labels), None, normal, anomaly_fraction=anomaly_fraction, seed=seed, fractions=(0.8, 0.1, 0.1)
    )
