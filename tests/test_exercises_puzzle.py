"""The Lecture 5 exercise checks (puzzles, the Puzzle-AE score, the shortcut's
removal) accept right answers, reject plausible wrong ones with specific
feedback, refuse the package's own functions, and leave the global random state
alone (tests/test_exercises.py checks that for every check of the course, with the
right answers of correct_answers() below); the solutions in the instructor notebooks pass them, and the committed
student versions of Exercises 5a and 5b are current. For every exercise
notebook, each "Think about it." question is followed by a model answer that
nbgrader grades by hand, and the points its first cell promises are the points
it grades.

The notebooks themselves are executed by tests/test_notebooks.py (which finds
every exercise notebook on its own), and tests/test_exercises.py checks that all
student versions are current and hide every solution."""

import functools
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from test_exercises import exercise_checks, not_done

from anomaly_edu import attacks, puzzle_ae, puzzles, shortcut, training
from anomaly_edu.grading import ex05a, ex05b

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_student_versions  # noqa: E402

NOTEBOOKS = ["ex05a_puzzles.ipynb", "ex05b_shortcut.ipynb"]
PUZZLE_CHECKS = ["check_apply_puzzle", "check_inverse", "check_normalised_score", "check_remove_shortcut"]


# ------------------------------------------------------------------ right answers, in plain torch


def apply_puzzle_reference(x, perm, grid):
    """Tile by tile with slices: position i (row by row) gets tile perm[i]."""
    n, c, h, w = x.shape
    th, tw = h // grid, w // grid
    out = torch.empty_like(x)
    for i, k in enumerate(torch.as_tensor(perm).tolist()):
        (r, q), (rk, qk) = divmod(i, grid), divmod(k, grid)
        source = x[:, :, rk * th : (rk + 1) * th, qk * tw : (qk + 1) * tw]
        out[:, :, r * th : (r + 1) * th, q * tw : (q + 1) * tw] = source
    return out


def inverse_reference(perm):
    perm = torch.as_tensor(perm)
    undo = torch.empty_like(perm)
    undo[perm] = torch.arange(len(perm))
    return undo


def normalised_score_reference(test_errors, val_errors, aggregation):
    normalised = test_errors / val_errors.mean(dim=0)
    return {"avg": normalised.mean, "max": normalised.amax, "min": normalised.amin}[aggregation](dim=1)


def random_start(x, eps):
    return torch.empty_like(x).uniform_(-eps, eps)


def per_image_mse(model, x, target):
    return (model(x) - target).pow(2).flatten(1).mean(dim=1)


def signed_gradient(model, x, target):
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(per_image_mse(model, x, target).sum(), x)
    return grad.sign()


def remove_shortcut_reference(model, x_puzzled, target, eps):
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1)
    step = start + eps * signed_gradient(model, start, target)
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


def numbered(n, c, h, w):
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)


def test_the_references_agree_with_the_package():
    x = numbered(2, 3, 6, 9)
    for grid in (3,):
        for perm in puzzles.puzzle_permutations(grid)[:5]:
            assert torch.equal(apply_puzzle_reference(x, perm, grid), puzzles.apply_permutation(x, perm, grid))
            assert torch.equal(inverse_reference(perm), puzzles.invert_permutation(perm))
    errors = torch.rand(5, 23)
    for aggregation in ("avg", "max", "min"):
        expected = puzzle_ae.aggregate(errors / errors[:3].mean(0), aggregation)
        assert torch.allclose(normalised_score_reference(errors, errors[:3], aggregation), expected)


# ------------------------------------------------------------------ Exercise 5a.1: apply a puzzle


def apply_puzzle_torch(x, perm, grid):
    """Another right answer: reshape and permute, as in the instructor notebook."""
    n, c, h, w = x.shape
    th, tw = h // grid, w // grid
    tiles = x.reshape(n, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, th, tw)
    tiles = tiles[:, perm].reshape(n, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5)
    return tiles.reshape(n, c, h, w)


@pytest.mark.parametrize("right", [apply_puzzle_reference, apply_puzzle_torch])
def test_apply_puzzle_check_accepts_right_answers(right, capsys):
    ex05a.check_apply_puzzle(right)
    assert "✓" in capsys.readouterr().out


