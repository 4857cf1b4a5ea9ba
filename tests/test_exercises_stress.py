"""The Lecture 7 exercise checks (Puzzle-AE's errors with their gradient, the
Welch interval, the decision from it) accept right answers, reject plausible
wrong ones with feedback that names the mistake, refuse the package's own
functions and scipy's t-tests, and leave the global random state alone
(tests/test_exercises.py checks that for every check of the course); the
solutions in the instructor notebooks pass them, and the committed student
versions of Exercises 7a and 7b are current.

The right answers here take other routes than the checks' references (all
puzzles in one batch, the tiles moved by hand, the puzzles stacked puzzle by
puzzle; the interval from Python's ``statistics`` or from
``scipy.stats.t.interval``). The notebooks themselves are executed by
tests/test_notebooks.py."""

import functools
import statistics
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from scipy import stats
from test_exercises import exercise_checks, not_done
from test_exercises_puzzle import (
    assert_the_instructor_solutions_pass_their_checks,
    assert_the_student_version_is_current_and_has_the_stubs,
)

from anomaly_edu import puzzle_ae, puzzles
from anomaly_edu.grading import ex07a, ex07b

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = ["ex07a_attack.ipynb", "ex07b_seeds.ipynb"]
STRESS_CHECKS = ["check_puzzle_errors", "check_welch_interval", "check_decide"]


# ------------------------------------------------------------------ Exercise 7a.1: Puzzle-AE's errors, differentiable


def errors_batched(network, x, perms, grid, normalisers):
    """All N * P puzzled images through the network in one batch (the package's route)."""
    puzzled = puzzles.apply_permutations(x, perms, grid)  # (N, P, C, H, W)
    restored = network(puzzled.flatten(0, 1)).view(puzzled.shape)
    return ((restored - x.unsqueeze(1)) ** 2).mean(dim=(2, 3, 4)) / normalisers


def errors_by_hand(network, x, perms, grid, normalisers):
    """The tiles moved by hand (no package at all), one puzzle at a time, a list of columns."""
    n, c, h, w = x.shape
    th, tw = h // grid, w // grid
    tiles = x.reshape(n, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, th, tw)
    columns = []
    for k, perm in enumerate(perms):
        moved = tiles[:, perm].reshape(n, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)
        columns.append(
            torch.nn.functional.mse_loss(network(moved), x, reduction="none").flatten(1).mean(1) / normalisers[k]
        )
    return torch.stack(columns, 1)


def errors_puzzle_major(network, x, perms, grid, normalisers):
    """Right too: the puzzles stacked puzzle by puzzle, read back in the same order."""
    stacked = torch.cat([puzzles.apply_permutation(x, perm, grid) for perm in perms])  # (P * N, ...)
    restored = network(stacked).view(len(perms), len(x), *x.shape[1:])
    return ((restored - x) ** 2).flatten(2).mean(2).T / normalisers


@pytest.mark.parametrize("right", [errors_batched, errors_by_hand, errors_puzzle_major])
def test_puzzle_errors_check_accepts_right_answers(right, capsys):
    ex07a.check_puzzle_errors(right)
    assert "✓" in capsys.readouterr().out


def test_the_puzzle_errors_reference_agrees_with_the_package():
    """The check's one-puzzle-at-a-time answer is the package's batched one."""
    for _, network, x, perms, grid, normalisers in ex07a._puzzle_error_cases():
        expected = puzzle_ae.permutation_errors(network, x, perms, grid) / normalisers
        assert torch.allclose(ex07a._puzzle_errors_answer(network, x, perms, grid, normalisers), expected, atol=1e-6)


def test_every_puzzle_errors_mistake_gives_its_own_answer():
    cases = ex07a._puzzle_error_cases()
    answers = {
        mistake: [ex07a._puzzle_errors_answer(*case[1:], mistake=mistake).detach() for case in cases]
        for mistake in [None, *ex07a._PUZZLE_ERROR_MISTAKES]
    }
    names = list(answers)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not all(torch.allclose(p, q, atol=1e-5) for p, q in zip(answers[first], answers[second])), (
                first,
                second,
            )


