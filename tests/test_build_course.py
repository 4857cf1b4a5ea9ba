"""scripts/build_course.py without building the book: when is a notebook executed again?

The tests run a copy of the build script (and of the modules beside it) inside a
tiny course in a temporary folder (the script finds the course from its own
location), with one lecture that prints a number stored under results/, as the
real lectures print the tables of results/. The tests of staleness cache a run
by hand, without a kernel; the others execute the tiny notebooks.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LECTURE = Path("lectures/tiny.ipynb")
RESULT = "results/auroc.txt"
PACKAGE = "anomaly_edu/__init__.py"
# Every file of the tiny course but the lecture; each one is an input of the stamp.
COURSE_FILES = {
    PACKAGE: "",
    "anomaly_edu/paper_tables/table.csv": "class,auroc\n0,0.9\n",
    RESULT: "0.91\n",
    "models/tiny.pt": "weights\n",
    "requirements-ci.txt": "plotly==7.1.0\n",
    "pyproject.toml": "[project]\nname = 'tiny'\n",
}
SCRIPTS = ["build_course.py", "notebook_runs.py", "book_pages.py", "nbval_record.py", "nbval_tolerance.py"]
SCRIPTS += ["nbval_sanitize.cfg", "nbval_gpu_sanitize.cfg"]
HELPERS = ["notebook_runs", "book_pages", "nbval_record", "nbval_tolerance"]  # imported by name


def tiny_lecture(*more_code: str) -> nbformat.NotebookNode:
    """A lecture with a parameters cell, a cell that prints the stored result, and more code cells."""
    parameters = nbformat.v4.new_code_cell('PROFILE = "quick"')
    parameters.metadata["tags"] = ["parameters"]
    show_result = nbformat.v4.new_code_cell(f'print("stored AUROC", open("../{RESULT}").read().strip())')
    cells = [nbformat.v4.new_markdown_cell("# Tiny"), parameters, show_result]
    nb = nbformat.v4.new_notebook(cells=cells + [nbformat.v4.new_code_cell(code) for code in more_code])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def course(tmp_path):
    """The tiny course, and the build script that builds it (with its own copies
    of the modules beside it, taken out of sys.modules again afterwards)."""
    for name, text in COURSE_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / LECTURE).parent.mkdir()
    nbformat.write(tiny_lecture(), tmp_path / LECTURE)
    (tmp_path / "scripts").mkdir()
    for name in SCRIPTS:
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    saved = {name: sys.modules.pop(name) for name in HELPERS if name in sys.modules}
    spec = importlib.util.spec_from_file_location("tiny_build_course", tmp_path / "scripts" / "build_course.py")
    build_course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_course)
    assert build_course.ROOT == tmp_path
    assert Path(sys.modules["notebook_runs"].__file__).parent == tmp_path / "scripts"
    yield tmp_path, build_course
    for name in HELPERS:
        sys.modules.pop(name, None)
    sys.modules.update(saved)


def printed(build_course, notebook: Path) -> str:
    return printed_by(build_course.executed_path(notebook))


def printed_by(notebook: Path) -> str:
    """Everything a run of a notebook printed."""
    nb = nbformat.read(notebook, as_version=4)
    return "".join(output.get("text", "") for cell in nb.cells for output in cell.get("outputs", []))


# ---------------------------------------------------------------- staleness, without a kernel
def cache_a_run(build_course, profile: str = "quick") -> None:
    """Cache a run of every notebook of the tiny course as the build caches one
    (no kernel: the outputs are made up)."""
    cache = build_course.RunCache(build_course.CACHE)
    for job in build_course.plan(profile):
        ran = nbformat.from_dict(job.nb)
        for number, cell in enumerate(c for c in ran.cells if c.cell_type == "code"):
            cell.execution_count = number + 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="made up\n")]
        executed = build_course.executed_path(job.notebook)
        executed.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(ran, executed)
        cache.store(job, executed, {"stamp": job.stamp, "wall_s": 1.0})


def up_to_date(build_course, profile: str = "quick") -> bool:
    """Whether the tiny lecture's cached run would be used, not executed again."""
    cache = build_course.RunCache(build_course.CACHE)
    (job,) = [job for job in build_course.plan(profile) if job.notebook == LECTURE]
    return cache.record(job) is not None


