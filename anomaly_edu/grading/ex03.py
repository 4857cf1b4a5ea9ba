"""Checks of Exercise 3 (Lecture 3): PGD, the adversarial training loss of one
batch, and the robustness of the student's adversarially trained model."""

from __future__ import annotations

__lecture__ = 3

import functools

import torch

from ..training import seeded
from .cases import (
    RAISE_SCORE_MISTAKES,
    AttackCase,
    check_signed_attack,
    raise_score_answer,
    tiny_batch,
    tiny_classifier,
)
from .machinery import NotDone, call_refusing_the_package, passed


def _pgd_cases() -> list[tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor, float, float, int]]:
    """(description, model, x, y, eps, alpha, steps) of Exercise 3.1's check:
    the ball binds or not, steps longer than eps, pixels at and near 0 and 1."""
    model = tiny_classifier()
    x, y = tiny_batch()
    x[0, 0, 0] = 0.0
    x[1, 0, 0] = 1.0
    x[2, 0, :, 0] = 0.02
    x[3, 0, :, -1] = 0.98
    with seeded(31):
        wide = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
        with torch.no_grad():
            for parameter in wide.parameters():
                parameter.mul_(4)  # steeper: the gradient's signs change along the attack's path
    return [
        ("eps 0.1, alpha 0.03, 5 steps (the ball binds)", model, x, y, 0.1, 0.03, 5),
        ("eps 0.2, alpha 0.02, 3 steps (the ball does not bind)", model, x, y, 0.2, 0.02, 3),
        ("eps 0.05, alpha 0.08, 3 steps (steps longer than eps)", model, x, y, 0.05, 0.08, 3),
        ("a wider network, eps 0.3, alpha 0.1, 6 steps", wide.eval(), x, y, 0.3, 0.1, 6),
    ]


def _mean_cross_entropy_per_example(model, y):
    """The batch's mean cross-entropy as one term per example (their sum is the mean)."""
    return lambda x: torch.nn.functional.cross_entropy(model(x), y, reduction="none") / len(y)


def _pgd_answer(model, x, y, eps: float, alpha: float, steps: int, mistake: str | None = None) -> torch.Tensor:
    """Exercise 3.1's answer in plain torch: the signed-gradient ascent of
    :func:`raise_score_answer` on the mean cross-entropy, with alpha as the step size."""
    return raise_score_answer(_mean_cross_entropy_per_example(model, y), x, eps, steps, alpha, mistake)


def check_pgd(pgd) -> None:
    """Exercise 3.1: ``pgd(model, x, y, eps, alpha, steps)`` starts at x and
    takes ``steps`` steps x_adv + alpha * sign(grad of the mean cross-entropy),
    each projected onto the L-inf ball of radius eps around x, then clamped to
    [0, 1]; it returns new images and leaves x alone."""
    task = "Exercise 3.1 (PGD)"
    mistakes = {m: text.replace("step_size", "alpha") for m, text in RAISE_SCORE_MISTAKES.items()}
    mistakes["descent"] = (
        "your attack LOWERS the loss: it steps against the gradient (x_adv - alpha * sign(grad)), which makes "
        "the model surer of the true label. An attack climbs the loss: ADD alpha * sign(grad)"
    )
    cases = [
        AttackCase(
            description,
            x,
            eps,
            lambda x_in, m=model, y=y, e=eps, a=alpha, n=steps: (m, x_in, y, e, a, n),
            lambda mistake, case=(model, x, y, eps, alpha, steps): _pgd_answer(*case, mistake=mistake),
        )
        for description, model, x, y, eps, alpha, steps in _pgd_cases()
    ]
    recipe = (
        "Start at x itself; in each step take the gradient of the mean cross-entropy of model(x_adv) with "
        "respect to x_adv, add alpha * its sign, clamp to [x - eps, x + eps], then to [0, 1]"
    )
    check_signed_attack(task, functools.partial(call_refusing_the_package, task, pgd), cases, mistakes, recipe, 300)


