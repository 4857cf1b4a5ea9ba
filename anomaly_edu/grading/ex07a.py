"""Checks of Exercise 7a (Lecture 7): Puzzle-AE's per-puzzle errors, the score
the attack climbs."""

from __future__ import annotations

__lecture__ = 7

import torch

from ..puzzles import apply_permutation
from .machinery import call_refusing_the_package, passed


class _TinyPuzzleSolver(torch.nn.Module):
    """A small fixed network in Puzzle-AE's place (image in, image out): a
    convolution, tanh, and a convolution back to the image's channels."""

    def __init__(self, channels: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.first = torch.nn.Parameter(0.5 * torch.randn(4, channels, 3, 3, generator=g))
        self.second = torch.nn.Parameter(0.5 * torch.randn(channels, 4, 3, 3, generator=g))

    def forward(self, x):
        hidden = torch.tanh(torch.nn.functional.conv2d(x, self.first, padding=1))
        return torch.sigmoid(torch.nn.functional.conv2d(hidden, self.second, padding=1))


def _puzzle_errors_answer(network, x, perms, grid, normalisers, mistake=None) -> torch.Tensor:
    """Exercise 7a.1's answer in plain torch (one puzzle at a time, so that it
    does not rest on the batched route students write), or the answer with one
    ``mistake`` (a key of :data:`_PUZZLE_ERROR_MISTAKES`)."""
    columns = []
    for perm in perms:
        puzzled = apply_permutation(x, perm, grid)
        target = puzzled if mistake == "puzzled target" else x
        squared = (network(puzzled) - target) ** 2
        columns.append(squared.flatten(1).sum(1) if mistake == "sum" else squared.flatten(1).mean(1))
    errors = torch.stack(columns, dim=1)  # (N, P)
    if mistake == "puzzle-major":  # the network's N * P answers read back as (P, N)
        restored = torch.stack([network(apply_permutation(x, perm, grid)) for perm in perms], dim=1)
        wrong = restored.flatten(0, 1).view(len(perms), len(x), *x.shape[1:]).transpose(0, 1)
        errors = (wrong - x.unsqueeze(1)).pow(2).flatten(2).mean(2)
    if mistake == "not normalised":
        return errors
    return errors * normalisers if mistake == "times" else errors / normalisers


_PUZZLE_ERROR_MISTAKES = {
    "puzzled target": (
        "you compare the network's answer with the PUZZLED image; Puzzle-AE's task is to solve the puzzle, so its "
        "error is measured against the ORIGINAL image x (this is the mutant that issue 23's tests catch: a "
        "network that copies its input would score zero)"
    ),
    "sum": "you SUM the squared errors over the pixels; take their MEAN, as Puzzle-AE's score does",
    "not normalised": "your errors are not normalised: divide each puzzle's column by its normaliser",
    "times": "you MULTIPLIED by the normalisers; divide by them",
    "puzzle-major": (
        "your errors belong to the wrong (image, puzzle) pairs: the network's answers come back in the order "
        "you put the puzzled images in. If you flattened (N, P, C, H, W) to (N * P, C, H, W), view the answers "
        "as (N, P, C, H, W) again, not as (P, N, ...)"
    ),
}


def _puzzle_error_cases() -> list[tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor, int, torch.Tensor]]:
    """(description, network, x, perms, grid, normalisers) of Exercise 7a.1's
    check. Together they tell every mistake of :data:`_PUZZLE_ERROR_MISTAKES`
    apart (tests/test_exercises_stress.py checks that)."""
    g = torch.Generator().manual_seed(77)
    grey = torch.rand(4, 1, 8, 8, generator=g)
    perms_2 = torch.stack([torch.randperm(4, generator=g) for _ in range(5)])
    perms_2[0] = torch.tensor([1, 0, 2, 3])  # a swap of two tiles
    colour = torch.rand(3, 3, 6, 6, generator=g)
    perms_3 = torch.stack([torch.randperm(9, generator=g) for _ in range(2)])
    return [
        (
            "4 grey 8x8 images, 5 puzzles of a 2x2 grid",
            _TinyPuzzleSolver(1, seed=78),
            grey,
            perms_2,
            2,
            0.05 + torch.rand(5, generator=g),
        ),
        (
            "3 colour 6x6 images, 2 puzzles of a 3x3 grid",
            _TinyPuzzleSolver(3, seed=79),
            colour,
            perms_3,
            3,
            torch.tensor([0.2, 3.0]),
        ),
    ]


