#!/usr/bin/env python
"""Build the anomaly-edu course: offline assets, executed notebooks, the HTML book.

Run it from anywhere with the project's virtual environment::

    python scripts/build_course.py assets                 # MathJax, require.js, widget manager
    python scripts/build_course.py execute [--profile quick|full] [--force]
    python scripts/build_course.py book    [--profile quick|full] [--force]
    python scripts/build_course.py references [NOTEBOOK ...]  # after a deliberate change

``book`` runs ``assets`` and ``execute`` first, then builds the HTML into
``_build/html/`` from the executed copies (Jupyter Book does not execute anything).
``execute`` fails when a marked output differs from its reference beyond the
cell's tolerance (scripts/nbval_tolerance.py); ``book`` builds the HTML all the
same, lists those cells at the end and exits with 0, or with 1 when a notebook
raised an error (its page stops there).

Each step is also a function (``fetch_assets``, ``execute_notebooks``,
``build_book``) so that the tests can call them.

Adding a lecture or an exercise needs no change here: every notebook that matches
``EXECUTE_CHECKED`` or ``EXECUTE_AS_STUDENT`` is executed; list the new page
in ``_toc.yml`` so that the book shows it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, before any installed copy
sys.path.insert(1, str(Path(__file__).resolve().parent))  # the nbval plugins beside this script
from anomaly_edu.data.files import write_json_atomically  # noqa: E402
from anomaly_edu.experiments.results import cpu_name  # noqa: E402

BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"
STATISTICS = EXECUTED / "run_statistics.json"
BOOK_SRC = BUILD / "book_src"  # staged copy of the book's sources
JB_OUT = BUILD / "jupyter_book"  # where jupyter-book writes (it adds _build/html)
HTML = BUILD / "html"  # the finished book

# --- offline assets --------------------------------------------------------
# The versions are pinned in book/assets/package.json and its lock file.
NPM_MANIFEST = ROOT / "book" / "assets"
NPM_PREFIX = BUILD / "npm"
# Not `_static`: Jupyter Book would add every script found there to every page.
ASSETS = ROOT / "book" / "_offline_assets"
# target folder in ASSETS -> (folder in node_modules, files or folders to copy)
ASSET_FILES = {
    "mathjax": (
        "mathjax/es5",
        [
            "tex-chtml.js",  # the component Sphinx loads
            "output/chtml/fonts",  # fonts of the CHTML output
            "input/tex/extensions",  # TeX packages loaded on demand (\require, autoload)
            "ui",
            "a11y",
            "sre",  # context menu and accessibility, loaded on demand
        ],
    ),
    "requirejs": ("requirejs", ["require.js"]),
    "html-manager": ("@jupyter-widgets/html-manager/dist", ["embed-amd.js"]),
}
# The assets count as present when these files exist and the lock file is the
# one they were installed from (a dot file: Sphinx does not publish it).
ASSET_MARKERS = ["mathjax/tex-chtml.js", "requirejs/require.js", "html-manager/embed-amd.js"]
ASSET_LOCK_STAMP = ".package-lock.sha256"

# --- execution ---------------------------------------------------------------
# Lectures and instructor versions of the exercises: no errors allowed. In the
# quick profile nbval executes them, and each cell marked with the comment line
# `# NBVAL_CHECK_OUTPUT` must print what its reference (the output stored with
# it in the notebook, see store_references) shows. Other profiles have no
# references: papermill executes them.
EXECUTE_CHECKED = ["lectures/*.ipynb", "exercises/solutions/*.ipynb"]
REFERENCE_PROFILE = "quick"
NBVAL_MARKER = "# NBVAL_CHECK_OUTPUT"
NBVAL_PLUGINS = (
    "nbval_record",  # scripts/nbval_record.py: keeps the run nbval checked
    "nbval_tolerance",  # scripts/nbval_tolerance.py: numbers compared within a cell's tolerance
)
# A marked cell whose numbers come from training says how far they may move
# across machines with this comment line (the kinds: nbval_tolerance.TOLERANCES).
NBVAL_TOLERANCE = "# NBVAL_TOLERANCE"
# What a marked cell may print differently from its reference (nbval's sanitizer
# files): a plotly figure's random id; on a GPU, which sums in another order
# than the CPU the references come from, every decimal fraction too.
SANITIZER = ROOT / "scripts" / "nbval_sanitize.cfg"
GPU_SANITIZER = ROOT / "scripts" / "nbval_gpu_sanitize.cfg"
# Student versions: their stubs raise NotImplementedError, so errors are allowed,
# but only in cells tagged `raises-exception`. Papermill (2.7) fails on any error
# output, tagged or not, so these run with nbclient directly.
EXECUTE_AS_STUDENT = ["exercises/*.ipynb"]
KERNEL = "python3"
BUILD_JOBS_VAR = "ANOMALY_EDU_BUILD_JOBS"  # how many notebooks run at once (default: one per core)
CELL_TIMEOUT_S = 3600  # generous: a full-profile cell on a CPU can take long
PROFILES = ("quick", "full")

# --- book ----------------------------------------------------------------------
BOOK_FILES = ["_config.yml", "_toc.yml"]
BOOK_DIR = "book"
BOOK_EXECUTED = ["lectures/*.ipynb"]  # shown with their papermill outputs
BOOK_WITHOUT_OUTPUTS = ["exercises/*.ipynb"]  # shown as handed out; solutions not at all
STATISTICS_MARKER = "<!-- RUN_STATISTICS_TABLE -->"
# The notebooks' "Open in Colab" badge is an image on Google's server. The book
# must load nothing from the network, so its pages show a local drawing instead.
REMOTE_COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_COLAB_BADGE = "book/images/open-in-colab.svg"
# plotly's notebook renderer embeds all of plotly.js (about 5 MB) in each notebook
# that shows a figure. The book serves one copy instead, taken from the installed
# plotly package (the version that drew the figures), and its pages load that copy.
# plotly.js sets window.Plotly and never calls require.js's `define`.
PLOTLY_JS = "plotly/plotly.min.js"  # in the offline assets, so in _static/ too


class BuildError(RuntimeError):
    """A step failed; the message says which and why."""


class OutputsDiffer(BuildError):
    """A notebook ran without an error, but some marked cells printed other
    outputs than their references, beyond their tolerance (``differences``:
    one line per cell, stored against now)."""

    def __init__(self, message: str, differences: list[str]):
        super().__init__(message)
        self.differences = differences


def log(message: str) -> None:
    print(message, flush=True)


# =============================================================================
# assets
# =============================================================================
def lock_digest() -> str:
    return hashlib.sha256((NPM_MANIFEST / "package-lock.json").read_bytes()).hexdigest()


def assets_present() -> bool:
    stamp_file = ASSETS / ASSET_LOCK_STAMP
    return (
        all((ASSETS / marker).is_file() for marker in ASSET_MARKERS)
        and stamp_file.is_file()
        and stamp_file.read_text().strip() == lock_digest()
    )


def fetch_assets(force: bool = False) -> Path:
    """Install the pinned npm packages and copy the needed files into ASSETS."""
    if assets_present() and not force:
        log(f"assets: present in {ASSETS.relative_to(ROOT)}, skipping npm")
        return ASSETS
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("assets: `npm` not found; install Node.js and npm (Debian: apt-get install nodejs npm)")
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy2(NPM_MANIFEST / name, NPM_PREFIX / name)
    command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(NPM_PREFIX)]
    log("assets: " + " ".join(command[1:]))
    result = subprocess.run(command, cwd=NPM_PREFIX)
    if result.returncode != 0:
        raise BuildError(f"assets: npm ci failed (exit code {result.returncode})")

    # Copy into a temporary folder, then swap it in, so that a failed copy
    # never leaves a half-filled ASSETS folder behind.
    staging = BUILD / "offline_assets.partial"
    shutil.rmtree(staging, ignore_errors=True)
    modules = NPM_PREFIX / "node_modules"
    for target, (source, parts) in ASSET_FILES.items():
        for part in parts:
            src = modules / source / part
            dst = staging / target / part
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst)
            else:
                shutil.copy2(src, dst)
    (staging / ASSET_LOCK_STAMP).write_text(lock_digest() + "\n")
    shutil.rmtree(ASSETS, ignore_errors=True)
    staging.rename(ASSETS)
    size_mb = sum(f.stat().st_size for f in ASSETS.rglob("*") if f.is_file()) / 1e6
    log(f"assets: copied {size_mb:.1f} MB into {ASSETS.relative_to(ROOT)}")
    return ASSETS


# =============================================================================
# execute
# =============================================================================
def find_notebooks(patterns: list[str]) -> list[Path]:
    """Notebooks matching the glob patterns, relative to ROOT, sorted."""
    found = set()
    for pattern in patterns:
        for path in ROOT.glob(pattern):
            if ".ipynb_checkpoints" not in path.parts:
                found.add(path.relative_to(ROOT))
    return sorted(found)


def files_under(folder: str) -> list[Path]:
    """Every file under ROOT/folder, sorted, without Python's caches."""
    return sorted(
        p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def stamp_inputs(notebook: Path) -> list[Path]:
    """Every file a notebook's outputs can depend on: the notebook itself, the
    package (its paper_tables/ included), the stored results and models it may
    show, and the pinned environment it runs in."""
    return [
        ROOT / notebook,
        *files_under("anomaly_edu"),
        *files_under("results"),
        *files_under("models"),
        ROOT / "requirements-ci.txt",
        ROOT / "pyproject.toml",
    ]


def stamp(notebook: Path, profile: str) -> str:
    """sha256 of the stamp's inputs (names and contents) and the profile: the
    executed copy is reused only while this is unchanged."""
    digest = hashlib.sha256()
    for path in stamp_inputs(notebook):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    digest.update(profile.encode())
    return digest.hexdigest()


def executed_path(notebook: Path) -> Path:
    return EXECUTED / notebook


def failed_path(notebook: Path) -> Path:
    """Where the run of a notebook that failed is kept, to be looked at."""
    target = executed_path(notebook)
    return target.with_name(f"{target.stem}.failed.ipynb")


def record_path(notebook: Path) -> Path:
    """What the last successful run of a notebook recorded: stamp, wall time, date."""
    return EXECUTED / (notebook.as_posix() + ".run.json")


def up_to_date_record(notebook: Path, profile: str) -> dict | None:
    """The last run's record if the executed copy is up to date, else None."""
    record_file = record_path(notebook)
    if not (executed_path(notebook).is_file() and record_file.is_file()):
        return None
    try:
        record = json.loads(record_file.read_text())
    except ValueError:
        return None
    return record if record.get("stamp") == stamp(notebook, profile) else None


@contextlib.contextmanager
def kernel_environment(threads: int | None = None):
    """Let the kernels import this checkout's `anomaly_edu` (the code the stamp
    hashes) before any installed copy, and, with ``threads``, compute with that
    many threads (OMP_NUM_THREADS, MKL_NUM_THREADS). Every other variable,
    ANOMALY_EDU_DATA included, passes through untouched."""
    names = ["PYTHONPATH"] + (["OMP_NUM_THREADS", "MKL_NUM_THREADS"] if threads is not None else [])
    old = {name: os.environ.get(name) for name in names}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), old["PYTHONPATH"]]))
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