def tile_i_to_perm_i(x, perm, grid):
    """The inverse convention: tile i goes to position perm[i]."""
    return apply_puzzle_reference(x, inverse_reference(perm), grid)


def numbered_by_columns(x, perm, grid):
    return apply_puzzle_reference(x.transpose(2, 3), perm, grid).transpose(2, 3)


def both_mistakes(x, perm, grid):
    return numbered_by_columns(x, inverse_reference(perm), grid)


def in_place(x, perm, grid):
    x.copy_(apply_puzzle_reference(x.clone(), perm, grid))
    return x


def square_tiles(x, perm, grid):
    n, c, h, w = x.shape
    th = tw = h // grid
    tiles = x.reshape(n, c, grid, th, grid, tw).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, th, tw)
    tiles = tiles[:, perm].reshape(n, grid, grid, c, th, tw).permute(0, 3, 1, 4, 2, 5)
    return tiles.reshape(n, c, h, w)


def pixels_mixed(x, perm, grid):
    """Puts the axes back in the wrong order: every tile is transposed inside."""
    n, c, h, w = x.shape
    t = h // grid
    tiles = x.reshape(n, c, grid, t, grid, t).permute(0, 2, 4, 1, 3, 5).reshape(n, grid * grid, c, t, t)
    return tiles[:, perm].reshape(n, grid, grid, c, t, t).permute(0, 3, 1, 5, 2, 4).reshape(n, c, h, w)


def reversed_order(x, perm, grid):
    return apply_puzzle_reference(x, torch.as_tensor(perm).flip(0), grid)


def helper_calling_the_package(x, perm, grid):
    return puzzles.apply_permutation(x, perm, grid)


def calls_a_helper(x, perm, grid):
    return helper_calling_the_package(x, perm, grid)


def imports_the_package(x, perm, grid):
    from anomaly_edu.puzzles import apply_permutation

    return apply_permutation(x, perm, grid)


def closure_over_the_package():
    apply = puzzles.apply_permutation
    return lambda x, perm, grid: apply(x, perm, grid)


def default_argument_from_the_package(x, perm, grid, apply=puzzles.apply_permutation):
    return apply(x, perm, grid)


PACKAGE_WRAPPERS_APPLY = [
    puzzles.apply_permutation,
    lambda x, perm, grid: puzzles.apply_permutation(x, perm, grid),
    functools.partial(puzzles.apply_permutation),
    calls_a_helper,
    imports_the_package,
    closure_over_the_package(),
    default_argument_from_the_package,
]


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (tile_i_to_perm_i, "position perm\\[i\\]"),
        (numbered_by_columns, "column by column; number them row by row"),
        (both_mistakes, "column by column and put tile i at position perm\\[i\\]"),
        (in_place, "changed its input x in place"),
        (square_tiles, "raised RuntimeError.*not always square"),
        (pixels_mixed, "pixels inside the tiles are mixed up"),
        (reversed_order, "every tile is intact but they are in the wrong places"),
        (lambda x, perm, grid: x[:1], "same shape"),
        (lambda x, perm, grid: None, "returned None"),
        (not_done, "not done yet"),
        *[(wrapper, "write it yourself") for wrapper in PACKAGE_WRAPPERS_APPLY],
    ],
)
def test_apply_puzzle_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex05a.check_apply_puzzle(wrong)


# ------------------------------------------------------------------ Exercise 5a.1: the inverse


@pytest.mark.parametrize(
    "right",
    [
        inverse_reference,
        lambda perm: torch.argsort(perm),  # torch is allowed
        lambda perm: [int(i) for i in np.argsort(np.asarray(perm))],  # and numpy, and lists
    ],
)
def test_inverse_check_accepts_right_answers(right, capsys):
    ex05a.check_inverse(right)
    assert "✓" in capsys.readouterr().out


def writes_into_perm(perm):
    """Computes the inverse, but in perm's own memory."""
    perm[perm.clone()] = torch.arange(len(perm))
    return perm


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda perm: perm.clone(), "perm itself"),
        (lambda perm: perm.flip(0), "reversed the order"),
        (lambda perm: perm[perm], "twice"),
        (lambda perm: inverse_reference(perm).float(), "integer tile numbers"),
        (writes_into_perm, "changed perm in place"),
        (lambda perm: inverse_reference(perm)[:-1], "entries"),
        (not_done, "not done yet"),
        (puzzles.invert_permutation, "write it yourself"),
        (lambda perm: puzzles.invert_permutation(perm), "write it yourself"),
    ],
)
def test_inverse_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex05a.check_inverse(wrong)


