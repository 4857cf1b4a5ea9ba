"""How long the full-profile MNIST Table 1 takes: seconds per epoch of its stacked models, and a projection.

    python benchmarks/full_table_speed.py                        # on the GPU if there is one
    python benchmarks/full_table_speed.py --device cuda --epochs 5
    python benchmarks/full_table_speed.py --max-train 256 --max-test 2000 --device cpu   # reduced: under a minute

The full table trains, for each of AE, DAE and ARAE, one detector per normal
class of MNIST (protocol 2) with the full profile's settings (AE and DAE 100
epochs, ARAE 1,600 epochs with a 40-step attack; batches of 256). On a GPU,
``reproduce`` trains the ten models of a method side by side as one stacked
model (``anomaly_edu.experiments.batched.fit_stacked``); this benchmark times that same
call. Per method: a warm-up fit of one epoch (not timed), a timed fit of one
epoch and a timed fit of 1 + ``--epochs`` epochs; their difference, divided by
``--epochs``, is the time of one epoch without the setting up of a fit (when the
clock's noise hides that difference, the longer fit's time per epoch, setting up
included). Then it
times scoring the test set once with the ten detectors (``reproduce.evaluate``).

It projects the whole table, the sum over the methods of full-profile epochs
times seconds per epoch, plus setting up, scoring and loading MNIST, and compares it with the
goal: at most 15 minutes on one data-centre GPU. As a reference it times one AE
alone, on the first class, the same way. For a smoke run, ``--max-train N``
trains on at most N images per class and ``--max-test N`` scores at most N test
images; the projection then scales the seconds per epoch (and of scoring) by
the full over the used number of images, and says so. It asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anomaly_edu import profiles  # noqa: E402
from anomaly_edu.data import OneClassSplit  # noqa: E402
from anomaly_edu.experiments.batched import fit_stacked  # noqa: E402
from anomaly_edu.experiments.methods import make_detector  # noqa: E402
from anomaly_edu.experiments.reproduce import evaluate, table_splits  # noqa: E402
from anomaly_edu.training import pick_device  # noqa: E402

METHODS = ["ae", "dae", "arae"]  # the stackable methods of the MNIST table
GOAL_MINUTES = 15  # the whole full-profile table on one data-centre GPU


def synchronize(device: torch.device) -> None:
    """Wait for the GPU to finish its queued work (so that the clock measures it); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], object], device: torch.device) -> tuple[float, object]:
    """The seconds that ``run()`` takes, the GPU's queued work included, and what it returned."""
    synchronize(device)
    start = time.perf_counter()
    result = run()
    synchronize(device)
    return time.perf_counter() - start, result


def seconds_per_epoch(fit: Callable[[int], object], epochs: int, device: torch.device) -> tuple[float, float, object]:
    """Time ``fit(n_epochs)`` after a warm-up fit. Returns the seconds per epoch, the
    seconds of setting up one fit, and what the longer timed fit returned."""
    fit(1)  # warm-up: kernels loaded, memory allocated; not timed
    short, _ = timed(partial(fit, 1), device)
    long, fitted = timed(partial(fit, 1 + epochs), device)
    per_epoch = (long - short) / epochs
    if per_epoch <= 0:  # the clock's noise is larger than an epoch (a tiny run on a busy machine):
        return long / (1 + epochs), 0.0, fitted  # count the setting up as training time, never below 0
    return per_epoch, max(short - per_epoch, 0.0), fitted


def score_all(detectors: list, splits: list) -> None:
    """Score each split's test set with its detector and compute the AUROC, as ``reproduce`` does."""
    for detector, split in zip(detectors, splits):
        evaluate(detector, split, protocol=2)


def fewer_images(split: OneClassSplit, max_train: int | None, max_test: int | None) -> OneClassSplit:
    """The split with at most ``max_train`` training and ``max_test`` test images (None: all)."""
    return replace(
        split,
        x_train=split.x_train[:max_train],
        x_test=split.x_test[:max_test],
        y_test=split.y_test[:max_test],
        test_classes=split.test_classes[:max_test],
    )