def cpu_cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity
        return os.cpu_count() or 1


def notebooks_at_once() -> int:
    """How many notebooks the build executes side by side: $ANOMALY_EDU_BUILD_JOBS,
    else one per CPU core (at most four), and one at a time on a GPU machine
    (its notebooks share the GPU). Two notebooks on two cores, one thread each,
    finish sooner than the same two one after the other on two threads each, as
    small models use a second thread poorly; the nbval references hold at any
    thread count (tests/test_nbval_tolerance.py runs one thread)."""
    given = os.environ.get(BUILD_JOBS_VAR)
    if given:
        if not given.isdigit() or int(given) < 1:
            raise BuildError(f"{BUILD_JOBS_VAR} must be a positive whole number of notebooks, got {given!r}")
        return int(given)
    import torch

    return 1 if torch.cuda.is_available() else max(1, min(cpu_cores(), 4))


def run_with_papermill(source: Path, target: Path, profile: str, timeout: int) -> None:
    import papermill

    papermill.execute_notebook(
        str(source),
        str(target),
        parameters={"PROFILE": profile},
        kernel_name=KERNEL,
        cwd=str(source.parent),
        execution_timeout=timeout,
        progress_bar=False,
    )


def is_marked(cell) -> bool:
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


def run_with_nbval(source: Path, target: Path, profile: str, timeout: int) -> None:
    """Execute with nbval, in lax mode: no cell may fail, and the marked cells
    must print their references (nbval prints the difference otherwise).
    scripts/nbval_record.py writes what ran to ``target``, failed or not."""
    import torch

    if profile != REFERENCE_PROFILE:
        raise BuildError(f"nbval's references are from the {REFERENCE_PROFILE} profile, not {profile!r}")
    command = [
        *(sys.executable, "-m", "pytest", str(source), "--nbval-lax"),
        *(option for plugin in NBVAL_PLUGINS for option in ("-p", plugin)),
        *(f"--record-to={target}", f"--nbval-kernel-name={KERNEL}", f"--nbval-cell-timeout={timeout}"),
        *("-p", "no:cacheprovider", "-q", "-rf", "--color=no"),
        f"--nbval-sanitize-with={GPU_SANITIZER if torch.cuda.is_available() else SANITIZER}",
    ]
    scripts = os.pathsep.join(filter(None, [str(ROOT / "scripts"), os.environ.get("PYTHONPATH")]))
    run = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": scripts}, capture_output=True, text=True)
    if run.returncode != 0:
        log(run.stdout + run.stderr)  # nbval's report: the failed cells and each difference
        failed = [line.split(" - ")[0].split("::")[-1] for line in run.stdout.splitlines() if line.startswith("FAILED")]
        message = f"nbval: {', '.join(failed) or 'the run'} failed (the report is printed above)"
        differences = output_differences(source, target)
        if differences is not None:
            raise OutputsDiffer(message, differences)
        raise BuildError(message)


