"""The exercise checks accept right answers, reject plausible wrong ones with
specific feedback, and the committed student versions are current."""

import functools
import importlib
import pkgutil
import random
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from anomaly_edu import detectors, grading, metrics
from anomaly_edu.grading import cases, ex01, ex02, ex03, ex04, machinery

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_student_versions  # noqa: E402


def not_done(*args):
    raise NotImplementedError()


def exercise_checks() -> dict:
    """{name: check function} for every ``check_*`` that an exercise's module
    of ``anomaly_edu.grading`` defines (ex01, ..., ex07b), found by walking the
    package, so that a new exercise's checks are tested too."""
    found = {}
    for info in pkgutil.iter_modules(grading.__path__):
        if not info.name.startswith("ex"):
            continue
        module = importlib.import_module(f"{grading.__name__}.{info.name}")
        for name, value in vars(module).items():
            if name.startswith("check_") and getattr(value, "__module__", None) == module.__name__:
                assert name not in found, f"two exercises define {name}"
                found[name] = value
    return found


def module_of_check(name: str):
    return importlib.import_module(exercise_checks()[name].__module__)


# ------------------------------------------------------------------ Exercise 1.1


def reconstruction_score_reference(model, x):
    with torch.no_grad():
        return ((model(x) - x) ** 2).flatten(1).sum(1)


def test_reconstruction_check_accepts_the_reference():
    ex01.check_reconstruction_score(reconstruction_score_reference)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda m, x: ((m(x) - x) ** 2).flatten(1).mean(1), "MEAN squared error"),
        (lambda m, x: ((m(x) - x) ** 2).sum(), "one number for the whole batch"),
        (lambda m, x: (m(x) - x).abs().flatten(1).sum(1), "ABSOLUTE"),
        (lambda m, x: ((m(x) - x) ** 2).sum(dim=(2, 3)), "expected shape.*Sum over the channels too"),
        (lambda m, x: ((m(x) - x) ** 2).sum(dim=(1, 2)), "expected shape"),
        (lambda m, x: ((m(x) - x) ** 2)[:, 0].flatten(1).sum(1), "first channel only"),
        (lambda m, x: ((m(x) - x) ** 2).mean(dim=(2, 3)).sum(1), "MEAN squared error"),
        (lambda m, x: ((m(x) - x) ** 2).sum(dim=(2, 3)).mean(1), "averaged the channels' sums"),
        (lambda m, x: (m(x) - x).flatten(1).norm(dim=1), "square root"),
        (lambda m, x: None, "returned None"),
        (not_done, "not done yet"),
    ],
)
def test_reconstruction_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex01.check_reconstruction_score(wrong)


# ------------------------------------------------------------------ Exercise 1.2


