"""Checks of Exercise 1 (Lecture 1): the reconstruction score, the FPR at a
given TPR, and a threshold chosen on validation data."""

from __future__ import annotations

__lecture__ = 1

import numpy as np
import torch

from ..detectors import reconstruction_error
from ..metrics import choose_threshold, f1_at_threshold, fpr_at_tpr, to_numpy
from .cases import TinyAE
from .machinery import call_refusing_the_package, passed


def check_reconstruction_score(reconstruction_score) -> None:
    """Exercise 1.1: ``reconstruction_score(model, x)`` must return one number
    per image: the sum over pixels (every channel of them) of the squared
    reconstruction error."""
    task = "Exercise 1.1 (reconstruction score)"
    model = TinyAE(channels=3)
    # Three channels, as a colour image has: a score that reads one channel only is caught
    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    expected = reconstruction_error(model, x).numpy()
    got = call_refusing_the_package(task, reconstruction_score, model, x)
    got = to_numpy(got).astype(float)
    if got.shape == ():
        raise AssertionError(
            f"{task}: you returned one number for the whole batch; return one score "
            f"per image (reduce over the pixel axes only), shape ({len(x)},)"
        )
    if got.shape == (len(x), x.shape[1]):
        raise AssertionError(
            f"{task}: expected shape {expected.shape} (one score per image), got {got.shape}: one score per image "
            f"and channel. Sum over the channels too: over all of C, H and W (.flatten(1).sum(1))"
        )
    if got.shape != expected.shape:
        raise AssertionError(f"{task}: expected shape {expected.shape} (one score per image), got {got.shape}")
    if np.allclose(got, expected, rtol=1e-4):
        passed(task)
        return
    mistake = next(
        (feedback for wrong, feedback in _score_mistakes(model, x) if np.allclose(got, wrong, rtol=1e-4)), None
    )
    if mistake is not None:
        raise AssertionError(f"{task}: {mistake}")
    raise AssertionError(f"{task}: for the test batch we expected {np.round(expected, 4)} but got {np.round(got, 4)}")


def _score_mistakes(model, x) -> list[tuple[np.ndarray, str]]:
    """(scores, feedback) of Exercise 1.1's plausible mistakes on the batch x."""
    with torch.no_grad():
        error = model(x) - x
    squared = error**2
    mean = "your scores are the MEAN squared error over pixels; the course's score is the SUM over pixels"
    mistakes = [
        (squared.flatten(1).mean(1), mean),
        (squared.mean(dim=(2, 3)).sum(1), mean),
        (error.abs().flatten(1).sum(1), "you summed ABSOLUTE errors; square the differences instead"),
        (
            squared[:, 0].flatten(1).sum(1),
            "you summed the first channel only (x[:, 0]): right for MNIST's one channel, but a colour image "
            "has three. Sum over every channel too: over all of C, H and W (.flatten(1).sum(1))",
        ),
        (
            squared.sum(dim=(2, 3)).mean(1),
            "you averaged the channels' sums; sum over the channels too: the score is the sum over all of C, H "
            "and W (.flatten(1).sum(1))",
        ),
        (
            squared.flatten(1).sum(1).sqrt(),
            "you took the square root of the sum (the length of the error); the score is the sum of the squared "
            "errors itself, without the root",
        ),
    ]
    return [(wrong.numpy(), feedback) for wrong, feedback in mistakes]


def check_fpr_at_tpr(student_fpr_at_tpr) -> None:
    """Exercise 1.2: ``fpr_at_tpr(labels, scores, target_tpr)`` with the course's
    convention (straight lines between the ROC curve's points)."""
    task = "Exercise 1.2 (FPR at a target TPR)"
    # By score, descending: A A N A N N A N (A = anomaly, N = normal); the third
    # normal and the last anomaly tie at 3, which gives the ROC curve a slanted
    # segment from (0.5, 0.75) to (0.75, 1).
    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    scores = np.array([8, 7, 6, 5, 4, 3, 3, 1], dtype=float)
    cases = [(0.5, 0.0), (0.75, 0.25), (0.99, 0.74), (1.0, 0.75)]
    for target, expected in cases:
        got = float(call_refusing_the_package(task, student_fpr_at_tpr, labels, scores, target))
        if np.isclose(got, target):
            raise AssertionError(
                f"{task}: for target {target} you returned {got}, the TPR itself; "
                f"return the false-positive rate where the TPR reaches the target"
            )
        if not np.isclose(got, expected, atol=1e-6):
            hint = ""
            if target == 0.99 and np.isclose(got, 0.75):
                hint = (
                    " You returned the FPR of the next operating point: interpolate linearly "
                    "between the two points around the target TPR."
                )
            elif target == 0.99 and np.isclose(got, 0.5):
                hint = " You returned the FPR of the point BELOW the target; the TPR must reach the target."
            raise AssertionError(
                f"{task}: labels {labels.tolist()}, scores {scores.tolist()}, "
                f"target TPR {target}: expected FPR {expected}, got {got}.{hint}"
            )
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    for target in (0.9, 0.99, 0.995):
        got = float(call_refusing_the_package(task, student_fpr_at_tpr, labels, scores, target))
        if not np.isclose(got, fpr_at_tpr(labels, scores, target), atol=1e-6):
            raise AssertionError(
                f"{task}: the hand-made cases pass, but on 300 random scores at target "
                f"{target} we expected {fpr_at_tpr(labels, scores, target):.4f} and got "
                f"{got:.4f}; check how you handle tied scores"
            )
    passed(task)


def check_validation_threshold(pick_threshold) -> None:
    """Exercise 1.3: ``pick_threshold(val_labels, val_scores)`` must return the
    threshold with the highest F1 on the validation data it is given."""
    task = "Exercise 1.3 (threshold on validation data)"
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(80, int), np.ones(20, int)]
    scores = np.r_[rng.normal(0, 1, 80), rng.normal(2.5, 1, 20)]
    got = call_refusing_the_package(task, pick_threshold, labels, scores, allowed=("f1_at_threshold",))
    got = float(got)
    best = f1_at_threshold(labels, scores, choose_threshold(labels, scores))
    mine = f1_at_threshold(labels, scores, got)
    if np.isclose(got, np.median(scores)) or np.isclose(got, np.mean(scores)):
        raise AssertionError(
            f"{task}: your threshold is the median/mean score; with 20% anomalies that "
            f"flags half the data. Try every distinct score as a threshold and keep the "
            f"one with the best F1"
        )
    if mine < best - 1e-9:
        raise AssertionError(
            f"{task}: your threshold {got:.3f} gives validation F1 {mine:.3f}, but "
            f"{best:.3f} is reachable; try every distinct validation score as a threshold "
            f"(anomaly when score >= threshold)"
        )
    passed(task, f"validation F1 {mine:.3f}.")
