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
import types

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
    got = _call(task, reconstruction_score, model, x)
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
        got = float(_call(task, student_fpr_at_tpr, labels, scores, target))
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
        got = float(_call(task, student_fpr_at_tpr, labels, scores, target))
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
    got = _call(task, pick_threshold, labels, scores)
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


def check_fgsm(student_fgsm) -> None:
    """Exercise 2.1: ``fgsm(model, x, y, eps)`` returns x + eps * sign(grad of the
    cross-entropy), clipped to [0, 1], without changing ``x``."""
    from .attacks import fgsm

    task = "Exercise 2.1 (FGSM)"
    model, (x, y) = _tiny_classifier(), _tiny_batch()
    eps = 0.1
    x_before = x.clone()
    got = _call(task, student_fgsm, model, x, y, eps)
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
    got = _call(task, project_l2, delta, eps)
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


def check_adversarial_batch_loss(adversarial_batch_loss) -> None:
    """Exercise 3.1: ``adversarial_batch_loss(model, x, y, eps, alpha, steps)``:
    PGD examples (no random start) against the current model, then the mean
    cross-entropy on them, differentiable with respect to the weights."""
    from .robust import adversarial_loss

    task = "Exercise 3.1 (adversarial-training loss)"
    model, (x, y) = _tiny_classifier(), _tiny_batch()
    eps, alpha, steps = 0.2, 0.03, 5  # steps * alpha < eps: PGD differs from one FGSM step
    model.train()
    got = _call(task, adversarial_batch_loss, model, x, y, eps, alpha, steps)
    if not isinstance(got, torch.Tensor) or got.ndim != 0:
        raise AssertionError(f"{task}: return one scalar tensor (the mean loss over the batch), got {got!r}")
    if got.grad_fn is None:
        raise AssertionError(
            f"{task}: your loss carries no gradient, so training could not use it; "
            f"compute the final cross-entropy outside torch.no_grad() and do not call .item()"
        )
    if not model.training:
        raise AssertionError(f"{task}: the model was left in eval mode; the training loop expects train mode")
    expected = adversarial_loss(eps=eps, alpha=alpha, steps=steps, random_start=False)(model, x, y)
    clean = torch.nn.functional.cross_entropy(model(x), y)
    if torch.isclose(got, clean, atol=1e-6):
        raise AssertionError(
            f"{task}: your loss equals the clean loss {clean.item():.4f}; attack the batch "
            f"with PGD first and compute the loss on the attacked images"
        )
    if not torch.isclose(got, expected, atol=1e-5):
        raise AssertionError(
            f"{task}: expected {expected.item():.4f} (PGD with eps={eps}, alpha={alpha}, "
            f"steps={steps}, no random start, then mean cross-entropy), got {got.item():.4f}"
        )
    _passed(task)


def check_robust_model(robust_model, standard_model, x, y, *, eps: float, steps: int) -> None:
    """Exercise 3.2: the adversarially trained model must beat the standard one
    under PGD by more than 20 points of accuracy."""
    from .robust import robust_accuracy
    from .training import accuracy

    task = "Exercise 3.2 (adversarial training)"
    if robust_model is None:
        raise _NotDone(
            f"{task} is not done yet: train a model with your loss and store it in "
            f"`robust_model`, then run this check again."
        )
    standard_pgd = robust_accuracy(standard_model, x, y, eps=eps, steps=steps)
    robust_pgd = robust_accuracy(robust_model, x, y, eps=eps, steps=steps)
    print(
        f"accuracy under PGD-{steps}, eps {eps}: standard {100 * standard_pgd:.1f}%, "
        f"yours {100 * robust_pgd:.1f}%; clean: standard {100 * accuracy(standard_model, x, y):.1f}%, "
        f"yours {100 * accuracy(robust_model, x, y):.1f}%"
    )
    if robust_pgd <= standard_pgd + 0.2:
        raise AssertionError(
            f"{task}: under PGD your model is only {100 * (robust_pgd - standard_pgd):.1f} "
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
    ``loss_fn`` that the latent attack maximises."""
    task = "Exercise 4.1 (the latent attack's objective)"
    model = _TinyAutoencoder()
    x, x_adv = _tiny_images()
    with torch.no_grad():
        clean_codes = model.encode(x)
    codes = model.encode(x_adv)
    got = _call(task, latent_objective, codes, clean_codes)
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
        raise AssertionError(f"{task}: you summed over the latent units; the ARAE code takes the MEAN")
    if not torch.allclose(got, expected, atol=1e-6):
        raise AssertionError(
            f"{task}: expected {expected.detach().numpy().round(5)}, got {got.detach().numpy().round(5)}"
        )
    _passed(task)


def check_arae_loss(arae_batch_loss) -> None:
    """Exercise 4.2: ``arae_batch_loss(model, x, x_adv, gamma)`` =
    mean((Dec(Enc(x_adv)) - x)^2) + gamma * mean((Enc(x_adv) - Enc(x))^2), with
    gradients through both encoder branches."""
    task = "Exercise 4.2 (the ARAE loss)"
    model = _TinyAutoencoder()
    x, x_adv = _tiny_images()
    gamma = 0.5
    got = _call(task, arae_batch_loss, model, x, x_adv, gamma)
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
    _passed(task)
