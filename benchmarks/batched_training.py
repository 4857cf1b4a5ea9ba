"""Stacked against one-by-one training of the ten one-class models of the MNIST table.

    python benchmarks/batched_training.py                        # 2 CPU cores: about 5 minutes
    python benchmarks/batched_training.py --device cuda --epochs 5

For each method, trains one detector per normal class (protocol 2) twice with the
same settings and seed: one by one, as ``reproduce --stacked no`` does, and side by
side as one stacked model (``anomaly_edu.experiments.batched``). Prints both wall times, their
ratio (the speed-up of stacking) and the AUCs of both runs with their largest
difference. It asserts nothing: ``tests/test_batched.py`` checks the equivalence.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from anomaly_edu import data, profiles  # noqa: E402
from anomaly_edu.experiments import batched  # noqa: E402
from anomaly_edu.experiments.methods import METHODS, make_detector  # noqa: E402
from anomaly_edu.experiments.tables import parse_classes  # noqa: E402
from anomaly_edu.metrics import auroc  # noqa: E402
from anomaly_edu.training import pick_device  # noqa: E402

STACKABLE = [name for name, method in METHODS.items() if method.stackable]  # what fit_stacked can train


def synchronize(device: torch.device) -> None:
    """Wait for the GPU to finish its queued work (so that the clock measures it); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--methods", default="ae,arae", help=f"any of {', '.join(STACKABLE)}")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of every model")
    parser.add_argument("--arae-steps", type=int, default=5, help="attack steps of ARAE")
    parser.add_argument("--classes", default="0-9")
    args = parser.parse_args()
    methods = args.methods.split(",")
    if not set(methods) <= set(STACKABLE):
        parser.error(f"--methods: only {', '.join(STACKABLE)} can be stacked, got {args.methods}")

    device = pick_device(args.device)
    classes = parse_classes(args.classes)
    settings = profiles.get_profile("full")
    train_set = data.load_dataset("mnist", True, device=device)
    test_set = data.load_dataset("mnist", False, device=device)
    splits = [data.protocol2_split(train_set, test_set, c) for c in classes]
    print(
        f"{len(classes)} one-class models per method, MNIST protocol 2, {args.epochs} epoch(s), "
        f"full-profile batch sizes, on {device} ({torch.get_num_threads()} CPU threads)"
    )
    for method in methods:
        settings[method]["epochs"] = args.epochs
        if method == "arae":
            settings[method]["steps"] = args.arae_steps
        fresh = [make_detector(method, settings, device=device, progress=False) for _ in splits]

        synchronize(device)
        start = time.perf_counter()
        one_by_one = [d.fit(s.x_train) for d, s in zip(fresh, splits)]
        synchronize(device)
        alone_s = time.perf_counter() - start

        start = time.perf_counter()
        stacked = batched.fit_stacked(
            [make_detector(method, settings, device=device, progress=False) for _ in splits],
            [s.x_train for s in splits],
            progress=False,
        )
        synchronize(device)
        stacked_s = time.perf_counter() - start

        auc_alone = [100 * auroc(s.y_test, d.anomaly_score(s.x_test)) for d, s in zip(one_by_one, splits)]
        auc_stacked = [100 * auroc(s.y_test, d.anomaly_score(s.x_test)) for d, s in zip(stacked, splits)]
        largest = max(abs(a - b) for a, b in zip(auc_alone, auc_stacked))
        print(f"\n{method} ({settings[method]})")
        print(
            f"  one by one {alone_s:7.1f} s   stacked {stacked_s:7.1f} s   "
            f"speed-up of stacking {alone_s / stacked_s:.2f}x"
        )
        print("  AUC one by one " + " ".join(f"{a:6.2f}" for a in auc_alone))
        print("  AUC stacked    " + " ".join(f"{a:6.2f}" for a in auc_stacked))
        print(
            f"  largest AUC difference {largest:.3f} points "
            f"(the AE is deterministic; DAE noise and ARAE random starts differ between the runs)"
        )


if __name__ == "__main__":
    main()
