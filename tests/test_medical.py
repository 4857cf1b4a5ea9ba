"""The medical data sets of Lecture 5: reading any image file as grey, the two
layouts (folder per label, labels in a CSV file), clear errors, and the split.
Tiny image files are made here; the real head CT set is read from the data
root ($ANOMALY_EDU_DATA) when it is there."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from anomaly_edu.data import CorruptDataError, DatasetNotFoundError, data_root, medical


def save(path, mode="L", size=(20, 30), value=128):
    """Write a small image file of a given PIL mode, filled with one grey value
    (the format follows the file's extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("L", size, value)
    if mode == "P":
        picture = picture.convert("P")
    elif mode != "L":
        picture = picture.convert(mode)
    picture.save(path, format="JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else None)
    return path


def make_brain_tree(folder):
    """A folder-per-label tree in the Kaggle brain MRI layout: mixed extensions,
    modes and sizes, a name with spaces, and files that are not images."""
    save(folder / "no" / "a scan 1.png", "L", (20, 30))
    save(folder / "no" / "b.JPG", "RGB", (40, 40))
    save(folder / "no" / "c.jpeg", "L", (15, 25))
    (folder / "no" / "notes.txt").write_text("not an image")
    (folder / "no" / ".hidden.png").write_bytes(b"a macOS resource fork, not an image")
    save(folder / "yes" / "Y1.jpg", "RGB", (50, 30))
    save(folder / "yes" / "Y2.png", "RGBA", (33, 17))
    save(folder / "yes" / "Y3.png", "P", (64, 64))
    save(folder / "yes" / "Y4.BMP", "L", (9, 12))
    return folder


def make_head_ct(root, labels, missing=(), header="id, hemorrhage"):
    """A head-CT-like set under ``root``: image {i:03d}.png for each id in
    ``labels`` (except ``missing``) and labels.csv with a spaced header."""
    folder = root / "head_ct"
    for i in labels:
        if i not in missing:
            save(folder / "head_ct" / f"{i:03d}.png", "RGB", (25 + i, 30), value=10 * i)
    rows = [header] + [f"{i}, {label}" for i, label in labels.items()]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


# ------------------------------------------------------------------ one image


def test_read_image_is_grey_square_and_in_unit_range(tmp_path):
    x = medical.read_image(save(tmp_path / "wide.png", "L", (30, 10), value=51), size=8)
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, 51 / 255))


def test_read_image_composites_transparency_onto_black_and_scales_16_bit(tmp_path):
    clear = Image.new("RGBA", (10, 10), (255, 255, 255, 0))  # white, fully transparent
    clear.save(tmp_path / "clear.png")
    assert medical.read_image(tmp_path / "clear.png", size=4).max() == 0
    Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert medical.read_image(tmp_path / "deep.png", size=4).min() == 1


def test_read_image_of_an_empty_or_garbage_file_names_the_file(tmp_path):
    (tmp_path / "empty scan.png").write_bytes(b"")
    (tmp_path / "garbage.jpg").write_bytes(b"this is not a JPEG file at all")
    for name in ("empty scan.png", "garbage.jpg"):
        with pytest.raises(CorruptDataError, match=name):
            medical.read_image(tmp_path / name)


# ------------------------------------------------------------------ folder per label


def test_folder_per_label_loads_every_mode_and_extension_in_a_fixed_order(tmp_path):
    folder = make_brain_tree(tmp_path / "brain_tumor_dataset")
    images, labels, paths = medical.load_folder_per_label(folder, size=16)
    assert images.shape == (7, 1, 16, 16) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    names = [os.path.basename(p) for p in paths]
    assert names == ["a scan 1.png", "b.JPG", "c.jpeg", "Y1.jpg", "Y2.png", "Y3.png", "Y4.BMP"]
    again = medical.load_folder_per_label(folder, size=16)
    assert torch.equal(again[0], images) and again[2] == paths


def test_folder_per_label_names_a_broken_file(tmp_path):
    folder = make_brain_tree(tmp_path / "brain")
    (folder / "yes" / "broken scan.png").write_bytes(b"")
    with pytest.raises(CorruptDataError, match="broken scan.png"):
        medical.load_folder_per_label(folder)


