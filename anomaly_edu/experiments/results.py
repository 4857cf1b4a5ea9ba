"""Results files: where a number came from (provenance), and reading the stored
results that the lectures show (written whole or not at all: :mod:`anomaly_edu.data.files`).

A results file is a JSON object ``{"table", "metric", "results", "provenance"}``
written by ``python -m anomaly_edu reproduce ... --out FILE`` (or by a
benchmark); ``results/`` in the repository holds the stored ones. They ship
with the package: ``anomaly_edu/stored_results`` is a link to ``results/``, so
in a checkout (or an editable install) the lectures read ``results/`` itself,
and a wheel (``pip install``, as on Colab) carries a copy of its files, so a
lecture opened alone shows them too. Introduced in Lecture 1.
"""

from __future__ import annotations

__lecture__ = 1

import argparse
import datetime
import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.files import check_writable, write_json_atomically

# The stored results: in a checkout a link to the repository's results/ folder,
# in an installed package the copy of its files that the wheel carries.
STORED_RESULTS = Path(__file__).parents[1] / "stored_results"


def git_state() -> dict:
    """The commit of this checkout and whether the package has uncommitted
    changes (call it when a run starts). Lecture 1."""

    def git(*args):
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=10, cwd=Path(__file__).parents[1]
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD") or "unknown (not a git checkout)",
        "uncommitted_changes": bool(git("status", "--porcelain", "--", ".")),
    }


def same_code_at(commits: list[str], folder: str | Path = Path(__file__).parents[1]) -> bool | None:
    """Whether the files under ``folder`` (by default the package) are the same
    at every one of ``commits``: True, False, or None where git cannot tell (no
    git, not a checkout, or a commit this checkout does not have). Parts of a
    table made at different commits may be merged when the code that made them
    is the same. Lecture 4."""
    first, *others = commits
    for other in others:
        try:
            done = subprocess.run(
                ["git", "diff", "--quiet", first, other, "--", "."], capture_output=True, timeout=30, cwd=folder
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if done.returncode not in (0, 1):  # 128: not a repository, or an unknown commit
            return None
        if done.returncode == 1:
            return False
    return True


def describe_device(device) -> str:
    """A GPU's name, or the CPU's model and the number of threads torch uses. Lecture 1."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({cpu_name()}, {torch.get_num_threads()} threads)"


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux). Lecture 1."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(*, settings: dict, wall_time_s: float, device, git: dict | None = None) -> dict:
    """Where a result came from: commit, device (with its threads), the
    floating-point precision of the run, library versions, date, wall time and
    settings: what the reproduction report compares to pair only runs of one
    configuration. Pass ``git=git_state()`` taken when the run started.
    Lecture 1."""
    import sklearn
    import torch
    import torchvision

    return {
        **(git or git_state()),
        "device": describe_device(device),
        "precision": str(torch.get_default_dtype()).removeprefix("torch."),
        "versions": {
            "python": platform.python_version(),
            "anomaly_edu": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 1),
        "settings": settings,
    }


@dataclass(frozen=True)
class RunStart:
    """What a run's provenance needs from the moment it started: the clock and
    the commit (:func:`git_state`). Make one when the run starts
    (``run_start = RunStart()``), then hand it to :func:`with_provenance`. Lecture 1."""

    clock: float = field(default_factory=time.perf_counter)
    git: dict = field(default_factory=git_state)


def with_provenance(record: dict, *, start: RunStart, settings: dict, device, resumed: bool = False) -> dict:
    """``record`` with its :func:`provenance` added last, as ``"provenance"``:
    the settings, the device, and the wall time since ``start``. ``resumed``:
    the run went on from checkpoints, so the wall time counts its last session
    only (the provenance says so). Lecture 1."""
    prov = provenance(settings=settings, wall_time_s=time.perf_counter() - start.clock, device=device, git=start.git)
    if resumed:
        prov["resumed"] = True
    return {**record, "provenance": prov}


def write_with_provenance(record: dict, path: str | os.PathLike, *, start: RunStart, settings: dict, device) -> None:
    """Write :func:`with_provenance`'s record to the JSON file ``path``, whole
    or not at all (the benchmarks' ``--out``). Lecture 1."""
    write_json_atomically(with_provenance(record, start=start, settings=settings, device=device), path)


def check_out_option(parser: argparse.ArgumentParser, out: str | None) -> None:
    """Stop a benchmark's command line at once, with the parser's error, when its ``--out`` file could
    not be written after the run (nothing is created). Lecture 1."""
    if out:
        try:
            check_writable(out)
        except OSError as err:
            parser.error(str(err))


def read_stored(*names: str, folder: str | os.PathLike = STORED_RESULTS) -> dict | None:
    """The first of the stored results files ``names`` (e.g. "mnist_full.json",
    "mnist_full_cpu.json") that exists in ``folder``, read, with its file name
    added as ``"file"``; ``None``, after saying so, when none of them is there.
    The notebooks read every stored result through it. Lecture 1."""
    folder = Path(folder)
    for name in names:
        path = folder / name
        if path.is_file():
            try:
                return {**json.loads(path.read_text()), "file": name}
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not a results file (bad JSON: {err})") from None
    print(
        f"no stored result {' or '.join(names)} in {folder.resolve()}: make it with the command shown "
        f"above, then read it with results.read_stored({names[0]!r}, folder=<the folder of its --out>)"
    )
    return None


def describe_provenance(result: dict) -> str:
    """One line saying which commit made a stored result, on what, when and how
    long it took (hours for long runs). Lecture 1."""
    prov = result["provenance"]
    seconds = prov["wall_time_s"]
    took = (
        f"{seconds:.0f} s"
        if seconds < 600
        else f"{seconds / 60:.0f} min"
        if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )
    return (
        f"made by commit {prov['commit'][:10]} on {prov['device']}, {prov['date']}, in {took} of computing; "
        f"torch {prov['versions']['torch']}"
    )


def describe_budget_curve(curve: dict) -> str:
    """One line per method of a stored budget curve (``benchmarks/budget_curve.py``):
    its AUROC at the first and last number of epochs, its best, and the spread of
    its outputs at first (about 0: a constant function). Lectures 4 and 5."""
    lines = []
    for name, points in curve["results"].items():
        first, last = points[0], points[-1]
        best = max(points, key=lambda point: point["auroc"])
        lines.append(
            f"{name.upper():>9}: AUROC {first['auroc']:.1f} after {first['epochs']} epochs, "
            f"{last['auroc']:.1f} after {last['epochs']}; best {best['auroc']:.1f} after {best['epochs']}; "
            f"spread of its outputs at first {first['spread']:.4f}"
        )
    return "\n".join(lines)
