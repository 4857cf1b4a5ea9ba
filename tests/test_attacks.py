"""Tests of anomaly_edu.attacks: FGSM, PGD (L-inf, L-2) and the sparse attack."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from anomaly_edu.attacks import fgsm, per_example_cross_entropy, per_example_mse, pgd, sparse_attack

SETTINGS = settings(max_examples=25, deadline=None)
ATTACKS = ["fgsm", "pgd_linf", "pgd_l2", "sparse"]
# Budgets: eps for the first three, k (number of pixel positions) for the sparse attack.
BUDGETS = {
    "fgsm": st.floats(0.0, 0.5),
    "pgd_linf": st.floats(0.0, 0.5),
    "pgd_l2": st.floats(0.0, 1.0),
    "sparse": st.integers(0, 12),
}
SEEDS = st.integers(0, 2**16)


# ---------------------------------------------------------------------------
# Tiny models and data
# ---------------------------------------------------------------------------


def tiny_cnn(seed: int, channels: int = 1, classes: int = 5) -> nn.Module:
    """Conv-BN-ReLU-dropout-linear on (channels, 6, 6) images: its modes matter."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(channels, 3, 3),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, classes),
    )


def two_class_linear(seed: int) -> nn.Module:
    """Logistic regression: its cross-entropy is convex in x and its input gradient has a
    fixed direction, so every attack here provably never lowers the loss."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 2))


def images(seed: int, n: int, channels: int = 1, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch in [0, 1] with some pixels exactly 0 or 1 (to exercise the clipping)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 6, 6, generator=g)
    x = torch.where(x < 0.2, 0.0, torch.where(x > 0.8, 1.0, x))
    return x, torch.randint(0, classes, (n,), generator=g)


def attack(name: str, model: nn.Module, x, y, budget, **kwargs) -> torch.Tensor:
    """Run one of the four attacks with a small, fixed number of steps."""
    if name == "fgsm":
        return fgsm(model, x, y, budget, **kwargs)
    if name == "sparse":
        return sparse_attack(model, x, y, k=budget, **kwargs)
    norm = name.removeprefix("pgd_")
    return pgd(model, x, y, eps=budget, alpha=2.5 * budget / 5 + 1e-3, steps=5, norm=norm, **kwargs)


def distance(name: str, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-example size of the perturbation in the attack's own norm (L-0: changed positions)."""
    delta = (x_adv.double() - x.double()).flatten(1)
    if name == "pgd_l2":
        return delta.norm(dim=1)
    if name == "sparse":
        changed = (x_adv != x).any(dim=1) if x.ndim == 4 else x_adv != x  # (N, C, H, W): positions
        return changed.flatten(1).sum(dim=1).double()
    return delta.abs().max(dim=1).values


# ---------------------------------------------------------------------------
# Properties of every attack
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ATTACKS)
@SETTINGS
@given(data=st.data(), seed=SEEDS, n=st.integers(1, 4))
def test_stays_in_ball_and_image_range(name, data, seed, n):
    model, (x, y) = tiny_cnn(seed), images(seed, n)
    budget = data.draw(BUDGETS[name])
    x_adv = attack(name, model, x, y, budget)
    assert x_adv.shape == x.shape
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (distance(name, x_adv, x) <= budget + 1e-6).all()


@pytest.mark.parametrize("name", ATTACKS)
@SETTINGS
@given(data=st.data(), seed=SEEDS, training=st.booleans())
def test_input_untouched_modes_restored_no_parameter_grads(name, data, seed, training):
    model, (x, y) = tiny_cnn(seed), images(seed, 3)
    model.train(training)
    model[3].train(not training)  # a mixed state must come back exactly as it was
    modes = [m.training for m in model.modules()]
    model[0].weight.grad = torch.ones_like(model[0].weight)  # one .grad set, the others None
    x_before = x.clone()
    attack(name, model, x, y, data.draw(BUDGETS[name]))
    assert torch.equal(x, x_before)
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(model[0].weight.grad, torch.ones_like(model[0].weight))
    assert all(p.grad is None for name_, p in model.named_parameters() if name_ != "0.weight")


