"""nbgrader itself takes the course's exercises: what the instructor guide tells an
instructor to do ("put a notebook from exercises/solutions/ into source/<assignment>/
and run nbgrader generate_assignment ... nbgrader autograde") works as written.

- nbgrader converts all ten instructor versions into releases whose cells are the
  committed student versions (the same stubs, no line of a solution left), and its
  gradebook counts the points each exercise's first cell promises;
- ``nbgrader autograde`` gives a submission of the model answers every point of
  the checks (the answers to the questions are left for a person to grade), and a
  submission handed back unchanged none.

nbgrader runs in this process through its Python API, as its command line would;
it calls its ``alembic`` command, which lives beside this Python."""

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

nbgrader_apps = pytest.importorskip("nbgrader.apps", reason="nbgrader is not installed: run `make setup`")
from nbgrader.api import Gradebook  # noqa: E402
from traitlets.config import Config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "exercises" / "solutions"
EXERCISES = sorted(path.stem for path in SOLUTIONS.glob("*.ipynb"))
sys.path.insert(0, str(ROOT / "scripts"))
from notebook_runs import unmarked  # noqa: E402 (nbval's markers, which make student versions drop)

SOLUTION_BLOCK = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """An nbgrader course folder with every exercise as an assignment of its own,
    each released once; yields its root and nbgrader's API on it."""
    root = tmp_path_factory.mktemp("course")
    for name in EXERCISES:
        (root / "source" / name).mkdir(parents=True)
        shutil.copy(SOLUTIONS / f"{name}.ipynb", root / "source" / name)
    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{path}"  # nbgrader runs `alembic`
    try:
        api = nbgrader_apps.NbGraderAPI(config=config)
        results = {name: api.generate_assignment(name, force=True) for name in EXERCISES}
        yield root, api, results
    finally:
        os.environ["PATH"] = path


def promised_points(name: str) -> int:
    """The points the exercise's first cell promises, "(4 points)" for each task."""
    intro = nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4).cells[0].source
    return sum(int(n) for n in re.findall(r"\((\d+) points\b", intro))


def test_there_are_ten_exercises():
    assert len(EXERCISES) == 10, EXERCISES


@pytest.mark.parametrize("name", EXERCISES)
def test_nbgrader_releases_each_exercise_as_its_student_version(course, name):
    root, _, results = course
    assert results[name]["success"], results[name]["log"]
    release = nbformat.read(root / "release" / name / f"{name}.ipynb", as_version=4)
    student = nbformat.read(ROOT / "exercises" / f"{name}.ipynb", as_version=4)
    released = [unmarked(c.source) if c.cell_type == "code" else c.source for c in release.cells]
    assert released == [c.source for c in student.cells]
    instructor = nbformat.read(SOLUTIONS / f"{name}.ipynb", as_version=4)
    answered = [
        (original, released_cell)
        for original, released_cell in zip(instructor.cells, release.cells)
        if SOLUTION_BLOCK.search(original.source)
    ]
    assert answered, "no solution block in the instructor version"
    for original, released_cell in answered:
        solution = {line.strip() for block in SOLUTION_BLOCK.findall(original.source) for line in block.splitlines()}
        stub = "raise NotImplementedError()" if original.cell_type == "code" else "YOUR ANSWER HERE"
        assert stub in released_cell.source
        left = [line for line in released_cell.source.splitlines() if line.strip() and line.strip() in solution]
        assert not left, f"solution lines in nbgrader's release of {name}: {left[:3]}"


@pytest.mark.parametrize("name", EXERCISES)
def test_the_gradebook_counts_the_promised_points(course, name):
    root, _, _ = course
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        assignment = gradebook.find_assignment(name)
        assert assignment.max_score == promised_points(name) > 0


@pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # from nbgrader's own session handling
def test_autograde_gives_the_model_answers_every_check_point_and_a_blank_copy_none(course):
    """Exercise 7b, the one that runs in seconds and needs no data set."""
    root, api, _ = course
    name = "ex07b_seeds"
    for student, notebook in [("model", SOLUTIONS), ("blank", root / "release" / name)]:
        (root / "submitted" / student / name).mkdir(parents=True)
        shutil.copy(notebook / f"{name}.ipynb", root / "submitted" / student / name)
        result = api.autograde(name, student, force=True, create=True)
        assert result["success"], result["log"]
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        model = gradebook.find_submission(name, "model").notebooks[0]
        blank = gradebook.find_submission(name, "blank").notebooks[0]
        checks = [grade for grade in model.grades if grade.cell.cell_type == "code"]
        answers = [grade for grade in model.grades if grade.cell.cell_type == "markdown"]
        assert checks and answers
        assert all(grade.auto_score == grade.max_score > 0 for grade in checks), [
            (g.name, g.auto_score, g.max_score) for g in checks
        ]
        assert model.needs_manual_grade and all(grade.auto_score is None for grade in answers)
        assert blank.score == 0
        assert model.score == sum(grade.max_score for grade in checks) < promised_points(name)
