"""Stacked training of one-class autoencoders (anomaly_edu.experiments.batched): the stacked
model computes what its members compute, trains each member exactly as it would
train alone when the training sets have equal sizes, and gives the same AUCs
as one-by-one training on real MNIST classes (within the seed-to-seed noise)."""

from dataclasses import replace

import pytest
import torch

from anomaly_edu import data, detectors
from anomaly_edu.arae import UnionARAEDetector, arae_loss, latent_attack
from anomaly_edu.experiments import batched, methods, reproduce, tables
from anomaly_edu.metrics import auroc
from anomaly_edu.models import MLPAutoencoder
from anomaly_edu.training import reconstruction_loss, set_seed, train


def three_models(activation="sigmoid"):
    models = []
    for seed in range(3):
        set_seed(seed)
        models.append(MLPAutoencoder(hidden=(32, 16, 8), activation=activation))
    return models


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_stacked_model_computes_what_each_member_computes(activation):
    models = three_models(activation)
    stacked = batched.StackedAutoencoders(models)
    x = torch.rand(3, 5, 1, 28, 28)
    out, codes = stacked(x), stacked.encode(x)
    assert out.shape == x.shape and codes.shape == (3, 5, 8)
    for m, model in enumerate(models):
        assert torch.allclose(out[m], model(x[m]), atol=1e-6)
        assert torch.allclose(codes[m], model.encode(x[m]), atol=1e-6)


def test_stacking_rejects_models_that_differ():
    small, large = MLPAutoencoder(hidden=(32, 16, 8)), MLPAutoencoder(hidden=(64, 16, 8))
    with pytest.raises(ValueError, match="same image shape, layer sizes"):
        batched.StackedAutoencoders([small, large])
    with pytest.raises(ValueError, match="non-empty list"):
        batched.StackedAutoencoders([])


@pytest.mark.parametrize("sizes", [(64, 64, 64), (70, 45, 64)])
def test_stacked_training_equals_one_by_one_training(sizes):
    """Unequal sizes: the 45-image model waits for a step, and the last mini-batches
    (6, 13 and 16 images) run as separate stacks; every model still trains as alone."""
    torch.manual_seed(0)
    xs = [torch.rand(n, 1, 28, 28) for n in sizes]
    together = three_models()
    history = batched.train_stacked(
        together, xs, batch_loss=reconstruction_loss, epochs=3, batch_size=16, seed=7, progress=False
    )
    assert len(history) == 3 and history[-1] < history[0]
    for alone, x, model in zip(three_models(), xs, together):
        train(alone, x, batch_loss=reconstruction_loss, epochs=3, batch_size=16, seed=7, progress=False)
        for a, b in zip(alone.parameters(), model.parameters()):
            assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_train_stacked_checks_its_input():
    models = three_models()
    with pytest.raises(ValueError, match="3 models but 2 training sets"):
        batched.train_stacked(
            models, [torch.rand(4, 1, 28, 28)] * 2, batch_loss=reconstruction_loss, epochs=1, batch_size=2
        )
    with pytest.raises(ValueError, match="empty training set"):
        batched.train_stacked(
            models, [torch.rand(0, 1, 28, 28)] * 3, batch_loss=reconstruction_loss, epochs=1, batch_size=2
        )


def test_latent_attack_on_a_stacked_model_attacks_each_image_in_its_ball():
    torch.manual_seed(0)
    stacked = batched.StackedAutoencoders(three_models())
    x = torch.rand(3, 4, 1, 28, 28)
    x_adv = latent_attack(stacked, x, eps=0.1, steps=5)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        moved = ((stacked.encode(x_adv) - stacked.encode(x)) ** 2).sum(-1)
        noise = (x + 0.1 * torch.sign(torch.randn_like(x))).clamp(0, 1)
        moved_by_noise = ((stacked.encode(noise) - stacked.encode(x)) ** 2).sum(-1)
    assert (moved > moved_by_noise).all()
    loss = arae_loss(eps=0.1, steps=2)(stacked, x)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_fit_stacked_needs_equal_unfitted_ae_family_detectors():
    x = [torch.rand(8, 1, 28, 28)] * 2
    with pytest.raises(ValueError, match="equal settings"):
        batched.fit_stacked([detectors.AEDetector(epochs=1), detectors.AEDetector(epochs=2)], x)
    with pytest.raises(ValueError, match="equal settings"):
        batched.fit_stacked([detectors.AEDetector(), detectors.DAEDetector()], x)
    with pytest.raises(ValueError, match="one training set per detector"):
        batched.fit_stacked([detectors.AEDetector()], x)
    with pytest.raises(ValueError, match="stacks the detectors of ae, dae, arae"):
        batched.fit_stacked([UnionARAEDetector(), UnionARAEDetector()], x)


