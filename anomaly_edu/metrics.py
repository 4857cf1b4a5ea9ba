"""Metrics for anomaly detection. Anomaly = positive class (label 1); a higher
score means more anomalous. Introduced in Lecture 1.

- :func:`auroc`: the area under the ROC curve, i.e. the probability that a
  random anomaly scores higher than a random normal sample (ties count half).
- :func:`roc_curve_data`: the ROC curve's operating points.
- :func:`fpr_at_tpr`: the false-positive rate at a target true-positive rate
  (the talk uses 99% and 99.5%), interpolated on the ROC curve.
- :func:`choose_threshold` / :func:`f1_at_threshold`: F1 with the threshold
  chosen on validation data; :func:`f1_max` is a diagnostic only.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(to_numpy(labels)).ravel()
    scores = np.asarray(to_numpy(scores), dtype=float).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores must have the same length, got {labels.size} and {scores.size}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomaly)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinity")
    labels = labels.astype(int)
    if labels.min() == labels.max():
        raise ValueError("need both normal (0) and anomalous (1) samples to compute this metric")
    return labels, scores


def to_numpy(values) -> np.ndarray:
    """A torch tensor (on any device) or array-like as a NumPy array. Lecture 1."""
    if hasattr(values, "detach"):  # a torch tensor
        return values.detach().cpu().numpy()
    return np.asarray(values)


def auroc(labels, scores) -> float:
    """Area under the ROC curve, from the ranks of the scores (Mann-Whitney U).
    Lecture 1."""
    labels, scores = _as_arrays(labels, scores)
    ranks = rankdata(scores)  # ties get their average rank
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    u = ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def roc_curve_data(labels, scores) -> dict[str, np.ndarray]:
    """The ROC curve: for every distinct score used as threshold (predict anomaly
    when score >= threshold), the false- and true-positive rates, starting at
    (0, 0) with an infinite threshold. Lecture 1."""
    labels, scores = _as_arrays(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_each_value = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(labels)[last_of_each_value]
    fp = (last_of_each_value + 1) - tp
    tpr = np.r_[0.0, tp / labels.sum()]
    fpr = np.r_[0.0, fp / (labels.size - labels.sum())]
    thresholds = np.r_[np.inf, scores[last_of_each_value]]
    return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}


def fpr_at_tpr(labels, scores, target_tpr: float = 0.99) -> float:
    """False-positive rate at the true-positive rate ``target_tpr``.

    Convention: the ROC curve is drawn as straight lines between its operating
    points; we return the smallest FPR at which that curve reaches the target
    TPR (linear interpolation between the two neighbouring points). Lecture 1.
    """
    if not 0 < target_tpr <= 1:
        raise ValueError(f"target_tpr must be in (0, 1], got {target_tpr}")
    curve = roc_curve_data(labels, scores)
    fpr, tpr = curve["fpr"], curve["tpr"]
    i = int(np.argmax(tpr >= target_tpr - 1e-12))  # first point that reaches the target
    if i == 0 or tpr[i] == tpr[i - 1]:
        return float(fpr[i])
    step = (target_tpr - tpr[i - 1]) / (tpr[i] - tpr[i - 1])
    return float(fpr[i - 1] + step * (fpr[i] - fpr[i - 1]))


def f1_at_threshold(labels, scores, threshold: float) -> float:
    """F1 of the rule "anomaly when score >= threshold". Lecture 1."""
    labels, scores = _as_arrays(labels, scores)
    predicted = scores >= threshold
    tp = np.sum(predicted & (labels == 1))
    fp = np.sum(predicted & (labels == 0))
    fn = np.sum(~predicted & (labels == 1))
    return float(2 * tp / (2 * tp + fp + fn)) if tp else 0.0


def confusion_counts(labels, scores, threshold: float) -> dict[str, int]:
    """True/false positives and negatives of "anomaly when score >= threshold". Lecture 1."""
    labels, scores = _as_arrays(labels, scores)
    predicted = scores >= threshold
    return {
        "tp": int(np.sum(predicted & (labels == 1))),
        "fp": int(np.sum(predicted & (labels == 0))),
        "tn": int(np.sum(~predicted & (labels == 0))),
        "fn": int(np.sum(~predicted & (labels == 1))),
    }


def _best_f1(labels, scores) -> tuple[float, float]:
    """The (threshold, F1) pair with the highest F1 over all distinct thresholds."""
    curve = roc_curve_data(labels, scores)
    n_pos = np.sum(np.asarray(to_numpy(labels)) == 1)
    n_neg = np.size(to_numpy(labels)) - n_pos
    tp, fp = curve["tpr"][1:] * n_pos, curve["fpr"][1:] * n_neg
    f1 = 2 * tp / (2 * tp + fp + (n_pos - tp))
    best = int(np.argmax(f1))
    return float(curve["thresholds"][1:][best]), float(f1[best])


def choose_threshold(val_labels, val_scores) -> float:
    """The threshold that maximises F1 on VALIDATION data; apply it to the test
    set with :func:`f1_at_threshold`. Lecture 1."""
    return _best_f1(val_labels, val_scores)[0]


def f1_max(labels, scores) -> float:
    """The best F1 over all thresholds of these very labels: an optimistic
    diagnostic, never a test result (it peeks at the test labels). Lecture 1."""
    return _best_f1(labels, scores)[1]