# ------------------------------------------------------------------ Exercise 5a.2: the normalised score


def normalised_score_numpy(test_errors, val_errors, aggregation):
    normalised = np.asarray(test_errors) / np.asarray(val_errors).mean(axis=0)
    return {"avg": np.mean, "max": np.max, "min": np.min}[aggregation](normalised, axis=1)


@pytest.mark.parametrize("right", [normalised_score_reference, normalised_score_numpy])
def test_normalised_score_check_accepts_right_answers(right, capsys):
    ex05a.check_normalised_score(right)
    assert "✓" in capsys.readouterr().out


def divided_by(normaliser):
    """A score that divides by something else than each column's validation mean."""

    def score(t, v, a):
        normalised = t / normaliser(t, v)
        return {"avg": normalised.mean, "max": normalised.amax, "min": normalised.amin}[a](dim=1)

    return score


def divides_in_place(t, v, a):
    t /= v.mean(0)
    return normalised_score_reference(t, torch.ones_like(v), a)


def always_the_average(t, v, a):
    return normalised_score_reference(t, v, "avg")


def max_and_min_swapped(t, v, a):
    return normalised_score_reference(t, v, {"max": "min", "min": "max"}.get(a, a))


def package_aggregate_closure():
    aggregate = puzzle_ae.aggregate
    return lambda t, v, a: aggregate(t / v.mean(0), a)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (divided_by(lambda t, v: t.mean(0)), "mean of the TEST errors"),
        (divided_by(lambda t, v: v.amax(0)), "MAXIMUM"),
        (divided_by(lambda t, v: v.mean()), "one overall mean"),
        (divided_by(lambda t, v: v.sum(0)), "SUM of the validation errors"),
        (lambda t, v, a: (t / v.mean(0)).sum(1), "summed over the permutations"),
        (divided_by(lambda t, v: 1.0), "not normalised"),
        (divided_by(lambda t, v: 1 / v.mean(0)), "MULTIPLIED"),
        (lambda t, v, a: (t / v.mean(0)).mean(0), "one value per permutation"),
        (lambda t, v, a: t / v.mean(0), "returned the normalised errors"),
        (lambda t, v, a: (t / v.mean(0)).mean(), "one number"),
        (always_the_average, "gives the average"),
        (max_and_min_swapped, "gives the minimum"),
        (divides_in_place, "in place"),
        (divided_by(lambda t, v: v.median(0).values), "expected"),
        (lambda t, v, a: None, "returned None"),
        (not_done, "not done yet"),
        (lambda t, v, a: puzzle_ae.aggregate(t / v.mean(0), a), "write it yourself"),
        (package_aggregate_closure(), "write it yourself"),
    ],
)
def test_normalised_score_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex05a.check_normalised_score(wrong)


# ------------------------------------------------------------------ Exercise 5b.1: removing the shortcut


def remove_shortcut_rand_like(model, x_puzzled, target, eps):
    """Right too: the random start from rand_like, the gradient by backward(), the batch mean."""
    start = (x_puzzled + (2 * torch.rand_like(x_puzzled) - 1) * eps).clamp(0, 1).requires_grad_(True)
    torch.nn.functional.mse_loss(model(start), target).backward()
    x_adv = start.detach() + eps * start.grad.sign()
    return torch.min(torch.max(x_adv, x_puzzled - eps), x_puzzled + eps).clamp(0, 1)


def remove_shortcut_numpy_noise(model, x_puzzled, target, eps):
    """Right too: numpy's generator for the random start, no clamp before the step."""
    noise = torch.from_numpy(np.random.uniform(-eps, eps, size=tuple(x_puzzled.shape))).to(x_puzzled)
    start = x_puzzled + noise
    step = start + eps * signed_gradient(model, start, target)
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


@pytest.mark.parametrize("right", [remove_shortcut_reference, remove_shortcut_rand_like, remove_shortcut_numpy_noise])
def test_remove_shortcut_check_accepts_right_answers(right, capsys):
    ex05b.check_remove_shortcut(right)
    assert "✓" in capsys.readouterr().out


