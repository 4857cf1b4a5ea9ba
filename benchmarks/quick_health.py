"""Does every quick-profile method learn something? One MNIST class, the whole test set.

    python benchmarks/quick_health.py
    python benchmarks/quick_health.py --methods ae,arae --out results/quick_health.json

Trains every method of the registry that the lectures train on MNIST, with the
quick profile's settings (what the notebooks run live), on one normal class
(default 8) under protocol 2, and prints for each:

- its test AUROC, and the margin over the ``mean-image`` baseline (the distance
  to the average training image: what a network that has learned nothing but
  the average draws); the ``pca`` baseline is printed beside it;
- its **output spread**: how much its outputs differ from one test image to the
  next (the standard deviation over 500 test images, averaged over pixels for
  a reconstruction, over dimensions for a code, of the score otherwise). A
  detector whose spread is 0 is a constant function, whatever its AUROC says;
- for Puzzle-AE, its mean error on the held-out normal images under its worst
  puzzle, beside the error of answering every puzzle with the mean image: a
  network that has learned the puzzle is below it on every puzzle;
- the wall time of training and scoring.

A method is "healthy" when it beats ``mean-image`` by ``--margin`` points (3)
and its spread is at least ``CONSTANT_SPREAD``; the benchmark prints the verdict, selects nothing and
asserts nothing (tests assert correctness; this measures quality). With
``--out FILE`` it writes the figures with their provenance (commit, device,
versions, wall time, settings).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anomaly_edu import data, profiles  # noqa: E402
from anomaly_edu.experiments import methods, results, tables  # noqa: E402
from anomaly_edu.metrics import auroc  # noqa: E402
from anomaly_edu.training import pick_device, predict_in_batches  # noqa: E402

BASELINES = ["mean-image", "pca"]
# the methods the lectures train on MNIST (Lecture 6's map autoencoders take 64x64 images)
DEEP_METHODS = ["ae", "dae", "dsvdd", "arae", "arae-union", "puzzle-ae", "gt"]
OTHERS = ["ocsvm"]
SPREAD_IMAGES = 500
# below this spread a detector's outputs do not depend on its input: a constant function
# (the untuned quick ARAE's reconstructions differ by 1e-5 from one digit to another)
CONSTANT_SPREAD = 1e-3


def output_spread(detector, x: torch.Tensor) -> tuple[float, str]:
    """How much the detector's output varies across the images ``x``, and what
    that output is: a reconstruction, a code or a score."""
    if hasattr(detector, "permutations") and hasattr(detector, "reconstruct"):  # Puzzle-AE
        outputs, kind = detector.reconstruct(x, detector.permutations()[0]), "reconstruction of a puzzle"
    elif hasattr(detector, "reconstruct"):
        outputs, kind = detector.reconstruct(x), "reconstruction"
    elif hasattr(detector, "net_"):  # Deep SVDD: the code
        outputs, kind = predict_in_batches(detector.net_, detector._preprocess(x)), "code"
    else:
        outputs, kind = torch.as_tensor(detector.anomaly_score(x)), "score"
    return outputs.flatten(1).std(0).mean().item() if outputs.ndim > 1 else outputs.std().item(), kind


def puzzle_health(detector, x_train: torch.Tensor) -> dict:
    """Puzzle-AE's mean error per puzzle on its held-out normal images (its
    normalisers) against the mean image's error (the same for every puzzle)."""
    mean_image = x_train.mean(0)
    mean_image_error = ((x_train - mean_image) ** 2).mean().item()
    errors = detector.normalisers_.cpu()
    return {
        "worst_puzzle_error": round(errors.max().item(), 5),
        "best_puzzle_error": round(errors.min().item(), 5),
        "mean_image_error": round(mean_image_error, 5),
        "puzzles_below_mean_image": int((errors < mean_image_error).sum()),
        "puzzles": len(errors),
        "final_training_loss": round(detector.history_[-1], 5),
    }


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options this benchmark shares with budget_curve.py: --set, the smoke-run
    sizes, the device and the seed."""
    parser.add_argument("--set", action="append", default=[], help="METHOD.KEY=VALUE: change a quick setting")
    parser.add_argument("--max-train", type=int, default=None, help="the first N training images only (a smoke run)")
    parser.add_argument("--max-test", type=int, default=None, help="N random test images only (a smoke run)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)


def smoke_split(split, args):
    """The split, cut to ``--max-train`` training and ``--max-test`` random test images."""
    if args.max_test is not None:
        pick = torch.randperm(len(split.x_test), generator=torch.Generator().manual_seed(0))[: args.max_test]
        pick = pick.to(split.x_test.device)
        split = dataclasses.replace(split, x_test=split.x_test[pick], y_test=split.y_test[pick])
    return dataclasses.replace(split, x_train=split.x_train[: args.max_train])


def evaluate(name: str, settings: dict, split, device, seed: int) -> dict:
    """Train and score one method; its figures."""
    started = time.perf_counter()
    detector = methods.make_detector(name, settings, seed=seed, device=device, progress=False)
    detector.fit(split.x_train)
    scores = detector.anomaly_score(split.x_test)
    figures = {"auroc": round(100 * auroc(split.y_test.cpu().numpy(), scores), 2)}
    figures["seconds"] = round(time.perf_counter() - started, 1)
    spread, kind = output_spread(detector, split.x_test[:SPREAD_IMAGES])
    figures.update(spread=round(spread, 5), spread_of=kind)
    if name == "puzzle-ae":
        figures["puzzle"] = puzzle_health(detector, split.x_train)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal-class", type=int, default=8)
    parser.add_argument("--methods", default=",".join(DEEP_METHODS + OTHERS), help="comma-separated method names")
    parser.add_argument("--margin", type=float, default=3.0, help="AUROC points over mean-image to count as healthy")
    add_run_arguments(parser)
    parser.add_argument("--out", default=None, help="write the figures and their provenance to this JSON file")
    args = parser.parse_args()
    names = [name for name in args.methods.split(",") if name]
    methods.check_methods(names + BASELINES, image_shape=(1, 28, 28), where="MNIST")
    results.check_out_option(parser, args.out)  # fail now, not after the training

    try:  # --set follows the rules of `python -m anomaly_edu reproduce --set`
        settings = tables.apply_changes(profiles.get_profile("quick", "mnist"), tables.parse_changes(args.set))
    except ValueError as err:
        parser.error(str(err))
    run_start = results.RunStart()
    device = pick_device(args.device)
    split = smoke_split(data.load_one_class("mnist", args.normal_class, protocol=2, device=device), args)
    print(f"normal class {args.normal_class}: {split.describe()}; {device}, {torch.get_num_threads()} thread(s)")

    figures = {}
    print(f"\n{'method':<12}{'AUROC':>7}{'margin':>8}{'spread':>10}  {'of':<27}{'seconds':>8}  verdict")
    for name in BASELINES + names:  # a line as soon as each method is done: the training takes minutes
        row = figures[name] = evaluate(name, settings, split, device, args.seed)
        row["margin"] = round(row["auroc"] - figures["mean-image"]["auroc"], 2)
        if name not in BASELINES:
            row["healthy"] = row["margin"] >= args.margin and row["spread"] >= CONSTANT_SPREAD
        verdict = {True: "healthy", False: "NOT healthy"}.get(row.get("healthy"), "baseline")
        print(
            f"{name:<12}{row['auroc']:7.2f}{row['margin']:+8.2f}{row['spread']:10.4f}  "
            f"{row['spread_of']:<27}{row['seconds']:8.1f}  {verdict}",
            flush=True,
        )
    if "puzzle-ae" in figures:
        p = figures["puzzle-ae"]["puzzle"]
        print(
            f"\nPuzzle-AE: mean error per puzzle on held-out normal images {p['best_puzzle_error']:.4f} to "
            f"{p['worst_puzzle_error']:.4f}; answering with the mean image: {p['mean_image_error']:.4f}; "
            f"{p['puzzles_below_mean_image']} of {p['puzzles']} puzzles below it"
        )
    if args.out:
        used = {name: settings[name] for name in BASELINES + names}
        run = {
            "normal_class": args.normal_class,
            "protocol": 2,
            "profile": "quick",
            "seed": args.seed,
            "max_train": args.max_train,
            "max_test": args.max_test,
            "n_train": len(split.x_train),
            "n_test": len(split.x_test),
            "methods": used,
        }
        record = {
            "benchmark": "quick_health",
            "command": shlex.join(["python", "benchmarks/quick_health.py", *sys.argv[1:]]),
            "margin_required": args.margin,
            "results": figures,
        }
        results.write_with_provenance(record, args.out, start=run_start, settings=run, device=device)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
