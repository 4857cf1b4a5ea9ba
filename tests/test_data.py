import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from anomaly_edu import data


def write_idx(path, array):
    """Write a uint8 array as an IDX file (the MNIST format)."""
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


def make_fake_mnist(root, n_train=60, n_test=30, name="MNIST"):
    """A tiny MNIST-like data set in torchvision's layout, labels cycling 0..9."""
    raw = root / name / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return raw


def make_fake_cifar10(root, per_class_train=20, per_class_test=20):
    """A tiny CIFAR-10 in torchvision's layout (cifar-10-batches-py: five training
    batches, a test batch and batches.meta, pickled dicts), labels cycling 0..9.
    torchvision checks the files' MD5 sums: patch
    ``torchvision.datasets.cifar.check_integrity`` to accept these."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n_train, n_test = 10 * per_class_train, 10 * per_class_test
    batches = {f"data_batch_{k + 1}": part for k, part in enumerate(np.array_split(np.arange(n_train), 5))}
    batches["test_batch"] = np.arange(n_test)
    for name, index in batches.items():
        pixels = rng.integers(0, 256, (len(index), 3 * 32 * 32), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"data": pixels, "labels": (index % 10).tolist()}))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))
    return folder


# ------------------------------------------------------------------ real MNIST


def test_mnist_loads_as_float_images_in_unit_range(mnist):
    (x, y), (x_test, y_test) = mnist
    assert x.shape == (60000, 1, 28, 28) and x_test.shape == (10000, 1, 28, 28)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= x.min() and x.max() == 1
    assert torch.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_protocol2_split_of_digit_8_has_the_official_sizes(mnist):
    split = data.protocol2_split(*mnist, 8)
    assert len(split.x_train) == 5851
    assert len(split.x_test) == 10000
    assert int((split.y_test == 0).sum()) == 974
    assert len(split.x_val) == 0


def test_protocol1_split_of_digit_8_follows_methods(mnist):
    split = data.protocol1_split(*mnist, 8, anomaly_fraction=0.5)
    n = 5851 + 974  # train and test merged
    assert len(split.x_train) == int(0.6 * n) == 4095
    assert int((split.y_val == 0).sum()) == int(0.2 * n) == 1365
    n_test_normal = n - 4095 - 1365
    assert int((split.y_test == 0).sum()) == n_test_normal == 1365
    assert int(split.y_test.sum()) == n_test_normal  # p = 0.5: as many anomalies as normals
    assert int(split.y_val.sum()) == 1365


def test_protocol1_anomaly_fraction(mnist):
    split = data.protocol1_split(*mnist, 3, anomaly_fraction=0.25)
    assert split.y_test.float().mean().item() == pytest.approx(0.25, abs=1e-3)
    assert split.y_val.float().mean().item() == pytest.approx(0.25, abs=1e-3)


# ------------------------------------------------------------------ splits on tiny data


def tiny_dataset(n=100, classes=5):
    x = torch.rand(n, 1, 4, 4)
    y = torch.arange(n) % classes
    x[:, 0, 0, 0] = torch.arange(n) / n  # a unique tag per image
    return x, y


def test_protocol1_sets_are_disjoint_and_labelled_correctly():
    x, y = tiny_dataset()
    split = data.protocol1_split((x, y), None, [0, 1], anomaly_fraction=0.25, seed=3)
    tags = [set(s[:, 0, 0, 0].tolist()) for s in (split.x_train, split.x_val, split.x_test)]
    assert not (tags[0] & tags[1] or tags[0] & tags[2] or tags[1] & tags[2])
    sizes = data.protocol1_sizes(40, 0.25)
    assert sizes == {"train": 24, "val_normal": 8, "val_anomalies": 2, "test_normal": 8, "test_anomalies": 2}
    assert len(split.x_train) == 24 and len(split.x_test) == 10 and len(split.x_val) == 10
    lookup = {round(t, 6): int(c) for t, c in zip(x[:, 0, 0, 0].tolist(), y.tolist())}
    for images, labels in ((split.x_val, split.y_val), (split.x_test, split.y_test)):
        classes = [lookup[round(t, 6)] for t in images[:, 0, 0, 0].tolist()]
        assert [int(c not in (0, 1)) for c in classes] == labels.tolist()


def test_splits_are_reproducible_with_a_seed():
    x, y = tiny_dataset()
    a = data.protocol1_split((x, y), None, 2, anomaly_fraction=0.5, seed=1)
    b = data.protocol1_split((x, y), None, 2, anomaly_fraction=0.5, seed=1)
    assert torch.equal(a.x_test, b.x_test)


def test_protocol2_validation_is_held_out_from_training():
    x, y = tiny_dataset()
    split = data.protocol2_split((x, y), (x, y), 1, val_size=5)
    assert len(split.x_val) == 5 and len(split.x_train) == 15
    assert not set(split.x_val[:, 0, 0, 0].tolist()) & set(split.x_train[:, 0, 0, 0].tolist())


def test_unknown_normal_class_is_rejected():
    x, y = tiny_dataset()
    with pytest.raises(ValueError, match="does not exist"):
        data.protocol2_split((x, y), (x, y), 7)


def test_too_few_anomalies_is_rejected():
    x, y = tiny_dataset()
    with pytest.raises(ValueError, match="anomalies"):
        data.protocol1_split((x, y), None, [0, 1, 2, 3], anomaly_fraction=0.9)


# ------------------------------------------------------------------ files on disk


def test_loader_reads_a_generated_idx_tree(tmp_path):
    make_fake_mnist(tmp_path)
    x, y = data.load_dataset("mnist", True, root=tmp_path, download=False)
    assert x.shape == (60, 1, 28, 28) and y.tolist()[:3] == [0, 1, 2]
    assert data.available_datasets(tmp_path) == {"mnist": True, "fashion-mnist": False, "cifar10": False}


def test_gzipped_idx_files_are_read(tmp_path):
    raw = make_fake_mnist(tmp_path)
    for f in raw.iterdir():
        (raw / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    x, _ = data.load_dataset("mnist", False, root=tmp_path, download=False)
    assert x.shape == (30, 1, 28, 28)


def test_missing_dataset_names_dataset_path_and_remedy(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as err:
        data.load_dataset("mnist", root=tmp_path, download=False)
    text = str(err.value)
    assert "mnist" in text and str(tmp_path / "MNIST" / "raw") in text and "ANOMALY_EDU_DATA" in text


def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch):
    def no_network(name, root):
        raise OSError("Name or service not known")

    monkeypatch.setattr(data, "_download", no_network)
    with pytest.raises(data.DatasetNotFoundError, match="Downloading it failed"):
        data.load_dataset("fashion-mnist", root=tmp_path)


def test_truncated_file_is_reported(tmp_path):
    raw = make_fake_mnist(tmp_path)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.CorruptDataError, match="truncated"):
        data.load_dataset("mnist", root=tmp_path, download=False)


def test_file_that_is_not_idx_is_reported(tmp_path):
    raw = make_fake_mnist(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(data.CorruptDataError, match="magic"):
        data.load_dataset("mnist", train=False, root=tmp_path, download=False)


def test_images_and_labels_of_different_lengths_are_reported(tmp_path):
    raw = make_fake_mnist(tmp_path)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(29))
    with pytest.raises(data.CorruptDataError, match="do not match"):
        data.load_dataset("mnist", train=False, root=tmp_path, download=False)


def test_data_root_that_is_a_file_is_rejected(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        data.data_root(f)


def test_data_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALY_EDU_DATA", str(tmp_path))
    assert data.data_root() == tmp_path


def test_unknown_dataset_name_is_rejected():
    with pytest.raises(ValueError, match="unknown data set"):
        data.load_dataset("imagenet")


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.rand(5, 28, 28), "shape"),
        (torch.rand(2, 1, 4, 4) * 3, r"\[0, 1\]"),
        ((torch.rand(2, 1, 4, 4) * 255).to(torch.uint8), "floating-point"),
        (np.zeros((2, 1, 4, 4)), "torch.Tensor"),
    ],
)
def test_check_images_rejects_bad_images(bad, message):
    with pytest.raises((ValueError, TypeError), match=message):
        data.check_images(bad)


def test_data_command_lists_datasets(tmp_path):
    make_fake_mnist(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "anomaly_edu", "data", "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "mnist          present" in out and "fashion-mnist  missing" in out


def test_reproduce_with_missing_data_fails_cleanly(tmp_path):
    env = dict(os.environ, ANOMALY_EDU_DATA=str(tmp_path))
    run = subprocess.run(
        [sys.executable, "-m", "anomaly_edu", "reproduce", "mnist", "--classes", "8"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 2
    assert "mnist was not found" in run.stderr and "Traceback" not in run.stderr


def test_splits_keep_the_original_class_of_each_test_image():
    x, y = tiny_dataset()
    split = data.protocol1_split((x, y), None, 2, anomaly_fraction=0.5, seed=0)
    assert ((split.test_classes != 2).long() == split.y_test).all()
    split2 = data.protocol2_split((x, y), (x, y), 2)
    assert torch.equal(split2.test_classes, y)


# ------------------------------------------------------------------ COIL-100 (Lecture 4)


def make_fake_coil(root, objects=10, views=20, size=16):
    """A small tree in COIL-100's public layout: coil-100/obj{N}__{angle}.png."""
    from PIL import Image

    folder = root / "coil-100"
    folder.mkdir(parents=True)
    for obj in range(1, objects + 1):
        for view in range(views):
            colour = (obj * 20 % 256, view * 10 % 256, 128)
            Image.new("RGB", (size, size), colour).save(folder / f"obj{obj}__{view * 5}.png")
    (folder / "README.txt").write_text("not an image")
    return folder


