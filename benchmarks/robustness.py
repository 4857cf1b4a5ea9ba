"""Clean and robust accuracy of the standard and the adversarially trained MNIST
classifier of Lecture 3, with the settings of one profile.

    python benchmarks/robustness.py --profile quick            # 2 CPU cores: about 1 minute
    python benchmarks/robustness.py --profile full --out results/robustness_full.json

Prints figures (training times, clean accuracy, PGD-40 accuracy at eps 0.1 and
0.3 for both models, and the gap at eps 0.1) and, with ``--out``, writes them
with their provenance (commit, device, versions, settings) to a JSON file that
Lecture 3 shows. It asserts nothing: the course's targets are stated beside the
figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomaly_edu import adversarial_training, data, profiles  # noqa: E402
from anomaly_edu.experiments import results  # noqa: E402
from anomaly_edu.training import accuracy, pick_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-eval", type=int, default=10000, help="test images to evaluate on")
    parser.add_argument("--out", default=None, help="write the figures and their provenance to this JSON file")
    args = parser.parse_args()
    results.check_out_option(parser, args.out)  # fail now, not after the training

    run_start = results.RunStart()
    device = pick_device(args.device)
    settings = profiles.get_profile(args.profile)
    x_train, y_train = data.load_dataset("mnist", True, device=device)
    x_test, y_test = data.load_dataset("mnist", False, device=device)
    x_test, y_test = x_test[: args.n_eval], y_test[: args.n_eval]

    models, train_seconds = {}, {}
    for name, adversarial, key in (("standard", False, "cnn"), ("robust", True, "adv_cnn")):
        start = time.perf_counter()
        models[name], _ = adversarial_training.train_classifier(
            x_train, y_train, settings[key], adversarial=adversarial, seed=args.seed, progress=False
        )
        train_seconds[name] = round(time.perf_counter() - start, 1)
        print(f"{name:<9} training ({args.profile}, {settings[key]}): {train_seconds[name]:.0f} s")

    print(f"\nevaluated on {len(x_test)} test images, PGD-40 (L-inf, step 2.5 eps / 40, no random start), {device}")
    accuracies = {}
    for name, model in models.items():
        accuracies[name] = {
            "clean": accuracy(model, x_test, y_test),
            0.1: adversarial_training.robust_accuracy(model, x_test, y_test, eps=0.1, steps=40),
            0.3: adversarial_training.robust_accuracy(model, x_test, y_test, eps=0.3, steps=40),
        }
        r = accuracies[name]
        print(
            f"{name:<9} clean {100 * r['clean']:5.1f}%   PGD eps 0.1 {100 * r[0.1]:5.1f}%   "
            f"PGD eps 0.3 {100 * r[0.3]:5.1f}%"
        )
    gap = 100 * (accuracies["robust"][0.1] - accuracies["standard"][0.1])
    print(f"\nrobust minus standard at eps 0.1: {gap:+.1f} points (target for the quick profile: >= 30)")
    print(
        "targets: standard clean >= 98%, standard PGD eps 0.3 <= 5%; "
        "robust PGD eps 0.3 >= 85% in the full profile (Madry et al.: 89%)"
    )
    if args.out:
        used = {
            "profile": args.profile,
            "seed": args.seed,
            "n_eval": len(x_test),
            "attack": "PGD-40, L-inf, step 2.5 eps / 40, no random start",
            "cnn": settings["cnn"],
            "adv_cnn": settings["adv_cnn"],
        }
        figures = {
            name: {
                "clean %": round(100 * r["clean"], 2),
                "PGD eps 0.1 %": round(100 * r[0.1], 2),
                "PGD eps 0.3 %": round(100 * r[0.3], 2),
                "training s": train_seconds[name],
            }
            for name, r in accuracies.items()
        }
        record = {"benchmark": "robustness", "results": figures}
        results.write_with_provenance(record, args.out, start=run_start, settings=used, device=device)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
