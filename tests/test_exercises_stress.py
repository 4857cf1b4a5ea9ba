"""The Lecture 7 exercise checks (the score-raising attack, the Welch interval,
the decision from it) accept right answers, reject plausible wrong ones with
feedback that names the mistake, refuse the package's own functions and
scipy's t-tests, and leave the global random state alone (tests/test_exercises.py checks that
for every check of the course); the solutions in the
instructor notebooks pass them, and the committed student versions of
Exercises 7a and 7b are current.

The right answers here take other routes than the checks' references
(``.backward()`` instead of ``autograd.grad``, a perturbation ``delta`` instead
of the attacked image, the clamp before the projection; the interval from
Python's ``statistics`` or from ``scipy.stats.t.interval``). The notebooks
themselves are executed by tests/test_notebooks.py."""

import functools
import statistics
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from scipy import stats
from test_exercises import global_random_state, not_done
from test_exercises_puzzle import (
    assert_the_instructor_solutions_pass_their_checks,
    assert_the_student_version_is_current_and_has_the_stubs,
)

from anomaly_edu import attacks, checks, stress

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = ["ex07a_attack.ipynb", "ex07b_seeds.ipynb"]
STRESS_CHECKS = ["check_raise_score", "check_welch_interval", "check_decide"]


# ------------------------------------------------------------------ Exercise 7a.1: the score-raising attack


def raise_by_autograd(score_fn, x, eps, steps, step_size):
    """The attacked image itself, the gradient from torch.autograd.grad."""
    x_adv = x.detach().clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (gradient,) = torch.autograd.grad(score_fn(x_adv).sum(), x_adv)
        x_adv = x_adv.detach() + step_size * gradient.sign()
        x_adv = torch.max(torch.min(x_adv, x + eps), x - eps).clamp(0, 1)
    return x_adv


def raise_by_backward(score_fn, x, eps, steps, step_size):
    """A perturbation delta, the gradient from .backward() of the MEAN score
    (same sign), the clamp to [0, 1] BEFORE the projection (the same answer:
    the ball and [0, 1] overlap around an image in [0, 1])."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        score_fn(x + delta).mean().backward()
        with torch.no_grad():
            moved = (x + delta + step_size * delta.grad.sign()).clamp(0, 1)
            delta = (moved - x).clamp(-eps, eps)
    return x + delta.detach()


def raise_in_place_on_a_copy(score_fn, x, eps, steps, step_size):
    """In-place updates, on a copy, under no_grad; returns a tensor that still requires grad."""
    x_adv = x.clone().requires_grad_(True)
    for _ in range(steps):
        gradient = torch.autograd.grad(score_fn(x_adv).sum(), [x_adv])[0]
        with torch.no_grad():
            x_adv.add_(step_size * torch.sign(gradient))
            x_adv.copy_(torch.clamp(x_adv, min=x - eps, max=x + eps))
            x_adv.clamp_(0.0, 1.0)
    return x_adv


@pytest.mark.parametrize("right", [raise_by_autograd, raise_by_backward, raise_in_place_on_a_copy])
def test_raise_score_check_accepts_right_answers(right, capsys):
    checks.check_raise_score(right)
    assert "✓" in capsys.readouterr().out


def test_the_raise_score_reference_agrees_with_the_package_pgd():
    """Without a random start, the package's PGD on a score is the same attack."""

    class Score(torch.nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, x):
            return self.fn(x)

    for _, score_fn, x, eps, steps, step_size in checks._raise_score_cases():
        expected = checks._raise_score_answer(score_fn, x, eps, steps, step_size)
        got = attacks.pgd(
            Score(score_fn),
            x,
            torch.zeros(len(x), dtype=torch.long),
            eps=eps,
            steps=steps,
            alpha=step_size,
            random_start=False,
            loss_fn=lambda scores, labels: scores,
        )
        assert torch.allclose(got, expected, atol=1e-6)


def test_every_attack_mistake_gives_its_own_answer():
    """The check's cases tell every mistake apart from the right answer and from each other."""
    cases = checks._raise_score_cases()
    answers = {
        mistake: [checks._raise_score_answer(*case[1:], mistake=mistake) for case in cases]
        for mistake in [None, *checks._RAISE_SCORE_MISTAKES]
    }
    names = list(answers)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not all(torch.allclose(p, q, atol=1e-5) for p, q in zip(answers[first], answers[second])), (
                first,
                second,
            )


def attack_variant(mistake):
    """The attack written out (not the check's reference) with one mistake."""

    def raise_score(score_fn, x, eps, steps, step_size):
        x_adv = x.clone()
        gradient_at_x = None
        for _ in range(1 if mistake == "one step" else steps):
            where = x if mistake == "gradient at x" else x_adv
            if mistake == "gradient at x" and gradient_at_x is not None:
                gradient = gradient_at_x
            else:
                point = where.clone().requires_grad_(True)
                score_fn(point).sum().backward()
                gradient = gradient_at_x = point.grad
            direction = gradient if mistake == "raw gradient" else gradient.sign()
            size = eps if mistake == "step eps" else step_size
            previous = x_adv
            x_adv = x_adv - size * direction if mistake == "descent" else x_adv + size * direction
            if mistake == "around current":
                x_adv = x_adv.clamp(previous - eps, previous + eps)
            elif mistake != "no projection":
                x_adv = x_adv.clamp(x - eps, x + eps)
            if mistake != "no clamp":
                x_adv = x_adv.clamp(0, 1)
        return x_adv.detach()

    return raise_score


