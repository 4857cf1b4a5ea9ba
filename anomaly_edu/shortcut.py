"""Shortcuts: when a self-supervised task is solved without learning what it
was meant to teach, and how Puzzle-AE removes the one of its puzzles.
Introduced in Lecture 5.

A network asked to undo a puzzle should learn what digits (or tiles of a
texture) look like. It can instead read the answer off the **seams**: the
rows and columns where two tiles meet, where strokes break off and where
the blank margins of an MNIST digit end up in the middle of the image.

- :func:`seam_band` keeps only the pixels next to the seams;
- :func:`permutation_accuracy` trains a small classifier of *which* permutation
  was applied and measures how often it is right: far above chance on the
  seams alone means the seams give the puzzle away;
- :func:`remove_shortcut` is the talk's remedy, an adversarial perturbation of
  the puzzled input (one signed-gradient step from a uniform random start).
  :func:`permutation_accuracy` with ``eps > 0`` perturbs against the classifier
  itself (adversarial training of the classifier, at test time too);
  :func:`permutation_accuracy_against_unet` perturbs as Puzzle-AE trains:
  against a Puzzle-AE U-Net's reconstruction loss (:func:`perturb_as_puzzle_ae_trains`).
- :func:`published_shortcut_perturbation` is the same remedy as the authors'
  code computes it (the reproducing default of Puzzle-AE, see
  ``SHORTCUT_PERTURBATIONS``); :func:`remove_shortcut` is the course's version.
  Both are called as ``perturb(model, x_puzzled, target, eps)``.
"""

from __future__ import annotations

__lecture__ = 5

import torch
import torch.nn.functional as F

from .attacks import per_example_cross_entropy, per_example_mse, pgd
from .data import check_images
from .puzzles import apply_permutation, puzzle_permutations, tile_size
from .training import accuracy, classification_loss, seeded, train


def remove_shortcut(model: torch.nn.Module, x_puzzled: torch.Tensor, target: torch.Tensor, eps: float, loss_fn=None):
    """The puzzled input, perturbed to make ``model``'s task harder: a uniform
    random start in the L-inf ball of radius ``eps`` around ``x_puzzled``, then
    one signed-gradient step of size ``eps`` that increases ``loss_fn(model(x),
    target)`` (per image; default: the mean squared error to ``target``, the
    reconstruction target), projected back onto the ball and into [0, 1]. Lecture 5.

    This is :func:`anomaly_edu.attacks.pgd` with one step and a random start:
    the course's version (``shortcut="clean-target"`` of Puzzle-AE). It differs
    from the authors' code (:func:`published_shortcut_perturbation`) in two
    ways: the perturbation never exceeds ``eps``, and the step aims at the
    reconstruction target, the clean image.
    """
    return pgd(
        model,
        x_puzzled,
        target,
        eps=eps,
        alpha=eps,
        steps=1,
        random_start=True,
        loss_fn=loss_fn or per_example_mse,
    )


PUBLISHED_STEP = 2.0  # the step ("alpha") of the authors' configuration: far larger than any eps


def published_shortcut_perturbation(
    model: torch.nn.Module, x_puzzled: torch.Tensor, target: torch.Tensor, eps: float
) -> torch.Tensor:
    """The shortcut-removing perturbation as the Puzzle-AE code computes it
    (Niousha12/Puzzle_Anomaly_Detection, ``fgsm_attack``): the reproducing
    default of Puzzle-AE (``shortcut="published"``). Lecture 5.

    It takes the same arguments as :func:`remove_shortcut` but never reads
    ``target`` (the clean image): the authors' code aims at the noisy input.

    1. a random start ``d0``, uniform in [-eps, eps], is added to the puzzled
       input (clipped to [0, 1]);
    2. the loss is the squared error between the network's output and the
       *noisy input itself* (the code's target is an alias of that input, so
       the clean image never enters the attack);
    3. one signed-gradient step of ``PUBLISHED_STEP`` is added to ``d0`` and the
       sum is clipped to [-eps, eps]: wherever the gradient is not zero this is
       ``eps * sign(gradient)``;
    4. that clipped step is added to the already noisy input.

    Steps 1 and 4 both add a perturbation, so a pixel can move up to ``2 * eps``
    from the puzzled input (about ``eps`` on average). :func:`remove_shortcut`
    is the course's version of the same idea.
    """
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    x_puzzled = x_puzzled.detach()
    if eps == 0:
        return x_puzzled.clone()
    start = torch.empty_like(x_puzzled).uniform_(-eps, eps)
    noisy_target = x_puzzled + start  # what the code's aliased "original input" holds
    noisy = noisy_target.clamp(0, 1).requires_grad_(True)
    loss = ((model(noisy) - noisy_target) ** 2).sum()
    (gradient,) = torch.autograd.grad(loss, noisy)
    step = (start + PUBLISHED_STEP * gradient.sign()).clamp(-eps, eps)
    return (noisy.detach() + step).clamp(0, 1)


