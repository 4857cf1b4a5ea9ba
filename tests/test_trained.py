"""Trained models for readers (anomaly_edu.experiments.trained): a stored detector scores as
the fitted one did, and a truncated, changed or missing file is refused."""

import hashlib
import json

import numpy as np
import pytest
import torch

from anomaly_edu import models
from anomaly_edu.data import CorruptDataError
from anomaly_edu.experiments import methods, trained
from anomaly_edu.profiles import get_profile

TINY = {
    "ae": {"epochs": 1, "batch_size": 16},
    "dsvdd": {"epochs": 1, "batch_size": 16},
    "puzzle-ae": {"epochs": 1, "batch_size": 8, "widths": [2, 4], "val_size": 4, "variant": "cpae-g"},
    "gt": {"epochs": 1, "batch_size": 16, "widths": [2, 4]},
}


def images(n=24, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def fitted(method):
    settings = get_profile("quick")
    settings[method].update(TINY[method])
    return methods.make_detector(method, settings, device="cpu", progress=False).fit(images())


@pytest.mark.parametrize("method", list(TINY))
def test_a_stored_detector_scores_as_the_fitted_one(method, tmp_path):
    detector = fitted(method)
    entry = trained.save_detector(detector, f"{method}-tiny", tmp_path, method=method, image_shape=(1, 28, 28))
    loaded = trained.load_detector(f"{method}-tiny", tmp_path, device="cpu")
    x = images(6, seed=1)
    np.testing.assert_array_equal(loaded.anomaly_score(x), detector.anomaly_score(x))
    assert type(loaded) is type(detector) and loaded.history_ == pytest.approx(detector.history_, abs=1e-6)
    data = (tmp_path / f"{method}-tiny.safetensors").read_bytes()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    assert json.loads((tmp_path / "manifest.json").read_text())["models"][f"{method}-tiny"] == entry
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


def test_half_precision_halves_the_file_and_loads_back_as_float32(tmp_path):
    network = models.MnistCNN()
    full = trained.save_network(network, "cnn-32", tmp_path)
    half = trained.save_network(network, "cnn-16", tmp_path, precision="float16")
    assert half["precision"] == "float16" and full["precision"] == "float32"
    assert half["bytes"] < 0.55 * full["bytes"]
    loaded = trained.load_network("cnn-16", models.MnistCNN(), tmp_path)
    for (key, value), original in zip(loaded.state_dict().items(), network.state_dict().values()):
        assert value.dtype == torch.float32, key
        assert torch.equal(value, original.half().float()), key  # exactly the rounded weights
    with pytest.raises(ValueError, match="precision 'float8': choose one of float32, float16"):
        trained.save_network(network, "cnn-8", tmp_path, precision="float8")
    assert not (tmp_path / "cnn-8.safetensors").exists()


@pytest.fixture
def stored(tmp_path):
    trained.save_detector(fitted("ae"), "ae-tiny", tmp_path, method="ae", image_shape=(1, 28, 28))
    trained.save_network(models.MnistCNN(), "cnn-tiny", tmp_path, settings={"width": 1})
    return tmp_path


def test_a_truncated_file_is_refused(stored):
    path = stored / "ae-tiny.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptDataError, match=r"ae-tiny.safetensors has \d+ bytes but its manifest says \d+"):
        trained.load_detector("ae-tiny", stored)


def test_a_changed_file_of_the_same_size_is_refused(stored):
    path = stored / "ae-tiny.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one byte of the last weight
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="does not match its manifest"):
        trained.load_detector("ae-tiny", stored)
    with pytest.raises(CorruptDataError, match="does not match its manifest"):
        trained.verify(stored)


def test_a_missing_file_and_an_unknown_name_are_clear_errors(stored):
    (stored / "ae-tiny.safetensors").unlink()
    with pytest.raises(CorruptDataError, match="ae-tiny.safetensors is missing"):
        trained.load_detector("ae-tiny", stored)
    with pytest.raises(KeyError, match="no stored model 'dae-tiny'.*the stored models are: ae-tiny, cnn-tiny"):
        trained.load_detector("dae-tiny", stored)


