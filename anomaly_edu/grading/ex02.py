"""Checks of Exercise 2 (Lecture 2): FGSM, the projection onto the L2 ball,
and one step of an L0 attack."""

from __future__ import annotations

__lecture__ = 2

import torch

from .cases import as_images, tiny_batch, tiny_classifier
from .machinery import call_refusing_the_package, passed


def check_fgsm(student_fgsm) -> None:
    """Exercise 2.1: ``fgsm(model, x, y, eps)`` returns x + eps * sign(grad of the
    cross-entropy), clipped to [0, 1], without changing ``x``."""
    from ..attacks import fgsm

    task = "Exercise 2.1 (FGSM)"
    model, (x, y) = tiny_classifier(), tiny_batch()
    eps = 0.1
    x_before = x.clone()
    got = call_refusing_the_package(task, student_fgsm, model, x, y, eps)
    if not torch.equal(x, x_before):
        raise AssertionError(
            f"{task}: your function changed its input x in place; work on a copy (e.g. x.clone()) or build a new tensor"
        )
    got = got.detach()
    expected = fgsm(model, x, y, eps)
    if got.shape != x.shape:
        raise AssertionError(f"{task}: expected a batch of images of shape {tuple(x.shape)}, got {tuple(got.shape)}")
    if torch.allclose(got.abs().amax(), torch.tensor(eps)) and got.abs().amin() > eps - 1e-6:
        raise AssertionError(
            f"{task}: you returned the perturbation eps * sign(grad); return the attacked images x + perturbation"
        )
    if got.min() < 0 or got.max() > 1:
        raise AssertionError(
            f"{task}: some pixels lie outside [0, 1] (min {got.min():.3f}, max "
            f"{got.max():.3f}); clamp the attacked images"
        )
    descend = (x - eps * (expected - x).sign()).clamp(0, 1)
    if torch.allclose(got, descend, atol=1e-6) and not torch.allclose(got, expected, atol=1e-6):
        raise AssertionError(
            f"{task}: you stepped DOWN the loss (x - eps * sign(grad)); an attack climbs it: add the signed gradient"
        )
    if (got - x).abs().max() > eps + 1e-6:
        raise AssertionError(f"{task}: a pixel moved by {(got - x).abs().max():.3f} > eps = {eps}")
    if not torch.allclose(got, expected, atol=1e-6):
        raise AssertionError(
            f"{task}: your images differ from FGSM's by up to "
            f"{(got - expected).abs().max():.3f}; every pixel should move by exactly "
            f"eps in the direction of the SIGN of the gradient (then clip to [0, 1])"
        )
    passed(task)


def check_project_l2(project_l2) -> None:
    """Exercise 2.2: ``project_l2(delta, eps)`` rescales each example's
    perturbation to L-2 norm eps when it is longer, and leaves it alone otherwise."""
    task = "Exercise 2.2 (projection onto the L-2 ball)"
    g = torch.Generator().manual_seed(3)
    delta = torch.randn(4, 1, 5, 5, generator=g)
    delta[1] *= 0.01  # already inside the ball
    eps = 1.0
    before = delta.clone()
    got = call_refusing_the_package(task, project_l2, delta, eps)
    if not torch.equal(delta, before):
        raise AssertionError(f"{task}: your function changed delta in place; return a new tensor")
    got = got.detach()
    if got.shape != delta.shape:
        raise AssertionError(f"{task}: expected shape {tuple(delta.shape)}, got {tuple(got.shape)}")
    norms = got.flatten(1).norm(dim=1)
    if torch.allclose(got, delta.clamp(-eps, eps)):
        raise AssertionError(
            f"{task}: you clipped each pixel to [-eps, eps]: that is the L-inf "
            f"projection; rescale the whole perturbation instead"
        )
    if torch.isclose(norms[1], torch.tensor(eps)):
        raise AssertionError(
            f"{task}: a perturbation already inside the ball (norm "
            f"{delta[1].norm():.3f}) was stretched to norm eps; leave those unchanged"
        )
    if norms.max() > eps + 1e-5:
        raise AssertionError(
            f"{task}: example norms {norms.numpy().round(3)} exceed eps = {eps}; "
            f"compute one norm PER EXAMPLE (flatten all but the batch axis)"
        )
    norms_in = delta.flatten(1).norm(dim=1)
    expected = delta * torch.clamp(eps / norms_in, max=1.0).view(-1, 1, 1, 1)
    if not torch.allclose(got, expected, atol=1e-6):
        raise AssertionError(
            f"{task}: the directions changed or the norms are off: expected norms "
            f"{expected.flatten(1).norm(dim=1).numpy().round(3)}, got {norms.numpy().round(3)}"
        )
    passed(task)


