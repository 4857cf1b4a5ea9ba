#!/usr/bin/env python
"""Train the course's stored models and write them to ``models/`` (read with ``anomaly_edu.trained``).

    python scripts/store_models.py              # every model of STORED that is not stored yet
    python scripts/store_models.py ae-digit8 --force
    python scripts/store_models.py ae-digit8 --checkpoints DIR   # go on from a budget curve's run
    python scripts/store_models.py --list

Each model is a method of the registry trained on MNIST with the digit 8 as the
normal class (protocol 2), with the quick profile's settings changed as
``STORED`` says: the budget where the budget curve (``results/budget_curve_digit8.json``)
shows the method working. It is then scored on the whole test set, and its
AUROC, the ``mean-image`` baseline's, the training time and the provenance go
into ``models/manifest.json`` beside the file's SHA-256. ``tests/test_trained.py``
loads every stored model and checks that it still scores what the manifest says.

One model at a time, each written as soon as it is trained: an interrupted run
loses only the model in progress. Commit ``models/`` after each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from anomaly_edu import data, methods, profiles, reproduce, results, trained  # noqa: E402
from anomaly_edu.metrics import auroc  # noqa: E402
from anomaly_edu.training import pick_device  # noqa: E402

MODELS = ROOT / "models"
NORMAL_CLASS = 8
# name: the registry's method, and what changes in its quick settings. The budgets come from
# results/budget_curve_digit8.json, which trains the AE, the DAE and ARAE for 400 epochs: all
# three have flattened by then (the AE and the DAE after about 200, ARAE after about 200 too), and
# --checkpoints takes their final weights from that run instead of training them again
STORED: dict[str, dict] = {
    "ae-digit8": {"method": "ae", "changes": {"epochs": 400}},
    "dae-digit8": {"method": "dae", "changes": {"epochs": 400}},
    "arae-digit8": {"method": "arae", "changes": {"epochs": 400}},
    # the talk's method as the authors' script trains it (CPAE-G, the published shortcut
    # perturbation), on the quick profile's narrow U-Net: 60 epochs in batches of 16 on 2 CPU cores
    "puzzle-ae-digit8": {
        "method": "puzzle-ae",
        "changes": {"variant": "cpae-g", "shortcut": "published", "epochs": 60},
    },
}


def mnist_split(device):
    """MNIST, the digit 8 normal, protocol 2: the split every stored model is trained and scored on."""
    return data.load_one_class("mnist", NORMAL_CLASS, protocol=2, device=device)


def store(name: str, split, device, seed: int = 0, checkpoints: Path | None = None) -> dict:
    """Train, score and write one model of ``STORED``; its manifest entry.
    With ``checkpoints`` (a budget curve's folder), the training goes on from
    ``checkpoints/METHOD.pt``: a checkpoint of as many epochs trains no more,
    and one of other settings is refused."""
    recipe = STORED[name]
    method = recipe["method"]
    settings = reproduce.apply_changes(profiles.get_profile("quick", "mnist"), {method: recipe["changes"]})
    started, code_state = time.perf_counter(), results.git_state()
    detector = methods.make_detector(method, settings, seed=seed, device=device)
    reproduce.fit_with_checkpoint(detector, split, checkpoints, method)
    training_seconds = time.perf_counter() - started
    y = split.y_test.cpu().numpy()
    figures = {
        "auroc": round(100 * auroc(y, detector.score(split.x_test)), 2),
        "mean_image_auroc": round(
            100 * auroc(y, methods.make_detector("mean-image", settings).fit(split.x_train).score(split.x_test)), 2
        ),
        # with --checkpoints, the time of this run only (the budget curve's file has the rest)
        "training_seconds": round(training_seconds, 1),
    }
    about = {
        "description": f"{method} trained on MNIST's {NORMAL_CLASS}s (protocol 2): the quick settings "
        f"with {recipe['changes']}",
        "data": {"dataset": "mnist", "normal_class": NORMAL_CLASS, "protocol": 2, "n_train": len(split.x_train)},
        "figures": figures,
        "provenance": results.provenance(
            settings={
                "seed": seed,
                "changes": recipe["changes"],
                "went_on_from": None if checkpoints is None else f"{checkpoints.name}/{method}.pt",
                "command": "python scripts/store_models.py",
            },
            wall_time_s=time.perf_counter() - started,
            device=device,
            git=code_state,
        ),
    }
    return trained.save_detector(
        detector, name, MODELS, method=method, image_shape=tuple(split.x_train.shape[1:]), **about
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: every model not stored yet ({', '.join(STORED)})")
    parser.add_argument("--force", action="store_true", help="train again the models that are stored")
    parser.add_argument("--list", action="store_true", help="list the models and whether they are stored")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="a budget curve's checkpoint folder: go on from its METHOD.pt instead of training from scratch",
    )
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(STORED))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; the course stores: {', '.join(STORED)}")
    stored = trained.read_manifest(MODELS)
    if args.list:
        for name, recipe in STORED.items():
            figures = stored.get(name, {}).get("figures")
            state = f"AUROC {figures['auroc']:.2f}" if figures else "not stored"
            print(f"{name:<20}{recipe['method']:<12}{state}")
        return
    names = args.names or [name for name in STORED if args.force or name not in stored]
    if not names:
        print("every model is stored; --force trains them again")
        return
    device = pick_device(args.device)
    split = mnist_split(device)
    print(f"digit {NORMAL_CLASS}: {split.describe()}; {device}, {torch.get_num_threads()} thread(s)")
    for name in names:
        entry = store(name, split, device, checkpoints=args.checkpoints)
        f = entry["figures"]
        print(
            f"{name}: AUROC {f['auroc']:.2f} (mean image {f['mean_image_auroc']:.2f}), trained in "
            f"{f['training_seconds']:.0f} s; {entry['bytes'] / 1e6:.2f} MB, sha256 {entry['sha256'][:12]}...",
            flush=True,
        )


if __name__ == "__main__":
    main()
