#!/usr/bin/env python
"""Build the anomaly-edu course: offline assets, executed notebooks, the HTML book.

Run it from anywhere with the project's virtual environment::

    python scripts/build_course.py assets                 # MathJax, require.js, widget manager
    python scripts/build_course.py execute [--profile quick|full] [--force]
    python scripts/build_course.py book    [--profile quick|full] [--force]
    python scripts/build_course.py references [NOTEBOOK ...]  # after a deliberate change

``book`` runs ``assets`` and ``execute`` first, then builds the HTML into
``_build/html/`` from staged copies of the executed notebooks (Jupyter Book
executes nothing: ``execute_notebooks: "off"``). ``execute`` fails when a marked
output differs from its reference beyond the cell's tolerance; ``book`` builds
the HTML all the same, lists those cells and exits with 0, or with 1 when a
notebook raised an error (its page stops there). Each step is also a function
(``fetch_assets``, ``execute_notebooks``, ``build_book``).

Who does what:

- **jupyter-cache** keeps the runs and says which are up to date. A run that
  passed is cached (``cache_notebook_file``) under jupyter-cache's hash of the
  notebook as it runs (code cells with their metadata, kernel), with the run's
  record (wall time, date, kind, slowest check cell) as its data;
  ``match_cache_notebook`` finds it, ``merge_match_into_notebook`` puts its
  outputs into the notebook as it is now (a changed text cell needs no run).
  jupyter-cache hashes the code, not what the code imports or reads, so a
  stamp beside its key is ours: the package, results/, models/, the pins, the
  profile and the notebook's nbval references.
- **nbval** and **nbclient** execute (notebook_runs.py), with their own cell
  time-outs. Not jupyter-cache's project and executors (``add_nb_to_project``,
  ``run_and_cache``): they run the notebook file as it is, so they cannot run
  nbval (the tolerant comparison), set the profile or keep a failed run (its
  page shows it up to the error), and their parallel executor takes one
  process per core, with no say over how many notebooks run at once or with
  how many threads. Not papermill: it fails on an error in
  a cell tagged ``raises-exception`` (the student versions have them), so the
  build sets the profile in a cell of its own, as papermill does.
- **Ours**: staging the book, the stamp, nbval's tolerance (nbval_tolerance.py)
  and record (nbval_record.py, which also says which cells failed), the run
  statistics, the side-by-side schedule (a thread pool: each kernel is a
  process of its own), and running the exercises as students do.

Adding a lecture or an exercise needs no change here: every notebook that
matches ``EXECUTE_CHECKED`` or ``EXECUTE_AS_STUDENT`` is executed; list the new
page in ``_toc.yml`` so that the book shows it.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's package, before any installed copy
sys.path.insert(1, str(Path(__file__).resolve().parent))  # the modules beside this script
import book_pages  # noqa: E402
import nbformat  # noqa: E402
from notebook_runs import (  # noqa: E402
    BuildError,
    Job,
    OutputsDiffer,
    RunCache,
    error_summary,
    is_marked,
    kernel_environment,
    references_digest,
    run_with_nbclient,
    run_with_nbval,
    slowest_check_cell,
    with_parameters,
    with_references,
)

from anomaly_edu.data.files import write_json_atomically  # noqa: E402

BUILD = ROOT / "_build"
EXECUTED = BUILD / "executed"  # the executed copies, and the run statistics
STATISTICS = EXECUTED / "run_statistics.json"
CACHE = BUILD / "jupyter_cache"  # jupyter-cache's folder: the runs that passed
BOOK_SRC = BUILD / "book_src"  # staged copy of the book's sources
JB_OUT = BUILD / "jupyter_book"  # where jupyter-book writes (it adds _build/html)
HTML = BUILD / "html"  # the finished book

# --- offline assets (versions pinned in book/assets/package.json and its lock file)
NPM_MANIFEST = ROOT / "book" / "assets"
NPM_PREFIX = BUILD / "npm"
# Not `_static`: Jupyter Book would add every script found there to every page.
ASSETS = ROOT / "book" / "_offline_assets"

# --- execution
# Lectures and instructor versions of the exercises: no errors allowed, and in the
# quick profile nbval checks the marked cells against their references. Student
# versions: errors allowed in cells tagged `raises-exception` (nbclient).
EXECUTE_CHECKED = ["lectures/*.ipynb", "exercises/solutions/*.ipynb"]
EXECUTE_AS_STUDENT = ["exercises/*.ipynb"]
# What a notebook's outputs may depend on besides its own code (the stamp).
STAMPED_FOLDERS = ["anomaly_edu", "results", "models"]
STAMPED_FILES = ["requirements-ci.txt", "pyproject.toml"]
BUILD_JOBS_VAR = "ANOMALY_EDU_BUILD_JOBS"  # how many notebooks run at once (default: one per core)
CELL_TIMEOUT_S = 3600  # generous: a full-profile cell on a CPU can take long
PROFILES = ("quick", "full")
PASSED = "passed"
DRIFTED = "outputs differ"  # the outcome when only marked outputs were off, beyond their tolerance

# --- book
BOOK_FILES = ["_config.yml", "_toc.yml"]
BOOK_DIR = "book"
BOOK_EXECUTED = ["lectures/*.ipynb"]  # shown with the outputs of their run
BOOK_WITHOUT_OUTPUTS = ["exercises/*.ipynb"]  # shown as handed out; solutions not at all
STATISTICS_MARKER = book_pages.STATISTICS_MARKER


def log(message: str) -> None:
    """Print a line of the build's log at once (notebooks run side by side)."""
    print(message, flush=True)


