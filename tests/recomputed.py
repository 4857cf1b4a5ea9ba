"""The numbers a run of reproduce reports, recomputed independently, for the
tests of those runs: each AUROC (in %, rounded to two decimals as the runs
round it) is scikit-learn's on the detector's own scores of the split's test
images and the split's labels; an F1 is scikit-learn's at a threshold that is
F1-best on validation; pixel AUROC is scikit-learn's on the pooled pixels and
AU-PRO the package's (itself checked against a slow route in
tests/test_localisation_metrics.py) on maps resized here."""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, roc_auc_score, roc_curve

from anomaly_edu.experiments import reproduce
from anomaly_edu.metrics import au_pro

ROUNDING = 0.005 + 1e-9  # a run writes 100 * metric rounded to two decimals


def as_array(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def sklearn_auroc(labels, scores) -> float:
    """scikit-learn's AUROC, in %."""
    return 100 * roc_auc_score(as_array(labels).ravel(), as_array(scores).ravel())


def sklearn_fpr_at_tpr(labels, scores, target: float) -> float:
    """In %, the smallest FPR at which scikit-learn's ROC curve, drawn as straight
    lines between its points, reaches the TPR ``target``."""
    fpr, tpr, _ = roc_curve(as_array(labels), as_array(scores), drop_intermediate=False)
    i = int(np.argmax(tpr >= target - 1e-12))
    if i == 0 or tpr[i] == tpr[i - 1]:
        return 100 * float(fpr[i])
    return 100 * float(fpr[i - 1] + (target - tpr[i - 1]) / (tpr[i] - tpr[i - 1]) * (fpr[i] - fpr[i - 1]))


def assert_rounds_to(reported: float, exact: float, what: str = "") -> None:
    """``reported`` is ``exact`` rounded to two decimals (up to float noise at a tie)."""
    assert abs(reported - exact) <= ROUNDING and round(reported, 2) == reported, (
        f"{what}: reported {reported}, recomputed {exact:.4f}"
    )


def record_evaluations(monkeypatch) -> list[tuple]:
    """Make every ``reproduce.evaluate`` call append (detector, split, numbers)
    to the list returned, in the order of the calls."""
    seen, evaluate = [], reproduce.evaluate

    def recording(detector, split, protocol):
        numbers = evaluate(detector, split, protocol)
        seen.append((detector, split, numbers))
        return numbers

    monkeypatch.setattr(reproduce, "evaluate", recording)
    return seen


def check_evaluation(detector, split, numbers: dict, what: str = "") -> None:
    """Every number of one ``evaluate`` call, recomputed from a fresh scoring."""
    scores = as_array(detector.anomaly_score(split.x_test))
    assert_rounds_to(numbers["auc"], sklearn_auroc(split.y_test, scores), f"{what} AUROC")
    if "fpr_995" in numbers:  # protocol 2: the talk's Figure 3
        assert_rounds_to(numbers["fpr_995"], sklearn_fpr_at_tpr(split.y_test, scores, 0.995), f"{what} FPR")
    if "f1" in numbers:  # protocol 1: the threshold is chosen on validation
        val_labels, val_scores = as_array(split.y_val), as_array(detector.anomaly_score(split.x_val))
        best = max(f1_score(val_labels, val_scores >= t) for t in np.unique(val_scores))
        optimal = [t for t in np.unique(val_scores) if f1_score(val_labels, val_scores >= t) == best]
        f1s = {round(100 * f1_score(as_array(split.y_test), scores >= t), 2) for t in optimal}
        assert any(abs(numbers["f1"] - f1) <= ROUNDING for f1 in f1s), f"{what} F1 {numbers['f1']} not in {f1s}"
    if "pixel_auc" in numbers or "au_pro" in numbers:
        maps = detector.anomaly_map(split.x_test)
        masks = [as_array(mask).astype(bool) for mask in split.masks_test]
        maps = [
            F.interpolate(m[None, None].float(), size=mask.shape, mode="bilinear", align_corners=False)[0, 0]
            for m, mask in zip(maps, masks)
        ]
        maps = [as_array(m) for m in maps]
        pooled_masks = np.concatenate([mask.ravel() for mask in masks])
        pooled_maps = np.concatenate([m.ravel() for m in maps])
        assert_rounds_to(numbers["pixel_auc"], sklearn_auroc(pooled_masks, pooled_maps), f"{what} pixel AUROC")
        assert_rounds_to(numbers["au_pro"], 100 * au_pro(masks, maps), f"{what} AU-PRO")