def output_texts(cell) -> list[str]:
    """The lines a cell printed: its streams and the plain text of its results."""
    texts = [output.get("text", "") or output.get("data", {}).get("text/plain", "") for output in cell.outputs]
    return [line for text in texts for line in text.splitlines() if line.strip()]


def output_differences(source: Path, run: Path) -> list[str] | None:
    """One line per marked cell whose outputs differed in this run: its number,
    the first line it printed differently, stored against now, and the numbers
    out of their tolerance if that was why. None when a cell failed for another
    reason (an error, a time-out), or the run left no notebook: that is not drift."""
    import nbformat
    from nbval_record import OUTPUTS_DIFFER, PROBLEM_KEY

    if not run.is_file():
        return None
    ran = [cell for cell in nbformat.read(run, as_version=4).cells if cell.cell_type == "code"]
    stored = [cell for cell in nbformat.read(source, as_version=4).cells if cell.cell_type == "code"]
    problems = {number: cell.metadata[PROBLEM_KEY] for number, cell in enumerate(ran) if PROBLEM_KEY in cell.metadata}
    if not problems or not all(problem.startswith(OUTPUTS_DIFFER) for problem in problems.values()):
        return None
    name = source.relative_to(ROOT) if source.is_relative_to(ROOT) else source
    lines = []
    for number, problem in problems.items():
        pairs = itertools.zip_longest(output_texts(stored[number]), output_texts(ran[number]), fillvalue="")
        before, now = next(((a, b) for a, b in pairs if a != b), ("", ""))
        beyond = problem.removeprefix(OUTPUTS_DIFFER).removeprefix(": ")
        lines.append(f"{name}, code cell {number}: stored {before!r}, now {now!r}" + (f"; {beyond}" if beyond else ""))
    return lines