def check_adversarial_batch_loss(adversarial_batch_loss) -> None:
    """Exercise 3.2: ``adversarial_batch_loss(model, x, y, eps, alpha, steps)``:
    PGD examples (no random start) against the current model, then the mean
    cross-entropy on them, differentiable with respect to the weights."""
    task = "Exercise 3.2 (adversarial-training loss)"
    model, (x, y) = tiny_classifier(), tiny_batch()
    eps, alpha, steps = 0.2, 0.03, 5  # steps * alpha < eps: PGD differs from one FGSM step
    model.train()
    got = call_refusing_the_package(task, adversarial_batch_loss, model, x, y, eps, alpha, steps)
    if not isinstance(got, torch.Tensor) or got.ndim != 0:
        raise AssertionError(f"{task}: return one scalar tensor (the mean loss over the batch), got {got!r}")
    if got.grad_fn is None:
        raise AssertionError(
            f"{task}: your loss carries no gradient, so training could not use it; "
            f"compute the final cross-entropy outside torch.no_grad() and do not call .item()"
        )
    if not model.training:
        raise AssertionError(f"{task}: the model was left in eval mode; the training loop expects train mode")
    cross_entropy = torch.nn.functional.cross_entropy
    expected = cross_entropy(model(_pgd_answer(model, x, y, eps, alpha, steps)), y)
    clean = cross_entropy(model(x), y)
    if torch.isclose(got, clean, atol=1e-6):
        raise AssertionError(
            f"{task}: your loss equals the clean loss {clean.item():.4f}; attack the batch "
            f"with your pgd first and compute the loss on the attacked images"
        )
    if torch.isclose(got, cross_entropy(model(_pgd_answer(model, x, y, eps, alpha, 1)), y), atol=1e-6):
        raise AssertionError(f"{task}: your loss is that of a one-step attack; run pgd for all `steps` steps")
    if not torch.isclose(got, expected, atol=1e-5):
        raise AssertionError(
            f"{task}: expected {expected.item():.4f} (your pgd with eps={eps}, alpha={alpha}, "
            f"steps={steps}, then the mean cross-entropy), got {got.item():.4f}; does check_pgd pass?"
        )
    (grad_got,) = torch.autograd.grad(got, model[1].weight, allow_unused=True)
    (grad_expected,) = torch.autograd.grad(expected, model[1].weight)
    if grad_got is None or not torch.allclose(grad_got, grad_expected, atol=1e-5):
        raise AssertionError(
            f"{task}: the value is right but its gradient with respect to the weights is not; compute the loss "
            f"on the attacked images, detached from the attack's own graph (x_adv.detach())"
        )
    passed(task)


def _accuracy_on(model, x_attacked: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x_attacked).argmax(1) == y).float().mean().item()


def check_robust_model(robust_model, standard_model, x, y, *, eps: float, steps: int) -> None:
    """Exercise 3.3: the adversarially trained model must beat the standard one
    under attack by more than 20 points of accuracy. It is attacked three ways,
    and counts as right on an image only if it survives all three: PGD from the
    image itself, PGD from random starts (3 restarts), and the images that PGD
    found against the *standard* model (a transfer attack). A model whose
    gradients are masked resists its own gradient's attacks but not the
    transferred images; that is refused with its own message."""
    from ..attacks import pgd
    from ..training import accuracy

    task = "Exercise 3.3 (adversarial training)"
    if robust_model is None:
        raise NotDone(
            f"{task} is not done yet: train a model with your loss and store it in "
            f"`robust_model`, then run this check again."
        )
    standard_pgd = pgd(standard_model, x, y, eps=eps, steps=steps)
    with seeded(3):  # the random starts, without touching the notebook's generators
        attacked = {
            "PGD": pgd(robust_model, x, y, eps=eps, steps=steps),
            "PGD from random starts": pgd(robust_model, x, y, eps=eps, steps=steps, random_start=True, restarts=3),
            "transferred from the standard model": standard_pgd,
        }
    with torch.no_grad():
        survives = torch.stack([robust_model(images).argmax(1) == y for images in attacked.values()]).all(0)
    robust_score = survives.float().mean().item()
    standard_score = _accuracy_on(standard_model, standard_pgd, y)
    scores = {name: _accuracy_on(robust_model, images, y) for name, images in attacked.items()}
    print(
        f"accuracy under PGD-{steps}, eps {eps}: standard {100 * standard_score:.1f}%; yours "
        + ", ".join(f"{100 * value:.1f}% ({name})" for name, value in scores.items())
        + f", {100 * robust_score:.1f}% against all three; clean: standard "
        f"{100 * accuracy(standard_model, x, y):.1f}%, yours {100 * accuracy(robust_model, x, y):.1f}%"
    )
    white_box = min(scores["PGD"], scores["PGD from random starts"])
    transferred = scores["transferred from the standard model"]
    if transferred < white_box - 0.1:
        raise AssertionError(
            f"{task}: your model resists attacks through its own gradients ({100 * white_box:.1f}%) far better "
            f"than images attacked through ANOTHER model's ({100 * transferred:.1f}%): "
            f"its gradients are masked (zero or useless), so PGD cannot find its weak points, but they are there. "
            f"Train with adversarial_batch_loss and nothing that blocks gradients (no detach, rounding or argmax "
            f"in the forward pass)"
        )
    if robust_score <= standard_score + 0.2:
        raise AssertionError(
            f"{task}: under attack your model is only {100 * (robust_score - standard_score):.1f} "
            f"points better than the standard one (we expect more than 20); check that "
            f"you trained with adversarial_batch_loss and the adv_cnn settings"
        )
    passed(task)
