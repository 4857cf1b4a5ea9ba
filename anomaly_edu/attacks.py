"""Adversarial attacks: FGSM and a sparse attack (Lecture 2), PGD (Lecture 3).

Every attack solves (approximately) the same problem,

    maximise  loss(model(x + delta), y)  over  delta  in the threat model's ball,

and keeps the attacked image ``x + delta`` inside the image range [0, 1].

Conventions shared by all attacks
---------------------------------
* ``x`` is a batch of images (N, ...) with values in [0, 1]; the result has the
  same shape, lies in [0, 1] and inside the ball around ``x``.
* ``loss_fn(output, y)`` is the loss to *maximise*. It returns one value per
  example, shape (N,) (for instance ``F.cross_entropy(out, y, reduction="none")``);
  a scalar is accepted too, except with ``restarts > 1``, which must compare the
  examples one by one. ``y`` is passed to ``loss_fn`` untouched, so it can be a
  label, a target image or a latent code. The default is cross-entropy on labels.
* We differentiate the *mean* of the per-example losses, as torchattacks does (so
  our PGD gives the same images as theirs). Examples do not interact (the model runs
  in eval mode), so each example receives 1/N times the gradient of its own loss; the
  sign (L-inf) and the normalised gradient (L-2) do not see that factor.
* The model is put in eval mode while attacking and every module gets its previous
  mode back afterwards, even if the attack fails. Gradients are taken with
  ``torch.autograd.grad`` with respect to the image only, so the ``.grad`` of the
  model's parameters is left as it was.
* The input is never modified in place.
"""

from __future__ import annotations

__lecture__ = 2

import contextlib
import math
import numbers
from collections.abc import Iterator
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import check_images

LossFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["fgsm", "pgd", "sparse_attack", "input_gradient", "per_example_cross_entropy", "per_example_mse"]


# ---------------------------------------------------------------------------
# Losses to maximise
# ---------------------------------------------------------------------------


def per_example_cross_entropy(output: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of each example, shape (N,): the default attacked loss (Lecture 2)."""
    return F.cross_entropy(output, y, reduction="none")


def per_example_mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared distance between output and target per example, shape (N,) (Lecture 2).

    Attacks can push any output away from a fixed target: Lecture 4 (ARAE) passes
    the clean latent code ``Enc(x)`` as the target and the encoder as the model.
    """
    return (output - target).pow(2).flatten(1).mean(dim=1)


# ---------------------------------------------------------------------------
# Checks and small helpers
# ---------------------------------------------------------------------------


def _check_number(name: str, value: float, *, positive: bool) -> None:
    """Raise a ValueError unless value is finite and >= 0 (> 0 when positive)."""
    ok = isinstance(value, numbers.Real) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number {bound} (got {value!r}).")


def _check_count(name: str, value: int, minimum: int) -> None:
    """Raise a ValueError unless value is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r}).")


@contextlib.contextmanager
def _attack_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with the model in eval mode and gradients on; restore every module's mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


def _loss(model: nn.Module, x_adv: Tensor, y: Tensor, loss_fn: LossFn) -> Tensor:
    """loss_fn(model(x_adv), y), checked to be per example (N,) or a scalar."""
    loss = loss_fn(model(x_adv), y)
    if loss.ndim > 1 or (loss.ndim == 1 and loss.shape[0] != x_adv.shape[0]):
        raise ValueError(
            f"loss_fn must return one loss per example, shape ({x_adv.shape[0]},), or a "
            f"scalar (got shape {tuple(loss.shape)}); use reduction='none' and average "
            "over the other dimensions, as per_example_mse does."
        )
    return loss


def input_gradient(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None) -> Tensor:
    """Gradient of the mean loss with respect to the images ``x`` (not the
    parameters); the model runs as it is (attacks put it in eval mode first).
    Every attack steps along it; for robust classifiers it looks like the
    object (Lecture 3). Lecture 2."""
    loss_fn = loss_fn or per_example_cross_entropy
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = _loss(model, x, y, loss_fn)
        return torch.autograd.grad(loss.mean(), x)[0]


def _per_example(values: Tensor, x: Tensor) -> Tensor:
    """Reshape (N,) values to (N, 1, 1, ...) so that they broadcast over x's images."""
    return values.view(-1, *([1] * (x.ndim - 1)))


def _l2_norms(t: Tensor) -> Tensor:
    """L-2 norm of each example of t, shape (N,)."""
    return t.flatten(1).norm(p=2, dim=1)


# ---------------------------------------------------------------------------
# Lecture 2: FGSM
# ---------------------------------------------------------------------------


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, *, loss_fn: LossFn | None = None) -> Tensor:
    """Fast gradient sign method: one step of size eps along sign(grad) (Lecture 2).

    L-inf threat model: ``x_adv = clip(x + eps * sign(grad_x loss), 0, 1)``.
    See the module docstring for ``loss_fn`` and the conventions.
    """
    check_images(x, "x", any_shape=True)
    _check_number("eps", eps, positive=False)
    if eps == 0:
        return x.detach().clone()
    loss_fn = loss_fn or per_example_cross_entropy
    with _attack_mode(model):
        grad = input_gradient(model, x, y, loss_fn)
    return (x.detach() + eps * grad.sign()).clamp(0, 1)


