"""Checkpoints: an interrupted training resumes and ends where an uninterrupted
one does (training.run_epochs through the detectors' fit, reproduce --resume)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_data import make_fake_mnist

from anomaly_edu import detectors, models, training
from anomaly_edu.experiments.cli import main


class Interrupted(Exception):
    """Stands in for a disconnect or a kill."""


def tiny_detector(name, **settings):
    options = {**dict(epochs=4, batch_size=16, progress=False, device="cpu"), **settings}
    if name == "dsvdd":
        return detectors.DeepSVDDDetector(**options)
    detector_class = {"ae": detectors.AEDetector, "dae": detectors.DAEDetector}[name]
    with training.seeded(0):  # the same network to start from every time
        return detector_class(models.MLPAutoencoder(hidden=(16, 8, 4)), **options)


def tiny_images():
    return torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # 4 batches of 16


def trained_state(detector):
    network = detector.net_ if isinstance(detector, detectors.DeepSVDDDetector) else detector.model_
    return network.state_dict(), detector.history_


@pytest.fixture
def saved_epochs(monkeypatch):
    """The number of epochs done at each checkpoint written; interrupts training
    right after the checkpoint of epoch ``stop_after[0]`` when that is set."""
    saved, stop_after, save = [], [], training.save_checkpoint

    def save_then_maybe_stop(path, model, optimizer, history, *args):
        save(path, model, optimizer, history, *args)
        saved.append(len(history))
        if stop_after and len(history) == stop_after[0]:
            raise Interrupted

    monkeypatch.setattr(training, "save_checkpoint", save_then_maybe_stop)
    return saved, stop_after


@pytest.mark.parametrize("name", ["ae", "dae", "dsvdd"])  # the DAE's noise comes from the global generator
def test_an_interrupted_fit_resumes_and_ends_as_an_uninterrupted_one(name, tmp_path, saved_epochs):
    saved, stop_after = saved_epochs
    uninterrupted = tiny_detector(name).fit(tiny_images())

    checkpoint = tmp_path / f"{name}.pt"
    stop_after.append(2)
    with pytest.raises(Interrupted):
        tiny_detector(name).fit(tiny_images(), checkpoint=checkpoint)
    stop_after.clear()
    resumed = tiny_detector(name).fit(tiny_images(), checkpoint=checkpoint)

    assert saved == [1, 2, 3, 4]  # the resumed fit trained epochs 3 and 4 only
    weights, history = trained_state(resumed)
    expected_weights, expected_history = trained_state(uninterrupted)
    assert history == expected_history
    assert weights.keys() == expected_weights.keys()
    assert all(torch.equal(weights[k], expected_weights[k]) for k in weights)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_a_finished_checkpoint_gives_the_fitted_model_without_training(tmp_path, saved_epochs):
    saved, _ = saved_epochs
    first = tiny_detector("ae").fit(tiny_images(), checkpoint=tmp_path / "ae.pt")
    again = tiny_detector("ae").fit(tiny_images(), checkpoint=tmp_path / "ae.pt")
    assert saved == [1, 2, 3, 4] and again.history_ == first.history_


def test_a_run_extended_to_more_epochs_ends_as_one_trained_that_long(tmp_path, saved_epochs):
    """A budget curve trains 2 epochs, scores, then asks for 4 with the same
    checkpoint: it trains epochs 3 and 4 only and ends where a 4-epoch fit does."""
    saved, _ = saved_epochs
    straight = tiny_detector("dae").fit(tiny_images())
    checkpoint = tmp_path / "dae.pt"
    tiny_detector("dae", epochs=2).fit(tiny_images(), checkpoint=checkpoint)
    extended = tiny_detector("dae", epochs=4).fit(tiny_images(), checkpoint=checkpoint)
    assert saved == [1, 2, 3, 4]  # the extended fit trained epochs 3 and 4 only
    weights, history = trained_state(extended)
    expected_weights, expected_history = trained_state(straight)
    assert history == expected_history
    assert all(torch.equal(weights[k], expected_weights[k]) for k in weights)
    with pytest.raises(ValueError, match="has 4 epochs done, more than the 2 asked for"):
        tiny_detector("dae", epochs=2).fit(tiny_images(), checkpoint=checkpoint)


def test_checkpoint_every_n_epochs_and_at_the_end(tmp_path, saved_epochs):
    saved, _ = saved_epochs
    model = models.MLPAutoencoder(hidden=(16, 8, 4))
    training.train(
        model,
        tiny_images(),
        batch_loss=training.reconstruction_loss,
        epochs=5,
        batch_size=16,
        progress=False,
        checkpoint=tmp_path / "ae.pt",
        checkpoint_every=2,
    )
    assert saved == [2, 4, 5]
    state = torch.load(tmp_path / "ae.pt", weights_only=True)
    assert (
        set(state) == {"model", "optimizer", "scheduler", "history", "settings", "rng"} and len(state["history"]) == 5
    )


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    checkpoint = tmp_path / "ae.pt"
    tiny_detector("dae").fit(tiny_images(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match=r"ae\.pt was written with other settings \(.*noise_std: 0\.2 there, 0\.5"):
        tiny_detector("dae", noise_std=0.5).fit(tiny_images(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match="detector: 'DAEDetector' there, 'AEDetector' now"):
        tiny_detector("ae").fit(tiny_images(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match=r"training_set_shape: \[64, 1, 28, 28\] there, \[32, 1, 28, 28\] now"):
        tiny_detector("dae").fit(tiny_images()[:32], checkpoint=checkpoint)


# ------------------------------------------------------------------ reproduce --resume


def reproduce_command(root, *options, methods="ae,dae", epochs=6):
    command = ["reproduce", "mnist", "--methods", methods, "--classes", "1", "--data-root", str(root)]
    for method in methods.split(","):
        command += ["--set", f"{method}.epochs={epochs}"]
    return command + ["--device", "cpu", "--no-progress", *map(str, options)]


def test_reproduce_killed_and_resumed_gives_the_uninterrupted_results(tmp_path):
    make_fake_mnist(tmp_path)
    python = [sys.executable, "-m", "anomaly_edu"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # this checkout's package
    reference = subprocess.Popen(python + reproduce_command(tmp_path, "--out", tmp_path / "reference.json"), env=env)

    folder = tmp_path / "checkpoints"
    command = python + reproduce_command(tmp_path, "--resume", folder, "--out", tmp_path / "resumed.json")
    run = subprocess.Popen(command, env=env)
    while not (folder / "dae-1.pt").exists() and run.poll() is None:  # the second detector has started
        time.sleep(0.01)
    run.kill()  # SIGKILL: what a lost Colab runtime does
    assert run.wait() == -9
    finished = json.loads((folder / "finished.json").read_text())["finished"]
    assert list(finished) == ["ae"]  # the AE was done, the DAE in progress
    assert len(torch.load(folder / "dae-1.pt", weights_only=True)["history"]) < 6  # killed in the middle

    assert subprocess.run(command, env=env, timeout=120).returncode == 0  # the same command again
    assert reference.wait(timeout=120) == 0
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    assert resumed["results"] == json.loads((tmp_path / "reference.json").read_text())["results"]
    assert resumed["provenance"]["resumed"] is True


def test_reproduce_refuses_checkpoints_of_another_run(tmp_path, capsys):
    make_fake_mnist(tmp_path)
    folder = tmp_path / "checkpoints"
    command = reproduce_command(tmp_path, "--resume", folder, methods="ae", epochs=1)
    assert main(command) == 0
    assert main(command + ["--set", "ae.lr=0.01"]) == 2
    assert "checkpoints holds the checkpoints of another run (its changed_from_profile, methods differ)" in (
        capsys.readouterr().err
    )
    assert main(command + ["--stacked", "yes"]) == 2
    assert "stacked training has no checkpoints: resume with --stacked no" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a checkpoint")
    assert main(reproduce_command(tmp_path, "--resume", tmp_path / "mine", methods="ae", epochs=1)) == 2
    assert "is not empty and has no finished.json" in capsys.readouterr().err
