"""Automatic checks for the exercises, with feedback that says what went wrong.

Each ``check_*`` function calls the student's function on cases with known
answers, raises ``AssertionError`` with a specific hint when the answer is
wrong (so nbgrader counts the test cell as failed), and prints a short
confirmation when it is right. A task that still raises ``NotImplementedError``
is reported as "not done yet".

The checks leave the student's random numbers alone: they draw from local
generators (``torch.Generator``, ``np.random.default_rng``), build their small
models inside :func:`~anomaly_edu.training.seeded`, and never reseed the global
ones, so running a check does not change what the notebook draws next.
"""

from __future__ import annotations

import dis
import functools
import types
from typing import Callable, NamedTuple

import numpy as np
import torch

from .detectors import reconstruction_error
from .metrics import choose_threshold, f1_at_threshold, fpr_at_tpr, to_numpy
from .puzzles import apply_permutation, invert_permutation, to_tiles
from .training import seeded


class _NotDone(AssertionError):
    pass


def _call(task: str, fn, *args):
    """Call the student's function, turning a leftover stub or a missing
    ``return`` into clear feedback."""
    try:
        result = fn(*args)
    except NotImplementedError:
        raise _NotDone(
            f"{task} is not done yet: replace the line that raises NotImplementedError "
            f"with your code, run that cell, then run this check again."
        ) from None
    if result is None:
        raise AssertionError(f"{task}: your function returned None; did you forget `return`?")
    return result


def _passed(task: str, detail: str = "") -> None:
    print(f"✓ {task}: correct. {detail}".rstrip())


def _package_function(frame) -> str | None:
    """``module.name`` of the function running in ``frame`` when it belongs to
    the anomaly_edu package (these checks' own small models excepted)."""
    module = frame.f_globals.get("__name__") if frame is not None else None
    if not isinstance(module, str) or module == __name__:
        return None
    if module == "anomaly_edu" or module.startswith("anomaly_edu."):
        return f"{module}.{frame.f_code.co_name}"
    return None


def _call_refusing_the_package(task: str, fn, *args, allowed: tuple[str, ...] = ()):
    """Call the student's function as :func:`_call` does, watching every call it
    makes while it runs (``sys.setprofile``, so aliases, helpers and imports
    inside the function are seen too). A call into the anomaly_edu package,
    other than the functions named in ``allowed``, fails the check: the task is
    to write the thing, not to call the package's version of it. Exercises 1-4."""
    reached = set()

    def called_from_the_package(frame) -> bool:
        frame = frame.f_back
        while frame is not None:
            if _package_function(frame):
                return True
            frame = frame.f_back
        return False

    def watch(frame, event, arg):
        if event != "call":
            return
        name = _package_function(frame)
        # Only the outermost package function: the one the student's code called.
        if name and name.rsplit(".", 1)[1] not in allowed and not called_from_the_package(frame):
            reached.add(name)

    result = _call_watched(task, watch, fn, *args)
    if reached:
        raise AssertionError(
            f"{task}: your function calls {', '.join(sorted(reached))} from the anomaly_edu package; write it "
            f"yourself: the package's version is what you are re-creating (plain torch and numpy are fine)"
        )
    return result


# ---------------------------------------------------------------- Exercise 1


class _TinyAE(torch.nn.Module):
    def __init__(self):
        super().__init__()
        with seeded(0):
            self.layer = torch.nn.Linear(16, 16)

    def forward(self, x):
        return torch.sigmoid(self.layer(x.flatten(1))).view_as(x)


def check_reconstruction_score(reconstruction_score) -> None:
    """Exercise 1.1: ``reconstruction_score(model, x)`` must return one number
    per image: the sum over pixels of the squared reconstruction error."""
    task = "Exercise 1.1 (reconstruction score)"
    model = _TinyAE()
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    expected = reconstruction_error(model, x).numpy()
    got = _call_refusing_the_package(task, reconstruction_score, model, x)
    got = to_numpy(got).astype(float)
    if got.shape == ():
        raise AssertionError(
            f"{task}: you returned one number for the whole batch; return one score "
            f"per image (reduce over the pixel axes only), shape ({len(x)},)"
        )
    if got.shape != expected.shape:
        raise AssertionError(f"{task}: expected shape {expected.shape} (one score per image), got {got.shape}")
    if np.allclose(got * 16, expected, rtol=1e-4):
        raise AssertionError(
            f"{task}: your scores are the MEAN squared error over pixels; the course's score is the SUM over pixels"
        )
    with torch.no_grad():
        absolute = (model(x) - x).abs().flatten(1).sum(1).numpy()
    if np.allclose(got, absolute, rtol=1e-4):
        raise AssertionError(f"{task}: you summed ABSOLUTE errors; square the differences instead")
    if not np.allclose(got, expected, rtol=1e-4):
        raise AssertionError(
            f"{task}: for the test batch we expected {np.round(expected, 4)} but got {np.round(got, 4)}"
        )
    _passed(task)


def check_fpr_at_tpr(student_fpr_at_tpr) -> None:
    """Exercise 1.2: ``fpr_at_tpr(labels, scores, target_tpr)`` with the course's
    convention (straight lines between the ROC curve's points)."""
    task = "Exercise 1.2 (FPR at a target TPR)"
    # By score, descending: A A N A N N A N (A = anomaly, N = normal); the third
    # normal and the last anomaly tie at 3, which gives the ROC curve a slanted
    # segment from (0.5, 0.75) to (0.75, 1).
    labels = np.array([1, 1, 0, 1, 0, 0, 1, 0])
    scores = np.array([8, 7, 6, 5, 4, 3, 3, 1], dtype=float)
    cases = [(0.5, 0.0), (0.75, 0.25), (0.99, 0.74), (1.0, 0.75)]
    for target, expected in cases:
        got = float(_call_refusing_the_package(task, student_fpr_at_tpr, labels, scores, target))
        if np.isclose(got, target):
            raise AssertionError(
                f"{task}: for target {target} you returned {got}, the TPR itself; "
                f"return the false-positive rate where the TPR reaches the target"
            )
        if not np.isclose(got, expected, atol=1e-6):
            hint = ""
            if target == 0.99 and np.isclose(got, 0.75):
                hint = (
                    " You returned the FPR of the next operating point: interpolate linearly "
                    "between the two points around the target TPR."
                )
            elif target == 0.99 and np.isclose(got, 0.5):
                hint = " You returned the FPR of the point BELOW the target; the TPR must reach the target."
            raise AssertionError(
                f"{task}: labels {labels.tolist()}, scores {scores.tolist()}, "
                f"target TPR {target}: expected FPR {expected}, got {got}.{hint}"
            )
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = rng.normal(size=300) + labels
    for target in (0.9, 0.99, 0.995):
        got = float(_call_refusing_the_package(task, student_fpr_at_tpr, labels, scores, target))
        if not np.isclose(got, fpr_at_tpr(labels, scores, target), atol=1e-6):
            raise AssertionError(
                f"{task}: the hand-made cases pass, but on 300 random scores at target "
                f"{target} we expected {fpr_at_tpr(labels, scores, target):.4f} and got "
                f"{got:.4f}; check how you handle tied scores"
            )
    _passed(task)


def check_validation_threshold(pick_threshold) -> None:
    """Exercise 1.3: ``pick_threshold(val_labels, val_scores)`` must return the
    threshold with the highest F1 on the validation data it is given."""
    task = "Exercise 1.3 (threshold on validation data)"
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(80, int), np.ones(20, int)]
    scores = np.r_[rng.normal(0, 1, 80), rng.normal(2.5, 1, 20)]
    got = _call_refusing_the_package(task, pick_threshold, labels, scores, allowed=("f1_at_threshold",))
    got = float(got)
    best = f1_at_threshold(labels, scores, choose_threshold(labels, scores))
    mine = f1_at_threshold(labels, scores, got)
    if np.isclose(got, np.median(scores)) or np.isclose(got, np.mean(scores)):
        raise AssertionError(
            f"{task}: your threshold is the median/mean score; with 20% anomalies that "
            f"flags half the data. Try every distinct score as a threshold and keep the "
            f"one with the best F1"
        )
    if mine < best - 1e-9:
        raise AssertionError(
            f"{task}: your threshold {got:.3f} gives validation F1 {mine:.3f}, but "
            f"{best:.3f} is reachable; try every distinct validation score as a threshold "
            f"(anomaly when score >= threshold)"
        )
    _passed(task, f"validation F1 {mine:.3f}.")


# ---------------------------------------------------------------- Exercises 2 and 3


def _tiny_classifier() -> torch.nn.Module:
    with seeded(0):
        return torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
        ).eval()


def _tiny_batch():
    g = torch.Generator().manual_seed(2)
    return torch.rand(6, 1, 4, 4, generator=g), torch.randint(0, 3, (6,), generator=g)


class _AttackCase(NamedTuple):
    """One case of an attack check: the images, the radius, how to call the
    student's attack on a copy of the images, and the right answer or the
    answer with one mistake (``answer(None)`` or ``answer(mistake)``)."""

    description: str
    x: torch.Tensor
    eps: float
    arguments: Callable[[torch.Tensor], tuple]
    answer: Callable[[str | None], torch.Tensor]


def _check_signed_attack(task: str, attack, cases: list[_AttackCase], mistakes: dict, recipe: str, seed: int) -> None:
    """The check of an L-inf attack that takes signed-gradient steps from x
    itself (Exercise 3.1): x left alone, no random start, then the
    answer compared with the right one and with each of ``mistakes``, whose
    message is the feedback. ``recipe`` says in one sentence what to do."""
    outputs = []
    for number, case in enumerate(cases):
        where = f"for {case.description}:"
        x_in = case.x.clone()
        try:
            with seeded(seed + number):  # a random start would differ from call to call; the notebook's draws do not
                got = _call(task, attack, *case.arguments(x_in))
        except AssertionError:
            raise
        except Exception as err:
            raise AssertionError(f"{task}: {where} your function raised {type(err).__name__}: {err}") from None
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
        outputs.append(_as_images(task, got, case.x))
    with seeded(seed + 99):
        again = _as_images(task, _call(task, attack, *cases[0].arguments(cases[0].x.clone())), cases[0].x)
    if not torch.allclose(again, outputs[0], atol=1e-6):
        raise AssertionError(
            f"{task}: two calls with the same arguments gave different images: your attack draws random "
            f"numbers (a random start of your own?). This attack draws none: it starts where it is told, so that its "
            f"answer is fixed"
        )

    def matches(mistake) -> bool:
        return all(torch.allclose(got, case.answer(mistake), atol=1e-5) for got, case in zip(outputs, cases))

    if matches(None):
        _passed(task)
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


def check_fgsm(student_fgsm) -> None:
    """Exercise 2.1: ``fgsm(model, x, y, eps)`` returns x + eps * sign(grad of the
    cross-entropy), clipped to [0, 1], without changing ``x``."""
    from .attacks import fgsm

    task = "Exercise 2.1 (FGSM)"
    model, (x, y) = _tiny_classifier(), _tiny_batch()
    eps = 0.1
    x_before = x.clone()
    got = _call_refusing_the_package(task, student_fgsm, model, x, y, eps)
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
    _passed(task)