# ---------------------------------------------------------------------------
# Lecture 3: PGD
# ---------------------------------------------------------------------------


def _random_start(x: Tensor, eps: float, norm: str) -> Tensor:
    """A random point of the ball around x, clipped to [0, 1].

    L-inf: uniform in the cube [-eps, eps]^d. L-2: a uniformly random direction
    (a normalised Gaussian vector) times a radius drawn uniformly from [0, eps]
    (not uniform in volume, which in 784 dimensions would put almost every start
    on the surface; torchattacks draws it the same way).
    """
    if norm == "linf":
        delta = torch.empty_like(x).uniform_(-eps, eps)
    else:
        delta = torch.empty_like(x).normal_()
        norms = _l2_norms(delta)
        radius = torch.zeros_like(norms).uniform_(0, 1)
        delta = delta * _per_example(radius / norms * eps, x)
    return (x + delta).clamp(0, 1)


def _pgd_step(x_adv: Tensor, x: Tensor, grad: Tensor, eps: float, alpha: float, norm: str) -> Tensor:
    """One step of projected gradient ascent: step, project onto the ball, clip to [0, 1]."""
    if norm == "linf":
        x_adv = x_adv + alpha * grad.sign()
        delta = (x_adv - x).clamp(-eps, eps)
    else:
        grad_norms = _l2_norms(grad) + 1e-10  # avoids 0 / 0 when the gradient vanishes
        x_adv = x_adv + alpha * (grad / _per_example(grad_norms, x))
        delta = x_adv - x
        norms = _l2_norms(delta)
        shrink = torch.where(norms > eps, eps / norms, 1.0)  # rescale only if ||delta|| > eps
        delta = delta * _per_example(shrink, x)
    return (x + delta).clamp(0, 1)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int,
    alpha: float | None = None,
    norm: Literal["linf", "l2"] = "linf",
    random_start: bool = False,
    restarts: int = 1,
    loss_fn: LossFn | None = None,
    check_input: bool = True,
) -> Tensor:
    """Projected gradient descent (ascent on the loss) in an L-inf or L-2 ball (Lecture 3).

    Each of ``steps`` steps moves the image ``x_adv = x + delta``, then projects
    ``delta`` back onto the ball of radius ``eps`` and clips the image to [0, 1]:

    * ``norm="linf"``: ``x_adv += alpha * sign(grad)``; ``delta = clip(delta, -eps, eps)``.
    * ``norm="l2"``: ``x_adv += alpha * grad / ||grad||`` (per example);
      ``delta *= min(1, eps / ||delta||)``.

    ``alpha`` defaults to ``2.5 * eps / steps``: the steps add up to 2.5 times
    the radius, enough to cross the ball and move along its boundary (the rule
    the ARAE code uses, and the course everywhere). ``random_start=True`` starts from a random point of the ball (see
    ``_random_start``). With ``restarts > 1`` (which needs a random start) the
    attack runs that many times and keeps, per example, the result with the
    highest loss; ``loss_fn`` must then return one loss per example.
    Without a random start this matches torchattacks' ``PGD`` and ``PGDL2``.
    ``check_input=False`` skips the check that ``x`` holds images in [0, 1],
    which makes the CPU wait for a GPU: for a training loop that attacks every
    mini-batch of data it checked once (ARAE's, Lecture 4).
    """
    if check_input:
        check_images(x, "x", any_shape=True)
    _check_number("eps", eps, positive=False)
    if alpha is not None:
        _check_number("alpha", alpha, positive=True)
    _check_count("restarts", restarts, 1)
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2' (got {norm!r}).")
    if restarts > 1 and not random_start:
        raise ValueError(
            f"restarts={restarts} needs random_start=True: without a random start every restart follows the same path."
        )
    if eps == 0:
        return x.detach().clone()
    _check_count("steps", steps, 1)
    alpha = 2.5 * eps / steps if alpha is None else alpha
    loss_fn = loss_fn or per_example_cross_entropy
    x = x.detach()

    best, best_loss = x, None
    with _attack_mode(model):
        for _ in range(restarts):
            x_adv = _random_start(x, eps, norm) if random_start else x
            for _ in range(steps):
                grad = input_gradient(model, x_adv, y, loss_fn)
                x_adv = _pgd_step(x_adv, x, grad, eps, alpha, norm)
            if restarts == 1:
                return x_adv
            with torch.no_grad():
                loss = _loss(model, x_adv, y, loss_fn)
            if loss.ndim == 0:
                raise ValueError(
                    "restarts > 1 compares examples one by one, so loss_fn must return "
                    "one loss per example, shape (N,), not a scalar."
                )
            if best_loss is None:
                best, best_loss = x_adv, loss
            else:
                better = loss > best_loss
                best = torch.where(_per_example(better, x), x_adv, best)
                best_loss = torch.where(better, loss, best_loss)
    return best