@pytest.mark.parametrize("name", ATTACKS)
@SETTINGS
@given(seed=SEEDS)
def test_zero_budget_returns_an_equal_copy(name, seed):
    model, (x, y) = tiny_cnn(seed), images(seed, 2)
    x_adv = attack(name, model, x, y, 0)
    assert torch.equal(x_adv, x) and x_adv.data_ptr() != x.data_ptr()


@pytest.mark.parametrize("name", ATTACKS)
@SETTINGS
@given(data=st.data(), seed=SEEDS, n=st.integers(1, 4))
def test_attack_does_not_lower_the_loss(name, data, seed, n):
    model, (x, y) = two_class_linear(seed), images(seed, n, classes=2)
    x_adv = attack(name, model, x, y, data.draw(BUDGETS[name]))
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
        attacked = F.cross_entropy(model(x_adv), y, reduction="none")
    assert attacked.sum() >= clean.sum() - 1e-5
    assert (attacked >= clean - 1e-5).all()  # here it even holds per example


@pytest.mark.parametrize("name", ATTACKS)
def test_mode_restored_when_the_attack_fails(name):
    model, (x, y) = tiny_cnn(0), images(0, 2)
    model.train()

    def broken_loss(output, target):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        attack(name, model, x, y, 1 if name == "sparse" else 0.1, loss_fn=broken_loss)
    assert all(m.training for m in model.modules())


@pytest.mark.parametrize("name", ATTACKS)
def test_works_under_no_grad(name):
    model, (x, y) = tiny_cnn(0), images(0, 2)
    with torch.no_grad():
        x_adv = attack(name, model, x, y, 2 if name == "sparse" else 0.1)
    assert not torch.equal(x_adv, x)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_custom_loss_with_a_latent_target(norm):
    """The ARAE latent attack: the model is an encoder, y the clean code, the loss an MSE.

    The MSE's gradient vanishes at x itself, so this attack needs a random start."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(36, 4), nn.Sigmoid())
    x = torch.rand(5, 36)  # flattened images
    z = encoder(x).detach()
    eps = 0.2 if norm == "linf" else 1.0
    x_adv = pgd(
        encoder,
        x,
        z,
        eps=eps,
        alpha=eps / 8,
        steps=10,
        norm=norm,
        random_start=True,
        restarts=2,
        loss_fn=per_example_mse,
    )
    assert (distance(f"pgd_{norm}", x_adv, x) <= eps + 1e-6).all()
    with torch.no_grad():
        assert (per_example_mse(encoder(x_adv), z) > 0).all()


@pytest.mark.parametrize("name", ATTACKS)
def test_custom_loss_with_a_target_image(name):
    """As in Puzzle-AE: y is a target image, the model maps images to images."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(36, 36), nn.Sigmoid())
    x = torch.rand(5, 36)  # flattened: for the L-0 attack every entry is one "pixel"
    target = x.flip(0)
    budget = 3 if name == "sparse" else 0.2
    x_adv = attack(name, model, x, target, budget, loss_fn=per_example_mse)
    assert not torch.equal(x_adv, x)
    assert (distance(name, x_adv, x) <= budget + 1e-6).all()


# ---------------------------------------------------------------------------
# Attack-specific properties
# ---------------------------------------------------------------------------


@SETTINGS
@given(seed=SEEDS, k=st.integers(0, 40), steps=st.integers(1, 6))
def test_sparse_counts_positions_across_channels(seed, k, steps):
    model, (x, y) = tiny_cnn(seed, channels=3), images(seed, 3, channels=3)
    x_adv = sparse_attack(model, x, y, k=k, steps=steps)
    changed = (x_adv != x).any(dim=1).flatten(1).sum(dim=1)  # positions, all channels at once
    assert (changed <= min(k, 36)).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@SETTINGS