def with_mistake(mistake):
    def puzzle_errors(network, x, perms, grid, normalisers):
        puzzled = puzzles.apply_permutations(x, perms, grid)
        if mistake == "puzzle-major":
            restored = network(puzzled.flatten(0, 1)).view(len(perms), len(x), *x.shape[1:]).transpose(0, 1)
        else:
            restored = network(puzzled.flatten(0, 1)).view(puzzled.shape)
        target = (
            puzzled
            if mistake == "puzzled target"
            else x.detach()[:, None]
            if mistake == "detached target"
            else x[:, None]
        )
        squared = (restored - target) ** 2
        errors = squared.flatten(2).sum(2) if mistake == "sum" else squared.flatten(2).mean(2)
        if mistake == "transposed":
            return (errors / normalisers).T
        return {"not normalised": errors, "times": errors * normalisers}.get(mistake, errors / normalisers)

    return puzzle_errors


def without_gradients(network, x, perms, grid, normalisers):
    with torch.no_grad():
        return errors_batched(network, x, perms, grid, normalisers)


def changes_x(network, x, perms, grid, normalisers):
    errors = errors_batched(network, x, perms, grid, normalisers)
    x.data.mul_(0.5)
    return errors


def only_the_detector_way(network, x, perms, grid, normalisers):
    return puzzle_ae.permutation_errors(network, x, perms, grid) / normalisers


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (with_mistake("puzzled target"), "PUZZLED image"),
        (with_mistake("sum"), "SUM the squared errors"),
        (with_mistake("not normalised"), "not normalised"),
        (with_mistake("times"), "MULTIPLIED"),
        (with_mistake("puzzle-major"), "wrong \\(image, puzzle\\) pairs"),
        (with_mistake("transposed"), "one row per puzzle"),
        (with_mistake("detached target"), "gradient with respect to x is not"),
        (without_gradients, "carry no gradient"),
        (lambda *args: errors_batched(*args).detach().numpy(), "return a torch tensor"),
        (lambda *args: errors_batched(*args).mean(1), "expected shape"),
        (changes_x, "changed x in place"),
        (only_the_detector_way, "write it yourself"),
        (not_done, "not done yet"),
        (lambda *args: None, "returned None"),
    ],
)
def test_puzzle_errors_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex07a.check_puzzle_errors(wrong)


# ------------------------------------------------------------------ Exercise 7b.1: the Welch interval


def welch_by_hand(a, b, confidence=0.95):
    """numpy, term by term."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    sa2 = ((a - a.mean()) ** 2).sum() / (len(a) - 1)
    sb2 = ((b - b.mean()) ** 2).sum() / (len(b) - 1)
    se2 = sa2 / len(a) + sb2 / len(b)
    nu = se2**2 / ((sa2 / len(a)) ** 2 / (len(a) - 1) + (sb2 / len(b)) ** 2 / (len(b) - 1))
    half = stats.t.ppf(1 - (1 - confidence) / 2, nu) * np.sqrt(se2)
    d = a.mean() - b.mean()
    return d, d - half, d + half


def welch_by_interval(a, b, confidence=0.95):
    """Python's statistics module and scipy's t.interval; a list, float32 numbers."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    nu = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    d = statistics.fmean(a) - statistics.fmean(b)
    low, high = stats.t.interval(confidence, nu, loc=d, scale=np.sqrt(va + vb))
    return [np.float64(d), np.float64(low), np.float64(high)]


@pytest.mark.parametrize("right", [welch_by_hand, welch_by_interval])
def test_welch_check_accepts_right_answers(right, capsys):
    ex07b.check_welch_interval(right)
    assert "✓" in capsys.readouterr().out


def test_the_welch_reference_agrees_with_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(85, 1, rng.integers(2, 12)), rng.normal(86, 3, rng.integers(2, 12))
        confidence = rng.uniform(0.5, 0.999)
        _, low, high = ex07b._welch_answers(a, b, confidence)["right"]
        assert np.allclose((low, high), stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence))


def test_every_welch_mistake_gives_its_own_answer():
    cases = ex07b._welch_cases()
    answers = [ex07b._welch_answers(a, b, c) for _, a, b, c in cases]
    names = list(answers[0])
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if {first, second} == {"normal", "1.96"}:
                continue  # the same mistake, except at confidence 0.95
            assert not all(np.allclose(ans[first], ans[second], rtol=1e-6) for ans in answers), (first, second)