def clamp_then_project(score_fn, x, eps, steps, step_size):
    """The two clamps in the other order: right too (tested here as an answer that must pass)."""
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (gradient,) = torch.autograd.grad(score_fn(x_adv).sum(), x_adv)
        x_adv = (x_adv.detach() + step_size * gradient.sign()).clamp(0, 1).clamp(x - eps, x + eps)
    return x_adv


def changes_x_through_detach(score_fn, x, eps, steps, step_size):
    x_adv = x.detach()  # shares x's memory
    for _ in range(steps):
        point = x_adv.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(score_fn(point).sum(), point)
        x_adv += step_size * gradient.sign()
        x_adv.copy_(torch.min(torch.max(x_adv, point.detach() - eps), point.detach() + eps).clamp(0, 1))
    return x_adv


def changes_x_through_data(score_fn, x, eps, steps, step_size):
    original = x.clone()
    x_adv = x
    for _ in range(steps):
        point = x_adv.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(score_fn(point).sum(), point)
        x_adv.data = (x_adv.data + step_size * gradient.sign()).clamp(original - eps, original + eps).clamp(0, 1)
    x.data.copy_(x_adv.data)
    return x_adv.clone()


def requires_grad_on_x(score_fn, x, eps, steps, step_size):
    x.requires_grad_(True)
    x_adv = x
    for _ in range(steps):
        (gradient,) = torch.autograd.grad(score_fn(x_adv).sum(), x_adv)
        x_adv = (x_adv + step_size * gradient.sign()).clamp(x - eps, x + eps).clamp(0, 1)
        x_adv = x_adv.detach().requires_grad_(True)
    return x_adv.detach()


def random_start(score_fn, x, eps, steps, step_size):
    """The package's habit (a random start in the ball), with torch's global generator."""
    start = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    return raise_by_autograd(score_fn, start, eps, steps, step_size).clamp(x - eps, x + eps)


def random_start_with_numpy(score_fn, x, eps, steps, step_size):
    noise = torch.from_numpy(np.random.uniform(-eps, eps, x.shape)).to(x.dtype)
    start = (x + noise).clamp(0, 1)
    return raise_by_autograd(score_fn, start, eps, steps, step_size).clamp(x - eps, x + eps)


def no_clamp_no_projection(score_fn, x, eps, steps, step_size):
    x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (gradient,) = torch.autograd.grad(score_fn(x_adv).sum(), x_adv)
        x_adv = x_adv.detach() + step_size * gradient.sign()
    return x_adv


def with_the_package_pgd(score_fn, x, eps, steps, step_size):
    class Score(torch.nn.Module):
        def forward(self, images):
            return score_fn(images)

    labels = torch.zeros(len(x), dtype=torch.long)
    return attacks.pgd(Score(), x, labels, eps=eps, steps=steps, alpha=step_size, random_start=False)


def helper_with_the_package(score_fn, x, eps, steps, step_size):
    return with_the_package_pgd(score_fn, x, eps, steps, step_size)


def imports_the_stress_module(score_fn, x, eps, steps, step_size):
    from anomaly_edu import stress as package_stress

    package_stress.check_attackable  # noqa: B018 (only named: that is enough to refuse)
    return raise_by_autograd(score_fn, x, eps, steps, step_size)


def test_the_clamp_order_does_not_matter(capsys):
    checks.check_raise_score(clamp_then_project)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (attack_variant("descent"), "LOWERS the score"),
        (attack_variant("no projection"), "never project back onto the ball"),
        (attack_variant("around current"), "around the point BEFORE that step"),
        (attack_variant("no clamp"), "outside \\[0, 1\\]"),
        (attack_variant("raw gradient"), "along its SIGN"),
        (attack_variant("one step"), "one step only"),
        (attack_variant("step eps"), "each of your steps has size eps"),
        (attack_variant("gradient at x"), "gradient at the original x in every step"),
        (no_clamp_no_projection, "outside \\[0, 1\\]"),
        (changes_x_through_detach, "changed x in place.*x.detach\\(\\)"),
        (changes_x_through_data, "changed x in place"),
        (requires_grad_on_x, "set requires_grad on the caller's x"),
        (random_start, "random start"),
        (random_start_with_numpy, "random start"),
        (lambda f, x, e, s, a: raise_by_autograd(f, x, e, s, a).numpy(), "return a torch tensor"),
        (lambda f, x, e, s, a: raise_by_autograd(f, x, e, s, a)[0], "of the input's shape"),
        (lambda f, x, e, s, a: raise_by_autograd(f, x, e, s, a) - x, "returned the perturbation"),
        (lambda f, x, e, s, a: None, "returned None"),
        (lambda f, x, e, s, a: raise_by_autograd(f, x[0], e, s, a), "shape"),
        (not_done, "not done yet"),
        (with_the_package_pgd, "write it yourself"),
        (helper_with_the_package, "write it yourself"),
        (imports_the_stress_module, "write it yourself"),
        (lambda f, x, e, s, a: stress.attack_scores(None, x, None, eps=e), "write it yourself"),
        (functools.partial(attacks.pgd), "write it yourself"),
    ],
)
def test_raise_score_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        checks.check_raise_score(wrong)


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
    checks.check_welch_interval(right)
    assert "✓" in capsys.readouterr().out