def check_project_l2(project_l2) -> None:
    """Exercise 2.2: ``project_l2(delta, eps)`` rescales each example's
    perturbation to L-2 norm eps when it is longer, and leaves it alone otherwise."""
    task = "Exercise 2.2 (projection onto the L-2 ball)"
    g = torch.Generator().manual_seed(3)
    delta = torch.randn(4, 1, 5, 5, generator=g)
    delta[1] *= 0.01  # already inside the ball
    eps = 1.0
    before = delta.clone()
    got = _call_refusing_the_package(task, project_l2, delta, eps)
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
    _passed(task)


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
    model = _tiny_classifier()
    outputs = []
    for description, x, y, k in _l0_cases():
        x_in = x.clone()
        got = _call_refusing_the_package(task, one_step_l0, model, x_in, y, k)
        if not torch.equal(x_in, x):
            raise AssertionError(f"{task}: your function changed x in place; work on a copy (x.clone())")
        got = _as_images(task, got, x)
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
        _passed(task)
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


def _pgd_cases() -> list[tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor, float, float, int]]:
    """(description, model, x, y, eps, alpha, steps) of Exercise 3.1's check:
    the ball binds or not, steps longer than eps, pixels at and near 0 and 1."""
    model = _tiny_classifier()
    x, y = _tiny_batch()
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
    :func:`_raise_score_answer` on the mean cross-entropy, with alpha as the step size."""
    return _raise_score_answer(_mean_cross_entropy_per_example(model, y), x, eps, steps, alpha, mistake)


def check_pgd(pgd) -> None:
    """Exercise 3.1: ``pgd(model, x, y, eps, alpha, steps)`` starts at x and
    takes ``steps`` steps x_adv + alpha * sign(grad of the mean cross-entropy),
    each projected onto the L-inf ball of radius eps around x, then clamped to
    [0, 1]; it returns new images and leaves x alone."""
    task = "Exercise 3.1 (PGD)"
    mistakes = {m: text.replace("step_size", "alpha") for m, text in _RAISE_SCORE_MISTAKES.items()}
    mistakes["descent"] = (
        "your attack LOWERS the loss: it steps against the gradient (x_adv - alpha * sign(grad)), which makes "
        "the model surer of the true label. An attack climbs the loss: ADD alpha * sign(grad)"
    )
    cases = [
        _AttackCase(
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
    _check_signed_attack(task, functools.partial(_call_refusing_the_package, task, pgd), cases, mistakes, recipe, 300)


def check_adversarial_batch_loss(adversarial_batch_loss) -> None:
    """Exercise 3.2: ``adversarial_batch_loss(model, x, y, eps, alpha, steps)``:
    PGD examples (no random start) against the current model, then the mean
    cross-entropy on them, differentiable with respect to the weights."""
    task = "Exercise 3.2 (adversarial-training loss)"
    model, (x, y) = _tiny_classifier(), _tiny_batch()
    eps, alpha, steps = 0.2, 0.03, 5  # steps * alpha < eps: PGD differs from one FGSM step
    model.train()
    got = _call_refusing_the_package(task, adversarial_batch_loss, model, x, y, eps, alpha, steps)
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
    _passed(task)


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
    from .attacks import pgd
    from .training import accuracy

    task = "Exercise 3.3 (adversarial training)"
    if robust_model is None:
        raise _NotDone(
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
    _passed(task)


# ---------------------------------------------------------------- Exercise 4


class _TinyAutoencoder(torch.nn.Module):
    """4 pixels -> 3-d code -> 4 pixels, with an ``encode`` and a ``decode``."""

    def __init__(self):
        super().__init__()
        with seeded(0):
            self.enc, self.dec = torch.nn.Linear(4, 3), torch.nn.Linear(3, 4)

    def encode(self, x):
        return torch.sigmoid(self.enc(x.flatten(1)))

    def decode(self, z):
        return torch.sigmoid(self.dec(z)).view(-1, 1, 2, 2)

    def forward(self, x):
        return self.decode(self.encode(x))


def _tiny_images():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 1, 2, 2, generator=g)
    return x, (x + 0.1 * torch.randn(5, 1, 2, 2, generator=g)).clamp(0, 1)


def check_latent_objective(latent_objective) -> None:
    """Exercise 4.1: ``latent_objective(codes, clean_codes)`` returns, per
    example, the mean over latent units of (codes - clean_codes)^2; it is the
    ``loss_fn`` that the latent attack maximises. The sum (the talk's squared
    norm) passes too, with a note: it gives the attack the same direction."""
    task = "Exercise 4.1 (the latent attack's objective)"
    model = _TinyAutoencoder()
    x, x_adv = _tiny_images()
    with torch.no_grad():
        clean_codes = model.encode(x)
    codes = model.encode(x_adv)
    got = _call_refusing_the_package(task, latent_objective, codes, clean_codes)
    expected = ((codes - clean_codes) ** 2).mean(1)
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{task}: return a torch tensor (the attack differentiates it), got {type(got).__name__}")
    if got.ndim == 0:
        raise AssertionError(
            f"{task}: you returned one number for the batch; return one value per example, "
            f"shape ({len(x)},) (average over the latent units only)"
        )
    if got.shape != expected.shape:
        raise AssertionError(f"{task}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}")
    if got.grad_fn is None:
        raise AssertionError(
            f"{task}: your result carries no gradient; the attack needs to differentiate it (no .detach(), no numpy)"
        )
    if torch.allclose(got, expected * codes.shape[1], atol=1e-6):
        # the talk's own formula (a squared norm): k times the mean, so the same signed-gradient
        # attack. Only in the training loss (Task 2) does the choice change what gamma means
        _passed(
            task,
            "You summed over the latent units (the talk's squared norm); the attack's signed gradient is "
            "the same as with the mean. In the ARAE loss of Task 2 the choice matters: take means there.",
        )
        return
    if not torch.allclose(got, expected, atol=1e-6):
        raise AssertionError(
            f"{task}: expected {expected.detach().numpy().round(5)}, got {got.detach().numpy().round(5)}"
        )
    _passed(task)


def _latent_attack_cases() -> list[tuple]:
    """(description, model, x, start, eps, alpha, steps) of Exercise 4.1b's check."""
    model = _TinyAutoencoder()
    x, _ = _tiny_images()
    x[0, 0, 0, 0], x[1, 0, 1, 1] = 0.0, 1.0  # pixels at the ends of [0, 1]
    cases = []
    for number, (eps, alpha, steps) in enumerate([(0.2, 0.05, 5), (0.1, 0.15, 3), (0.3, 0.1, 1)]):
        start = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(40 + number))
        cases.append((f"eps {eps}, alpha {alpha}, {steps} step(s)", model, x, start, eps, alpha, steps))
    return cases


def _mean_code_distance(model, clean_codes):
    """The latent objective as a score of the attacked images: mean over latent units."""
    return lambda x_adv: ((model.encode(x_adv) - clean_codes) ** 2).mean(1)


def check_latent_attack(latent_attack) -> None:
    """Exercise 4.1b: ``latent_attack(model, x, start, eps, alpha, steps,
    objective)`` starts at x + start (clamped to [0, 1]) and takes ``steps``
    steps x_adv + alpha * sign(grad of objective(model.encode(x_adv), z).sum()),
    z = model.encode(x) held fixed, each projected onto the L-inf ball of
    radius eps around x and clamped to [0, 1]; it returns new images and leaves
    x alone."""
    task = "Exercise 4.1b (the latent attack)"
    objective = lambda codes, clean_codes: ((codes - clean_codes) ** 2).mean(1)  # noqa: E731
    mistakes = {
        "stuck at start": (
            "your attack never moved from its start. Push the code away from the CLEAN code z = model.encode(x), "
            "computed once before the loop: the distance of a code to itself is always zero, and so is its gradient"
        )
    }
    mistakes |= {m: text.replace("step_size", "alpha") for m, text in _RAISE_SCORE_MISTAKES.items()}
    mistakes["descent"] = (
        "your attack pulls the code TOWARDS the clean code (x_adv - alpha * sign(grad)); the attack looks for the "
        "perturbation that moves the code the most: ADD alpha * sign(grad)"
    )
    mistakes["no start"] = (
        "you start at x itself; there the distance to the clean code is at its minimum and its gradient is exactly "
        "zero, so the attack never moves. Start at x + start, clamped to [0, 1]"
    )
    cases = []
    for description, model, x, start, eps, alpha, steps in _latent_attack_cases():
        with torch.no_grad():
            clean_codes = model.encode(x)
        score = _mean_code_distance(model, clean_codes)
        cases.append(
            _AttackCase(
                description,
                x,
                eps,
                lambda x_in, m=model, st=start, e=eps, a=alpha, n=steps: (m, x_in, st.clone(), e, a, n, objective),
                lambda mistake, f=score, x=x, e=eps, n=steps, a=alpha, st=start: _raise_score_answer(
                    f, x, e, n, a, mistake, start=st
                ),
            )
        )
    recipe = (
        "Hold z = model.encode(x) fixed; start at (x + start).clamp(0, 1); in each step take the gradient of "
        "objective(model.encode(x_adv), z).sum() with respect to x_adv, add alpha * its sign, clamp to "
        "[x - eps, x + eps], then to [0, 1]"
    )
    attack = functools.partial(_call_refusing_the_package, task, latent_attack)
    _check_signed_attack(task, attack, cases, mistakes, recipe, 400)


def check_arae_loss(arae_batch_loss) -> None:
    """Exercise 4.2: ``arae_batch_loss(model, x, x_adv, gamma)`` =
    mean((Dec(Enc(x_adv)) - x)^2) + gamma * mean((Enc(x_adv) - Enc(x))^2), with
    gradients through both encoder branches."""
    task = "Exercise 4.2 (the ARAE loss)"
    model = _TinyAutoencoder()
    x, x_adv = _tiny_images()
    gamma = 0.5
    got = _call_refusing_the_package(task, arae_batch_loss, model, x, x_adv, gamma)
    if not isinstance(got, torch.Tensor) or got.ndim != 0:
        raise AssertionError(f"{task}: return one scalar tensor, got {got!r}")
    code, code_adv = model.encode(x), model.encode(x_adv)
    rec = ((model.decode(code_adv) - x) ** 2).mean()
    latent = ((code_adv - code) ** 2).mean()
    expected = rec + gamma * latent
    if torch.isclose(
        got, ((model.decode(code_adv) - x_adv) ** 2).mean() + gamma * latent, atol=1e-7
    ) and not torch.isclose(got, expected, atol=1e-7):
        raise AssertionError(f"{task}: you reconstruct towards x_adv; the target is the CLEAN image x")
    if torch.isclose(got, rec, atol=1e-7):
        raise AssertionError(f"{task}: your loss is the reconstruction term alone; add gamma times the latent term")
    per_image_sums = ((model.decode(code_adv) - x) ** 2).flatten(1).sum(1) + gamma * ((code_adv - code) ** 2).sum(1)
    if any(torch.isclose(got, total, atol=1e-6) for total in (per_image_sums.mean(), per_image_sums.sum())):
        raise AssertionError(
            f"{task}: you sum the squared errors; take their means over pixels and latent units, as the "
            f"published code does (with sums the same gamma weighs the latent term d/k times less, Lecture 4)"
        )
    if torch.isclose(got, ((model(x) - x) ** 2).mean() + gamma * latent, atol=1e-7):
        raise AssertionError(
            f"{task}: you reconstruct the clean input; ARAE reconstructs x from Enc(x_adv), the attacked image's code"
        )
    if not torch.isclose(got, expected, atol=1e-6):
        raise AssertionError(f"{task}: expected {expected.item():.6f}, got {got.item():.6f}")
    (grad_got,) = torch.autograd.grad(got, model.enc.weight, allow_unused=True)
    (grad_expected,) = torch.autograd.grad(expected, model.enc.weight)
    if grad_got is None or not torch.allclose(grad_got, grad_expected, atol=1e-6):
        raise AssertionError(
            f"{task}: the value is right but the gradients are not: do not detach "
            f"Enc(x); gradients flow through both encoder branches"
        )
    _passed(task)


