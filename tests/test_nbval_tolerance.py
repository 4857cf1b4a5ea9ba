"""nbval's comparison with a tolerance (scripts/nbval_tolerance.py): what passes and what still fails.

The unit tests check the comparison on texts. The notebook tests run nbval, as
the build does, on the first cells of Lecture 2 (train the CNN, attack it) with
a smaller training budget: they store references in this machine's own
configuration, then check that the same run in configurations that change the
arithmetic (one thread instead of all, torch's CPU kernels without their vector
instructions) passes, and that three deliberate errors in the lecture's code
(a wrong eps, a swapped label, a broken attack) are caught.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_course  # noqa: E402
import nbval_tolerance  # noqa: E402
import notebook_runs  # noqa: E402
from nbval_tolerance import TOLERANCES, declared_tolerance, numbers_out_of_tolerance, within_tolerance  # noqa: E402

PERCENT, UNDER_ATTACK, RELATIVE = TOLERANCES["percent"], TOLERANCES["under-attack"], TOLERANCES["relative"]


# ---------------------------------------------------------------- the comparison on texts
@pytest.mark.parametrize(
    "kind, now, stored",
    [
        ("percent", "clean test accuracy: 98.6%", "clean test accuracy: 99.0%"),
        ("percent", "eps 0.05: accuracy 94.4%, package 94.4%", "eps 0.05: accuracy 95.0%, package 95.0%"),
        ("percent", "AUROC 55.3 and 61.8", "AUROC 55.1 and 61.8"),
        ("percent", "eps 0.2: accuracy 37.4%", "eps 0.2: accuracy 33.4%"),  # FGSM, 1 thread against 2
        ("breaking-point", "accuracy under them: 59.5%", "accuracy under them: 49.5%"),  # PGD, no vector code
        ("under-attack", "21 of 50 digits", "23 of 50 digits"),
        ("percent", "a     7.8\nb    10.2", "a     8.1\nb     9.9"),  # a table pads its columns to the widest number
        ("relative", "distance 3.50 (1.07x)", "distance 3.82 (1.11x)"),
        ("relative", "mean error 0.15736", "mean error 0.15755"),
    ],
)
def test_numbers_within_the_tolerance_pass(kind, now, stored):
    assert numbers_out_of_tolerance(now, stored, TOLERANCES[kind]) == []


@pytest.mark.parametrize(
    "kind, now, stored, beyond",
    [
        ("percent", "clean test accuracy: 11.3%", "clean test accuracy: 99.0%", [("11.3", "99.0")]),  # labels swapped
        ("percent", "under attack 98.8%", "under attack 83.0%", [("98.8", "83.0")]),  # a broken attack
        ("percent", "AUROC 14.5", "AUROC 85.5", [("14.5", "85.5")]),  # the score's sign flipped
        ("under-attack", "0 of 50 digits", "13 of 50 digits", [("0", "13")]),  # a wrong eps
        ("under-attack", "accuracy under PGD 98.8%", "accuracy under PGD 83.0%", [("98.8", "83.0")]),  # no attack
        ("breaking-point", "accuracy under them: 98.5%", "accuracy under them: 57.5%", [("98.5", "57.5")]),
        ("percent", "accuracy 93.5%", "accuracy 99.0%", [("93.5", "99.0")]),  # 5.5 points
        ("relative", "moves the code by 0.036", "moves the code by 0.018", [("0.036", "0.018")]),
        ("relative", "distance 3.40", "distance 3.82", [("3.40", "3.82")]),  # 11%
    ],
)
def test_numbers_beyond_the_tolerance_are_named(kind, now, stored, beyond):
    assert numbers_out_of_tolerance(now, stored, TOLERANCES[kind]) == beyond


@pytest.mark.parametrize(
    "now, stored",
    [
        ("digits: [1, 7]", "digits: [1]"),  # one number more
        ("accuracy under FGSM 95.0%", "accuracy under PGD 95.0%"),  # other words
        ("ex07a: 3", "ex08a: 3"),  # a digit inside a word is text, not a number
    ],
)
def test_texts_that_differ_beyond_their_numbers_are_not_compared_by_number(now, stored):
    assert numbers_out_of_tolerance(now, stored, PERCENT) is None


def test_a_cell_declares_its_tolerance_on_a_line_of_its_own():
    assert declared_tolerance("# NBVAL_CHECK_OUTPUT\nprint(1)") is None
    assert declared_tolerance("# NBVAL_CHECK_OUTPUT\n# NBVAL_TOLERANCE percent\nprint(1)") is PERCENT
    assert declared_tolerance("# NBVAL_CHECK_OUTPUT\n# NBVAL_TOLERANCE under-attack\nprint(1)") is UNDER_ATTACK
    assert declared_tolerance("# NBVAL_CHECK_OUTPUT\n# NBVAL_TOLERANCE relative\nprint(1)") is RELATIVE
    kinds = "percent, under-attack, breaking-point, relative"
    with pytest.raises(ValueError, match=f"unknown tolerance 'loose'.*the kinds are {kinds}"):
        declared_tolerance("# NBVAL_TOLERANCE loose\nprint(1)")


def test_within_tolerance_swaps_in_the_reference_and_leaves_the_run_untouched():
    stream = nbformat.v4.new_output("stream", name="stdout", text="accuracy 94.4%\n")
    table = nbformat.v4.new_output("execute_result", data={"text/plain": "a  80.8", "text/html": "<td>80.8</td>"})
    far = nbformat.v4.new_output("execute_result", data={"text/plain": "b  20.0"})
    ref = [
        nbformat.v4.new_output("stream", name="stdout", text="accuracy 95.0%\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "a  78.8", "text/html": "<td>78.8</td>"}),
        nbformat.v4.new_output("execute_result", data={"text/plain": "b  60.0"}),
    ]
    test = [stream, table, far]
    compared, problems = within_tolerance(test, ref, PERCENT)
    assert compared[0].text == "accuracy 95.0%\n"
    assert compared[1].data == ref[1].data
    assert compared[2].data["text/plain"] == "b  20.0"  # beyond: left for nbval to report
    assert problems == ["text/plain: numbers beyond the tolerance (±5): 20.0 (reference 60.0)"]
    assert stream.text == "accuracy 94.4%\n" and table.data["text/plain"] == "a  80.8"  # the book shows this run


def test_the_book_and_the_references_ignore_the_tolerance_line():
    source = "# NBVAL_CHECK_OUTPUT\n# NBVAL_TOLERANCE percent\nprint(1)"
    assert notebook_runs.unmarked(source) == "print(1)"


def test_every_declared_tolerance_in_the_course_is_known_and_on_a_marked_cell():
    """A tolerance line on a cell that nbval does not check would mean nothing."""
    for notebook in build_course.find_notebooks(build_course.EXECUTE_CHECKED):
        for cell in nbformat.read(ROOT / notebook, as_version=4).cells:
            if cell.cell_type == "code" and nbval_tolerance.DECLARATION in cell.source:
                declared_tolerance(cell.source)  # raises on an unknown kind
                assert notebook_runs.is_marked(cell), f"{notebook}: a tolerance on an unmarked cell"


# ---------------------------------------------------------------- Lecture 2, run by nbval
LECTURE_2 = ROOT / "lectures" / "02_adversarial_examples.ipynb"
# Fewer training images than the quick profile's 60,000: the same code, a third of the time, and
# still a network that the attack turns on about a quarter of the 50 digits.
SMALLER_BUDGET = 'settings["cnn"] = {**settings["cnn"], "max_train": 20000}'
# The three deliberate errors, each a change of one line of the attack's cell: (the lecture's, the mistaken).
ERRORS = {
    "a wrong eps": ('eps_demo = settings["eval"]["eps_demo"]', "eps_demo = 0.05"),
    "a swapped label": ("targets = (y_eval[confident] + 1) % 10", "targets = y_eval[confident]"),
    "a broken attack": ("x_adv = x_adv - step * gradient.sign()", "x_adv = x_adv + step * gradient.sign()"),
}
# This machine's own arithmetic (every core, torch's best CPU kernels), and
# configurations that change it: the references come from the first.
OWN_ARITHMETIC = {"OMP_NUM_THREADS": str(max(2, os.cpu_count() or 2)), "ATEN_CPU_CAPABILITY": None}
OTHER_ARITHMETIC = {
    "one thread": {**OWN_ARITHMETIC, "OMP_NUM_THREADS": "1"},
    "no vector instructions": {**OWN_ARITHMETIC, "ATEN_CPU_CAPABILITY": "default"},
}
# A marked cell that shows the arithmetic differs: exact, these digits would fail.
LOSS = '# NBVAL_CHECK_OUTPUT\n# NBVAL_TOLERANCE relative\nprint(f"training loss of the last epoch: {history[-1]:.10f}")'


def lecture_2_opening(error: str | None = None) -> nbformat.NotebookNode:
    """Lecture 2 up to its first attack (its first two marked cells), with a
    smaller training budget, a cell that prints the training loss to ten
    decimals, and, if named, one deliberate error."""
    nb = nbformat.read(LECTURE_2, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    setup, trained, attacked = code[2], code[3], code[4]
    assert notebook_runs.is_marked(trained) and notebook_runs.is_marked(attacked)
    assert declared_tolerance(trained.source) is PERCENT and declared_tolerance(attacked.source) is UNDER_ATTACK
    setup.source += "\n" + SMALLER_BUDGET
    if error is not None:
        lecture_line, mistaken_line = ERRORS[error]
        assert lecture_line in attacked.source
        attacked.source = attacked.source.replace(lecture_line, mistaken_line)
    attacked.source = attacked.source[: attacked.source.index("viz.image_grid(")]  # no figure needed
    for cell in (trained, attacked):
        cell.outputs, cell.execution_count = [], None
    nb.cells = [*code[:4], nbformat.v4.new_code_cell(LOSS), attacked]
    return nb


def run(nb: nbformat.NotebookNode, folder: Path, environment: dict) -> Path:
    """Run a notebook with nbval as the build does (no error, marked cells as
    their references), with these environment variables (None: unset), in
    ``folder``; return the executed copy."""
    source, target = folder / "lecture.ipynb", folder / "lecture.executed.ipynb"
    nbformat.write(nb, source)
    with environment_variables(environment), notebook_runs.kernel_environment(ROOT):
        notebook_runs.run_with_nbval(source, target, "quick", timeout=600)
    return target


@contextlib.contextmanager
def environment_variables(values: dict):
    """Set (or, for None, unset) environment variables, and restore them after."""
    old = {name: os.environ.get(name) for name in values}

    def apply(settings: dict) -> None:
        for name, value in settings.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    apply(values)
    try:
        yield
    finally:
        apply(old)


def with_references(nb: nbformat.NotebookNode, executed: Path) -> nbformat.NotebookNode:
    """The notebook with its marked cells' outputs of the executed copy as references."""
    ran = [cell for cell in nbformat.read(executed, as_version=4).cells if cell.cell_type == "code"]
    for cell, run_cell in zip(nb.cells, ran):
        if notebook_runs.is_marked(cell):
            cell.outputs, cell.execution_count = notebook_runs.sanitized(run_cell.outputs), run_cell.execution_count
    return nb


