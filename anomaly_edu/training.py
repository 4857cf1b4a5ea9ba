"""One training loop for the whole course, and the batch losses it trains with.

The loop knows nothing about autoencoders or attacks: it shuffles tensors that
already live on the device, cuts them into mini-batches and minimises
``batch_loss(model, x, y)``. Lecture 1 plugs in the reconstruction and denoising
losses; Lecture 3 plugs in adversarial training; Lecture 4 the ARAE loss.
Introduced in Lecture 1.
"""

from __future__ import annotations

__lecture__ = 1

import contextlib
import json
import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.files import atomic_file

BatchLoss = Callable[[torch.nn.Module, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


# Weights smaller than this cannot change any output: added to activations of order 1, they are
# far below float32's resolution. See zero_dead_weights.
DEAD_WEIGHT = 1e-30


@torch.no_grad()
def zero_dead_weights(model: torch.nn.Module) -> int:
    """Set to zero every parameter of ``model`` smaller than ``DEAD_WEIGHT`` in
    magnitude; how many there were. The training loop calls it after every
    epoch. Lecture 1.

    Weight decay shrinks the weights of a dead ReLU unit towards zero without
    end. Products with such tiny weights are "denormal" floats, which x86 CPUs
    compute many times slower than normal ones. Training runs with denormals
    flushed to zero (:func:`flushed_denormals`), but scoring and attacks do
    not: a trained U-Net with weights below 1e-30 took three times as long per
    step. Zeroed, the weights stay at zero (a dead unit gets no gradient) and
    change no output.
    """
    count = 0
    for parameter in model.parameters():
        dead = (parameter.abs() < DEAD_WEIGHT) & (parameter != 0)
        count += int(dead.sum())
        parameter.masked_fill_(dead, 0.0)
    return count


def denormals_are_flushed() -> bool:
    """Whether the CPU now rounds denormal floats to zero (see :func:`flushed_denormals`). Lecture 1."""
    return (torch.tensor([1e-37]) * 0.01).item() == 0.0  # 1e-39 is a denormal float32


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Inside the block, the CPU rounds denormal floats (below about 1e-38) to
    zero; after it, the setting is what it was. The training loop runs inside
    one. Lecture 1.

    Within an epoch, weight decay shrinks thousands of dead ReLU units'
    weights through the denormal range, where x86 CPUs compute many times
    slower: without the flush, the quick Puzzle-AE's fifth and sixth epochs
    took twice as long as its first. It is not switched on for the whole
    process: Python's and NumPy's own floats (and libraries such as hypothesis)
    need denormals, so it lasts only as long as training.
    """
    was_on = denormals_are_flushed()
    torch.set_flush_denormal(True)  # False (and nothing changes) on a CPU that cannot
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every GPU), so that a run repeats. Lecture 1.

    On a CPU that is enough: same seed, same numbers. On a GPU it also asks cuDNN
    for deterministic convolutions, but some GPU kernels (for example the
    atomic additions behind ``index_add_`` and some backward passes) still sum
    in a varying order, so GPU runs agree only up to rounding; call
    ``torch.use_deterministic_algorithms(True)`` to make torch refuse those
    kernels (it slows training down).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with every random generator seeded with ``seed`` (see
    :func:`set_seed`), then give Python, NumPy and torch back the state they had
    before: the caller's random numbers are not disturbed. ``fit`` uses it.
    Lecture 1."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        try:
            set_seed(seed)
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else the GPU when there is one, else the CPU. Lecture 1."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def train(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    batch_loss: BatchLoss,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    progress: bool = True,
    desc: str = "training",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1,
    settings: dict | None = None,
) -> list[float]:
    """Train ``model`` on ``x`` (and targets ``y``) with Adam (or ``optimizer``)
    by minimising ``batch_loss(model, x_batch, y_batch)``; return the mean loss
    of each epoch. A ``scheduler`` (e.g. ``ReduceLROnPlateau``) is stepped
    after every epoch with that epoch's mean loss.

    ``x`` (and ``y``) should already be on the model's device. The shuffling is
    drawn from its own generator seeded with ``seed``. With a ``checkpoint``
    file, training can be interrupted and resumed (see :func:`run_epochs`);
    ``settings`` (e.g. a detector's) are stored with it, beside this function's
    own. Lecture 1.
    """
    check_budget(epochs, batch_size)
    if y is not None and len(y) != len(x):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if len(x) == 0:
        raise ValueError("cannot train on an empty training set")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)

    def shuffled_batches():  # one epoch: (x batch, y batch, number of images)
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], None if y is None else y[idx], len(idx)

    return run_epochs(
        model,
        shuffled_batches,
        batch_loss=batch_loss,
        epochs=epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        steps_per_epoch=(len(x) + batch_size - 1) // batch_size,
        progress=progress,
        desc=desc,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        settings={  # not the epochs: a checkpoint of 10 epochs goes on into a training of 20
            **dict(batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed),
            "training_set_shape": list(x.shape),
            **(settings or {}),
        },
        generators=[generator],
    )


def run_epochs(
    model: torch.nn.Module,
    epoch_batches: Callable[[], Iterable],
    *,
    batch_loss: BatchLoss,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    scheduler=None,
    progress: bool = True,
    desc: str = "training",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 1,
    settings: dict | None = None,
    generators: Sequence[torch.Generator] = (),
) -> list[float]:
    """The loop inside :func:`train`: for each epoch, for each ``(x_batch,
    y_batch, weight)`` that ``epoch_batches()`` yields, one optimizer step on
    ``batch_loss(model, x_batch, y_batch)``. Returns each epoch's mean loss,
    weighted by ``weight`` (the number of images for :func:`train`).

    With a ``checkpoint`` file, every ``checkpoint_every`` epochs (and after
    the last) it saves what the rest of training depends on: the weights, the
    optimizer's state, the epochs done, the losses so far, and the state of
    every random generator (torch's, CUDA's, NumPy's, Python's and the
    caller's ``generators``, e.g. the one ``epoch_batches`` shuffles with),
    with the ``settings`` it was trained with. If the file exists when training
    starts, training goes on after its last epoch: on a CPU, an interrupted and
    resumed run ends exactly where an uninterrupted one does. A run can also
    be extended: asked for more epochs than its checkpoint holds, it trains on
    from there (the budget curves of Lecture 4 do). A checkpoint of other
    settings is refused. ``scheduler.step(loss)`` runs after every epoch
    (its state is in the checkpoint too). Lecture 1 (Lecture 4's stacked
    training feeds it batches of several models; Lecture 5 adds the scheduler)."""
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
    settings = _plain(settings or {})
    history: list[float] = []
    if checkpoint is not None and Path(checkpoint).exists():
        history = load_checkpoint(checkpoint, model, optimizer, settings, generators, scheduler)
        if len(history) > epochs:
            raise ValueError(
                f"checkpoint {checkpoint} has {len(history)} epochs done, more than the {epochs} asked for"
            )
    done = len(history)
    model.train()
    bar = tqdm(
        total=epochs * steps_per_epoch, initial=done * steps_per_epoch, desc=desc, disable=not progress, unit="batch"
    )
    with flushed_denormals():  # see flushed_denormals: weight decay makes denormal weights
        for epoch in range(done, epochs):
            # The epoch's loss is summed on the device and read once, after the epoch: reading it
            # every batch (loss.item()) would make the CPU wait for the GPU each time. In float64,
            # the sum is exactly the one Python's floats would give.
            total, weights = 0.0, 0.0
            for x_batch, y_batch, weight in epoch_batches():
                loss = batch_loss(model, x_batch, y_batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, weights = total + loss.detach().double() * weight, weights + weight
                bar.update(1)
            history.append(float(total) / weights)
            zero_dead_weights(model)
            if scheduler is not None:
                scheduler.step(history[-1])
            bar.set_postfix(epoch=epoch + 1, loss=f"{history[-1]:.4g}")
            if checkpoint is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
                save_checkpoint(checkpoint, model, optimizer, history, settings, generators, scheduler)
    bar.close()
    model.eval()
    return history


def save_checkpoint(path, model, optimizer, history, settings, generators=(), scheduler=None) -> None:
    """Write a checkpoint of :func:`run_epochs` to ``path`` atomically (a
    temporary file in the same folder, then renamed), so that an interruption
    never leaves half a file. Lecture 1."""
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "history": list(history),
        "settings": settings,
        "rng": {  # in types that torch.load(weights_only=True) reads: tensors, lists, numbers
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]],
            "python": [python_state[0], list(python_state[1]), python_state[2]],
            "generators": [g.get_state() for g in generators],
        },
    }
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path, model, optimizer, settings, generators=(), scheduler=None) -> list[float]:
    """Restore what :func:`save_checkpoint` wrote into ``model``, ``optimizer``,
    ``scheduler``, the random generators and ``generators``; return the losses so far. A
    checkpoint written with other ``settings`` is refused. Lecture 1."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    stored = state["settings"]
    differing = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
    if differing:
        details = "; ".join(f"{k}: {stored.get(k)!r} there, {settings.get(k)!r} now" for k in differing)
        raise ValueError(
            f"checkpoint {path} was written with other settings ({details}); "
            "delete it to start afresh, or run with the settings it was written with"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    name, key, *rest = rng["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))
    version, python_key, gauss = rng["python"]
    random.setstate((version, tuple(python_key), gauss))
    for generator, generator_state in zip(generators, rng["generators"]):
        generator.set_state(generator_state)
    return list(state["history"])


def _plain(settings: dict) -> dict:
    """``settings`` as JSON would give them back (tuples as lists, other objects
    as text), so that stored and current settings compare equal."""
    return json.loads(json.dumps(settings, default=str))


def check_budget(epochs: int, batch_size: int) -> None:
    """Raise a clear error unless ``epochs`` and ``batch_size`` are at least 1. Lecture 1."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be at least 1, got {epochs} and {batch_size}")


# ---------------------------------------------------------------- batch losses


def reconstruction_loss(model: torch.nn.Module, x: torch.Tensor, y=None) -> torch.Tensor:
    """Mean squared error between the input and its reconstruction. Lecture 1."""
    return F.mse_loss(model(x), x)


def denoising_loss(noise_std: float) -> BatchLoss:
    """A batch loss that reconstructs the clean image from a copy with Gaussian
    noise of standard deviation ``noise_std`` (clipped to [0, 1]). Lecture 1."""
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")

    def loss(model, x, y=None):
        noisy = (x + noise_std * torch.randn_like(x)).clamp(0, 1)
        return F.mse_loss(model(noisy), x)

    return loss


def classification_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a classifier's logits. Lecture 2."""
    return F.cross_entropy(model(x), y)


@torch.no_grad()
def predict_in_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int = 1024
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` in chunks (to bound memory) and concatenate. Lecture 1."""
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``. Lecture 2."""
    model.eval()
    predictions = predict_in_batches(lambda b: model(b).argmax(1), x, batch_size)
    return (predictions == y).float().mean().item()
