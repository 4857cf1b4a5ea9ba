"""Training the one-class autoencoders of a table side by side, as one stacked model.

A table of the talk needs one detector per normal class: ten small MLPs for
MNIST. On a GPU each of them alone leaves most of the chip idle, so the course
runs them together: the weights of layer ``l`` of all ten models are stacked
into one tensor of shape (10, n_out, n_in), and one batched matrix product
(``torch.baddbmm``) applies all ten layers at once, each to its own mini-batch.

The models keep their own parameters (the stacking happens inside ``forward``),
so each one gets exactly the gradient, the Adam state and the mini-batches it
would get alone. What that gives:

- a loss that draws no random numbers (the AE's): side by side gives the
  models that one by one gives, up to floating-point rounding (tested);
- a loss that draws random numbers (the DAE's noise, ARAE's random attack
  start): one stacked draw replaces the M separate ones, so each model sees
  other, equally distributed noise. The models differ from one-by-one ones as
  two seeds do, no more (the tests compare AUCs).

On a CPU the matrix products of one model already keep the cores busy, and
stacking does not pay: ``benchmarks/batched_training.py`` measures both ways.
Introduced in Lecture 4 (reproducing the tables).
"""

from __future__ import annotations

__lecture__ = 4

import torch
from torch import nn

from ..data import check_images
from ..detectors import AEDetector
from ..models import MLPAutoencoder
from ..training import BatchLoss, check_budget, pick_device, run_epochs, seeded
from .methods import METHODS


