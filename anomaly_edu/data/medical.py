"""Medical images: two small public data sets, their loaders and their split.

Lecture 5. Two data sets, both from Kaggle and both with no download here: a
reader gets them from their Kaggle page and unpacks them under the data root
(:func:`anomaly_edu.data.data_root`, set by the ``ANOMALY_EDU_DATA`` environment
variable).

- ``"head-ct"``: 200 head CT slices, ``head_ct/head_ct/000.png`` ... ``199.png``,
  labelled by ``head_ct/labels.csv`` (1 = hemorrhage = anomaly).
- ``"brain-mri"``: brain MRI slices in one folder per label,
  ``brain_tumor_dataset/no`` (normal) and ``brain_tumor_dataset/yes`` (tumour = anomaly).

Every image is read as grey and resized to a square, so every loader returns
images of shape (N, 1, size, size), float32 in [0, 1], and labels int64 with
1 = anomaly, 0 = normal. A missing data set raises :class:`DatasetNotFoundError`
that says how to get it; a broken file raises :class:`CorruptDataError` that
names it.
"""

from __future__ import annotations

__lecture__ = 5

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import DATA_ENV_VAR, CorruptDataError, DatasetNotFoundError, OneClassSplit, check_images, data_root

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # compared in lower case

# OneClassSplit.protocol of medical_split: 0 = the course's medical protocol (1 and 2 are the talk's protocols).
MEDICAL_PROTOCOL = 0


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class MedicalSet:
    """Where a medical data set lives under the data root and how it is labelled. Lecture 5."""

    title: str  # what the images show
    folder: str  # the folder under the data root
    layout: str  # "labels-csv" (see load_labelled_csv) or "folder-per-label" (see load_folder_per_label)
    normal: str  # what a normal image is
    anomaly: str  # what an anomaly is
    source: str  # where a reader gets it
    options: dict = field(default_factory=dict)  # keyword arguments of the layout's loader


MEDICAL_SETS = {
    "head-ct": MedicalSet(
        title="200 head CT slices, with and without intracranial hemorrhage",
        folder="head_ct",
        layout="labels-csv",
        normal="no hemorrhage (label 0)",
        anomaly="hemorrhage (label 1)",
        source='the Kaggle page "Head CT - hemorrhage" by Felipe Kitamura '
        "(https://www.kaggle.com/datasets/felipekitamura/head-ct-hemorrhage)",
        options={"labels_file": "labels.csv", "image_folder": "head_ct"},
    ),
    "brain-mri": MedicalSet(
        title="253 brain MRI slices, with and without a tumour",
        folder="brain_tumor_dataset",
        layout="folder-per-label",
        normal="no tumour (folder no/)",
        anomaly="tumour (folder yes/)",
        source='the Kaggle page "Brain MRI Images for Brain Tumor Detection" by Navoneel Chakrabarty '
        "(https://www.kaggle.com/datasets/navoneel/brain-mri-images-for-brain-tumor-detection)",
        options={"normal": "no", "anomalous": "yes"},
    ),
}


# ---------------------------------------------------------------- one image


def to_grey(picture):
    """Any PIL image as an 8-bit grey ("L") image. Transparent pixels are
    composited onto black; 16-bit images are scaled from [0, 65535] to [0, 255]."""
    from PIL import Image

    if picture.mode == "L":
        return picture
    if picture.mode.startswith("I") or picture.mode == "F":  # 16- or 32-bit grey: PIL's convert would clip at 255
        values = np.asarray(picture, dtype=np.float64)
        values = values / 65535 if picture.mode.startswith("I") else values  # "F" is taken to be in [0, 1]
        return Image.fromarray(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8))
    if "A" in picture.mode or "transparency" in picture.info:  # RGBA, LA, PA, or a palette with a transparent colour
        rgba = picture.convert("RGBA")
        picture = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return picture.convert("L")  # colour -> luminance, a palette through its colours


def read_image(path: str | os.PathLike, size: int = 64) -> torch.Tensor:
    """Read one image file as a grey tensor of shape (1, size, size), float32 in [0, 1].

    Any mode is turned into grey: colour through PIL's luminance ("L"),
    RGBA and other transparent images composited onto black first (the
    background of a scan), 16-bit images scaled from [0, 65535]. The image is
    then resized to ``size`` x ``size`` with bilinear interpolation: a plain
    resize to a square, so the aspect ratio is not kept (as in the published
    code). An unreadable or empty file raises :class:`CorruptDataError`. Lecture 5.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive whole number of pixels, got {size!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no image file {path}")
    if path.stat().st_size == 0:
        raise CorruptDataError(f"the image file {path} is empty (0 bytes); replace or delete it")
    try:
        with Image.open(path) as picture:
            picture.load()  # decode now, so that a truncated file fails here
            grey = to_grey(picture).resize((size, size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise CorruptDataError(f"cannot read the image {path}: {err}; replace or delete it") from None
    return torch.from_numpy(np.array(grey, dtype=np.float32) / 255.0).unsqueeze(0)


def _read_all(paths: list[Path], size: int) -> torch.Tensor:
    return torch.stack([read_image(p, size) for p in paths])


def _image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name; hidden files are skipped."""
    named = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    return sorted((p for p in named if p.is_file()), key=lambda p: p.name)