def test_a_plain_network_is_stored_and_checked(stored):
    network = trained.load_network("cnn-tiny", models.MnistCNN(), stored)
    assert not network.training
    assert set(trained.verify(stored)) == {"ae-tiny", "cnn-tiny"}
    with pytest.raises(ValueError, match="'cnn-tiny' holds a MnistCNN, not a MLPAutoencoder"):
        trained.load_network("cnn-tiny", models.MLPAutoencoder(), stored)
    with pytest.raises(ValueError, match="is a plain network: load it with load_network"):
        trained.load_detector("cnn-tiny", stored)


def test_detectors_without_a_network_are_refused(tmp_path):
    settings = get_profile("quick")
    ocsvm = methods.make_detector("ocsvm", settings).fit(images())
    with pytest.raises(ValueError, match="only a fitted detector with one network can be stored"):
        trained.save_detector(ocsvm, "ocsvm", tmp_path, method="ocsvm", image_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="a plain file name"):
        trained.save_network(models.MnistCNN(), "../escape", tmp_path)


# ---------------------------------------------------------------- the course's stored models (models/)

STORED_MODELS = trained.read_manifest()
MAX_STORED_BYTES = 25_000_000  # all of them together, shipped in the wheel


def test_the_course_stores_models_that_match_their_manifest_within_the_size_limit():
    assert STORED_MODELS, "models/ holds no stored model: python scripts/store_models.py"
    assert trained.verify() == {name: entry["sha256"] for name, entry in STORED_MODELS.items()}
    files = sorted(trained.STORED_MODELS.glob("*.safetensors"))
    assert [f.name for f in files] == sorted(entry["file"] for entry in STORED_MODELS.values())  # no stray file
    total = sum(f.stat().st_size for f in files)
    assert total <= MAX_STORED_BYTES, f"the stored models take {total / 1e6:.1f} MB, more than 25 MB"


@pytest.mark.parametrize("name", sorted(n for n, e in STORED_MODELS.items() if e["kind"] == "detector"))
def test_a_stored_detector_scores_its_test_set_as_its_manifest_says(name, mnist_root):
    from anomaly_edu.data import load_one_class
    from anomaly_edu.metrics import auroc

    entry = STORED_MODELS[name]
    where = entry["data"]
    if "table" in where:  # a case of another table: the magnetic tiles, a medical set
        from anomaly_edu.data import DatasetNotFoundError
        from anomaly_edu.experiments.reproduce import table_splits

        try:
            split = table_splits(where["table"], None, device="cpu", size=entry["image_shape"][-1])[where["case"]]
        except DatasetNotFoundError as missing:
            pytest.skip(f"{name} is trained on data that is not under the data root: {missing}")
        assert split.protocol == where["protocol"] and len(split.x_train) == where["n_train"]
    else:  # the digit-8 models
        assert where["dataset"] == "mnist" and where["protocol"] == 2
        split = load_one_class("mnist", where["normal_class"], protocol=2, root=mnist_root, device="cpu")
    detector = trained.load_detector(name, device="cpu")
    x_test, y_test, stored_auroc = split.x_test, split.y_test, entry["figures"]["auroc"]
    # Puzzle-AE's 23 puzzles of 10,000 images take over a minute: the test scores the first 1,000
    # (python scripts/store_models.py --check scores every stored detector's whole test set); a
    # test set of fewer images (583 magnetic tiles) is scored whole
    if entry["method"] == "puzzle-ae" and "auroc_first_1000" in entry["figures"]:
        x_test, y_test, stored_auroc = x_test[:1000], y_test[:1000], entry["figures"]["auroc_first_1000"]
    scored = 100 * auroc(y_test.numpy(), detector.anomaly_score(x_test))
    # the same weights on another CPU differ only in the last decimals of each score
    assert scored == pytest.approx(stored_auroc, abs=0.05)
    assert entry["figures"]["auroc"] > entry["figures"]["mean_image_auroc"]  # a stored model beats the baseline