def printed(executed: Path) -> list[str]:
    """What each code cell printed."""
    cells = nbformat.read(executed, as_version=4).cells
    return ["".join(output.get("text", "") for output in cell.outputs) for cell in cells if cell.cell_type == "code"]


@pytest.fixture(scope="module")
def lecture_2_with_references(tmp_path_factory):
    """Lecture 2's opening with references from a run in this machine's own arithmetic."""
    nb = lecture_2_opening()
    executed = run(nb, tmp_path_factory.mktemp("references"), OWN_ARITHMETIC)
    return with_references(nb, executed), printed(executed)


@pytest.mark.parametrize("configuration", OTHER_ARITHMETIC)
def test_the_references_hold_where_the_arithmetic_differs(lecture_2_with_references, configuration, tmp_path):
    nb, stored = lecture_2_with_references
    executed = run(nb, tmp_path, OTHER_ARITHMETIC[configuration])  # raises if nbval fails
    now = printed(executed)
    assert now[4] != stored[4], f"{configuration} trained the same network to the last digit: nothing was shown"
    assert now[3].startswith("clean test accuracy") and now[5]


@pytest.mark.parametrize("error", ERRORS)
def test_a_deliberate_error_in_the_lecture_is_caught(lecture_2_with_references, error, tmp_path):
    nb, _ = lecture_2_with_references
    wrong = lecture_2_opening(error)
    for cell, reference in zip(wrong.cells, nb.cells):
        cell.outputs, cell.execution_count = reference.outputs, reference.execution_count
    with pytest.raises(notebook_runs.OutputsDiffer) as caught:
        run(wrong, tmp_path, OWN_ARITHMETIC)
    (difference,) = caught.value.differences
    assert "code cell 5" in difference  # the attack's cell; the training cells still pass
    assert "numbers beyond the tolerance (±10)" in difference