def welch_variant(*, ddof=1, pooled=False, quantile="t", paired=False, std=False, flip=False, fixed=None, df=None):
    """The interval with one mistake (or several)."""

    def welch_interval(a, b, confidence=0.95):
        level = confidence if fixed is None else fixed
        a, b = np.array(a, dtype=float), np.array(b, dtype=float)
        if paired:
            d = a - b
            se, nu, centre = d.std(ddof=1) / np.sqrt(len(d)), len(d) - 1, d.mean()
        else:
            centre = a.mean() - b.mean()
            va, vb = a.var(ddof=ddof), b.var(ddof=ddof)
            if pooled:
                pool = ((len(a) - 1) * va + (len(b) - 1) * vb) / (len(a) + len(b) - 2)
                se, nu = np.sqrt(pool * (1 / len(a) + 1 / len(b))), len(a) + len(b) - 2
            else:
                va, vb = (va, vb) if std else (va / len(a), vb / len(b))
                se = np.sqrt(va + vb)
                nu = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
                if std:  # the degrees of freedom from the standard errors, as they should be
                    sa, sb = va / len(a), vb / len(b)
                    nu = (sa + sb) ** 2 / (sa**2 / (len(a) - 1) + sb**2 / (len(b) - 1))
            nu = nu if df is None else df(len(a), len(b))
        q = {
            "t": stats.t.ppf((1 + level) / 2, nu),
            "one-sided": stats.t.ppf(level, nu),
            "normal": stats.norm.ppf((1 + level) / 2),
            "1.96": 1.96,
        }[quantile]
        low, high = centre - q * se, centre + q * se
        return (-centre, -high, -low) if flip else (centre, low, high)

    return welch_interval


def paired_with_zip(a, b, confidence=0.95):
    """Pairs run i with run i; zip drops the extra runs of the longer sample silently."""
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * statistics.stdev(d) / n**0.5
    return statistics.fmean(d), statistics.fmean(d) - half, statistics.fmean(d) + half


def sorts_in_place(a, b, confidence=0.95):
    for sample in (a, b):
        if isinstance(sample, np.ndarray):
            sample.sort()
    return welch_by_hand(a, b, confidence)


def with_ttest_ind(a, b, confidence=0.95):
    result = stats.ttest_ind(a, b, equal_var=False)
    low, high = result.confidence_interval(confidence)
    return np.mean(a) - np.mean(b), low, high


def helper_with_ttest(a, b, confidence=0.95):
    return with_ttest_ind(a, b, confidence)


def imports_ttest_under_another_name(a, b, confidence=0.95):
    from scipy.stats import ttest_ind as compare

    interval = compare(a, b, equal_var=False).confidence_interval(confidence)
    return np.mean(a) - np.mean(b), *interval


t_test = stats.ttest_ind  # a notebook-level alias


def through_an_alias(a, b, confidence=0.95):
    interval = t_test(a, b, equal_var=False).confidence_interval(confidence)
    return np.mean(a) - np.mean(b), interval.low, interval.high


def ttest_by_a_built_name(a, b, confidence=0.95):
    """No t-test in the code's names: only watching the calls as they happen finds it."""
    test = getattr(stats, "ttest" + "_ind")
    low, high = test(a, b, equal_var=False).confidence_interval(confidence)
    return np.mean(a) - np.mean(b), low, high


def ttest_only_when_asked(a, b, confidence=0.95):
    if confidence == 0.8:  # a branch the check reaches: the call is watched as it happens
        return with_ttest_ind(a, b, confidence)
    return welch_by_hand(a, b, confidence)


def with_the_package(a, b, confidence=0.95):
    from anomaly_edu.experiments import sweep

    sweep.read_sweep_file  # noqa: B018 (only named: that is enough to refuse)
    return welch_by_hand(a, b, confidence)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (welch_variant(ddof=0), "population variance"),
        (welch_variant(pooled=True), "pooled the two variances"),
        (welch_variant(df=lambda na, nb: na + nb - 2), "degrees of freedom are n_a \\+ n_b - 2"),
        (welch_variant(quantile="normal"), "normal quantile"),
        (welch_variant(quantile="1.96"), "you used 1.96"),
        (welch_variant(paired=True), "not paired"),
        (paired_with_zip, "not paired"),
        (welch_variant(std=True), "standard deviations, not the standard error"),
        (welch_variant(flip=True), "mean\\(b\\) - mean\\(a\\)"),
        (welch_variant(quantile="one-sided"), "one-sided"),
        (welch_variant(fixed=0.95), "whatever the confidence"),
        (welch_variant(ddof=0, pooled=True), "the interval is not"),
        (lambda a, b, c: welch_by_hand(a, b, c)[1:], "three numbers"),
        (lambda a, b, c: welch_by_hand(a, b, c) + (0.0,), "three numbers"),
        (lambda a, b, c: ("d", "low", "high"), "three numbers"),
        (lambda a, b, c: (np.median(a) - np.median(b), *welch_by_hand(a, b, c)[1:]), "difference of the means"),
        (sorts_in_place, "changed the samples"),
        (lambda a, b, c: None, "returned None"),
        (not_done, "not done yet"),
        (with_ttest_ind, "ttest_ind"),
        (helper_with_ttest, "ttest_ind"),
        (imports_ttest_under_another_name, "ttest_ind"),
        (through_an_alias, "ttest_ind"),
        (ttest_only_when_asked, "ttest_ind"),
        (ttest_by_a_built_name, "ttest_ind"),
        (lambda a, b, c: stats.ttest_rel(a, b).confidence_interval(c), "ttest_rel"),
        (functools.partial(stats.ttest_ind, equal_var=False), "ttest_ind"),
        (with_the_package, "write it yourself"),
    ],
)
def test_welch_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex07b.check_welch_interval(wrong)


