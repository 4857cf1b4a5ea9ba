"""MVTec AD (Lecture 6): the loader, the split, checksums, safe extraction and the
download, all on tiny trees in MVTec's layout that the tests write themselves."""

import bz2
import gzip
import hashlib
import io
import lzma
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomaly_edu.data import CorruptDataError, DatasetNotFoundError
from anomaly_edu.data.archive import UnsafeArchiveError, safe_extract, verify_checksum
from anomaly_edu.data.mvtec import (
    MVTEC_ARCHIVE,
    MVTEC_CATEGORIES,
    MVTEC_FOLDER,
    MVTEC_OBJECTS,
    MVTEC_PROTOCOL,
    MVTEC_SHA256,
    MVTEC_TEXTURES,
    MVTEC_URL,
    MVTEC_URL_ENV_VAR,
    available_mvtec,
    download_mvtec,
    load_mvtec,
    mvtec_split,
    mvtec_url,
)

GREY_CATEGORIES = ("grid", "screw", "zipper")  # MVTec AD's grey categories


def make_mvtec_tree(
    root,
    categories=("bottle", "carpet"),
    size=16,
    *,
    n_train=3,
    n_good=2,
    defects=("crack", "scratch"),
    defect_stems=("000", "001"),
    nested=True,
    seed=0,
) -> Path:
    """Write a tiny MVTec AD tree under ``root`` and return the folder that holds the
    categories (``root/mvtec_anomaly_detection`` when ``nested``, else ``root``).

    Every image is a different random picture with values up to 150; a defect
    image is 255 exactly where its mask is set, and each mask is random, so a
    mask can be checked against its own image. Grid, screw and zipper are grey,
    as in MVTec AD. Files are written in a shuffled order."""
    rng = np.random.default_rng(seed)
    base = Path(root) / MVTEC_FOLDER if nested else Path(root)
    files = []
    for category in categories:
        channels = () if category in GREY_CATEGORIES else (3,)

        def picture(channels=channels):
            return rng.integers(0, 151, size=(size, size, *channels), dtype=np.uint8)

        folder = base / category
        files += [(folder / "train" / "good" / f"{i:03d}.png", picture()) for i in range(n_train)]
        files += [(folder / "test" / "good" / f"{i:03d}.png", picture()) for i in range(n_good)]
        for defect in defects:
            for stem in defect_stems:
                mask = rng.random((size, size)) < 0.3
                mask[rng.integers(size), rng.integers(size)] = True
                image = picture()
                image[mask] = 255
                files.append((folder / "test" / defect / f"{stem}.png", image))
                files.append((folder / "ground_truth" / defect / f"{stem}_mask.png", mask.astype(np.uint8) * 255))
    for i in rng.permutation(len(files)):
        path, pixels = files[i]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    return base