def run_as_student(source: Path, target: Path, profile: str, timeout: int) -> None:
    """Execute with nbclient: an error stops the run unless its cell is tagged
    `raises-exception`. Parameters are injected the way papermill does it."""
    import nbformat
    from nbclient import NotebookClient
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(source))  # papermill's reader: adds the metadata it needs
    nb = parameterize_notebook(nb, {"PROFILE": profile}, kernel_name=KERNEL)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(source.parent)}}
    )
    try:
        client.execute()
    finally:  # on failure too, like papermill: the traceback is in the notebook
        nbformat.write(nb, target)


def execute_notebook(notebook: Path, profile: str, student: bool, timeout: int = CELL_TIMEOUT_S) -> dict:
    """Execute one notebook into EXECUTED and return the record of the run.

    The result goes to a temporary file that is renamed only on success, so a
    failed or interrupted run never leaves a half-written executed copy. After
    a failure the old executed copy is removed too (it no longer matches the
    source), and the failed run's notebook is kept as ``<name>.failed.ipynb``.
    """
    source, target = ROOT / notebook, executed_path(notebook)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial.ipynb")
    failed = failed_path(notebook)
    checked = not student and profile == REFERENCE_PROFILE
    run = run_as_student if student else run_with_nbval if checked else run_with_papermill
    # The stamp of the sources as they are now, before the run: if they change
    # while the notebook runs, the next build sees the copy as out of date.
    source_stamp = stamp(notebook, profile)
    start = time.perf_counter()
    try:
        run(source, partial, profile, timeout)
    except BaseException:
        target.unlink(missing_ok=True)
        record_path(notebook).unlink(missing_ok=True)
        if partial.exists():
            os.replace(partial, failed)
        raise
    wall = time.perf_counter() - start
    os.replace(partial, target)
    failed.unlink(missing_ok=True)
    record = {
        "stamp": source_stamp,
        "profile": profile,
        "wall_s": round(wall, 1),
        "executed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "kind": kind_of_run(profile, student),
    }
    slowest = slowest_check_cell(target)
    if slowest is not None:
        record["slowest_check_s"] = slowest
    write_json_atomically(record, record_path(notebook))
    return record