def _occlusion_answer(score, image: torch.Tensor, patch: int, fill: float, mistake: str | None = None) -> np.ndarray:
    """Exercise 4.3's answer with plain loops, or the answer with one ``mistake``
    (a key of :data:`_OCCLUSION_MISTAKES`)."""
    _, height, width = image.shape
    size = 1 if mistake == "one pixel" else patch
    value = 0.0 if mistake == "fill ignored" else fill
    shift = patch // 2 if mistake == "centred" else 0
    base = float(np.asarray(score(image[None]))[0])
    result = np.zeros((height, width))
    for r in range(height):
        for c in range(width):
            covered = image.clone()
            for dr in range(size):
                for dc in range(size):
                    row, col = r + dr - shift, c + dc - shift
                    if mistake == "wrap":
                        row, col = row % height, col % width
                    if 0 <= row < height and 0 <= col < width:
                        covered[:, row, col] = value
            result[r, c] = float(np.asarray(score(covered[None]))[0]) - base
    return -result if mistake == "sign" else result


_OCCLUSION_MISTAKES = {
    "sign": (
        "your map has the opposite sign: it holds score(image) - score(covered). The course's map is "
        "score(covered) - score(image): positive (red) where covering the pixels RAISES the anomaly score"
    ),
    "centred": (
        "your square is centred on each pixel; the map's entry (r, c) covers the patch x patch square whose "
        "TOP-LEFT corner is (r, c), cut off at the image's right and bottom borders"
    ),
    "wrap": (
        "your square wraps round the image's border (torch.roll or indices modulo the size); cut it off at the "
        "border instead: near the right and bottom edges fewer pixels are covered"
    ),
    "fill ignored": "you cover the pixels with 0 whatever `fill` is; set them to `fill`",
    "one pixel": "you cover one pixel at a time whatever `patch` is; cover a patch x patch square",
}


def _occlusion_cases() -> list[tuple[str, object, torch.Tensor, int, float]]:
    """(description, score, image, patch, fill): a linear score, whose map can
    be worked out by hand, and a small autoencoder's reconstruction error."""
    g = torch.Generator().manual_seed(43)
    weight = torch.randn(1, 1, 5, 7, generator=g)

    def linear_score(x):
        return (weight * x).flatten(1).sum(1).numpy()

    autoencoder = _TinyAE()

    def reconstruction_score(x):  # plain torch: the student's function calls it, and may not call the package
        with torch.no_grad():
            return ((autoencoder(x) - x) ** 2).flatten(1).sum(1).numpy()

    image = torch.rand(1, 5, 7, generator=g)
    square = torch.rand(1, 4, 4, generator=g)
    return [
        ("a weighted sum of the pixels, a 5 x 7 image, patch 1, fill 0", linear_score, image, 1, 0.0),
        ("a weighted sum of the pixels, a 5 x 7 image, patch 3, fill 0.5", linear_score, image, 3, 0.5),
        ("a small autoencoder's error, a 4 x 4 image, patch 2, fill 0", reconstruction_score, square, 2, 0.0),
    ]


def check_occlusion_map(occlusion_map) -> None:
    """Exercise 4.3: ``occlusion_map(score, image, patch, fill)`` returns an
    (H, W) array whose entry (r, c) is score(covered) - score(image), with the
    patch x patch square whose top-left corner is (r, c), cut at the border,
    set to ``fill``."""
    task = "Exercise 4.3 (occlusion saliency)"
    outputs = []
    for description, score, image, patch, fill in _occlusion_cases():
        image_in = image.clone()
        got = _call_refusing_the_package(task, occlusion_map, score, image_in, patch, fill)
        if not torch.equal(image_in, image):
            raise AssertionError(f"{task}: your function changed the image in place; cover pixels of a copy")
        got = np.asarray(got.detach().cpu() if isinstance(got, torch.Tensor) else got, dtype=float)
        if got.shape != tuple(image.shape[1:]):
            hint = " (rows first: (H, W), not (W, H))" if got.shape == tuple(image.shape[1:])[::-1] else ""
            raise AssertionError(
                f"{task}: for {description}: expected a map of shape {tuple(image.shape[1:])}, one value per "
                f"pixel, got {got.shape}{hint}"
            )
        outputs.append((got, (score, image, patch, fill)))

    def matches(mistake) -> bool:
        return all(np.allclose(got, _occlusion_answer(*case, mistake=mistake), atol=1e-5) for got, case in outputs)

    if matches(None):
        _passed(task)
        return
    mistake = next((m for m in _OCCLUSION_MISTAKES if matches(m)), None)
    if mistake is not None:
        raise AssertionError(f"{task}: {_OCCLUSION_MISTAKES[mistake]}")
    for (got, case), (description, *_) in zip(outputs, _occlusion_cases()):
        expected = _occlusion_answer(*case)
        if not np.allclose(got, expected, atol=1e-5):
            raise AssertionError(
                f"{task}: for {description}: {int((~np.isclose(got, expected, atol=1e-5)).sum())} of "
                f"{got.size} entries differ from the expected map (by up to {np.abs(got - expected).max():.4f}). "
                f"Entry (r, c) is score(covered) - score(image), the square starting at (r, c) set to fill"
            )


# ---------------------------------------------------------------- Exercise 5 (Lecture 5: puzzles)

_REWRITE = "write it yourself; the package's version is what you are re-creating"


def _from_package(value) -> bool:
    """Whether ``value`` is the ``anomaly_edu`` package, one of its modules, or
    something defined in one of them."""

    if isinstance(value, types.ModuleType):
        name = value.__name__
    else:
        try:
            name = getattr(value, "__module__", "")
        except Exception:  # an object whose attributes cannot be read refers to nothing
            return False
    return isinstance(name, str) and (name == "anomaly_edu" or name.startswith("anomaly_edu."))


