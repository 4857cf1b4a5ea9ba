"""How fast is our PGD next to torchattacks' PGD? (Lecture 3)

Quickly trains a small MNIST CNN (seeded, one epoch on a subset of the training
set), then attacks the same test batch with ``anomaly_edu.attacks.pgd`` and
``torchattacks.PGD`` (L-inf, eps 0.3, alpha 0.01, 40 steps, no random start),
after a warm-up, several times each, alternating. Prints the times, the ratio
ours / torchattacks and the robust accuracy each attack leaves. Asserts nothing
about time.

    ANOMALY_EDU_DATA=/path/to/data python benchmarks/attack_speed.py [--device cuda]

Needs ``torchattacks==3.5.1`` (``pip install --no-deps torchattacks==3.5.1``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from anomaly_edu.attacks import pgd  # noqa: E402
from anomaly_edu.data import load_dataset  # noqa: E402
from anomaly_edu.training import accuracy, classification_loss, train  # noqa: E402


def small_cnn() -> nn.Module:
    """conv32 - conv64 - fc128 - fc10, with 2x max-pooling after each convolution."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def train_quickly(model: nn.Module, x: Tensor, y: Tensor, *, n: int, seed: int, batch: int = 128) -> None:
    """One epoch of the course's training loop (Adam, lr 1e-3) on a seeded random subset of n images."""
    subset = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].to(x.device)
    train(
        model,
        x[subset],
        y[subset],
        batch_loss=classification_loss,
        epochs=1,
        batch_size=batch,
        seed=seed,
        progress=False,
    )


def timed(run: Callable[[], Tensor], device: torch.device) -> tuple[float, Tensor]:
    """Wall time of run() in seconds (synchronising on CUDA) and its result."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--n", type=int, default=1000, help="test images attacked")
    parser.add_argument("--train-size", type=int, default=10000, help="training images (one epoch)")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        import torchattacks
    except ImportError:
        raise SystemExit("This benchmark needs torchattacks: pip install --no-deps torchattacks==3.5.1") from None

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = small_cnn().to(device)
    x_train, y_train = load_dataset("mnist", True, device=device, download=False)
    t_train, _ = timed(lambda: train_quickly(model, x_train, y_train, n=args.train_size, seed=args.seed), device)
    x_test, y_test = load_dataset("mnist", False, device=device, download=False)
    x, y = x_test[: args.n], y_test[: args.n]

    settings = dict(eps=args.eps, alpha=args.alpha, steps=args.steps)
    reference = torchattacks.PGD(model, **settings, random_start=False)
    attacks = {
        "ours": lambda: pgd(model, x, y, **settings, norm="linf"),
        "torchattacks": lambda: reference(x, y),
    }
    # Warm-up: a short run of each on part of the batch (allocator, kernels, threads).
    pgd(model, x[:100], y[:100], eps=args.eps, alpha=args.alpha, steps=2)
    torchattacks.PGD(model, eps=args.eps, alpha=args.alpha, steps=2, random_start=False)(x[:100], y[:100])

    times: dict[str, list[float]] = {name: [] for name in attacks}
    results: dict[str, Tensor] = {}
    for _ in range(args.repeats):  # alternate, so that drift affects both alike
        for name, run in attacks.items():
            seconds, results[name] = timed(run, device)
            times[name].append(seconds)

    print(
        f"device {device}, torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
        f"{torch.get_num_threads()} CPU threads"
    )
    print(
        f"model: conv32-conv64-fc128, trained 1 epoch on {args.train_size} images in {t_train:.1f} s; "
        f"clean accuracy on the {args.n} test images: {accuracy(model, x, y):.3f}"
    )
    print(
        f"PGD L-inf, eps {args.eps}, alpha {args.alpha}, {args.steps} steps, no random start, "
        f"{args.n} images, best / median of {args.repeats}:"
    )
    for name in attacks:
        print(
            f"  {name:>12}: {min(times[name]):7.3f} s / {statistics.median(times[name]):7.3f} s, "
            f"robust accuracy {accuracy(model, results[name], y):.3f}"
        )
    ratio = min(times["ours"]) / min(times["torchattacks"])
    print(
        f"  ratio ours / torchattacks (best): {ratio:.3f}  "
        f"(median: {statistics.median(times['ours']) / statistics.median(times['torchattacks']):.3f})"
    )
    print(
        f"  max |ours - torchattacks| over the adversarial images: "
        f"{(results['ours'] - results['torchattacks']).abs().max().item():.2e}"
    )


if __name__ == "__main__":
    main()