def edit_lecture(root: Path, edit) -> None:
    nb = nbformat.read(root / LECTURE, as_version=4)
    edit(nb)
    nbformat.write(nb, root / LECTURE)


def test_a_cached_run_is_up_to_date_while_nothing_changes(course):
    root, build_course = course
    assert not up_to_date(build_course)
    cache_a_run(build_course)
    assert up_to_date(build_course)
    (root / "anomaly_edu" / "__pycache__").mkdir()
    (root / "anomaly_edu" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    assert up_to_date(build_course), "a Python cache made the run stale"


def test_a_changed_markdown_cell_reuses_the_run_and_shows_the_new_text(course):
    root, build_course = course
    cache_a_run(build_course)
    edit_lecture(root, lambda nb: setattr(nb.cells[0], "source", "# Tiny, retitled"))
    assert up_to_date(build_course)
    cache = build_course.RunCache(build_course.CACHE)
    (job,) = build_course.plan("quick")
    cache.restore(job, build_course.executed_path(LECTURE))
    executed = nbformat.read(build_course.executed_path(LECTURE), as_version=4)
    assert executed.cells[0].source == "# Tiny, retitled" and "made up" in printed(build_course, LECTURE)


def test_a_changed_code_cell_makes_the_run_stale(course):
    root, build_course = course
    cache_a_run(build_course)
    edit_lecture(root, lambda nb: nb.cells.append(nbformat.v4.new_code_cell("print(2)")))
    assert not up_to_date(build_course)


@pytest.mark.parametrize("name", COURSE_FILES)
def test_a_change_to_the_package_or_any_other_input_makes_the_run_stale(course, name):
    root, build_course = course
    cache_a_run(build_course)
    with open(root / name, "a") as file:
        file.write("\n")
    assert not up_to_date(build_course), f"the run ignores {name}"


def test_a_new_package_module_or_results_file_makes_the_run_stale(course):
    root, build_course = course
    for new_file in ("anomaly_edu/scoring.py", "results/mnist_new.json"):
        cache_a_run(build_course)
        (root / new_file).write_text("{}\n")
        assert not up_to_date(build_course), f"the run ignores the new {new_file}"


def test_another_profile_or_new_references_make_the_run_stale(course):
    root, build_course = course
    cache_a_run(build_course)
    assert not up_to_date(build_course, "full")

    def store_a_reference(nb):
        nb.cells[2].source = "# NBVAL_CHECK_OUTPUT\n" + nb.cells[2].source
        nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="stored AUROC 0.91\n")]

    edit_lecture(root, store_a_reference)
    cache_a_run(build_course)
    assert up_to_date(build_course)
    edit_lecture(root, lambda nb: setattr(nb.cells[2].outputs[0], "text", "stored AUROC 0.95\n"))
    assert not up_to_date(build_course), "nbval's references changed, and the run was not checked against them"


def test_a_student_version_is_keyed_with_its_injected_profile(course):
    """nbclient runs the student versions with their profile set in a cell of
    their own, as papermill sets it: the notebook as it runs is the cache's key."""
    root, build_course = course
    (root / "exercises").mkdir()
    nbformat.write(tiny_lecture(), root / "exercises" / "ex.ipynb")
    jobs = {job.notebook.as_posix(): job for job in build_course.plan("quick")}
    student = jobs["exercises/ex.ipynb"]
    assert student.student and student.kind == "student version (nbclient)"
    assert [cell.source for cell in student.nb.cells[1:3]] == ['PROFILE = "quick"', "# Parameters\nPROFILE = 'quick'\n"]
    assert student.nb.cells[2].metadata["tags"] == ["injected-parameters"]
    assert jobs[LECTURE.as_posix()].kind == "nbval" and len(jobs[LECTURE.as_posix()].nb.cells) == 3
    cache_a_run(build_course)
    cache = build_course.RunCache(build_course.CACHE)
    assert all(cache.record(job) for job in build_course.plan("quick"))
    assert not any(cache.record(job) for job in build_course.plan("full"))


