"""Checks of Exercise 5a (Lecture 5): applying a puzzle, its inverse, and the
normalised puzzle score."""

from __future__ import annotations

__lecture__ = 5

import numpy as np
import torch

from ..metrics import to_numpy
from ..puzzles import apply_permutation, invert_permutation, to_tiles
from .machinery import call_student, call_with_feedback, passed, refuse_the_package


def _numbered_images(n: int, c: int, h: int, w: int) -> torch.Tensor:
    """Images whose pixels all differ, so that every move can be traced."""
    return torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w) / (n * c * h * w)


def _numbered_by_columns(x: torch.Tensor, perm: torch.Tensor, grid: int) -> torch.Tensor:
    """What ``apply_permutation`` gives when the tiles are numbered column by column."""

    return apply_permutation(x.transpose(-1, -2), perm, grid).transpose(-1, -2)


def check_apply_puzzle(apply_puzzle) -> None:
    """Exercise 5a.1: ``apply_puzzle(x, perm, grid)`` cuts every image of ``x``
    (N, C, H, W) into grid x grid tiles numbered row by row and puts tile
    ``perm[i]`` at position ``i``; it returns a new tensor and leaves ``x`` alone."""

    task = "Exercise 5a.1 (apply a puzzle)"
    refuse_the_package(task, apply_puzzle)
    cases = [
        # a 4-cycle: the perm, its inverse and both with tiles numbered by columns all differ
        (_numbered_images(2, 3, 4, 4), torch.tensor([1, 2, 3, 0]), 2),
        (_numbered_images(1, 1, 6, 9), torch.tensor([4, 0, 8, 3, 1, 5, 2, 7, 6]), 3),  # tiles of 2 x 3 pixels
    ]
    for x, perm, grid in cases:
        where = f"with grid={grid}, images of shape {tuple(x.shape)} and perm {perm.tolist()}"
        x_before, perm_before = x.clone(), perm.clone()
        hint = (
            ". Tiles are H // grid pixels high and W // grid pixels wide (not always square), and the grid is "
            "not always 2"
        )
        got = call_with_feedback(task, where, hint, apply_puzzle, x, perm, grid)
        if not torch.equal(x, x_before):
            raise AssertionError(
                f"{task}: your function changed its input x in place; build a new tensor (indexing with a "
                f"tensor of tile numbers does) and leave x as it was"
            )
        if not torch.equal(perm, perm_before):
            raise AssertionError(f"{task}: your function changed perm in place; leave it as it was")
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{task}: return a torch tensor, got {type(got).__name__}")
        got = got.detach()
        if got.shape != x.shape:
            raise AssertionError(
                f"{task}: {where} expected images of the same shape {tuple(x.shape)}, got {tuple(got.shape)}"
            )
        expected = apply_permutation(x, perm, grid)
        if torch.equal(got, expected):
            continue
        inverse = invert_permutation(perm)
        if torch.equal(got, apply_permutation(x, inverse, grid)):
            raise AssertionError(
                f"{task}: {where} you put tile i at position perm[i]; the course's convention is the "
                f"other way round: position i gets tile perm[i] (output tile i = input tile perm[i])"
            )
        if torch.equal(got, _numbered_by_columns(x, perm, grid)):
            raise AssertionError(
                f"{task}: {where} you numbered the tiles column by column; number them row by row "
                f"(0 top left, 1 to its right, ..., grid * grid - 1 bottom right)"
            )
        if torch.equal(got, _numbered_by_columns(x, inverse, grid)):
            raise AssertionError(
                f"{task}: {where} you numbered the tiles column by column and put tile i at position "
                f"perm[i]; number them row by row, and let position i get tile perm[i]"
            )
        tiles_in, tiles_out = to_tiles(x, grid).flatten(2), to_tiles(got, grid).flatten(2)
        intact = all(any(torch.equal(t, s) for s in tiles_in[n]) for n in range(len(x)) for t in tiles_out[n])
        if intact:
            raise AssertionError(
                f"{task}: {where} every tile is intact but they are in the wrong places; output "
                f"position i (row by row) must hold input tile perm[i]"
            )
        raise AssertionError(
            f"{task}: {where} the pixels inside the tiles are mixed up: cut each image into "
            f"(grid, H // grid, grid, W // grid) blocks, move whole tiles, and put them back in the same "
            f"order of axes (or copy tile by tile with slices)"
        )
    passed(task)