def kind_of_run(profile: str, student: bool) -> str:
    """How a notebook is executed, for the run statistics."""
    return "student version (nbclient)" if student else "nbval" if profile == REFERENCE_PROFILE else "papermill"


def slowest_check_cell(executed: Path) -> float | None:
    """The longest running time of a graded check cell (nbgrader's ``grade``) in
    an executed notebook, from the times nbval_record keeps; None without any."""
    import nbformat

    times = [
        cell.metadata["wall_s"]
        for cell in nbformat.read(executed, as_version=4).cells
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade") and "wall_s" in cell.metadata
    ]
    return max(times) if times else None


def machine_description() -> dict:
    """Python, torch, CPU and GPU of this machine, for the run statistics."""
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def error_summary(error: Exception) -> str:
    """One line about a failed notebook: the exception raised inside it if known."""
    if getattr(error, "ename", None):  # papermill's and nbclient's execution errors
        return f"{error.ename}: {(error.evalue or '').strip()}"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def execute_notebooks(
    profile: str = "quick", force: bool = False, timeout: int = CELL_TIMEOUT_S, strict: bool = True
) -> dict:
    """Execute every lecture and exercise notebook that is not up to date.

    Runs them all even when one fails. Returns the run statistics, also saved
    to STATISTICS, with each notebook's outcome: "passed", or why not. When
    ``strict`` (``make test``, ``execute``), any failure raises BuildError at the
    end, naming the failures. When not (``make book``), nothing is raised: the
    book is built from what ran, and build_book reports the failures.
    """
    if profile not in PROFILES:
        raise BuildError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    jobs = [(nb, False) for nb in find_notebooks(EXECUTE_CHECKED)] + [
        (nb, True) for nb in find_notebooks(EXECUTE_AS_STUDENT)
    ]
    # the lectures, the longest runs, start first: the short exercises then fill the end evenly
    jobs.sort(key=lambda job: not job[0].as_posix().startswith("lectures/"))
    EXECUTED.mkdir(parents=True, exist_ok=True)
    statistics = {
        "profile": profile,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_description(),
        "notebooks": {},
    }

    def execute_one(job: tuple[Path, bool]) -> dict:
        notebook, student = job
        record = None if force else up_to_date_record(notebook, profile)
        if record is not None:
            log(f"execute: {notebook.as_posix():<54} up to date (last run {record['wall_s']:.1f} s)")
            return {**record, "outcome": PASSED}  # only a run that passed is kept as up to date
        return execute_and_report(notebook, profile, student, timeout)

    at_once = notebooks_at_once()
    threads = max(1, cpu_cores() // at_once) if at_once > 1 else None  # one at a time: the kernel's own choice
    if at_once > 1:
        log(f"execute: {at_once} notebooks at a time, {threads} thread(s) each ({BUILD_JOBS_VAR} changes it)")
    statistics["side_by_side"] = {"notebooks": at_once, "threads_each": threads}
    with kernel_environment(threads), concurrent.futures.ThreadPoolExecutor(at_once) as pool:
        for (notebook, _), record in zip(jobs, pool.map(execute_one, jobs)):  # in the order of the jobs
            statistics["notebooks"][notebook.as_posix()] = {k: v for k, v in record.items() if k != "stamp"}
            write_json_atomically(statistics, STATISTICS)
    write_json_atomically(statistics, STATISTICS)
    failures = [name for name, run in statistics["notebooks"].items() if run["outcome"] != PASSED]
    if strict and failures:
        raise BuildError(
            "execute: failed: " + ", ".join(failures) + "; their executed "
            f"copies are the *.failed.ipynb files under {EXECUTED}"
        )
    return statistics


PASSED = "passed"
DRIFTED = "outputs differ"  # the outcome when only marked outputs were off, beyond their tolerance


def execute_and_report(notebook: Path, profile: str, student: bool, timeout: int) -> dict:
    """Execute one notebook and log how it went; the record of the run, with its
    outcome: PASSED, DRIFTED with the cells' differences, or the error."""
    name, start = notebook.as_posix(), time.perf_counter()
    try:
        record = execute_notebook(notebook, profile, student, timeout)
    except Exception as error:  # the caller runs the others and reports all failures
        log(f"execute: {name:<54} FAILED: {error_summary(error)}")
        drifted = isinstance(error, OutputsDiffer)
        return {
            "profile": profile,
            "wall_s": round(time.perf_counter() - start, 1),
            "executed": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "kind": kind_of_run(profile, student),
            "outcome": DRIFTED if drifted else f"error: {error_summary(error)}",
            "differences": error.differences if drifted else [],
        }
    log(f"execute: {name:<54} {record['wall_s']:7.1f} s")
    return {**record, "outcome": PASSED}


def sanitizer_rules(path: Path = SANITIZER) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of an nbval sanitizer file."""
    return re.findall(r"^regex: (.*)$\n^replace: (.*)$", path.read_text(), flags=re.MULTILINE)


def sanitized(outputs: list) -> list:
    """Outputs with every text put through the sanitizer's rules, as nbval compares them."""
    rules = sanitizer_rules()

    def clean(text):
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


def store_references(notebooks: list[Path] | None = None) -> list[Path]:
    """Store the outputs of each notebook's marked cells, from its last run, in
    the notebook itself: nbval's references. Run it after a deliberate change
    to a marked output (the last run is the executed copy, or the failed copy
    when that is newer). Every other cell keeps no output. Returns the
    notebooks it changed."""
    import nbformat

    changed = []
    for notebook in notebooks or find_notebooks(EXECUTE_CHECKED):
        source = nbformat.read(ROOT / notebook, as_version=4)
        marked = [cell for cell in source.cells if is_marked(cell)]
        runs = [path for path in (executed_path(notebook), failed_path(notebook)) if path.is_file()]
        if marked and not runs:
            raise BuildError(f"references: {notebook} has not run yet; run `execute` first")
        ran = {}
        if runs:
            last_run = nbformat.read(max(runs, key=lambda path: path.stat().st_mtime), as_version=4)
            ran = {unmarked(cell.source): cell for cell in last_run.cells if cell.cell_type == "code"}
        for cell in source.cells:
            if cell.cell_type != "code":
                continue
            if not is_marked(cell):
                cell.outputs, cell.execution_count = [], None
            elif unmarked(cell.source) not in ran:
                raise BuildError(f"references: a marked cell of {notebook} changed since its last run; execute it")
            else:
                run = ran[unmarked(cell.source)]
                cell.outputs, cell.execution_count = sanitized(run.outputs), run.execution_count
        if source != nbformat.read(ROOT / notebook, as_version=4):
            nbformat.write(source, ROOT / notebook)
            changed.append(notebook)
            log(f"references: stored {len(marked)} in {notebook}")
    return changed


# =============================================================================
# book
# =============================================================================
def statistics_table(statistics: dict) -> str:
    """The run statistics as MyST markdown, for book/run_statistics.md."""
    machine = statistics.get("machine", {})
    lines = [
        f"- **Profile:** `{statistics.get('profile')}`",
        f"- **Statistics written:** {statistics.get('date')}",
        f"- **Python:** {machine.get('python')}, **torch:** {machine.get('torch')}",
        f"- **CPU:** {machine.get('cpu')} ({machine.get('cpu_count')} logical cores)",
        f"- **GPU:** {machine.get('gpu') or 'none'}",
        side_by_side_line(statistics.get("side_by_side", {})),
        "",
        "The slowest check cell is the longest of an instructor version's graded cells: what autograding",
        "a submission's check takes, on top of running the student's own code.",
        "",
        "| Notebook | Kind | Wall time (s) | Slowest check cell (s) | Executed (UTC) | Outcome |",
        "|---|---|---:|---:|---|---|",
    ]
    for name, run in sorted(statistics.get("notebooks", {}).items()):
        check = f"{run['slowest_check_s']:.1f}" if "slowest_check_s" in run else ""
        outcome = run.get("outcome", PASSED).replace("|", "\\|")
        if run.get("differences"):
            outcome += f" ({len(run['differences'])} cells, listed below)"
        lines.append(f"| `{name}` | {run['kind']} | {run['wall_s']:.1f} | {check} | {run['executed']} | {outcome} |")
    total = sum(run["wall_s"] for run in statistics.get("notebooks", {}).values())
    lines.append(f"| **total** | | **{total:.1f}** | | | |")
    differences = [line for run in statistics.get("notebooks", {}).values() for line in run.get("differences", [])]
    if differences:
        lines += ["", "Marked outputs beyond their tolerance in this run (the pages show this run's outputs):", ""]
        lines += [f"- `{line}`" for line in differences]
    return "\n".join(lines)


def side_by_side_line(side_by_side: dict) -> str:
    """How the notebooks shared the machine, for the statistics page."""
    at_once = side_by_side.get("notebooks", 1)
    if at_once <= 1:
        return "- **Notebooks at once:** one (each had the whole machine)"
    return (
        f"- **Notebooks at once:** {at_once}, {side_by_side.get('threads_each')} thread(s) each (and under "
        "`make test` the other tests run beside them); a notebook run alone on this machine, with every core, "
        "takes less than the wall time below"
    )


def stage_notebook(source: Path, target: Path, keep_outputs: bool) -> None:
    """Copy a notebook into the staged book, changed for the book's pages:

    - its Colab badge shows the local image;
    - its code has no nbval markers (they are for CI, not for readers);
    - the cell papermill injected is hidden (it repeats the parameters cell);
    - its outputs load the book's copy of plotly.js, not the one plotly embedded;
    - papermill's record of this machine's paths is dropped;
    - unless keep_outputs, it has no outputs (exercise pages are shown as handed out).
    """
    import nbformat
    from plotly.offline import get_plotlyjs

    nb = nbformat.read(source, as_version=4)
    # Relative links: the HTML pages and _static/ lie as BOOK_SRC's files do.
    badge = os.path.relpath(BOOK_SRC / LOCAL_COLAB_BADGE, target.parent)
    plotly_js = os.path.relpath(BOOK_SRC / "_static" / PLOTLY_JS, target.parent)
    embedded_plotly = f"<script>{get_plotlyjs()}</script>"
    linked_plotly = f'<script src="{Path(plotly_js).as_posix()}"></script>'
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = cell.source.replace(REMOTE_COLAB_BADGE, Path(badge).as_posix())
            continue
        cell.source = unmarked(cell.source)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.metadata["tags"] = cell.metadata["tags"] + ["remove-cell"]
        elif not keep_outputs:
            cell.outputs, cell.execution_count = [], None
        else:
            for output in cell.outputs:
                if "text/html" in output.get("data", {}):
                    html = output.data["text/html"]
                    output.data["text/html"] = html.replace(embedded_plotly, linked_plotly)
    if not keep_outputs:
        nb.metadata.pop("widgets", None)
    # papermill records the paths it read and wrote: this machine's, not the reader's
    for key in ("input_path", "output_path"):
        nb.metadata.get("papermill", {}).pop(key, None)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)


