"""MVTec AD: its public folder layout, a loader, the course's split, and a safe download.

Lecture 6. MVTec AD (Bergmann et al., CVPR 2019) has 15 categories of industrial
images: 5 textures and 10 objects. Each category has normal training images only,
and a test set of normal images and of images with defects, each defect image
with a pixel mask of its defect. The layout, as the archive unpacks::

    mvtec_anomaly_detection/<category>/train/good/000.png ...
    mvtec_anomaly_detection/<category>/test/good/000.png ...
    mvtec_anomaly_detection/<category>/test/<defect>/000.png ...
    mvtec_anomaly_detection/<category>/ground_truth/<defect>/000_mask.png ...

Where the category folders are looked for, in this order: ``<data root>/mvtec_anomaly_detection/<category>``
(where :func:`download_mvtec` puts them), then ``<data root>/<category>`` (so
that ``root`` may also be the ``mvtec_anomaly_detection`` folder itself). The
data root is :func:`anomaly_edu.data.data_root`, set by ``ANOMALY_EDU_DATA``.

MVTec AD is 4.9 GB and is published under CC BY-NC-SA 4.0 (non-commercial use);
:func:`download_mvtec` fetches it from the first of its mirrors that serves it
(:func:`mvtec_mirrors`), checks its SHA-256 and unpacks it safely. The course's
build machines cannot reach it.
"""

from __future__ import annotations

__lecture__ = 6

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import DATA_ENV_VAR, CorruptDataError, DatasetNotFoundError, OneClassSplit, data_root
from .archive import check_sha256, download_from_mirrors, safe_extract

MVTEC_TEXTURES = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_OBJECTS = (
    "bottle",
    "cable",
    "capsule",
    "hazelnut",
    "metal_nut",
    "pill",
    "screw",
    "toothbrush",
    "transistor",
    "zipper",
)
MVTEC_CATEGORIES = tuple(sorted(MVTEC_TEXTURES + MVTEC_OBJECTS))

# OneClassSplit.protocol of mvtec_split: 3 = the course's MVTec protocol
# (0 is the medical protocol, 1 and 2 are the talk's protocols).
MVTEC_PROTOCOL = 3

MVTEC_FOLDER = "mvtec_anomaly_detection"  # the folder under the data root that download_mvtec fills
MVTEC_ARCHIVE = "mvtec_anomaly_detection.tar.xz"
# The archive's address on MVTec's server (the link of MVTec's download page, as anomalib uses it).
# It has changed before: set ANOMALY_EDU_MVTEC_URL, or pass url=, to use another address or a mirror.
MVTEC_URL = (
    "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/"
    "download/420938113-1629952094/mvtec_anomaly_detection.tar.xz"
)
# The mirrors tried after $ANOMALY_EDU_MVTEC_URL, in order. Add one only when it serves the very
# archive of MVTEC_SHA256 (any other file is refused anyway) and its licence allows it.
MVTEC_URLS = (MVTEC_URL,)
MVTEC_URL_ENV_VAR = "ANOMALY_EDU_MVTEC_URL"
# SHA-256 of mvtec_anomaly_detection.tar.xz (5,264,982,680 bytes), as anomalib's MVTec AD data module lists it.
MVTEC_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"
MVTEC_PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"


# ---------------------------------------------------------------- where a category lives


def _check_category(category: str) -> str:
    key = str(category).lower().replace("-", "_")
    if key not in MVTEC_CATEGORIES:
        raise ValueError(
            f"unknown MVTec AD category {category!r}; known: textures {', '.join(MVTEC_TEXTURES)}; "
            f"objects {', '.join(MVTEC_OBJECTS)}"
        )
    return key


def _candidates(root: Path, category: str) -> list[Path]:
    return [root / MVTEC_FOLDER / category, root / category]


def _category_folder(root: Path, category: str) -> Path | None:
    """The first candidate folder of ``category`` that exists, or None."""
    return next((folder for folder in _candidates(root, category) if folder.is_dir()), None)


def available_mvtec(root: str | os.PathLike | None = None) -> dict[str, bool]:
    """Which MVTec AD categories are present under the data root: a category
    counts when its folder has ``train/good`` and ``test``. No image is read.
    Lecture 6."""
    root = data_root(root)
    present = {}
    for category in MVTEC_CATEGORIES:
        folder = _category_folder(root, category)
        present[category] = folder is not None and (folder / "train" / "good").is_dir() and (folder / "test").is_dir()
    return present


# ---------------------------------------------------------------- one image, one mask


def _png_files(folder: Path) -> list[Path]:
    """The .png files directly in ``folder``, sorted by name; hidden files are skipped."""
    found = [p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()]
    return sorted(found, key=lambda p: p.name)


