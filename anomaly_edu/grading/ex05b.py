"""Checks of Exercise 5b (Lecture 5): the shortcut-removing perturbation."""

from __future__ import annotations

__lecture__ = 5

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


def _call_seeded(task: str, fn, *args):
    """Call the student's function with seeded random generators, then give the
    notebook's generators back the state they had (the student's random start
    must not change what the notebook draws next)."""
    with seeded(7):
        return call_student(task, fn, *args)


def check_remove_shortcut(remove_shortcut) -> None:
    """Exercise 5b.1: ``remove_shortcut(model, x_puzzled, target, eps)``: a
    uniform random start in the L-inf ball of radius eps around ``x_puzzled``,
    one signed-gradient step of size eps that increases the per-image mean
    squared error between ``model(x)`` and ``target``, projected back onto the
    ball and into [0, 1]; neither ``x_puzzled`` nor ``target`` changes."""
    task = "Exercise 5b.1 (removing the shortcut)"
    refuse_the_package(task, remove_shortcut)
    eps, tol = 0.1, 1e-6

    # Case 1: model(x) = 1 - x and a target of 0.9 everywhere: for every pixel in
    # reach the loss grows with the pixel, so the step goes up: the perturbation
    # is min(u + eps, eps) >= 0 for a random start u. Image 0's first row is
    # white (1.0), where only the clamp to [0, 1] keeps the pixels in range.
    g = torch.Generator().manual_seed(6)
    x = 0.3 + 0.6 * torch.rand(3, 1, 6, 6, generator=g)
    x[0, 0, 0] = 1.0
    target = torch.full_like(x, 0.9)
    x_in, target_in = x.clone(), target.clone()
    got = _call_seeded(task, remove_shortcut, _Affine(-1.0, 1.0), x_in, target_in, eps)
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

    # Case 2: model(x) = x and target = x_puzzled: the loss and its gradient are
    # zero at x_puzzled itself, so without a random start nothing moves; from a
    # random start the gradient points away from x_puzzled, and the step (then
    # the projection) puts every pixel on the edge of the ball.
    x = 0.2 + 0.6 * torch.rand(3, 1, 6, 6, generator=g)
    x_in = x.clone()
    got = _call_seeded(task, remove_shortcut, _Affine(1.0, 0.0), x_in, x_in.clone(), eps)
    got = torch.as_tensor(got).detach()
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
            f"ignores the model and its gradient"
        )
    passed(task)
