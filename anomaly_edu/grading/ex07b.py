"""Checks of Exercise 7b (Lecture 7): Welch's interval for the difference of
two methods' mean AUROC over seeds, and the decision it supports."""

from __future__ import annotations

__lecture__ = 7

import dis
import types

import numpy as np

from .machinery import call_watched, call_with_feedback, passed, refuse_the_package

_TTEST = (
    "the point is to build the interval yourself: the means, the standard error from the two sample variances, "
    "the Welch-Satterthwaite degrees of freedom and a t quantile (scipy.stats.t.ppf is fine)"
)


def _scipy_ttest(value) -> str | None:
    """The name of ``value`` when it is one of scipy's t-tests, else None."""
    value = getattr(value, "func", value)  # functools.partial
    name, module = getattr(value, "__name__", None), getattr(value, "__module__", None)
    if isinstance(name, str) and name.startswith("ttest") and str(module).startswith("scipy"):
        return name
    return None


def _ttest_names(fn, seen: set | None = None) -> list[str]:
    """The scipy t-tests (``ttest_ind``, ``ttest_rel``, ...) that ``fn``'s code
    names, in nested functions and in the functions of the same notebook it
    calls too: as attributes (``stats.ttest_ind``), imports, or globals that
    hold them."""
    seen = set() if seen is None else seen
    if _scipy_ttest(fn):
        return [_scipy_ttest(fn)]
    fn = getattr(fn, "func", fn)  # functools.partial
    fn = getattr(fn, "__func__", fn)  # a bound method
    if id(fn) in seen or not isinstance(fn, types.FunctionType):
        return []
    seen.add(id(fn))
    found = []
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
        for instruction in dis.get_instructions(code):
            name, operation = instruction.argval, instruction.opname
            if not isinstance(name, str):
                continue
            if operation in ("LOAD_ATTR", "LOAD_METHOD", "IMPORT_FROM") and name.startswith("ttest"):
                found.append(name)
            elif operation in ("LOAD_GLOBAL", "LOAD_NAME") and name in fn.__globals__:
                value = fn.__globals__[name]
                if _scipy_ttest(value):
                    found.append(_scipy_ttest(value))
                elif isinstance(value, types.FunctionType) and value.__globals__ is fn.__globals__:
                    found.extend(_ttest_names(value, seen))
    return found


def _call_watching_functions(task: str, fn, *args):
    """Call the student's function as :func:`call_student` does; return its result and
    the (module, name) of every Python function it called, found by watching
    the calls while it runs (``sys.setprofile``)."""

    called = set()

    def watch(frame, event, arg):
        if event == "call":
            called.add((frame.f_globals.get("__name__"), frame.f_code.co_name))

    return call_watched(task, watch, fn, *args), called


def _refuse_the_ttest(task: str, fn, called=()) -> None:
    """Fail when the student's function names or calls one of scipy's t-tests."""
    names = set(_ttest_names(fn))
    names |= {name for module, name in called if str(module).startswith("scipy") and name.startswith("ttest")}
    if names:
        raise AssertionError(f"{task}: your function uses scipy.stats.{', '.join(sorted(names))}; {_TTEST}")