def counted_twice(model, x_puzzled, target, eps):
    """The published code's first mistake: the projected perturbation, which holds
    the random start already, is added to the randomly started image."""
    noise = random_start(x_puzzled, eps)
    start = (x_puzzled + noise).clamp(0, 1)
    delta = (noise + eps * signed_gradient(model, start, target)).clamp(-eps, eps)
    return (start + delta).clamp(0, 1)


def target_changed_in_place(model, x_puzzled, target, eps):
    """The published code's second mistake: the random start lands in the target too."""
    noise = random_start(x_puzzled, eps)
    target += noise
    start = (x_puzzled + noise).clamp(0, 1)
    step = start + eps * signed_gradient(model, start, target)
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


def x_puzzled_changed_in_place(model, x_puzzled, target, eps):
    start = x_puzzled
    start += random_start(x_puzzled, eps)
    step = start + eps * signed_gradient(model, start, target)
    return step.clamp(0, 1)


def no_projection(model, x_puzzled, target, eps):
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1)
    return (start + eps * signed_gradient(model, start, target)).clamp(0, 1)


def no_clamp(model, x_puzzled, target, eps):
    start = x_puzzled + random_start(x_puzzled, eps)
    step = start + eps * signed_gradient(model, start, target)
    return x_puzzled + (step - x_puzzled).clamp(-eps, eps)


def descent(model, x_puzzled, target, eps):
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1)
    step = start - eps * signed_gradient(model, start, target)
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


def no_random_start(model, x_puzzled, target, eps):
    return (x_puzzled + eps * signed_gradient(model, x_puzzled, target)).clamp(0, 1)


def gradient_at_x_puzzled(model, x_puzzled, target, eps):
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1)
    step = start + eps * signed_gradient(model, x_puzzled, target)
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


def half_step(model, x_puzzled, target, eps):
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1)
    step = start + eps / 2 * signed_gradient(model, start, target)
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


def step_from_x_puzzled(model, x_puzzled, target, eps):
    """The gradient at the random start, but the step from x_puzzled: the random start is lost."""
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1)
    return (x_puzzled + eps * signed_gradient(model, start, target)).clamp(0, 1)


def step_from_x_puzzled_unclamped(model, x_puzzled, target, eps):
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1)
    return x_puzzled + eps * signed_gradient(model, start, target)


def one_sided_start(model, x_puzzled, target, eps):
    start = (x_puzzled + eps * torch.rand_like(x_puzzled)).clamp(0, 1)
    step = start + eps * signed_gradient(model, start, target)
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


def projected_around_the_start(model, x_puzzled, target, eps):
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1)
    step = start + eps * signed_gradient(model, start, target)
    return (start + (step - start).clamp(-eps, eps)).clamp(0, 1)


def raw_gradient(model, x_puzzled, target, eps):
    start = (x_puzzled + random_start(x_puzzled, eps)).clamp(0, 1).requires_grad_(True)
    (grad,) = torch.autograd.grad(per_image_mse(model, start, target).sum(), start)
    step = start.detach() + eps * grad
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


def private_generator(model, x_puzzled, target, eps):
    """A random start that the check cannot reproduce (a generator of its own)."""
    noise = torch.empty_like(x_puzzled).uniform_(-eps, eps, generator=torch.Generator().manual_seed(123))
    start = (x_puzzled + noise).clamp(0, 1)
    step = start + eps * signed_gradient(model, start, target)
    return (x_puzzled + (step - x_puzzled).clamp(-eps, eps)).clamp(0, 1)


def not_detached(model, x_puzzled, target, eps):
    return remove_shortcut_reference(model, x_puzzled, target, eps).requires_grad_(True)


