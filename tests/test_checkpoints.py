"""Checkpoints: an interrupted training resumes and ends where an uninterrupted
one does (training.run_epochs through the detectors' fit, reproduce --resume)."""

import pytest
import torch

from anomaly_edu import detectors, models, training


class Interrupted(Exception):
    """Stands in for a disconnect or a kill."""


def tiny_detector(name, **settings):
    options = dict(epochs=4, batch_size=16, progress=False, device="cpu", **settings)
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
    assert set(state) == {"model", "optimizer", "history", "settings", "rng"} and len(state["history"]) == 5


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    checkpoint = tmp_path / "ae.pt"
    tiny_detector("dae").fit(tiny_images(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match=r"ae\.pt was written with other settings \(.*noise_std: 0\.2 there, 0\.5"):
        tiny_detector("dae", noise_std=0.5).fit(tiny_images(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match="detector: 'DAEDetector' there, 'AEDetector' now"):
        tiny_detector("ae").fit(tiny_images(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match=r"training_set_shape: \[64, 1, 28, 28\] there, \[32, 1, 28, 28\] now"):
        tiny_detector("dae").fit(tiny_images()[:32], checkpoint=checkpoint)