def test_the_ttest_refusal_names_the_point():
    with pytest.raises(AssertionError, match="build the interval yourself"):
        ex07b.check_welch_interval(with_ttest_ind)


def test_watching_calls_gives_back_the_profiler():
    def profiler(frame, event, arg):
        return None

    sys.setprofile(profiler)
    try:
        with pytest.raises(AssertionError):
            ex07b.check_welch_interval(welch_variant(ddof=0))
        assert sys.getprofile() is profiler
    finally:
        sys.setprofile(None)


# ------------------------------------------------------------------ Exercise 7b.2: the decision


def welch_interval(a, b, confidence=0.95):
    """The name the notebook's decide calls (what Task 1 asks for)."""
    return welch_by_hand(a, b, confidence)


def decide_reference(a, b, confidence=0.95):
    _, low, high = welch_interval(a, b, confidence)
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


def decide_by_sign_of_the_ends(a, b, confidence=0.95):
    """Right too: both ends on the same side of 0; the difference's sign says which."""
    difference, low, high = welch_interval(a, b, confidence=confidence)
    if np.sign(low) == np.sign(high) != 0:
        return "A" if difference > 0 else "B"
    return "cannot tell"


@pytest.mark.parametrize("right", [decide_reference, decide_by_sign_of_the_ends])
def test_decide_check_accepts_right_answers(right, capsys):
    ex07b.check_decide(right)
    assert "✓" in capsys.readouterr().out


def decide_on(interval):
    """decide, built on another welch_interval (the one of a student whose Task 1 is wrong)."""

    def decide(a, b, confidence=0.95):
        _, low, high = interval(a, b, confidence)
        return "A" if low > 0 else "B" if high < 0 else "cannot tell"

    return decide


def wrong_welch_named_welch_interval():
    std_instead_of_se = welch_variant(std=True)

    def welch_interval(a, b, confidence=0.95):  # the name the check watches for
        return std_instead_of_se(a, b, confidence)

    return welch_interval


def means_only(a, b, confidence=0.95):
    difference, _, _ = welch_interval(a, b, confidence)
    return "A" if difference > 0 else "B" if difference < 0 else "cannot tell"


def swapped(a, b, confidence=0.95):
    return {"A": "B", "B": "A"}.get(decide_reference(a, b, confidence), "cannot tell")


def ignores_confidence(a, b, confidence=0.95):
    return decide_reference(a, b)


def decide_with_the_normal_quantile(a, b, confidence=0.95):
    """Calls welch_interval, then builds its own interval with z instead of t."""
    difference, _, _ = welch_interval(a, b, confidence)
    se = np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    half = stats.norm.ppf((1 + confidence) / 2) * se
    return "A" if difference - half > 0 else "B" if difference + half < 0 else "cannot tell"


def decide_with_196(a, b, confidence=0.95):
    difference, _, _ = welch_interval(a, b, confidence)
    half = 1.96 * np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    return "A" if difference - half > 0 else "B" if difference + half < 0 else "cannot tell"


def wrong_ends(a, b, confidence=0.95):
    _, low, high = welch_interval(a, b, confidence)
    return "A" if high > 0 else "B" if low < 0 else "cannot tell"


def without_welch_interval(a, b, confidence=0.95):
    """Right decisions, but the interval computed again inside."""
    _, low, high = welch_by_hand(a, b, confidence)
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


def decide_with_ttest(a, b, confidence=0.95):
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    welch_interval(a, b, confidence)
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