# =============================================================================
# assets
# =============================================================================
def fetch_assets(force: bool = False) -> Path:
    """Install the pinned npm packages and copy the files the book needs into ASSETS."""
    return book_pages.fetch_assets(NPM_MANIFEST, NPM_PREFIX, ASSETS, force)


# =============================================================================
# execute
# =============================================================================
def find_notebooks(patterns: list[str]) -> list[Path]:
    """Notebooks matching the glob patterns, relative to ROOT, sorted."""
    found = {p.relative_to(ROOT) for pattern in patterns for p in ROOT.glob(pattern)}
    return sorted(p for p in found if ".ipynb_checkpoints" not in p.parts)


def executed_path(notebook: Path) -> Path:
    """Where the executed copy of a notebook (its last run that passed) lies."""
    return EXECUTED / notebook


def failed_path(notebook: Path) -> Path:
    """Where the run of a notebook that failed is kept, to be looked at."""
    target = executed_path(notebook)
    return target.with_name(f"{target.stem}.failed.ipynb")


def last_run(notebook: Path) -> Path:
    """The executed copy of a notebook, or the run that failed when there is no
    other: the book shows what ran, drifted outputs and errors included."""
    executed = executed_path(notebook)
    return executed if executed.is_file() or not failed_path(notebook).is_file() else failed_path(notebook)


def inputs_digest(profile: str) -> str:
    """sha256 of the profile and of every file (name and contents) that the
    notebooks' outputs may depend on besides their own code: the package (the
    code they import), the stored results and models they show, the pins."""
    digest = hashlib.sha256(profile.encode())
    files = [p for folder in STAMPED_FOLDERS for p in (ROOT / folder).rglob("*") if p.is_file()]
    files = [p for p in files if "__pycache__" not in p.parts and p.suffix != ".pyc"]
    for path in sorted(files) + [ROOT / name for name in STAMPED_FILES]:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def plan(profile: str) -> list[Job]:
    """Every notebook to execute, the lectures (the longest runs) first, so that
    the short exercises fill the end evenly."""
    inputs = inputs_digest(profile)
    jobs = []
    for notebook, student in [(nb, False) for nb in find_notebooks(EXECUTE_CHECKED)] + [
        (nb, True) for nb in find_notebooks(EXECUTE_AS_STUDENT)
    ]:
        source = nbformat.read(ROOT / notebook, as_version=4)
        stamp = hashlib.sha256((inputs + references_digest(source)).encode()).hexdigest()
        job = Job(notebook, student, profile, source, stamp)
        if not job.checked:
            job.nb = with_parameters(source, profile)  # as run_with_nbclient runs it
        jobs.append(job)
    return sorted(jobs, key=lambda job: not job.notebook.as_posix().startswith("lectures/"))