def first_few(names: list[str], k: int = 5) -> str:
    """Up to k names joined by commas, and " ..." when there are more."""
    return ", ".join(names[:k]) + (" ..." if len(names) > k else "")


# ---------------------------------------------------------------- the two layouts


def load_folder_per_label(
    folder: str | os.PathLike, normal: str = "no", anomalous: str = "yes", size: int = 64
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Load a data set stored as one subfolder per label: ``folder/normal/*``
    (label 0) and ``folder/anomalous/*`` (label 1).

    Image files are those ending in .png, .jpg, .jpeg, .bmp, .tif or .tiff, in
    any case; hidden files and anything else are skipped. Returns ``(images,
    labels, paths)``: images (N, 1, size, size) as :func:`read_image` makes them,
    labels int64 with 1 = anomaly, and the file of each image. The order is
    fixed: the normal images, then the anomalies, each sorted by file name.
    Lecture 5.
    """
    folder = Path(folder)
    if normal == anomalous:
        raise ValueError(f"the normal and the anomalous subfolder must differ, both are {normal!r}")
    files, labels = [], []
    for label, name in ((0, normal), (1, anomalous)):
        sub = folder / name
        if not sub.is_dir():
            raise DatasetNotFoundError(
                f"{sub} is not a folder: a folder-per-label data set needs {folder / normal} (normal images) "
                f"and {folder / anomalous} (anomalies)"
            )
        found = _image_files(sub)
        if not found:
            others = sorted(p.name for p in sub.iterdir())
            held = f"it holds only {first_few(others)}" if others else "it is empty"
            raise CorruptDataError(
                f"no image files in {sub} ({held}); expected the {'normal' if label == 0 else 'anomalous'} "
                f"images there, as files ending in {', '.join(IMAGE_EXTENSIONS)}"
            )
        files += found
        labels += [label] * len(found)
    return _read_all(files, size), torch.tensor(labels, dtype=torch.long), [str(p) for p in files]


def _file_name(image_id: str) -> str:
    """An id of the labels file as a file name: 7 -> "007.png"; a file name stays as it is."""
    return f"{int(image_id):03d}.png" if image_id.isdigit() else image_id


def load_labelled_csv(
    folder: str | os.PathLike, labels_file: str = "labels.csv", image_folder: str = "head_ct", size: int = 64
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Load a data set labelled by a CSV file: ``folder/labels_file`` names the
    images in ``folder/image_folder``.

    The CSV file has a header row, then one row per image: the image's id in the
    first column, its label (0 = normal, 1 = anomaly) in the second. Spaces
    around the cells are ignored (the head CT header is ``id, hemorrhage``). An
    id that is a number n means the file ``{n:03d}.png``; any other id is taken
    as the file name itself. Images in the folder that the labels file does not
    name are ignored. Returns ``(images, labels, paths)`` in the order of the
    labels file. Lecture 5.
    """
    folder = Path(folder)
    csv_path, image_dir = folder / labels_file, folder / image_folder
    for path, what in ((csv_path, "labels file"), (image_dir, "image folder")):
        if not path.exists():
            raise DatasetNotFoundError(f"the {what} {path} does not exist")
    with open(csv_path, newline="") as f:
        rows = [[cell.strip() for cell in row] for row in csv.reader(f)]
    numbered = [(line, row) for line, row in enumerate(rows, start=1) if any(row)]  # skip blank lines
    if len(numbered) < 2:
        raise CorruptDataError(f"{csv_path} holds no labels: expected a header row, then one row 'id, label' per image")
    header, body = numbered[0][1], numbered[1:]
    files, labels, missing, bad = [], [], [], []
    for line, row in body:
        if len(row) < 2:
            bad.append(f"line {line}: {','.join(row)!r} has no label")
            continue
        image_id, label = row[0], row[1]
        if label not in ("0", "1"):
            bad.append(f"line {line}: label {label!r}")
            continue
        path = image_dir / _file_name(image_id)
        if not path.is_file():
            missing.append(path.name)
        files.append(path)
        labels.append(int(label))
    if bad:
        raise CorruptDataError(
            f"{csv_path}: the labels must be 0 (normal) or 1 (anomaly) in the second column "
            f"(header {', '.join(header)}); found {first_few(bad)}"
        )
    if missing:
        raise CorruptDataError(
            f"{csv_path} names {len(missing)} image(s) that are not in {image_dir}: "
            f"{first_few(missing)}; the data set is incomplete, unpack it again"
        )
    twice = sorted(path.name for path, count in Counter(files).items() if count > 1)
    if twice:
        raise CorruptDataError(f"{csv_path} labels some images twice: {first_few(twice)}")
    return _read_all(files, size), torch.tensor(labels, dtype=torch.long), [str(p) for p in files]


# ---------------------------------------------------------------- by name


def _check_medical_name(name: str) -> str:
    key = name.lower().replace("_", "-")
    if key not in MEDICAL_SETS:
        raise ValueError(f"unknown medical data set {name!r}; known: {', '.join(MEDICAL_SETS)}")
    return key


def _is_present(spec: MedicalSet, folder: Path) -> bool:
    if spec.layout == "labels-csv":
        return (folder / spec.options["labels_file"]).is_file() and (folder / spec.options["image_folder"]).is_dir()
    return (folder / spec.options["normal"]).is_dir() and (folder / spec.options["anomalous"]).is_dir()


def _expected_layout(spec: MedicalSet, folder: Path) -> str:
    if spec.layout == "labels-csv":
        return f"{folder / spec.options['labels_file']} and the images in {folder / spec.options['image_folder']}"
    normal, anomalous = folder / spec.options["normal"], folder / spec.options["anomalous"]
    return f"the normal images in {normal} and the anomalies in {anomalous}"


def available_medical(root: str | os.PathLike | None = None) -> dict[str, bool]:
    """Which medical data sets are present under the data root. Lecture 5."""
    root = data_root(root)
    return {name: _is_present(spec, root / spec.folder) for name, spec in MEDICAL_SETS.items()}


def load_medical(name: str, root: str | os.PathLike | None = None, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the medical data set ``name`` ("head-ct" or "brain-mri") from the
    data root: images (N, 1, size, size) float32 in [0, 1] and labels int64
    with 1 = anomaly. Neither can be downloaded here; a missing one raises
    :class:`DatasetNotFoundError` saying where to get it. Lecture 5.
    """
    name = _check_medical_name(name)
    spec = MEDICAL_SETS[name]
    folder = data_root(root) / spec.folder
    if not _is_present(spec, folder):
        raise DatasetNotFoundError(
            f"{name} ({spec.title}) was not found under the data root: searched {folder} for "
            f"{_expected_layout(spec, folder)}. Download it from {spec.source}, unpack it so that "
            f"{spec.folder}/ lies in the data root {folder.parent}, or point {DATA_ENV_VAR} at a folder that holds "
            f"{spec.folder}/."
        )
    loader = load_labelled_csv if spec.layout == "labels-csv" else load_folder_per_label
    images, labels, _ = loader(folder, size=size, **spec.options)
    return images, labels


# ---------------------------------------------------------------- the split


def normal_split_indices(
    labels: torch.Tensor, *, seed: int = 0, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each image goes under :func:`medical_split`'s protocol, from its
    label alone (0 normal, 1 anomaly): the positions of the train, validation
    and test images, as three int64 tensors (on the CPU). Lecture 5 (reused
    for the magnetic tiles in Lecture 6)."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D tensor, got {getattr(labels, 'shape', type(labels).__name__)}")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise ValueError(f"labels must be 0 (normal) or 1 (anomaly), got the values {sorted(set(labels.tolist()))}")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"fractions must be three positive numbers (train, validation, test) summing to 1, got {fractions}"
        )
    normal = (labels == 0).nonzero().flatten().cpu()
    anomalies = (labels == 1).nonzero().flatten().cpu()
    n = len(normal)
    n_train = int(fractions[0] * n + 1e-9)  # whole part; + 1e-9 so that 0.29 * 100 counts as 29
    n_val = int(fractions[1] * n + 1e-9)
    n_test = n - n_train - n_val
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(
            f"{n} normal images are too few to split by {fractions}: train {n_train}, validation {n_val}, "
            f"test {n_test}; every part needs at least one normal image"
        )
    order = normal[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    train, val, test_normal = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    return train, val, torch.cat([test_normal, anomalies])


def medical_split(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> OneClassSplit:
    """The course's medical protocol: the normal images are shuffled (seeded)
    and split into train, validation and test by ``fractions`` (60/20/20 by
    default; train and validation get the whole part of their share, the test
    the rest); every anomaly goes to the test set, after its normal images.
    Validation holds normal images only (``y_val`` is all zeros), so it can
    stop training or check reconstruction, but not choose an F1 threshold.

    The returned :class:`OneClassSplit` has ``protocol=0`` (``MEDICAL_PROTOCOL``:
    neither of the talk's protocols 1 and 2), ``normal_classes=(0,)``, and
    ``test_classes`` equal to ``y_test``. On head CT (100 normal, 100 anomalies)
    that is 60 train, 20 validation, and a test set of 20 normal and 100
    anomalies. Lecture 5.
    """
    check_images(images)
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) != len(images):
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 1-D tensor with one label per image ({len(images)}), got {shape}")
    train, val, test = normal_split_indices(labels, seed=seed, fractions=fractions)
    labels = labels.long()
    y_test = labels[test.to(labels.device)]
    return OneClassSplit(
        x_train=images[train.to(images.device)],
        x_val=images[val.to(images.device)],
        y_val=torch.zeros(len(val), dtype=torch.long, device=labels.device),
        x_test=images[test.to(images.device)],
        y_test=y_test,
        normal_classes=(0,),
        protocol=MEDICAL_PROTOCOL,
        test_classes=y_test.clone(),
    )