# Puzzle-AE's ``shortcut`` setting: how the puzzled input is perturbed in training,
# each called as perturb(model, x_puzzled, clean_target, eps).
SHORTCUT_PERTURBATIONS = {"published": published_shortcut_perturbation, "clean-target": remove_shortcut}


def seam_band(image_shape: tuple, grid: int, width: int = 1) -> torch.Tensor:
    """A (H, W) mask that is 1 on the ``width`` rows and columns either side of
    every seam between tiles and 0 elsewhere. Lecture 5."""
    height, wide = image_shape[-2:]
    th, tw = tile_size(tuple(image_shape), grid)
    if not 1 <= width <= min(th, tw) // 2:
        raise ValueError(f"width must be between 1 and half a tile ({min(th, tw) // 2}), got {width}")
    mask = torch.zeros(height, wide)
    for k in range(1, grid):
        mask[k * th - width : k * th + width, :] = 1
        mask[:, k * tw - width : k * tw + width] = 1
    return mask


class KeepSeams(torch.nn.Module):
    """Shows a network only the seams: pixels outside :func:`seam_band`'s mask
    become 0.5 (uninformative grey). Lecture 5."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x):
        return x * self.mask + 0.5 * (1 - self.mask)


class PermutationClassifier(torch.nn.Module):
    """A small CNN that guesses which of ``n_permutations`` puzzles an image
    shows: two 3x3 convolutions, global pooling, a linear layer. Lecture 5."""

    def __init__(self, n_permutations: int, channels: int = 1, width: int = 32):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(channels, width, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(width, 2 * width, 3, padding=1),
            torch.nn.ReLU(),
        )
        self.head = torch.nn.Linear(2 * width * 4 * 4, n_permutations)

    def forward(self, x):
        features = F.adaptive_avg_pool2d(self.features(x), 4)
        return self.head(features.flatten(1))


def puzzle_dataset(x: torch.Tensor, grid: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``x`` under one random non-identity permutation; returns
    the puzzled images and the index of each one's permutation (in
    :func:`~anomaly_edu.puzzles.puzzle_permutations`). Lecture 5."""
    perms = puzzle_permutations(grid)
    labels = torch.randint(len(perms), (len(x),), generator=torch.Generator().manual_seed(seed)).to(x.device)
    puzzled = torch.empty_like(x)
    for k, perm in enumerate(perms):  # one batched call per permutation
        chosen = labels == k
        puzzled[chosen] = apply_permutation(x[chosen], perm, grid)
    return puzzled, labels