def make_tar(path: Path, add, mode="w:xz") -> Path:
    """Write a tar archive at ``path``; ``add(tar)`` adds its members."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tar:
        add(tar)
    return path


def add_bytes(tar, name, data=b"data", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def archive_of(tree: Path, path: Path) -> Path:
    """tree's categories at the top of a tar archive (compressed as ``path`` ends), as in MVTec's archive."""
    mode = {".xz": "w:xz", ".gz": "w:gz"}.get(path.suffix, "w")
    return make_tar(path, lambda tar: [tar.add(sub, arcname=sub.name) for sub in sorted(tree.iterdir())], mode)


# ---------------------------------------------------------------- names


def test_the_categories():
    assert len(MVTEC_TEXTURES) == 5 and len(MVTEC_OBJECTS) == 10 and len(MVTEC_CATEGORIES) == 15
    assert set(MVTEC_CATEGORIES) == set(MVTEC_TEXTURES) | set(MVTEC_OBJECTS)
    assert MVTEC_PROTOCOL == 3 and len(MVTEC_SHA256) == 64 and MVTEC_URL.endswith(MVTEC_ARCHIVE)


# ---------------------------------------------------------------- the loader


@pytest.mark.parametrize("nested", [True, False])
def test_load_shapes_dtypes_labels_and_masks(tmp_path, nested):
    make_mvtec_tree(tmp_path, size=20, nested=nested)
    data = load_mvtec("bottle", root=tmp_path, size=16)
    assert data.train.shape == (3, 3, 16, 16) and data.train.dtype == torch.float32
    assert data.test.shape == (6, 3, 16, 16) and data.test.dtype == torch.float32
    assert 0 <= float(data.test.min()) and float(data.test.max()) <= 1
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == [0, 0, 1, 1, 1, 1]
    assert data.defect_types == ["good", "good", "crack", "crack", "scratch", "scratch"]
    assert data.names[0] == "bottle/test/good/000.png" and data.names[2] == "bottle/test/crack/000.png"
    assert data.train_names == [f"bottle/train/good/{i:03d}.png" for i in range(3)]
    assert len(data.masks) == 6
    assert all(m.shape == (16, 16) and m.dtype == bool for m in data.masks)
    assert not data.masks[0].any() and not data.masks[1].any() and all(m.any() for m in data.masks[2:])
    assert data.defect_classes == ("good", "crack", "scratch")
    assert "train 3 good" in data.describe()
    assert available_mvtec(tmp_path) == {c: c in ("bottle", "carpet") for c in MVTEC_CATEGORIES}


def test_masks_are_paired_by_name_not_by_sort_order(tmp_path):
    stems = ("1", "10", "2")
    make_mvtec_tree(tmp_path, categories=("bottle",), defects=("crack",), defect_stems=stems)
    truth = tmp_path / MVTEC_FOLDER / "bottle" / "ground_truth" / "crack"
    images = sorted(p.name for p in (truth.parents[1] / "test" / "crack").iterdir())
    masks = sorted(p.name for p in truth.iterdir())
    # a real trap: "1.png" < "10.png" but "10_mask.png" < "1_mask.png", so pairing by sort order goes wrong
    assert [name.replace(".png", "_mask.png") for name in images] != masks
    data = load_mvtec("bottle", root=tmp_path, size=16)  # the tree's own size: no resizing
    defects = [i for i, kind in enumerate(data.defect_types) if kind == "crack"]
    assert [data.names[i] for i in defects] == [f"bottle/test/crack/{s}.png" for s in ("1", "10", "2")]
    for i in defects:  # a defect image is 255 exactly on its own mask, elsewhere at most 150
        assert np.array_equal(data.masks[i], data.test[i, 0].numpy() > 0.99), data.names[i]


def test_a_grey_category_has_three_equal_channels(tmp_path):
    make_mvtec_tree(tmp_path, categories=("bottle", "grid"))
    grid, bottle = load_mvtec("grid", root=tmp_path, size=16), load_mvtec("bottle", root=tmp_path, size=16)
    assert grid.train.shape == bottle.train.shape == (3, 3, 16, 16)
    assert torch.equal(grid.train[:, 0], grid.train[:, 1]) and torch.equal(grid.train[:, 0], grid.train[:, 2])
    assert not torch.equal(bottle.train[:, 0], bottle.train[:, 1])


def test_a_non_square_image_is_resized_with_a_warning(tmp_path):
    base = make_mvtec_tree(tmp_path, categories=("bottle",))
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(base / "bottle" / "train" / "good" / "009.png")
    with pytest.warns(UserWarning, match=r"009\.png \(24x16\)"):
        data = load_mvtec("bottle", root=tmp_path, size=8)
    assert data.train.shape == (4, 3, 8, 8)


# ---------------------------------------------------------------- the loader's errors


def test_unknown_category_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="unknown MVTec AD category 'bottel'") as err:
        load_mvtec("bottel", root=tmp_path)
    assert all(c in str(err.value) for c in MVTEC_CATEGORIES)


def test_a_missing_category_says_where_it_looked_and_how_to_get_it(tmp_path):
    make_mvtec_tree(tmp_path, categories=("bottle",))
    with pytest.raises(DatasetNotFoundError) as err:
        load_mvtec("carpet", root=tmp_path)
    message = str(err.value)
    assert str(tmp_path / MVTEC_FOLDER / "carpet") in message and "download_mvtec" in message


def test_a_missing_mask_names_the_image_and_the_expected_mask(tmp_path):
    base = make_mvtec_tree(tmp_path, categories=("bottle",))
    mask = base / "bottle" / "ground_truth" / "scratch" / "001_mask.png"
    mask.unlink()
    with pytest.raises(CorruptDataError) as err:
        load_mvtec("bottle", root=tmp_path)
    assert str(base / "bottle" / "test" / "scratch" / "001.png") in str(err.value) and str(mask) in str(err.value)


def test_a_mask_of_another_size_names_both_files_and_sizes(tmp_path):
    base = make_mvtec_tree(tmp_path, categories=("bottle",), size=16)
    mask = base / "bottle" / "ground_truth" / "crack" / "000_mask.png"
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(mask)
    with pytest.raises(CorruptDataError) as err:
        load_mvtec("bottle", root=tmp_path)
    message = str(err.value)
    assert str(mask) in message and str(base / "bottle" / "test" / "crack" / "000.png") in message
    assert "20x20" in message and "16x16" in message


def test_a_mask_without_an_image_is_named(tmp_path):
    base = make_mvtec_tree(tmp_path, categories=("bottle",))
    stray = base / "bottle" / "ground_truth" / "crack" / "007_mask.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(stray)
    with pytest.raises(CorruptDataError, match="belongs to no defect image") as err:
        load_mvtec("bottle", root=tmp_path)
    assert str(stray) in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_png_is_named(tmp_path, damage):
    base = make_mvtec_tree(tmp_path, categories=("bottle",), size=64)
    image = base / "bottle" / "test" / "good" / "001.png"
    raw = image.read_bytes()
    image.write_bytes({"garbage": b"not a png at all", "truncated": raw[: len(raw) // 2], "empty": b""}[damage])
    with pytest.raises(CorruptDataError) as err:
        load_mvtec("bottle", root=tmp_path)
    assert str(image) in str(err.value)


def test_an_incomplete_category_folder_is_named(tmp_path):
    (tmp_path / MVTEC_FOLDER / "bottle" / "test").mkdir(parents=True)
    with pytest.raises(CorruptDataError, match="train"):
        load_mvtec("bottle", root=tmp_path)
    assert not available_mvtec(tmp_path)["bottle"]


# ---------------------------------------------------------------- the split


def test_split_sizes_disjointness_and_determinism(tmp_path):
    make_mvtec_tree(tmp_path, categories=("bottle",), n_train=10)
    split = mvtec_split("bottle", root=tmp_path, size=16, val_size=2, seed=0)
    assert (len(split.x_train), len(split.x_val)) == (8, 2)
    assert split.y_val.tolist() == [0, 0] and split.y_val.dtype == torch.int64
    train_rows = {tuple(x.flatten().tolist()) for x in split.x_train}
    assert len(train_rows) == 8 and not train_rows & {tuple(x.flatten().tolist()) for x in split.x_val}
    assert split.protocol == MVTEC_PROTOCOL and split.normal_classes == (0,)
    data = load_mvtec("bottle", root=tmp_path, size=16)
    assert torch.equal(split.x_test, data.test) and torch.equal(split.y_test, data.labels)
    assert split.test_classes.tolist() == [0, 0, 1, 1, 2, 2]
    assert torch.equal((split.test_classes > 0).long(), split.y_test)
    assert len(split.masks_test) == len(split.x_test) and not split.masks_test[0].any()
    again = mvtec_split("bottle", root=tmp_path, size=16, val_size=2, seed=0)
    assert torch.equal(again.x_val, split.x_val) and torch.equal(again.x_train, split.x_train)
    others = [mvtec_split("bottle", root=tmp_path, size=16, val_size=2, seed=s).x_val for s in (1, 2, 3)]
    assert any(not torch.equal(x, split.x_val) for x in others)


def test_split_holds_out_25_images_as_the_puzzle_ae_code_and_refuses_too_few(tmp_path):
    make_mvtec_tree(tmp_path, categories=("carpet",), n_train=30)
    split = mvtec_split("carpet", root=tmp_path, size=16)
    assert (len(split.x_train), len(split.x_val)) == (5, 25)
    with pytest.raises(ValueError, match="val_size must be a whole number of images, at least 1"):
        mvtec_split("carpet", root=tmp_path, val_size=0)
    with pytest.raises(ValueError, match="too few to hold out 30 for validation"):
        mvtec_split("carpet", root=tmp_path, val_size=30)


# ---------------------------------------------------------------- checksums and safe extraction


def test_verify_checksum_names_the_file_and_both_hashes(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"abc")
    right = hashlib.sha256(b"abc").hexdigest()
    assert verify_checksum(path, right.upper()) == right
    with pytest.raises(CorruptDataError) as err:
        verify_checksum(path, "0" * 64)
    assert str(path) in str(err.value) and right in str(err.value) and "0" * 64 in str(err.value)
    assert path.exists()  # nothing deleted


def test_safe_extract_extracts_and_refuses_to_overwrite(tmp_path):
    archive = archive_of(make_mvtec_tree(tmp_path / "src", categories=("bottle",)), tmp_path / "a.tar.gz")
    target = safe_extract(archive, tmp_path / "out" / "mvtec")
    assert load_mvtec("bottle", root=target).train.shape[0] == 3
    with pytest.raises(FileExistsError, match="bottle"):
        safe_extract(archive, target)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mvtec"]  # no scratch folder left


def _escape_cases(outside: Path):
    return {
        "dotdot": lambda tar: (add_bytes(tar, "ok/a.txt"), add_bytes(tar, "../evil.txt")),
        "absolute": lambda tar: (add_bytes(tar, "ok/a.txt"), add_bytes(tar, str(outside / "evil.txt"))),
        "symlink": lambda tar: (
            add_bytes(tar, "ok/a.txt"),
            add_bytes(tar, "ok/link", kind=tarfile.SYMTYPE, linkname="../.."),
            add_bytes(tar, "ok/link/evil.txt"),
        ),
        "hardlink": lambda tar: (
            add_bytes(tar, "ok/a.txt"),
            add_bytes(tar, "ok/hard", kind=tarfile.LNKTYPE, linkname="../evil.txt"),
        ),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "hardlink"])
def test_safe_extract_refuses_paths_that_leave_the_target(tmp_path, case):
    outside = tmp_path / "work"
    target = outside / "target"
    archive = make_tar(tmp_path / "bad.tar", _escape_cases(outside)[case], mode="w")
    bad_name = {"dotdot": "../evil.txt", "absolute": str(outside / "evil.txt"), "symlink": "ok/link"}.get(
        case, "ok/hard"
    )
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract(archive, target)
    assert repr(bad_name) in str(err.value) and "outside" in str(err.value)
    assert not (outside / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not target.exists() and (not outside.exists() or not any(outside.iterdir()))


def test_safe_extract_refuses_even_an_inside_link(tmp_path):
    archive = make_tar(
        tmp_path / "link.tar",
        lambda tar: (add_bytes(tar, "a.txt"), add_bytes(tar, "b", kind=tarfile.SYMTYPE, linkname="a.txt")),
        mode="w",
    )
    with pytest.raises(UnsafeArchiveError, match="only plain files and folders"):
        safe_extract(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


@pytest.mark.parametrize("damage", ["truncated", "cut-between-members", "garbage", "empty"])
def test_a_truncated_or_corrupt_archive_is_named_and_leaves_nothing(tmp_path, damage):
    tree = make_mvtec_tree(tmp_path / "src", categories=("bottle",), size=32)
    plain = damage == "cut-between-members"  # a plain tar cut where a member starts: tarfile alone would not notice
    archive = archive_of(tree, tmp_path / ("x.tar" if plain else "x.tar.xz"))
    raw = archive.read_bytes()
    if plain:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
    damaged = {
        "truncated": raw[: len(raw) * 2 // 3],
        "cut-between-members": raw[: members[len(members) // 2].offset] if plain else b"",
        "garbage": np.random.default_rng(0).bytes(5000),
        "empty": b"\x00" * 10240,  # a valid tar with no members: not the archive expected either
    }
    archive.write_bytes(damaged[damage])
    target = tmp_path / "out" / "mvtec"
    with pytest.raises(CorruptDataError) as err:
        safe_extract(archive, target)
    assert str(archive) in str(err.value)
    assert not target.exists() and (not target.parent.exists() or not any(target.parent.iterdir()))


COMPRESSIONS = {"tar": bytes, "tar.gz": gzip.compress, "tar.bz2": bz2.compress, "tar.xz": lzma.compress}


def three_member_tar() -> bytes:
    """A plain tar of a.txt, b.txt, c.txt: headers at bytes 0, 1024 and 2048, each member's data one block."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ("a.txt", "b.txt", "c.txt"):
            add_bytes(tar, name)
    return out.getvalue()


