"""Magnetic tiles: a real industrial defect data set with pixel masks, its loader and its split.

Lecture 6. The Magnetic Tile Defects set (Huang, Qiu and Yuan, see
:data:`MAGNETIC_TILE_CITATION`) holds grey photos of magnetic tiles, 952 of them
defect-free and 392 with a defect of one of five types, each with a pixel mask.
It is published in the authors' layout, which this module reads as it is::

    <data root>/magnetic_tile/MT_<type>/Imgs/<name>.jpg   the photo
    <data root>/magnetic_tile/MT_<type>/Imgs/<name>.png   its mask, same size (all zero in MT_Free)

with ``<type>`` one of :data:`MAGNETIC_TILE_TYPES`. There is no download here: a
reader clones the authors' repository (:data:`MAGNETIC_TILE_SOURCE`) and puts
its folders under ``<data root>/magnetic_tile`` (the data root is
:func:`anomaly_edu.data.data_root`, set by the ``ANOMALY_EDU_DATA`` environment
variable). A missing set raises :class:`DatasetNotFoundError`, a broken file
:class:`CorruptDataError` naming it, and a photo without its mask (or a mask of
another size) a ``ValueError`` naming both files.
"""

from __future__ import annotations

__lecture__ = 6

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import DATA_ENV_VAR, CorruptDataError, DatasetNotFoundError, OneClassSplit, data_root
from .medical import first_few, normal_split_indices, to_grey

MAGNETIC_TILE_TYPES = ("Free", "Blowhole", "Break", "Crack", "Fray", "Uneven")  # index 0 = defect-free
# OneClassSplit.protocol of magnetic_tile_split (0 is the medical protocol, 1 and 2 the talk's, 3 is taken).
MAGNETIC_TILE_PROTOCOL = 4
MAGNETIC_TILE_CITATION = (
    "Y. Huang, C. Qiu and K. Yuan, Surface defect saliency of magnetic tile. "
    "The Visual Computer 36, 85-96 (2020), doi:10.1007/s00371-018-1588-5"
)
MAGNETIC_TILE_SOURCE = (
    "the authors' public GitHub repository abin24/Magnetic-tile-defect-datasets. "
    "(https://github.com/abin24/Magnetic-tile-defect-datasets.; the name ends with a full stop)"
)
MAGNETIC_TILE_FOLDER = "magnetic_tile"  # the folder under the data root
# A mask pixel above this grey value is a defect pixel. The masks are drawn in 0 and 255, with
# anti-aliased edges in between and faint specks (mostly 1 to 3) away from any defect: > 127
# keeps the drawn defect, cuts its soft edge half way and drops the specks.
MASK_THRESHOLD = 127

_IMAGE_SUFFIXES = (".jpg", ".jpeg")  # compared in lower case
_MASK_SUFFIX = ".png"


@dataclass
class MagneticTiles:
    """The magnetic-tile set as :func:`load_magnetic_tiles` returns it. Lecture 6."""

    images: torch.Tensor  # (N, 1, size, size) float32 in [0, 1], each photo resized to a square
    masks: list[np.ndarray]  # N bool arrays, each at its own photo's size (H, W); all False for a free tile
    labels: torch.Tensor  # (N,) int64: 0 = defect-free (MT_Free), 1 = defective
    types: torch.Tensor  # (N,) int64: index into MAGNETIC_TILE_TYPES
    names: list[str]  # the photo of each image, relative to the data set folder: "MT_Crack/Imgs/<name>.jpg"

    def __len__(self) -> int:
        return len(self.names)


# ---------------------------------------------------------------- one file


def _ends_with_jpeg_end_marker(path: Path) -> bool:
    """Whether a JPEG file ends with its end marker FF D9 (zero bytes after it
    are allowed). PIL decodes a JPEG cut just before the marker without
    complaint when the pixels happen to be complete; the cut is still an error."""
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - 64, 0))
        return f.read().rstrip(b"\0").endswith(b"\xff\xd9")


def _decode_grey(path: Path, what: str):
    """Decode a whole image file into an 8-bit grey PIL image, or raise
    :class:`CorruptDataError` naming it. Truncated files are always errors, even
    where someone set PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` (which makes PIL
    fill the missing part of a JPEG with grey)."""
    import struct

    from PIL import Image, ImageFile, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"no {what} file {path}")
    if path.stat().st_size == 0:
        raise CorruptDataError(f"the {what} file {path} is empty (0 bytes); copy the data set again")
    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as picture:
            picture.load()  # decode every pixel now, so that a truncated file fails here
            if picture.format == "JPEG" and not _ends_with_jpeg_end_marker(path):
                raise OSError("the JPEG end marker (FF D9) is missing at the end of the file")
            return to_grey(picture)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error) as err:
        raise CorruptDataError(
            f"cannot read the {what} {path}: {err}; the file is truncated or corrupt, copy the data set again"
        ) from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant


def read_tile(path: str | os.PathLike) -> np.ndarray:
    """Read one magnetic-tile photo as a grey uint8 array (H, W) at its own
    size. A corrupt or truncated file raises :class:`CorruptDataError`. Lecture 6."""
    return np.asarray(_decode_grey(Path(path), "image"), dtype=np.uint8)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read one defect mask as a bool array (H, W) at its own size: True where
    the grey value is above 127 (:data:`MASK_THRESHOLD`). The authors' masks are
    0 and 255 with soft, anti-aliased edges and faint specks (values 1 to 3 or
    so) away from the defect; the threshold keeps the drawn defect and drops
    the specks. A corrupt or truncated file raises :class:`CorruptDataError`. Lecture 6."""
    return np.asarray(_decode_grey(Path(path), "mask")) > MASK_THRESHOLD


# ---------------------------------------------------------------- the folder


def _type_folder(folder: Path, name: str) -> Path:
    return folder / f"MT_{name}" / "Imgs"


def _layout(folder: Path) -> str:
    return (
        f"{folder}/MT_<type>/Imgs/<name>.jpg beside its mask <name>.png, "
        f"for every type in {', '.join(MAGNETIC_TILE_TYPES)}"
    )


def available_magnetic_tiles(root: str | os.PathLike | None = None) -> bool:
    """Whether the magnetic-tile set is under the data root (every
    ``MT_<type>/Imgs`` folder is there). Lecture 6."""
    folder = data_root(root) / MAGNETIC_TILE_FOLDER
    return all(_type_folder(folder, name).is_dir() for name in MAGNETIC_TILE_TYPES)


def _check_folder(folder: Path) -> None:
    """Raise :class:`DatasetNotFoundError` unless every ``MT_<type>/Imgs`` folder is there."""
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"the magnetic-tile set was not found under the data root: searched {folder}, expected "
            f"{_layout(folder)}. Get it from {MAGNETIC_TILE_SOURCE}, put its MT_* folders in {folder}, "
            f"or point {DATA_ENV_VAR} at a folder that holds {MAGNETIC_TILE_FOLDER}/."
        )
    missing = [
        str(_type_folder(folder, name)) for name in MAGNETIC_TILE_TYPES if not _type_folder(folder, name).is_dir()
    ]
    if missing:
        raise DatasetNotFoundError(
            f"the magnetic-tile set in {folder} is incomplete: missing {', '.join(missing)}. Expected "
            f"{_layout(folder)}; copy the missing folders from {MAGNETIC_TILE_SOURCE}."
        )


def _pairs(images: Path) -> list[tuple[Path, Path]]:
    """The (photo, mask) files in one ``Imgs`` folder, paired by name and sorted
    by it; raise ``ValueError`` naming any photo without a mask or mask without a photo."""
    files = [p for p in images.iterdir() if p.is_file() and not p.name.startswith(".")]
    photos = {p.stem: p for p in files if p.suffix.lower() in _IMAGE_SUFFIXES}
    masks = {p.stem: p for p in files if p.suffix.lower() == _MASK_SUFFIX}
    no_mask = sorted(photos[s].name for s in photos.keys() - masks.keys())
    no_photo = sorted(masks[s].name for s in masks.keys() - photos.keys())
    if no_mask or no_photo:
        problems = ([f"images without a mask <name>.png: {first_few(no_mask)}"] if no_mask else []) + (
            [f"masks without an image <name>.jpg: {first_few(no_photo)}"] if no_photo else []
        )
        raise ValueError(
            f"in {images}, {'; '.join(problems)}. Every photo <name>.jpg needs its mask <name>.png "
            "beside it; copy the folder again from the authors' repository"
        )
    if not photos:
        raise CorruptDataError(f"no photos (<name>.jpg) in {images}; copy the folder again from {MAGNETIC_TILE_SOURCE}")
    return [(photos[s], masks[s]) for s in sorted(photos)]


# ---------------------------------------------------------------- the whole set


def load_magnetic_tiles(root: str | os.PathLike | None = None, size: int = 64, progress: bool = True) -> MagneticTiles:
    """Load every magnetic tile from ``<data root>/magnetic_tile``.

    Each photo is read as grey and resized to ``size`` x ``size`` with bilinear
    interpolation: a plain resize to a square, so the aspect ratio is not kept
    (the photos are 103 to 632 px wide and 222 to 403 px high). Each mask stays
    at its photo's own size, so that pixel metrics can be computed at full
    resolution. A mask is paired with its photo by name (``<name>.png`` beside
    ``<name>.jpg``). The order is fixed: the types in the order of
    :data:`MAGNETIC_TILE_TYPES` (defect-free first), each sorted by file name.
    ``progress`` shows a progress bar over the files. Lecture 6.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"size must be a positive whole number of pixels, got {size!r}")
    folder = data_root(root) / MAGNETIC_TILE_FOLDER
    _check_folder(folder)
    pairs = [
        (t, photo, mask)
        for t, name in enumerate(MAGNETIC_TILE_TYPES)
        for photo, mask in _pairs(_type_folder(folder, name))
    ]
    images = np.empty((len(pairs), 1, size, size), dtype=np.uint8)
    masks, types, names = [], [], []
    for i, (t, photo, mask_file) in enumerate(tqdm(pairs, desc="magnetic tiles", unit="tile", disable=not progress)):
        grey = _decode_grey(photo, "image")
        mask = read_mask(mask_file)
        if mask.shape != (grey.height, grey.width):
            raise ValueError(
                f"the mask {mask_file} is {mask.shape[1]} x {mask.shape[0]} px but its image {photo} is "
                f"{grey.width} x {grey.height} px (width x height); a mask must have its image's size, "
                "copy both files again from the authors' repository"
            )
        images[i, 0] = np.asarray(grey.resize((size, size), Image.BILINEAR))
        masks.append(mask)
        types.append(t)
        names.append(photo.relative_to(folder).as_posix())
    types = torch.tensor(types, dtype=torch.long)
    return MagneticTiles(
        images=torch.from_numpy(images).float() / 255.0,
        masks=masks,
        labels=(types != 0).long(),
        types=types,
        names=names,
    )