def test_the_welch_reference_agrees_with_scipy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.normal(85, 1, rng.integers(2, 12)), rng.normal(86, 3, rng.integers(2, 12))
        confidence = rng.uniform(0.5, 0.999)
        _, low, high = checks._welch_answers(a, b, confidence)["right"]
        assert np.allclose((low, high), stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence))


def test_every_welch_mistake_gives_its_own_answer():
    cases = checks._welch_cases()
    answers = [checks._welch_answers(a, b, c) for _, a, b, c in cases]
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
    from anomaly_edu import sweep

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
        checks.check_welch_interval(wrong)


def test_the_ttest_refusal_names_the_point():
    with pytest.raises(AssertionError, match="build the interval yourself"):
        checks.check_welch_interval(with_ttest_ind)


def test_watching_calls_gives_back_the_profiler():
    def profiler(frame, event, arg):
        return None

    sys.setprofile(profiler)
    try:
        with pytest.raises(AssertionError):
            checks.check_welch_interval(welch_variant(ddof=0))
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
    checks.check_decide(right)
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


def without_welch_interval(a, b, confidence=0.95):
    """Right decisions, but the interval computed again inside."""
    _, low, high = welch_by_hand(a, b, confidence)
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


def decide_with_ttest(a, b, confidence=0.95):
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    welch_interval(a, b, confidence)
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


def decide_with_the_package(a, b, confidence=0.95):
    from anomaly_edu import checks as package_checks

    _, low, high = package_checks._welch_answers(a, b, confidence)["right"]
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (means_only, "difference of the means alone"),
        (swapped, "swapped A and B"),
        (ignores_confidence, "pass the confidence on to welch_interval"),
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
        checks.check_decide(wrong)


def test_the_decide_cases_hold_every_kind_of_decision():
    """A, B and "cannot tell" each occur, a clear difference of the means with
    an interval that holds 0 among them, and one pair of runs whose decision
    changes with the confidence."""
    decisions = {}
    for description, a, b, confidence in checks._decide_cases():
        difference, low, high = checks._welch_answers(a, b, confidence)["right"]
        decisions[description] = decide_reference(a, b, confidence)
        if decisions[description] == "cannot tell" and "spread" in description:
            assert abs(difference) >= 2
    assert set(decisions.values()) == {"A", "B", "cannot tell"}
    by_runs = {}
    for description, a, b, _ in checks._decide_cases():
        by_runs.setdefault((tuple(a), tuple(b)), set()).add(decisions[description])
    assert any(len(found) > 1 for found in by_runs.values())


# ------------------------------------------------------------------ no hidden global state


def correct_answers():
    """For every Lecture 7 check, a call with a right answer."""
    return {
        "check_raise_score": lambda: checks.check_raise_score(raise_by_autograd),
        "check_welch_interval": lambda: checks.check_welch_interval(welch_by_hand),
        "check_decide": lambda: checks.check_decide(decide_reference),
    }


def test_every_lecture7_check_is_here():
    assert set(STRESS_CHECKS) == set(correct_answers())
    assert all(hasattr(checks, name) for name in STRESS_CHECKS)


def test_a_random_start_does_not_change_the_notebooks_random_numbers():
    """A wrong answer that draws from the global generators is still called
    with them seeded and given back: the notebook draws the same numbers next."""
    torch.rand(1), np.random.rand()
    before = global_random_state()
    with pytest.raises(AssertionError, match="random start"):
        checks.check_raise_score(random_start)
    with pytest.raises(AssertionError, match="random start"):
        checks.check_raise_score(random_start_with_numpy)
    assert global_random_state() == before


# ------------------------------------------------------------------ the notebooks


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_instructor_solutions_pass_their_checks(name, capsys):
    assert_the_instructor_solutions_pass_their_checks(name, capsys)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_student_version_is_current_and_has_the_stubs(name):
    assert_the_student_version_is_current_and_has_the_stubs(name)


def test_the_notebooks_grade_what_the_exercise_promises():
    """7a: raise_score for 6 points and the questions at the end for 4; 7b:
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
        "checks.check_raise_score(raise_score)": 6,
        "checks.check_welch_interval(welch_interval)": 6,
        "checks.check_decide(decide)": 2,
    }
    assert by_hand == {("ex07a_attack.ipynb", "think-about-it"): 4, ("ex07b_seeds.ipynb", "think-about-it"): 4}