def refused_as_corrupt(tmp_path, data: bytes, suffix: str) -> str:
    """Write ``data`` as an archive, check safe_extract refuses it naming it and leaves nothing; the message."""
    archive = tmp_path / f"x.{suffix}"
    archive.write_bytes(data)
    target = tmp_path / "out" / "data"
    with pytest.raises(CorruptDataError) as err:
        safe_extract(archive, target)
    assert str(archive) in str(err.value)
    assert not target.exists() and (not target.parent.exists() or not any(target.parent.iterdir()))  # no scratch
    return str(err.value)


@pytest.mark.parametrize("suffix", COMPRESSIONS)
def test_a_damaged_second_header_is_refused_for_every_compression(tmp_path, suffix):
    raw = bytearray(three_member_tar())
    raw[1024:1028] = b"XXXX"  # b.txt's name: its header's checksum no longer matches
    message = refused_as_corrupt(tmp_path, COMPRESSIONS[suffix](bytes(raw)), suffix)
    assert "at byte 1024" in message


@pytest.mark.parametrize("suffix", ["tar.gz", "tar.bz2", "tar.xz"])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_a_cut_compressed_stream_is_refused(tmp_path, suffix, keep):
    data = COMPRESSIONS[suffix](three_member_tar())
    refused_as_corrupt(tmp_path, data[: int(len(data) * keep)], suffix)  # 0.98: only the stream's end is cut


