"""Puzzle-AE (Salehi et al. 2020): a U-Net that solves puzzles, scored by how
badly it solves them. Introduced in Lecture 5.

Training: every mini-batch is cut into tiles (:mod:`anomaly_edu.puzzles`),
shuffled by one random non-identity permutation and perturbed to remove the
seam shortcut (:mod:`anomaly_edu.shortcut`); the U-Net must give back the
original, unpuzzled image. Three variants (the talk's Table 9):

- ``"pae"``: the puzzle alone;
- ``"cpae"``: the puzzle plus colorization / inpainting of one tile;
- ``"cpae-g"``: CPAE plus a discriminator and a feature-matching loss. The
  authors' training script always trains this one, and its average score is
  the talk's "ours"; the full profile trains it.

Scoring: the mean squared error of the reconstruction of every non-identity
puzzle of an image, each divided by that puzzle's mean error on held-out
normal images, aggregated by their mean (``"avg"``, the talk's choice), ``"max"``
or ``"min"``. Higher means more anomalous.

Where the course differs from the authors' code (the full profile follows the
code unless a line here says otherwise):

- ``shortcut``: ``"published"`` perturbs as the code does
  (:func:`~anomaly_edu.shortcut.published_shortcut_perturbation`: up to 2 eps,
  aimed at the noisy input itself); ``"clean-target"`` is the course's version
  (:func:`~anomaly_edu.shortcut.remove_shortcut`: within eps, aimed at the
  clean image). The detector and the loss functions below share one default,
  the quick profile's (``"clean-target"``); the full profile sets
  ``"published"``;
- ``lr_factor``, ``lr_patience``: the code's ``ReduceLROnPlateau`` on the
  U-Net's learning rate (0.5 and 30 on MNIST, 0.8 and 50 elsewhere); the
  discriminator's learning rate is never decayed;
- ``zoomed_copies``: on MVTec the code adds three copies of the training
  images, each zoomed by a random factor in [1.05, 1.2]; the course zooms
  with bilinear sampling (the code's torchvision default is nearest-pixel),
  zooms only the images it trains on (the code's copies include the held-out
  ones), and keeps all the images (the code keeps one batch of 800);
- ``score_puzzles``: textures train on swaps of two tiles but the code scores
  every image with all 23 puzzles (``"all"``); ``"trained"`` scores with the
  puzzles it trained on;
- ``networks``: ``"published"`` builds the code's U-Net and discriminator;
  ``"course"`` the course's earlier ones (:mod:`anomaly_edu.puzzle_networks`);
- the held-out images that measure each puzzle's normal error are never
  training images (in the code's test, most of them are), and the small
  training sets (MVTec, medical) are used whole, not one mini-batch of them.
"""

from __future__ import annotations

__lecture__ = 5

import numpy as np
import torch
import torch.nn.functional as F

from .data import check_images
from .detectors import Detector
from .profiles import PROFILES
from .puzzle_networks import PuzzleGAN, UNet, check_build, make_discriminator
from .puzzles import (
    apply_permutation,
    apply_permutations,
    puzzle_permutations,
    random_permutation,
    remove_colour_of_one_tile,
    swap_permutations,
    tile_size,
)
from .shortcut import SHORTCUT_PERTURBATIONS
from .training import pick_device, predict_in_batches, seeded, train

QUICK = PROFILES["quick"]["puzzle-ae"]  # the detector's default settings
VARIANTS = ("pae", "cpae", "cpae-g")
AGGREGATIONS = {"avg": torch.mean, "max": torch.amax, "min": torch.amin}
PUZZLE_SETS = ("all", "swaps")  # every non-identity permutation, or the swaps of two tiles (textures)
SCORE_PUZZLES = ("all", "trained")  # score with every non-identity puzzle, or with the training puzzles
FEATURE_MATCHING_WEIGHT = 0.02  # CPAE-G's weight of the feature-matching loss
DISCRIMINATOR_LR = 2e-4  # CPAE-G's discriminator: Adam with this rate and betas (0.5, 0.999), never decayed