def test_folder_per_label_refuses_an_empty_or_missing_label_folder(tmp_path):
    empty = tmp_path / "empty"
    save(empty / "yes" / "Y1.png")
    (empty / "no").mkdir()
    (empty / "no" / "readme.txt").write_text("normal scans go here")
    with pytest.raises(CorruptDataError, match=r"no image files in .*empty.no.*readme\.txt"):
        medical.load_folder_per_label(empty)
    half = tmp_path / "half"
    save(half / "no" / "N1.png")
    with pytest.raises(DatasetNotFoundError, match=r"half.yes is not a folder"):
        medical.load_folder_per_label(half)


# ------------------------------------------------------------------ labels in a CSV file


def test_labelled_csv_reads_a_spaced_header_and_ignores_unlabelled_images(tmp_path):
    folder = make_head_ct(tmp_path, {0: 1, 1: 1, 2: 0, 3: 0, 4: 0})
    save(folder / "head_ct" / "099.png")  # not in the labels file
    images, labels, paths = medical.load_labelled_csv(folder, size=12)
    assert images.shape == (5, 1, 12, 12) and labels.tolist() == [1, 1, 0, 0, 0]
    assert [os.path.basename(p) for p in paths] == ["000.png", "001.png", "002.png", "003.png", "004.png"]
    assert torch.allclose(images[2], torch.full((1, 12, 12), 20 / 255))  # image 2 has grey value 10 * 2


def test_labelled_csv_accepts_file_names_as_ids(tmp_path):
    folder = tmp_path / "set"
    save(folder / "images" / "scan a.png")
    save(folder / "images" / "scan b.jpg", "RGB")
    (folder / "labels.csv").write_text("file , label\nscan a.png , 0\n\nscan b.jpg, 1\n")
    _, labels, _ = medical.load_labelled_csv(folder, image_folder="images")
    assert labels.tolist() == [0, 1]


def test_labelled_csv_lists_the_images_it_cannot_find(tmp_path):
    folder = make_head_ct(tmp_path, {0: 1, 1: 0, 7: 0, 8: 1}, missing=(7, 8))
    with pytest.raises(CorruptDataError, match=r"2 image\(s\) that are not in .*: 007\.png, 008\.png"):
        medical.load_labelled_csv(folder)


def test_labelled_csv_refuses_a_label_other_than_0_or_1(tmp_path):
    folder = make_head_ct(tmp_path, {0: 1, 1: 2, 2: 0})
    with pytest.raises(CorruptDataError, match=r"0 \(normal\) or 1 \(anomaly\).*line 3: label '2'"):
        medical.load_labelled_csv(folder)


# ------------------------------------------------------------------ by name


def test_a_missing_medical_set_says_where_it_looked_and_how_to_get_it(tmp_path):
    assert medical.available_medical(tmp_path) == {"head-ct": False, "brain-mri": False}
    with pytest.raises(DatasetNotFoundError) as err:
        medical.load_medical("head-ct", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "head_ct") in message and "ANOMALY_EDU_DATA" in message
    assert "Head CT - hemorrhage" in message and "Felipe Kitamura" in message and "kaggle.com" in message
    with pytest.raises(DatasetNotFoundError, match="Brain MRI Images for Brain Tumor Detection"):
        medical.load_medical("brain-mri", root=tmp_path)
    with pytest.raises(ValueError, match="unknown medical data set"):
        medical.load_medical("chest-xray", root=tmp_path)


def test_load_medical_finds_both_layouts_under_the_data_root(tmp_path):
    make_head_ct(tmp_path, {0: 1, 1: 0, 2: 0})
    make_brain_tree(tmp_path / "brain_tumor_dataset")
    assert medical.available_medical(tmp_path) == {"head-ct": True, "brain-mri": True}
    images, labels = medical.load_medical("head-ct", root=tmp_path, size=8)
    assert images.shape == (3, 1, 8, 8) and labels.tolist() == [1, 0, 0]
    images, labels = medical.load_medical("brain_mri", root=tmp_path, size=8)
    assert images.shape == (7, 1, 8, 8) and int(labels.sum()) == 4


