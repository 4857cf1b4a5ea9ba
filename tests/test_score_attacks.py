"""Test-time attacks on detectors (Lecture 7): checked against their defining
properties: the attack stays in the ball and in [0, 1], raises the scores of
normal images and lowers those of anomalies, goes through Puzzle-AE's whole
score, and refuses a score that gradients do not reach."""

import numpy as np
import pytest
import torch
from test_data import make_fake_mnist

from anomaly_edu.anomaly_maps import MapAEDetector
from anomaly_edu.detectors import AEDetector, OCSVMDetector
from anomaly_edu.experiments.report import format_comparison
from anomaly_edu.experiments.reproduce import run_table
from anomaly_edu.puzzle_ae import PuzzleAEDetector
from anomaly_edu.score_attacks import attack_scores, auroc_under_attack, balanced_subset, check_attackable


def blobs(n, bright, seed):
    """Normal images: a bright square in the middle; anomalies: a dark one."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, 1, 16, 16, generator=g)
    x[:, :, 4:12, 4:12] += 0.8 if bright else 0.2
    return x.clamp(0, 1)


@pytest.fixture(scope="module")
def data():
    x_train = blobs(64, True, 0)
    x_test = torch.cat([blobs(10, True, 1), blobs(10, False, 2)])
    y_test = torch.cat([torch.zeros(10), torch.ones(10)]).long()
    return x_train, x_test, y_test


@pytest.fixture(scope="module")
def ae(data):
    return AEDetector(epochs=20, batch_size=16, progress=False, device="cpu").fit(data[0])


def test_the_attack_stays_in_the_ball_and_moves_scores_the_attackers_way(ae, data):
    _, x, y = data
    eps = 0.1
    attacked = attack_scores(ae, x, y, eps=eps, steps=10)
    assert (attacked - x).abs().max() <= eps + 1e-6 and attacked.min() >= 0 and attacked.max() <= 1
    before, after = ae.anomaly_score(x), ae.anomaly_score(attacked)
    assert (after[:10] > before[:10]).all()  # normal images look more anomalous
    assert (after[10:] < before[10:]).all()  # anomalies look more normal
    assert torch.equal(attack_scores(ae, x, y, eps=eps, steps=10), attacked)  # seeded


def test_auroc_falls_as_eps_grows_and_eps_zero_is_the_clean_auroc(ae, data):
    _, x, y = data
    numbers = auroc_under_attack(ae, x, y, [0.1, 0.3, 0.5], steps=10)
    assert list(numbers["both"]) == ["0", "0.1", "0.3", "0.5"]
    assert (
        numbers["both"]["0"] == numbers["normal"]["0"] == pytest.approx(100 * _auroc(y, ae.anomaly_score(x)), abs=0.01)
    )
    for attacked in ("normal", "both"):
        values = list(numbers[attacked].values())
        assert values == sorted(values, reverse=True)  # falls as eps grows
    assert all(numbers["both"][eps] <= numbers["normal"][eps] for eps in numbers["both"])  # attacking more helps
    assert numbers["normal"]["0.5"] < numbers["normal"]["0"] - 20  # a large enough ball turns the ranking
    # "normal" is exactly: attacked normal images against clean anomalies
    attacked = ae.anomaly_score(attack_scores(ae, x, y, eps=0.3, steps=10))
    mixed = np.where(y.numpy() == 0, attacked, ae.anomaly_score(x))
    assert numbers["normal"]["0.3"] == pytest.approx(100 * _auroc(y, mixed), abs=0.01)


def test_a_balanced_subset_takes_half_normal_half_anomalies_seeded():
    labels = torch.tensor([0] * 30 + [1] * 300)
    chosen = balanced_subset(labels, 40, seed=1)
    assert len(chosen) == 40 and int(labels[chosen].sum()) == 20 and len(set(chosen.tolist())) == 40
    assert torch.equal(chosen, chosen.sort().values) and torch.equal(balanced_subset(labels, 40, seed=1), chosen)
    assert not torch.equal(balanced_subset(labels, 40, seed=2), chosen)
    assert int((labels[balanced_subset(labels, 100)] == 0).sum()) == 30  # only 30 normal images there


def _auroc(y, scores):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y.numpy(), scores)


def test_differentiable_scores_equal_the_scores(ae, data):
    x_train, x, _ = data
    assert np.allclose(ae.differentiable_score(x).detach().numpy(), ae.anomaly_score(x), rtol=1e-5)
    maps = MapAEDetector(widths=[4, 8], latent_dim=4, epochs=1, batch_size=16, progress=False).fit(x_train)
    assert np.allclose(maps.differentiable_score(x).detach().numpy(), maps.anomaly_score(x), rtol=1e-5)


def test_the_attack_goes_through_puzzle_aes_whole_score(data):
    x_train, x, y = data
    detector = PuzzleAEDetector(widths=[2, 4], epochs=2, val_size=8, progress=False, device="cpu").fit(x_train)
    for aggregation in ("avg", "max", "min"):
        whole = detector.differentiable_score(x, aggregation=aggregation).detach().numpy()
        assert np.allclose(whole, detector.anomaly_score(x, aggregation=aggregation), rtol=1e-5)
    attacked = attack_scores(detector, x, y, eps=0.1, steps=5)
    before, after = detector.anomaly_score(x), detector.anomaly_score(attacked)
    assert (after[:10] > before[:10]).mean() >= 0.9 and (after[10:] < before[10:]).mean() >= 0.9


def test_a_score_without_gradients_is_refused_not_attacked_with_zeros(ae, data):
    x_train, x, y = data
    ocsvm = OCSVMDetector().fit(x_train)
    with pytest.raises(ValueError, match="OCSVMDetector has no differentiable score"):
        attack_scores(ocsvm, x, y, eps=0.1)

    class Detached(AEDetector):
        def differentiable_score(self, x):
            with torch.no_grad():
                return super().differentiable_score(x)

    detached = Detached(epochs=1, batch_size=16, progress=False).fit(x_train)
    with pytest.raises(ValueError, match="does not depend on the images through gradients"):
        check_attackable(detached, x[:2])
    with pytest.raises(ValueError, match="one label per image"):
        attack_scores(ae, x, y[:3], eps=0.1)


def test_the_mnist_attack_table_attacks_each_detector_and_prints_figure_10(tmp_path):
    make_fake_mnist(tmp_path, n_train=100, n_test=60)
    changes = {"ae": {"epochs": 1}, "stress": {"eps_values": [0.1, 0.3], "steps": 3, "n_images": 20}}
    result = run_table("mnist-attack", ["ae"], None, root=tmp_path, device="cpu", progress=False, changes=changes)
    attack = result["results"]["ae"]["attack"]["8"]  # digit 8 unless told otherwise
    assert list(attack["normal"]) == ["0", "0.1", "0.3"] and attack["n_normal"] == 6 and attack["n_anomalies"] == 10
    assert attack["both"]["0.3"] <= attack["normal"]["0.3"] <= attack["normal"]["0"]
    assert result["provenance"]["settings"]["attack"] == changes["stress"]
    text = format_comparison(result)
    assert "PGD-3 in an L-inf ball" in text and "ae (both attacked)" in text
    assert "Figure 10 prints no numbers" in text and "mean over the cases shown" not in text
    with pytest.raises(ValueError, match="ocsvm has none: leave it out"):
        run_table("mnist-attack", ["ae", "ocsvm"], None, root=tmp_path)
