"""Checks of Exercise 5b (Lecture 5): the shortcut-removing perturbation."""

from __future__ import annotations

__lecture__ = 5

import numpy as np
import torch

from ..training import seeded
from .machinery import call_student, passed, refuse_the_package


class _Affine(torch.nn.Module):
    """model(x) = weight * x + bias, with two scalar parameters (no randomness)."""

    def __init__(self, weight: float, bias: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(float(weight)))
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))

    def forward(self, x):
        return self.weight * x + self.bias


_SEED = 7  # the seed of the generators while the student's function runs


def _call_seeded(task: str, fn, *args):
    """Call the student's function with seeded random generators, then give the
    notebook's generators back the state they had (the student's random start
    must not change what the notebook draws next)."""
    with seeded(_SEED):
        return call_student(task, fn, *args)


def _random_starts(shape: tuple, eps: float) -> list[torch.Tensor]:
    """The random starts u that a right answer draws while the check's seed is
    set: from torch's generator (``torch.empty_like(x).uniform_(-eps, eps)``,
    ``torch.rand_like``) or from NumPy's global one (``np.random.uniform``)."""
    with seeded(_SEED):
        from_torch = torch.empty(shape).uniform_(-eps, eps)
    with seeded(_SEED):
        from_numpy = torch.from_numpy(np.random.uniform(-eps, eps, size=shape)).float()
    return [from_torch, from_numpy]


def _landing_point(model, x, target, eps: float, u: torch.Tensor) -> torch.Tensor:
    """Where the specification's perturbation lands from the random start u:
    x_0 = clip(x + u), one step of eps along the sign of the gradient of the
    per-image mean squared error at x_0, projected onto the ball around x and
    into [0, 1]. Plain torch: the check does not rest on the package."""
    start = (x + u).clamp(0, 1).requires_grad_(True)
    with torch.enable_grad():
        loss = (model(start) - target).pow(2).flatten(1).mean(1).sum()
        (gradient,) = torch.autograd.grad(loss, start)
    step = start.detach() + eps * gradient.sign()
    return (x + (step - x).clamp(-eps, eps)).clamp(0, 1)


def _perturbed(task: str, remove_shortcut, model, x, target, eps: float) -> torch.Tensor:
    """The student's perturbed images for one case, after checking that the
    inputs are left alone and that the answer is a tensor of images."""
    x_in, target_in = x.clone(), target.clone()
    got = _call_seeded(task, remove_shortcut, model, x_in, target_in, eps)
    if not torch.equal(target_in, target):
        raise AssertionError(
            f"{task}: your function changed target in place (the published code's second mistake): the "
            f"attack then aims at the wrong image, and the training loss compares the output with a "
            f"changed target. Build new tensors (x_puzzled + noise, not +=)"
        )
    if not torch.equal(x_in, x):
        raise AssertionError(
            f"{task}: your function changed x_puzzled in place; start from a new tensor (x_puzzled + noise)"
        )
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{task}: return a torch tensor, got {type(got).__name__}")
    if got.shape != x.shape:
        raise AssertionError(f"{task}: expected images of shape {tuple(x.shape)}, got {tuple(got.shape)}")
    if got.requires_grad:
        raise AssertionError(f"{task}: return a tensor that does not require gradients (end with .detach())")
    return got


def _cases(g: torch.Generator) -> list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]]:
    """(model, x_puzzled, target) of the check's two cases."""
    # Case 1: model(x) = 1 - x and a target of 0.9 everywhere: for every pixel in
    # reach the loss grows with the pixel, so the step goes up: the perturbation
    # is min(u + eps, eps) >= 0 for a random start u. Image 0's first row is
    # white (1.0), where only the clamp to [0, 1] keeps the pixels in range.
    x = 0.3 + 0.6 * torch.rand(3, 1, 6, 6, generator=g)
    x[0, 0, 0] = 1.0
    first = (_Affine(-1.0, 1.0), x, torch.full_like(x, 0.9))
    # Case 2: model(x) = x and target = x_puzzled: the loss and its gradient are
    # zero at x_puzzled itself, so without a random start nothing moves; from a
    # random start the gradient points away from x_puzzled, and the step (then
    # the projection) puts every pixel on the edge of the ball.
    x = 0.2 + 0.6 * torch.rand(3, 1, 6, 6, generator=g)
    second = (_Affine(1.0, 0.0), x, x.clone())
    return [first, second]


def check_remove_shortcut(remove_shortcut) -> None:
    """Exercise 5b.1: ``remove_shortcut(model, x_puzzled, target, eps)``: a
    uniform random start in the L-inf ball of radius eps around ``x_puzzled``,
    one signed-gradient step of size eps that increases the per-image mean
    squared error between ``model(x)`` and ``target``, projected back onto the
    ball and into [0, 1]; neither ``x_puzzled`` nor ``target`` changes. With the
    generators seeded, the images must land where the specification's steps land
    from the same random start."""
    task = "Exercise 5b.1 (removing the shortcut)"
    refuse_the_package(task, remove_shortcut)
    eps = 0.1
    cases = _cases(torch.Generator().manual_seed(6))
    outputs = [_perturbed(task, remove_shortcut, model, x, target, eps).detach() for model, x, target in cases]
    for u in _random_starts(tuple(cases[0][1].shape), eps):
        landing = [_landing_point(model, x, target, eps, u) for model, x, target in cases]
        if all(torch.allclose(got, expected, atol=1e-5) for got, expected in zip(outputs, landing)):
            passed(task)
            return
    (_, x_first, _), (_, x_second, _) = cases
    _check_the_random_start_is_kept(task, outputs[0] - x_first, outputs[1] - x_second, x_first < 1, eps)
    _check_going_up(task, outputs[0], x_first, eps)
    _check_moving_outwards(task, outputs[1], x_second, eps)
    raise AssertionError(
        f"{task}: your images stay in the ball and move along the gradient, but they do not land where the "
        f"specification's steps land from the random start the check draws. Draw u with torch "
        f"(torch.empty_like(x_puzzled).uniform_(-eps, eps), or torch.rand_like) or with NumPy's global generator "
        f"(np.random.uniform), which the check seeds; then step from x_0 = clip(x_puzzled + u) by eps * "
        f"sign(grad), and project onto the ball around x_puzzled and into [0, 1]"
    )