def roc_points(labels, scores):
    """(tpr, fpr) of the ROC curve, one point per distinct score, from (0, 0)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
    thresholds = np.unique(scores)[::-1]
    tpr = np.r_[0, [(labels[scores >= t] == 1).sum() / (labels == 1).sum() for t in thresholds]]
    fpr = np.r_[0, [(labels[scores >= t] == 0).sum() / (labels == 0).sum() for t in thresholds]]
    return tpr, fpr


def fpr_at_tpr_reference(labels, scores, target):
    """The first point reaching the target, and a straight line from the one before."""
    tpr, fpr = roc_points(labels, scores)
    i = int(np.argmax(tpr >= target))
    if tpr[i] == target:
        return fpr[i]
    return fpr[i - 1] + (target - tpr[i - 1]) / (tpr[i] - tpr[i - 1]) * (fpr[i] - fpr[i - 1])


def test_fpr_check_accepts_the_reference():
    ex01.check_fpr_at_tpr(fpr_at_tpr_reference)


def next_point_fpr(labels, scores, target):
    """A plausible mistake: no interpolation, take the first point reaching the target."""
    tpr, fpr = roc_points(labels, scores)
    return fpr[np.argmax(tpr >= target)]


def point_below_fpr(labels, scores, target):
    """Another: the last point below the target."""
    tpr, fpr = roc_points(labels, scores)
    return fpr[max(np.argmax(tpr >= target) - 1, 0)]


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (next_point_fpr, "interpolate"),
        (point_below_fpr, "BELOW"),
        (lambda labels, scores, t: t, "the TPR itself"),
        (lambda labels, scores, t: None, "returned None"),
        (not_done, "not done yet"),
    ],
)
def test_fpr_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex01.check_fpr_at_tpr(wrong)


def test_fpr_check_catches_wrong_tie_handling():
    def one_point_per_sample(labels, scores, target):
        order = np.argsort(-np.asarray(scores), kind="stable")
        ranked = np.asarray(labels)[order]
        tpr = np.r_[0, np.cumsum(ranked) / ranked.sum()]
        fpr = np.r_[0, np.cumsum(1 - ranked) / (1 - ranked).sum()]
        i = int(np.argmax(tpr >= target))
        if i == 0 or tpr[i] == target:
            return fpr[i]
        return fpr[i - 1] + (target - tpr[i - 1]) / (tpr[i] - tpr[i - 1]) * (fpr[i] - fpr[i - 1])

    with pytest.raises(AssertionError):
        ex01.check_fpr_at_tpr(one_point_per_sample)


# ------------------------------------------------------------------ Exercise 1.3


def pick_threshold_reference(labels, scores):
    """Every distinct score tried; metrics.f1_at_threshold is allowed here."""
    candidates = np.unique(scores)
    return candidates[np.argmax([metrics.f1_at_threshold(labels, scores, t) for t in candidates])]


def test_threshold_check_accepts_the_reference():
    ex01.check_validation_threshold(pick_threshold_reference)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda labels, scores: np.median(scores), "median"),
        (lambda labels, scores: np.max(scores) + 1, "reachable"),
        (lambda labels, scores: np.quantile(scores, 0.95), "reachable"),
        (not_done, "not done yet"),
    ],
)
def test_threshold_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex01.check_validation_threshold(wrong)


# ------------------------------------------------------------------ student versions


def test_committed_student_versions_are_current():
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_student_versions.py"), "--check"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr


def test_student_version_hides_every_solution():
    for source in sorted((ROOT / "exercises" / "solutions").glob("*.ipynb")):
        student = nbformat.read(ROOT / "exercises" / source.name, as_version=4)
        text = "\n".join(c.source for c in student.cells)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        assert "raise NotImplementedError()" in text
        instructor = nbformat.read(source, as_version=4)
        assert len(student.cells) == len(instructor.cells)
        assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")


def test_strip_solutions_keeps_indentation_and_surrounding_code():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\n"
    assert make_student_versions.strip_solutions(source) == (
        "def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    )
    with pytest.raises(ValueError, match="unmatched"):
        make_student_versions.strip_solutions("### BEGIN SOLUTION\nx = 1\n")


# ------------------------------------------------------------------ Exercise 2

import torch.nn.functional as F  # noqa: E402

from anomaly_edu import adversarial_training, arae, attacks, saliency  # noqa: E402


def signed_gradient(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g.sign()


def fgsm_reference(model, x, y, eps):
    return (x + eps * signed_gradient(model, x, y)).clamp(0, 1).detach()


def test_fgsm_check_accepts_the_reference():
    ex02.check_fgsm(fgsm_reference)


def fgsm_in_place(model, x, y, eps):
    x += eps * signed_gradient(model, x, y)
    return x.clamp_(0, 1)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda m, x, y, e: (x - e * signed_gradient(m, x, y)).clamp(0, 1), "DOWN the loss"),
        (lambda m, x, y, e: x + e * signed_gradient(m, x, y), "outside"),
        (lambda m, x, y, e: e * signed_gradient(m, x, y), "perturbation"),
        (fgsm_in_place, "in place"),
        (lambda m, x, y, e: (x + e * 0.5 * signed_gradient(m, x, y)).clamp(0, 1), "SIGN"),
        (lambda m, x, y, e: None, "returned None"),
        (not_done, "not done yet"),
    ],
)
def test_fgsm_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex02.check_fgsm(wrong)


def project_l2_reference(delta, eps):
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * torch.clamp(eps / norms, max=1.0).view(-1, 1, 1, 1)


def test_project_l2_check_accepts_the_reference():
    ex02.check_project_l2(project_l2_reference)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda d, e: d.clamp(-e, e), "L-inf"),
        (lambda d, e: e * d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1), "stretched"),
        (lambda d, e: d * min(1.0, e / d.norm().item()), "stretched|PER EXAMPLE|norms"),
        (lambda d, e: d * 0.5, "PER EXAMPLE|norms"),
        (not_done, "not done yet"),
    ],
)
def test_project_l2_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex02.check_project_l2(wrong)


# ------------------------------------------------------------------ Exercise 2.3


def l0_reference(model, x, y, k, choose=None):
    """Pixel by pixel: the gain of moving each pixel to the end its gradient
    points to; the k best of each image are moved. ``choose`` swaps the ranking."""
    g = signed_gradient_raw(model, x, y)
    end = torch.where(g > 0, torch.ones_like(x), torch.where(g < 0, torch.zeros_like(x), x))
    gain = (g * (end - x)).flatten(1) if choose is None else choose(g, x, end).flatten(1)
    out = x.clone().flatten(1)
    for i in range(len(x)):
        best = torch.argsort(gain[i], descending=True)[:k]
        out[i, best] = end.flatten(1)[i, best]
    return out.view_as(x)


def signed_gradient_raw(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g


def test_l0_check_accepts_the_reference(capsys):
    ex02.check_one_step_l0(l0_reference)
    assert "✓" in capsys.readouterr().out


def l0_whole_batch(model, x, y, k):
    g = signed_gradient_raw(model, x, y)
    end = torch.where(g > 0, 1.0, torch.where(g < 0, 0.0, x))
    flat = (g * (end - x)).flatten()
    out = x.clone().flatten()
    best = torch.argsort(flat, descending=True)[:k]
    out[best] = end.flatten()[best]
    return out.view_as(x)


def l0_add_sign(model, x, y, k):
    g = signed_gradient_raw(model, x, y)
    chosen = l0_reference(model, x, y, k) != x
    return torch.where(chosen, x + g.sign(), x)


def l0_in_place(model, x, y, k):
    x.copy_(l0_reference(model, x.clone(), y, k))
    return x


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda m, x, y, k: l0_reference(m, x, y, k, choose=lambda g, x, end: g.abs()), "largest \\|gradient\\|"),
        (l0_whole_batch, "PER IMAGE"),
        (lambda m, x, y, k: l0_reference(m, x, y, k, choose=lambda g, x, end: -g * (end - x)), "differ"),
        (lambda m, x, y, k: l0_reference(m, x, y, k + 1), "budget"),
        (l0_add_sign, "TO\\s+the end"),
        (l0_in_place, "in place"),
        (lambda m, x, y, k: l0_reference(m, x, y, k) - x, "budget"),
        (lambda m, x, y, k: None, "returned None"),
        (not_done, "not done yet"),
    ],
)
def test_l0_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex02.check_one_step_l0(wrong)


def test_l0_check_names_the_wrong_end():
    def wrong_end(model, x, y, k):
        g = signed_gradient_raw(model, x, y)
        end = torch.where(g > 0, 0.0, torch.where(g < 0, 1.0, x))
        gain = (g * (end - x)).flatten(1)
        out = x.clone().flatten(1)
        for i in range(len(x)):
            best = torch.topk(gain[i], k).indices
            out[i, best] = end.flatten(1)[i, best]
        return out.view_as(x)

    with pytest.raises(AssertionError, match="LOWERS"):
        ex02.check_one_step_l0(wrong_end)


def test_the_l0_reference_is_the_package_attack_with_one_step():
    model = cases.tiny_classifier()
    for _, x, y, k in ex02._l0_cases():
        assert torch.equal(ex02._l0_answer(model, x, y, k), attacks.sparse_attack(model, x, y, k=k, steps=1))


# ------------------------------------------------------------------ Exercise 3


def pgd_reference(model, x, y, eps, alpha, steps):
    """PGD with a perturbation delta and .backward(), clamping before projecting."""
    delta = torch.zeros_like(x)
    for _ in range(steps):
        delta.requires_grad_(True)
        F.cross_entropy(model(x + delta), y).backward()
        with torch.no_grad():
            delta = (x + delta + alpha * delta.grad.sign()).clamp(0, 1) - x
            delta = delta.clamp(-eps, eps)
    return (x + delta).detach()


def test_pgd_check_accepts_the_reference(capsys):
    ex03.check_pgd(pgd_reference)
    assert "✓" in capsys.readouterr().out


def test_the_pgd_reference_agrees_with_the_package_pgd():
    for _, model, x, y, eps, alpha, steps in ex03._pgd_cases():
        expected = attacks.pgd(model, x, y, eps=eps, alpha=alpha, steps=steps)
        assert torch.allclose(ex03._pgd_answer(model, x, y, eps, alpha, steps), expected, atol=1e-6)
        assert torch.allclose(pgd_reference(model, x, y, eps, alpha, steps), expected, atol=1e-6)


def test_every_pgd_mistake_is_told_apart_on_the_checks_cases():
    pgd_cases = ex03._pgd_cases()
    answers = {
        mistake: [ex03._pgd_answer(*case[1:], mistake=mistake) for case in pgd_cases]
        for mistake in [None, *cases.RAISE_SCORE_MISTAKES]
    }
    for mistake, images in answers.items():
        for other, other_images in answers.items():
            if other != mistake:
                assert not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(images, other_images)), (mistake, other)


def pgd_mistake(mistake):
    def pgd(model, x, y, eps, alpha, steps):
        return ex03._pgd_answer(model, x, y, eps, alpha, steps, mistake=mistake)

    return pgd


def pgd_random_start(model, x, y, eps, alpha, steps):
    return pgd_reference(model, (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1), y, eps, alpha, steps)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (pgd_mistake("descent"), "LOWERS the loss"),
        (pgd_mistake("no projection"), "never project"),
        (pgd_mistake("around current"), "BEFORE that step"),
        (pgd_mistake("no clamp"), "outside \\[0, 1\\]"),
        (pgd_mistake("raw gradient"), "SIGN"),
        (pgd_mistake("one step"), "one step only"),
        (pgd_mistake("step eps"), "use alpha"),
        (pgd_mistake("gradient at x"), "original x in every step"),
        (lambda m, x, y, e, a, s: pgd_reference(m, x, y, e, a, s) - x, "perturbation"),
        (pgd_random_start, "random"),
        (lambda m, x, y, e, a, s: pgd_reference(m, x, y, e / 2, a, s), "differ"),
        (lambda m, x, y, e, a, s: None, "returned None"),
        (not_done, "not done yet"),
    ],
)
def test_pgd_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex03.check_pgd(wrong)


def reference_adversarial_loss(model, x, y, eps, alpha, steps):
    return F.cross_entropy(model(pgd_reference(model, x, y, eps, alpha, steps)), y)


def test_adversarial_loss_check_accepts_the_reference():
    ex03.check_adversarial_batch_loss(reference_adversarial_loss)


def adversarial_loss_with_one_fgsm_step(model, x, y, eps, alpha, steps):
    return F.cross_entropy(model(fgsm_reference(model, x, y, eps)), y)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda m, x, y, e, a, s: F.cross_entropy(m(x), y), "clean loss"),
        (lambda m, x, y, e, a, s: reference_adversarial_loss(m, x, y, e, a, s).detach(), "no gradient"),
        (lambda m, x, y, e, a, s: reference_adversarial_loss(m, x, y, e, a, s).item(), "scalar tensor"),
        (lambda m, x, y, e, a, s: reference_adversarial_loss(m, x, y, e / 2, a, s), "expected"),
        (lambda m, x, y, e, a, s: reference_adversarial_loss(m, x, y, e, a, 1), "one-step attack"),
        (adversarial_loss_with_one_fgsm_step, "expected"),
        (lambda m, x, y, e, a, s: (m.eval(), reference_adversarial_loss(m, x, y, e, a, s))[1], "eval mode"),
        (not_done, "not done yet"),
    ],
)
def test_adversarial_loss_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex03.check_adversarial_batch_loss(wrong)


class GradientMasked(torch.nn.Module):
    """The standard model's decisions with a zero input gradient: PGD through its
    own gradient cannot move it, but images attacked through another model can."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.detach()) + 0 * x.sum()