@pytest.mark.parametrize("name", sorted(n for n, e in STORED_MODELS.items() if e["kind"] == "network"))
def test_a_stored_classifier_measures_as_its_manifest_says(name, mnist_root):
    from anomaly_edu.adversarial_training import robust_accuracy
    from anomaly_edu.data import load_dataset
    from anomaly_edu.training import accuracy

    entry = STORED_MODELS[name]
    figures, attack = entry["figures"], entry["figures"]["pgd"]
    network = trained.load_network(name, models.MnistCNN(width=entry["settings"].get("width", 1)))
    x_test, y_test = load_dataset("mnist", False, root=mnist_root)
    # one test image is 0.01 points of accuracy: another CPU may flip a borderline image or two
    assert 100 * accuracy(network, x_test, y_test) == pytest.approx(figures["accuracy"], abs=0.05)
    n = attack["n_images"]
    attacked = robust_accuracy(network, x_test[:n], y_test[:n], eps=attack["eps"], steps=attack["steps"])
    assert 100 * attacked == pytest.approx(figures["pgd_accuracy"], abs=0.5)
    if entry["adversarial"]:  # robust where a standard CNN keeps about 60% (results/robustness_full.json)
        assert figures["accuracy"] > 97 and figures["pgd_accuracy"] > 90
    else:
        assert figures["accuracy"] > 98  # a stored classifier works