def check_puzzle_errors(puzzle_errors) -> None:
    """Exercise 7a.1: ``puzzle_errors(network, x, perms, grid, normalisers)``
    returns the (N, P) normalised errors of Puzzle-AE's score: for every image
    and every puzzle, the mean squared error between the network's answer to
    the puzzled image and the ORIGINAL image, divided by that puzzle's
    normaliser, as a tensor that gradients flow through back to ``x``. The
    puzzles may come from ``puzzles.apply_permutations`` (Lecture 5); the rest
    of the package is off limits."""
    task = "Exercise 7a.1 (Puzzle-AE's errors, differentiable)"
    allowed = ("apply_permutations", "apply_permutation")
    for description, network, x, perms, grid, normalisers in _puzzle_error_cases():
        where = f"on {description}"
        n, p = len(x), len(perms)
        x_in = x.clone().requires_grad_(True)
        got = call_refusing_the_package(task, puzzle_errors, network, x_in, perms, grid, normalisers, allowed=allowed)
        if not isinstance(got, torch.Tensor):
            raise AssertionError(
                f"{task}: {where} you returned a {type(got).__name__}; return a torch tensor, so that the attack "
                "can take its gradient (no .numpy(), .item() or .tolist())"
            )
        if not torch.equal(x_in.detach(), x):
            raise AssertionError(f"{task}: {where} your function changed x in place; leave the images as they were")
        if got.shape == (p, n) and n != p:
            raise AssertionError(
                f"{task}: {where} you returned shape ({p}, {n}): one row per puzzle. Return one row per image, "
                f"one column per puzzle: shape ({n}, {p})"
            )
        if got.shape != (n, p):
            raise AssertionError(f"{task}: {where} expected shape ({n}, {p}) (images, puzzles), got {tuple(got.shape)}")
        with torch.no_grad():
            expected = _puzzle_errors_answer(network, x, perms, grid, normalisers)
            if not torch.allclose(got.detach(), expected, rtol=1e-4, atol=1e-7):
                for mistake, hint in _PUZZLE_ERROR_MISTAKES.items():
                    answer = _puzzle_errors_answer(network, x, perms, grid, normalisers, mistake)
                    if answer.shape == got.shape and torch.allclose(got.detach(), answer, rtol=1e-4, atol=1e-7):
                        raise AssertionError(f"{task}: {where} {hint}")
                raise AssertionError(
                    f"{task}: {where} expected {expected.numpy().round(4)}, got {got.detach().numpy().round(4)}. "
                    "For each image and each puzzle: puzzle the image, run the network, take the mean squared "
                    "error against the original image, divide by that puzzle's normaliser"
                )
        if not got.requires_grad:
            raise AssertionError(
                f"{task}: {where} your errors carry no gradient (computed under torch.no_grad(), or detached): the "
                "attack needs the gradient of the score with respect to the images, so compute them with gradients on"
            )
        weights = torch.linspace(0.5, 1.5, n * p).view(n, p)  # every entry counts, each by its own weight
        (gradient,) = torch.autograd.grad((got * weights).sum(), x_in, allow_unused=True)
        x_ref = x.clone().requires_grad_(True)
        (expected_gradient,) = torch.autograd.grad(
            (_puzzle_errors_answer(network, x_ref, perms, grid, normalisers) * weights).sum(), x_ref
        )
        if gradient is None or not torch.allclose(gradient, expected_gradient, rtol=1e-3, atol=1e-6):
            raise AssertionError(
                f"{task}: {where} the values are right but the gradient with respect to x is not: gradients must "
                "reach x through both the puzzled input and the target (x itself), so do not detach either"
            )
    passed(task, "Your errors match, and their gradient reaches the images through the puzzle and the target.")