def test_robust_model_check_sees_through_masked_gradients(capsys):
    robust_model, standard_model, x, y = robust_and_standard_models()
    ex03.check_robust_model(robust_model, standard_model, x, y, eps=0.1, steps=3)
    assert "against all three" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="its gradients are masked"):
        ex03.check_robust_model(GradientMasked(standard_model), standard_model, x, y, eps=0.1, steps=3)


def test_robust_model_check_rejects_a_missing_or_non_robust_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x, y = torch.rand(20, 1, 4, 4), torch.randint(0, 3, (20,))
    with pytest.raises(AssertionError, match="not done yet"):
        ex03.check_robust_model(None, model, x, y, eps=0.1, steps=3)
    with pytest.raises(AssertionError, match="only"):
        ex03.check_robust_model(model, model, x, y, eps=0.1, steps=3)


# ------------------------------------------------------------------ Exercise 4


def reference_objective(codes, clean_codes):
    return ((codes - clean_codes) ** 2).mean(1)


def reference_arae(model, x, x_adv, gamma):
    code_adv = model.encode(x_adv)
    return ((model.decode(code_adv) - x) ** 2).mean() + gamma * ((code_adv - model.encode(x)) ** 2).mean()


def reference_latent_attack(model, x, start, eps, alpha, steps, objective, mistake=None):
    """Exercise 4.1b written out, or with one mistake."""
    with torch.no_grad():
        clean = model.encode(x)
    x_adv = x.clone() if mistake == "no start" else (x + start).clamp(0, 1)
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        target = model.encode(x_adv).detach() if mistake == "moving target" else clean
        (gradient,) = torch.autograd.grad(objective(model.encode(x_adv), target).sum(), x_adv)
        with torch.no_grad():
            step = -gradient.sign() if mistake == "descent" else gradient.sign()
            before = x_adv
            x_adv = x_adv + alpha * step
            centre = before if mistake == "around current" else x
            x_adv = torch.min(torch.max(x_adv, centre - eps), centre + eps)
            if mistake != "no clamp":
                x_adv = x_adv.clamp(0, 1)
    return x_adv.detach()