def _welch_answers(a, b, confidence: float) -> dict[str, tuple[float, float, float]]:
    """(difference, low, high) for samples a and b: the Welch interval ("right")
    and each plausible mistake of :data:`_WELCH_MISTAKES`. Written with numpy and
    the t quantile, without scipy's t-test."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = a.size, b.size
    difference = a.mean() - b.mean()

    def interval(se, quantile, centre=difference):
        return float(centre), float(centre - quantile * se), float(centre + quantile * se)

    def welch(ddof=1, level=confidence):
        va, vb = a.var(ddof=ddof) / na, b.var(ddof=ddof) / nb
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        return np.sqrt(va + vb), df, stats.t.ppf((1 + level) / 2, df)

    se, df, quantile = welch()
    pooled = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    pooled_se = np.sqrt(pooled * (1 / na + 1 / nb))
    n = min(na, nb)  # pairs formed by zip(a, b), which drops the extra runs of the longer sample
    d = a[:n] - b[:n]
    right = interval(se, quantile)
    return {
        "right": right,
        "ddof 0": interval(*welch(ddof=0)[::2]),
        "pooled": interval(pooled_se, stats.t.ppf((1 + confidence) / 2, na + nb - 2)),
        "df n - 2": interval(se, stats.t.ppf((1 + confidence) / 2, na + nb - 2)),
        "normal": interval(se, stats.norm.ppf((1 + confidence) / 2)),
        "1.96": interval(se, 1.96),
        "paired": interval(d.std(ddof=1) / np.sqrt(n), stats.t.ppf((1 + confidence) / 2, n - 1), d.mean()),
        "std": interval(np.sqrt(a.var(ddof=1) + b.var(ddof=1)), quantile),
        "b - a": (-right[0], -right[2], -right[1]),
        "one-sided": interval(se, stats.t.ppf(confidence, df)),
        "0.95": interval(*welch(level=0.95)[::2]),
    }


_WELCH_MISTAKES = {
    "ddof 0": (
        "your variances divide by n (numpy's default, ddof=0): that is the population variance. From a sample, "
        "divide by n - 1: np.var(a, ddof=1)"
    ),
    "pooled": (
        "you pooled the two variances (Student's t-test, equal_var=True). The methods need not spread alike: "
        "keep each variance, se = sqrt(var_a / n_a + var_b / n_b), with the Welch-Satterthwaite degrees of freedom"
    ),
    "df n - 2": (
        "your standard error is Welch's, but your degrees of freedom are n_a + n_b - 2, which belong to the "
        "pooled t-test; use Welch-Satterthwaite: (va + vb)^2 / (va^2 / (n_a - 1) + vb^2 / (n_b - 1)) with "
        "va = var_a / n_a, vb = var_b / n_b"
    ),
    "normal": (
        "you used the normal quantile; with a few runs per method the t quantile is wider: "
        "scipy.stats.t.ppf((1 + confidence) / 2, df)"
    ),
    "1.96": (
        "you used 1.96, the normal quantile for 95% only; use the t quantile of the Welch degrees of freedom at "
        "the confidence asked for: scipy.stats.t.ppf((1 + confidence) / 2, df)"
    ),
    "paired": (
        "you paired run i of A with run i of B (a t-test on the differences). The runs are independent, not "
        "paired: on protocol 2 the split is fixed and the seed only changes each method's own initialisation and "
        "batches. Compare the two samples as they are, with the Welch interval"
    ),
    "std": (
        "your interval uses the standard deviations, not the standard error of the difference of the means: "
        "divide each variance by its number of runs, se = sqrt(var_a / n_a + var_b / n_b)"
    ),
    "b - a": (
        "your difference is mean(b) - mean(a); return mean(a) - mean(b), so that a positive difference means "
        "that A scores higher"
    ),
    "one-sided": (
        "your quantile is one-sided, t.ppf(confidence, df); a two-sided interval leaves (1 - confidence) / 2 "
        "out on each side: t.ppf((1 + confidence) / 2, df)"
    ),
    "0.95": "your interval is the 95% one whatever the confidence asked for; use the confidence argument",
}


def _welch_cases() -> list[tuple[str, object, object, float]]:
    """(description, a, b, confidence) of Exercises 7b.1's check: sizes and
    spreads that differ, sequences of several kinds; together they tell every
    mistake of :data:`_WELCH_MISTAKES` apart."""
    return [
        (
            "5 and 8 runs, the second spread wider, confidence 0.95",
            [86.1, 84.9, 85.7, 86.4, 85.2],
            np.array([83.0, 87.9, 81.2, 86.5, 84.4, 80.1, 85.8, 82.6]),
            0.95,
        ),
        (
            "6 and 6 runs, confidence 0.9",
            np.array([90.2, 91.5, 89.7, 92.3, 90.8, 91.1]),
            np.array([88.4, 91.0, 87.2, 90.1, 89.9, 86.8]),
            0.9,
        ),
        ("3 and 7 runs, confidence 0.99", (71.5, 75.2, 73.0), [70.1, 70.9, 69.4, 71.8, 70.5, 70.2, 71.1], 0.99),
        (
            "10 and 4 runs, confidence 0.8",
            np.linspace(60.0, 66.0, 10) + np.array([0.3, -0.2, 0.5, 0.0, -0.4, 0.1, 0.2, -0.3, 0.4, -0.1]),
            [64.5, 66.2, 61.7, 68.0],
            0.8,
        ),
    ]


def check_welch_interval(welch_interval) -> None:
    """Exercise 7b.1: ``welch_interval(a, b, confidence)`` returns ``(difference,
    low, high)``: mean(a) - mean(b) and its Welch confidence interval (sample
    variances, standard error sqrt(var_a/n_a + var_b/n_b), Welch-Satterthwaite
    degrees of freedom, t quantile at (1 + confidence) / 2), written without
    scipy's t-tests; the samples may differ in size."""
    from scipy import stats

    task = "Exercise 7b.1 (the Welch interval)"
    refuse_the_package(task, welch_interval)
    _refuse_the_ttest(task, welch_interval)
    outputs, cases = [], _welch_cases()
    for description, a, b, confidence in cases:
        where = f"for {description}:"
        a_in, b_in = (v.copy() if isinstance(v, np.ndarray) else v for v in (a, b))
        hint = "."
        if len(a) != len(b):
            hint += (
                f" The two methods may have different numbers of runs ({len(a)} and {len(b)}): the runs are "
                f"independent, not paired, so compute each mean and variance on its own sample"
            )
        result, called = call_with_feedback(
            task, where, hint, welch_interval, a_in, b_in, confidence, call=_call_watching_functions
        )
        _refuse_the_ttest(task, welch_interval, called)
        if not all(np.array_equal(u, v) for u, v in ((a_in, a), (b_in, b))):
            raise AssertionError(f"{task}: your function changed the samples it was given (sorted them?); leave them")
        if not (isinstance(result, (tuple, list, np.ndarray)) and len(result) == 3):
            raise AssertionError(f"{task}: return three numbers (difference, low, high), got {result!r}")
        try:
            got = tuple(float(v) for v in result)
        except (TypeError, ValueError):
            raise AssertionError(f"{task}: return three numbers (difference, low, high), got {result!r}") from None
        answers = _welch_answers(a, b, confidence)
        scipy_interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
        assert np.allclose(answers["right"][1:], scipy_interval, rtol=1e-9), "the check's reference is off"
        outputs.append((description, got, answers))

    def close(got, expected) -> bool:
        return bool(np.allclose(got, expected, rtol=1e-6, atol=1e-8))

    if all(close(got, answers["right"]) for _, got, answers in outputs):
        passed(task)
        return
    mistake = next((m for m in _WELCH_MISTAKES if all(close(g, answers[m]) for _, g, answers in outputs)), None)
    if mistake is not None:
        raise AssertionError(f"{task}: {_WELCH_MISTAKES[mistake]}")
    description, got, answers = next(o for o in outputs if not close(o[1], o[2]["right"]))
    expected = answers["right"]
    if close(got[0], expected[0]):
        hint = (
            "the difference is right but the interval is not: check the standard error, the degrees of freedom "
            "and the quantile"
        )
    else:
        hint = "the difference of the means is off: mean(a) - mean(b)"
    raise AssertionError(
        f"{task}: for {description}: expected (difference, low, high) = "
        f"({expected[0]:.4f}, {expected[1]:.4f}, {expected[2]:.4f}), got ({got[0]:.4f}, {got[1]:.4f}, "
        f"{got[2]:.4f}); {hint}"
    )