def _package_names(fn, seen: set | None = None) -> list[str]:
    """The names through which ``fn`` reaches the ``anomaly_edu`` package: the
    globals and closure variables its code loads (in nested functions and
    lambdas too), its default arguments, the modules it imports, and the same
    for every function of the notebook it calls. torch, numpy and the rest of
    Python are not looked into."""

    seen = set() if seen is None else seen
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    if _from_package(fn):
        return [getattr(fn, "__qualname__", None) or repr(fn)]
    wrapped = getattr(fn, "func", None)  # functools.partial
    if wrapped is not None:
        return _package_names(wrapped, seen) + [
            repr(v) for v in (*getattr(fn, "args", ()), *getattr(fn, "keywords", {}).values()) if _from_package(v)
        ]
    fn = getattr(fn, "__func__", fn)  # a bound method
    if not isinstance(fn, types.FunctionType):
        return []
    found: list[str] = []
    namespace = fn.__globals__
    closure = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            closure[name] = cell.cell_contents
        except ValueError:  # a variable not assigned yet
            pass

    def look_at(name: str, value) -> None:
        if _from_package(value):
            found.append(name)
        elif isinstance(value, types.FunctionType) and value.__globals__ is namespace:
            found.extend(_package_names(value, seen))  # a helper written in the same notebook

    for value in (*(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()):
        look_at("a default argument", value)
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
        for instruction in dis.get_instructions(code):
            name = instruction.argval
            if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME") and name in namespace:
                look_at(name, namespace[name])
            elif instruction.opname in ("LOAD_DEREF", "LOAD_CLASSDEREF") and name in closure:
                look_at(name, closure[name])
            elif instruction.opname == "IMPORT_NAME" and (name == "anomaly_edu" or name.startswith("anomaly_edu.")):
                found.append(name)
    return found


def _refuse_the_package(task: str, fn) -> None:
    """Fail when the student's function calls the package instead of re-creating it."""
    names = sorted(set(_package_names(fn)))
    if names:
        raise AssertionError(
            f"{task}: your function uses {', '.join(names)} from the anomaly_edu package; {_REWRITE} "
            f"(plain torch and numpy are fine)"
        )


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
    _refuse_the_package(task, apply_puzzle)
    cases = [
        # a 4-cycle: the perm, its inverse and both with tiles numbered by columns all differ
        (_numbered_images(2, 3, 4, 4), torch.tensor([1, 2, 3, 0]), 2),
        (_numbered_images(1, 1, 6, 9), torch.tensor([4, 0, 8, 3, 1, 5, 2, 7, 6]), 3),  # tiles of 2 x 3 pixels
    ]
    for x, perm, grid in cases:
        where = f"with grid={grid}, images of shape {tuple(x.shape)} and perm {perm.tolist()}"
        x_before, perm_before = x.clone(), perm.clone()
        try:
            got = _call(task, apply_puzzle, x, perm, grid)
        except AssertionError:
            raise
        except Exception as err:
            raise AssertionError(
                f"{task}: {where} your function raised {type(err).__name__}: {err}. Tiles are "
                f"H // grid pixels high and W // grid pixels wide (not always square), and the grid is "
                f"not always 2"
            ) from None
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
    _passed(task)


def check_inverse(inverse) -> None:
    """Exercise 5a.1: ``inverse(perm)`` is the permutation that undoes ``perm``:
    applying ``perm`` and then ``inverse(perm)`` puts every tile back."""

    task = "Exercise 5a.1 (inverse permutation)"
    _refuse_the_package(task, inverse)
    # a 4-cycle, a 3-cycle, and a 3x3 puzzle: none is its own inverse
    for perm in (torch.tensor([1, 2, 3, 0]), torch.tensor([2, 0, 1, 3]), torch.tensor([4, 0, 8, 3, 1, 5, 2, 7, 6])):
        before = perm.clone()
        got = _call(task, inverse, perm)
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
    _passed(task)


def _aggregated(errors: torch.Tensor, aggregation: str) -> np.ndarray:
    reduce = {"avg": torch.mean, "max": torch.amax, "min": torch.amin}[aggregation]
    return reduce(errors, dim=1).numpy()


def check_normalised_score(normalised_score) -> None:
    """Exercise 5a.2: ``normalised_score(test_errors, val_errors, aggregation)``
    divides each permutation's (column's) errors by that permutation's mean
    error on the normal validation images, then aggregates each test image's
    row with "avg", "max" or "min"."""
    task = "Exercise 5a.2 (normalised score)"
    _refuse_the_package(task, normalised_score)
    g = torch.Generator().manual_seed(5)
    n_test, n_val, n_perms = 6, 9, 4  # all different, so that a wrong axis shows
    scale = torch.tensor([0.5, 2.0, 8.0, 32.0])  # permutations of very different difficulty
    val = (0.2 + torch.rand(n_val, n_perms, generator=g)) * scale
    test = (0.1 + 1.5 * torch.rand(n_test, n_perms, generator=g)) * scale
    for aggregation in ("avg", "max", "min"):
        test_in, val_in = test.clone(), val.clone()
        got = _call(task, normalised_score, test_in, val_in, aggregation)
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
    _passed(task)


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
        return _call(task, fn, *args)


def check_remove_shortcut(remove_shortcut) -> None:
    """Exercise 5b.1: ``remove_shortcut(model, x_puzzled, target, eps)``: a
    uniform random start in the L-inf ball of radius eps around ``x_puzzled``,
    one signed-gradient step of size eps that increases the per-image mean
    squared error between ``model(x)`` and ``target``, projected back onto the
    ball and into [0, 1]; neither ``x_puzzled`` nor ``target`` changes."""
    task = "Exercise 5b.1 (removing the shortcut)"
    _refuse_the_package(task, remove_shortcut)
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
    _passed(task)


# ---------------------------------------------------------------- Exercise 6 (Lecture 6: defect localisation)

# Libraries whose connected-component labelling would do Exercise 6a.1 for the student.
_LABELLING_LIBRARIES = ("scipy.ndimage", "skimage", "cv2")


def _call_watching(task: str, fn, *args, libraries=_LABELLING_LIBRARIES):
    """Call the student's function as :func:`_call` does; return its result and
    which of ``libraries`` it called, directly or through any helper, alias or
    import. Found by watching every call while it runs (``sys.setprofile``),
    not by reading the code."""

    reached = set()

    def library_of(name) -> str | None:
        if not isinstance(name, str):
            return None
        return next((lib for lib in libraries if name == lib or name.startswith(lib + ".")), None)

    def watch(frame, event, arg):
        if event == "call":
            found = library_of(frame.f_globals.get("__name__"))
        elif event == "c_call":
            found = library_of(getattr(arg, "__module__", None))
        else:
            return
        if found:
            reached.add(found)

    return _call_watched(task, watch, fn, *args), sorted(reached)


def _mask_from_rows(rows: list[str]) -> np.ndarray:
    """A bool mask drawn as text: '#' is a defect pixel, '.' a normal one."""
    return np.array([[ch == "#" for ch in row] for row in rows], dtype=bool)


def _region_pairs(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """For two labellings of the same defect pixels: how many regions a has, how
    many b has, and how many distinct (a, b) label pairs the pixels show."""
    fa, fb = a[a > 0], b[b > 0]
    if fa.size == 0:
        return 0, 0, 0
    return len(np.unique(fa)), len(np.unique(fb)), len(np.unique(np.stack([fa, fb]), axis=1).T)


def _regions(count: int) -> str:
    return f"{count} region" + ("" if count == 1 else "s")


def _same_regions(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label arrays cut the same pixels into the same regions, whatever their numbers."""
    if a.shape != b.shape or not np.array_equal(a > 0, b > 0):
        return False
    n_a, n_b, n_pairs = _region_pairs(a, b)
    return n_a == n_b == n_pairs


def check_connected_regions(connected_regions) -> None:
    """Exercise 6a.1: ``connected_regions(mask)`` labels the 8-connected regions
    of a bool mask (H, W) with a flood fill written by the student (no scipy,
    scikit-image or OpenCV): it returns ``(labels, count)``, ``labels`` an
    integer array of the mask's shape with 0 outside the defects and 1, ...,
    ``count`` for the regions, and leaves the mask alone."""
    from scipy import ndimage

    task = "Exercise 6a.1 (connected regions)"
    _refuse_the_package(task, connected_regions)
    rng = np.random.default_rng(61)
    wrap = (
        " Negative indices wrap round in numpy (mask[-1, -1] is the opposite corner): check that a neighbour's "
        "row and column lie inside the mask before you look at it"
    )
    one_pass = (
        " The two arms meet only further down: keep following neighbours (a queue or a stack) until none is "
        "left, rather than deciding in one pass over the rows"
    )
    cases = [
        # (0, 0) and (1, 1) touch only at a corner: one region; (2, 3) is alone. 2 regions, 3 under 4-connectivity.
        ("two pixels that touch only at a corner, and one alone", _mask_from_rows(["#...", ".#..", "...#"]), ""),
        ("a mask without any defect", np.zeros((3, 4), dtype=bool), ""),
        # one region whose two arms meet only in the last row: a single pass over the rows sees two
        ("a U whose two arms meet only at the bottom", _mask_from_rows(["#.#.", "#.#.", "###."]), one_pass),
        # four regions, one pixel in each corner; with negative indices mask[-1, -1] is the opposite corner
        ("one pixel in each corner", _mask_from_rows(["#...#", ".....", ".....", "#...#"]), ""),
        ("a random mask of 7 x 11 pixels", rng.random((7, 11)) < 0.45, ""),
        ("a random mask of 12 x 9 pixels", rng.random((12, 9)) < 0.35, ""),
    ]
    for where, mask, hint in cases:
        where = f"for {where} (mask shape {mask.shape})"
        given = mask.copy()
        try:
            result, libraries = _call_watching(task, connected_regions, given)
        except AssertionError:
            raise
        except Exception as err:
            raise AssertionError(
                f"{task}: {where} your function raised {type(err).__name__}: {err}. Look only at neighbours inside "
                f"the mask: 0 <= row < height and 0 <= column < width"
            ) from None
        if libraries:
            raise AssertionError(
                f"{task}: your function calls {', '.join(libraries)}; this task is the flood fill itself: write "
                f"it with plain Python and numpy (Task 2 may use scipy)"
            )
        if not np.array_equal(given, mask):
            raise AssertionError(
                f"{task}: your function changed the mask it was given (for example, clearing pixels to mark them "
                f"as visited); mark visited pixels in the labels array or a copy instead"
            )
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise AssertionError(f"{task}: return a pair (labels, count), got {type(result).__name__}")
        labels, count = result
        labels = np.asarray(to_numpy(labels))
        if labels.shape != mask.shape:
            raise AssertionError(f"{task}: {where} labels must have the mask's shape {mask.shape}, got {labels.shape}")
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise AssertionError(f"{task}: labels must be whole numbers (an integer array), got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        expected, n_expected = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        numbers = np.unique(labels[labels != 0])
        if (labels < 0).any() or not np.array_equal(numbers, np.arange(1, len(numbers) + 1)):
            raise AssertionError(
                f"{task}: {where} your labels are {numbers.tolist()}; number the regions 1, 2, ..., count and "
                f"leave 0 for the pixels outside the defects"
            )
        try:
            count = int(count)
        except (TypeError, ValueError):
            raise AssertionError(f"{task}: count must be a whole number, got {count!r}") from None
        if count != len(numbers):
            raise AssertionError(
                f"{task}: {where} count is {count}, but your labels hold {len(numbers)} regions; they must agree"
            )
        if _same_regions(labels, expected):
            continue
        missed, extra = mask & (labels == 0), ~mask & (labels != 0)
        if missed.any() or extra.any():
            rows, cols = np.nonzero(missed if missed.any() else extra)
            edge = (
                " They lie on the last row or column: does your loop reach index height - 1 and width - 1?"
                if missed.any() and ((rows == mask.shape[0] - 1) | (cols == mask.shape[1] - 1)).all()
                else ""
            )
            what = "defect pixels got no region (label 0)" if missed.any() else "pixels outside the mask got a region"
            raise AssertionError(
                f"{task}: {where} {int(missed.sum() or extra.sum())} {what}, e.g. at row {rows[0]}, column "
                f"{cols[0]}; every True pixel of the mask, and only those, belongs to a region.{edge}"
            )
        four, _ = ndimage.label(mask)  # scipy's default structure: 4-connectivity
        if _same_regions(labels, four):
            raise AssertionError(
                f"{task}: {where} you found {_regions(count)} where there are {n_expected}: you joined only pixels "
                f"that share a side (4-connectivity). Pixels that touch at a corner belong to the same region too "
                f"(8-connectivity): look at all 8 neighbours, diagonals included"
            )
        n_got, n_right, n_pairs = _region_pairs(labels, expected)
        if n_pairs == n_right:  # each true region lies in one of yours: you joined some
            h, w = mask.shape
            joined = [r for r in range(1, count + 1) if len(np.unique(expected[labels == r])) > 1]
            across = any(
                {0, h - 1} <= set(rows.tolist()) or {0, w - 1} <= set(cols.tolist())
                for rows, cols in (np.nonzero(labels == r) for r in joined)
            )
            hint = wrap if across else " A region holds only pixels connected to each other through defect pixels"
            raise AssertionError(f"{task}: {where} you found {_regions(count)} where there are {n_expected}.{hint}")
        if n_pairs == n_got:  # each of your regions lies in one true region: you cut some
            hint = hint or (
                " Keep following neighbours (a queue or a stack) until none is left: every pixel connected to a "
                "region through defect pixels (sides or corners) belongs to it"
            )
            raise AssertionError(f"{task}: {where} you found {_regions(count)} where there are {n_expected}.{hint}")
        raise AssertionError(
            f"{task}: {where} your regions differ from the 8-connected regions of the mask: expected labels "
            f"(numbers aside)\n{expected}\ngot\n{labels}"
        )
    _passed(task)


def _pro_answers(masks: list[np.ndarray], maps: list[np.ndarray], threshold: float) -> dict:
    """(FPR, PRO) at ``threshold`` the right way ("right") and with each plausible
    mistake. Plain numpy and scipy's labelling, so that the check does not rest
    on the package's own PRO."""
    from scipy import ndimage

    def summary(flag, structure):
        overlaps, pooled_hits, per_image_pooled, per_image_regions = [], 0, [], []
        fp = normal = 0
        fpr_per_image, fpr_per_defect_image, fp_defect_images, normal_defect_images = [], [], 0, 0
        for mask, score_map in zip(masks, maps):
            flagged = flag(score_map)
            labels, count = ndimage.label(mask, structure=structure)
            mine = [flagged[labels == r].mean() for r in range(1, count + 1)]
            overlaps += mine
            pooled_hits += int(flagged[mask].sum())
            image_fp, image_normal = int((flagged & ~mask).sum()), int((~mask).sum())
            fp, normal = fp + image_fp, normal + image_normal
            fpr_per_image.append(image_fp / image_normal)
            if count:
                per_image_pooled.append(flagged[mask].mean())
                per_image_regions.append(np.mean(mine))
                fpr_per_defect_image.append(image_fp / image_normal)
                fp_defect_images, normal_defect_images = (
                    fp_defect_images + image_fp,
                    normal_defect_images + image_normal,
                )
        n_defect = sum(int(m.sum()) for m in masks)
        n_pixels = sum(m.size for m in masks)
        return {
            "fpr": fp / normal,
            "pro": float(np.mean(overlaps)),
            "pooled": pooled_hits / n_defect,
            "per image, pooled": float(np.mean(per_image_pooled)),
            "per image, mean of regions": float(np.mean(per_image_regions)),
            "defect images only": fp_defect_images / normal_defect_images,
            "per image, all images": float(np.mean(fpr_per_image)),
            "per image, defect images": float(np.mean(fpr_per_defect_image)),
            "all pixels": fp / n_pixels,
        }

    eight = np.ones((3, 3), dtype=bool)
    right = summary(lambda m: m >= threshold, eight)
    return {
        "right": right,
        "greater": summary(lambda m: m > threshold, eight),
        "four": summary(lambda m: m >= threshold, None)["pro"],
    }


_PRO_MISTAKES = {
    "pooled": (
        "your PRO is the fraction of ALL defect pixels that are flagged (pixel-level recall), where one large "
        "region outweighs many small ones. Take the fraction flagged of EACH region, then the mean over the regions"
    ),
    "per image, pooled": (
        "you averaged the overlap per IMAGE (flagged defect pixels / defect pixels of each image); PRO averages "
        "over REGIONS: take the fraction flagged of each region, and the mean over all regions of all images"
    ),
    "per image, mean of regions": (
        "you averaged the regions within each image, then averaged the images; PRO is one mean over all regions "
        "of all images, so an image with two defects counts twice"
    ),
    "four": (
        "you split regions whose pixels touch only at a corner (4-connectivity, also the default structure of "
        "scipy.ndimage.label): regions are 8-connected (pass structure=np.ones((3, 3)), or use your "
        "connected_regions)"
    ),
}
_FPR_MISTAKES = {
    "defect images only": (
        "your FPR leaves out the defect-free images: the normal pixels of EVERY test image count, those of "
        "images without any defect included"
    ),
    "per image, all images": (
        "you averaged one FPR per image; pool the pixels instead: flagged normal pixels of all images / normal "
        "pixels of all images"
    ),
    "per image, defect images": (
        "you averaged one FPR per image, and over the images with defects only; pool the pixels of ALL images: "
        "flagged normal pixels of all images / normal pixels of all images"
    ),
    "all pixels": "your FPR divides by all pixels; divide by the normal pixels (mask False) only",
}


def _pro_case(rng, shapes, p, defect_free) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random masks and maps of the given shapes (maps rounded to 0.1, so that
    some pixels sit exactly at a threshold); image ``defect_free`` has no defect."""
    masks = [rng.random(shape) < p for shape in shapes]
    masks[defect_free][:] = False
    maps = [np.round(rng.random(shape), 1) for shape in shapes]
    return masks, maps


def _pro_hand_case() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Exercise 6a.2's hand-made case: three images of different sizes, the last
    without defects; at threshold 0.5 every mistake below gives its own (FPR, PRO)."""
    # The hand-made case, threshold 0.5. Image A (4 x 6) has region R1 (row 0, columns 0-3) and
    # region R2 ((2, 4) and (3, 5), touching at a corner); image B (3 x 3) has region R3 (its centre);
    # image C (2 x 4) has no defect.
    #   flagged: R1 1 of 4 (0.9), R2 1 of 2 (0.8), R3 1 of 1 (exactly 0.5);
    #   normal pixels flagged: A 2 of 18 ((0, 4) = 0.6 and (1, 1) = exactly 0.5), B 1 of 8, C 3 of 8.
    # right:        FPR 6/34 = 0.1765,  PRO (1/4 + 1/2 + 1) / 3 = 7/12 = 0.5833
    # map > t:      FPR 5/34 = 0.1471,  PRO (1/4 + 1/2 + 0) / 3 = 0.25
    # pooled:       PRO 3 / 7 = 0.4286 (3 of the 7 defect pixels)
    # per image:    PRO (2/6 + 1) / 2 = 0.6667; mean of regions per image: ((1/4 + 1/2) / 2 + 1) / 2 = 0.6875
    # 4-connected:  R2 is two regions (1 and 0): PRO (1/4 + 1 + 0 + 1) / 4 = 0.5625
    # FPR without C: 3/26 = 0.1154; per image: (2/18 + 1/8 + 3/8) / 3 = 0.2037, defect images only:
    #   (2/18 + 1/8) / 2 = 0.1181; over all pixels: 6/41 = 0.1463
    masks = [
        _mask_from_rows(["####..", "......", "....#.", ".....#"]),
        _mask_from_rows(["...", ".#.", "..."]),
        np.zeros((2, 4), dtype=bool),
    ]
    maps = [
        np.array(
            [
                [0.9, 0.2, 0.1, 0.3, 0.6, 0.1],
                [0.1, 0.5, 0.2, 0.1, 0.1, 0.1],
                [0.2, 0.1, 0.1, 0.1, 0.8, 0.2],
                [0.1, 0.1, 0.1, 0.1, 0.1, 0.3],
            ]
        ),
        np.array([[0.1, 0.1, 0.1], [0.1, 0.5, 0.1], [0.7, 0.1, 0.1]]),
        np.array([[0.6, 0.55, 0.1, 0.1], [0.1, 0.1, 0.9, 0.2]]),
    ]
    return masks, maps


def check_pro_at_threshold(pro_at_threshold) -> None:
    """Exercise 6a.2: ``pro_at_threshold(masks, maps, threshold)`` returns
    ``(fpr, pro)`` for the rule "defect where map >= threshold": FPR = flagged
    normal pixels / normal pixels, over all images (defect-free ones included);
    PRO = the mean over every 8-connected defect region of every image of the
    fraction of that region flagged. Images may differ in size."""
    task = "Exercise 6a.2 (PRO at one threshold)"
    _refuse_the_package(task, pro_at_threshold)
    hand_masks, hand_maps = _pro_hand_case()
    hand = "the hand-made case (3 images of 4 x 6, 3 x 3 and 2 x 4 pixels, the last without defects)"
    rng = np.random.default_rng(62)
    random_masks, random_maps = _pro_case(rng, [(9, 12), (11, 8), (10, 10), (6, 7)], 0.3, defect_free=2)
    shuffled = "random masks and maps (4 images of different sizes, one without defects)"
    cases = [
        (hand, hand_masks, hand_maps, (0.5,)),
        (shuffled, random_masks, random_maps, (0.0, 0.3, 0.5, 0.8, 1.1)),
    ]
    for description, masks, maps, thresholds in cases:
        for threshold in thresholds:
            where = f"on {description} at threshold {threshold}"
            masks_in, maps_in = [m.copy() for m in masks], [m.copy() for m in maps]
            try:
                result = _call(task, pro_at_threshold, masks_in, maps_in, threshold)
            except AssertionError:
                raise
            except Exception as err:
                raise AssertionError(
                    f"{task}: {where} your function raised {type(err).__name__}: {err}. The images differ in "
                    f"size (as real ones do): handle them one at a time in a loop, without stacking them"
                ) from None
            if not all(np.array_equal(a, b) for a, b in zip(masks_in + maps_in, masks + maps)):
                raise AssertionError(f"{task}: your function changed the masks or maps it was given; leave them alone")
            if not (isinstance(result, (tuple, list)) and len(result) == 2):
                raise AssertionError(f"{task}: return a pair (fpr, pro), got {result!r}")
            try:
                fpr, pro = float(result[0]), float(result[1])
            except (TypeError, ValueError):
                raise AssertionError(f"{task}: return two numbers (fpr, pro), got {result!r}") from None
            answers = _pro_answers(masks, maps, threshold)
            right = answers["right"]

            def close(a, b):
                return bool(np.isclose(a, b, rtol=0, atol=1e-6))  # float32 is fine

            fpr_ok, pro_ok = close(fpr, right["fpr"]), close(pro, right["pro"])
            if fpr_ok and pro_ok:
                continue
            expected = f"expected (FPR, PRO) = ({right['fpr']:.4f}, {right['pro']:.4f}), got ({fpr:.4f}, {pro:.4f})"
            if close(fpr, right["pro"]) and close(pro, right["fpr"]):
                raise AssertionError(f"{task}: {where} {expected}: you returned (PRO, FPR); return (FPR, PRO)")
            greater = answers["greater"]
            if close(fpr, greater["fpr"]) and close(pro, greater["pro"]):
                raise AssertionError(
                    f"{task}: {where} {expected}: you flagged the pixels where map > threshold; the rule is "
                    f"map >= threshold, so a pixel exactly at the threshold is flagged"
                )
            hints = []
            if not fpr_ok:
                hint = next((h for k, h in _FPR_MISTAKES.items() if close(fpr, right[k])), None)
                hints.append(
                    hint
                    or "your FPR is off: count the normal pixels (mask False) with map >= threshold in all images, "
                    "and divide by the number of normal pixels of all images"
                )
            if not pro_ok:
                wrong_pro = {**{k: right[k] for k in _PRO_MISTAKES if k != "four"}, "four": answers["four"]}
                hint = next((_PRO_MISTAKES[k] for k, v in wrong_pro.items() if close(pro, v)), None)
                hints.append(
                    hint
                    or "your PRO is off: for each 8-connected region of each mask take the fraction of its pixels "
                    "with map >= threshold, then the mean over all regions of all images"
                )
            hints = "; and ".join(hints)
            raise AssertionError(f"{task}: {where} {expected}. {hints[0].upper()}{hints[1:]}")
    _passed(task)


# ---------------------------------------------------------------- Exercise 6b (pairing masks with images)


def _write_png(path, pixels) -> None:
    """Write a uint8 array (H, W) or (H, W, 3) as an image file of the suffix's
    format (.png, .jpg), making its folder."""
    from pathlib import Path

    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)


def _write_mvtec_category(folder, rng, defects: dict, masks: dict, good=("0", "1")) -> dict:
    """A tiny MVTec-layout category: train/good, test/good, test/<defect>/<stem>.png for
    ``defects[defect]`` and ground_truth/<defect>/<stem>_mask.png for ``masks[defect]``.
    Returns {image path: its mask path or None} for the test images that have a
    mask or are good (resolved paths)."""
    folder = folder.resolve()
    _write_png(folder / "train" / "good" / "0.png", rng.integers(0, 256, (6, 6)))
    pairs = {}
    for stem in good:
        path = folder / "test" / "good" / f"{stem}.png"
        _write_png(path, rng.integers(0, 256, (6, 6)))
        pairs[path] = None
    for defect, stems in defects.items():
        for stem in stems:
            _write_png(folder / "test" / defect / f"{stem}.png", rng.integers(0, 256, (6, 6)))
    for defect, stems in masks.items():
        for stem in stems:
            mask = folder / "ground_truth" / defect / f"{stem}_mask.png"
            _write_png(mask, 255 * (rng.random((6, 6)) < 0.3))
            image = folder / "test" / defect / f"{stem}.png"
            if image.is_file():
                pairs[image] = mask
    return pairs


def _check_pairs(task: str, got, folder, expected: dict, where: str) -> None:
    """Compare the student's pairs with the expected {image: mask or None}."""
    from pathlib import Path

    def shown(path) -> str:
        try:
            return path.relative_to(folder).as_posix()
        except ValueError:
            return str(path)

    if not isinstance(got, (list, tuple)):
        raise AssertionError(
            f"{task}: return a list of (image path, mask path or None) pairs, got {type(got).__name__}"
        )
    seen = {}
    for item in got:
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise AssertionError(
                f"{task}: {where} each entry must be a pair (image path, mask path or None), got {item!r}"
            )
        try:
            image = Path(item[0]).resolve()
            seen_mask = None if item[1] is None else Path(item[1]).resolve()
        except TypeError:
            raise AssertionError(
                f"{task}: {where} each entry must be a pair of paths (str or pathlib.Path; None for no mask), "
                f"got {item!r}"
            ) from None
        if image in seen:
            raise AssertionError(f"{task}: {where} the image {shown(image)} appears twice; list each test image once")
        seen[image] = seen_mask
    extra = sorted(set(seen) - set(expected))
    if extra:
        example = shown(extra[0])
        kind = (
            "a mask listed as an image"
            if "ground_truth" in example
            else "a training image"
            if example.startswith("train/")
            else "not a test image"
        )
        raise AssertionError(
            f"{task}: {where} you returned {example}, {kind}; return the test images test/<defect>/<name>.png "
            f"(good ones included), each with its mask"
        )
    missing = sorted(set(expected) - set(seen))
    if missing:
        if all(expected[m] is None for m in missing):
            raise AssertionError(
                f"{task}: {where} the good images are missing (e.g. {shown(missing[0])}): list them too, each "
                f"paired with None (a good image has no mask)"
            )
        raise AssertionError(
            f"{task}: {where} the test image {shown(missing[0])} is missing from your pairs ({len(missing)} "
            f"missing in all); every test image must be listed"
        )
    for image, mask in expected.items():
        got_mask = seen[image]
        if got_mask == mask:
            continue
        if mask is None:
            raise AssertionError(
                f"{task}: {where} the good image {shown(image)} got {shown(got_mask)}; good images have no mask: "
                f"pair them with None"
            )
        if got_mask is None:
            raise AssertionError(f"{task}: {where} the defect image {shown(image)} got None; its mask is {shown(mask)}")
        if got_mask.name != mask.name:
            raise AssertionError(
                f"{task}: {where} you paired {shown(image)} with {shown(got_mask)}: pairing by sort order or by "
                f"position goes wrong as soon as the names sort differently ('10' before '2') or a file is "
                f"missing or extra. Pair by NAME: the mask of test/<defect>/<name>.png is "
                f"ground_truth/<defect>/<name>_mask.png"
            )
        if got_mask.parent.name != image.parent.name:
            raise AssertionError(
                f"{task}: {where} you paired {shown(image)} with {shown(got_mask)}, a mask of another defect type: "
                f"every defect type numbers its images from the start, so look for the mask in "
                f"ground_truth/<the image's own defect folder>/"
            )
        raise AssertionError(
            f"{task}: {where} {shown(image)} should be paired with {shown(mask)}, got {shown(got_mask)}"
        )


def check_pair_masks(pair_masks) -> None:
    """Exercise 6b.1: ``pair_masks(category_folder)`` lists every test image of an
    MVTec-layout category folder with its mask, by name: ``(test/<defect>/<name>.png,
    ground_truth/<defect>/<name>_mask.png)``, and ``(test/good/<name>.png, None)``;
    a defect image without its mask raises an error that names the image."""
    import tempfile
    from pathlib import Path

    task = "Exercise 6b.1 (pairing masks by name)"
    _refuse_the_package(task, pair_masks)
    rng = np.random.default_rng(63)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch).resolve()

        def run(folder, where):
            try:
                return _call(task, pair_masks, str(folder))
            except AssertionError:
                raise
            except Exception as err:
                hint = (
                    " (category_folder may be a str: start with Path(category_folder))"
                    if isinstance(err, TypeError)
                    else ""
                )
                raise AssertionError(
                    f"{task}: {where} your function raised {type(err).__name__}: {err}{hint}"
                ) from None

        # Names 1, 2, 10 sort as 1, 10, 2 but their masks as 10_mask, 1_mask, 2_mask; both defect
        # types have a 1 and a 10, so a lookup by name alone finds the other type's mask.
        folder = scratch / "main"
        stems = {"crack": ["1", "2", "10"], "scratch": ["1", "3", "10"]}
        expected = _write_mvtec_category(folder, rng, stems, stems)
        where = "on a category with test/crack/1.png, 2.png, 10.png and test/scratch/1.png, 3.png, 10.png:"
        _check_pairs(task, run(folder, where), folder, expected, where)

        # A stray mask (5_mask.png, no image 5.png): pairing by position shifts; by name it is ignored.
        folder = scratch / "stray"
        expected = _write_mvtec_category(folder, rng, {"crack": ["1", "2", "10"]}, {"crack": ["1", "2", "5", "10"]})
        where = "on a category whose ground_truth/crack/ also holds 5_mask.png, a mask without an image:"
        try:
            got = _call(task, pair_masks, str(folder))
        except AssertionError:
            raise
        except Exception as err:
            if "5_mask.png" not in str(err):
                raise AssertionError(
                    f"{task}: {where} your function raised {type(err).__name__}: {err}. Either ignore a mask "
                    f"without an image or say which mask it is (5_mask.png)"
                ) from None
        else:
            _check_pairs(task, got, folder, expected, where)

        # test/crack/3.png has no mask (test/scratch/3.png has one).
        folder = scratch / "missing"
        expected = _write_mvtec_category(
            folder, rng, {"crack": ["1", "2", "3"], "scratch": ["3"]}, {"crack": ["1", "2"], "scratch": ["3"]}
        )
        where = "on a category where test/crack/3.png has no mask:"
        try:
            got = _call(task, pair_masks, str(folder))
        except AssertionError:
            raise
        except Exception as err:
            message = str(err)
            if "3.png" not in message or "crack" not in message:
                raise AssertionError(
                    f"{task}: {where} your error says {type(err).__name__}: {message!r}, which does not name the "
                    f"image: say which image has no mask (its defect folder and file name, crack/3.png, e.g. its "
                    f"full path) and where its mask was expected"
                ) from None
        else:
            image = (folder / "test" / "crack" / "3.png").resolve()
            listed = {}
            if isinstance(got, (list, tuple)):
                for item in got:
                    if isinstance(item, (list, tuple)) and len(item) == 2:
                        listed[Path(item[0]).resolve()] = item[1]
            if image not in listed:
                raise AssertionError(
                    f"{task}: {where} your function silently left that image out; raise an error that names it "
                    f"(a missing mask means a broken copy of the data set, and a test set that shrinks without a "
                    f"word gives numbers that cannot be compared)"
                )
            mask = listed[image]
            if isinstance(mask, (str, Path)) and not Path(mask).is_file():
                raise AssertionError(
                    f"{task}: {where} you returned the mask {mask}, which does not exist; check that the mask is "
                    f"there, and raise an error naming the image when it is not"
                )
            raise AssertionError(
                f"{task}: {where} your function returned {mask!r} for it without an error; raise an error that "
                f"names the image (only good images have no mask)"
            )
    _passed(task)


def check_load_pair(load_pair) -> None:
    """Exercise 6b.2: ``load_pair(image_path, mask_path)`` returns ``(image,
    mask)``: the image as floats in [0, 1] of shape (H, W, 3) (grey images
    converted to RGB), the mask as bool (H, W), True where its grey value is above
    127 (all False when ``mask_path`` is None). A mask of another size than its
    image raises an error naming both files and both sizes."""
    import re
    import tempfile
    from pathlib import Path

    from PIL import Image

    task = "Exercise 6b.2 (loading an image and its mask)"
    _refuse_the_package(task, load_pair)
    rng = np.random.default_rng(64)
    height, width = 9, 13  # not square, so that (width, height) and (height, width) differ
    levels = np.array([0, 1, 2, 3, 60, 126, 127, 128, 129, 200, 254, 255], dtype=np.uint8)  # specks, edges, defect
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch).resolve()
        part, part_mask = scratch / "part.png", scratch / "part_mask.png"
        _write_png(part, rng.integers(0, 256, (height, width, 3)))
        grey = levels[rng.integers(0, len(levels), (height, width))]
        grey.flat[: len(levels)] = levels  # every level appears
        _write_png(part_mask, grey)
        tile, tile_mask = scratch / "tile.jpg", scratch / "tile.png"  # the magnetic tiles' layout
        _write_png(tile, rng.integers(0, 256, (height, width)))
        _write_png(tile_mask, np.repeat(grey[::-1, :, None], 3, axis=2))  # a grey mask stored as RGB
        small, turned = scratch / "small_mask.png", scratch / "turned_mask.png"
        _write_png(small, 255 * (rng.random((7, 11)) < 0.5))
        _write_png(turned, 255 * (rng.random((width, height)) < 0.5))

        def run(image_path, mask_path, where):
            try:
                return _call(task, load_pair, image_path, mask_path)
            except AssertionError:
                raise
            except Exception as err:
                raise AssertionError(f"{task}: {where} your function raised {type(err).__name__}: {err}") from None

        cases = [
            ("for part.png (RGB) and part_mask.png (grey, values 0 to 255):", part, part_mask),
            ("for tile.jpg (grey) and tile.png (a grey mask stored as RGB):", tile, tile_mask),
            ("for part.png with mask_path None (a good image):", part, None),
        ]
        for where, image_path, mask_path in cases:
            result = run(image_path, mask_path, where)
            if not (isinstance(result, (tuple, list)) and len(result) == 2):
                raise AssertionError(f"{task}: return a pair (image, mask), got {type(result).__name__}")
            image, mask = result
            if mask is None:
                raise AssertionError(
                    f"{task}: {where} your mask is None; return an all-False mask of the image's (height, width)"
                )
            image, mask = np.asarray(to_numpy(image)), np.asarray(to_numpy(mask))
            with Image.open(image_path) as picture:
                expected_image = np.asarray(picture.convert("RGB"), dtype=np.float64) / 255
            if image.shape == (height, width):
                raise AssertionError(
                    f"{task}: {where} your image has shape {image.shape}; return 3 channels (height, width, 3) for "
                    f"every image, grey ones included (PIL: .convert('RGB'))"
                )
            if image.shape != (height, width, 3):
                raise AssertionError(
                    f"{task}: {where} expected an image of shape (height, width, 3) = {(height, width, 3)}, got "
                    f"{image.shape}"
                )
            if not np.issubdtype(image.dtype, np.floating) or image.max() > 1:
                raise AssertionError(
                    f"{task}: {where} your image holds values up to {image.max()} ({image.dtype}); return floats "
                    f"in [0, 1] (divide the 8-bit values by 255)"
                )
            if not np.allclose(image, expected_image, atol=1e-6):
                raise AssertionError(
                    f"{task}: {where} your image differs from the file's pixels by up to "
                    f"{np.abs(image - expected_image).max():.3f}; read it with PIL, .convert('RGB'), divide by 255"
                )
            if mask_path is None:
                expected_grey = np.zeros((height, width), dtype=np.uint8)
            else:
                with Image.open(mask_path) as picture:
                    expected_grey = np.asarray(picture.convert("L"))
            if mask.shape == (width, height):
                raise AssertionError(
                    f"{task}: {where} your mask has shape {mask.shape}, (width, height); numpy arrays are "
                    f"(height, width) = {(height, width)}, while PIL's .size is (width, height)"
                )
            if mask.ndim == 3 and mask.shape[:2] == (height, width):
                raise AssertionError(
                    f"{task}: {where} your mask has shape {mask.shape}: it still has colour channels; convert it to "
                    f"grey first (PIL: .convert('L')), then threshold"
                )
            if mask.shape != (height, width):
                raise AssertionError(f"{task}: {where} expected a mask of shape {(height, width)}, got {mask.shape}")
            if mask.dtype != bool:
                raise AssertionError(
                    f"{task}: {where} your mask is {mask.dtype}; return a bool array (True = defect pixel)"
                )
            if np.array_equal(mask, expected_grey > 127):
                continue
            wrong = [
                (
                    expected_grey > 0,
                    "you counted every non-zero pixel as defect, the faint specks (values 1 to 127) "
                    "included; a pixel is a defect pixel when its grey value is above 127",
                ),
                (expected_grey >= 127, "a grey value of exactly 127 is not a defect pixel: the rule is > 127"),
                (
                    expected_grey == 255,
                    "you kept only the pixels at 255; the soft edges of a drawn defect (128 to "
                    "254) are defect pixels too: the rule is grey value > 127",
                ),
            ]
            hint = next((h for answer, h in wrong if np.array_equal(mask, answer)), None)
            hint = hint or "the mask is True where its grey value (PIL: .convert('L')) is above 127, else False"
            raise AssertionError(
                f"{task}: {where} {int((mask != (expected_grey > 127)).sum())} mask pixels are wrong. "
                f"{hint[0].upper()}{hint[1:]}"
            )

        # sizes that differ
        for mask_path, (w, h) in ((small, (11, 7)), (turned, (height, width))):
            where = f"for part.png ({width} x {height} px, width x height) and {mask_path.name} ({w} x {h} px):"
            try:
                _call(task, load_pair, part, mask_path)
            except AssertionError:
                raise
            except Exception as err:
                message = str(err)
            else:
                same_count = (
                    " It has as many pixels in another shape: compare (height, width), not the numbers of "
                    "pixels (numpy's .size)."
                    if w * h == width * height
                    else ""
                )
                raise AssertionError(
                    f"{task}: {where} your function returned without an error; a mask of another size than its "
                    f"image does not belong to it (or was saved wrong): raise an error naming both files and "
                    f"their sizes, and never resize the mask to fit.{same_count}"
                )
            if part.name not in message or mask_path.name not in message:
                raise AssertionError(
                    f"{task}: {where} your error says {message!r}; name both files (the image and the mask), so "
                    f"that the reader knows which pair to fix"
                )
            numbers = message.replace(str(part), " ").replace(str(mask_path), " ")
            numbers = numbers.replace(part.name, " ").replace(mask_path.name, " ")
            if not all(re.search(rf"(?<!\d){n}(?!\d)", numbers) for n in (w, h, width, height)):
                raise AssertionError(
                    f"{task}: {where} your error says {message!r}; give both sizes too (e.g. 'the mask is "
                    f"{w} x {h} px but the image is {width} x {height} px')"
                )
    _passed(task)