def test_exercise4_checks_accept_the_references():
    ex04.check_latent_objective(reference_objective)
    ex04.check_latent_attack(reference_latent_attack)
    ex04.check_arae_loss(reference_arae)


def test_the_latent_attack_may_be_written_differently(capsys):
    """Where the clamps go, the sum or the mean of the objective and a fixed
    clean code computed with the gradient switched on all give the same steps."""

    def written_differently(model, x, start, eps, alpha, steps, objective):
        clean = model.encode(x).detach()
        x_adv = torch.clamp(x + start, 0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            loss = objective(model.encode(x_adv), clean).mean()  # the mean: the same signs
            loss.backward()
            with torch.no_grad():
                x_adv = x_adv + alpha * x_adv.grad.sign()
                x_adv = torch.clamp(torch.clamp(x_adv - x, -eps, eps) + x, 0, 1)
        return x_adv

    ex04.check_latent_attack(written_differently)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize(
    "mistake, feedback",
    [
        ("no start", "gradient is exactly zero"),
        ("descent", "TOWARDS the clean code"),
        ("around current", "ORIGINAL image"),
        ("no clamp", r"\[0, 1\]"),
        ("moving target", "never moved from its start"),
    ],
)
def test_the_latent_attack_check_rejects_wrong_answers(mistake, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex04.check_latent_attack(functools.partial(reference_latent_attack, mistake=mistake))


def test_the_latent_objective_may_sum_over_the_latent_units(capsys):
    """The talk writes the objective as a squared norm: k times the mean, the same
    signed-gradient attack. The check accepts it and says where the choice matters."""
    ex04.check_latent_objective(lambda z, c: ((z - c) ** 2).sum(1))
    out = capsys.readouterr().out
    assert "✓" in out and "You summed over the latent units" in out and "Task 2" in out
    ex04.check_latent_objective(reference_objective)
    assert "summed" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda z, c: ((z - c) ** 2).mean(), "one number"),
        (lambda z, c: ((z - c) ** 2).mean(1).detach(), "no gradient"),
        (lambda z, c: (z - c).abs().mean(1), "expected"),
        (lambda z, c: ((z - c) ** 2).sum(1) / 2, "expected"),  # neither the mean nor the sum
        (not_done, "not done yet"),
    ],
)
def test_latent_objective_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex04.check_latent_objective(wrong)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (
            lambda m, x, xa, g: (
                ((m.decode(m.encode(xa)) - xa) ** 2).mean() + g * ((m.encode(xa) - m.encode(x)) ** 2).mean()
            ),
            "CLEAN image",
        ),
        (lambda m, x, xa, g: ((m.decode(m.encode(xa)) - x) ** 2).mean(), "reconstruction term alone"),
        (
            lambda m, x, xa, g: ((m(x) - x) ** 2).mean() + g * ((m.encode(xa) - m.encode(x)) ** 2).mean(),
            "reconstruct the clean input",
        ),
        (
            lambda m, x, xa, g: (
                ((m.decode(m.encode(xa)) - x) ** 2).mean() + g * ((m.encode(xa) - m.encode(x).detach()) ** 2).mean()
            ),
            "both encoder branches",
        ),
        (lambda m, x, xa, g: reference_arae(m, x, xa, 1.0), "expected"),
        (
            lambda m, x, xa, g: (
                ((m.decode(m.encode(xa)) - x) ** 2).flatten(1).sum(1) + g * ((m.encode(xa) - m.encode(x)) ** 2).sum(1)
            ).mean(),
            "you sum the squared errors",
        ),
        (
            lambda m, x, xa, g: (
                ((m.decode(m.encode(xa)) - x) ** 2).sum() + g * ((m.encode(xa) - m.encode(x)) ** 2).sum()
            ),
            "you sum the squared errors",
        ),
        (not_done, "not done yet"),
    ],
)
def test_arae_loss_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex04.check_arae_loss(wrong)