# ---------------------------------------------------------------- failures, read from nbval_record
def recorded_run(path: Path, problems: dict[int, str], seconds: dict[int, float] | None = None) -> Path:
    """A notebook as nbval_record writes it: its outputs, and what failed in its metadata."""
    nb = tiny_lecture("print(3)")
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="4\n")]
    nb.metadata["nbval_record"] = {
        "seconds": {str(n): s for n, s in (seconds or {}).items()},
        "problems": {str(n): why for n, why in problems.items()},
    }
    nbformat.write(nb, path)
    return path


def test_a_failure_is_read_from_the_plugin_s_record(course, tmp_path):
    _, build_course = course
    runs = sys.modules["notebook_runs"]
    source = tmp_path / "source.ipynb"
    reference = tiny_lecture("print(3)")
    reference.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="3\n")]
    nbformat.write(reference, source)

    drift = recorded_run(tmp_path / "drift.ipynb", {2: "outputs differ"})
    error = runs.nbval_failure(source, drift, 1, "lectures/tiny.ipynb")
    assert isinstance(error, build_course.OutputsDiffer)
    assert error.differences == ["lectures/tiny.ipynb, code cell 2: stored '3', now '4'"]

    crash = recorded_run(tmp_path / "crash.ipynb", {2: "outputs differ", 1: "error: ZeroDivisionError"})
    error = runs.nbval_failure(source, crash, 1, "lectures/tiny.ipynb")
    assert not isinstance(error, build_course.OutputsDiffer)
    assert str(error) == "nbval: code cell 1: error: ZeroDivisionError; code cell 2: outputs differ"

    error = runs.nbval_failure(source, tmp_path / "never_written.ipynb", 4, "lectures/tiny.ipynb")
    assert "before any cell" in str(error) and "exit code 4" in str(error)


def test_the_slowest_check_cell_is_a_graded_cell_s_recorded_time(course, tmp_path):
    """Not the slowest cell: the slowest of those nbgrader grades."""
    runs = sys.modules["notebook_runs"]
    path = recorded_run(tmp_path / "run.ipynb", {}, seconds={0: 0.1, 1: 0.5, 2: 3.0})
    nb = nbformat.read(path, as_version=4)
    assert runs.slowest_check_cell(nb) is None
    nb.cells[2].metadata["nbgrader"] = {"grade": True, "grade_id": "check", "points": 1, "solution": False}
    assert runs.slowest_check_cell(nb) == 0.5


def test_an_nbval_marker_counts_only_on_a_line_of_its_own(course):
    runs = sys.modules["notebook_runs"]
    assert runs.is_marked(nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)"))
    assert not runs.is_marked(nbformat.v4.new_code_cell("print(1)  # NBVAL_CHECK_OUTPUT"))


# ---------------------------------------------------------------- executing the tiny course
def test_a_changed_results_file_executes_the_notebook_again(course, monkeypatch):
    root, build_course = course
    executed = []

    def run_and_count(job, *args, **kwargs):
        executed.append(job.notebook)
        return real_run(job, *args, **kwargs)

    real_run = build_course.run_job
    monkeypatch.setattr(build_course, "run_job", run_and_count)

    build_course.execute_notebooks("quick")
    assert executed == [LECTURE]
    assert "stored AUROC 0.91" in printed(build_course, LECTURE)

    build_course.executed_path(LECTURE).unlink()  # the cache has the run: the copy comes back from it
    statistics = build_course.execute_notebooks("quick")
    assert executed == [LECTURE], "an up-to-date notebook was executed again"
    assert "stored AUROC 0.91" in printed(build_course, LECTURE)
    assert statistics["notebooks"][LECTURE.as_posix()]["outcome"] == build_course.PASSED

    (root / RESULT).write_text("0.95\n")
    build_course.execute_notebooks("quick")
    assert executed == [LECTURE, LECTURE], "a changed results file left the old outputs"
    assert "stored AUROC 0.95" in printed(build_course, LECTURE)