def last_run(notebook: Path) -> Path:
    """The executed copy of a notebook, or the run that failed when there is no
    other: the book shows what ran, drifted outputs and errors included."""
    executed = executed_path(notebook)
    if executed.is_file() or not failed_path(notebook).is_file():
        return executed
    return failed_path(notebook)


def stage_sources(statistics: dict) -> Path:
    """Copy the book's sources into BOOK_SRC: the executed lectures, the student
    exercises without outputs, and the book's own pages with the run statistics
    filled in, and plotly.js among the offline assets. The solutions stay out
    of the book."""
    from plotly.offline import get_plotlyjs

    shutil.rmtree(BOOK_SRC, ignore_errors=True)
    BOOK_SRC.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(ROOT / name, BOOK_SRC / name)
    shutil.copytree(ROOT / BOOK_DIR, BOOK_SRC / BOOK_DIR, ignore=shutil.ignore_patterns("assets", ".ipynb_checkpoints"))
    plotly_js = BOOK_SRC / ASSETS.relative_to(ROOT) / PLOTLY_JS
    plotly_js.parent.mkdir(parents=True, exist_ok=True)
    plotly_js.write_text(get_plotlyjs(), encoding="utf-8")
    for notebook in find_notebooks(BOOK_EXECUTED):
        stage_notebook(last_run(notebook), BOOK_SRC / notebook, keep_outputs=True)
    for notebook in find_notebooks(BOOK_WITHOUT_OUTPUTS):
        stage_notebook(ROOT / notebook, BOOK_SRC / notebook, keep_outputs=False)

    page = BOOK_SRC / BOOK_DIR / "run_statistics.md"
    text = page.read_text()
    if STATISTICS_MARKER not in text:
        raise BuildError(f"{page.relative_to(BOOK_SRC)} lacks the line {STATISTICS_MARKER}")
    page.write_text(text.replace(STATISTICS_MARKER, statistics_table(statistics)))
    return BOOK_SRC