def check_inverse(inverse) -> None:
    """Exercise 5a.1: ``inverse(perm)`` is the permutation that undoes ``perm``:
    applying ``perm`` and then ``inverse(perm)`` puts every tile back."""

    task = "Exercise 5a.1 (inverse permutation)"
    refuse_the_package(task, inverse)
    # a 4-cycle, a 3-cycle, and a 3x3 puzzle: none is its own inverse
    for perm in (torch.tensor([1, 2, 3, 0]), torch.tensor([2, 0, 1, 3]), torch.tensor([4, 0, 8, 3, 1, 5, 2, 7, 6])):
        before = perm.clone()
        got = call_student(task, inverse, perm)
        if not torch.equal(perm, before):
            raise AssertionError(f"{task}: your function changed perm in place; return a new tensor")
        got = torch.as_tensor(got)
        if got.is_floating_point():
            raise AssertionError(
                f"{task}: you returned {got.dtype} numbers; return integer tile numbers (e.g. a tensor "
                f"of dtype torch.long), since they are used as indices"
            )
        expected = invert_permutation(perm)
        if got.shape != expected.shape:
            raise AssertionError(
                f"{task}: for perm {perm.tolist()} expected {len(perm)} entries, got shape {tuple(got.shape)}"
            )
        if torch.equal(got, expected):
            continue
        hint = ""
        if torch.equal(got, perm):
            hint = " You returned perm itself: only a swap of two tiles is its own inverse."
        elif torch.equal(got, perm.flip(0)):
            hint = " You reversed the order of the entries; that is not the inverse."
        elif torch.equal(got, perm[perm]):
            hint = " You applied perm twice (perm[perm])."
        raise AssertionError(
            f"{task}: for perm {perm.tolist()} expected {expected.tolist()}, got {got.tolist()}.{hint} "
            f"The inverse says where each tile went: inverse[perm[i]] = i for every i"
        )
    passed(task)


def _aggregated(errors: torch.Tensor, aggregation: str) -> np.ndarray:
    reduce = {"avg": torch.mean, "max": torch.amax, "min": torch.amin}[aggregation]
    return reduce(errors, dim=1).numpy()


def check_normalised_score(normalised_score) -> None:
    """Exercise 5a.2: ``normalised_score(test_errors, val_errors, aggregation)``
    divides each permutation's (column's) errors by that permutation's mean
    error on the normal validation images, then aggregates each test image's
    row with "avg", "max" or "min"."""
    task = "Exercise 5a.2 (normalised score)"
    refuse_the_package(task, normalised_score)
    g = torch.Generator().manual_seed(5)
    n_test, n_val, n_perms = 6, 9, 4  # all different, so that a wrong axis shows
    scale = torch.tensor([0.5, 2.0, 8.0, 32.0])  # permutations of very different difficulty
    val = (0.2 + torch.rand(n_val, n_perms, generator=g)) * scale
    test = (0.1 + 1.5 * torch.rand(n_test, n_perms, generator=g)) * scale
    for aggregation in ("avg", "max", "min"):
        test_in, val_in = test.clone(), val.clone()
        got = call_student(task, normalised_score, test_in, val_in, aggregation)
        if not (torch.equal(test_in, test) and torch.equal(val_in, val)):
            raise AssertionError(
                f"{task}: your function changed test_errors or val_errors in place (e.g. with /=); "
                f"compute new tensors and leave the inputs as they were"
            )
        got = to_numpy(got).astype(float)
        where = f'with aggregation="{aggregation}"'
        if got.shape == ():
            raise AssertionError(f"{task}: {where} you returned one number; return one score per test image")
        if got.shape == (n_perms,):
            raise AssertionError(
                f"{task}: {where} you returned one value per permutation; aggregate each test image's row "
                f"(over the permutations, dim=1) to get one score per image, shape ({n_test},)"
            )
        if got.shape == (n_test, n_perms):
            raise AssertionError(
                f"{task}: {where} you returned the normalised errors; aggregate each row to one score per image"
            )
        if got.shape != (n_test,):
            raise AssertionError(f"{task}: {where} expected shape ({n_test},), got {got.shape}")
        expected = _aggregated(test / val.mean(0), aggregation)
        if np.allclose(got, expected, rtol=1e-5):
            continue
        wrong = [
            (
                _aggregated(test / test.mean(0), aggregation),
                "you divided by the mean of the TEST errors; "
                "divide by the mean errors of the normal validation images (val_errors)",
            ),
            (
                _aggregated(test / val.amax(0), aggregation),
                "you divided by the MAXIMUM validation error; divide by the MEAN",
            ),
            (
                _aggregated(test / val.mean(), aggregation),
                "you divided by one overall mean of val_errors; "
                "each permutation (column) is divided by ITS OWN mean over the validation images",
            ),
            (
                _aggregated(test / val.sum(0), aggregation),
                "you divided by the SUM of the validation errors; divide by their MEAN",
            ),
            (
                _aggregated(test, aggregation),
                "your scores are not normalised: divide each column by the validation mean of that column first",
            ),
            (_aggregated(test * val.mean(0), aggregation), "you MULTIPLIED by the validation means; divide"),
        ]
        if aggregation == "avg":
            wrong.append(
                ((test / val.mean(0)).sum(1).numpy(), 'for "avg" you summed over the permutations; take the MEAN')
            )
        else:
            avg = _aggregated(test / val.mean(0), "avg")
            wrong.append((avg, f'your "{aggregation}" gives the average; use the aggregation you are given'))
            other = "min" if aggregation == "max" else "max"
            wrong.append((_aggregated(test / val.mean(0), other), f'your "{aggregation}" gives the {other}imum'))
        for answer, hint in wrong:
            if np.allclose(got, answer, rtol=1e-5):
                raise AssertionError(f"{task}: {where} {hint}")
        raise AssertionError(f"{task}: {where} expected {np.round(expected, 4)}, got {np.round(got, 4)}")
    passed(task)