def with_epochs(settings: dict, method: str, epochs: int) -> dict:
    """A copy of the profile ``settings`` in which ``method`` trains for ``epochs`` epochs."""
    return {**settings, method: {**settings[method], "epochs": epochs}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: the GPU if there is one")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per method (after a warm-up)")
    parser.add_argument("--max-train", type=int, default=None, help="at most this many training images per class")
    parser.add_argument("--max-test", type=int, default=None, help="score at most this many test images")
    args = parser.parse_args()
    if min(args.epochs, args.max_train or 1, args.max_test or 1) < 1:
        parser.error("--epochs, --max-train and --max-test must be at least 1")

    device = pick_device(args.device)
    settings = profiles.get_profile("full", "mnist")
    load_s, cases = timed(partial(table_splits, "mnist", list(range(10)), device=device), device)
    full = list(cases.values())
    splits = [fewer_images(split, args.max_train, args.max_test) for split in full]
    train_sets = [split.x_train for split in splits]
    n_train, n_train_full = sum(len(s.x_train) for s in splits), sum(len(s.x_train) for s in full)
    scale, test_scale = n_train_full / n_train, len(full[0].x_test) / len(splits[0].x_test)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"Full-profile MNIST Table 1, ten stacked one-class models per method, on {device} ({name})")
    print(f"torch {torch.__version__}; {args.epochs} timed epoch(s) per method after a warm-up")
    if scale > 1 or test_scale > 1:
        print(
            f"REDUCED RUN: {n_train} of {n_train_full} training images, {len(splits[0].x_test)} of "
            f"{len(full[0].x_test)} test images; the projection scales seconds per epoch by full/used "
            f"training images ({scale:.1f}x) and scoring by full/used test images ({test_scale:.1f}x)"
        )

    def fit_ten(method: str, epochs: int) -> list:  # the call reproduce makes for a stacked method
        changed = with_epochs(settings, method, epochs)
        return fit_stacked(
            [make_detector(method, changed, device=device, progress=False) for _ in splits], train_sets, progress=False
        )

    print()
    total_s, stacked = load_s, {}
    for method in METHODS:
        per_epoch, setup, detectors = seconds_per_epoch(partial(fit_ten, method), args.epochs, device)
        stacked[method] = per_epoch
        evaluate(detectors[0], splits[0], protocol=2)  # warm-up of the scoring kernels
        score_s, _ = timed(partial(score_all, detectors, splits), device)
        full_epochs = settings[method]["epochs"]
        method_s = full_epochs * per_epoch * scale + setup + score_s * test_scale
        total_s += method_s
        print(
            f"{method:5s} ten stacked models: {per_epoch:.4f} s per epoch "
            f"(setting up a fit {setup:.2f} s; scoring the test set {score_s:.2f} s; {settings[method]})"
        )
        print(
            f"      full profile: {full_epochs} epochs x {per_epoch * scale:.4f} s + setting up {setup:.2f} s "
            f"+ scoring {score_s * test_scale:.2f} s = {method_s / 60:.2f} min"
            f"{' (scaled)' if scale * test_scale > 1 else ''}"
        )

    def fit_one(epochs: int):  # one AE alone, as reproduce trains it without stacking
        changed = with_epochs(settings, "ae", epochs)
        return make_detector("ae", changed, device=device, progress=False).fit(train_sets[0])

    single, _, _ = seconds_per_epoch(fit_one, args.epochs, device)
    print(
        f"\nreference: one AE alone (class 0, not stacked): {single:.4f} s per epoch; "
        f"ten stacked AEs / one AE = {stacked['ae'] / single:.2f}"
    )

    minutes = total_s / 60
    print(f"\nloading MNIST: {load_s:.1f} s")
    print(
        f"projected total of the full-profile Table 1 (AE, DAE, ARAE): {minutes:.1f} min = {minutes / 60:.2f} h"
        f"{' (scaled from a reduced run)' if scale * test_scale > 1 else ''}"
    )
    verdict = "meets it" if minutes <= GOAL_MINUTES else f"misses it ({minutes / GOAL_MINUTES:.1f}x too long)"
    where = "" if device.type == "cuda" else f" (this run is on {device.type}, not a GPU)"
    print(f"goal: at most {GOAL_MINUTES} min on one data-centre GPU; this projection {verdict}{where}")


if __name__ == "__main__":
    main()
