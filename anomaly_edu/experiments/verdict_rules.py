"""The rules of the reproduction report's verdicts (COURSE.md, "Verdicts"), for a claim decided on
at least 3 seeds of one configuration (threads, precision and machine kind in the provenance), the
same seeds and splits for the methods compared:

- "A beats B": the paired differences A - B over the seeds give a mean and a 95% t-interval; it
  **holds** when the interval lies above 0, **does not hold** when it lies at or below 0, and is
  **undecided** otherwise;
- "A reaches the talk's X": it **holds** when the interval reaches X; it **does not hold** only at
  the published budget; otherwise it is **undecided at this budget**.

Also the row they fill (``Claim``) and how a decisive run's compute is stated. The rows themselves
are made from the stored results by ``anomaly_edu.experiments.verdicts``.
"""

from __future__ import annotations

__lecture__ = 7

import math
from dataclasses import dataclass, field

HOLDS, DOES_NOT_HOLD, UNDECIDED = "holds", "does not hold", "undecided at this budget"
MIN_SEEDS = 3
# No GPU was measured for this page: a decisive run's GPU-hours assume a GPU this many times faster
# than one CPU thread of the machine that made the stored runs (an assumption, stated on the page)
ASSUMED_GPU_SPEEDUP = 20


@dataclass
class Interval:
    """A mean and its 95% t-interval over ``n`` values (no interval below 2 values)."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:  # a difference, signed
        return self.text("+.2f")

    def text(self, number_format: str = ".2f") -> str:
        """The interval as the page prints it, its numbers in ``number_format`` (signed for differences)."""
        if self.n < 2:
            return f"{self.mean:{number_format}} (1 run)"
        return f"{self.mean:{number_format}} [{self.low:{number_format}}, {self.high:{number_format}}], {self.n} seeds"


def t_interval(values: list[float], confidence: float = 0.95) -> Interval:
    """The mean of ``values`` and its two-sided t-interval. Reproduction report."""
    from scipy import stats

    n = len(values)
    if n == 0:
        raise ValueError("an interval needs at least one value")
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def beats(differences: list[float]) -> tuple[str, Interval]:
    """The verdict on "A beats B" from the paired differences A - B over seeds. Reproduction report."""
    interval = t_interval(differences)
    if interval.n < MIN_SEEDS:
        return UNDECIDED, interval
    if interval.low > 0:
        return HOLDS, interval
    return (DOES_NOT_HOLD if interval.high <= 0 else UNDECIDED), interval


def reaches(values: list[float], target: float, *, published_budget: bool) -> tuple[str, Interval]:
    """The verdict on "A reaches the talk's ``target``" from A's values over seeds. Reproduction report."""
    interval = t_interval(values)
    if interval.n < MIN_SEEDS:
        return UNDECIDED, interval
    if interval.high >= target:
        return HOLDS, interval
    return (DOES_NOT_HOLD if published_budget else UNDECIDED), interval


@dataclass
class Claim:
    """One row of the report: the talk's claim, its figure, our evidence and the verdict."""

    key: str
    claim: str
    talk: str
    ours: str
    verdict: str
    evidence: list[str] = field(default_factory=list)  # lines: baselines, budget, configuration, files
    hours: float = 0.0  # machine-hours of the stored runs behind the row
    to_decide: str = ""  # what a decisive run needs, with its command


def hours_needed(machine_hours: float) -> str:
    """A decisive run's compute: machine-hours as measured here, and GPU-hours at the assumed speed."""
    gpu = machine_hours / ASSUMED_GPU_SPEEDUP
    return f"about {machine_hours:.1f} machine-hours here, {gpu:.2f} GPU-hours at an assumed {ASSUMED_GPU_SPEEDUP}x"