def test_coil100_loader_reads_the_public_layout(tmp_path):
    make_fake_coil(tmp_path)
    x, y = data.load_coil100(tmp_path, size=8)
    assert x.shape == (200, 3, 8, 8) and 0 <= x.min() and x.max() <= 1
    assert sorted(set(y.tolist())) == list(range(10)) and torch.bincount(y).tolist() == [20] * 10


@pytest.mark.parametrize("n_classes, fraction", [(1, 0.5), (4, 0.25), (7, 0.15)])
def test_coil100_protocol1_sizes_follow_methods(tmp_path, n_classes, fraction):
    make_fake_coil(tmp_path, objects=20, views=20)
    x, y = data.load_coil100(tmp_path, size=8)
    split = data.coil100_split(x, y, n_normal_classes=n_classes, anomaly_fraction=fraction, seed=0)
    n = 20 * n_classes
    assert len(split.x_train) == int(0.8 * n)  # 80% of the normal images train the model
    n_test = n - int(0.8 * n) - int(0.1 * n)
    assert int((split.y_test == 0).sum()) == n_test
    assert int(split.y_test.sum()) == int(n_test * fraction / (1 - fraction))
    assert int((split.y_val == 0).sum()) == int(0.1 * n)
    assert len(split.normal_classes) == n_classes
    assert set(split.test_classes[split.y_test == 0].tolist()) <= set(split.normal_classes)


def test_coil100_sizes_on_the_real_layout():
    # 72 views per object: one normal object gives 57 training images, 7 + 7 validation
    # images (normal + anomalies) and 8 + 8 test images at 50% anomalies.
    sizes = data.protocol1_sizes(72, 0.5, (0.8, 0.1, 0.1))
    assert sizes == {"train": 57, "val_normal": 7, "val_anomalies": 7, "test_normal": 8, "test_anomalies": 8}


def test_missing_or_broken_coil100_is_reported(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="coil-100"):
        data.load_coil100(tmp_path)
    folder = make_fake_coil(tmp_path, objects=2, views=2)
    (folder / "obj1__0.png").write_bytes(b"not a png")
    with pytest.raises(data.CorruptDataError, match="obj1__0.png"):
        data.load_coil100(tmp_path)


def test_protocol1_rejects_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        data.protocol1_sizes(10, 0.5, (0.8, 0.3, 0.1))