# ---------------------------------------------------------------- the signed-gradient attack (Exercises 3 and 4)


def _raise_score_answer(score_fn, x: torch.Tensor, eps: float, steps: int, step_size: float, mistake=None, start=None):
    """Signed-gradient ascent on ``score_fn`` from x, ``steps`` steps of
    ``step_size``, each projected onto the L-inf ball of radius ``eps`` around x
    and clamped to [0, 1], written in plain torch (the checks of Exercises 3
    and 4 do not rest on the package's attacks), or with one ``mistake`` (a key of
    :data:`_RAISE_SCORE_MISTAKES`). With ``start`` (Exercise 4.1b) the steps
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


_RAISE_SCORE_MISTAKES = {
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


def _as_images(task: str, got, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"{task}: return a torch tensor of attacked images, got {type(got).__name__}")
    if got.shape != like.shape:
        raise AssertionError(
            f"{task}: expected attacked images of the input's shape {tuple(like.shape)}, got {tuple(got.shape)}"
        )
    return got.detach().to(like.dtype)


# ---------------------------------------------------------------- Exercise 7a (Lecture 7: attacking Puzzle-AE's score)


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
        got = _call_refusing_the_package(task, puzzle_errors, network, x_in, perms, grid, normalisers, allowed=allowed)
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
    _passed(task, "Your errors match, and their gradient reaches the images through the puzzle and the target.")


# ---------------------------------------------------------------- Exercise 7b (Lecture 7: does one beat another?)

_TTEST = (
    "the point is to build the interval yourself: the means, the standard error from the two sample variances, "
    "the Welch-Satterthwaite degrees of freedom and a t quantile (scipy.stats.t.ppf is fine)"
)


def _scipy_ttest(value) -> str | None:
    """The name of ``value`` when it is one of scipy's t-tests, else None."""
    value = getattr(value, "func", value)  # functools.partial
    name, module = getattr(value, "__name__", None), getattr(value, "__module__", None)
    if isinstance(name, str) and name.startswith("ttest") and str(module).startswith("scipy"):
        return name
    return None