class StackedAutoencoders(nn.Module):
    """Several :class:`~anomaly_edu.models.MLPAutoencoder` s of one architecture
    run as one model. Inputs have one more leading axis: (M, B, C, H, W), where
    ``x[m]`` is the mini-batch of model ``m``. ``encode``, ``decode`` and
    ``forward`` mirror the single model, so the course's batch losses (and ARAE's
    L-inf latent attack) work on it unchanged. Lecture 4."""

    def __init__(self, models: list[MLPAutoencoder]):
        super().__init__()
        if not models or not all(isinstance(m, MLPAutoencoder) for m in models):
            raise ValueError("StackedAutoencoders needs a non-empty list of MLPAutoencoder models")
        if len({(m.image_shape, m.activation, _layer_shapes(m)) for m in models}) > 1:
            raise ValueError("the autoencoders to stack must have the same image shape, layer sizes and activation")
        self.models = nn.ModuleList(models)
        self.image_shape = models[0].image_shape

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return _run_stacked([m.encoder for m in self.models], x.flatten(2))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return _run_stacked([m.decoder for m in self.models], z).view(*z.shape[:2], *self.image_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def _layer_shapes(model: MLPAutoencoder) -> tuple:
    return tuple(tuple(layer.weight.shape) for layer in model.modules() if isinstance(layer, nn.Linear))


def _run_stacked(sequentials: list[nn.Sequential], x: torch.Tensor) -> torch.Tensor:
    """Apply M Sequentials of Linear layers and activations to x (M, B, n), layer by layer."""
    for layers in zip(*sequentials):
        if isinstance(layers[0], nn.Linear):
            weight = torch.stack([layer.weight for layer in layers])  # (M, n_out, n_in)
            bias = torch.stack([layer.bias for layer in layers]).unsqueeze(1)  # (M, 1, n_out)
            x = torch.baddbmm(bias, x, weight.transpose(1, 2))
        else:  # activations have no weights: one serves all M models
            x = layers[0](x)
    return x


def train_stacked(
    models: list[MLPAutoencoder],
    xs: list[torch.Tensor],
    *,
    batch_loss: BatchLoss,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
    desc: str = "stacked training",
) -> list[float]:
    """Train ``models[m]`` on ``xs[m]`` for every m, side by side, with Adam, in
    the course's training loop (:func:`~anomaly_edu.training.run_epochs`).

    Every model sees the mini-batches :func:`~anomaly_edu.training.train` would
    give it alone (its own order, drawn from a generator seeded with ``seed``)
    and takes as many steps per epoch. Models whose training set is used up
    wait for the others; a last mini-batch of a different size is run as a
    stack of its own. The loss of a stack of k models is multiplied by k, which
    gives every model the gradient of its own mean loss. Returns, for each
    epoch, the sum of the models' mean batch losses, averaged over the epoch's
    steps. Lecture 4.
    """
    if len(xs) != len(models):
        raise ValueError(f"{len(models)} models but {len(xs)} training sets were given")
    check_budget(epochs, batch_size)
    if any(len(x) == 0 for x in xs):
        raise ValueError("cannot train on an empty training set")
    # Adam keeps its state per parameter tensor, so one optimizer serves all the models,
    # and a model without a gradient in a step (it is waiting) is not updated at all.
    optimizer = torch.optim.Adam([p for model in models for p in model.parameters()], lr=lr)
    generators = [torch.Generator().manual_seed(seed) for _ in xs]
    n_batches = [(len(x) + batch_size - 1) // batch_size for x in xs]

    def stacked_batches():  # one epoch: ({model: its batch}, no targets, weight)
        orders = [torch.randperm(len(x), generator=g).to(x.device) for x, g in zip(xs, generators)]
        for step in range(max(n_batches)):
            batches = {
                m: xs[m][orders[m][step * batch_size : (step + 1) * batch_size]]
                for m in range(len(models))
                if step < n_batches[m]
            }
            yield batches, None, 1  # every step counts once

    def stacked_loss(_, batches, y=None):
        total = 0.0
        for group in _same_size_groups(batches):
            stack = StackedAutoencoders([models[m] for m in group])
            total = total + batch_loss(stack, torch.stack([batches[m] for m in group]), None) * len(group)
        return total

    return run_epochs(
        nn.ModuleList(models),
        stacked_batches,
        batch_loss=stacked_loss,
        epochs=epochs,
        optimizer=optimizer,
        steps_per_epoch=max(n_batches),
        progress=progress,
        desc=desc,
    )


def _same_size_groups(batches: dict[int, torch.Tensor]) -> list[list[int]]:
    """The model indices of ``batches`` grouped by mini-batch size (stacking needs equal sizes)."""
    groups: dict[int, list[int]] = {}
    for m, batch in batches.items():
        groups.setdefault(len(batch), []).append(m)
    return list(groups.values())


def fit_stacked(
    detectors: list[AEDetector], train_sets: list[torch.Tensor], *, progress: bool = True
) -> list[AEDetector]:
    """Fit ``detectors[m]`` on ``train_sets[m]`` for every m, side by side.

    The detectors must be of one stackable method (``stackable`` in
    :mod:`anomaly_edu.experiments.methods`: AE, DAE, ARAE), with equal settings and no
    model of their own. Each model starts from the weights its own ``fit``
    would draw (same seed); see the module's docstring for what else holds.
    Lecture 4.
    """
    if not detectors or len(detectors) != len(train_sets):
        raise ValueError(
            f"need one training set per detector, got {len(detectors)} detectors and {len(train_sets)} training sets"
        )
    first = detectors[0]
    stackable = [m.detector for m in METHODS.values() if m.stackable]
    if type(first) not in stackable:
        names = ", ".join(m.name for m in METHODS.values() if m.stackable)
        raise ValueError(
            f"fit_stacked stacks the detectors of {names}, not {type(first).__name__} "
            "(see `stackable` in anomaly_edu.experiments.methods)"
        )
    if any(type(d) is not type(first) or d.get_params() != first.get_params() for d in detectors):
        raise ValueError("fit_stacked needs detectors of one type with equal settings")
    if first.model is not None:
        raise ValueError("fit_stacked trains fresh default models: pass detectors without a model of their own")
    device = first.device_ = pick_device(first.device)
    models = []
    for x in train_sets:
        check_images(x, "training images")
        with seeded(first.seed):  # the initial weights that detector.fit would draw
            models.append(first.new_model(tuple(x.shape[1:])).to(device))
    with seeded(first.seed):
        history = train_stacked(
            models,
            [x.to(device) for x in train_sets],
            batch_loss=first.batch_loss(),
            epochs=first.epochs,
            batch_size=first.batch_size,
            lr=first.lr,
            seed=first.seed,
            progress=progress,
            desc=f"{type(first).__name__} x {len(detectors)}",
        )
    history = [loss / len(models) for loss in history]  # each model's loss, on average
    for detector, model in zip(detectors, models):
        detector.model_, detector.history_, detector.device_ = model, list(history), device
    return detectors