def _decide_cases() -> list[tuple[str, list, list, float]]:
    """(description, a, b, confidence) of Exercise 7b.2's check."""
    a = [90.1, 90.5, 89.8, 90.3, 90.0]
    b = [85.2, 85.9, 84.7, 85.5]
    wide = [95.0, 79.0, 93.0, 77.0, 91.0]  # mean 87, 2.5 above b_close's, but spread wide
    b_close = [84.0, 85.5, 83.5, 85.0]
    middling = [86.0, 87.5, 84.5, 88.0, 85.0]  # mean 86.2, a little above b_close's 84.5
    return [
        ("A clearly higher, little spread", a, b, 0.95),
        ("A half a point higher, runs close together", [86.0, 86.4, 86.1, 86.5, 86.2], [85.8, 85.5, 85.9, 85.6], 0.95),
        ("B clearly higher, little spread", b, a, 0.95),
        ("A's mean 2.5 points higher, but its runs spread from 77 to 95", wide, b_close, 0.95),
        ("B's mean 2.5 points higher, but its runs spread from 77 to 95", b_close, wide, 0.95),
        ("A a little higher, confidence 0.8", middling, b_close, 0.8),
        ("A a little higher (the same runs), confidence 0.99", middling, b_close, 0.99),
        # 3 runs each: the t quantile (2.78 at about 4 degrees of freedom) is far wider than the normal one
        # (1.96): the normal interval lies above 0, the t interval holds it
        ("A 1.4 points higher, 3 runs each", [86.0, 87.4, 86.5], [85.2, 85.9, 84.6], 0.95),
    ]


