"""Training the one-class autoencoders of a table side by side, as one stacked model.

A table of the talk needs one detector per normal class: ten small MLPs for
MNIST. On a GPU each of them alone leaves most of the chip idle, so the course
runs them together: the weights of layer ``l`` of all ten models are stacked
into one tensor of shape (10, n_out, n_in), and one batched matrix product
(``torch.baddbmm``) applies all ten layers at once, each to its own mini-batch.

The models keep their own parameters (the stacking happens inside ``forward``),
so each one gets exactly the gradient, the Adam state and the mini-batches it
would get alone: training side by side gives the models that training one by
one gives, up to floating-point rounding.

On a CPU the matrix products of one model already keep the cores busy, and
stacking does not pay: ``benchmarks/batched_training.py`` measures both ways.
Introduced in Lecture 4 (reproducing the tables).
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from .arae import ARAEDetector
from .data import check_images
from .detectors import AEDetector, DAEDetector
from .models import MLPAutoencoder
from .training import BatchLoss, set_seed


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
            weight = torch.stack([layer.weight for layer in layers])            # (M, n_out, n_in)
            bias = torch.stack([layer.bias for layer in layers]).unsqueeze(1)   # (M, 1, n_out)
            x = torch.baddbmm(bias, x, weight.transpose(1, 2))
        else:  # activations have no weights: one serves all M models
            x = layers[0](x)
    return x


def train_stacked(models: list[MLPAutoencoder], xs: list[torch.Tensor], *, batch_loss: BatchLoss,
                  epochs: int, batch_size: int, lr: float = 1e-3, seed: int = 0, progress: bool = True,
                  desc: str = "stacked training") -> list[float]:
    """Train ``models[m]`` on ``xs[m]`` for every m, side by side, with Adam.

    Every model sees the mini-batches :func:`~anomaly_edu.training.train` would
    give it alone (its own order, drawn from a generator seeded with ``seed``)
    and takes as many steps per epoch. Models whose training set is used up
    wait for the others; a last mini-batch of a different size is run as a
    stack of its own. The loss of a stack of k models is multiplied by k, which
    gives every model the gradient of its own mean loss. Returns, for each
    epoch, the mean loss per image over all the models' images. Lecture 4.
    """
    if len(xs) != len(models):
        raise ValueError(f"{len(models)} models but {len(xs)} training sets were given")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")
    if any(len(x) == 0 for x in xs):
        raise ValueError("cannot train on an empty training set")
    # Adam keeps its state per parameter tensor, so one optimizer serves all the models,
    # and a model without a gradient in a step (it is waiting) is not updated at all.
    optimizer = torch.optim.Adam([p for model in models for p in model.parameters()], lr=lr)
    generators = [torch.Generator().manual_seed(seed) for _ in xs]
    n_batches = [(len(x) + batch_size - 1) // batch_size for x in xs]
    n_images = sum(len(x) for x in xs)
    history = []
    for model in models:
        model.train()
    bar = tqdm(total=epochs * max(n_batches), desc=desc, disable=not progress, unit="batch")
    for epoch in range(epochs):
        orders = [torch.randperm(len(x), generator=g).to(x.device) for x, g in zip(xs, generators)]
        total = 0.0
        for step in range(max(n_batches)):
            batches = {m: xs[m][orders[m][step * batch_size:(step + 1) * batch_size]]
                       for m in range(len(models)) if step < n_batches[m]}
            optimizer.zero_grad()  # sets gradients to None: waiting models stay as they are
            for group in _same_size_groups(batches):
                stack = StackedAutoencoders([models[m] for m in group])
                loss = batch_loss(stack, torch.stack([batches[m] for m in group]), None) * len(group)
                loss.backward()
                total += loss.item() * len(batches[group[0]]) / n_images
            optimizer.step()
            bar.update(1)
        history.append(total)
        bar.set_postfix(epoch=epoch + 1, loss=f"{history[-1]:.4g}")
    bar.close()
    for model in models:
        model.eval()
    return history


def _same_size_groups(batches: dict[int, torch.Tensor]) -> list[list[int]]:
    """The model indices of ``batches`` grouped by mini-batch size (stacking needs equal sizes)."""
    groups: dict[int, list[int]] = {}
    for m, batch in batches.items():
        groups.setdefault(len(batch), []).append(m)
    return list(groups.values())


def fit_stacked(detectors: list[AEDetector], train_sets: list[torch.Tensor], *,
                progress: bool = True) -> list[AEDetector]:
    """Fit ``detectors[m]`` on ``train_sets[m]`` for every m, side by side.

    The detectors must be unfitted AE, DAE or ARAE detectors of one type, with
    equal settings and no model of their own. Each model starts from the
    weights its own ``fit`` would draw (same seed), so every detector ends up as
    if it had been fitted alone. Lecture 4.
    """
    if not detectors or len(detectors) != len(train_sets):
        raise ValueError(f"need one training set per detector, got {len(detectors)} detectors "
                         f"and {len(train_sets)} training sets")
    first = detectors[0]
    if type(first) not in (AEDetector, DAEDetector, ARAEDetector):
        raise ValueError(f"fit_stacked stacks AE, DAE or ARAE detectors, not {type(first).__name__} "
                         "(the union variant's L-2 and spatial attacks work on one model at a time)")
    if any(type(d) is not type(first) or vars(d) != vars(first) for d in detectors):
        raise ValueError("fit_stacked needs detectors of one type with equal settings")
    if first.model is not None or first.history_:
        raise ValueError("fit_stacked trains fresh default models: pass unfitted detectors without a model")
    models = []
    for x in train_sets:
        check_images(x, "training images")
        set_seed(first.seed)  # the initial weights that detector.fit would draw
        models.append(first.default_model(tuple(x.shape[1:])).to(first.device))
    set_seed(first.seed)
    history = train_stacked(models, [x.to(first.device) for x in train_sets], batch_loss=first.batch_loss(),
                            epochs=first.epochs, batch_size=first.batch_size, lr=first.lr, seed=first.seed,
                            progress=progress, desc=f"{type(first).__name__} x {len(detectors)}")
    for detector, model in zip(detectors, models):
        detector.model, detector.history_ = model, list(history)
    return detectors
