"""Small models and the signed-gradient attack's reference answer, shared by
the checks of Exercises 1-4. Written in plain torch: the checks of Exercises
2-4 do not rest on the package's attacks."""

from __future__ import annotations

__lecture__ = 1

from typing import Callable, NamedTuple

import torch

from ..training import seeded
from .machinery import call_student, call_with_feedback, passed


class TinyAE(torch.nn.Module):
    """A fixed one-layer autoencoder of 4x4 images with ``channels`` channels
    (Exercises 1 and 4)."""

    def __init__(self, channels: int = 1):
        super().__init__()
        with seeded(0):
            self.layer = torch.nn.Linear(16 * channels, 16 * channels)

    def forward(self, x):
        return torch.sigmoid(self.layer(x.flatten(1))).view_as(x)


def tiny_classifier() -> torch.nn.Module:
    """A fixed small classifier of 4x4 images into 3 classes (Exercises 2 and 3)."""
    with seeded(0):
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
        ).eval()


def tiny_batch():
    """Six 4x4 images and their labels, the same every time (Exercises 2 and 3)."""
    g = torch.Generator().manual_seed(2)
    return torch.rand(6, 1, 4, 4, generator=g), torch.randint(0, 3, (6,), generator=g)


class AttackCase(NamedTuple):
    """One case of an attack check: the images, the radius, how to call the
    student's attack on a copy of the images, and the right answer or the
    answer with one mistake (``answer(None)`` or ``answer(mistake)``)."""

    description: str
    x: torch.Tensor
    eps: float
    arguments: Callable[[torch.Tensor], tuple]
    answer: Callable[[str | None], torch.Tensor]


def check_signed_attack(task: str, attack, cases: list[AttackCase], mistakes: dict, recipe: str, seed: int) -> None:
    """The check of an L-inf attack that takes signed-gradient steps from x
    itself (Exercise 3.1): x left alone, no random start, then the
    answer compared with the right one and with each of ``mistakes``, whose
    message is the feedback. ``recipe`` says in one sentence what to do."""
    outputs = []
    for number, case in enumerate(cases):
        where = f"for {case.description}:"
        x_in = case.x.clone()
        with seeded(seed + number):  # a random start would differ from call to call; the notebook's draws do not
            got = call_with_feedback(task, where, "", attack, *case.arguments(x_in))
        if not torch.equal(x_in.detach(), case.x):
            raise AssertionError(
                f"{task}: your function changed x in place. x.detach() and x.data share their memory with x: "
                f"start from a copy, x_adv = x.clone() (or x.detach().clone()), and build new tensors"
            )
        if x_in.requires_grad:
            raise AssertionError(
                f"{task}: your function set requires_grad on the caller's x; set it on a copy "
                f"(x_adv = x.clone().requires_grad_(True)) and leave x as it was"
            )
        outputs.append(as_images(task, got, case.x))
    with seeded(seed + 99):
        again = as_images(task, call_student(task, attack, *cases[0].arguments(cases[0].x.clone())), cases[0].x)
    if not torch.allclose(again, outputs[0], atol=1e-6):
        raise AssertionError(
            f"{task}: two calls with the same arguments gave different images: your attack draws random "
            f"numbers (a random start of your own?). This attack draws none: it starts where it is told, so that its "
            f"answer is fixed"
        )

    def matches(mistake) -> bool:
        return all(torch.allclose(got, case.answer(mistake), atol=1e-5) for got, case in zip(outputs, cases))

    if matches(None):
        passed(task)
        return
    mistake = next((m for m in mistakes if matches(m)), None)
    if mistake is not None:
        raise AssertionError(f"{task}: {mistakes[mistake]}")
    if all(torch.allclose(got, case.answer(None) - case.x, atol=1e-5) for got, case in zip(outputs, cases)):
        raise AssertionError(
            f"{task}: you returned the perturbation x_adv - x; return the attacked images x_adv themselves"
        )
    for got, case in zip(outputs, cases):
        expected = case.answer(None)
        if torch.allclose(got, expected, atol=1e-5):
            continue
        where = f"for {case.description}:"
        if got.min() < -1e-6 or got.max() > 1 + 1e-6:
            raise AssertionError(
                f"{task}: {where} pixels range from {got.min():.3f} to {got.max():.3f}; {mistakes['no clamp']}"
            )
        moved = (got - case.x).abs().max().item()
        if moved > case.eps + 1e-5:
            raise AssertionError(
                f"{task}: {where} a pixel moved by {moved:.3f} > eps = {case.eps}; after each step clamp x_adv to "
                f"[x - eps, x + eps] around the ORIGINAL image x, then to [0, 1]"
            )
        wrong = (got - expected).abs() > 1e-5
        raise AssertionError(
            f"{task}: {where} {int(wrong.sum())} of {wrong.numel()} pixels differ from the expected attacked "
            f"images (by up to {(got - expected).abs().max():.3f}). {recipe}"
        )


