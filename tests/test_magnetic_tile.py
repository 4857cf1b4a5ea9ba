"""The magnetic-tile set of Lecture 6: reading photos and masks, pairing them by
name, clear errors, and the one-class split. Small trees in the authors' layout
are made here (make_magnetic_tile_tree); the real set is read once from the
data root ($ANOMALY_EDU_DATA) when it is there."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from anomaly_edu.data import CorruptDataError, DatasetNotFoundError, data_root
from anomaly_edu.data import magnetic_tile as mt
from anomaly_edu.data.medical import medical_split

DEFAULT_COUNTS = {"Free": 5, "Blowhole": 2, "Break": 1, "Crack": 1, "Fray": 1, "Uneven": 2}


def tile_size(i):
    """A size (width, height) that differs from tile to tile, as in the real set."""
    return 20 + 3 * i, 16 + 2 * i


def write_pair(imgs, stem, size, value, mask=None, ext=".jpg"):
    """Write the photo ``stem + ext`` (uniform grey ``value``) and, unless ``mask``
    is False, its mask ``stem.png`` (all zero, or the given bool array)."""
    imgs.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(imgs / f"{stem}{ext}", format="JPEG", quality=95)
    if mask is not False:
        pixels = np.zeros(size[::-1], np.uint8) if mask is None else np.where(mask, 255, 0).astype(np.uint8)
        Image.fromarray(pixels).save(imgs / f"{stem}.png")


def make_magnetic_tile_tree(root, counts=None):
    """A small magnetic-tile set under ``root`` in the authors' layout:
    ``root/magnetic_tile/MT_<type>/Imgs/<name>.jpg`` beside ``<name>.png``, with
    ``counts[type]`` tiles of each type (DEFAULT_COUNTS by default). Tile i has
    its own size (tile_size), a uniform grey value 10 + 5 i and, when defective,
    a mask whose only True pixels are row 1 and column i (all zero when free).
    Returns the data set folder."""
    folder = root / "magnetic_tile"
    counts = {**DEFAULT_COUNTS, **(counts or {})}
    i = 0
    for name in mt.MAGNETIC_TILE_TYPES:
        imgs = folder / f"MT_{name}" / "Imgs"
        imgs.mkdir(parents=True, exist_ok=True)
        for k in range(counts[name]):
            size = tile_size(i)
            mask = None
            if name != "Free":
                mask = np.zeros(size[::-1], bool)
                mask[1, :], mask[:, i] = True, True
            write_pair(imgs, f"exp{k}_num_{i}", size, 10 + 5 * i, mask)
            i += 1
    return folder


def noisy_jpeg(path, size=(96, 64), seed=0):
    """A valid JPEG of noise (a few kB, so that cutting it leaves a partial scan)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size[::-1], dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)
    return path


# ------------------------------------------------------------------ one file


def test_read_tile_is_grey_uint8_at_its_own_size(tmp_path):
    Image.new("RGB", (37, 21), (200, 100, 50)).save(tmp_path / "a.jpg")
    tile = mt.read_tile(tmp_path / "a.jpg")
    assert tile.shape == (21, 37) and tile.dtype == np.uint8
    assert abs(int(tile.mean()) - 124) <= 3  # PIL's luminance of (200, 100, 50)


def test_read_mask_is_bool_above_127(tmp_path):
    pixels = np.array([[0, 1, 127, 128, 254, 255]], np.uint8)
    Image.fromarray(pixels).save(tmp_path / "m.png")
    mask = mt.read_mask(tmp_path / "m.png")
    assert mask.dtype == bool and mask.tolist() == [[False, False, False, True, True, True]]


def test_random_bytes_are_a_corrupt_data_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptDataError, match="bad.jpg"):
        mt.read_tile(bad)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(CorruptDataError, match="empty.png"):
        mt.read_mask(tmp_path / "empty.png")


