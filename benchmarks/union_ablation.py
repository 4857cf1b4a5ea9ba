"""Which perturbation set of ARAE's union variant costs AUROC at a short budget?

    python benchmarks/union_ablation.py                 # one CPU thread: about 4 minutes
    python benchmarks/union_ablation.py --epochs 50 --device cuda
    python benchmarks/union_ablation.py --out results/union_ablation_digit8.json

Trains the union variant on one MNIST digit (protocol 2) with the quick
profile's attacks, then again without the rotations and shifts, with a smaller
L-2 radius, and with the L-inf attack alone, and prints each test AUROC and
training time. It asserts nothing. With ``--out FILE`` it also writes them,
per variant, with their provenance (commit, device, versions, wall time) and
each variant's settings to a JSON file; the appendix page "ARAE's slow start"
shows it. ``--max-train N`` trains on the first N training images only (a
smoke run).
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly_edu import data, profiles  # noqa: E402
from anomaly_edu.arae import UnionARAEDetector  # noqa: E402
from anomaly_edu.experiments import results  # noqa: E402
from anomaly_edu.metrics import auroc  # noqa: E402
from anomaly_edu.training import pick_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--normal-class", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train", type=int, default=None, help="use the first N training images (default: all)")
    parser.add_argument("--out", default=None, help="write the AUROCs and their provenance to this JSON file")
    args = parser.parse_args()
    if min(args.epochs, args.max_train or 1) < 1:
        parser.error("--epochs and --max-train must be at least 1")
    results.check_out_option(parser, args.out)  # fail now, not after the training

    run_start = results.RunStart()
    device = pick_device(args.device)
    split = data.load_one_class("mnist", args.normal_class, protocol=2, device=device)
    split = dataclasses.replace(split, x_train=split.x_train[: args.max_train])
    quick = dict(profiles.settings("quick", "arae-union"), epochs=args.epochs)
    no_attack = (1e-6, 1e-6, 1)  # a radius so small that this attack never wins
    variants = {
        "union (L-inf, L-2, rotations and shifts)": {},
        "without rotations and shifts": {"n_angles": 1, "shifts": [0]},
        f"L-2 radius 1 instead of {quick['l2'][0]}": {"l2": [1.0, quick["l2"][1] / quick["l2"][0], quick["l2"][2]]},
        "L-inf alone": {"l2": no_attack, "n_angles": 1, "shifts": [0]},
    }
    print(f"normal digit {args.normal_class}, {args.epochs} epochs, quick-profile attacks, {device}")
    figures = {}
    for name, change in variants.items():
        start = time.perf_counter()
        detector = UnionARAEDetector(**{**quick, **change}, seed=args.seed, device=device, progress=False)
        detector.fit(split.x_train)
        auc = 100 * auroc(split.y_test, detector.anomaly_score(split.x_test))
        seconds = time.perf_counter() - start
        print(f"  {name:<42} AUROC {auc:5.1f}   ({seconds:.0f} s)", flush=True)
        figures[name] = {"auroc": round(auc, 2), "seconds": round(seconds, 1)}
    if args.out:
        run = {
            "normal_class": args.normal_class,
            "protocol": 2,
            "epochs": args.epochs,
            "seed": args.seed,
            "max_train": args.max_train,
            "n_train": len(split.x_train),
            "variants": {name: {**quick, **change} for name, change in variants.items()},
        }
        record = {
            "benchmark": "union_ablation",
            "command": shlex.join(["python", "benchmarks/union_ablation.py", *sys.argv[1:]]),
            "arguments": vars(args),
            "results": figures,
        }
        results.write_with_provenance(record, args.out, start=run_start, settings=run, device=device)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