# nbval's check of the marked cells: a lecture whose marked cell prints a seeded split
SPLIT = '# NBVAL_CHECK_OUTPUT\nimport random\nprint("test images", sorted(random.Random(SEED).sample(range(1000), 5)))'


def lecture_with_a_marked_cell(root: Path, seed: int) -> None:
    parameters = nbformat.v4.new_code_cell(f'PROFILE = "quick"\nSEED = {seed}')
    parameters.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[parameters, nbformat.v4.new_code_cell(SPLIT)])
    nb.metadata["kernelspec"] = tiny_lecture().metadata["kernelspec"]
    nbformat.write(nb, root / LECTURE)


def test_nbval_catches_a_changed_marked_output_and_references_store_the_new_one(course, capsys):
    root, build_course = course
    lecture_with_a_marked_cell(root, seed=0)
    build_course.execute_notebooks("quick")  # no reference yet: nothing to compare
    assert build_course.store_references() == [LECTURE]
    reference = nbformat.read(root / LECTURE, as_version=4).cells[1]
    assert reference.execution_count == 2 and "test images [" in reference.outputs[0].text
    statistics = build_course.execute_notebooks("quick")  # new references: checked against them
    assert statistics["notebooks"][LECTURE.as_posix()]["kind"] == "nbval"

    lecture_with_a_marked_cell(root, seed=1)  # wrong seed handling: the split changes
    build_course.store_references()  # keeps the reference (the notebook has not run since)
    capsys.readouterr()
    with pytest.raises(build_course.BuildError, match="failed: lectures/tiny.ipynb"):
        build_course.execute_notebooks("quick")
    report = capsys.readouterr().out  # nbval's diff, and the line that names the cell
    assert "Cell outputs differ" in report and reference.outputs[0].text.strip() in report
    assert "FAILED: OutputsDiffer: nbval: code cell 1: outputs differ" in report
    assert not build_course.executed_path(LECTURE).exists()
    failed = nbformat.read(build_course.failed_path(LECTURE), as_version=4)
    assert failed.cells[1].outputs[0].text != reference.outputs[0].text  # the run is kept, to be looked at

    build_course.store_references()  # a deliberate change: the failed run's output is the new reference
    build_course.execute_notebooks("quick")
    assert build_course.executed_path(LECTURE).exists() and not build_course.failed_path(LECTURE).exists()


def test_the_book_build_reports_drift_and_errors_and_still_shows_what_ran(course):
    """Not strict (make book): a notebook whose marked output drifted is reported
    cell by cell, stored against now, and the book is staged from that run; a
    notebook that raised is reported as an error. Strict (make test), both fail."""
    root, build_course = course
    lecture_with_a_marked_cell(root, seed=0)
    build_course.execute_notebooks("quick")
    build_course.store_references()
    stored = nbformat.read(root / LECTURE, as_version=4).cells[1].outputs[0].text.strip()
    lecture_with_a_marked_cell(root, seed=1)
    build_course.store_references()  # the seed-0 reference stays

    statistics = build_course.execute_notebooks("quick", strict=False)
    run = statistics["notebooks"][LECTURE.as_posix()]
    assert run["outcome"] == build_course.DRIFTED
    (difference,) = run["differences"]
    assert difference.startswith("lectures/tiny.ipynb, code cell 1: stored ") and repr(stored) in difference
    assert build_course.last_run(LECTURE) == build_course.failed_path(LECTURE)  # what the book shows
    assert "test images" in printed_by(build_course.last_run(LECTURE))
    assert difference in build_course.statistics_table(statistics)
    with pytest.raises(build_course.BuildError, match="failed: lectures/tiny.ipynb"):
        build_course.execute_notebooks("quick")

    nb = nbformat.read(root / LECTURE, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("1 / 0"))
    nbformat.write(nb, root / LECTURE)
    statistics = build_course.execute_notebooks("quick", strict=False)
    outcome = statistics["notebooks"][LECTURE.as_posix()]["outcome"]
    assert outcome.startswith("error: ") and "code cell 2: error" in outcome
    with pytest.raises(build_course.BuildError, match="failed with an error and their pages stop there"):
        build_course.report_failures(statistics)