def occlusion_reference(score, image, patch, fill):
    """All covered copies in one batch, each square cut at the border by slicing."""
    _, height, width = image.shape
    copies = image.repeat(height * width, 1, 1, 1)
    for r in range(height):
        for c in range(width):
            copies[r * width + c, :, r : r + patch, c : c + patch] = fill
    return (np.asarray(score(copies)) - np.asarray(score(image[None]))[0]).reshape(height, width)


def test_occlusion_check_accepts_the_reference(capsys):
    ex04.check_occlusion_map(occlusion_reference)
    assert "✓" in capsys.readouterr().out


def test_the_occlusion_reference_agrees_with_the_package():
    for _, score, image, patch, fill in ex04._occlusion_cases():
        expected = saliency.occlusion_saliency(score, image, patch=patch, fill=fill)
        assert np.allclose(ex04._occlusion_answer(score, image, patch, fill), expected, atol=1e-6)
        assert np.allclose(occlusion_reference(score, image, patch, fill), expected, atol=1e-6)


def test_every_occlusion_mistake_is_told_apart_on_the_checks_cases():
    occlusion_cases = ex04._occlusion_cases()
    answers = {
        mistake: [ex04._occlusion_answer(*case[1:], mistake=mistake) for case in occlusion_cases]
        for mistake in [None, *ex04._OCCLUSION_MISTAKES]
    }
    for mistake, maps in answers.items():
        for other, other_maps in answers.items():
            if other != mistake:
                assert not all(np.allclose(a, b, atol=1e-5) for a, b in zip(maps, other_maps)), (mistake, other)