def _ttest_names(fn, seen: set | None = None) -> list[str]:
    """The scipy t-tests (``ttest_ind``, ``ttest_rel``, ...) that ``fn``'s code
    names, in nested functions and in the functions of the same notebook it
    calls too: as attributes (``stats.ttest_ind``), imports, or globals that
    hold them."""
    seen = set() if seen is None else seen
    if _scipy_ttest(fn):
        return [_scipy_ttest(fn)]
    fn = getattr(fn, "func", fn)  # functools.partial
    fn = getattr(fn, "__func__", fn)  # a bound method
    if id(fn) in seen or not isinstance(fn, types.FunctionType):
        return []
    seen.add(id(fn))
    found = []
    codes = [fn.__code__]
    while codes:
        code = codes.pop()
        codes.extend(const for const in code.co_consts if isinstance(const, types.CodeType))
        for instruction in dis.get_instructions(code):
            name, operation = instruction.argval, instruction.opname
            if not isinstance(name, str):
                continue
            if operation in ("LOAD_ATTR", "LOAD_METHOD", "IMPORT_FROM") and name.startswith("ttest"):
                found.append(name)
            elif operation in ("LOAD_GLOBAL", "LOAD_NAME") and name in fn.__globals__:
                value = fn.__globals__[name]
                if _scipy_ttest(value):
                    found.append(_scipy_ttest(value))
                elif isinstance(value, types.FunctionType) and value.__globals__ is fn.__globals__:
                    found.extend(_ttest_names(value, seen))
    return found


