import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, roc_auc_score, roc_curve

from anomaly_edu import metrics


def random_case(seed, n=200, ties=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.normal(size=n) + labels
    if ties:
        scores = np.round(scores, 1)
    return labels, scores


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_auroc_equals_sklearn_on_random_inputs(seed, ties):
    labels, scores = random_case(seed, ties=ties)
    assert metrics.auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(-5, 5)), min_size=2, max_size=60))
def test_auroc_matches_sklearn_and_is_invariant_to_monotone_maps(pairs):
    labels = np.array([p[0] for p in pairs])
    scores = np.array([p[1] for p in pairs], dtype=float)
    if labels.min() == labels.max():
        return
    value = metrics.auroc(labels, scores)
    assert value == pytest.approx(roc_auc_score(labels, scores))
    assert metrics.auroc(labels, np.exp(scores) * 3 + 1) == pytest.approx(value)  # increasing map
    assert metrics.auroc(labels, -scores) == pytest.approx(1 - value)  # flipping the score


def test_auroc_accepts_torch_tensors():
    labels, scores = random_case(0)
    assert metrics.auroc(torch.tensor(labels), torch.tensor(scores)) == pytest.approx(roc_auc_score(labels, scores))


@pytest.mark.parametrize("seed", range(3))
def test_roc_curve_points_equal_sklearn(seed):
    labels, scores = random_case(seed, ties=True)
    ours = metrics.roc_curve_data(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(ours["fpr"], fpr)
    np.testing.assert_allclose(ours["tpr"], tpr)


def test_fpr_at_tpr_on_a_hand_computable_case():
    # Sorted by score: A A N A N N (A = anomaly). Operating points (fpr, tpr):
    # (0,0) (0,1/3) (0,2/3) (1/3,2/3) (1/3,1) (2/3,1) (1,1).
    labels = [1, 1, 0, 1, 0, 0]
    scores = [6, 5, 4, 3, 2, 1]
    assert metrics.fpr_at_tpr(labels, scores, 2 / 3) == pytest.approx(0.0)
    assert metrics.fpr_at_tpr(labels, scores, 1.0) == pytest.approx(1 / 3)
    # halfway between tpr 2/3 (fpr 1/3) and tpr 1 (fpr 1/3): still 1/3
    assert metrics.fpr_at_tpr(labels, scores, 0.99) == pytest.approx(1 / 3)
    # between (0, 1/3) and (0, 2/3): 0
    assert metrics.fpr_at_tpr(labels, scores, 0.5) == pytest.approx(0.0)


def test_fpr_at_tpr_interpolates_along_a_diagonal_segment():
    # Two scores tie: N and A both at 2. Points: (0,0) (0,1/2) (1/2,1) (1,1).
    labels = [1, 1, 0, 0]
    scores = [3, 2, 2, 1]
    # from (0, 1/2) to (1/2, 1): tpr 0.75 is halfway -> fpr 0.25
    assert metrics.fpr_at_tpr(labels, scores, 0.75) == pytest.approx(0.25)
    assert metrics.fpr_at_tpr(labels, scores, 0.99) == pytest.approx(0.49)


def test_f1_at_threshold_equals_sklearn():
    labels, scores = random_case(1)
    for t in (-1.0, 0.0, 0.5, 1.5):
        expected = f1_score(labels, scores >= t)
        assert metrics.f1_at_threshold(labels, scores, t) == pytest.approx(expected)


def test_threshold_chosen_on_validation_maximises_validation_f1():
    labels, scores = random_case(2)
    t = metrics.choose_threshold(labels, scores)
    best = max(f1_score(labels, scores >= s) for s in np.unique(scores))
    assert metrics.f1_at_threshold(labels, scores, t) == pytest.approx(best)
    assert metrics.f1_max(labels, scores) == pytest.approx(best)


def test_confusion_counts_add_up():
    labels, scores = random_case(3)
    c = metrics.confusion_counts(labels, scores, 0.5)
    assert c["tp"] + c["fn"] == labels.sum() and c["fp"] + c["tn"] == len(labels) - labels.sum()


@pytest.mark.parametrize(
    "labels, scores, message",
    [
        ([0, 1], [0.1], "same length"),
        ([0, 2], [0.1, 0.2], r"0 \(normal\) or 1"),
        ([1, 1], [0.1, 0.2], "both normal"),
        ([0, 1], [0.1, float("nan")], "NaN"),
    ],
)
def test_metrics_reject_bad_input(labels, scores, message):
    with pytest.raises(ValueError, match=message):
        metrics.auroc(labels, scores)


def test_fpr_at_tpr_rejects_bad_target():
    with pytest.raises(ValueError, match="target_tpr"):
        metrics.fpr_at_tpr([0, 1], [0, 1], 1.5)