def raise_score_answer(score_fn, x: torch.Tensor, eps: float, steps: int, step_size: float, mistake=None, start=None):
    """Signed-gradient ascent on ``score_fn`` from x, ``steps`` steps of
    ``step_size``, each projected onto the L-inf ball of radius ``eps`` around x
    and clamped to [0, 1], written in plain torch (the checks of Exercises 3
    and 4 do not rest on the package's attacks), or with one ``mistake`` (a key of
    :data:`RAISE_SCORE_MISTAKES`). With ``start`` (Exercise 4.1b) the steps
    begin at x + start, clamped to [0, 1], instead of at x itself."""
    x = x.detach()
    x_adv = x.clone() if start is None or mistake == "no start" else (x + start).clamp(0, 1)
    size = eps if mistake == "step eps" else step_size
    for _ in range({"one step": 1, "stuck at start": 0}.get(mistake, steps)):
        at = (x if mistake == "gradient at x" else x_adv).clone().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(score_fn(at).sum(), at)
        step = gradient if mistake == "raw gradient" else gradient.sign()
        if mistake == "descent":
            step = -step
        before = x_adv
        x_adv = x_adv + size * step
        if mistake == "around current":
            x_adv = torch.minimum(torch.maximum(x_adv, before - eps), before + eps)
        elif mistake != "no projection":
            x_adv = torch.minimum(torch.maximum(x_adv, x - eps), x + eps)
        if mistake != "no clamp":
            x_adv = x_adv.clamp(0, 1)
    return x_adv.detach()


RAISE_SCORE_MISTAKES = {
    "descent": (
        "your attack LOWERS the score: it steps against the gradient (x_adv - step_size * sign(grad)). The attacker "
        "wants a false alarm on a normal image: ADD step_size * sign(grad) to raise the score"
    ),
    "no projection": (
        "you never project back onto the ball, so the pixels drift further than eps from x: after each step clamp "
        "x_adv to [x - eps, x + eps] around the ORIGINAL image x"
    ),
    "around current": (
        "you clamp each step to eps around the point BEFORE that step, so the steps add up and the image leaves "
        "the ball; project onto the ball around the ORIGINAL image: clamp x_adv to [x - eps, x + eps], with x "
        "the image you were given"
    ),
    "no clamp": (
        "some pixels end up outside [0, 1], which no image can hold: after the projection, clamp x_adv to [0, 1] "
        "in every step"
    ),
    "raw gradient": (
        "you step along the gradient itself (step_size * grad); the L-inf attack steps along its SIGN, "
        "step_size * grad.sign(), so that every pixel moves by step_size whatever the gradient's size"
    ),
    "one step": ("you took one step only; take `steps` steps, computing the gradient again at the new x_adv each time"),
    "step eps": (
        "each of your steps has size eps; use step_size: the attack takes `steps` steps of size step_size, and "
        "the ball of radius eps only bounds where they end"
    ),
    "gradient at x": (
        "you use the gradient at the original x in every step (or compute it once, before the loop); compute it "
        "again at the current x_adv in each step"
    ),
}


def as_images(task: str, got, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{task}: return a torch tensor of attacked images, got {type(got).__name__}")
    if got.shape != like.shape:
        raise AssertionError(
            f"{task}: expected attacked images of the input's shape {tuple(like.shape)}, got {tuple(got.shape)}"
        )
    return got.detach().to(like.dtype)