def _decision(low: float, high: float) -> str:
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


_DECIDE_MISTAKES = {
    "means only": (
        "you decided from the difference of the means alone. When the interval holds 0 the runs cannot tell the "
        'methods apart, however far apart the means are: "A" only when low > 0, "B" only when high < 0, '
        'else "cannot tell"'
    ),
    "swapped": (
        "you swapped A and B: the interval is for mean(a) - mean(b), so an interval above 0 means that A scores "
        'higher: return "A" then'
    ),
    "confidence": (
        "your decisions are those of the 95% interval whatever the confidence asked for: pass the confidence on "
        "to welch_interval"
    ),
    "normal": (
        "your decisions are those of an interval built with the normal quantile (z, 1.96 at 95%); with 3 runs "
        "per method the t quantile of the Welch degrees of freedom is much wider (2.78 here). Decide from the "
        "interval that welch_interval returns, as it is; if your welch_interval uses the normal quantile, fix it "
        "first"
    ),
    "wrong ends": (
        'you looked at the wrong ends of the interval: "A" needs the whole interval above 0, so its LOW end '
        'must be > 0; "B" needs its HIGH end < 0; an interval that holds 0 gives "cannot tell"'
    ),
}


def check_decide(decide) -> None:
    """Exercise 7b.2: ``decide(a, b, confidence)`` returns "A" when the whole Welch
    interval of mean(a) - mean(b) lies above 0, "B" when it lies below 0, and
    "cannot tell" otherwise; it calls the student's ``welch_interval``."""
    task = "Exercise 7b.2 (deciding from the interval)"
    refuse_the_package(task, decide)
    _refuse_the_ttest(task, decide)
    used_welch, outputs = False, []
    for description, a, b, confidence in _decide_cases():
        where = f"for {description} (A: {a}, B: {b}, confidence {confidence}):"
        got, called = call_with_feedback(
            task, where, "", decide, list(a), list(b), confidence, call=_call_watching_functions
        )
        _refuse_the_ttest(task, decide, called)
        used_welch = used_welch or any(name == "welch_interval" for _, name in called)
        if not (isinstance(got, str) and got in ("A", "B", "cannot tell")):
            raise AssertionError(f'{task}: return one of "A", "B" or "cannot tell", got {got!r}')
        difference, low, high = _welch_answers(a, b, confidence)["right"]
        answers = {
            "right": _decision(low, high),
            "means only": "A" if difference > 0 else "B" if difference < 0 else "cannot tell",
            "swapped": _decision(-high, -low),
            "confidence": _decision(*_welch_answers(a, b, 0.95)["right"][1:]),
            "normal": _decision(*_welch_answers(a, b, confidence)["normal"][1:]),
            "wrong ends": "A" if high > 0 else "B" if low < 0 else "cannot tell",
        }
        outputs.append((where, got, answers, (low, high, confidence)))
    wrong = [o for o in outputs if o[1] != o[2]["right"]]
    if not wrong:
        if not used_welch:
            raise AssertionError(
                f"{task}: your decisions are right, but decide does not call welch_interval; build it on your "
                f"welch_interval from Task 1 (one interval, one rule)"
            )
        passed(task)
        return
    where, got, answers, (low, high, confidence) = wrong[0]
    expected = answers["right"]
    detail = f'{where} expected "{expected}", got "{got}" (the {confidence:.0%} interval is [{low:.2f}, {high:.2f}])'
    mistake = next((m for m in _DECIDE_MISTAKES if all(o[1] == o[2][m] for o in outputs)), None)
    if mistake is not None:
        raise AssertionError(f"{task}: {detail}: {_DECIDE_MISTAKES[mistake]}")
    if used_welch:
        hint = (
            "your decide calls your welch_interval: if that one does not pass its check yet, fix it first. Then "
            'decide from the whole interval: "A" when low > 0, "B" when high < 0, else "cannot tell"'
        )
    else:
        hint = (
            'build decide on your welch_interval from Task 1, and decide from the whole interval: "A" when '
            'low > 0, "B" when high < 0, else "cannot tell"'
        )
    raise AssertionError(f"{task}: {detail}. {hint[0].upper()}{hint[1:]}")