def _subfolders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _open(path: Path, what: str, convert: str):
    """Open an image file, decode it fully and convert it; return (picture, original (width, height))."""
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        raise CorruptDataError(f"the {what} {path} is empty (0 bytes); replace it from the archive or unpack it again")
    try:
        with Image.open(path) as picture:
            picture.load()  # decode now, so that a truncated file fails here
            return picture.convert(convert), picture.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise CorruptDataError(
            f"cannot read the {what} {path}: {err}; replace it from the archive or unpack the category again"
        ) from None


def _read_rgb(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """One image as (size, size, 3) uint8, and its original (width, height)."""
    from PIL import Image

    picture, original = _open(path, "image", "RGB")
    return np.asarray(picture.resize((size, size), Image.BILINEAR)), original


def _read_mask(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """One mask as (size, size) bool (any non-zero pixel is defect), and its original (width, height)."""
    from PIL import Image

    picture, original = _open(path, "mask", "L")
    return np.asarray(picture.resize((size, size), Image.NEAREST)) != 0, original


def _to_tensor(images: list[np.ndarray], size: int) -> torch.Tensor:
    if not images:
        return torch.zeros((0, 3, size, size), dtype=torch.float32)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous().float() / 255.0


# ---------------------------------------------------------------- the loader


@dataclass
class MVTecCategory:
    """One MVTec AD category, loaded. Test images are in a fixed order: ``test/good``
    first, then each defect folder in name order, each sorted by file name. Lecture 6."""

    train: torch.Tensor  # (N, 3, size, size) float32 in [0, 1], normal images only
    test: torch.Tensor  # (M, 3, size, size) float32 in [0, 1]
    labels: torch.Tensor  # (M,) int64: 0 good, 1 defect
    masks: list[np.ndarray]  # M bool arrays (size, size); all False for a good image
    defect_types: list[str]  # M names: "good" or the defect folder's name
    names: list[str]  # M paths relative to the MVTec folder, e.g. "bottle/test/broken_large/000.png"
    category: str = ""
    train_names: list[str] = field(default_factory=list)  # N paths, as names

    @property
    def defect_classes(self) -> tuple[str, ...]:
        """("good", then the category's defect types in name order): the names of
        the indices in ``mvtec_split(...).test_classes``."""
        return ("good",) + tuple(sorted(set(self.defect_types) - {"good"}))

    def describe(self) -> str:
        """One line with the category's sizes."""
        n_defect = int(self.labels.sum())
        return (
            f"MVTec AD {self.category}: train {len(self.train)} good; test {len(self.test)} "
            f"({len(self.test) - n_defect} good, {n_defect} with defects of {len(self.defect_classes) - 1} types)"
        )


def _missing_category(category: str, root: Path) -> DatasetNotFoundError:
    searched = " and ".join(str(p) for p in _candidates(root, category))
    return DatasetNotFoundError(
        f"MVTec AD ({category}) was not found under the data root: searched {searched}. "
        f"Get it with anomaly_edu.data.mvtec.download_mvtec(root) (4.9 GB, licence CC BY-NC-SA 4.0), or download "
        f"{MVTEC_ARCHIVE} from {MVTEC_PAGE} and put it at {root / MVTEC_ARCHIVE} (download_mvtec checks and "
        f"unpacks it from there), or unpack it yourself into {root / MVTEC_FOLDER}, so that "
        f"{root / MVTEC_FOLDER / category / 'train' / 'good'} exists; or point {DATA_ENV_VAR} at a folder that "
        f"holds {MVTEC_FOLDER}/."
    )


def _check_masks(folder: Path, defect_images: dict[str, set[str]]) -> None:
    """Every file in ground_truth/ must be the mask of a defect image: ``<defect>/<stem>_mask.png``."""
    truth = folder / "ground_truth"
    if not truth.is_dir():
        return  # the first defect image then reports its missing mask
    for sub in _subfolders(truth):
        for mask in _png_files(sub):
            if not mask.stem.endswith("_mask"):
                raise CorruptDataError(
                    f"the file {mask} is not named like a mask: the mask of test/{sub.name}/<name>.png is "
                    f"ground_truth/{sub.name}/<name>_mask.png. Remove the file or unpack the category again."
                )
            stem = mask.stem[: -len("_mask")]
            if stem not in defect_images.get(sub.name, set()):
                raise CorruptDataError(
                    f"the mask {mask} belongs to no defect image: expected the image "
                    f"{folder / 'test' / sub.name / (stem + '.png')} (good images have no masks). Remove the stray "
                    f"mask or unpack the category again."
                )


def load_mvtec(category: str, root: str | os.PathLike | None = None, size: int = 128) -> MVTecCategory:
    """Load one MVTec AD category from the data root (see the module's docstring
    for where it is looked for).

    Images are converted to RGB (the grey categories, grid, screw and zipper, get
    their grey value in all 3 channels, so that every category has one shape) and
    resized to ``size`` x ``size`` with bilinear interpolation; values float32 in
    [0, 1]. MVTec AD images are square, so the aspect ratio is kept; a non-square
    image (data in MVTec's layout that is not MVTec AD) is resized anyway, its
    aspect ratio not kept, with a warning. Each defect image's mask is found by
    name, ``ground_truth/<defect>/<name>_mask.png`` for ``test/<defect>/<name>.png``
    (never by sort order), must have its image's size, and is resized with
    nearest neighbour to (size, size) bool; a good image's mask is all False.

    Errors: :class:`ValueError` for an unknown category;
    :class:`DatasetNotFoundError` when the category's folder is missing;
    :class:`CorruptDataError` for an incomplete tree, a defect image without a
    mask, a mask of another size than its image, a mask without an image, or an
    unreadable image. Lecture 6.
    """
    category = _check_category(category)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive whole number of pixels, got {size!r}")
    root = data_root(root)
    folder = _category_folder(root, category)
    if folder is None:
        raise _missing_category(category, root)
    for needed in (folder / "train" / "good", folder / "test"):
        if not needed.is_dir():
            raise CorruptDataError(
                f"the MVTec AD category folder {folder} is incomplete: {needed} is missing; unpack "
                f"{MVTEC_ARCHIVE} again (or run download_mvtec)"
            )
    base = folder.parent
    not_square = []

    def read(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
        image, original = _read_rgb(path, size)
        if original[0] != original[1]:
            not_square.append(f"{path} ({original[0]}x{original[1]})")
        return image, original

    train_files = _png_files(folder / "train" / "good")
    if not train_files:
        raise CorruptDataError(f"no .png images in {folder / 'train' / 'good'}; unpack the category again")
    train = [read(path)[0] for path in train_files]

    test_folders = _subfolders(folder / "test")
    test_folders.sort(key=lambda p: (p.name != "good", p.name))  # good first
    defect_images = {sub.name: {p.stem for p in _png_files(sub)} for sub in test_folders if sub.name != "good"}
    _check_masks(folder, defect_images)
    test, labels, masks, defect_types, names = [], [], [], [], []
    for sub in test_folders:
        for path in _png_files(sub):
            image, original = read(path)
            if sub.name == "good":
                mask = np.zeros((size, size), dtype=bool)
            else:
                mask_path = folder / "ground_truth" / sub.name / f"{path.stem}_mask.png"
                if not mask_path.is_file():
                    raise CorruptDataError(
                        f"the defect image {path} has no mask: expected {mask_path}; unpack the category again"
                    )
                mask, mask_size = _read_mask(mask_path, size)
                if mask_size != original:
                    raise CorruptDataError(
                        f"the mask {mask_path} is {mask_size[0]}x{mask_size[1]} pixels but its image {path} is "
                        f"{original[0]}x{original[1]}; a mask must have its image's size: unpack the category again"
                    )
            test.append(image)
            labels.append(int(sub.name != "good"))
            masks.append(mask)
            defect_types.append(sub.name)
            names.append(path.relative_to(base).as_posix())
    if not test:
        raise CorruptDataError(f"no .png images in the subfolders of {folder / 'test'}; unpack the category again")
    if not_square:
        warnings.warn(
            f"{len(not_square)} image(s) of {folder} are not square (e.g. {not_square[0]}); they were resized to "
            f"{size}x{size} without keeping their aspect ratio",
            stacklevel=2,
        )
    return MVTecCategory(
        train=_to_tensor(train, size),
        test=_to_tensor(test, size),
        labels=torch.tensor(labels, dtype=torch.long),
        masks=masks,
        defect_types=defect_types,
        names=names,
        category=category,
        train_names=[p.relative_to(base).as_posix() for p in train_files],
    )


# ---------------------------------------------------------------- the split


def mvtec_split(
    category: str,
    root: str | os.PathLike | None = None,
    size: int = 128,
    val_size: int = 25,
    seed: int = 0,
) -> OneClassSplit:
    """The course's MVTec AD protocol (``protocol=3``, ``MVTEC_PROTOCOL``).

    The official training images (all good) are shuffled with ``seed``; a
    first ``val_size`` of them (25, as the Puzzle-AE code holds out) become
    the validation set, normal only (``y_val`` all zeros), and the rest the
    training set. The test set is MVTec's official test set, in
    :func:`load_mvtec`'s order, with ``y_test`` 1 for a defect and ``masks_test``
    its masks. ``normal_classes=(0,)``; ``test_classes`` is each test image's
    defect type as an index into ("good", the defect types in name order), so
    good is 0 and ``test_classes > 0`` equals ``y_test``
    (``load_mvtec(category).defect_classes`` names the indices).

    Anything fitted, a threshold, a score normaliser, a mean and standard
    deviation, is fitted on the training or validation images, never on the test
    set. Validation has no anomalies, so it cannot choose an F1 threshold;
    image AUROC and PRO need none. Lecture 6.
    """
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 1:
        raise ValueError(f"val_size must be a whole number of images, at least 1, got {val_size!r}")
    data = load_mvtec(category, root=root, size=size)
    n = len(data.train)
    if n - val_size < 1:
        raise ValueError(
            f"MVTec AD {data.category} has {n} training image(s), too few to hold out {val_size} for validation "
            f"and train on the rest; its train/good folder looks incomplete: unpack the category again"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    classes = data.defect_classes
    return OneClassSplit(
        x_train=data.train[order[val_size:]],
        x_val=data.train[order[:val_size]],
        y_val=torch.zeros(val_size, dtype=torch.long),
        x_test=data.test,
        y_test=data.labels,
        normal_classes=(0,),
        protocol=MVTEC_PROTOCOL,
        test_classes=torch.tensor([classes.index(kind) for kind in data.defect_types], dtype=torch.long),
        masks_test=data.masks,
    )


# ---------------------------------------------------------------- download


def mvtec_url(url: str | None = None) -> str:
    """The first address MVTec AD is downloaded from: ``url`` if given, else the
    first of $ANOMALY_EDU_MVTEC_URL, else ``MVTEC_URL``. Lecture 6."""
    return mvtec_mirrors(url)[0]


def mvtec_mirrors(url: str | Sequence[str] | None = None) -> list[str]:
    """The addresses MVTec AD is downloaded from, in the order they are tried.

    ``url`` (one address or a list) when given: the caller's choice, tried
    alone. Otherwise the addresses in $ANOMALY_EDU_MVTEC_URL (one, or several
    separated by spaces), then the known mirrors ``MVTEC_URLS`` (MVTec's own
    server first), each once. Lecture 6."""
    if url:
        return [url] if isinstance(url, str) else list(url)
    chosen = os.environ.get(MVTEC_URL_ENV_VAR, "").split()
    return list(dict.fromkeys([*chosen, *MVTEC_URLS]))


def download_mvtec(
    root: str | os.PathLike | None = None,
    url: str | Sequence[str] | None = None,
    sha256: str = MVTEC_SHA256,
    progress: bool = True,
) -> Path:
    """Download MVTec AD into the data root and unpack it; return the folder
    ``<data root>/mvtec_anomaly_detection`` that holds the categories.

    Steps: when all 15 categories are already present nothing is done. An
    archive ``<data root>/mvtec_anomaly_detection.tar.xz`` already there (an
    earlier download, or a copy put there by hand) is checked against
    ``sha256`` and used. Otherwise the archive (4.9 GB) is downloaded from the
    mirrors of :func:`mvtec_mirrors` (``url``, else $ANOMALY_EDU_MVTEC_URL and
    then ``MVTEC_URLS``), one after the other, with a progress bar, until one
    serves a file with the SHA-256 ``sha256``
    (:func:`anomaly_edu.data.archive.download_from_mirrors`). The archive is
    then unpacked with :func:`safe_extract`, and kept: delete it yourself to
    free 4.9 GB. When every mirror fails, :class:`DownloadError` (a
    :class:`DatasetNotFoundError`) lists the addresses tried and why each
    failed, and says where to put the archive by hand; nothing is kept. A wrong
    checksum of an archive put there by hand raises :class:`CorruptDataError`.
    MVTec AD's licence is CC BY-NC-SA 4.0 (non-commercial use). Lecture 6.
    """
    sha256 = check_sha256(sha256)
    root = data_root(root)
    target = root / MVTEC_FOLDER
    if all((target / category / "train" / "good").is_dir() for category in MVTEC_CATEGORIES):
        return target
    archive = download_from_mirrors(
        "MVTec AD",
        mvtec_mirrors(url),
        sha256,
        root / MVTEC_ARCHIVE,
        progress,
        where_else=f"from {MVTEC_PAGE}, or set {MVTEC_URL_ENV_VAR} to a mirror",
    )
    return safe_extract(archive, target)