# ------------------------------------------------------------------ the split


def numbered_images(n_normal=30, n_anomalies=12):
    """Images whose every pixel holds their own index / 100, normal and
    anomalous interleaved, so that a split can be traced back."""
    n = n_normal + n_anomalies
    images = (torch.arange(n, dtype=torch.float32) / 100).reshape(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    labels = torch.zeros(n, dtype=torch.long)
    labels[torch.randperm(n, generator=torch.Generator().manual_seed(1))[:n_anomalies]] = 1
    return images, labels


def indices(x):
    return set(torch.round(x[:, 0, 0, 0] * 100).long().tolist())


def test_medical_split_puts_every_anomaly_in_test_and_no_image_twice():
    images, labels = numbered_images()
    split = medical.medical_split(images, labels, seed=0)
    train, val, test = indices(split.x_train), indices(split.x_val), indices(split.x_test)
    assert (len(train), len(val), len(test)) == (18, 6, 6 + 12)  # 30 normal: 60/20/20; all 12 anomalies in test
    assert not (train & val or train & test or val & test) and train | val | test == set(range(len(images)))
    anomalies = set(labels.nonzero().flatten().tolist())
    assert anomalies <= test and not anomalies & (train | val)
    assert split.y_val.tolist() == [0] * 6
    traced = torch.round(split.x_test[:, 0, 0, 0] * 100).long()
    assert torch.equal(split.y_test, labels[traced]) and torch.equal(split.test_classes, split.y_test)
    assert split.normal_classes == (0,) and split.protocol == medical.MEDICAL_PROTOCOL
    assert "train 18 normal; validation 6 (0 anomalies); test 18 (6 normal, 12 anomalies)" in split.describe()


def test_medical_split_is_seeded():
    images, labels = numbered_images()
    first, same, other = (medical.medical_split(images, labels, seed=s) for s in (0, 0, 1))
    assert torch.equal(first.x_train, same.x_train) and torch.equal(first.x_test, same.x_test)
    assert indices(first.x_train) != indices(other.x_train)


@pytest.mark.parametrize("fractions", [(0.5, 0.5, 0.5), (0.8, 0.2, 0.0), (0.7, 0.3), (1.2, -0.1, -0.1)])
def test_medical_split_refuses_bad_fractions(fractions):
    images, labels = numbered_images()
    with pytest.raises(ValueError, match="fractions must be three positive numbers"):
        medical.medical_split(images, labels, fractions=fractions)


def test_medical_split_refuses_too_few_normal_images_or_labels_other_than_0_or_1():
    images, labels = numbered_images(n_normal=4)
    with pytest.raises(ValueError, match="4 normal images are too few"):
        medical.medical_split(images, labels)
    images, labels = numbered_images()
    with pytest.raises(ValueError, match="labels must be 0"):
        medical.medical_split(images, labels * 2)


# ------------------------------------------------------------------ the real head CT set


@pytest.fixture(scope="module")
def head_ct():
    """The real head CT set from the data root, or skip when it is not there (CI must have it)."""
    root = data_root()
    if not medical.available_medical(root)["head-ct"]:
        if os.environ.get("CI"):
            pytest.fail(f"head CT missing under {root}: CI must set ANOMALY_EDU_DATA")
        pytest.skip(f"head CT not under the data root {root}; set ANOMALY_EDU_DATA")
    return medical.load_medical("head-ct", root=root)


def test_real_head_ct_has_200_images_half_of_them_hemorrhage(head_ct):
    images, labels = head_ct
    assert images.shape == (200, 1, 64, 64) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1 and images.max() > 0.5
    assert labels.dtype == torch.int64 and int(labels.sum()) == 100
    assert labels[:100].tolist() == [1] * 100  # 000.png ... 099.png show a hemorrhage


def test_real_head_ct_split_is_60_20_20_normal_and_every_hemorrhage_in_test(head_ct):
    split = medical.medical_split(*head_ct, seed=0)
    assert (len(split.x_train), len(split.x_val)) == (60, 20)
    assert (int((split.y_test == 0).sum()), int(split.y_test.sum())) == (20, 100)