# ---------------------------------------------------------------------------
# Lecture 2: a sparse (L-0) attack
# ---------------------------------------------------------------------------


def _per_position(t: Tensor) -> Tensor:
    """Sum t over the channels of each pixel position: (N, C, H, W) -> (N, H*W).

    Tensors that are not 4-d have no channel axis: every entry is one position.
    """
    return t.sum(dim=1).flatten(1) if t.ndim == 4 else t.flatten(1)


def _expand_positions(mask: Tensor, x: Tensor) -> Tensor:
    """Inverse of _per_position's layout: (N, P) -> broadcastable to x."""
    if x.ndim == 4:
        return mask.view(x.shape[0], 1, x.shape[2], x.shape[3])
    return mask.view(x.shape)


def sparse_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    k: int,
    steps: int | None = None,
    loss_fn: LossFn | None = None,
) -> Tensor:
    """Greedy L-0 attack: change at most k pixel positions per image, by any amount (Lecture 2).

    A "pixel" is a spatial position: for (N, C, H, W) images all C channels of a
    chosen position may change; for other shapes every entry is one position.
    Each step takes the gradient and, for every position not yet chosen, the
    first-order gain of pushing each channel to the end of [0, 1] that raises the
    loss (to 1 where the gradient is positive, to 0 where it is negative). It
    then sets the best new positions to those values and never touches them
    again. ``steps`` (default ``k``, at most ``k``) spreads the k positions
    evenly over the steps: fewer steps is faster but cruder.
    """
    check_images(x, "x", any_shape=True)
    _check_count("k", k, 0)
    if k == 0:
        return x.detach().clone()
    n_positions = _per_position(x).shape[1]
    k = min(int(k), n_positions)
    steps = k if steps is None else steps
    _check_count("steps", steps, 1)
    steps = min(int(steps), k)
    loss_fn = loss_fn or per_example_cross_entropy

    x_adv = x.detach().clone()
    chosen = torch.zeros(x.shape[0], n_positions, dtype=torch.bool, device=x.device)
    with _attack_mode(model):
        for step in range(steps):
            n_new = k * (step + 1) // steps - k * step // steps
            grad = input_gradient(model, x_adv, y, loss_fn)
            target = torch.where(grad > 0, 1.0, torch.where(grad < 0, 0.0, x_adv))
            gain = _per_position(grad * (target - x_adv)).masked_fill(chosen, -math.inf)
            new = torch.zeros_like(chosen).scatter_(1, gain.topk(n_new, dim=1).indices, True)
            chosen |= new
            x_adv = torch.where(_expand_positions(new, x), target, x_adv)
    return x_adv