def _call_watched(task: str, watch, fn, *args):
    """Call the student's function as :func:`_call` does, with ``watch`` as the
    profiler (``sys.setprofile``) while it runs; the previous one is put back."""
    import sys

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        return _call(task, fn, *args)
    finally:
        sys.setprofile(previous)


def _call_watching_functions(task: str, fn, *args):
    """Call the student's function as :func:`_call` does; return its result and
    the (module, name) of every Python function it called, found by watching
    the calls while it runs (``sys.setprofile``)."""

    called = set()

    def watch(frame, event, arg):
        if event == "call":
            called.add((frame.f_globals.get("__name__"), frame.f_code.co_name))

    return _call_watched(task, watch, fn, *args), called


def _refuse_the_ttest(task: str, fn, called=()) -> None:
    """Fail when the student's function names or calls one of scipy's t-tests."""
    names = set(_ttest_names(fn))
    names |= {name for module, name in called if str(module).startswith("scipy") and name.startswith("ttest")}
    if names:
        raise AssertionError(f"{task}: your function uses scipy.stats.{', '.join(sorted(names))}; {_TTEST}")


def _welch_answers(a, b, confidence: float) -> dict[str, tuple[float, float, float]]:
    """(difference, low, high) for samples a and b: the Welch interval ("right")
    and each plausible mistake of :data:`_WELCH_MISTAKES`. Written with numpy and
    the t quantile, without scipy's t-test."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = a.size, b.size
    difference = a.mean() - b.mean()

    def interval(se, quantile, centre=difference):
        return float(centre), float(centre - quantile * se), float(centre + quantile * se)

    def welch(ddof=1, level=confidence):
        va, vb = a.var(ddof=ddof) / na, b.var(ddof=ddof) / nb
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        return np.sqrt(va + vb), df, stats.t.ppf((1 + level) / 2, df)

    se, df, quantile = welch()
    pooled = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    pooled_se = np.sqrt(pooled * (1 / na + 1 / nb))
    n = min(na, nb)  # pairs formed by zip(a, b), which drops the extra runs of the longer sample
    d = a[:n] - b[:n]
    right = interval(se, quantile)
    return {
        "right": right,
        "ddof 0": interval(*welch(ddof=0)[::2]),
        "pooled": interval(pooled_se, stats.t.ppf((1 + confidence) / 2, na + nb - 2)),
        "df n - 2": interval(se, stats.t.ppf((1 + confidence) / 2, na + nb - 2)),
        "normal": interval(se, stats.norm.ppf((1 + confidence) / 2)),
        "1.96": interval(se, 1.96),
        "paired": interval(d.std(ddof=1) / np.sqrt(n), stats.t.ppf((1 + confidence) / 2, n - 1), d.mean()),
        "std": interval(np.sqrt(a.var(ddof=1) + b.var(ddof=1)), quantile),
        "b - a": (-right[0], -right[2], -right[1]),
        "one-sided": interval(se, stats.t.ppf(confidence, df)),
        "0.95": interval(*welch(level=0.95)[::2]),
    }


_WELCH_MISTAKES = {
    "ddof 0": (
        "your variances divide by n (numpy's default, ddof=0): that is the population variance. From a sample, "
        "divide by n - 1: np.var(a, ddof=1)"
    ),
    "pooled": (
        "you pooled the two variances (Student's t-test, equal_var=True). The methods need not spread alike: "
        "keep each variance, se = sqrt(var_a / n_a + var_b / n_b), with the Welch-Satterthwaite degrees of freedom"
    ),
    "df n - 2": (
        "your standard error is Welch's, but your degrees of freedom are n_a + n_b - 2, which belong to the "
        "pooled t-test; use Welch-Satterthwaite: (va + vb)^2 / (va^2 / (n_a - 1) + vb^2 / (n_b - 1)) with "
        "va = var_a / n_a, vb = var_b / n_b"
    ),
    "normal": (
        "you used the normal quantile; with a few runs per method the t quantile is wider: "
        "scipy.stats.t.ppf((1 + confidence) / 2, df)"
    ),
    "1.96": (
        "you used 1.96, the normal quantile for 95% only; use the t quantile of the Welch degrees of freedom at "
        "the confidence asked for: scipy.stats.t.ppf((1 + confidence) / 2, df)"
    ),
    "paired": (
        "you paired run i of A with run i of B (a t-test on the differences). The runs are independent, not "
        "paired: on protocol 2 the split is fixed and the seed only changes each method's own initialisation and "
        "batches. Compare the two samples as they are, with the Welch interval"
    ),
    "std": (
        "your interval uses the standard deviations, not the standard error of the difference of the means: "
        "divide each variance by its number of runs, se = sqrt(var_a / n_a + var_b / n_b)"
    ),
    "b - a": (
        "your difference is mean(b) - mean(a); return mean(a) - mean(b), so that a positive difference means "
        "that A scores higher"
    ),
    "one-sided": (
        "your quantile is one-sided, t.ppf(confidence, df); a two-sided interval leaves (1 - confidence) / 2 "
        "out on each side: t.ppf((1 + confidence) / 2, df)"
    ),
    "0.95": "your interval is the 95% one whatever the confidence asked for; use the confidence argument",
}


def _welch_cases() -> list[tuple[str, object, object, float]]:
    """(description, a, b, confidence) of Exercises 7b.1's check: sizes and
    spreads that differ, sequences of several kinds; together they tell every
    mistake of :data:`_WELCH_MISTAKES` apart."""
    return [
        (
            "5 and 8 runs, the second spread wider, confidence 0.95",
            [86.1, 84.9, 85.7, 86.4, 85.2],
            np.array([83.0, 87.9, 81.2, 86.5, 84.4, 80.1, 85.8, 82.6]),
            0.95,
        ),
        (
            "6 and 6 runs, confidence 0.9",
            np.array([90.2, 91.5, 89.7, 92.3, 90.8, 91.1]),
            np.array([88.4, 91.0, 87.2, 90.1, 89.9, 86.8]),
            0.9,
        ),
        ("3 and 7 runs, confidence 0.99", (71.5, 75.2, 73.0), [70.1, 70.9, 69.4, 71.8, 70.5, 70.2, 71.1], 0.99),
        (
            "10 and 4 runs, confidence 0.8",
            np.linspace(60.0, 66.0, 10) + np.array([0.3, -0.2, 0.5, 0.0, -0.4, 0.1, 0.2, -0.3, 0.4, -0.1]),
            [64.5, 66.2, 61.7, 68.0],
            0.8,
        ),
    ]


def check_welch_interval(welch_interval) -> None:
    """Exercise 7b.1: ``welch_interval(a, b, confidence)`` returns ``(difference,
    low, high)``: mean(a) - mean(b) and its Welch confidence interval (sample
    variances, standard error sqrt(var_a/n_a + var_b/n_b), Welch-Satterthwaite
    degrees of freedom, t quantile at (1 + confidence) / 2), written without
    scipy's t-tests; the samples may differ in size."""
    from scipy import stats

    task = "Exercise 7b.1 (the Welch interval)"
    _refuse_the_package(task, welch_interval)
    _refuse_the_ttest(task, welch_interval)
    outputs, cases = [], _welch_cases()
    for description, a, b, confidence in cases:
        where = f"for {description}:"
        a_in, b_in = (v.copy() if isinstance(v, np.ndarray) else v for v in (a, b))
        try:
            result, called = _call_watching_functions(task, welch_interval, a_in, b_in, confidence)
        except AssertionError:
            raise
        except Exception as err:
            hint = ""
            if len(a) != len(b):
                hint = (
                    f" The two methods may have different numbers of runs ({len(a)} and {len(b)}): the runs are "
                    f"independent, not paired, so compute each mean and variance on its own sample"
                )
            raise AssertionError(f"{task}: {where} your function raised {type(err).__name__}: {err}.{hint}") from None
        _refuse_the_ttest(task, welch_interval, called)
        if not all(np.array_equal(u, v) for u, v in ((a_in, a), (b_in, b))):
            raise AssertionError(f"{task}: your function changed the samples it was given (sorted them?); leave them")
        if not (isinstance(result, (tuple, list, np.ndarray)) and len(result) == 3):
            raise AssertionError(f"{task}: return three numbers (difference, low, high), got {result!r}")
        try:
            got = tuple(float(v) for v in result)
        except (TypeError, ValueError):
            raise AssertionError(f"{task}: return three numbers (difference, low, high), got {result!r}") from None
        answers = _welch_answers(a, b, confidence)
        scipy_interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
        assert np.allclose(answers["right"][1:], scipy_interval, rtol=1e-9), "the check's reference is off"
        outputs.append((description, got, answers))

    def close(got, expected) -> bool:
        return bool(np.allclose(got, expected, rtol=1e-6, atol=1e-8))

    if all(close(got, answers["right"]) for _, got, answers in outputs):
        _passed(task)
        return
    mistake = next((m for m in _WELCH_MISTAKES if all(close(g, answers[m]) for _, g, answers in outputs)), None)
    if mistake is not None:
        raise AssertionError(f"{task}: {_WELCH_MISTAKES[mistake]}")
    description, got, answers = next(o for o in outputs if not close(o[1], o[2]["right"]))
    expected = answers["right"]
    if close(got[0], expected[0]):
        hint = (
            "the difference is right but the interval is not: check the standard error, the degrees of freedom "
            "and the quantile"
        )
    else:
        hint = "the difference of the means is off: mean(a) - mean(b)"
    raise AssertionError(
        f"{task}: for {description}: expected (difference, low, high) = "
        f"({expected[0]:.4f}, {expected[1]:.4f}, {expected[2]:.4f}), got ({got[0]:.4f}, {got[1]:.4f}, "
        f"{got[2]:.4f}); {hint}"
    )