@given(seed=SEEDS, norm=st.sampled_from(["linf", "l2"]))
def test_restarts_never_worse_than_the_first_restart(seed, norm):
    model, (x, y) = tiny_cnn(seed), images(seed, 4)
    eps = 0.1 if norm == "linf" else 0.5
    kwargs = dict(eps=eps, alpha=eps / 4, steps=4, norm=norm, random_start=True)
    torch.manual_seed(seed)
    one = pgd(model, x, y, restarts=1, **kwargs)
    torch.manual_seed(seed)  # the first of the three restarts draws the same start
    three = pgd(model, x, y, restarts=3, **kwargs)
    model.eval()
    with torch.no_grad():
        loss_one = per_example_cross_entropy(model(one), y)
        loss_three = per_example_cross_entropy(model(three), y)
    assert (loss_three >= loss_one).all()
    assert (distance(f"pgd_{norm}", three, x) <= eps + 1e-6).all()


def test_l2_step_has_length_alpha_at_most():
    """The L-2 step follows the normalised gradient (length alpha before clipping), not its sign."""
    model, (x, y) = tiny_cnn(1), images(1, 4)
    x_adv = pgd(model, x, y, eps=10.0, alpha=0.25, steps=1, norm="l2")
    step = (x_adv - x).flatten(1).norm(dim=1)
    assert (step <= 0.25 + 1e-6).all() and (step > 0).all()


def test_l2_with_an_eps_that_rounds_to_zero_stays_finite():
    """In float32 5e-324 is 0: the projection must not compute 0 / 0 for a zero perturbation."""
    model, (x, y) = tiny_cnn(0), images(0, 2)
    x_adv = pgd(model, x, y, eps=5e-324, alpha=0.01, steps=2, norm="l2")
    assert torch.isfinite(x_adv).all() and (x_adv - x).abs().max() < 1e-30


# ---------------------------------------------------------------------------
# Same results as torchattacks 3.5.1
# ---------------------------------------------------------------------------


def mnist_like_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 14 * 14, 10),
    )


@pytest.mark.parametrize("norm, eps, alpha", [("linf", 0.3, 0.01), ("l2", 2.0, 0.1)])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_matches_torchattacks(norm, eps, alpha, random_start):
    torchattacks = pytest.importorskip("torchattacks", reason="torchattacks 3.5.1 is not installed")
    model = mnist_like_cnn()
    g = torch.Generator().manual_seed(1)
    # 50 is not a power of 2: dividing by it rounds, so the two gradients agree only if both
    # libraries average the per-example losses the same way.
    x, y = torch.rand(50, 1, 28, 28, generator=g), torch.randint(0, 10, (50,), generator=g)
    reference = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    torch.manual_seed(2)  # with a random start both libraries draw the same numbers
    ours = pgd(model, x, y, eps=eps, alpha=alpha, steps=20, norm=norm, random_start=random_start)
    torch.manual_seed(2)
    theirs = reference(model, eps=eps, alpha=alpha, steps=20, random_start=random_start)(x, y)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_fgsm_matches_torchattacks():
    torchattacks = pytest.importorskip("torchattacks", reason="torchattacks 3.5.1 is not installed")
    model = mnist_like_cnn()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(50, 1, 28, 28, generator=g), torch.randint(0, 10, (50,), generator=g)
    torch.testing.assert_close(fgsm(model, x, y, 0.1), torchattacks.FGSM(model, eps=0.1)(x, y), atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ATTACKS)
def test_runs_on_the_device_of_x(name):
    model, (x, y) = tiny_cnn(0).cuda(), images(0, 3)
    x_adv = attack(name, model, x.cuda(), y.cuda(), 2 if name == "sparse" else 0.1)
    assert x_adv.device.type == "cuda"


# ---------------------------------------------------------------------------
# Bad input: one clear ValueError each
# ---------------------------------------------------------------------------