def test_stacked_fit_gives_the_aucs_of_one_by_one_fits(mnist):
    """Real MNIST, three classes with different numbers of training images (600, 550
    and 480 of them), and 2,000 test images each."""
    train_set, test_set = mnist
    splits = [data.protocol2_split(train_set, test_set, c) for c in (1, 7, 8)]
    splits = [
        replace(s, x_train=s.x_train[:n], x_test=s.x_test[:2000], y_test=s.y_test[:2000])
        for s, n in zip(splits, (600, 550, 480))
    ]
    settings = dict(epochs=2, batch_size=128, device="cpu", progress=False)
    alone = [detectors.AEDetector(**settings).fit(s.x_train) for s in splits]
    together = batched.fit_stacked(
        [detectors.AEDetector(**settings) for _ in splits], [s.x_train for s in splits], progress=False
    )
    auc_alone = [100 * auroc(s.y_test, d.anomaly_score(s.x_test)) for s, d in zip(splits, alone)]
    auc_together = [100 * auroc(s.y_test, d.anomaly_score(s.x_test)) for s, d in zip(splits, together)]
    assert auc_together == pytest.approx(auc_alone, abs=0.01)  # measured: equal to 4 decimals
    assert all(len(d.history_) == 2 for d in together)


def test_reproduce_stacked_and_one_by_one_agree(mnist_root, monkeypatch, fewer_images):
    small = {
        "ae": {"epochs": 1, "batch_size": 256, "lr": 1e-3},
        "arae": {"epochs": 1, "batch_size": 256, "lr": 1e-3, "eps": 0.2, "steps": 2, "gamma": 0.1},
    }
    monkeypatch.setattr(reproduce, "get_profile", lambda name, dataset=None: small)
    runs = {
        flag: reproduce.run_table("mnist", ["ae", "arae"], [1, 4], device="cpu", progress=False, stacked=flag)
        for flag in (True, False)
    }
    assert runs[True]["provenance"]["settings"]["stacked_training"] == ["ae", "arae"]
    assert runs[False]["provenance"]["settings"]["stacked_training"] == []
    for c in ("1", "4"):  # the AE is deterministic; ARAE's random starts differ between the two runs
        assert runs[True]["results"]["ae"]["auc"][c] == pytest.approx(runs[False]["results"]["ae"]["auc"][c], abs=0.02)
        assert runs[True]["results"]["arae"]["auc"][c] == pytest.approx(runs[False]["results"]["arae"]["auc"][c], abs=1)


# ------------------------------------------------------------------ the union variant and --set


def test_union_detector_fits_and_scores():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 28, 28)
    detector = UnionARAEDetector(
        epochs=1,
        batch_size=8,
        linf=(0.2, 0.1, 1),
        l2=(2.0, 1.0, 1),
        n_angles=3,
        shifts=(0,),
        progress=False,
        device="cpu",
    ).fit(x)
    assert detector.model_.activation == "relu"
    assert isinstance(detector.model_.decoder[-1], torch.nn.Linear)  # linear output
    scores = detector.anomaly_score(torch.rand(5, 1, 28, 28))
    assert scores.shape == (5,) and (scores >= 0).all()
    with pytest.raises(ValueError, match="linf and l2"):
        UnionARAEDetector(linf=(0.2, 0.1))
    made = methods.make_detector("arae-union", {"arae-union": {"epochs": 2, "gamma": 0.3}})
    assert isinstance(made, UnionARAEDetector) and (made.epochs, made.gamma) == (2, 0.3)


def test_set_changes_one_setting_and_rejects_unknown_ones():
    changes = tables.parse_changes(["arae.epochs=30", "dae.noise_std=0.1", "arae-union.linf=[0.1,0.01,5]"])
    assert changes == {"arae": {"epochs": 30}, "dae": {"noise_std": 0.1}, "arae-union": {"linf": [0.1, 0.01, 5]}}
    profile = reproduce.get_profile("full")
    changed = tables.apply_changes(profile, changes)
    assert changed["arae"]["epochs"] == 30 and profile["arae"]["epochs"] == 1600  # the profile is untouched
    with pytest.raises(ValueError, match="METHOD.KEY=VALUE"):
        tables.parse_changes(["arae=30"])
    with pytest.raises(ValueError, match="arae has no setting epoch"):
        tables.apply_changes(profile, {"arae": {"epoch": 3}})
    with pytest.raises(ValueError, match="no method 'vae'"):
        tables.apply_changes(profile, {"vae": {"epochs": 3}})
    with pytest.raises(ValueError, match="does not train"):
        reproduce.run_table("mnist", ["ae"], [8], changes={"arae": {"epochs": 3}})
