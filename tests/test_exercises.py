"""The exercise checks accept right answers, reject plausible wrong ones with
specific feedback, and the committed student versions are current."""

import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from anomaly_edu import checks, detectors, metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_student_versions  # noqa: E402


def not_done(*args):
    raise NotImplementedError()


# ------------------------------------------------------------------ Exercise 1.1


def test_reconstruction_check_accepts_the_reference():
    checks.check_reconstruction_score(detectors.reconstruction_error)


@pytest.mark.parametrize("wrong, feedback", [
    (lambda m, x: ((m(x) - x) ** 2).flatten(1).mean(1), "MEAN squared error"),
    (lambda m, x: ((m(x) - x) ** 2).sum(), "one number for the whole batch"),
    (lambda m, x: (m(x) - x).abs().flatten(1).sum(1), "ABSOLUTE"),
    (lambda m, x: ((m(x) - x) ** 2).sum(dim=(2, 3)), "expected shape"),
    (lambda m, x: None, "returned None"),
    (not_done, "not done yet"),
])
def test_reconstruction_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        checks.check_reconstruction_score(wrong)


# ------------------------------------------------------------------ Exercise 1.2


def test_fpr_check_accepts_the_reference():
    checks.check_fpr_at_tpr(metrics.fpr_at_tpr)


def next_point_fpr(labels, scores, target):
    """A plausible mistake: no interpolation, take the first point reaching the target."""
    curve = metrics.roc_curve_data(labels, scores)
    return curve["fpr"][np.argmax(curve["tpr"] >= target)]


def point_below_fpr(labels, scores, target):
    """Another: the last point below the target."""
    curve = metrics.roc_curve_data(labels, scores)
    return curve["fpr"][max(np.argmax(curve["tpr"] >= target) - 1, 0)]


@pytest.mark.parametrize("wrong, feedback", [
    (next_point_fpr, "interpolate"),
    (point_below_fpr, "BELOW"),
    (lambda l, s, t: t, "the TPR itself"),
    (lambda l, s, t: None, "returned None"),
    (not_done, "not done yet"),
])
def test_fpr_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        checks.check_fpr_at_tpr(wrong)


def test_fpr_check_catches_wrong_tie_handling():
    def one_point_per_sample(labels, scores, target):
        order = np.argsort(-np.asarray(scores), kind="stable")
        l = np.asarray(labels)[order]
        tpr = np.r_[0, np.cumsum(l) / l.sum()]
        fpr = np.r_[0, np.cumsum(1 - l) / (1 - l).sum()]
        i = int(np.argmax(tpr >= target))
        if i == 0 or tpr[i] == target:
            return fpr[i]
        return fpr[i - 1] + (target - tpr[i - 1]) / (tpr[i] - tpr[i - 1]) * (fpr[i] - fpr[i - 1])

    with pytest.raises(AssertionError):
        checks.check_fpr_at_tpr(one_point_per_sample)


# ------------------------------------------------------------------ Exercise 1.3


def test_threshold_check_accepts_the_reference():
    checks.check_validation_threshold(metrics.choose_threshold)


@pytest.mark.parametrize("wrong, feedback", [
    (lambda l, s: np.median(s), "median"),
    (lambda l, s: np.max(s) + 1, "reachable"),
    (lambda l, s: np.quantile(s, 0.95), "reachable"),
    (not_done, "not done yet"),
])
def test_threshold_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        checks.check_validation_threshold(wrong)


# ------------------------------------------------------------------ student versions


def test_committed_student_versions_are_current():
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_student_versions.py"), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_student_version_hides_every_solution():
    for source in sorted((ROOT / "exercises" / "solutions").glob("*.ipynb")):
        student = nbformat.read(ROOT / "exercises" / source.name, as_version=4)
        text = "\n".join(c.source for c in student.cells)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        assert "raise NotImplementedError()" in text
        instructor = nbformat.read(source, as_version=4)
        assert len(student.cells) == len(instructor.cells)
        assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


def test_strip_solutions_keeps_indentation_and_surrounding_code():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    assert make_student_versions.strip_solutions(source) == (
        "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()")
    with pytest.raises(ValueError, match="unmatched"):
        make_student_versions.strip_solutions("### BEGIN SOLUTION\nx = 1\n")