def test_a_check_cell_s_time_is_recorded_with_the_run(course):
    """nbval_record keeps each cell's running time; the record of the run and
    the run statistics page give the graded check cell's."""
    root, build_course = course
    nb = tiny_lecture("print('checked')", "print('not a check')")
    nb.cells[3].metadata["nbgrader"] = {"grade": True, "grade_id": "check", "points": 1, "solution": False}
    nbformat.write(nb, root / LECTURE)
    statistics = build_course.execute_notebooks("quick")
    seconds = sys.modules["nbval_record"].cell_seconds(nbformat.read(build_course.executed_path(LECTURE), 4))
    assert sorted(seconds) == [0, 1, 2, 3]
    slowest = statistics["notebooks"][LECTURE.as_posix()]["slowest_check_s"]
    assert slowest == seconds[2]  # the check cell's own recorded time
    assert f"| {slowest:.1f} |" in build_course.statistics_table(statistics)


# Waits until the other notebook has started too: it fails when the two run one after the other.
MEET = """import os, pathlib, time
pathlib.Path("{me}.started").touch()
for _ in range(600):
    if pathlib.Path("{other}.started").exists():
        break
    time.sleep(0.1)
else:
    raise RuntimeError("{other} never started beside {me}")
print("threads", os.environ.get("OMP_NUM_THREADS"))"""


def test_notebooks_run_side_by_side_with_a_share_of_the_cores_each(course, monkeypatch):
    """Two at once: a and b run together, and the third starts when one of them
    has finished (the schedule, read from the recorded start and end times)."""
    root, build_course = course
    for me, other in (("a", "b"), ("b", "a")):
        nbformat.write(tiny_lecture(MEET.format(me=me, other=other)), root / "lectures" / f"{me}.ipynb")
    monkeypatch.setenv(build_course.BUILD_JOBS_VAR, "2")
    monkeypatch.setattr(build_course, "cpu_cores", lambda: 4)
    before = build_course.os.environ.get("OMP_NUM_THREADS")
    statistics = build_course.execute_notebooks("quick")
    runs = statistics["notebooks"]
    assert list(runs) == ["lectures/a.ipynb", "lectures/b.ipynb", "lectures/tiny.ipynb"]
    a, b, tiny = runs.values()
    assert all(run["outcome"] == build_course.PASSED for run in runs.values())
    assert a["started"] < b["finished"] and b["started"] < a["finished"], "a and b ran one after the other"
    assert tiny["started"] >= min(a["finished"], b["finished"]), "three notebooks ran at once"
    for name in ("a", "b"):
        assert "threads 2" in printed(build_course, Path(f"lectures/{name}.ipynb"))
    assert build_course.os.environ.get("OMP_NUM_THREADS") == before  # the build's own setting is back
    assert statistics["side_by_side"] == {"notebooks": 2, "threads_each": 2}
    assert "**Notebooks at once:** 2, 2 thread(s) each" in build_course.statistics_table(statistics)


def test_one_at_a_time_the_lectures_start_first(course, monkeypatch):
    """The lectures (the longest runs) start before the exercises, whatever their names."""
    root, build_course = course
    (root / "exercises").mkdir()
    nbformat.write(tiny_lecture(), root / "exercises" / "ex.ipynb")
    monkeypatch.setenv(build_course.BUILD_JOBS_VAR, "1")
    runs = build_course.execute_notebooks("quick")["notebooks"]
    lecture, exercise = runs[LECTURE.as_posix()], runs["exercises/ex.ipynb"]
    assert lecture["finished"] <= exercise["started"]
    assert exercise["kind"] == "student version (nbclient)" and lecture["kind"] == "nbval"
    assert "stored AUROC 0.91" in printed(build_course, Path("exercises/ex.ipynb"))


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_wrong_number_of_notebooks_at_once_is_one_clear_error(course, monkeypatch, value):
    _, build_course = course
    monkeypatch.setenv(build_course.BUILD_JOBS_VAR, value)
    with pytest.raises(build_course.BuildError, match="ANOMALY_EDU_BUILD_JOBS must be a positive whole number"):
        build_course.execute_notebooks("quick")