@pytest.mark.parametrize("tolerant", [False, True])
def test_truncated_jpeg_is_an_error_even_if_pil_tolerates_truncation(tmp_path, monkeypatch, tolerant):
    whole = noisy_jpeg(tmp_path / "whole.jpg").read_bytes()
    assert mt.read_tile(tmp_path / "whole.jpg").shape == (64, 96)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", tolerant)
    for cut in (len(whole) // 2, len(whole) - 1, len(whole) - 2):  # half of it, or the end marker cut
        (tmp_path / "cut.jpg").write_bytes(whole[:cut])
        with pytest.raises(CorruptDataError, match="cut.jpg"):
            mt.read_tile(tmp_path / "cut.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is tolerant  # the caller's setting is restored


def test_truncated_png_mask_is_a_corrupt_data_error(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 2, (64, 96), dtype=np.uint8) * 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    (tmp_path / "m.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(CorruptDataError, match="m.png"):
        mt.read_mask(tmp_path / "m.png")


# ------------------------------------------------------------------ a small tree


def test_load_small_tree_shapes_labels_types_names_and_masks(tmp_path):
    make_magnetic_tile_tree(tmp_path)
    tiles = mt.load_magnetic_tiles(tmp_path, size=16, progress=False)
    n = sum(DEFAULT_COUNTS.values())
    assert len(tiles) == n and tiles.images.shape == (n, 1, 16, 16) and tiles.images.dtype == torch.float32
    assert 0 <= tiles.images.min() and tiles.images.max() <= 1
    expected_types = [t for t, name in enumerate(mt.MAGNETIC_TILE_TYPES) for _ in range(DEFAULT_COUNTS[name])]
    assert tiles.types.dtype == torch.int64 and tiles.types.tolist() == expected_types
    assert tiles.labels.dtype == torch.int64 and tiles.labels.tolist() == [int(t != 0) for t in expected_types]
    assert tiles.names[0] == "MT_Free/Imgs/exp0_num_0.jpg" and tiles.names[-1].startswith("MT_Uneven/Imgs/")
    for i, mask in enumerate(tiles.masks):  # each at its own photo's size, not resized
        assert mask.dtype == bool and mask.shape == tile_size(i)[::-1]
        assert mask.any() == bool(tiles.labels[i])
    grey = (10 + 5 * torch.arange(n)).float() / 255  # tile i is a uniform grey 10 + 5 i
    assert torch.allclose(tiles.images.mean(dim=(1, 2, 3)), grey, atol=2 / 255)


def test_masks_pair_with_their_images_by_name_not_by_order(tmp_path):
    make_magnetic_tile_tree(tmp_path)
    imgs = tmp_path / "magnetic_tile" / "MT_Crack" / "Imgs"
    # numbers whose order as text differs from their order as numbers, mixed extensions,
    # masks written in the opposite order of their images; every mask unique (True at row j)
    stems = ["num_100", "num_9", "Num_10", "num_1000", "num_99"]
    exts = [".jpg", ".JPG", ".jpeg", ".jpg", ".jpg"]
    for j, (stem, ext) in enumerate(zip(stems, exts)):
        Image.new("L", (12, 8), 40 * j + 20).save(imgs / f"{stem}{ext}", format="JPEG", quality=95)
    for j in reversed(range(len(stems))):
        mask = np.zeros((8, 12), np.uint8)
        mask[j] = 255
        Image.fromarray(mask).save(imgs / f"{stems[j]}.png")
    tiles = mt.load_magnetic_tiles(tmp_path, size=4, progress=False)
    for j, (stem, ext) in enumerate(zip(stems, exts)):
        i = tiles.names.index(f"MT_Crack/Imgs/{stem}{ext}")
        assert np.flatnonzero(tiles.masks[i].any(axis=1)).tolist() == [j]  # its own mask
        assert abs(float(tiles.images[i].mean()) * 255 - (40 * j + 20)) < 3  # its own photo


def test_image_without_mask_and_mask_without_image_are_named(tmp_path):
    folder = make_magnetic_tile_tree(tmp_path)
    imgs = folder / "MT_Break" / "Imgs"
    # as many photos as masks, so pairing by sorted order would pair x1.jpg with x2.png
    write_pair(imgs, "x1", (10, 10), 50, mask=False)
    Image.new("L", (10, 10), 0).save(imgs / "x2.png")
    with pytest.raises(ValueError, match="x1.jpg") as info:
        mt.load_magnetic_tiles(tmp_path, progress=False)
    assert "x2.png" in str(info.value) and str(imgs) in str(info.value)


def test_missing_mask_names_the_image(tmp_path):
    folder = make_magnetic_tile_tree(tmp_path)
    (folder / "MT_Free" / "Imgs" / "exp2_num_2.png").unlink()
    with pytest.raises(ValueError, match=r"without a mask.*exp2_num_2\.jpg"):
        mt.load_magnetic_tiles(tmp_path, progress=False)


def test_mask_of_another_size_names_both_files_and_sizes(tmp_path):
    folder = make_magnetic_tile_tree(tmp_path)
    imgs = folder / "MT_Fray" / "Imgs"
    photo = next(imgs.glob("*.jpg"))
    width, height = Image.open(photo).size
    Image.new("L", (width + 1, height), 255).save(photo.with_suffix(".png"))
    with pytest.raises(ValueError) as info:
        mt.load_magnetic_tiles(tmp_path, progress=False)
    message = str(info.value)
    assert str(photo) in message and str(photo.with_suffix(".png")) in message
    assert f"{width} x {height}" in message and f"{width + 1} x {height}" in message


def test_corrupt_and_truncated_jpeg_in_the_tree_name_the_file(tmp_path):
    folder = make_magnetic_tile_tree(tmp_path)
    photo = next((folder / "MT_Blowhole" / "Imgs").glob("*.jpg"))
    photo.write_bytes(np.random.default_rng(2).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(CorruptDataError, match=photo.name):
        mt.load_magnetic_tiles(tmp_path, progress=False)
    whole = noisy_jpeg(tmp_path / "noise.jpg", size=Image.open(photo.with_suffix(".png")).size).read_bytes()
    photo.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptDataError, match=photo.name):
        mt.load_magnetic_tiles(tmp_path, progress=False)


def test_missing_data_set_says_where_it_looked_and_how_to_get_it(tmp_path):
    assert not mt.available_magnetic_tiles(tmp_path)
    with pytest.raises(DatasetNotFoundError) as info:
        mt.load_magnetic_tiles(tmp_path, progress=False)
    message = str(info.value)
    assert str(tmp_path / "magnetic_tile") in message and "MT_<type>/Imgs/<name>.jpg" in message
    assert "abin24/Magnetic-tile-defect-datasets." in message and "ANOMALY_EDU_DATA" in message


def test_missing_type_folder_is_named(tmp_path):
    folder = make_magnetic_tile_tree(tmp_path)
    assert mt.available_magnetic_tiles(tmp_path)
    for f in (folder / "MT_Fray" / "Imgs").iterdir():
        f.unlink()
    (folder / "MT_Fray" / "Imgs").rmdir()
    assert not mt.available_magnetic_tiles(tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"incomplete: missing .*MT_Fray"):
        mt.load_magnetic_tiles(tmp_path, progress=False)


def test_bad_size_is_refused(tmp_path):
    make_magnetic_tile_tree(tmp_path)
    for size in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="size must be"):
            mt.load_magnetic_tiles(tmp_path, size=size, progress=False)


def test_progress_bar_is_shown_when_asked(tmp_path, capsys):
    make_magnetic_tile_tree(tmp_path)
    mt.load_magnetic_tiles(tmp_path, size=8, progress=True)
    assert "magnetic tiles" in capsys.readouterr().err
    mt.load_magnetic_tiles(tmp_path, size=8, progress=False)
    assert "magnetic tiles" not in capsys.readouterr().err


def test_split_of_a_small_tree(tmp_path):
    make_magnetic_tile_tree(tmp_path, {"Free": 10})
    split = mt.magnetic_tile_split(tmp_path, size=8, seed=3, progress=False)
    tiles = mt.load_magnetic_tiles(tmp_path, size=8, progress=False)
    train, val, test = mt.magnetic_tile_indices(tiles.labels, seed=3)
    n_defective = sum(DEFAULT_COUNTS.values()) - DEFAULT_COUNTS["Free"]
    assert (len(train), len(val), len(test)) == (6, 2, 2 + n_defective)
    assert split.protocol == mt.MAGNETIC_TILE_PROTOCOL and split.normal_classes == (0,)
    assert torch.equal(split.x_train, tiles.images[train]) and torch.equal(split.x_test, tiles.images[test])
    assert split.y_val.tolist() == [0, 0] and split.y_test.tolist() == [0, 0] + [1] * n_defective
    assert split.test_classes.tolist() == tiles.types[test].tolist()
    assert len(split.masks_test) == len(test)
    assert all(np.array_equal(m, tiles.masks[i]) for m, i in zip(split.masks_test, test.tolist()))
    assert "test by type: Free 2, Blowhole 2" in mt.split_description(split)
    assert "train 6 normal" in split.describe()


def test_indices_agree_with_the_medical_split_and_check_their_input():
    labels = torch.tensor([0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0])
    train, val, test = mt.magnetic_tile_indices(labels, seed=5)
    images = (torch.arange(12, dtype=torch.float32) / 11).view(12, 1, 1, 1).expand(12, 1, 2, 2).contiguous()
    split = medical_split(images, labels, seed=5)
    assert torch.equal(split.x_train, images[train]) and torch.equal(split.x_val, images[val])
    assert torch.equal(split.x_test, images[test]) and torch.equal(split.y_test, labels[test])
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(12))
    with pytest.raises(ValueError, match="fractions"):
        mt.magnetic_tile_indices(labels, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="1-D"):
        mt.magnetic_tile_indices(labels.view(3, 4))


# ------------------------------------------------------------------ the real set

REAL_COUNTS = {"Free": 952, "Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Uneven": 103}
# Defective tiles whose mask is all zero in the authors' files (checked on the real set):
EMPTY_DEFECT_MASKS = {
    "MT_Uneven/Imgs/exp3_num_45042.jpg",
    "MT_Uneven/Imgs/exp4_num_124690.jpg",
    "MT_Uneven/Imgs/exp4_num_352527.jpg",
    "MT_Uneven/Imgs/exp4_num_45057.jpg",
}


@pytest.fixture(scope="module")
def real_tiles():
    """The real magnetic-tile set at 32 x 32, read once, or skip when it is not there (CI must have it)."""
    root = data_root()
    if not mt.available_magnetic_tiles(root):
        if os.environ.get("CI"):
            pytest.fail(f"the magnetic-tile set is missing under {root}: CI must set ANOMALY_EDU_DATA")
        pytest.skip(f"the magnetic-tile set is not under the data root {root}; set ANOMALY_EDU_DATA")
    return mt.load_magnetic_tiles(root, size=32, progress=False)


def test_real_set_counts_per_type(real_tiles):
    assert len(real_tiles) == 1344 and real_tiles.images.shape == (1344, 1, 32, 32)
    assert (int((real_tiles.labels == 0).sum()), int(real_tiles.labels.sum())) == (952, 392)
    counts = torch.bincount(real_tiles.types, minlength=6).tolist()
    assert dict(zip(mt.MAGNETIC_TILE_TYPES, counts)) == REAL_COUNTS
    assert 0 <= real_tiles.images.min() and real_tiles.images.max() <= 1 and real_tiles.images.std() > 0.05
    assert len(set(real_tiles.names)) == 1344


def test_real_masks_have_their_images_sizes_which_vary(real_tiles):
    sizes = [m.shape for m in real_tiles.masks]
    assert len(set(sizes)) > 500  # sizes differ from tile to tile
    heights, widths = zip(*sizes)
    assert (min(widths), max(widths), min(heights), max(heights)) == (103, 632, 222, 403)
    root = data_root() / mt.MAGNETIC_TILE_FOLDER
    for i in (0, 500, 951, 952, 1100, 1343):  # a few photos read again at their own size
        assert mt.read_tile(root / real_tiles.names[i]).shape == real_tiles.masks[i].shape


def test_real_free_masks_are_empty_and_defect_masks_are_not(real_tiles):
    free = real_tiles.labels == 0
    assert not any(m.any() for m, f in zip(real_tiles.masks, free.tolist()) if f)
    empty = {n for n, m, f in zip(real_tiles.names, real_tiles.masks, free.tolist()) if not f and not m.any()}
    assert empty == EMPTY_DEFECT_MASKS  # four Uneven masks are blank in the authors' data


def test_real_split_sizes_disjoint_and_only_free_in_train_and_validation(real_tiles):
    split = mt.split_magnetic_tiles(real_tiles, seed=0)
    assert (len(split.x_train), len(split.x_val), len(split.x_test)) == (571, 190, 191 + 392)
    assert (int((split.y_test == 0).sum()), int(split.y_test.sum())) == (191, 392)
    assert split.y_val.tolist() == [0] * 190 and split.protocol == 4
    train, val, test = mt.magnetic_tile_indices(real_tiles.labels, seed=0)
    names = [{real_tiles.names[i] for i in part.tolist()} for part in (train, val, test)]
    assert sum(map(len, names)) == len(set.union(*names)) == 1344  # disjoint and complete
    assert all(n.startswith("MT_Free/") for n in names[0] | names[1])
    assert torch.equal(split.test_classes, real_tiles.types[test])
    assert [m.shape for m in split.masks_test] == [real_tiles.masks[i].shape for i in test.tolist()]
    assert "Blowhole 115" in mt.split_description(split)


def test_real_split_is_deterministic_under_its_seed(real_tiles):
    first = mt.magnetic_tile_indices(real_tiles.labels, seed=0)
    again = mt.magnetic_tile_indices(real_tiles.labels, seed=0)
    other = mt.magnetic_tile_indices(real_tiles.labels, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert set(first[0].tolist()) != set(other[0].tolist())
    assert torch.equal(first[2][191:], other[2][191:])  # the defective tiles: all in test, same order


def test_first_half_of_a_real_photo_is_a_corrupt_data_error(real_tiles, tmp_path):
    whole = (data_root() / mt.MAGNETIC_TILE_FOLDER / real_tiles.names[1000]).read_bytes()
    (tmp_path / "half.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorruptDataError, match="half.jpg"):
        mt.read_tile(tmp_path / "half.jpg")