def decide_with_the_package(a, b, confidence=0.95):
    from anomaly_edu.grading import ex07b as package_checks

    _, low, high = package_checks._welch_answers(a, b, confidence)["right"]
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (means_only, "difference of the means alone"),
        (swapped, "swapped A and B"),
        (ignores_confidence, "pass the confidence on to welch_interval"),
        (decide_with_the_normal_quantile, "normal quantile"),
        (decide_on(welch_variant(quantile="normal")), "normal quantile.*fix it\\s+first"),
        (decide_with_196, "expected"),
        (wrong_ends, "wrong ends"),
        (decide_on(wrong_welch_named_welch_interval()), "fix it first"),
        (without_welch_interval, "does not call welch_interval"),
        (decide_on(welch_by_hand), "does not call welch_interval"),
        (lambda a, b, c: decide_reference(a, b, c).lower(), 'return one of "A", "B" or "cannot tell"'),
        (lambda a, b, c: decide_reference(a, b, c) == "A", 'return one of "A", "B" or "cannot tell"'),
        (lambda a, b, c: None, "returned None"),
        (not_done, "not done yet"),
        (decide_with_ttest, "ttest_ind"),
        (decide_with_the_package, "write it yourself"),
    ],
)
def test_decide_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex07b.check_decide(wrong)


def test_the_decide_cases_hold_every_kind_of_decision():
    """A, B and "cannot tell" each occur, a clear difference of the means with
    an interval that holds 0 among them, and one pair of runs whose decision
    changes with the confidence."""
    decisions = {}
    for description, a, b, confidence in ex07b._decide_cases():
        difference, low, high = ex07b._welch_answers(a, b, confidence)["right"]
        decisions[description] = decide_reference(a, b, confidence)
        if decisions[description] == "cannot tell" and "spread" in description:
            assert abs(difference) >= 2
    assert set(decisions.values()) == {"A", "B", "cannot tell"}
    by_runs = {}
    for description, a, b, _ in ex07b._decide_cases():
        by_runs.setdefault((tuple(a), tuple(b)), set()).add(decisions[description])
    assert any(len(found) > 1 for found in by_runs.values())


def test_a_decide_case_tells_the_t_quantile_from_the_normal_one():
    """With few runs the t interval holds 0 where the normal one does not."""
    differ = [
        description
        for description, a, b, confidence in ex07b._decide_cases()
        if decide_reference(a, b, confidence) != decide_on(welch_variant(quantile="normal"))(a, b, confidence)
    ]
    assert differ


# ------------------------------------------------------------------ right answers for the shared tests


def correct_answers():
    """For every Lecture 7 check, a call with a right answer."""
    return {
        "check_puzzle_errors": lambda: ex07a.check_puzzle_errors(errors_batched),
        "check_welch_interval": lambda: ex07b.check_welch_interval(welch_by_hand),
        "check_decide": lambda: ex07b.check_decide(decide_reference),
    }


def test_every_lecture7_check_is_here():
    assert set(STRESS_CHECKS) == set(correct_answers())
    assert set(STRESS_CHECKS) <= set(exercise_checks())


# ------------------------------------------------------------------ the notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_instructor_solutions_pass_their_checks(name, capsys):
    assert_the_instructor_solutions_pass_their_checks(name, capsys)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_student_version_is_current_and_has_the_stubs(name):
    assert_the_student_version_is_current_and_has_the_stubs(name)


def test_the_notebooks_grade_what_the_exercise_promises():
    """7a: puzzle_errors for 6 points and the questions at the end for 4; 7b:
    welch_interval for 6, decide for 2 and the questions at the end for 4."""
    points, by_hand = {}, {}
    for name in NOTEBOOKS:
        nb = nbformat.read(ROOT / "exercises" / "solutions" / name, as_version=4)
        for cell in nb.cells:
            grading = cell.metadata.get("nbgrader", {})
            if grading.get("grade") and cell.cell_type == "code":
                code = [line for line in cell.source.splitlines() if not line.startswith("#")]  # no nbval marker
                points["\n".join(code).strip()] = grading["points"]
            elif grading.get("grade"):
                by_hand[name, grading["grade_id"]] = grading["points"]
    assert points == {
        "checks.check_puzzle_errors(puzzle_errors)": 6,
        "checks.check_welch_interval(welch_interval)": 6,
        "checks.check_decide(decide)": 2,
    }
    assert by_hand == {("ex07a_attack.ipynb", "think-about-it"): 4, ("ex07b_seeds.ipynb", "think-about-it"): 4}