def load_store_models_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "store_models.py"
    spec = importlib.util.spec_from_file_location("store_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_split(normal_class: int = 8, protocol: int = 2):
    """Random images at half brightness, 16 to train on and 12 to test, where every other test
    image is an anomaly, twice as bright."""
    from anomaly_edu.data import OneClassSplit

    y_test = torch.tensor([0, 1] * 6)
    return OneClassSplit(
        x_train=images(16) / 2,
        x_val=images(0),
        y_val=torch.zeros(0, dtype=torch.long),
        x_test=images(12, seed=2) * (1 + y_test.view(-1, 1, 1, 1)) / 2,
        y_test=y_test,
        normal_classes=(normal_class,),
        protocol=protocol,
        test_classes=y_test,
    )


def test_store_models_writes_a_model_that_scores_as_its_manifest_says(tmp_path, monkeypatch):
    from anomaly_edu.metrics import auroc

    script = load_store_models_script()
    monkeypatch.setattr(script, "MODELS", tmp_path)
    monkeypatch.setitem(script.STORED, "ae-tiny", {"method": "ae", "changes": {"epochs": 1, "batch_size": 8}})
    split = tiny_split()
    x_test, y_test = split.x_test, split.y_test
    entry = script.store("ae-tiny", split, "cpu")
    loaded = trained.load_detector("ae-tiny", tmp_path, device="cpu")
    assert 100 * auroc(y_test.numpy(), loaded.anomaly_score(x_test)) == pytest.approx(
        entry["figures"]["auroc"], abs=0.01
    )
    to_mean = ((x_test - split.x_train.mean(0)) ** 2).flatten(1).mean(1).numpy()
    assert entry["figures"]["mean_image_auroc"] == pytest.approx(100 * auroc(y_test.numpy(), to_mean), abs=0.01)
    assert loaded.epochs == 1 and entry["settings"]["batch_size"] == 8
    assert entry["provenance"]["settings"]["went_on_from"] is None


def test_store_models_writes_a_stored_detector_again_at_half_precision_without_training(tmp_path, monkeypatch):
    from anomaly_edu.metrics import auroc

    script = load_store_models_script()
    monkeypatch.setattr(script, "MODELS", tmp_path)
    monkeypatch.setattr(script, "FIRST", 8)
    monkeypatch.setitem(script.STORED, "ae-tiny", {"method": "ae", "changes": {"epochs": 2, "batch_size": 8}})
    split = tiny_split()
    y_test = split.y_test
    first = script.store("ae-tiny", split, "cpu")
    assert first["precision"] == "float32" and "auroc_first_8" in first["figures"]
    weights = trained.load_detector("ae-tiny", tmp_path, device="cpu").model_.state_dict()

    monkeypatch.setitem(script.STORED["ae-tiny"], "precision", "float16")
    again = script.store_again("ae-tiny", split, "cpu")
    loaded = trained.load_detector("ae-tiny", tmp_path, device="cpu")
    assert again["precision"] == "float16" and again["bytes"] < 0.55 * first["bytes"]
    for key, value in loaded.model_.state_dict().items():  # the same weights, rounded: nothing trained
        assert torch.equal(value, weights[key].half().float()), key
    assert again["figures"]["auroc"] == round(100 * auroc(y_test.numpy(), loaded.anomaly_score(split.x_test)), 2)
    assert again["figures"]["auroc_float32"] == first["figures"]["auroc"]
    assert again["figures"]["training_seconds"] == first["figures"]["training_seconds"]
    kept = ("description", "data", "provenance", "history", "settings")
    assert {key: again[key] for key in kept} == {key: first[key] for key in kept}
    assert again["written_again"]["from"] == "float32" and again["written_again"]["to"] == "float16"
    assert "--again ae-tiny" in again["written_again"]["provenance"]["settings"]["command"]
    assert list(trained.read_manifest(tmp_path)) == ["ae-tiny"]


def test_store_models_scores_a_half_precision_detector_of_another_table_as_loaded(tmp_path, monkeypatch):
    from anomaly_edu.metrics import auroc

    script = load_store_models_script()
    monkeypatch.setattr(script, "MODELS", tmp_path)
    recipe = {"method": "ae", "changes": {"epochs": 1, "batch_size": 8}, "precision": "float16"}
    monkeypatch.setitem(script.STORED, "ae-tiles", {**recipe, "table": "magnetic-tile", "case": "magnetic-tile"})
    split = tiny_split(normal_class=0, protocol=4)
    y_test = split.y_test
    assert script.where_trained("ae-tiles") == ("magnetic-tile", "magnetic-tile")
    entry = script.store("ae-tiles", split, "cpu")
    loaded = trained.load_detector("ae-tiles", tmp_path, device="cpu")
    assert entry["precision"] == "float16"
    assert entry["figures"]["auroc"] == round(100 * auroc(y_test.numpy(), loaded.anomaly_score(split.x_test)), 2)
    assert entry["data"] == {"table": "magnetic-tile", "case": "magnetic-tile", "protocol": 4, "n_train": 16}
    assert "the magnetic-tile table's case 'magnetic-tile' (protocol 4)" in entry["description"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ae-tiles.safetensors", "manifest.json"]


def test_store_models_measures_a_classifier_as_its_file_gives_it_back(tmp_path, monkeypatch):
    from anomaly_edu import data
    from anomaly_edu.training import accuracy

    script = load_store_models_script()
    monkeypatch.setattr(script, "MODELS", tmp_path)
    monkeypatch.setattr(script, "PGD_CHECK", {"eps": 0.1, "steps": 2, "n_images": 8})
    tiny = {"epochs": 1, "batch_size": 16, "lr": 1e-3, "max_train": None}
    monkeypatch.setitem(script.profiles.PROFILES["quick"], "cnn-tiny", tiny)
    monkeypatch.setitem(
        script.STORED_NETWORKS, "cnn-tiny", {"profile": "quick", "entry": "cnn-tiny", "adversarial": False}
    )
    x, y = images(32), torch.arange(32) % 10
    monkeypatch.setattr(data, "load_dataset", lambda name, train, device=None: (x, y) if train else (x[:16], y[:16]))

    entry = script.store_network("cnn-tiny", "cpu")
    loaded = trained.load_network("cnn-tiny", models.MnistCNN(), tmp_path)
    assert entry["precision"] == "float16" and entry["settings"] == tiny
    assert entry["figures"]["accuracy"] == round(100 * accuracy(loaded, x[:16], y[:16]), 2)
    assert len(entry["history"]) == 1 and entry["provenance"]["settings"]["entry"] == "cnn-tiny"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn-tiny.safetensors", "manifest.json"]
