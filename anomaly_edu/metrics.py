"""Metrics for anomaly detection. Anomaly = positive class (label 1); a higher
score means more anomalous. Introduced in Lecture 1.

- :func:`auroc`: the area under the ROC curve, i.e. the probability that a
  random anomaly scores higher than a random normal sample (ties count half).
- :func:`roc_curve_data`: the ROC curve's operating points.
- :func:`fpr_at_tpr`: the false-positive rate at a target true-positive rate
  (the talk uses 99% and 99.5%), interpolated on the ROC curve.
- :func:`choose_threshold` / :func:`f1_at_threshold`: F1 with the threshold
  chosen on validation data; :func:`f1_max` is a diagnostic only.

Lecture 6 adds the metrics of defect localisation, computed from one anomaly
map and one ground-truth mask per test image (images may differ in size):

- :func:`pixel_auroc`: AUROC over all test pixels pooled together.
- :func:`defect_regions`: the connected regions of a mask (8-connectivity).
- :func:`pro_at_threshold` / :func:`pro_curve` / :func:`au_pro`: the per-region
  overlap (PRO) against the pixel false-positive rate, and the area under that
  curve up to a false-positive rate of 0.3, divided by 0.3 (exact, no grid of
  thresholds).
"""

from __future__ import annotations

__lecture__ = 1

import numpy as np
from scipy import ndimage
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


# ---------------------------------------------------------------- localisation (Lecture 6)

EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)  # pixels touching by a side or a corner are connected