@pytest.mark.parametrize("suffix", COMPRESSIONS)
def test_data_after_the_end_of_archive_is_refused_but_zeros_are_padding(tmp_path, suffix):
    raw = three_member_tar()
    message = refused_as_corrupt(tmp_path, COMPRESSIONS[suffix](raw + b"junk"), suffix)
    assert f"at byte {len(raw)}" in message
    archive = tmp_path / f"padded.{suffix}"
    archive.write_bytes(COMPRESSIONS[suffix](raw + bytes(5000)))
    target = safe_extract(archive, tmp_path / "padded")
    assert sorted(p.name for p in target.iterdir()) == ["a.txt", "b.txt", "c.txt"]


@pytest.mark.parametrize("again", ["a.txt", "./a.txt"])
def test_a_path_held_twice_is_refused(tmp_path, again):
    archive = make_tar(
        tmp_path / "twice.tar.gz",
        lambda tar: (add_bytes(tar, "a.txt", b"first"), add_bytes(tar, "b.txt"), add_bytes(tar, again, b"second")),
        mode="w:gz",
    )
    with pytest.raises(UnsafeArchiveError, match="twice") as err:
        safe_extract(archive, tmp_path / "out" / "data")
    assert repr(again) in str(err.value) and str(archive) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_a_file_system_error_is_not_called_corruption(tmp_path):
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(gzip.compress(three_member_tar()))
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError) as err:
        safe_extract(archive, tmp_path / "file" / "data")
    assert not isinstance(err.value, CorruptDataError)