def occlusion_mistake(mistake):
    return lambda score, image, patch, fill: ex04._occlusion_answer(score, image, patch, fill, mistake=mistake)


def occlusion_rolled(score, image, patch, fill):
    """Covers with torch.roll: the square wraps round the border."""
    _, height, width = image.shape
    maps = np.zeros((height, width))
    base = np.asarray(score(image[None]))[0]
    for r in range(height):
        for c in range(width):
            covered = image.roll((-r, -c), dims=(1, 2))
            covered[:, :patch, :patch] = fill
            maps[r, c] = np.asarray(score(covered.roll((r, c), dims=(1, 2))[None]))[0] - base
    return maps


def occlusion_of_one_channel(channel):
    """Covers the square in one channel only: right for MNIST's one channel."""

    def occlusion(score, image, patch, fill):
        _, height, width = image.shape
        copies = image.repeat(height * width, 1, 1, 1)
        for r in range(height):
            for c in range(width):
                copies[r * width + c, channel, r : r + patch, c : c + patch] = fill
        return (np.asarray(score(copies)) - np.asarray(score(image[None]))[0]).reshape(height, width)

    return occlusion


def occlusion_without_the_channel_axis(score, image, patch, fill):
    """Indexes the image as if it were (H, W): the slices pick channels and rows."""
    _, height, width = image.shape
    copies = image.repeat(height * width, 1, 1, 1)
    for r in range(height):
        for c in range(width):
            copies[r * width + c, r : r + patch, c : c + patch] = fill
    return (np.asarray(score(copies)) - np.asarray(score(image[None]))[0]).reshape(height, width)


