"""How scripts/build_course.py runs one notebook, and what a run reports.

Two ways to run, both writing the executed notebook to a target file, failed
or not (the traceback, or the drifted output, is in it):

- ``run_with_nbval``: the lectures and instructor versions in the quick profile.
  nbval (a pytest plugin) executes the notebook and compares each cell marked
  ``# NBVAL_CHECK_OUTPUT`` with its reference, within the cell's tolerance
  (nbval_tolerance.py); nbval_record.py keeps the run and says which cells
  failed and why. pytest runs in a process of its own: its capture of the
  standard streams is per process, and the build runs notebooks side by side.
- ``run_with_nbclient``: the student versions (an error stops the run unless
  its cell is tagged ``raises-exception``) and the full profile (which has no
  references). nbclient runs the notebook with its parameters set by
  ``with_parameters``, the build's own injection, done the way papermill does
  it (a cell tagged ``injected-parameters`` after the cell tagged ``parameters``).
  Not papermill.execute_notebook: it fails on any error output, even in a cell
  tagged ``raises-exception``, which the student versions have; and the build
  needs the notebook as it will run before the run, as jupyter-cache's key.

``RunCache`` keeps the runs that passed in jupyter-cache (build_course.py says why).

Nothing here knows where the course lies: the callers pass the paths.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

SCRIPTS = Path(__file__).resolve().parent
KERNEL = "python3"
REFERENCE_PROFILE = "quick"  # the profile nbval's references come from
# A cell nbval compares with its reference says so with this comment line, and a
# cell whose numbers come from training says how far they may move with the second.
NBVAL_MARKER = "# NBVAL_CHECK_OUTPUT"
NBVAL_TOLERANCE = "# NBVAL_TOLERANCE"
NBVAL_PLUGINS = (
    "nbval_record",  # nbval_record.py: keeps the run nbval checked, and its failures
    "nbval_tolerance",  # nbval_tolerance.py: numbers compared within a cell's tolerance
)
# What a marked cell may print differently from its reference (nbval's sanitizer
# files): a plotly figure's random id; on a GPU, which sums in another order
# than the CPU the references come from, every decimal fraction too.
SANITIZER = SCRIPTS / "nbval_sanitize.cfg"
GPU_SANITIZER = SCRIPTS / "nbval_gpu_sanitize.cfg"
INJECTED_TAG = "injected-parameters"  # papermill's tag, which the book hides


class BuildError(RuntimeError):
    """A step failed; the message says which and why."""


class OutputsDiffer(BuildError):
    """A notebook ran without an error, but some marked cells printed other
    outputs than their references, beyond their tolerance (``differences``:
    one line per cell, stored against now)."""

    def __init__(self, message: str, differences: list[str]):
        super().__init__(message)
        self.differences = differences


def is_marked(cell: NotebookNode) -> bool:
    """Whether nbval compares this cell's output: its marker is a comment line of
    its own (nbval ignores one at the end of a code line)."""
    return cell.cell_type == "code" and NBVAL_MARKER in (line.strip() for line in cell.source.splitlines())


def unmarked(source: str) -> str:
    """A cell's code without its marker and tolerance lines (adding them changes
    nothing the cell prints)."""
    return "\n".join(
        line
        for line in source.splitlines()
        if line.strip() != NBVAL_MARKER and not line.strip().startswith(NBVAL_TOLERANCE)
    )


def references_digest(nb: NotebookNode) -> str:
    """sha256 of a notebook's nbval references (its marked cells' outputs): a run
    is checked against them, and jupyter-cache does not hash outputs."""
    outputs = [cell.outputs for cell in nb.cells if is_marked(cell)]
    return hashlib.sha256(json.dumps(outputs, sort_keys=True).encode()).hexdigest()


# --- nbclient ------------------------------------------------------------------
def with_parameters(nb: NotebookNode, profile: str) -> NotebookNode:
    """A copy of the notebook with a cell setting PROFILE after its cell tagged
    ``parameters`` (first, without one), tagged as papermill tags it. The cell's
    id is fixed, so that the notebook as it runs is the same at every build."""
    nb = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(f"# Parameters\nPROFILE = {profile!r}\n", metadata={"tags": [INJECTED_TAG]})
    cell.id = INJECTED_TAG
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    nb.cells.insert(tagged[0] + 1 if tagged else 0, cell)
    return nb


def execute_with_nbclient(nb: NotebookNode, folder: Path, target: Path, timeout: int) -> None:
    """Execute the notebook in ``folder`` with nbclient, writing it to ``target``
    on failure too (the traceback is in it). An error stops the run unless its
    cell is tagged ``raises-exception``. No timing metadata is added to the cells:
    jupyter-cache hashes their metadata."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL, record_timing=False)
    try:
        client.execute(cwd=str(folder))
    finally:
        nbformat.write(nb, target)