def permutation_accuracy(
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    *,
    grid: int = 2,
    band: int | None = None,
    eps: float = 0.0,
    epochs: int = 3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> float:
    """Train a :class:`PermutationClassifier` to tell which puzzle each image
    of ``x_train`` shows, and return its accuracy on the puzzles of ``x_test``
    (chance: 1 / 23 for 2x2). Lecture 5.

    ``band``: show the classifier only the pixels within ``band`` of a seam
    (:class:`KeepSeams`: the rest is uninformative grey). ``eps > 0``: apply
    :func:`remove_shortcut` to every puzzled image **against the classifier
    itself** (its cross-entropy), during training and at test time: adversarial
    training of the classifier, not what Puzzle-AE does. Puzzle-AE perturbs
    against its U-Net, in training only: :func:`permutation_accuracy_against_unet`
    measures that.
    """
    check_images(x_train, "x_train")
    check_images(x_test, "x_test")

    def perturbed(model, images, labels):
        if eps == 0:
            return images
        return remove_shortcut(model, images, labels, eps, loss_fn=per_example_cross_entropy)

    def batch_loss(model, images, labels):
        return classification_loss(model, perturbed(model, images, labels), labels)

    with seeded(seed):
        x_puzzled, y = puzzle_dataset(x_train, grid, seed)
        model = PermutationClassifier(len(puzzle_permutations(grid)), channels=x_train.shape[1])
        if band is not None:
            model = torch.nn.Sequential(KeepSeams(seam_band(tuple(x_train.shape), grid, band)), model)
        model = model.to(x_train.device)
        train(
            model, x_puzzled, y, batch_loss=batch_loss, epochs=epochs, batch_size=batch_size, seed=seed,
            progress=progress, desc="permutation classifier",
        )  # fmt: skip
        x_test_puzzled, y_test = puzzle_dataset(x_test, grid, seed + 1)
        x_test_puzzled = perturbed(model, x_test_puzzled, y_test)
    return accuracy(model, x_test_puzzled, y_test)


def perturb_as_puzzle_ae_trains(
    unet: torch.nn.Module,
    puzzled: torch.Tensor,
    clean: torch.Tensor,
    eps: float,
    shortcut: str = "published",
    batch_size: int = 256,
) -> torch.Tensor:
    """The puzzles ``puzzled`` of the images ``clean`` perturbed against a
    Puzzle-AE ``unet`` as the method's training step perturbs its input:
    ``SHORTCUT_PERTURBATIONS[shortcut](unet, puzzled, clean, eps)``, the call
    that :func:`anomaly_edu.puzzle_ae.puzzle_input` makes, on ``batch_size``
    images at a time. ``shortcut="published"`` moves a pixel by up to ``2 * eps``,
    ``"clean-target"`` by up to ``eps``. The random start comes from torch's
    generator. Lecture 5."""
    if shortcut not in SHORTCUT_PERTURBATIONS:
        raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {', '.join(SHORTCUT_PERTURBATIONS)}")
    if puzzled.shape != clean.shape:
        raise ValueError(f"need one clean image per puzzle, got shapes {tuple(puzzled.shape)} and {tuple(clean.shape)}")
    perturb = SHORTCUT_PERTURBATIONS[shortcut]
    return torch.cat(
        [perturb(unet, p, c, eps) for p, c in zip(puzzled.split(batch_size), clean.split(batch_size))]
    ).detach()


def permutation_accuracy_against_unet(
    unet: torch.nn.Module,
    x_train: torch.Tensor,
    x_test: torch.Tensor,
    *,
    eps: float,
    shortcut: str = "published",
    grid: int = 2,
    band: int | None = None,
    epochs: int = 3,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """The shortcut as Puzzle-AE trains: how well a :class:`PermutationClassifier`
    tells which puzzle an image shows when the puzzles are perturbed against a
    trained Puzzle-AE ``unet`` (:func:`perturb_as_puzzle_ae_trains`), the input
    that U-Net gets in training. Lecture 5.

    The classifier is trained twice on the same puzzles of ``x_train``, from the
    same initial weights: on the puzzles as they are, and on the puzzles
    perturbed against ``unet`` (a fresh random start every mini-batch, as in
    Puzzle-AE's training). Each is tested on the puzzles of ``x_test``, as they
    are or perturbed once against ``unet``. The classifier never perturbs
    anything itself; the ``unet``'s weights are not changed. ``band``: the classifier sees
    only the seams (see :func:`permutation_accuracy`). CPAE's missing tile is
    left out: this measures the shortcut perturbation alone.

    Returns the accuracies (fractions) ``"perturbed"`` and ``"unperturbed"``,
    and ``"chance"``: one over the number of puzzles.
    """
    check_images(x_train, "x_train")
    check_images(x_test, "x_test")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    n_perms = len(puzzle_permutations(grid))
    unet = unet.to(x_train.device).eval()
    accuracies = {}
    for name, against_unet in (("unperturbed", False), ("perturbed", True)):
        with seeded(seed):
            x_puzzled, y = puzzle_dataset(x_train, grid, seed)
            model = PermutationClassifier(n_perms, channels=x_train.shape[1])
            if band is not None:
                model = torch.nn.Sequential(KeepSeams(seam_band(tuple(x_train.shape), grid, band)), model)
            model = model.to(x_train.device)

            def batch_loss(model, images, index, labels=y, against_unet=against_unet):
                if against_unet:  # the batch's puzzles, perturbed afresh against the U-Net
                    images = perturb_as_puzzle_ae_trains(unet, images, x_train[index], eps, shortcut)
                return classification_loss(model, images, labels[index])

            train(
                model, x_puzzled, torch.arange(len(x_puzzled), device=x_train.device), batch_loss=batch_loss,
                epochs=epochs, batch_size=batch_size, seed=seed, progress=progress,
                desc=f"permutation classifier ({name})",
            )  # fmt: skip
            x_test_puzzled, y_test = puzzle_dataset(x_test, grid, seed + 1)
            if against_unet:
                x_test_puzzled = perturb_as_puzzle_ae_trains(unet, x_test_puzzled, x_test, eps, shortcut)
        accuracies[name] = accuracy(model, x_test_puzzled, y_test)
    return {**accuracies, "chance": 1 / n_perms}