def run_jupyter_book() -> Path:
    """Build BOOK_SRC into HTML with warnings as errors; return the path of index.html."""
    shutil.rmtree(JB_OUT, ignore_errors=True)  # always a full build: -W sees every page
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(jupyter_book) if jupyter_book.exists() else "jupyter-book",
        "build",
        str(BOOK_SRC),
        "--path-output",
        str(JB_OUT),
        "--builder",
        "html",
        "--all",
        "-W",
        "-n",
        "--keep-going",
    ]
    log("book: " + " ".join(command[1:]))
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        raise BuildError(f"book: jupyter-book build failed (exit code {result.returncode}); the warnings above say why")

    # Swap the new HTML in only now, so a failed build leaves the last good one.
    partial = HTML.with_name(HTML.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(JB_OUT / "_build" / "html", partial)
    shutil.rmtree(HTML, ignore_errors=True)
    partial.rename(HTML)
    return HTML / "index.html"


def build_book(
    profile: str = "quick", force: bool = False, timeout: int = CELL_TIMEOUT_S, strict: bool = False
) -> Path:
    """assets + execute + jupyter-book build; return the path of index.html.

    Not ``strict`` (``make book``): the HTML is built from whatever ran. A
    notebook whose marked outputs drifted beyond their tolerance is shown with
    this run's outputs and reported at the end; that alone is no failure (the
    book is what this machine computes; ``make test`` is where drift fails). A
    notebook that raised an error is shown up to its error, and after the
    build BuildError says which: the book then has a broken page. ``strict``
    (the tests): any failure stops before the book is built.
    """
    fetch_assets()
    statistics = execute_notebooks(profile, force=force, timeout=timeout, strict=strict)
    stage_sources(statistics)
    index = run_jupyter_book()
    log(f"book: {index}")
    runs = statistics["notebooks"]
    drifted = [name for name, run in runs.items() if run["outcome"] == DRIFTED]
    if drifted:
        log(f"book: built, but {len(drifted)} notebook(s) printed outputs beyond their tolerance; the book shows them:")
        for name in drifted:
            log("\n".join("  " + line for line in runs[name]["differences"]))
        log("book: `make test` fails on these; after a deliberate change, store new references (README, nbval).")
    errors = [name for name, run in runs.items() if run["outcome"] not in (PASSED, DRIFTED)]
    if errors:
        raise BuildError(
            f"book: built, but these notebooks failed with an error and their pages stop there: {', '.join(errors)} "
            f"(the runs are the *.failed.ipynb files under {EXECUTED})"
        )
    return index


# =============================================================================
# command line
# =============================================================================
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="build_course.py", description="Build the anomaly-edu course (offline assets, executed notebooks, book)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    assets = commands.add_parser(
        "assets", help="fetch MathJax, require.js and the widget manager from npm into book/_offline_assets"
    )
    assets.add_argument("--force", action="store_true", help="fetch even if present")
    for name, text in [
        ("execute", "execute the notebooks into _build/executed"),
        ("book", "assets + execute, then build the HTML into _build/html"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--profile", default="quick", choices=PROFILES, help="settings the notebooks run with (default: quick)"
        )
        command.add_argument("--force", action="store_true", help="execute even the notebooks that are up to date")
        command.add_argument(
            "--cell-timeout",
            type=int,
            default=CELL_TIMEOUT_S,
            help=f"seconds one cell may run (default: {CELL_TIMEOUT_S})",
        )
    references = commands.add_parser(
        "references", help="store the outputs of the marked cells of the last run as nbval's references"
    )
    references.add_argument("notebooks", nargs="*", type=Path, help="default: every lecture and instructor version")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    try:
        if args.command == "assets":
            fetch_assets(force=args.force)
        elif args.command == "references":
            store_references([n.resolve().relative_to(ROOT) for n in args.notebooks] or None)
        elif args.command == "execute":
            execute_notebooks(args.profile, force=args.force, timeout=args.cell_timeout)
        else:
            build_book(args.profile, force=args.force, timeout=args.cell_timeout)
    except BuildError as error:
        log(f"error: {error}")
        return 1
    log(f"{args.command}: done in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