def _pgd(**overrides):
    model, (x, y) = tiny_cnn(0), images(0, 2)
    kwargs = dict(eps=0.1, alpha=0.01, steps=3, norm="linf", random_start=False, restarts=1)
    kwargs.update(overrides)
    x = kwargs.pop("x", x)
    return pgd(model, x, y, **kwargs)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(eps=-0.1), "eps must be a finite number >= 0"),
        (dict(eps=float("nan")), "eps must be a finite number >= 0"),
        (dict(alpha=0.0), "alpha must be a finite number > 0"),
        (dict(alpha=-1.0), "alpha must be a finite number > 0"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(restarts=0), "restarts must be an integer >= 1"),
        (dict(restarts=2), "needs random_start=True"),
        (dict(norm="l1"), "norm must be 'linf' or 'l2'"),
        (dict(x=torch.full((2, 1, 6, 6), 1.5)), r"values in \[0, 1\]"),
        (dict(x=torch.full((2, 1, 6, 6), -0.5)), r"values in \[0, 1\]"),
        (dict(x=torch.full((2, 1, 6, 6), float("nan"))), "NaN or infinite"),
        (dict(x=torch.full((2, 1, 6, 6), float("inf"))), "NaN or infinite"),
        (dict(x=torch.zeros(2, 1, 6, 6, dtype=torch.uint8)), "floating-point"),
        (dict(x=torch.zeros(36)), "batch of shape"),
    ],
)
def test_pgd_rejects_bad_input(overrides, message):
    with pytest.raises(ValueError, match=message):
        _pgd(**overrides)


def test_pgd_with_zero_eps_needs_no_steps():
    x = images(0, 2)[0]
    assert torch.equal(_pgd(eps=0.0, steps=0), x)


@pytest.mark.parametrize(
    "loss_fn, kwargs, message",
    [
        (lambda out, y: F.cross_entropy(out, y, reduction="none")[:1], {}, "one loss per example"),
        (lambda out, y: torch.zeros(2, 2, requires_grad=True), {}, "one loss per example"),
        (lambda out, y: F.cross_entropy(out, y), dict(random_start=True, restarts=2), "not a scalar"),
    ],
)
def test_pgd_rejects_bad_loss_fn(loss_fn, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _pgd(loss_fn=loss_fn, **kwargs)


def test_scalar_loss_is_fine_with_one_restart():
    model, (x, y) = tiny_cnn(0), images(0, 2)
    mean_loss = pgd(model, x, y, eps=0.1, alpha=0.02, steps=3, loss_fn=lambda o, t: F.cross_entropy(o, t))
    torch.testing.assert_close(mean_loss, pgd(model, x, y, eps=0.1, alpha=0.02, steps=3))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, y: fgsm(m, x, y, -0.1), "eps must be a finite number >= 0"),
        (lambda m, x, y: fgsm(m, x, y, float("inf")), "eps must be a finite number >= 0"),
        (lambda m, x, y: fgsm(m, x + 1, y, 0.1), r"values in \[0, 1\]"),
        (lambda m, x, y: fgsm(m, x * float("nan"), y, 0.1), "NaN or infinite"),
        (lambda m, x, y: sparse_attack(m, x, y, k=-1), "k must be an integer >= 0"),
        (lambda m, x, y: sparse_attack(m, x, y, k=2.5), "k must be an integer >= 0"),
        (lambda m, x, y: sparse_attack(m, x, y, k=3, steps=0), "steps must be an integer >= 1"),
        (lambda m, x, y: sparse_attack(m, x - 1, y, k=3), r"values in \[0, 1\]"),
        (lambda m, x, y: sparse_attack(m, x.double() * float("nan"), y, k=3), "NaN or infinite"),
    ],
)
def test_fgsm_and_sparse_reject_bad_input(call, message):
    model, (x, y) = tiny_cnn(0), images(0, 2)
    with pytest.raises(ValueError, match=message):
        call(model, x, y)
