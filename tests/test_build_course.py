"""scripts/build_course.py without building the book: when is a notebook executed again?

The tests run a copy of the build script inside a tiny course in a temporary folder
(the script finds the course from its own location), with one lecture that prints a
number stored under results/, as the real lectures print the tables of results/.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LECTURE = Path("lectures/tiny.ipynb")
RESULT = "results/auroc.txt"
# Every file of the tiny course but the lecture; each one is an input of the stamp.
COURSE_FILES = {
    "anomaly_edu/__init__.py": "",
    "anomaly_edu/paper_tables/table.csv": "class,auroc\n0,0.9\n",
    RESULT: "0.91\n",
    "requirements-ci.txt": "plotly==7.1.0\n",
    "pyproject.toml": "[project]\nname = 'tiny'\n",
}


def tiny_lecture() -> nbformat.NotebookNode:
    parameters = nbformat.v4.new_code_cell('PROFILE = "quick"')
    parameters.metadata["tags"] = ["parameters"]
    show_result = nbformat.v4.new_code_cell(f'print("stored AUROC", open("../{RESULT}").read().strip())')
    nb = nbformat.v4.new_notebook(cells=[parameters, show_result])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def course(tmp_path):
    """The tiny course, and the build script that builds it."""
    for name, text in COURSE_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / LECTURE).parent.mkdir()
    nbformat.write(tiny_lecture(), tmp_path / LECTURE)
    script = tmp_path / "scripts" / "build_course.py"
    script.parent.mkdir()
    for name in (
        "build_course.py",
        "nbval_record.py",
        "nbval_tolerance.py",
        "nbval_sanitize.cfg",
        "nbval_gpu_sanitize.cfg",
    ):
        shutil.copy(ROOT / "scripts" / name, script.parent / name)
    spec = importlib.util.spec_from_file_location("tiny_build_course", script)
    build_course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_course)
    assert build_course.ROOT == tmp_path
    return tmp_path, build_course


def printed(build_course, notebook: Path) -> str:
    return printed_by(build_course.executed_path(notebook))


def printed_by(notebook: Path) -> str:
    """Everything a run of a notebook printed."""
    nb = nbformat.read(notebook, as_version=4)
    return "".join(output.get("text", "") for cell in nb.cells for output in cell.get("outputs", []))


@pytest.mark.parametrize("name", [LECTURE.as_posix(), *COURSE_FILES])
def test_a_change_to_any_input_changes_the_stamp(course, name):
    root, build_course = course
    before = build_course.stamp(LECTURE, "quick")
    with open(root / name, "a") as file:
        file.write("\n")
    assert build_course.stamp(LECTURE, "quick") != before, f"the stamp ignores {name}"


def test_a_new_results_file_or_another_profile_changes_the_stamp(course):
    root, build_course = course
    before = build_course.stamp(LECTURE, "quick")
    assert build_course.stamp(LECTURE, "full") != before
    (root / "results" / "mnist_new.json").write_text("{}\n")
    assert build_course.stamp(LECTURE, "quick") != before


def test_python_caches_do_not_change_the_stamp(course):
    root, build_course = course
    before = build_course.stamp(LECTURE, "quick")
    (root / "anomaly_edu" / "__pycache__").mkdir()
    (root / "anomaly_edu" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    assert build_course.stamp(LECTURE, "quick") == before


def test_a_changed_results_file_executes_the_notebook_again(course, monkeypatch):
    root, build_course = course
    executed = []

    def execute_and_count(notebook, *args, **kwargs):
        executed.append(notebook)
        return real_execute(notebook, *args, **kwargs)

    real_execute = build_course.execute_notebook
    monkeypatch.setattr(build_course, "execute_notebook", execute_and_count)

    build_course.execute_notebooks("quick")
    assert executed == [LECTURE]
    assert "stored AUROC 0.91" in printed(build_course, LECTURE)

    build_course.execute_notebooks("quick")
    assert executed == [LECTURE], "an up-to-date notebook was executed again"

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
    statistics = build_course.execute_notebooks("quick")  # the notebook changed: runs again
    assert statistics["notebooks"][LECTURE.as_posix()]["kind"] == "nbval"

    lecture_with_a_marked_cell(root, seed=1)  # wrong seed handling: the split changes
    build_course.store_references()  # keeps the reference (the notebook has not run since)
    capsys.readouterr()
    with pytest.raises(build_course.BuildError, match="failed: lectures/tiny.ipynb"):
        build_course.execute_notebooks("quick")
    report = capsys.readouterr().out  # nbval's diff, and the line that names the cell
    assert "Cell outputs differ" in report and reference.outputs[0].text.strip() in report
    assert "nbval: Cell 1 failed" in report
    assert not build_course.executed_path(LECTURE).exists()
    failed = nbformat.read(build_course.failed_path(LECTURE), as_version=4)
    assert failed.cells[1].outputs[0].text != reference.outputs[0].text  # the run is kept, to be looked at

    build_course.store_references()  # a deliberate change: the failed run's output is the new reference
    build_course.execute_notebooks("quick")
    assert build_course.executed_path(LECTURE).exists()


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
    assert statistics["notebooks"][LECTURE.as_posix()]["outcome"].startswith("error: ")


def test_an_nbval_marker_counts_only_on_a_line_of_its_own(course):
    _, build_course = course
    assert build_course.is_marked(nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)"))
    assert not build_course.is_marked(nbformat.v4.new_code_cell("print(1)  # NBVAL_CHECK_OUTPUT"))


def test_the_run_times_each_cell_and_records_the_slowest_check_cell(course):
    """nbval_record keeps each cell's running time; the record of the run and
    the run statistics page give the slowest graded check cell."""
    root, build_course = course
    nb = tiny_lecture()
    check = nbformat.v4.new_code_cell("import time\ntime.sleep(0.6)\nprint('checked')")
    check.metadata["nbgrader"] = {"grade": True, "grade_id": "check", "points": 1, "solution": False}
    nb.cells += [check, nbformat.v4.new_code_cell("time.sleep(1.2)")]  # slower, but not a check
    nbformat.write(nb, root / LECTURE)
    statistics = build_course.execute_notebooks("quick")
    executed = nbformat.read(build_course.executed_path(LECTURE), as_version=4)
    assert all("wall_s" in cell.metadata for cell in executed.cells)
    assert executed.cells[3].metadata["wall_s"] >= 1.2
    slowest = statistics["notebooks"][LECTURE.as_posix()]["slowest_check_s"]
    # the check cell's own recorded time, however long each cell took on this machine
    # (the slower cell after it is not a check)
    assert slowest == executed.cells[2].metadata["wall_s"] >= 0.6
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
    root, build_course = course
    for me, other in (("a", "b"), ("b", "a")):
        nb = tiny_lecture()
        nb.cells.append(nbformat.v4.new_code_cell(MEET.format(me=me, other=other)))
        nbformat.write(nb, root / "lectures" / f"{me}.ipynb")
    monkeypatch.setenv(build_course.BUILD_JOBS_VAR, "2")
    monkeypatch.setattr(build_course, "cpu_cores", lambda: 4)
    before = build_course.os.environ.get("OMP_NUM_THREADS")
    statistics = build_course.execute_notebooks("quick")
    assert list(statistics["notebooks"]) == ["lectures/a.ipynb", "lectures/b.ipynb", "lectures/tiny.ipynb"]
    for name in ("a", "b"):
        assert "threads 2" in printed(build_course, Path(f"lectures/{name}.ipynb"))
    assert build_course.os.environ.get("OMP_NUM_THREADS") == before  # the build's own setting is back
    assert statistics["side_by_side"] == {"notebooks": 2, "threads_each": 2}
    assert "**Notebooks at once:** 2, 2 thread(s) each" in build_course.statistics_table(statistics)


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_wrong_number_of_notebooks_at_once_is_one_clear_error(course, monkeypatch, value):
    _, build_course = course
    monkeypatch.setenv(build_course.BUILD_JOBS_VAR, value)
    with pytest.raises(build_course.BuildError, match="ANOMALY_EDU_BUILD_JOBS must be a positive whole number"):
        build_course.execute_notebooks("quick")
