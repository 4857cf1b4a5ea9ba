"""The exercise checks accept right answers, reject plausible wrong ones with
specific feedback, and the committed student versions are current."""

import random
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from anomaly_edu import checks, detectors, metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_student_versions  # noqa: E402


def not_done(*args):
    raise NotImplementedError()


# ------------------------------------------------------------------ Exercise 1.1


def test_reconstruction_check_accepts_the_reference():
    checks.check_reconstruction_score(detectors.reconstruction_error)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda m, x: ((m(x) - x) ** 2).flatten(1).mean(1), "MEAN squared error"),
        (lambda m, x: ((m(x) - x) ** 2).sum(), "one number for the whole batch"),
        (lambda m, x: (m(x) - x).abs().flatten(1).sum(1), "ABSOLUTE"),
        (lambda m, x: ((m(x) - x) ** 2).sum(dim=(2, 3)), "expected shape"),
        (lambda m, x: None, "returned None"),
        (not_done, "not done yet"),
    ],
)
def test_reconstruction_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        checks.check_reconstruction_score(wrong)


# ------------------------------------------------------------------ Exercise 1.2


def test_fpr_check_accepts_the_reference():
    checks.check_fpr_at_tpr(metrics.fpr_at_tpr)


def next_point_fpr(labels, scores, target):
    """A plausible mistake: no interpolation, take the first point reaching the target."""
    curve = metrics.roc_curve_data(labels, scores)
    return curve["fpr"][np.argmax(curve["tpr"] >= target)]


def point_below_fpr(labels, scores, target):
    """Another: the last point below the target."""
    curve = metrics.roc_curve_data(labels, scores)
    return curve["fpr"][max(np.argmax(curve["tpr"] >= target) - 1, 0)]


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
        checks.check_fpr_at_tpr(wrong)


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
        checks.check_fpr_at_tpr(one_point_per_sample)


# ------------------------------------------------------------------ Exercise 1.3


def test_threshold_check_accepts_the_reference():
    checks.check_validation_threshold(metrics.choose_threshold)


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
        checks.check_validation_threshold(wrong)


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

from anomaly_edu import attacks, robust  # noqa: E402


def signed_gradient(model, x, y):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g.sign()


def test_fgsm_check_accepts_the_package_fgsm():
    checks.check_fgsm(attacks.fgsm)


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
        checks.check_fgsm(wrong)


def project_l2_reference(delta, eps):
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    return delta * torch.clamp(eps / norms, max=1.0).view(-1, 1, 1, 1)


def test_project_l2_check_accepts_the_reference():
    checks.check_project_l2(project_l2_reference)


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
        checks.check_project_l2(wrong)


# ------------------------------------------------------------------ Exercise 3


def reference_adversarial_loss(model, x, y, eps, alpha, steps):
    return robust.adversarial_loss(eps=eps, alpha=alpha, steps=steps, random_start=False)(model, x, y)


def test_adversarial_loss_check_accepts_the_reference():
    checks.check_adversarial_batch_loss(reference_adversarial_loss)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda m, x, y, e, a, s: F.cross_entropy(m(x), y), "clean loss"),
        (lambda m, x, y, e, a, s: reference_adversarial_loss(m, x, y, e, a, s).detach(), "no gradient"),
        (lambda m, x, y, e, a, s: reference_adversarial_loss(m, x, y, e, a, s).item(), "scalar tensor"),
        (lambda m, x, y, e, a, s: reference_adversarial_loss(m, x, y, e / 2, a, s), "expected"),
        (lambda m, x, y, e, a, s: F.cross_entropy(m(attacks.fgsm(m, x, y, e)), y), "expected"),
        (lambda m, x, y, e, a, s: (m.eval(), reference_adversarial_loss(m, x, y, e, a, s))[1], "eval mode"),
        (not_done, "not done yet"),
    ],
)
def test_adversarial_loss_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        checks.check_adversarial_batch_loss(wrong)


def test_robust_model_check_rejects_a_missing_or_non_robust_model():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x, y = torch.rand(20, 1, 4, 4), torch.randint(0, 3, (20,))
    with pytest.raises(AssertionError, match="not done yet"):
        checks.check_robust_model(None, model, x, y, eps=0.1, steps=3)
    with pytest.raises(AssertionError, match="only"):
        checks.check_robust_model(model, model, x, y, eps=0.1, steps=3)


# ------------------------------------------------------------------ Exercise 4


def reference_objective(codes, clean_codes):
    return ((codes - clean_codes) ** 2).mean(1)


def reference_arae(model, x, x_adv, gamma):
    code_adv = model.encode(x_adv)
    return ((model.decode(code_adv) - x) ** 2).mean() + gamma * ((code_adv - model.encode(x)) ** 2).mean()


def test_exercise4_checks_accept_the_references():
    checks.check_latent_objective(reference_objective)
    checks.check_arae_loss(reference_arae)


@pytest.mark.parametrize(
    "wrong, feedback",
    [
        (lambda z, c: ((z - c) ** 2).sum(1), "MEAN"),
        (lambda z, c: ((z - c) ** 2).mean(), "one number"),
        (lambda z, c: ((z - c) ** 2).mean(1).detach(), "no gradient"),
        (lambda z, c: (z - c).abs().mean(1), "expected"),
        (not_done, "not done yet"),
    ],
)
def test_latent_objective_check_rejects_wrong_answers(wrong, feedback):
    with pytest.raises(AssertionError, match=feedback):
        checks.check_latent_objective(wrong)


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
        checks.check_arae_loss(wrong)


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
        "check_reconstruction_score": lambda: checks.check_reconstruction_score(detectors.reconstruction_error),
        "check_fpr_at_tpr": lambda: checks.check_fpr_at_tpr(metrics.fpr_at_tpr),
        "check_validation_threshold": lambda: checks.check_validation_threshold(metrics.choose_threshold),
        "check_fgsm": lambda: checks.check_fgsm(attacks.fgsm),
        "check_project_l2": lambda: checks.check_project_l2(project_l2_reference),
        "check_adversarial_batch_loss": lambda: checks.check_adversarial_batch_loss(reference_adversarial_loss),
        "check_robust_model": lambda: checks.check_robust_model(robust_model, standard_model, x, y, eps=0.1, steps=3),
        "check_latent_objective": lambda: checks.check_latent_objective(reference_objective),
        "check_arae_loss": lambda: checks.check_arae_loss(reference_arae),
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


@pytest.mark.parametrize("name", [name for name in dir(checks) if name.startswith("check_")])
def test_checks_leave_the_global_random_state_alone(name):
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
