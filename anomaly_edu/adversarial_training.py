"""Adversarial training and how to measure robustness. Introduced in Lecture 3.

Madry et al.'s min-max training needs nothing new from the training loop of
Lecture 1: :func:`adversarial_loss` is one more batch loss. It first solves the
inner maximisation with PGD, then returns the classification loss on the
attacked images, which the loop minimises.
"""

from __future__ import annotations

__lecture__ = 3

import torch
import torch.nn.functional as F

from .attacks import pgd
from .models import MnistCNN
from .training import accuracy, classification_loss, seeded, train


def adversarial_loss(*, eps: float, alpha: float, steps: int, norm: str = "linf", random_start: bool = True):
    """A batch loss for adversarial training: the cross-entropy of the model on
    PGD examples found for the current model. Lecture 3."""

    def loss(model, x, y):
        x_adv = pgd(model, x, y, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=random_start)
        return F.cross_entropy(model(x_adv), y)

    return loss


def train_classifier(
    x: torch.Tensor, y: torch.Tensor, settings: dict, *, adversarial: bool = False, seed: int = 0, progress: bool = True
) -> tuple[MnistCNN, list[float]]:
    """Train an :class:`~anomaly_edu.models.MnistCNN` on ``x, y`` with the
    settings of one profile entry ("cnn" or "adv_cnn"), standard or adversarial.
    Returns the model (in eval mode) and the loss of each epoch. Lecture 3."""
    if settings.get("max_train") is not None:
        x, y = x[: settings["max_train"]], y[: settings["max_train"]]
    if adversarial:
        batch_loss = adversarial_loss(eps=settings["eps"], alpha=settings["alpha"], steps=settings["steps"])
    else:
        batch_loss = classification_loss
    with seeded(seed):
        model = MnistCNN(width=settings.get("width", 1)).to(x.device)
        history = train(
            model,
            x,
            y,
            batch_loss=batch_loss,
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            lr=settings["lr"],
            seed=seed,
            progress=progress,
            desc="adversarial training" if adversarial else "standard training",
        )
    return model, history


def robust_accuracy(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int = 40,
    alpha: float | None = None,
    norm: str = "linf",
    batch_size: int = 500,
) -> float:
    """Accuracy on PGD examples of radius ``eps`` (``steps`` steps of size
    ``alpha``, by default :func:`~anomaly_edu.attacks.pgd`'s). eps = 0 gives the
    clean accuracy. Lecture 3."""
    if eps == 0:
        return accuracy(model, x, y)
    correct = 0
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        x_adv = pgd(model, xb, yb, eps=eps, alpha=alpha, steps=steps, norm=norm)
        with torch.no_grad():
            correct += (model(x_adv).argmax(1) == yb).sum().item()
    return correct / len(x)
