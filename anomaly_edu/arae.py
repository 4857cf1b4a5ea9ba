"""ARAE: the adversarially robust autoencoder (Salehi et al. 2020). Lecture 4.

Adversarial training (Lecture 3) applied to an autoencoder's latent space:

1. the **latent attack** looks for a small L-inf perturbation that moves the
   latent code as far as possible, ``max_d mean((Enc(x + d) - Enc(x))^2)``;
2. the **loss** reconstructs the clean image from the attacked one and keeps the
   two codes close: ``mean((Dec(Enc(x_adv)) - x)^2) + gamma * mean((Enc(x) - Enc(x_adv))^2)``.

The detector scores an image, as the AE does, by the reconstruction error of the
clean input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .attacks import per_example_mse, pgd
from .detectors import AEDetector
from .models import MLPAutoencoder
from .profiles import PROFILES

QUICK = PROFILES["quick"]  # the detectors' default settings
UNION = QUICK["arae-union"]
PUBLISHED_UNION = PROFILES["full"]["arae-union"]  # the union variant's published attacks


def latent_attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    eps: float,
    steps: int,
    alpha: float | None = None,
    check_input: bool = True,
) -> torch.Tensor:
    """PGD on the encoder: push ``Enc(x + d)`` away from the clean code ``Enc(x)``
    (held fixed) within the L-inf ball of radius ``eps``, from a uniform random
    start, with steps of ``alpha`` (default: :func:`~anomaly_edu.attacks.pgd`'s,
    as in the ARAE code). ``model`` must have an ``encode`` method.
    ``check_input=False``: see :func:`~anomaly_edu.attacks.pgd` (the ARAE loss
    attacks every mini-batch of images that ``fit`` checked once). Lecture 4."""
    if eps == 0:
        return x.detach().clone()
    with torch.no_grad():
        clean_code = model.encode(x)
    # At x itself the gradient of the distance is exactly zero, hence the random start.
    return pgd(
        EncoderOnly(model),
        x,
        clean_code,
        eps=eps,
        alpha=alpha,
        steps=steps,
        random_start=True,
        loss_fn=per_example_mse,
        check_input=check_input,
    )


class EncoderOnly(torch.nn.Module):
    """An autoencoder's ``encode`` as a module of its own: what an attack on the
    latent code sees as "the model". Lecture 4."""

    def __init__(self, autoencoder: torch.nn.Module):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x):
        return self.autoencoder.encode(x)


def arae_loss(*, eps: float, steps: int, gamma: float = 0.1, alpha: float | None = None):
    """The ARAE batch loss for the training loop of Lecture 1:
    ``L_rec + gamma * L_latent`` on latent-attacked images (see the module's
    docstring). Gradients flow through both encoder branches. Lecture 4."""
    return robust_reconstruction_loss(
        lambda model, x: latent_attack(model, x, eps=eps, steps=steps, alpha=alpha, check_input=False), gamma
    )


def robust_reconstruction_loss(attack, gamma: float):
    """``L_rec + gamma * L_latent`` on the images that ``attack(model, x)``
    returns: the loss of ARAE and of its union variant. Lecture 4."""

    def loss(model, x, y=None):
        x_adv = attack(model, x)
        code_adv = model.encode(x_adv)
        reconstruction = F.mse_loss(model.decode(code_adv).view_as(x), x)
        latent = F.mse_loss(code_adv, model.encode(x))
        return reconstruction + gamma * latent

    return loss


class ARAEDetector(AEDetector):
    """ARAE: an autoencoder trained with :func:`arae_loss`; score = reconstruction
    error of the clean image. The talk's settings: eps 0.2 on MNIST (0.05 on other
    data), gamma 0.1, 40 attack steps (the quick profile, the default, takes 5). Lecture 4."""

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        *,
        eps: float = QUICK["arae"]["eps"],
        steps: int = QUICK["arae"]["steps"],
        gamma: float = QUICK["arae"]["gamma"],
        epochs: int = QUICK["arae"]["epochs"],
        **training,
    ):
        super().__init__(model, epochs=epochs, **training)  # training: AEDetector's other settings
        if eps < 0 or steps < 1 or gamma < 0:
            raise ValueError(f"need eps >= 0, steps >= 1 and gamma >= 0; got {eps}, {steps}, {gamma}")
        self.eps, self.steps, self.gamma = eps, steps, gamma

    def batch_loss(self):
        return arae_loss(eps=self.eps, steps=self.steps, gamma=self.gamma)


# ---------------------------------------------------------------- the union of perturbation sets


def spatial_attack(
    model: torch.nn.Module, x: torch.Tensor, *, angles=None, shifts=tuple(PUBLISHED_UNION["shifts"])
) -> torch.Tensor:
    """Grid search over rotations (degrees) and x/y shifts (pixels): for each
    image, the transformed copy whose code lies furthest from the clean code.
    The defaults are the published union variant's 31 angles in [-30, 30] times
    3 x 3 shifts: 279 transformations. Lecture 4."""
    angles = evenly_spaced_angles(PUBLISHED_UNION["n_angles"]) if angles is None else angles
    angles = torch.as_tensor(angles, dtype=torch.float32)
    with torch.no_grad():
        clean_code = model.encode(x)
        best, best_distance = x.clone(), torch.full((len(x),), -1.0, device=x.device)
        for angle in angles.tolist():
            for dx in shifts:
                for dy in shifts:
                    moved = rotate_and_shift(x, angle, dx, dy)
                    distance = per_example_mse(model.encode(moved), clean_code)
                    better = distance > best_distance
                    best[better], best_distance[better] = moved[better], distance[better]
    return best


def evenly_spaced_angles(n_angles: int) -> torch.Tensor:
    """``n_angles`` rotation angles evenly spaced in [-30, 30] degrees (just 0 when
    ``n_angles`` is 1): the union variant's rotations. Lecture 4."""
    return torch.linspace(-30, 30, n_angles) if n_angles > 1 else torch.zeros(1)