def _l0_answer(model, x: torch.Tensor, y: torch.Tensor, k: int, mistake: str | None = None) -> torch.Tensor:
    """Exercise 2.3's answer in plain torch, or the answer with one ``mistake``
    (a key of :data:`_L0_MISTAKES`)."""
    x = x.detach()
    at = x.clone().requires_grad_(True)
    with torch.enable_grad():
        (gradient,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(at), y), at)
    end = torch.where(gradient > 0, 1.0, torch.where(gradient < 0, 0.0, x))
    if mistake == "wrong end":
        end = torch.where(gradient > 0, 0.0, torch.where(gradient < 0, 1.0, x))
    gain = gradient * (end - x)
    if mistake == "largest gradient":
        gain = gradient.abs()
    flat = gain.flatten(1)
    chosen = torch.zeros_like(flat, dtype=torch.bool)
    if mistake == "whole batch":
        chosen.view(-1)[flat.flatten().topk(k).indices] = True
    else:
        chosen.scatter_(1, flat.topk(k, dim=1).indices, True)
    return torch.where(chosen.view_as(x), end, x)


_L0_MISTAKES = {
    "largest gradient": (
        "you change the k pixels with the largest |gradient|; a pixel that is already at the end of [0, 1] its "
        "gradient points to cannot move, so it gains nothing. Rank by the first-order gain "
        "gradient * (end - x), with end = 1 where the gradient is positive and 0 where it is negative"
    ),
    "whole batch": (
        "you picked the k best pixels of the whole batch; the budget is k pixels PER IMAGE: rank the gains of "
        "each image separately (topk along dim 1 of the flattened gains)"
    ),
    "wrong end": (
        "you push each pixel to the end that LOWERS the loss (0 where the gradient is positive); the attack "
        "raises it: to 1 where the gradient is positive, to 0 where it is negative"
    ),
}


def _l0_cases() -> list[tuple[str, torch.Tensor, torch.Tensor, int]]:
    """(description, x, y, k): mostly black digits-like images, in which many
    pixels already sit at 0, so ranking by |gradient| and by gain differ."""
    g = torch.Generator().manual_seed(23)
    x = torch.where(torch.rand(6, 1, 4, 4, generator=g) < 0.5, 0.0, torch.rand(6, 1, 4, 4, generator=g))
    x[:, 0, 0, 0] = 1.0
    y = torch.randint(0, 3, (6,), generator=g)
    return [("6 images, k = 1", x, y, 1), ("6 images, k = 3", x, y, 3), ("2 images, k = 5", x[:2], y[:2], 5)]


def check_one_step_l0(one_step_l0) -> None:
    """Exercise 2.3: ``one_step_l0(model, x, y, k)`` takes the gradient of the
    cross-entropy at x once and sets, in each image, the k pixels with the
    largest first-order gain gradient * (end - x) to their end of [0, 1]
    (1 where the gradient is positive, 0 where it is negative)."""
    task = "Exercise 2.3 (a one-step L-0 attack)"
    model = tiny_classifier()
    outputs = []
    for description, x, y, k in _l0_cases():
        x_in = x.clone()
        got = call_refusing_the_package(task, one_step_l0, model, x_in, y, k)
        if not torch.equal(x_in, x):
            raise AssertionError(f"{task}: your function changed x in place; work on a copy (x.clone())")
        got = as_images(task, got, x)
        where = f"for {description}:"
        if got.min() < 0 or got.max() > 1:
            raise AssertionError(
                f"{task}: {where} pixels range from {got.min():.3f} to {got.max():.3f}; set each chosen pixel TO "
                f"the end of [0, 1] (0 or 1), do not add to it"
            )
        changed = (got != x).flatten(1).sum(1)
        if int(changed.max()) > k:
            raise AssertionError(
                f"{task}: {where} an image has {int(changed.max())} pixels changed, but the budget is k = {k} "
                f"pixels per image"
            )
        outputs.append((got, x, y, k))

    def matches(mistake) -> bool:
        return all(torch.equal(got, _l0_answer(model, x, y, k, mistake)) for got, x, y, k in outputs)

    if matches(None):
        passed(task)
        return
    mistake = next((m for m in _L0_MISTAKES if matches(m)), None)
    if mistake is not None:
        raise AssertionError(f"{task}: {_L0_MISTAKES[mistake]}")
    got, x, y, k = next(o for o in outputs if not torch.equal(o[0], _l0_answer(model, *o[1:])))
    expected = _l0_answer(model, x, y, k)
    raise AssertionError(
        f"{task}: with k = {k}, the changed pixels or their new values differ from the expected ones in "
        f"{int((got != expected).flatten(1).any(1).sum())} of {len(x)} images. Take the gradient of the "
        f"cross-entropy at x once; end = 1 where it is positive, 0 where it is negative (x where it is 0); "
        f"set the k pixels of each image with the largest gradient * (end - x) to their end"
    )
