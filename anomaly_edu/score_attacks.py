"""Stress-testing a detector: attacks at test time. Introduced in Lecture 7.

An attacker who can change test images a little can push a normal image's
anomaly score up (a false alarm) and an anomaly's score down (a miss). The
attack is PGD (:func:`anomaly_edu.attacks.pgd`) on the detector's own score:

- the **attack strength** is the same for every detector: an L-inf ball of
  radius ``eps`` around each image, in pixel units of [0, 1], ``steps`` signed
  gradient steps of size 2.5 eps / steps from a random start in the ball;
- the attack goes through the detector's **whole score**, exactly as
  :meth:`anomaly_score` computes it (for Puzzle-AE: every puzzle, each error divided
  by its normaliser, the aggregation), via the detector's
  ``differentiable_score``; a detector without one, or whose score does not
  depend on the image through gradients, is refused with a clear error rather
  than attacked with a zero gradient.

- :func:`attack_scores`: the attacked images
- :func:`auroc_under_attack`: AUROC after the attack, for several eps, with
  only the normal images attacked (the talk's Figure 10) and with both kinds
- :func:`attack_numbers`: the same on a balanced subset of a test set
  (``python -m anomaly_edu reproduce mnist-attack`` trains the detectors and
  runs it: Figure 10's experiment)
"""

from __future__ import annotations

__lecture__ = 7

import numpy as np
import torch
from tqdm.auto import tqdm

from .attacks import pgd
from .data import check_images
from .metrics import auroc


class _Score(torch.nn.Module):
    """A detector's differentiable score as a module, so that PGD can attack it."""

    def __init__(self, detector):
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.detector.differentiable_score(x)


def _raise_normal_lower_anomalous(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss PGD maximises: the score of a normal image (label 0), minus the
    score of an anomaly (label 1)."""
    return scores * (1 - 2 * labels.to(scores.dtype))


def check_attackable(detector, x: torch.Tensor) -> None:
    """Raise a clear error unless gradients of ``detector``'s score reach the
    images ``x`` (a few images on the detector's device). Lecture 7."""
    name = type(detector).__name__
    if not hasattr(detector, "differentiable_score"):
        raise ValueError(
            f"{name} has no differentiable score (differentiable_score), so a gradient attack cannot run on it; "
            "attack it with a method that needs no gradients, or leave it out"
        )
    probe = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        scores = detector.differentiable_score(probe)
        if not scores.requires_grad:
            raise ValueError(
                f"{name}.differentiable_score does not depend on the images through gradients (it was computed "
                "without them, e.g. under torch.no_grad); the attack would see a zero gradient. Fix the score."
            )
        (gradient,) = torch.autograd.grad(scores.sum(), probe, allow_unused=True)
    if gradient is None:
        raise ValueError(f"{name}'s score does not depend on its input; there is nothing to attack")


def attack_scores(
    detector,
    x: torch.Tensor,
    labels: torch.Tensor,
    *,
    eps: float,
    steps: int = 10,
    batch_size: int = 64,
    seed: int = 0,
) -> torch.Tensor:
    """The images ``x`` attacked within an L-inf ball of radius ``eps``:
    normal images (``labels`` 0) pushed towards a higher anomaly score,
    anomalies (1) towards a lower one (see the module's docstring for the
    attack). Done in chunks of ``batch_size`` images; seeded random starts.
    Lecture 7."""
    x = check_images(x).to(getattr(detector, "device_", "cpu"))
    labels = torch.as_tensor(labels).to(x.device)
    if labels.shape != (len(x),):
        raise ValueError(f"need one label per image ({len(x)}), got labels of shape {tuple(labels.shape)}")
    check_attackable(detector, x[:2])
    model = _Score(detector)
    attacked = []
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for i in range(0, len(x), batch_size):
            chunk, chunk_labels = x[i : i + batch_size], labels[i : i + batch_size]
            attacked.append(
                pgd(
                    model,
                    chunk,
                    chunk_labels,
                    eps=eps,
                    steps=steps,
                    random_start=True,
                    loss_fn=_raise_normal_lower_anomalous,
                ).detach()
            )
    finally:
        torch.random.set_rng_state(generator_state)
    return torch.cat(attacked)


def balanced_subset(labels: torch.Tensor, n_images: int, *, seed: int = 0) -> torch.Tensor:
    """Positions of a seeded random ``n_images`` of the test set, half normal
    and half anomalies (fewer where a kind has fewer), in their original order:
    attacks cost a gradient pass per step, so they run on a subset. Lecture 7."""
    labels = torch.as_tensor(labels).cpu()
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for kind, wanted in ((0, n_images // 2), (1, n_images - n_images // 2)):
        where = torch.nonzero(labels == kind).flatten()
        chosen.append(where[torch.randperm(len(where), generator=generator)[:wanted]])
    return torch.cat(chosen).sort().values


def auroc_under_attack(
    detector,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps_values: list[float],
    *,
    steps: int = 10,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """AUROC (in %) of ``detector`` on ``x`` after :func:`attack_scores` at
    each eps of ``eps_values``, as ``{"normal": {eps: AUROC}, "both": {...}}``
    with eps written as text ("0" is the clean images):

    - "normal": only the normal images are attacked (towards a higher score;
      the talk's Figure 10), the anomalies are scored clean;
    - "both": the anomalies are attacked too (towards a lower score).

    One attack serves both: each image is attacked on its own score, so a
    normal image's attack does not depend on the others. Lecture 7."""
    labels = torch.as_tensor(labels)
    clean = detector.anomaly_score(x)
    numbers = {"normal": {"0": round(100 * auroc(labels, clean), 2)}}
    numbers["both"] = dict(numbers["normal"])
    normal = (labels == 0).cpu().numpy()
    for eps in tqdm(eps_values, desc=f"attacking {type(detector).__name__}", unit="eps", disable=not progress):
        attacked = detector.anomaly_score(attack_scores(detector, x, labels, eps=eps, steps=steps, seed=seed))
        numbers["normal"][f"{eps:g}"] = round(100 * auroc(labels, np.where(normal, attacked, clean)), 2)
        numbers["both"][f"{eps:g}"] = round(100 * auroc(labels, attacked), 2)
    return numbers


def attack_numbers(detector, split, settings: dict, *, seed: int = 0, progress: bool = False) -> dict:
    """Figure 10's numbers for one fitted detector: :func:`auroc_under_attack`
    on a balanced subset (:func:`balanced_subset`) of the split's test set, at
    the ``eps_values`` with the ``steps`` and ``n_images`` of ``settings``
    (the profile's "stress" settings). Lecture 7."""
    chosen = balanced_subset(split.y_test, settings["n_images"], seed=seed)
    x, labels = split.x_test[chosen.to(split.x_test.device)], split.y_test.cpu()[chosen]
    numbers = auroc_under_attack(
        detector, x, labels, settings["eps_values"], steps=settings["steps"], seed=seed, progress=progress
    )
    return {**numbers, "n_normal": int((labels == 0).sum()), "n_anomalies": int(labels.sum())}
