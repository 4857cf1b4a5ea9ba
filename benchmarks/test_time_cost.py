"""What does each detector cost per test image? (Lecture 5, section 6)

The talk counts test-time efficiency among a detector's properties. This
script fits every MNIST method of the quick profile on the normal digit and
times its ``anomaly_score`` on the test images (``--images``, 2,000 by default),
``--repeats`` times after a warm-up, and prints the median time per image and
its ratio to the plain autoencoder's, measured in the same run. The cost does
not depend on how long a model trained, so each deep model trains for one
epoch on ``--train`` images (500 by default): the numbers are costs, not
AUROCs. Asserts nothing. With ``--out FILE`` it writes them, with their
provenance (commit, device, versions, threads, wall time) and settings, to a
JSON file; Lecture 5 shows the stored one.

    ANOMALY_EDU_DATA=/path/to/data python benchmarks/test_time_cost.py [--out results/test_time_cost_digit8.json]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from anomaly_edu import data, profiles  # noqa: E402
from anomaly_edu.experiments import results  # noqa: E402
from anomaly_edu.experiments.methods import make_detector  # noqa: E402
from anomaly_edu.training import pick_device  # noqa: E402

METHODS = ["mean-image", "pca", "ae", "dae", "arae", "ocsvm", "dsvdd", "puzzle-ae", "gt"]
REFERENCE = "ae"


def seconds_per_image(detector, x: torch.Tensor, repeats: int, device) -> list[float]:
    """Each run's wall time of scoring ``x``, divided by the number of images."""
    detector.anomaly_score(x[:64])  # warm-up
    runs = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        detector.anomaly_score(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        runs.append((time.perf_counter() - start) / len(x))
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal-class", type=int, default=8)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated; must include ae")
    parser.add_argument("--images", type=int, default=2000, help="test images to score")
    parser.add_argument("--train", type=int, default=500, help="training images (one epoch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="write the figures and their provenance to this JSON file")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if REFERENCE not in methods:
        parser.error(f"--methods must include {REFERENCE}, the reference the ratios are measured against")
    if min(args.images, args.train, args.repeats) < 1:
        parser.error("--images, --train and --repeats must be at least 1")
    results.check_out_option(parser, args.out)  # fail now, not after the timing

    run_start = results.RunStart()
    device = pick_device(args.device)
    split = data.load_one_class("mnist", args.normal_class, protocol=2, device=device)
    x_test = split.x_test[: args.images]
    quick = profiles.get_profile("quick", "mnist")
    settings = {m: dict(quick[m], **({"epochs": 1} if "epochs" in quick[m] else {})) for m in methods}
    if "puzzle-ae" in settings:  # its validation images come out of the training images
        settings["puzzle-ae"]["val_size"] = min(settings["puzzle-ae"]["val_size"], args.train // 5)
    figures = {}
    for method in methods:
        detector = make_detector(method, settings, seed=0, device=device, progress=False)
        detector.fit(split.x_train[: args.train])
        runs = seconds_per_image(detector, x_test, args.repeats, device)
        figures[method] = {
            "ms_per_image": round(1000 * statistics.median(runs), 4),
            "runs_ms": [1000 * r for r in runs],
        }
    reference = figures[REFERENCE]["ms_per_image"]
    print(
        f"device: {device}, {torch.get_num_threads()} CPU threads; {len(x_test)} test images, median of {args.repeats}"
    )
    print(f"{'method':<12} {'ms per image':>13} {'x the AE':>9}")
    for method, numbers in figures.items():
        numbers["ratio_to_ae"] = round(numbers["ms_per_image"] / reference, 2)
        numbers["runs_ms"] = [round(r, 4) for r in numbers["runs_ms"]]
        print(f"{method:<12} {numbers['ms_per_image']:13.3f} {numbers['ratio_to_ae']:9.2f}")
    if args.out:
        used = {
            "benchmark": "test_time_cost",
            "normal_class": args.normal_class,
            "images": len(x_test),
            "train_images": args.train,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "methods": settings,
        }
        command = shlex.join(["python", "benchmarks/test_time_cost.py", *sys.argv[1:]])
        record = {"benchmark": "test_time_cost", "command": command, "results": figures}
        results.write_with_provenance(record, args.out, start=run_start, settings=used, device=device)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