def _masks_and_maps(masks, maps) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The masks (bool) and maps (float; float32 stays float32) as lists of 2-D arrays, checked pair by pair."""
    masks = [np.asarray(to_numpy(m)) for m in masks]
    maps = [np.asarray(to_numpy(m)) for m in maps]
    maps = [m if m.dtype in (np.float32, np.float64) else m.astype(np.float64) for m in maps]
    if len(masks) != len(maps) or not masks:
        raise ValueError(
            f"need one anomaly map per mask (and at least one), got {len(maps)} maps and {len(masks)} masks"
        )
    for i, (mask, score_map) in enumerate(zip(masks, maps)):
        if mask.ndim != 2 or mask.shape != score_map.shape:
            raise ValueError(
                f"image {i}: the mask has shape {mask.shape} and the map {score_map.shape}; both must be the same "
                "2-D (height, width): resize the map to the mask's size first (anomaly_maps.resize_maps)"
            )
        if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
            raise ValueError(f"image {i}: a mask holds only 0/False (normal) and 1/True (defect)")
        if not np.isfinite(score_map).all():
            raise ValueError(f"image {i}: the anomaly map contains NaN or infinity")
    return [m.astype(bool, copy=False) for m in masks], maps


def _split_pixels(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """The scores of all normal pixels and of all defect pixels, each sorted
    (ascending: binary searches of sorted values run much faster)."""
    masks, maps = _masks_and_maps(masks, maps)
    normal = np.sort(np.concatenate([score_map[~mask] for mask, score_map in zip(masks, maps)]))
    defect = np.sort(np.concatenate([score_map[mask] for mask, score_map in zip(masks, maps)]))
    return normal, defect


def pixel_auroc(masks, maps) -> float:
    """AUROC of the pixels of all test images pooled together: every pixel is
    one sample, a defect pixel (mask True) a positive. ``masks`` and ``maps``
    are sequences of 2-D arrays (or tensors), one pair per image, each pair of
    one shape.

    Computed by counting, as :func:`auroc` defines it: for each defect pixel,
    the normal pixels scoring lower, plus half those scoring the same (found by
    binary search in the sorted normal scores; faster than ranking millions of
    pixels). Lecture 6."""
    normal, defect = _split_pixels(masks, maps)
    if not normal.size or not defect.size:
        raise ValueError("pixel AUROC needs both normal and defect pixels among the test images")
    below = np.searchsorted(normal, defect, side="left")
    ties = np.searchsorted(normal, defect, side="right") - below
    return float((below.sum() + ties.sum() / 2) / (normal.size * defect.size))


def defect_regions(mask) -> tuple[np.ndarray, int]:
    """The connected defect regions of one mask, 8-connectivity: an array of
    the mask's shape holding 0 outside the defects and 1, 2, ... for each region,
    and the number of regions. Lecture 6."""
    return ndimage.label(np.asarray(to_numpy(mask), dtype=bool), structure=EIGHT_NEIGHBOURS)


def pro_at_threshold(masks, maps, threshold: float) -> tuple[float, float]:
    """(FPR, PRO) of the rule "defect where map >= threshold". FPR: the
    fraction of all normal pixels (of every image, defect-free or not) flagged.
    PRO: the mean, over every defect region of every image, of the fraction of
    that region flagged; each region counts once, whatever its size. Lecture 6."""
    masks, maps = _masks_and_maps(masks, maps)
    overlaps, false_positives, normal_pixels = [], 0, 0
    for mask, score_map in zip(masks, maps):
        flagged = score_map >= threshold
        regions, count = defect_regions(mask)
        overlaps += [flagged[regions == r].mean() for r in range(1, count + 1)]
        false_positives += int(np.sum(flagged & ~mask))
        normal_pixels += int(np.sum(~mask))
    if not overlaps or not normal_pixels:
        raise ValueError("PRO needs at least one defect region and at least one normal pixel")
    return false_positives / normal_pixels, float(np.mean(overlaps))


def pro_curve(masks, maps) -> dict[str, np.ndarray]:
    """The whole PRO curve, exactly: the corners of the line through (FPR, PRO)
    of every threshold (every distinct map value; "defect where map >=
    threshold"), from (0, 0) to (1, 1). Ties are one threshold, and the points
    are joined by straight lines, as on the ROC curve.

    How: the PRO only changes at the values of defect pixels. Each defect pixel
    weighs 1 / (number of regions x its region's area), so the running sum of
    the weights, in decreasing order of score, is the PRO of each of those
    values. The FPR of a value is the number of normal pixels scoring at least
    that much (binary search in their sorted scores) over their number. Between
    two defect values the curve runs flat, then rises within the tie group of
    the lower value: two corners per value. Lecture 6."""
    masks, maps = _masks_and_maps(masks, maps)
    weights, n_regions = [], 0
    for mask in masks:
        regions, count = defect_regions(mask)
        areas = np.bincount(regions[mask], minlength=count + 1)
        weights.append(1.0 / areas[regions[mask]])
        n_regions += count
    normal = np.sort(np.concatenate([score_map[~mask] for mask, score_map in zip(masks, maps)]))
    if n_regions == 0 or normal.size == 0:
        raise ValueError("PRO needs at least one defect region and at least one normal pixel")
    defect = np.concatenate([score_map[mask] for mask, score_map in zip(masks, maps)])
    order = np.argsort(-defect)
    defect, weights = defect[order], np.concatenate(weights)[order] / n_regions
    last_of_each_value = np.r_[np.flatnonzero(np.diff(defect)), defect.size - 1]
    values = defect[last_of_each_value]  # decreasing
    pro = np.minimum(np.cumsum(weights)[last_of_each_value], 1.0)  # rounding could pass 1
    at_least = normal.size - np.searchsorted(normal, values[::-1], side="left")[::-1]  # normals >= value
    above = normal.size - np.searchsorted(normal, values[::-1], side="right")[::-1]  # normals > value
    fpr_at, fpr_above = at_least / normal.size, above / normal.size
    previous_pro = np.r_[0.0, pro[:-1]]
    fpr = np.r_[0.0, np.column_stack([fpr_above, fpr_at]).ravel(), 1.0]
    pro = np.r_[0.0, np.column_stack([previous_pro, pro]).ravel(), 1.0]
    return {"fpr": fpr, "pro": pro}


def area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """The area under the straight lines joining the points (x, y) (x not
    decreasing, starting at 0), from 0 to ``x_max``; the line is cut at
    ``x_max`` by linear interpolation. Lecture 6."""
    inside = x <= x_max
    xs, ys = x[inside], y[inside]
    if xs[-1] < x_max and inside.sum() < x.size:  # the segment that crosses x_max, cut there
        i = int(np.argmax(~inside))
        y_cut = y[i - 1] + (x_max - x[i - 1]) * (y[i] - y[i - 1]) / (x[i] - x[i - 1])
        xs, ys = np.r_[xs, x_max], np.r_[ys, y_cut]
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2))


def au_pro(masks, maps, max_fpr: float = 0.3) -> float:
    """The area under the PRO curve (:func:`pro_curve`, exact) from FPR 0 to
    ``max_fpr``, divided by ``max_fpr``: 1 for a perfect map, and 0.15 for a
    constant one at the usual 0.3 (the curve is the straight line from (0, 0)
    to (1, 1)). The curve is cut at ``max_fpr`` by linear interpolation. Lecture 6."""
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    curve = pro_curve(masks, maps)
    return min(area_up_to(curve["fpr"], curve["pro"], max_fpr) / max_fpr, 1.0)