def utc_now(timespec: str = "seconds") -> str:
    """The time now, in UTC, ISO 8601."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec=timespec)


def run_job(job: Job, cache: RunCache, timeout: int) -> dict:
    """Execute one notebook into EXECUTED, cache the run, return its record.

    The run goes to a temporary file that is renamed only on success, so a
    failed or interrupted run never leaves a half-written executed copy. After
    a failure the executed copy is removed (it no longer matches the source)
    and the failed run is kept as ``<name>.failed.ipynb``.
    """
    source, target = ROOT / job.notebook, executed_path(job.notebook)
    partial = target.with_name(f".{target.stem}.partial.ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    started, start = utc_now("milliseconds"), time.perf_counter()
    try:
        if job.checked:
            run_with_nbval(source, partial, job.profile, timeout, name=job.notebook.as_posix())
        else:
            run_with_nbclient(source, partial, job.profile, timeout)
    except BaseException:
        target.unlink(missing_ok=True)
        if partial.exists():
            os.replace(partial, failed_path(job.notebook))
        raise
    record = {
        "stamp": job.stamp,
        "profile": job.profile,
        "kind": job.kind,
        "wall_s": round(time.perf_counter() - start, 1),
        "started": started,
        "finished": utc_now("milliseconds"),
        "executed": utc_now(),
    }
    slowest = slowest_check_cell(nbformat.read(partial, as_version=4))
    if slowest is not None:
        record["slowest_check_s"] = slowest
    os.replace(partial, target)
    failed_path(job.notebook).unlink(missing_ok=True)
    cache.store(job, target, record)
    return record


def execute_job(job: Job, cache: RunCache, force: bool, timeout: int) -> dict:
    """Execute one notebook unless its cached run is up to date; log how it went
    and return the run's statistics: the record, with the outcome PASSED,
    DRIFTED (with the cells' differences) or the error."""
    name, start = job.notebook.as_posix(), time.perf_counter()
    record = None if force else cache.record(job)
    if record is not None:
        cache.restore(job, executed_path(job.notebook))
        failed_path(job.notebook).unlink(missing_ok=True)
        log(f"execute: {name:<54} up to date (last run {record['wall_s']:.1f} s)")
        return {**record, "outcome": PASSED}
    try:
        record = run_job(job, cache, timeout)
    except Exception as error:  # the caller runs the others and reports all failures
        log(f"execute: {name:<54} FAILED: {error_summary(error)}")
        drifted = isinstance(error, OutputsDiffer)
        return {
            "profile": job.profile,
            "kind": job.kind,
            "wall_s": round(time.perf_counter() - start, 1),
            "executed": utc_now(),
            "outcome": DRIFTED if drifted else f"error: {error_summary(error)}",
            "differences": error.differences if drifted else [],
        }
    log(f"execute: {name:<54} {record['wall_s']:7.1f} s")
    return {**record, "outcome": PASSED}


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


def execute_notebooks(
    profile: str = "quick", force: bool = False, timeout: int = CELL_TIMEOUT_S, strict: bool = True
) -> dict:
    """Execute every lecture and exercise notebook that is not up to date,
    ``notebooks_at_once`` side by side.

    Runs them all even when one fails. Returns the run statistics, also saved
    to STATISTICS, with each notebook's outcome: "passed", or why not. When
    ``strict`` (``make test``, ``execute``), any failure raises BuildError at the
    end, naming the failures. When not (``make book``), nothing is raised: the
    book is built from what ran, and build_book reports the failures.
    """
    if profile not in PROFILES:
        raise BuildError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    at_once = notebooks_at_once()
    threads = max(1, cpu_cores() // at_once) if at_once > 1 else None  # one at a time: the kernel's own choice
    if at_once > 1:
        log(f"execute: {at_once} notebooks at a time, {threads} thread(s) each ({BUILD_JOBS_VAR} changes it)")
    jobs, cache = plan(profile), RunCache(CACHE)
    statistics = {
        "profile": profile,
        "date": utc_now(),
        "machine": book_pages.machine_description(),
        "side_by_side": {"notebooks": at_once, "threads_each": threads},
        "notebooks": {},
    }
    EXECUTED.mkdir(parents=True, exist_ok=True)
    with kernel_environment(ROOT, threads), concurrent.futures.ThreadPoolExecutor(at_once) as pool:
        runs = pool.map(lambda job: execute_job(job, cache, force, timeout), jobs)
        for job, run in zip(jobs, runs):  # in the order of the jobs
            statistics["notebooks"][job.notebook.as_posix()] = {k: v for k, v in run.items() if k != "stamp"}
            write_json_atomically(statistics, STATISTICS)
    write_json_atomically(statistics, STATISTICS)
    failures = [name for name, run in statistics["notebooks"].items() if run["outcome"] != PASSED]
    if strict and failures:
        raise BuildError(
            f"execute: failed: {', '.join(failures)}; their runs are the *.failed.ipynb files under {EXECUTED}"
        )
    return statistics


def store_references(notebooks: list[Path] | None = None) -> list[Path]:
    """Store the outputs of each notebook's marked cells, from its last run, in
    the notebook itself: nbval's references. Run it after a deliberate change
    to a marked output (the last run is the executed copy, or the failed copy
    when that is newer). Every other cell keeps no output. Returns the
    notebooks it changed."""
    changed = []
    for notebook in notebooks or find_notebooks(EXECUTE_CHECKED):
        source = nbformat.read(ROOT / notebook, as_version=4)
        marked = [cell for cell in source.cells if is_marked(cell)]
        runs = [path for path in (executed_path(notebook), failed_path(notebook)) if path.is_file()]
        if marked and not runs:
            raise BuildError(f"references: {notebook} has not run yet; run `execute` first")
        ran = nbformat.read(max(runs, key=lambda path: path.stat().st_mtime), as_version=4) if runs else source
        stored = with_references(source, ran, notebook.as_posix())
        if stored != source:
            nbformat.write(stored, ROOT / notebook)
            changed.append(notebook)
            log(f"references: stored {len(marked)} in {notebook}")
    return changed


# =============================================================================
# book
# =============================================================================
statistics_table = book_pages.statistics_table  # the run statistics as the book's page shows them


def stage_sources(statistics: dict) -> Path:
    """Copy the book's sources into BOOK_SRC: the executed lectures, the student
    exercises without outputs, and the book's own pages with the run statistics
    filled in, and plotly.js among the offline assets. The solutions stay out
    of the book."""
    shutil.rmtree(BOOK_SRC, ignore_errors=True)
    BOOK_SRC.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(ROOT / name, BOOK_SRC / name)
    shutil.copytree(ROOT / BOOK_DIR, BOOK_SRC / BOOK_DIR, ignore=shutil.ignore_patterns("assets", ".ipynb_checkpoints"))
    book_pages.write_plotly_js(BOOK_SRC / ASSETS.relative_to(ROOT))
    for notebook in find_notebooks(BOOK_EXECUTED):
        book_pages.stage_notebook(last_run(notebook), BOOK_SRC / notebook, BOOK_SRC, keep_outputs=True)
    for notebook in find_notebooks(BOOK_WITHOUT_OUTPUTS):
        book_pages.stage_notebook(ROOT / notebook, BOOK_SRC / notebook, BOOK_SRC, keep_outputs=False)
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
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(BOOK_SRC)]
    command += ["--path-output", str(JB_OUT), "--builder", "html", "--all", "-W", "-n", "--keep-going"]
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


def report_failures(statistics: dict) -> None:
    """Log the notebooks whose outputs drifted, cell by cell; raise BuildError
    naming those that failed with an error."""
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
    report_failures(statistics)
    return index


# =============================================================================
# command line
# =============================================================================
def parser() -> argparse.ArgumentParser:
    """The command line: assets, execute, book, references."""
    parser = argparse.ArgumentParser(
        prog="build_course.py", description="Build the anomaly-edu course (offline assets, executed notebooks, book)."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    assets = commands.add_parser("assets", help="fetch MathJax, require.js and the widget manager into ASSETS")
    assets.add_argument("--force", action="store_true", help="fetch even if present")
    for name, text in [
        ("execute", "execute the notebooks into _build/executed"),
        ("book", "assets + execute, then build the HTML into _build/html"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument("--profile", default="quick", choices=PROFILES, help="the notebooks' settings")
        command.add_argument("--force", action="store_true", help="execute even the notebooks that are up to date")
        command.add_argument("--cell-timeout", type=int, default=CELL_TIMEOUT_S, help="seconds one cell may run")
    references = commands.add_parser("references", help="store the marked cells' outputs of the last run")
    references.add_argument("notebooks", nargs="*", type=Path, help="default: every lecture and instructor version")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 when it succeeded, 1 with the error otherwise."""
    args, start = parser().parse_args(argv), time.perf_counter()
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