def imports_the_shortcut(model, x_puzzled, target, eps):
    import anomaly_edu.shortcut

    return anomaly_edu.shortcut.remove_shortcut(model, x_puzzled, target, eps)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (counted_twice, "counted the random start twice"),
        (target_changed_in_place, "changed target in place"),
        (x_puzzled_changed_in_place, "changed x_puzzled in place"),
        (no_projection, "project the perturbation back onto the ball"),
        (no_clamp, "outside \\[0, 1\\]"),
        (descent, "DOWN the loss"),
        (no_random_start, "no-op.*random point"),
        (gradient_at_x_puzzled, "gradient at the random start"),
        (half_step, "ONE step of size eps"),
        (step_from_x_puzzled, "step from x_puzzled.*random start is lost"),
        (step_from_x_puzzled_unclamped, "step from x_puzzled.*random start is lost"),
        (one_sided_start, "one side only"),
        (projected_around_the_start, "project the perturbation back onto the ball"),
        (raw_gradient, "along the sign of the gradient"),
        (private_generator, "do not land where"),
        # shifts every pixel up by eps: ignores the model, its gradient and the random start
        (lambda m, xp, t, e: (xp + e).clamp(0, 1), "ignores the model and its gradient"),
        (not_detached, "does not require gradients"),
        (lambda m, xp, t, e: None, "returned None"),
        (not_done, "not done yet"),
        (shortcut.remove_shortcut, "write it yourself"),
        (lambda m, xp, t, e: shortcut.remove_shortcut(m, xp, t, e), "write it yourself"),
        (lambda m, xp, t, e: attacks.pgd(m, xp, t, eps=e, alpha=e, steps=1, random_start=True), "write it yourself"),
        (imports_the_shortcut, "write it yourself"),
    ],
)
def test_remove_shortcut_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex05b.check_remove_shortcut(wrong)


def test_the_landing_point_is_the_package_perturbation_under_the_checks_seed():
    """The check compares exact values: where the package's remove_shortcut lands
    when the generators are seeded as the check seeds them."""
    eps = 0.1
    for model, x, target in ex05b._cases(torch.Generator().manual_seed(6)):
        with training.seeded(ex05b._SEED):
            expected = shortcut.remove_shortcut(model, x, target, eps)
        u = ex05b._random_starts(tuple(x.shape), eps)[0]
        assert torch.allclose(ex05b._landing_point(model, x, target, eps, u), expected, atol=1e-6)


def test_remove_shortcut_check_is_not_fooled_by_the_global_seed():
    """The check seeds the student's random start itself: its verdict is the same
    whatever the notebook drew before."""
    for seed in range(5):
        torch.manual_seed(seed)
        ex05b.check_remove_shortcut(remove_shortcut_reference)
        torch.manual_seed(seed)
        with pytest.raises(AssertionError, match="counted the random start twice"):
            ex05b.check_remove_shortcut(counted_twice)


# ------------------------------------------------------------------ right answers for the shared tests


def correct_answers():
    """For every Lecture 5 check, a call with a right answer."""
    return {
        "check_apply_puzzle": lambda: ex05a.check_apply_puzzle(apply_puzzle_reference),
        "check_inverse": lambda: ex05a.check_inverse(inverse_reference),
        "check_normalised_score": lambda: ex05a.check_normalised_score(normalised_score_reference),
        "check_remove_shortcut": lambda: ex05b.check_remove_shortcut(remove_shortcut_reference),
    }


def test_every_lecture5_check_is_here():
    assert set(PUZZLE_CHECKS) == set(correct_answers())
    assert set(PUZZLE_CHECKS) <= set(exercise_checks())


# ------------------------------------------------------------------ the notebooks