def puzzle_input(
    model: torch.nn.Module,
    x: torch.Tensor,
    perms: torch.Tensor,
    *,
    grid: int,
    colour: bool,
    eps: float,
    shortcut: str = QUICK["shortcut"],
) -> torch.Tensor:
    """What the U-Net sees in training: ``x`` under one random permutation of
    ``perms``, with one tile's colour removed (``colour``, CPAE), perturbed by
    ``eps`` to remove the seam shortcut (``shortcut``: a key of
    :data:`~anomaly_edu.shortcut.SHORTCUT_PERTURBATIONS`). ``x`` is not
    changed. Lecture 5."""
    x_in = apply_permutation(x, random_permutation(perms), grid)
    if colour:
        x_in = remove_colour_of_one_tile(x_in, grid)
    if eps > 0:
        x_in = SHORTCUT_PERTURBATIONS[shortcut](model, x_in, x, eps)
    return x_in


def puzzle_loss(*, grid: int, perms: torch.Tensor, colour: bool, eps: float, shortcut: str = QUICK["shortcut"]):
    """The batch loss of PAE and CPAE: mean squared error between the U-Net's
    output on :func:`puzzle_input` and the original images (not the puzzled
    ones: the network must undo the puzzle). Lecture 5."""

    def loss(model, x, y=None):
        puzzled = puzzle_input(model, x, perms, grid=grid, colour=colour, eps=eps, shortcut=shortcut)
        return F.mse_loss(model(puzzled), x)

    return loss


def puzzle_gan_loss(*, grid: int, perms: torch.Tensor, eps: float, shortcut: str = QUICK["shortcut"]):
    """CPAE-G's batch loss for a :class:`PuzzleGAN`: the CPAE loss plus
    ``FEATURE_MATCHING_WEIGHT`` x the mean squared difference of the
    discriminator's features of the original and the reconstruction, and the
    discriminator's own loss (binary cross-entropy, originals real,
    reconstructions fake). Lecture 5.

    One optimizer step trains both networks: the discriminator's loss sees
    only detached reconstructions (it cannot move the U-Net), and the
    feature-matching term is computed with the discriminator's weights frozen
    (it cannot move the discriminator). The returned value is the
    reconstruction error alone, the loss that the code's learning-rate
    schedule watches; the other two terms add their gradients without
    changing that value.
    """

    def loss(model, x, y=None):
        unet, discriminator = model.unet, model.discriminator
        reconstruction = unet(puzzle_input(unet, x, perms, grid=grid, colour=True, eps=eps, shortcut=shortcut))
        p_real, _ = discriminator(x)
        p_fake, _ = discriminator(reconstruction.detach())
        d_loss = F.binary_cross_entropy(p_real, torch.ones_like(p_real)) + F.binary_cross_entropy(
            p_fake, torch.zeros_like(p_fake)
        )
        discriminator.requires_grad_(False)
        _, features_real = discriminator(x)
        _, features_fake = discriminator(reconstruction)
        discriminator.requires_grad_(True)
        feature_matching = FEATURE_MATCHING_WEIGHT * F.mse_loss(features_fake, features_real.detach())
        gradient_only = (feature_matching + d_loss) - (feature_matching + d_loss).detach()  # value 0
        return F.mse_loss(reconstruction, x) + gradient_only

    return loss


def squared_errors_per_puzzle(model: torch.nn.Module, x: torch.Tensor, perms: torch.Tensor, grid: int) -> torch.Tensor:
    """The squared error of ``model``'s reconstruction of every image of ``x``
    (N, C, H, W) under every permutation of ``perms``, per pixel: shape
    (N, P, C, H, W). All N x P puzzles go through the network in one batch.
    Every Puzzle-AE score (:func:`permutation_errors`, the maps, the attacks'
    differentiable score) is an average of these. Lecture 5."""
    puzzled = apply_permutations(x, perms, grid).flatten(0, 1)  # (N * P, C, H, W)
    restored = model(puzzled).view(len(x), len(perms), *x.shape[1:])
    return (restored - x.unsqueeze(1)).pow(2)