def occlusion_in_place(score, image, patch, fill):
    result = occlusion_reference(score, image.clone(), patch, fill)
    image[:, 0, 0] = fill
    return result


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda s, im, p, f: -occlusion_reference(s, im, p, f), "opposite sign"),
        (occlusion_mistake("centred"), "TOP-LEFT"),
        (occlusion_rolled, "wraps"),
        (lambda s, im, p, f: occlusion_reference(s, im, p, 0.0), "whatever `fill`"),
        (lambda s, im, p, f: occlusion_reference(s, im, 1, f), "whatever `patch`"),
        (lambda s, im, p, f: occlusion_reference(s, im, p, f).T, "rows first"),
        (lambda s, im, p, f: occlusion_reference(s, im, p, f).flatten(), "shape"),
        (lambda s, im, p, f: occlusion_reference(s, im, p, f) / 2, "differ"),
        (occlusion_in_place, "in place"),
        (occlusion_of_one_channel(0), "one channel only"),
        (occlusion_of_one_channel(-1), "one channel only"),
        (occlusion_without_the_channel_axis, "as if it were \\(H, W\\)"),
        (lambda s, im, p, f: occlusion_reference(s, im, p, f)[None].repeat(len(im), 0), "shape"),
        (lambda s, im, p, f: None, "returned None"),
        (not_done, "not done yet"),
    ],
)
def test_occlusion_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        ex04.check_occlusion_map(wrong)


# ------------------------------------------------------------------ Exercises 1-4: the package is refused

# For each check of Exercises 1-4, the package's own implementation of the task.
# With the refusal switched off each is a right answer (the first test), so the
# refusal is what the second test sees fail.
PACKAGE_ANSWERS = {
    "check_reconstruction_score": detectors.reconstruction_error,
    "check_fpr_at_tpr": metrics.fpr_at_tpr,
    "check_validation_threshold": metrics.choose_threshold,
    "check_fgsm": attacks.fgsm,
    "check_project_l2": lambda d, e: d * torch.clamp(e / attacks._l2_norms(d), max=1.0).view(-1, 1, 1, 1),
    "check_one_step_l0": lambda m, x, y, k: attacks.sparse_attack(m, x, y, k=k, steps=1),
    "check_pgd": lambda m, x, y, e, a, s: attacks.pgd(m, x, y, eps=e, alpha=a, steps=s),
    "check_adversarial_batch_loss": lambda m, x, y, e, a, s: adversarial_training.adversarial_loss(
        eps=e, alpha=a, steps=s, random_start=False
    )(m, x, y),
    "check_latent_objective": attacks.per_example_mse,
    "check_latent_attack": lambda m, x, start, e, a, s, objective: package_latent_attack(
        m, x, start, e, a, s, objective
    ),
    "check_arae_loss": lambda m, x, xa, g: reference_arae_through(m, x, xa, g, arae.robust_reconstruction_loss),
    "check_occlusion_map": lambda s, im, p, f: saliency.occlusion_saliency(s, im, patch=p, fill=f),
}


def package_latent_attack(model, x, start, eps, alpha, steps, objective):
    """Exercise 4.1b with the package's gradient and PGD step."""
    clean = model.encode(x).detach()
    x_adv = (x + start).clamp(0, 1)
    for _ in range(steps):
        gradient = attacks.input_gradient(arae.EncoderOnly(model), x_adv, clean, objective)
        x_adv = attacks._pgd_step(x_adv, x, gradient, eps, alpha, "linf")
    return x_adv


def reference_arae_through(model, x, x_adv, gamma, make_loss):
    """The package's ARAE loss, with an "attack" that returns the given x_adv."""
    return make_loss(lambda model, x: x_adv, gamma)(model, x)


@pytest.mark.parametrize("name", sorted(PACKAGE_ANSWERS))
def test_the_package_answer_is_right_apart_from_the_refusal(name, monkeypatch, capsys):
    monkeypatch.setattr(
        module_of_check(name),
        "call_refusing_the_package",
        lambda task, fn, *args, allowed=(): machinery.call_student(task, fn, *args),
    )
    exercise_checks()[name](PACKAGE_ANSWERS[name])
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(PACKAGE_ANSWERS))
def test_the_checks_of_exercises_1_to_4_fail_when_the_package_is_called(name):
    with pytest.raises(AssertionError, match="from the anomaly_edu package; write it yourself"):
        exercise_checks()[name](PACKAGE_ANSWERS[name])


def test_the_refusal_sees_through_a_helper_an_alias_and_an_import():
    from anomaly_edu.attacks import pgd as alias

    def helper(m, x, y, e, a, s):
        return alias(m, x, y, eps=e, alpha=a, steps=s)

    def importing(m, x, y, e, a, s):
        import anomaly_edu.attacks

        return anomaly_edu.attacks.pgd(m, x, y, eps=e, alpha=a, steps=s)

    for answer in (helper, importing):
        with pytest.raises(AssertionError, match="anomaly_edu.attacks.pgd"):
            ex03.check_pgd(answer)