def tile_path(tiles: MagneticTiles, index: int, root: str | os.PathLike | None = None) -> Path:
    """The photo file of tile ``index`` of ``tiles`` (loaded from the data
    root ``root``), e.g. to show it at its own size. Lecture 6."""
    return data_root(root) / MAGNETIC_TILE_FOLDER / tiles.names[index]


# ---------------------------------------------------------------- the split


def magnetic_tile_indices(
    labels: torch.Tensor, *, seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which tiles go to train, validation and test under the course's
    one-class protocol (:func:`magnetic_tile_split`): three int64 tensors of
    positions into ``labels`` (0 = defect-free, 1 = defective). The arithmetic
    is the medical split's (:func:`anomaly_edu.data.medical.normal_split_indices`).
    Lecture 6."""
    return normal_split_indices(labels, seed=seed, fractions=fractions)


def split_magnetic_tiles(
    tiles: MagneticTiles, *, seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> OneClassSplit:
    """Split loaded tiles as :func:`magnetic_tile_split` does (without reading
    them again). Lecture 6."""
    train, val, test = magnetic_tile_indices(tiles.labels, seed=seed, fractions=fractions)
    return OneClassSplit(
        x_train=tiles.images[train],
        x_val=tiles.images[val],
        y_val=torch.zeros(len(val), dtype=torch.long),
        x_test=tiles.images[test],
        y_test=tiles.labels[test],
        normal_classes=(0,),
        protocol=MAGNETIC_TILE_PROTOCOL,
        test_classes=tiles.types[test],
        masks_test=[tiles.masks[i] for i in test.tolist()],
    )


def magnetic_tile_split(
    root: str | os.PathLike | None = None,
    size: int = 64,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    progress: bool = True,
) -> OneClassSplit:
    """The course's one-class protocol on magnetic tiles: the defect-free tiles
    (MT_Free) are shuffled (seeded) and split by ``fractions`` into train,
    validation and test (60/20/20 by default; train and validation get the whole
    part of their share, the test the rest); every defective tile goes to the
    test set, after the free ones. With 952 free tiles that is 571 train, 190
    validation and a test set of 191 free and 392 defective tiles.

    Validation holds free tiles only (``y_val`` is all zeros): use it for
    normalisers and early stopping, never to choose a threshold on the test.
    ``masks_test`` holds each test image's mask at its photo's own size,
    ``test_classes`` its type (an index into :data:`MAGNETIC_TILE_TYPES`);
    ``protocol`` is :data:`MAGNETIC_TILE_PROTOCOL`. Lecture 6.
    """
    tiles = load_magnetic_tiles(root, size=size, progress=progress)
    return split_magnetic_tiles(tiles, seed=seed, fractions=fractions)


def split_description(split: OneClassSplit) -> str:
    """The split's sizes (:meth:`OneClassSplit.describe`) and its test set per
    type of tile, in one line. Lecture 6."""
    counts = torch.bincount(split.test_classes.cpu(), minlength=len(MAGNETIC_TILE_TYPES)).tolist()
    per_type = ", ".join(f"{name} {n}" for name, n in zip(MAGNETIC_TILE_TYPES, counts) if n)
    return f"{split.describe()}; test by type: {per_type}"