def run_with_nbclient(source: Path, target: Path, profile: str, timeout: int) -> None:
    """Execute a notebook file with its profile set (see with_parameters)."""
    nb = with_parameters(nbformat.read(source, as_version=4), profile)
    execute_with_nbclient(nb, source.parent, target, timeout)


@contextlib.contextmanager
def kernel_environment(package_root: Path, threads: int | None = None) -> Iterator[None]:
    """Let the kernels import the package under ``package_root`` (the code the
    build's stamp hashes) before any installed copy, and, with ``threads``, compute with that
    many threads (OMP_NUM_THREADS, MKL_NUM_THREADS). Every other variable,
    ANOMALY_EDU_DATA included, passes through untouched."""
    names = ["PYTHONPATH"] + (["OMP_NUM_THREADS", "MKL_NUM_THREADS"] if threads is not None else [])
    old = {name: os.environ.get(name) for name in names}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package_root), old["PYTHONPATH"]]))
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- nbval -----------------------------------------------------------------------
def run_with_nbval(source: Path, target: Path, profile: str, timeout: int, name: str | None = None) -> None:
    """Execute with nbval, in lax mode: no cell may fail, and the marked cells
    must print their references (nbval prints the difference otherwise, and this
    prints nbval's report). nbval_record writes what ran to ``target``, failed
    or not, with the failed cells; OutputsDiffer when only marked outputs were
    off, BuildError for any other failure. ``name``: the notebook in the report."""
    import torch

    if profile != REFERENCE_PROFILE:
        raise BuildError(f"nbval's references are from the {REFERENCE_PROFILE} profile, not {profile!r}")
    command = [
        *(sys.executable, "-m", "pytest", str(source), "--nbval-lax"),
        *(option for plugin in NBVAL_PLUGINS for option in ("-p", plugin)),
        *(f"--record-to={target}", f"--nbval-kernel-name={KERNEL}", f"--nbval-cell-timeout={timeout}"),
        *("-p", "no:cacheprovider", "-q", "--color=no"),
        f"--nbval-sanitize-with={GPU_SANITIZER if torch.cuda.is_available() else SANITIZER}",
    ]
    path = os.pathsep.join(filter(None, [str(SCRIPTS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    run = subprocess.run(command, cwd=source.parent, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout + run.stderr, flush=True)  # nbval's report: the failed cells and each difference
        raise nbval_failure(source, target, run.returncode, name or str(source))


def nbval_failure(source: Path, target: Path, returncode: int, name: str) -> BuildError:
    """The error for a failed nbval run, from what nbval_record recorded: the cells
    and why; OutputsDiffer when every problem was a marked output off its reference."""
    from nbval_record import OUTPUTS_DIFFER, cell_problems

    problems = cell_problems(nbformat.read(target, as_version=4)) if target.is_file() else {}
    if not problems:
        return BuildError(f"nbval: the run failed before any cell did (pytest's exit code {returncode}; see above)")
    message = "nbval: " + "; ".join(f"code cell {number}: {why}" for number, why in problems.items())
    if all(why.startswith(OUTPUTS_DIFFER) for why in problems.values()):
        return OutputsDiffer(message, output_differences(source, target, problems, name))
    return BuildError(message)


def output_texts(cell: NotebookNode) -> list[str]:
    """The lines a cell printed: its streams and the plain text of its results."""
    texts = [output.get("text", "") or output.get("data", {}).get("text/plain", "") for output in cell.outputs]
    return [line for text in texts for line in text.splitlines() if line.strip()]


def output_differences(source: Path, run: Path, problems: dict[int, str], name: str) -> list[str]:
    """One line per marked cell whose outputs differed in the run: its number,
    the first line it printed differently, stored against now, and the numbers
    out of their tolerance if that was why."""
    from nbval_record import OUTPUTS_DIFFER

    ran = [cell for cell in nbformat.read(run, as_version=4).cells if cell.cell_type == "code"]
    stored = [cell for cell in nbformat.read(source, as_version=4).cells if cell.cell_type == "code"]
    lines = []
    for number, problem in problems.items():
        pairs = itertools.zip_longest(output_texts(stored[number]), output_texts(ran[number]), fillvalue="")
        before, now = next(((a, b) for a, b in pairs if a != b), ("", ""))
        beyond = problem.removeprefix(OUTPUTS_DIFFER).removeprefix(": ")
        lines.append(f"{name}, code cell {number}: stored {before!r}, now {now!r}" + (f"; {beyond}" if beyond else ""))
    return lines


def slowest_check_cell(executed: NotebookNode) -> float | None:
    """The longest running time of a graded check cell (nbgrader's ``grade``) in
    a run, from the times nbval_record keeps; None without any."""
    from nbval_record import cell_seconds

    seconds = cell_seconds(executed)
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    graded = [n for n, cell in enumerate(code) if cell.metadata.get("nbgrader", {}).get("grade")]
    times = [seconds[n] for n in graded if n in seconds]
    return max(times) if times else None


def error_summary(error: BaseException) -> str:
    """One line about a failed notebook: the exception raised inside it if known."""
    if getattr(error, "ename", None):  # nbclient's execution errors
        return f"{error.ename}: {(error.evalue or '').strip()}"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


# --- references ------------------------------------------------------------------
def sanitizer_rules(path: Path = SANITIZER) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of an nbval sanitizer file."""
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", path.read_text(), flags=re.MULTILINE)


def sanitized(outputs: list) -> list:
    """Outputs with every text put through the sanitizer's rules, as nbval compares them."""
    rules = sanitizer_rules()

    def clean(text: str) -> str:
        for regex, replacement in rules:
            text = re.sub(regex, replacement, text)
        return text

    for output in outputs:
        if "text" in output:
            output.text = clean(output.text)
        for mime, value in output.get("data", {}).items():
            if isinstance(value, str):
                output.data[mime] = clean(value)
    return outputs


def with_references(source: NotebookNode, last_run: NotebookNode, name: str) -> NotebookNode:
    """The notebook with the outputs of its marked cells in ``last_run`` stored as
    nbval's references (sanitized), and no output in any other cell."""
    ran = {unmarked(cell.source): cell for cell in last_run.cells if cell.cell_type == "code"}
    source = copy.deepcopy(source)
    for cell in source.cells:
        if cell.cell_type != "code":
            continue
        if not is_marked(cell):
            cell.outputs, cell.execution_count = [], None
        elif unmarked(cell.source) not in ran:
            raise BuildError(f"references: a marked cell of {name} changed since its last run; execute it")
        else:
            run = ran[unmarked(cell.source)]
            cell.outputs, cell.execution_count = sanitized(run.outputs), run.execution_count
    return source


# --- the cache of runs -------------------------------------------------------------
@dataclass
class Job:
    """One notebook to execute: ``nb`` is the notebook as it runs (jupyter-cache's
    key); ``stamp`` covers what that key does not (the package and other inputs
    the code reads, the profile, the references)."""

    notebook: Path  # as the statistics name it
    student: bool
    profile: str
    nb: NotebookNode
    stamp: str

    @property
    def checked(self) -> bool:
        """Whether nbval runs it (checked against the references)."""
        return not self.student and self.profile == REFERENCE_PROFILE

    @property
    def kind(self) -> str:
        """How it is executed, for the run statistics."""
        return "student version (nbclient)" if self.student else "nbval" if self.checked else "nbclient"


class RunCache:
    """jupyter-cache's cache of the runs that passed, with each run's record as
    its data; used from the build's threads one at a time (its database is one
    SQLite file)."""

    def __init__(self, path: Path):
        from jupyter_cache import get_cache

        self.cache, self.lock = get_cache(path), threading.Lock()

    def record(self, job: Job) -> dict | None:
        """The record of the job's cached run; None without one, or when its stamp differs."""
        with self.lock:
            try:
                data = self.cache.match_cache_notebook(job.nb).data or {}
            except KeyError:
                return None
        return data if data.get("stamp") == job.stamp else None

    def store(self, job: Job, executed: Path, record: dict) -> None:
        """Cache an executed notebook with its record, unless the notebook changed
        while it ran (its code is not the job's then; the next build runs it again)."""
        with self.lock:
            ran = nbformat.read(executed, as_version=4)
            if self.cache.create_hashed_notebook(ran)[1] == self.cache.create_hashed_notebook(job.nb)[1]:
                uri = job.notebook.as_posix()
                self.cache.cache_notebook_file(str(executed), uri, data=record, check_validity=False, overwrite=True)

    def restore(self, job: Job, target: Path) -> None:
        """Write the cached run to ``target``: its outputs in the notebook as it is
        now (its markdown may have changed). A file already the same is left alone."""
        with self.lock:
            _, nb = self.cache.merge_match_into_notebook(job.nb, nb_meta=None)
        text = nbformat.writes(nb) + "\n"  # as nbformat.write ends a file
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