def test_exercise_1_3_may_use_f1_at_threshold_only(capsys):
    ex01.check_validation_threshold(pick_threshold_reference)  # calls metrics.f1_at_threshold
    assert "✓" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="choose_threshold"):
        ex01.check_validation_threshold(lambda labels, scores: metrics.choose_threshold(labels, scores))


# ------------------------------------------------------------------ no hidden global state


def robust_and_standard_models():
    """A stand-in for Exercise 3.2's trained models, built by hand so that the
    test needs no training: images whose first pixel (0.1 or 0.9) and second
    pixel (0.45 or 0.55) both give the class. The "robust" model reads the first
    pixel, which PGD with eps 0.1 cannot push across 0.5; the "standard" one
    reads the second, which it can. Both are right on the clean images."""
    y = torch.arange(20) % 2
    x = torch.zeros(20, 1, 4, 4)
    x[:, 0, 0, 0] = 0.1 + 0.8 * y
    x[:, 0, 0, 1] = 0.45 + 0.1 * y

    def reading(pixel):  # logit of class 1 = 10 * (x[pixel] - 0.5), class 0 = 0
        linear = torch.nn.Linear(16, 2)
        with torch.no_grad():
            linear.weight.zero_()
            linear.bias.zero_()
            linear.weight[1, pixel] = 10.0
            linear.bias[1] = -5.0
        return torch.nn.Sequential(torch.nn.Flatten(), linear).eval()

    return reading(0), reading(1), x, y


def correct_answers():
    """For every check, a call with a right answer (the references of the tests above)."""
    from test_exercises_localisation import correct_answers as lecture6_answers  # here: it imports this one too
    from test_exercises_puzzle import correct_answers as lecture5_answers  # here: that module imports this one
    from test_exercises_stress import correct_answers as lecture7_answers  # here: it imports this one too

    robust_model, standard_model, x, y = robust_and_standard_models()
    return {
        "check_reconstruction_score": lambda: ex01.check_reconstruction_score(reconstruction_score_reference),
        "check_fpr_at_tpr": lambda: ex01.check_fpr_at_tpr(fpr_at_tpr_reference),
        "check_validation_threshold": lambda: ex01.check_validation_threshold(pick_threshold_reference),
        "check_fgsm": lambda: ex02.check_fgsm(fgsm_reference),
        "check_project_l2": lambda: ex02.check_project_l2(project_l2_reference),
        "check_one_step_l0": lambda: ex02.check_one_step_l0(l0_reference),
        "check_pgd": lambda: ex03.check_pgd(pgd_reference),
        "check_occlusion_map": lambda: ex04.check_occlusion_map(occlusion_reference),
        "check_adversarial_batch_loss": lambda: ex03.check_adversarial_batch_loss(reference_adversarial_loss),
        "check_robust_model": lambda: ex03.check_robust_model(robust_model, standard_model, x, y, eps=0.1, steps=3),
        "check_latent_objective": lambda: ex04.check_latent_objective(reference_objective),
        "check_latent_attack": lambda: ex04.check_latent_attack(reference_latent_attack),
        "check_arae_loss": lambda: ex04.check_arae_loss(reference_arae),
        **lecture5_answers(),
        **lecture6_answers(),
        **lecture7_answers(),
    }


def global_random_state():
    """The state of the global generators a notebook draws from."""
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state().tolist(),
        "numpy": (numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]),
        "random": random.getstate(),
    }


@pytest.mark.parametrize("name", sorted(exercise_checks()))
def test_checks_leave_the_global_random_state_alone(name):
    """The one test of this for every exercise check of the course; the test
    modules of Lectures 5-7 give their right answers through correct_answers()."""
    answers = correct_answers()  # builds its models before the state is taken
    assert name in answers, f"add a right answer for {name} to correct_answers()"
    check_with_right_answer = answers[name]
    # One draw from each generator, so that a check that reseeds one shows up even when
    # an earlier call of that check left the generator in exactly that seed's state.
    torch.rand(1), np.random.rand(), random.random()
    before = global_random_state()
    check_with_right_answer()  # raises if the check rejects the right answer
    after = global_random_state()
    changed = [generator for generator in before if after[generator] != before[generator]]
    assert not changed, f"{name} changed the global random state of {changed}; use a local generator"
