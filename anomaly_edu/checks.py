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


# ---------------------------------------------------------------- Exercise 6 (Lecture 6: defect localisation)

# Libraries whose connected-component labelling would do Exercise 6a.1 for the student.
_LABELLING_LIBRARIES = ("scipy.ndimage", "skimage", "cv2")


def _call_watching(task: str, fn, *args, libraries=_LABELLING_LIBRARIES):
    """Call the student's function as :func:`_call` does; return its result and
    which of ``libraries`` it called, directly or through any helper, alias or
    import. Found by watching every call while it runs (``sys.setprofile``),
    not by reading the code."""
    import sys

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

    previous = sys.getprofile()
    sys.setprofile(watch)
    try:
        result = _call(task, fn, *args)
    finally:
        sys.setprofile(previous)
    return result, sorted(reached)


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
