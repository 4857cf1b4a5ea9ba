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

import numpy as np
import torch

from .detectors import reconstruction_error
from .metrics import choose_threshold, f1_at_threshold, fpr_at_tpr, to_numpy
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