def _check_the_random_start_is_kept(task: str, first: torch.Tensor, second: torch.Tensor, inside, eps: float):
    """Fail when the step was added to x_puzzled instead of to the random start:
    then every pixel of case 1 (those below 1) moves up by exactly eps, and in
    case 2 every pixel ends on the edge of the ball, about half of them up."""
    tol = 1e-5
    all_up_by_eps = torch.allclose(first[inside], torch.full_like(first[inside], eps), atol=tol)
    on_the_edge = torch.allclose(second.abs(), torch.full_like(second, eps), atol=tol)
    if all_up_by_eps and on_the_edge and 0.1 < (second > 0).float().mean().item() < 0.9:
        raise AssertionError(
            f"{task}: you take the step from x_puzzled (x_puzzled + eps * sign(grad)), so the random start is "
            f"lost: every pixel moves by exactly eps. Take it from the random start, x_1 = x_0 + eps * sign(grad) "
            f"with x_0 = clip(x_puzzled + u), then project x_1 onto the ball around x_puzzled: "
            f"x_puzzled + clip(x_1 - x_puzzled, -eps, eps), clamped to [0, 1]"
        )


def _check_going_up(task: str, got: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    """Case 1 (model(x) = 1 - x, target 0.9): the images stay in [0, 1] and in
    the ball, and every pixel below 1 moves up (or stays)."""
    tol = 1e-6
    if got.min() < 0 or got.max() > 1:
        raise AssertionError(
            f"{task}: some pixels lie outside [0, 1] (min {got.min():.3f}, max {got.max():.3f}); clamp "
            f"the perturbed images to [0, 1] at the end"
        )
    delta = got - x
    inside = x < 1  # pixels that the clamp does not touch
    if delta.abs().max() > eps + tol:
        if (delta[inside] < -tol).any():
            raise AssertionError(
                f"{task}: a pixel moved by {delta.abs().max():.3f} > eps = {eps}, and some moved against "
                f"the gradient: you counted the random start twice (the published code's first mistake: "
                f"it added the projected perturbation, which already holds the random start, to the "
                f"randomly started image). Add the perturbation to x_puzzled, not to the random start"
            )
        raise AssertionError(
            f"{task}: a pixel moved by {delta.abs().max():.3f} > eps = {eps}: after the step, project the "
            f"perturbation back onto the ball: clamp (x_adv - x_puzzled) to [-eps, eps] and add it to "
            f"x_puzzled"
        )
    if (delta[inside] < -tol).any():
        if (delta[inside] <= tol).all():
            raise AssertionError(
                f"{task}: every pixel moved DOWN the loss (x - eps * sign(grad)): the perturbation must make "
                f"the network's task harder: add eps * sign(grad) of the loss between model(x) and target"
            )
        raise AssertionError(
            f"{task}: some pixels moved against the gradient of the loss: take ONE step of size eps along "
            f"the sign of the gradient of the loss between model(x_start) and target, at the random start"
        )


def _check_moving_outwards(task: str, got: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    """Case 2 (model(x) = x, target = x_puzzled): every pixel ends on the edge of
    the ball, about half of them up and half down."""
    delta = got - x
    if torch.equal(got, x):
        raise AssertionError(
            f"{task}: for a model whose output equals the target at x_puzzled, your function returned "
            f"x_puzzled unchanged: the gradient there is zero, so a step from x_puzzled is a no-op. Start "
            f"from a uniform random point of the ball: x_puzzled + U(-eps, eps), clamped to [0, 1]"
        )
    if not torch.allclose(delta.abs(), torch.full_like(delta, eps), atol=1e-5):
        raise AssertionError(
            f"{task}: for model(x) = x with target = x_puzzled, every pixel should end on the edge of the "
            f"ball (|change| = eps: the gradient at the random start points away from x_puzzled), but "
            f"|change| ranges from {delta.abs().min():.3f} to {delta.abs().max():.3f}. Take the gradient at "
            f"the random start (not at x_puzzled), step by eps from the random start, then project"
        )
    # ... and that direction is random, pixel by pixel: the gradient at the random start points
    # away from x_puzzled, so about half the pixels go up and half go down
    moved_up = (delta > 0).float().mean().item()
    if not 0.1 < moved_up < 0.9:
        raise AssertionError(
            f"{task}: for model(x) = x with target = x_puzzled, {100 * moved_up:.0f}% of the pixels moved up. "
            f"The gradient at the random start points away from x_puzzled, up for some pixels and down for "
            f"others, so the step should move about half of them each way; moving every pixel the same way "
            f"ignores the model and its gradient (or starts from a random point on one side only: draw every "
            f"pixel of u from [-eps, eps], not [0, eps])"
        )