def rotate_and_shift(x: torch.Tensor, angle: float, dx: float, dy: float) -> torch.Tensor:
    """Rotate images (N, C, H, W) by ``angle`` degrees about their centre and
    shift them by (dx, dy) pixels, filling with 0 (bilinear sampling). Lecture 4."""
    _, _, height, width = x.shape
    a = math.radians(angle)
    theta = torch.tensor(
        [[math.cos(a), -math.sin(a), -2 * dx / width], [math.sin(a), math.cos(a), -2 * dy / height]],
        dtype=x.dtype,
        device=x.device,
    )
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def union_candidates(
    model: torch.nn.Module,
    x: torch.Tensor,
    *,
    linf=tuple(PUBLISHED_UNION["linf"]),
    l2=tuple(PUBLISHED_UNION["l2"]),
    spatial: bool = True,
    angles=None,
    shifts=tuple(PUBLISHED_UNION["shifts"]),
) -> dict[str, torch.Tensor]:
    """The union variant's perturbation sets, each searched on its own for the
    images that move the latent code most: L-inf PGD and L-2 PGD (each ``(eps,
    step, steps)``, from a random start) and the spatial grid search (``angles``
    and ``shifts`` as in :func:`spatial_attack`). Returns {name: images}. Lecture 4."""
    encoder = EncoderOnly(model)
    with torch.no_grad():
        clean_code = model.encode(x)

    def latent_pgd(norm, eps, alpha, steps):
        return pgd(
            encoder,
            x,
            clean_code,
            eps=eps,
            alpha=alpha,
            steps=steps,
            norm=norm,
            random_start=True,
            loss_fn=per_example_mse,
        )

    candidates = {"L-inf": latent_pgd("linf", *linf), "L-2": latent_pgd("l2", *l2)}
    if spatial:
        candidates["rotation and shift"] = spatial_attack(model, x, angles=angles, shifts=shifts)
    return candidates


def union_attack(model: torch.nn.Module, x: torch.Tensor, **sets) -> torch.Tensor:
    """The published union variant: of the images :func:`union_candidates`
    finds (same keyword arguments), keep per image the one that moves the
    latent code most. Lecture 4."""
    candidates = list(union_candidates(model, x, **sets).values())
    with torch.no_grad():
        clean_code = model.encode(x)
        distances = torch.stack([per_example_mse(model.encode(c), clean_code) for c in candidates])
    worst = distances.argmax(0)
    stacked = torch.stack(candidates)
    return stacked[worst, torch.arange(len(x), device=x.device)]


class UnionARAEDetector(AEDetector):
    """ARAE's union variant, as its published code trains it: a ReLU MLP with a
    linear output, trained with :func:`robust_reconstruction_loss` (gamma 0.2)
    on the worst of L-inf PGD, L-2 PGD and rotations with shifts
    (:func:`union_attack`). ``linf`` and ``l2`` are ``(eps, step, steps)``;
    ``n_angles`` angles evenly spaced in [-30, 30] degrees. Score: the
    reconstruction error of the clean image. The defaults are the quick
    profile's shorter attacks; the published ones are the full profile's. Lecture 4."""

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        *,
        gamma: float = UNION["gamma"],
        linf=tuple(UNION["linf"]),
        l2=tuple(UNION["l2"]),
        n_angles: int = UNION["n_angles"],
        shifts=tuple(UNION["shifts"]),
        epochs: int = UNION["epochs"],
        **training,
    ):
        super().__init__(model, epochs=epochs, **training)  # training: AEDetector's other settings
        if gamma < 0 or n_angles < 1 or len(linf) != 3 or len(l2) != 3:
            raise ValueError(
                "need gamma >= 0, n_angles >= 1, and linf and l2 as (eps, step, steps); "
                f"got {gamma}, {n_angles}, {linf}, {l2}"
            )
        self.gamma, self.linf, self.l2, self.n_angles, self.shifts = gamma, linf, l2, n_angles, shifts

    def default_model(self, image_shape: tuple) -> torch.nn.Module:
        return MLPAutoencoder(image_shape=image_shape, activation="relu")

    def batch_loss(self):
        angles = evenly_spaced_angles(self.n_angles)
        return robust_reconstruction_loss(
            lambda model, x: union_attack(
                model, x, linf=tuple(self.linf), l2=tuple(self.l2), angles=angles, shifts=tuple(self.shifts)
            ),
            self.gamma,
        )