# ---------------------------------------------------------------- download


def test_download_through_a_file_url_checks_and_loads(tmp_path, monkeypatch):
    archive = archive_of(make_mvtec_tree(tmp_path / "src", nested=False), tmp_path / "mirror" / MVTEC_ARCHIVE)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setenv(MVTEC_URL_ENV_VAR, archive.as_uri())
    assert mvtec_url() == archive.as_uri() and mvtec_url("http://x/y") == "http://x/y"
    data_dir = tmp_path / "data"
    folder = download_mvtec(root=data_dir, sha256=sha, progress=False)
    assert folder == data_dir / MVTEC_FOLDER and (data_dir / MVTEC_ARCHIVE).is_file()
    assert not (data_dir / (MVTEC_ARCHIVE + ".part")).exists()
    assert load_mvtec("carpet", root=data_dir, size=16).test.shape == (6, 3, 16, 16)
    assert available_mvtec(data_dir)["bottle"]


def test_download_with_a_wrong_checksum_keeps_no_archive(tmp_path):
    archive = archive_of(make_mvtec_tree(tmp_path / "src", nested=False), tmp_path / "mirror" / MVTEC_ARCHIVE)
    data_dir = tmp_path / "data"
    wrong = "ab" * 32
    with pytest.raises(DatasetNotFoundError) as err:  # the only mirror served another file: all failed
        download_mvtec(root=data_dir, url=archive.as_uri(), sha256=wrong, progress=False)
    part = data_dir / (MVTEC_ARCHIVE + ".part")
    assert archive.as_uri() in str(err.value) and wrong in str(err.value)
    assert hashlib.sha256(archive.read_bytes()).hexdigest() in str(err.value)
    assert not (data_dir / MVTEC_ARCHIVE).exists() and not (data_dir / MVTEC_FOLDER).exists()
    assert not part.exists()  # 4.9 GB of the wrong file are not kept; the message names its hash


def test_a_failed_download_says_how_to_get_the_data(tmp_path):
    missing = (tmp_path / "nowhere" / MVTEC_ARCHIVE).as_uri()
    with pytest.raises(DatasetNotFoundError, match="could not be downloaded") as err:
        download_mvtec(root=tmp_path / "data", url=missing, progress=False)
    assert missing in str(err.value) and not (tmp_path / "data" / (MVTEC_ARCHIVE + ".part")).exists()