def solution_namespace(name):
    """Run the instructor notebook's parameters and imports cells, then its
    answer cells, and return the namespace (no data, no training)."""
    nb = nbformat.read(ROOT / "exercises" / "solutions" / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    parameters = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    namespace = {}
    for cell in code[parameters : parameters + 2]:
        exec(cell.source, namespace)
    for cell in code:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            exec(cell.source, namespace)
    return nb, namespace


def graded_cells(nb, cell_type):
    """The cells of ``nb`` that nbgrader grades, of one type: "code" for the
    check cells (graded automatically), "markdown" for the written answers
    (graded by hand)."""
    return [c for c in nb.cells if c.cell_type == cell_type and c.metadata.get("nbgrader", {}).get("grade")]


def assert_the_instructor_solutions_pass_their_checks(name, capsys):
    """Every graded check cell of the instructor notebook ``name`` passes with
    the notebook's own answers (shared by the exercise tests of Lectures 5-7)."""
    nb, namespace = solution_namespace(name)
    graded = graded_cells(nb, "code")
    assert graded
    for cell in graded:
        exec(cell.source, namespace)
    assert capsys.readouterr().out.count("✓") == len(graded)


def assert_the_student_version_is_current_and_has_the_stubs(name):
    """The committed student version of ``name`` is what the generator makes
    now, with no solution left, one stub per graded check, only check calls in
    the graded code cells, and an empty answer for every question graded by
    hand, worth what the instructor version says (shared by the exercise tests
    of Lectures 5-7)."""
    source = ROOT / "exercises" / "solutions" / name
    target = ROOT / "exercises" / name
    instructor = nbformat.read(source, as_version=4)
    expected = nbformat.writes(make_student_versions.student_version(instructor)) + "\n"
    assert target.read_text() == expected, "run `make student` (scripts/make_student_versions.py)"
    student = nbformat.read(target, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    graded = graded_cells(student, "code")
    assert "BEGIN SOLUTION" not in text and code.count("raise NotImplementedError()") == len(graded)
    for cell in graded:
        assert cell.source.startswith("checks.check_")
    answers = graded_cells(student, "markdown")
    for cell in answers:
        assert cell.source == "**Your answer.**\n\nYOUR ANSWER HERE"
        assert cell.metadata["nbgrader"]["solution"] and cell.metadata["nbgrader"]["points"] > 0
    points = [(c.metadata["nbgrader"]["grade_id"], c.metadata["nbgrader"]["points"]) for c in answers]
    assert points == [
        (c.metadata["nbgrader"]["grade_id"], c.metadata["nbgrader"]["points"])
        for c in graded_cells(instructor, "markdown")
    ]


THINK_ABOUT_IT = "**Think about it.**"
EXERCISES = sorted(p.name for p in (ROOT / "exercises" / "solutions").glob("*.ipynb"))


@pytest.mark.parametrize("name", EXERCISES)
def test_every_think_about_it_question_has_a_model_answer_graded_by_hand(name):
    """Each "Think about it." cell of an instructor notebook is followed by an
    answer cell that nbgrader grades by hand (a graded, unlocked markdown
    solution cell, grade_id "think-about-it", then "think-about-it-2", ...),
    whose solution block holds a model answer and a rubric worth the cell's
    points; grade ids are unique within a notebook, as nbgrader requires."""
    nb = nbformat.read(ROOT / "exercises" / "solutions" / name, as_version=4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), f"{name}: grade ids repeat: {sorted(ids)}"
    questions = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith(THINK_ABOUT_IT)]
    assert questions, f"{name} asks no question"
    for k, i in enumerate(questions, start=1):
        grade_id = "think-about-it" if k == 1 else f"think-about-it-{k}"
        assert i + 1 < len(nb.cells), f"{name}: question {k} has no answer cell after it"
        answer = nb.cells[i + 1]
        grading = answer.metadata.get("nbgrader", {})
        assert answer.cell_type == "markdown", f"{name}: question {k} is followed by a {answer.cell_type} cell"
        assert grading.get("grade_id") == grade_id, f"{name}: question {k}'s answer is not {grade_id!r}"
        assert grading["grade"] and grading["solution"] and not grading["locked"] and not grading["task"]
        assert grading["schema_version"] == 3
        points = grading["points"]
        assert isinstance(points, int) and points > 0
        head, _, solution = answer.source.partition("### BEGIN SOLUTION\n")
        assert head == "**Your answer.**\n\n" and solution.endswith("\n### END SOLUTION"), answer.source
        model, _, rubric = solution.partition(f"\n\n*Rubric ({points} points).* ")
        assert model.startswith("*Model answer.* ") and len(model) > 200, f"{name}: no model answer to question {k}"
        assert len(rubric) > 50, f"{name}: no rubric worth {points} points for question {k}"


@pytest.mark.parametrize("name", EXERCISES)
def test_the_intro_states_the_points_that_are_graded(name):
    """The points that an exercise's first cell promises, "(4 points)" for each
    task and for the questions, add up to the points of its graded cells."""
    nb = nbformat.read(ROOT / "exercises" / "solutions" / name, as_version=4)
    promised = [int(n) for n in re.findall(r"\((\d+) points\b", nb.cells[0].source)]
    graded = [c.metadata["nbgrader"]["points"] for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert promised and sum(promised) == sum(graded), (promised, graded)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_instructor_solutions_pass_their_checks(name, capsys):
    assert_the_instructor_solutions_pass_their_checks(name, capsys)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_student_version_is_current_and_has_the_stubs(name):
    assert_the_student_version_is_current_and_has_the_stubs(name)