@torch.inference_mode()
def permutation_errors(
    model: torch.nn.Module, x: torch.Tensor, perms: torch.Tensor, grid: int, images_per_pass: int = 2048
) -> torch.Tensor:
    """The mean squared error of ``model``'s reconstruction of every image of
    ``x`` under every permutation of ``perms``: shape (N, P), from
    :func:`squared_errors_per_puzzle` on ``images_per_pass // P`` images at a
    time. Lecture 5."""
    model.eval()
    per_pass = max(1, images_per_pass // len(perms))
    return torch.cat(
        [squared_errors_per_puzzle(model, batch, perms, grid).flatten(2).mean(2) for batch in x.split(per_pass)]
    )


@torch.inference_mode()
def permutation_error_maps(
    model: torch.nn.Module,
    x: torch.Tensor,
    perms: torch.Tensor,
    grid: int,
    normalisers: torch.Tensor,
    images_per_pass: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Puzzle-AE's anomaly maps (N, H, W): each pixel's squared error (mean over
    the channels) under every puzzle of ``perms``, divided by that puzzle's
    normaliser and averaged over the puzzles; and, from the same pass, the (N, P)
    normalised errors of :meth:`PuzzleAEDetector.permutation_scores`. The mean
    of an image's map is its "avg" score. Lecture 6."""
    model.eval()
    maps, errors = [], []
    for batch in x.split(max(1, images_per_pass // len(perms))):
        per_pixel = squared_errors_per_puzzle(model, batch, perms, grid).mean(2) / normalisers.view(1, -1, 1, 1)
        maps.append(per_pixel.mean(1))  # (B, H, W)
        errors.append(per_pixel.flatten(2).mean(2))  # (B, P)
    return torch.cat(maps), torch.cat(errors)


def zoomed_copies(x: torch.Tensor, copies: int, scale=(1.05, 1.2), seed: int = 0) -> torch.Tensor:
    """``copies`` copies of the images ``x`` (N, C, H, W), each image zoomed
    about its centre by its own random factor drawn uniformly from ``scale``
    (bilinear sampling; a factor above 1 crops, so nothing needs filling).
    Puzzle-AE's MVTec augmentation; shape (copies * N, C, H, W). Lecture 6."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    generator = torch.Generator().manual_seed(seed)
    zooms = torch.empty(copies * len(x)).uniform_(*scale, generator=generator).to(x.device, x.dtype)
    repeated = x.repeat(copies, 1, 1, 1)
    theta = torch.zeros(len(repeated), 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / zooms  # sample a smaller central window: a zoom
    grid = F.affine_grid(theta, list(repeated.shape), align_corners=False)
    return F.grid_sample(repeated, grid, mode="bilinear", align_corners=False)


def aggregate(normalised_errors: torch.Tensor, aggregation: str) -> torch.Tensor:
    """One score per image from its (N, P) normalised errors: their mean
    (``"avg"``), maximum or minimum over the permutations. Lecture 5."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[aggregation](normalised_errors, dim=1)


class PuzzleAEDetector(Detector):
    """Puzzle-AE as a detector (see the module's docstring). Lecture 5.

    ``fit(x)`` holds out ``val_size`` of the normal images ``x`` (seeded) to
    measure each puzzle's mean error, unless ``x_val`` is given; it trains on
    the rest. ``anomaly_score(x)`` returns the aggregated normalised error (higher =
    more anomalous); ``anomaly_score(x, aggregation="max")`` reuses the fitted network
    with another aggregation. Fitted: ``model_`` (the U-Net, or the
    :class:`PuzzleGAN` for CPAE-G), ``normalisers_`` (P,), ``history_``.
    """

    def __init__(
        self,
        *,
        variant: str = QUICK["variant"],
        aggregation: str = QUICK["aggregation"],
        grid: int = QUICK["grid"],
        puzzles: str = QUICK["puzzles"],
        widths: tuple[int, ...] = tuple(QUICK["widths"]),
        eps: float = QUICK["eps"],
        epochs: int = QUICK["epochs"],
        batch_size: int = QUICK["batch_size"],
        lr: float = QUICK["lr"],
        weight_decay: float = QUICK["weight_decay"],
        val_size: int = QUICK["val_size"],
        shortcut: str = QUICK["shortcut"],
        lr_factor: float = QUICK["lr_factor"],
        lr_patience: int = QUICK["lr_patience"],
        zoomed_copies: int = QUICK["zoomed_copies"],
        score_puzzles: str = QUICK["score_puzzles"],
        networks: str = QUICK["networks"],
        seed: int = 0,
        device=None,
        progress: bool = True,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"unknown Puzzle-AE variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}; choose one of {', '.join(AGGREGATIONS)}")
        if puzzles not in PUZZLE_SETS:
            raise ValueError(f"unknown puzzle set {puzzles!r}; choose one of {', '.join(PUZZLE_SETS)}")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if shortcut not in SHORTCUT_PERTURBATIONS:
            raise ValueError(f"unknown shortcut {shortcut!r}; choose one of {', '.join(SHORTCUT_PERTURBATIONS)}")
        if score_puzzles not in SCORE_PUZZLES:
            raise ValueError(f"unknown score_puzzles {score_puzzles!r}; choose one of {', '.join(SCORE_PUZZLES)}")
        if not 0 < lr_factor < 1 or lr_patience < 0 or zoomed_copies < 0:
            raise ValueError(
                f"need 0 < lr_factor < 1, lr_patience >= 0 and zoomed_copies >= 0; "
                f"got {lr_factor}, {lr_patience}, {zoomed_copies}"
            )
        self.variant, self.aggregation, self.grid, self.puzzles = variant, aggregation, grid, puzzles
        self.widths, self.eps, self.epochs, self.batch_size = widths, eps, epochs, batch_size
        self.lr, self.weight_decay, self.val_size = lr, weight_decay, val_size
        self.shortcut, self.lr_factor, self.lr_patience = shortcut, lr_factor, lr_patience
        self.zoomed_copies, self.score_puzzles, self.networks = zoomed_copies, score_puzzles, check_build(networks)
        self.seed, self.device, self.progress = seed, device, progress

    def training_permutations(self) -> torch.Tensor:
        """The puzzles this detector trains with, one per row."""
        return puzzle_permutations(self.grid) if self.puzzles == "all" else swap_permutations(self.grid)

    def permutations(self) -> torch.Tensor:
        """The puzzles this detector scores with, one per row (``score_puzzles``)."""
        return puzzle_permutations(self.grid) if self.score_puzzles == "all" else self.training_permutations()

    def _hold_out(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 < self.val_size < len(x):
            raise ValueError(
                f"val_size={self.val_size} normal images cannot be held out of {len(x)}: choose 0 < val_size < "
                f"{len(x)}, or pass fit(x, x_val=...)"
            )
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed)).to(x.device)
        return x[order[self.val_size :]], x[order[: self.val_size]]

    def new_model(self, image_shape: tuple) -> torch.nn.Module:
        """A fresh, untrained U-Net (with its discriminator for CPAE-G) for images of shape (C, H, W)."""
        unet = UNet(channels=image_shape[0], widths=tuple(self.widths), build=self.networks)
        if self.variant != "cpae-g":
            return unet
        return PuzzleGAN(unet, make_discriminator(image_shape[0], image_shape[-1], self.networks))

    def _optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        unet = model.unet if isinstance(model, PuzzleGAN) else model
        groups = [{"params": unet.parameters(), "lr": self.lr, "weight_decay": self.weight_decay}]
        if isinstance(model, PuzzleGAN):  # the published discriminator's optimizer
            groups.append({"params": model.discriminator.parameters(), "lr": DISCRIMINATOR_LR, "betas": (0.5, 0.999)})
        return torch.optim.Adam(groups)

    def _scheduler(self, optimizer: torch.optim.Optimizer):
        """The published schedule: the U-Net's learning rate drops by ``lr_factor``
        after ``lr_patience`` epochs without a lower training loss; the
        discriminator's (CPAE-G) never drops (its floor is its own rate)."""
        floors = [0.0] + [DISCRIMINATOR_LR] * (len(optimizer.param_groups) - 1)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=self.lr_factor, patience=self.lr_patience, min_lr=floors
        )

    def fit(
        self, x: torch.Tensor, x_val: torch.Tensor | None = None, checkpoint=None, checkpoint_every: int = 1
    ) -> PuzzleAEDetector:
        """Train a fresh U-Net on normal images ``x`` (N, C, H, W) in [0, 1] and
        measure each puzzle's mean error on the normal images ``x_val`` (held
        out of ``x`` when not given). ``checkpoint``: as :meth:`AEDetector.fit`."""
        check_images(x, "training images")
        tile_size(tuple(x.shape), self.grid)  # a clear error if the grid does not divide the images
        perms = self.training_permutations()
        if x_val is None:
            x, x_val = self._hold_out(x)
        check_images(x_val, "validation images")
        self.device_ = pick_device(self.device)
        x, x_val = x.to(self.device_), x_val.to(self.device_)
        if self.zoomed_copies:
            x = torch.cat([x, zoomed_copies(x, self.zoomed_copies, seed=self.seed)])
        if self.variant == "cpae-g":
            batch_loss = puzzle_gan_loss(grid=self.grid, perms=perms, eps=self.eps, shortcut=self.shortcut)
        else:
            colour = self.variant == "cpae"
            batch_loss = puzzle_loss(grid=self.grid, perms=perms, colour=colour, eps=self.eps, shortcut=self.shortcut)
        with seeded(self.seed):
            self.model_ = self.new_model(tuple(x.shape[1:])).to(self.device_)
            optimizer = self._optimizer(self.model_)
            self.history_ = train(
                self.model_,
                x,
                batch_loss=batch_loss,
                epochs=self.epochs,
                batch_size=self.batch_size,
                seed=self.seed,
                optimizer=optimizer,
                scheduler=self._scheduler(optimizer),
                progress=self.progress,
                desc=f"Puzzle-AE ({self.variant})",
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                settings=self.checkpoint_settings(),
            )
        self.normalisers_ = permutation_errors(
            self.model_, x_val, self.permutations().to(self.device_), self.grid
        ).mean(0)
        return self

    def permutation_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, P) errors of every puzzle of every image of ``x``, each divided
        by that puzzle's mean error on the validation images."""
        self._check_fitted("normalisers_")
        x = check_images(x).to(self.device_)
        errors = permutation_errors(self.model_, x, self.permutations().to(self.device_), self.grid)
        return errors / self.normalisers_

    def anomaly_score(self, x: torch.Tensor, aggregation: str | None = None) -> np.ndarray:
        """The aggregated normalised error per image (``aggregation`` defaults to
        the detector's); higher = more anomalous."""
        return aggregate(self.permutation_scores(x), aggregation or self.aggregation).cpu().numpy()

    def differentiable_score(self, x: torch.Tensor, aggregation: str | None = None) -> torch.Tensor:
        """The whole score of :meth:`anomaly_score` (all puzzles, each error divided by
        its normaliser, then aggregated) as a tensor that gradients flow
        through, for attacks on the detector (Lecture 7); ``x`` is on the
        detector's device. All puzzles of all of ``x`` go through the network
        at once: pass a few images at a time."""
        self._check_fitted("normalisers_")
        self.model_.eval()
        errors = squared_errors_per_puzzle(self.model_, x, self.permutations().to(self.device_), self.grid)
        return aggregate(errors.flatten(2).mean(2) / self.normalisers_, aggregation or self.aggregation)

    def score_and_map(self, x: torch.Tensor, aggregation: str | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """:meth:`anomaly_score` and :meth:`anomaly_map` of ``x`` from one pass over the
        puzzles (it costs one scoring instead of two). Lecture 6."""
        self._check_fitted("normalisers_")
        x = check_images(x).to(self.device_)
        perms = self.permutations().to(self.device_)
        maps, errors = permutation_error_maps(self.model_, x, perms, self.grid, self.normalisers_)
        return aggregate(errors, aggregation or self.aggregation).cpu().numpy(), maps

    def anomaly_map(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, H, W) map of each image of ``x``: its per-pixel error averaged
        over the puzzles (see :func:`permutation_error_maps`). Lecture 6."""
        return self.score_and_map(x)[1]

    def reconstruct(self, x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        """The U-Net's reconstruction of ``x`` puzzled by ``perm`` (no perturbation)."""
        self._check_fitted("model_")
        self.model_.eval()
        puzzled = apply_permutation(check_images(x).to(self.device_), perm, self.grid)
        return predict_in_batches(self.model_, puzzled).clamp(0, 1)