def _decide_cases() -> list[tuple[str, list, list, float]]:
    """(description, a, b, confidence) of Exercise 7b.2's check."""
    a = [90.1, 90.5, 89.8, 90.3, 90.0]
    b = [85.2, 85.9, 84.7, 85.5]
    wide = [95.0, 79.0, 93.0, 77.0, 91.0]  # mean 87, 2.5 above b_close's, but spread wide
    b_close = [84.0, 85.5, 83.5, 85.0]
    middling = [86.0, 87.5, 84.5, 88.0, 85.0]  # mean 86.2, a little above b_close's 84.5
    return [
        ("A clearly higher, little spread", a, b, 0.95),
        ("A half a point higher, runs close together", [86.0, 86.4, 86.1, 86.5, 86.2], [85.8, 85.5, 85.9, 85.6], 0.95),
        ("B clearly higher, little spread", b, a, 0.95),
        ("A's mean 2.5 points higher, but its runs spread from 77 to 95", wide, b_close, 0.95),
        ("B's mean 2.5 points higher, but its runs spread from 77 to 95", b_close, wide, 0.95),
        ("A a little higher, confidence 0.8", middling, b_close, 0.8),
        ("A a little higher (the same runs), confidence 0.99", middling, b_close, 0.99),
    ]


def _decision(low: float, high: float) -> str:
    return "A" if low > 0 else "B" if high < 0 else "cannot tell"


_DECIDE_MISTAKES = {
    "means only": (
        "you decided from the difference of the means alone. When the interval holds 0 the runs cannot tell the "
        'methods apart, however far apart the means are: "A" only when low > 0, "B" only when high < 0, '
        'else "cannot tell"'
    ),
    "swapped": (
        "you swapped A and B: the interval is for mean(a) - mean(b), so an interval above 0 means that A scores "
        'higher: return "A" then'
    ),
    "confidence": (
        "your decisions are those of the 95% interval whatever the confidence asked for: pass the confidence on "
        "to welch_interval"
    ),
}


def check_decide(decide) -> None:
    """Exercise 7b.2: ``decide(a, b, confidence)`` returns "A" when the whole Welch
    interval of mean(a) - mean(b) lies above 0, "B" when it lies below 0, and
    "cannot tell" otherwise; it calls the student's ``welch_interval``."""
    task = "Exercise 7b.2 (deciding from the interval)"
    _refuse_the_package(task, decide)
    _refuse_the_ttest(task, decide)
    used_welch, outputs = False, []
    for description, a, b, confidence in _decide_cases():
        where = f"for {description} (A: {a}, B: {b}, confidence {confidence}):"
        try:
            got, called = _call_watching_functions(task, decide, list(a), list(b), confidence)
        except AssertionError:
            raise
        except Exception as err:
            raise AssertionError(f"{task}: {where} your function raised {type(err).__name__}: {err}") from None
        _refuse_the_ttest(task, decide, called)
        used_welch = used_welch or any(name == "welch_interval" for _, name in called)
        if not (isinstance(got, str) and got in ("A", "B", "cannot tell")):
            raise AssertionError(f'{task}: return one of "A", "B" or "cannot tell", got {got!r}')
        difference, low, high = _welch_answers(a, b, confidence)["right"]
        answers = {
            "right": _decision(low, high),
            "means only": "A" if difference > 0 else "B" if difference < 0 else "cannot tell",
            "swapped": _decision(-high, -low),
            "confidence": _decision(*_welch_answers(a, b, 0.95)["right"][1:]),
        }
        outputs.append((where, got, answers, (low, high, confidence)))
    wrong = [o for o in outputs if o[1] != o[2]["right"]]
    if not wrong:
        if not used_welch:
            raise AssertionError(
                f"{task}: your decisions are right, but decide does not call welch_interval; build it on your "
                f"welch_interval from Task 1 (one interval, one rule)"
            )
        _passed(task)
        return
    where, got, answers, (low, high, confidence) = wrong[0]
    expected = answers["right"]
    detail = f'{where} expected "{expected}", got "{got}" (the {confidence:.0%} interval is [{low:.2f}, {high:.2f}])'
    mistake = next((m for m in _DECIDE_MISTAKES if all(o[1] == o[2][m] for o in outputs)), None)
    if mistake is not None:
        raise AssertionError(f"{task}: {detail}: {_DECIDE_MISTAKES[mistake]}")
    if used_welch:
        hint = (
            "your decide calls your welch_interval: if that one does not pass its check yet, fix it first. Then "
            'decide from the whole interval: "A" when low > 0, "B" when high < 0, else "cannot tell"'
        )
    else:
        hint = (
            'build decide on your welch_interval from Task 1, and decide from the whole interval: "A" when '
            'low > 0, "B" when high < 0, else "cannot tell"'
        )
    raise AssertionError(f"{task}: {detail}. {hint[0].upper()}{hint[1:]}")
