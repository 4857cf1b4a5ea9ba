"""The budget curve: how each method's AUROC grows with its epochs, on one MNIST class.

    python benchmarks/budget_curve.py --methods ae,dae,arae --at 5,10,20,50,100,200,300,400 \
        --checkpoints budget_checkpoints --out results/budget_curve_digit8.json

Trains each method with the quick profile's settings (only the number of epochs
changes) on one normal class (default 8) under protocol 2, and stops at every
epoch count of ``--at`` to score the whole test set: the AUROC, the margin over
the ``mean-image`` baseline (printed first, with ``pca``), the output spread of
``quick_health.py`` (below 0.001, a constant function) and the training time so far.

Each method trains once: the run to 20 epochs goes on from the checkpoint of the
run to 10 (``--checkpoints`` folder, one file per method). Every finished point
is recorded in that folder as soon as it is done, so a run that is stopped
(Ctrl-C, a lost machine) goes on where it stopped when the same command is run
again; a folder of another run is refused. With ``--out`` the curve so far is
written, with its provenance, after every point. It selects nothing and asserts
nothing: Lecture 4 draws the curve, and the course picks budgets from it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from quick_health import BASELINES, add_run_arguments, evaluate, output_spread, smoke_split  # noqa: E402

from anomaly_edu import data, profiles  # noqa: E402
from anomaly_edu.experiments import checkpoints, methods, results, tables  # noqa: E402
from anomaly_edu.metrics import auroc  # noqa: E402
from anomaly_edu.training import pick_device  # noqa: E402


def parse_points(text: str) -> list[int]:
    """ "5,10,20" -> [5, 10, 20]: increasing epoch counts of at least 1."""
    try:
        points = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--at takes increasing epoch counts such as 5,10,20; got {text!r}") from None
    if not points or points[0] < 1 or any(b <= a for a, b in zip(points, points[1:])):
        raise ValueError(f"--at takes increasing epoch counts of at least 1, such as 5,10,20; got {text!r}")
    return points


def train_to(name: str, settings: dict, epochs: int, split, folder: Path, device, seed: int) -> dict:
    """Train ``name`` to ``epochs`` epochs, going on from its checkpoint in
    ``folder``; its figures at that point."""
    settings = {name: {**settings[name], "epochs": epochs}}
    detector = methods.make_detector(name, settings, seed=seed, device=device, progress=True)
    started = time.perf_counter()
    checkpoints.fit_with_checkpoint(detector, split, folder, name, checkpoint_every=5)
    scores = detector.anomaly_score(split.x_test)
    spread, kind = output_spread(detector, split.x_test[:500])
    return {
        "epochs": epochs,
        "auroc": round(100 * auroc(split.y_test.cpu().numpy(), scores), 2),
        "spread": round(spread, 5),
        "spread_of": kind,
        "final_training_loss": round(detector.history_[-1], 6),
        "seconds": round(time.perf_counter() - started, 1),  # this step only
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal-class", type=int, default=8)
    parser.add_argument("--methods", default="ae,dae,arae", help="comma-separated method names")
    parser.add_argument("--at", default="5,10,20,50,100", help="the epoch counts to score at, increasing")
    parser.add_argument("--checkpoints", required=True, help="folder for the checkpoints and the finished points")
    add_run_arguments(parser)  # --set, --max-train, --max-test, --device, --seed
    parser.add_argument("--out", default=None, help="write the curve and its provenance to this JSON file")
    args = parser.parse_args()
    names = [name for name in args.methods.split(",") if name]
    try:
        points = parse_points(args.at)
        methods.check_methods(names, image_shape=(1, 28, 28), where="MNIST")
        settings = tables.apply_changes(profiles.get_profile("quick", "mnist"), tables.parse_changes(args.set))
    except ValueError as err:
        parser.error(str(err))
    results.check_out_option(parser, args.out)  # fail now, not after the training

    folder = Path(args.checkpoints)
    run = {
        "benchmark": "budget_curve",
        "normal_class": args.normal_class,
        "seed": args.seed,
        "max_train": args.max_train,
        "max_test": args.max_test,
        "methods": {name: {k: v for k, v in settings[name].items() if k != "epochs"} for name in names},
    }
    folder.mkdir(parents=True, exist_ok=True)
    try:
        finished = checkpoints.open_checkpoints(folder, run)  # {method: {epochs: figures}} done before
    except ValueError as err:
        parser.error(str(err))
    run_start = results.RunStart()
    device = pick_device(args.device)
    split = smoke_split(data.load_one_class("mnist", args.normal_class, protocol=2, device=device), args)
    print(f"normal class {args.normal_class}: {split.describe()}; {device}, {torch.get_num_threads()} thread(s)")
    baselines = {name: evaluate(name, settings, split, device, args.seed) for name in BASELINES}
    level = baselines["mean-image"]["auroc"]
    print(", ".join(f"{name} AUROC {row['auroc']:.2f}" for name, row in baselines.items()))

    def write_out() -> None:
        if args.out:
            record = {
                "benchmark": "budget_curve",
                "command": shlex.join(["python", "benchmarks/budget_curve.py", *sys.argv[1:]]),
                "baselines": baselines,
                "results": {
                    name: [finished[name][str(p)] for p in points if str(p) in finished.get(name, {})] for name in names
                },
            }
            settings_used = {**run, "at": points}
            results.write_with_provenance(record, args.out, start=run_start, settings=settings_used, device=device)

    for name in names:
        print(f"\n{name}: {settings[name]}")
        for epochs in points:
            row = finished.get(name, {}).get(str(epochs))
            if row is None:
                row = train_to(name, settings, epochs, split, folder, device, args.seed)
                row["margin"] = round(row["auroc"] - level, 2)
                finished.setdefault(name, {})[str(epochs)] = row
                checkpoints.record_finished(folder, finished)
                write_out()
            print(
                f"  epoch {epochs:5d}  AUROC {row['auroc']:6.2f} ({row['margin']:+6.2f} over mean-image)  "
                f"spread {row['spread']:.4f}  loss {row['final_training_loss']:.5f}  ({row['seconds']:.0f} s)",
                flush=True,
            )
    write_out()
    if args.out:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
