#!/usr/bin/env python
"""Train the course's stored models and write them to ``models/`` (read with ``anomaly_edu.experiments.trained``).

    python scripts/store_models.py              # every model of STORED that is not stored yet
    python scripts/store_models.py ae-digit8 --force
    python scripts/store_models.py ae-digit8 --checkpoints DIR   # go on from a budget curve's run
    python scripts/store_models.py --list
    python scripts/store_models.py --again ae-digit8   # at STORED's precision, measured again; no training
    python scripts/store_models.py --check             # every stored detector on its whole test set

Each detector is a method of the registry trained on one case of a table (by
default MNIST with the digit 8 as the normal class, protocol 2), with the quick
profile's settings changed as ``STORED`` says: the budget where the budget
curve (``results/budget_curve_digit8.json``) shows the method working. It is
then scored on the whole test set, and its AUROC, the ``mean-image``
baseline's, the training time and the provenance go into ``models/manifest.json``
beside the file's SHA-256. The figures are measured on the detector as its file
gives it back (the same, unless it is stored at half precision). ``tests/test_trained.py``
loads every stored model and checks that it still scores what the manifest says.

The classifiers of Lectures 2 and 3 (``STORED_NETWORKS``) are trained with
``adversarial_training.train_classifier`` on all of MNIST's training images and measured on
its test set: the accuracy, and the accuracy under a PGD attack.

One model at a time, each written as soon as it is trained: an interrupted run
loses only the model in progress. Commit ``models/`` after each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from anomaly_edu import adversarial_training, data, profiles  # noqa: E402
from anomaly_edu.data.licences import data_licence  # noqa: E402
from anomaly_edu.experiments import methods, reproduce, results, tables, trained  # noqa: E402
from anomaly_edu.experiments.checkpoints import fit_with_checkpoint  # noqa: E402
from anomaly_edu.metrics import auroc  # noqa: E402
from anomaly_edu.models import MnistCNN  # noqa: E402
from anomaly_edu.training import accuracy, pick_device  # noqa: E402

MODELS = ROOT / "models"
NORMAL_CLASS = 8
# name: the registry's method, and what changes in its quick settings; "table" and "case" say
# where it is trained (default: MNIST, the digit 8), "precision" how its weights are stored
# (default float32). The budgets of the digit-8 models come from
# results/budget_curve_digit8.json, which trains the AE, the DAE and ARAE for 400 epochs: all
# three have flattened by then (the AE and the DAE after about 200, ARAE after about 200 too), and
# --checkpoints takes their final weights from that run instead of training them again. They are
# stored at half precision (2.3 MB each instead of 4.5), which leaves room for the head-CT model
STORED: dict[str, dict] = {
    "ae-digit8": {"method": "ae", "changes": {"epochs": 400}, "precision": "float16"},
    "dae-digit8": {"method": "dae", "changes": {"epochs": 400}, "precision": "float16"},
    "arae-digit8": {"method": "arae", "changes": {"epochs": 400}, "precision": "float16"},
    # the talk's method as the authors' script trains it (CPAE-G, the published shortcut
    # perturbation), on the quick profile's narrow U-Net: 60 epochs in batches of 16 on 2 CPU cores
    "puzzle-ae-digit8": {
        "method": "puzzle-ae",
        "changes": {"variant": "cpae-g", "shortcut": "published", "epochs": 60},
    },
    # Lecture 6: the one detector of results/magnetic_tile.json that beats both baselines (the
    # SSIM autoencoder, quick settings: 30 epochs); at half precision
    "ae-ssim-magnetic-tile": {
        "method": "ae-ssim",
        "changes": {},
        "table": "magnetic-tile",
        "case": "magnetic-tile",
        "precision": "float16",
    },
    # Lecture 6: Puzzle-AE's anomaly map beside the autoencoders'. The quick settings on the same
    # split (PAE, the course's perturbation, 20 epochs), as the stored table's Puzzle-AE row
    # (results/magnetic_tile.json); at full precision (1 MB)
    "puzzle-ae-magnetic-tile": {
        "method": "puzzle-ae",
        "changes": {},
        "table": "magnetic-tile",
        "case": "magnetic-tile",
    },
    # Lectures 5 and 6: the talk's medical table. On head CT the plain autoencoder at the stored
    # run's budget (results/medical_head_ct.json: 120 epochs, 79.95 over 3 seeds) is the deep
    # model that beats the mean image clearly (Puzzle-AE does not); its MLP on 64 x 64 slices
    # holds 4.5 million weights: 9 MB at half precision
    "ae-head-ct": {
        "method": "ae",
        "changes": {"epochs": 120},
        "table": "medical",
        "case": "head-ct",
        "precision": "float16",
    },
}

# name: the profile and its entry (adversarial_training.train_classifier's settings), standard or adversarial
# training. The full profile's standard CNN is the one of results/robustness_full.json (99.2% on
# the test set); at half precision it takes 1.3 MB. The adversarially trained one is the robust CNN
# of the same run (PGD-10 at eps 0.3 on every batch, 12 epochs: about 55 minutes on one CPU thread)
STORED_NETWORKS: dict[str, dict] = {
    "cnn-mnist": {"profile": "full", "entry": "cnn", "adversarial": False},
    "cnn-mnist-adversarial": {"profile": "full", "entry": "adv_cnn", "adversarial": True},
}
# every classifier is also measured under this attack (L-inf PGD, no random start: deterministic)
PGD_CHECK = {"eps": 0.1, "steps": 20, "n_images": 1000}


def where_trained(name: str) -> tuple[str, str]:
    """The table and the case that the stored detector ``name`` is trained on."""
    recipe = STORED[name]
    return recipe.get("table", "mnist"), recipe.get("case", str(NORMAL_CLASS))


def recipe_settings(name: str) -> dict:
    """The quick profile's settings of the stored detector ``name``'s data set,
    with its recipe's changes."""
    recipe = STORED[name]
    dataset = tables.get_table(where_trained(name)[0]).dataset
    return tables.apply_changes(profiles.get_profile("quick", dataset), {recipe["method"]: recipe["changes"]})


def load_split(table: str, case: str, device, size: int | None = None):
    """One case of a table of ``reproduce`` (MNIST: a normal digit under protocol 2;
    the magnetic tiles; a medical set, at the quick profile's image ``size``): the
    split a stored detector is trained and scored on."""
    size = size or profiles.get_profile("quick", tables.get_table(table).dataset)["images"].get("size")
    return reproduce.table_splits(table, [int(case)] if table == "mnist" else None, device=device, size=size)[case]


FIRST = 1000  # a detector's AUROC on its first FIRST test images is stored too


def figures_as_stored(detector, method: str, split, settings: dict, precision: str, device) -> dict:
    """The AUROC (%) on the split's test set of ``detector`` as a file at
    ``precision`` gives it back, and the ``mean-image`` baseline's."""
    y = split.y_test.cpu().numpy()
    with tempfile.TemporaryDirectory() as scratch:
        image_shape = tuple(split.x_train.shape[1:])
        trained.save_detector(detector, "scratch", scratch, method=method, image_shape=image_shape, precision=precision)
        loaded = trained.load_detector("scratch", scratch, device=device)
        scores = loaded.anomaly_score(split.x_test)
    baseline = methods.make_detector("mean-image", settings).fit(split.x_train).anomaly_score(split.x_test)
    figures = {"auroc": round(100 * auroc(y, scores), 2), "mean_image_auroc": round(100 * auroc(y, baseline), 2)}
    if len(y) > FIRST and 0 < y[:FIRST].sum() < FIRST:  # a quicker check for the tests (both classes in it)
        figures[f"auroc_first_{FIRST}"] = round(100 * auroc(y[:FIRST], scores[:FIRST]), 2)
    return figures


def store(name: str, split, device, seed: int = 0, checkpoints: Path | None = None) -> dict:
    """Train, score and write one model of ``STORED``; its manifest entry.
    With ``checkpoints`` (a budget curve's folder), the training goes on from
    ``checkpoints/METHOD.pt``: a checkpoint of as many epochs trains no more,
    and one of other settings is refused."""
    recipe = STORED[name]
    method, precision = recipe["method"], recipe.get("precision", "float32")
    table, case = where_trained(name)
    settings = recipe_settings(name)
    start = results.RunStart()
    detector = methods.make_detector(method, settings, seed=seed, device=device)
    fit_with_checkpoint(detector, split, checkpoints, method)
    training_seconds = time.perf_counter() - start.clock
    image_shape = tuple(split.x_train.shape[1:])
    figures = {
        **figures_as_stored(detector, method, split, settings, precision, device),
        # with --checkpoints, the time of this run only (the budget curve's file has the rest)
        "training_seconds": round(training_seconds, 1),
    }
    if table == "mnist":
        described = f"MNIST's {case}s (protocol 2)"
        where = {"dataset": "mnist", "normal_class": int(case), "protocol": 2}
    else:
        described = f"the {table} table's case {case!r} (protocol {split.protocol})"
        where = {"table": table, "case": case, "protocol": split.protocol}
    about = {
        "description": f"{method} trained on {described}: the quick settings with {recipe['changes']}",
        "data": {**where, "n_train": len(split.x_train)},
        # the data set's terms apply to a model made from it (book/data_licences.md)
        "data_licence": data_licence("mnist" if table == "mnist" else case),
        "figures": figures,
    }
    run_settings = {
        "seed": seed,
        "changes": recipe["changes"],
        "went_on_from": None if checkpoints is None else f"{checkpoints.name}/{method}.pt",
        "command": "python scripts/store_models.py",
    }
    about = results.with_provenance(
        about, start=start, settings=run_settings, device=device, resumed=checkpoints is not None
    )
    return trained.save_detector(
        detector, name, MODELS, method=method, image_shape=image_shape, precision=precision, **about
    )


def store_again(name: str, split, device) -> dict:
    """Write a stored detector again without training: the same weights, at the
    precision ``STORED`` now gives it, its manifest entry kept and its figures
    measured again on the new file (where the precision changes, the earlier
    AUROC is kept beside them). The rewrite has its own provenance."""
    entry = trained.read_manifest(MODELS)[name]
    was, precision = entry.get("precision", "float32"), STORED[name].get("precision", "float32")
    start = results.RunStart()
    detector = trained.load_detector(name, MODELS, device=device)
    settings = recipe_settings(name)
    written_by_save = ("kind", "method", "settings", "image_shape", "network_attribute", "history", "precision")
    about = {key: value for key, value in entry.items() if key not in (*written_by_save, "file", "sha256", "bytes")}
    about["figures"] = {
        **entry["figures"],
        **figures_as_stored(detector, entry["method"], split, settings, precision, device),
    }
    if was != precision:
        about["figures"][f"auroc_{was}"] = entry["figures"]["auroc"]
    about["written_again"] = results.with_provenance(
        {"from": was, "to": precision},
        start=start,
        settings={"command": f"python scripts/store_models.py --again {name}"},
        device=device,
    )
    image_shape = tuple(entry["image_shape"])
    return trained.save_detector(
        detector, name, MODELS, method=entry["method"], image_shape=image_shape, precision=precision, **about
    )


def check_stored(device) -> None:
    """Score every stored detector on its whole test set and print its AUROC
    beside the manifest's (``tests/test_trained.py`` checks Puzzle-AE on its
    first test images only, to keep the suite short)."""
    for name, entry in trained.read_manifest(MODELS).items():
        if entry["kind"] != "detector":
            continue
        split = load_split(*where_trained(name), device)
        scores = trained.load_detector(name, MODELS, device=device).anomaly_score(split.x_test)
        now = 100 * auroc(split.y_test.cpu().numpy(), scores)
        print(f"{name:<24}AUROC {now:6.2f}, the manifest's {entry['figures']['auroc']:6.2f}", flush=True)


def classifier_figures(network: torch.nn.Module, x_test: torch.Tensor, y_test: torch.Tensor) -> dict:
    """A classifier's accuracy (%) on the whole test set, and under ``PGD_CHECK``'s
    attack on its first images."""
    n = PGD_CHECK["n_images"]
    under_attack = adversarial_training.robust_accuracy(
        network, x_test[:n], y_test[:n], eps=PGD_CHECK["eps"], steps=PGD_CHECK["steps"]
    )
    return {
        "accuracy": round(100 * accuracy(network, x_test, y_test), 2),
        "pgd_accuracy": round(100 * under_attack, 2),
        "pgd": PGD_CHECK,
    }


def store_network(name: str, device, seed: int = 0) -> dict:
    """Train, write and measure one classifier of ``STORED_NETWORKS``; its manifest
    entry. The figures are measured on the network as loaded back from its file
    (half precision)."""
    recipe = STORED_NETWORKS[name]
    settings = profiles.get_profile(recipe["profile"])[recipe["entry"]]
    start = results.RunStart()
    x_train, y_train = data.load_dataset("mnist", True, device=device)
    x_test, y_test = data.load_dataset("mnist", False, device=device)
    network, history = adversarial_training.train_classifier(
        x_train, y_train, settings, adversarial=recipe["adversarial"], seed=seed
    )
    training_seconds = time.perf_counter() - start.clock
    about = {
        "description": f"MnistCNN trained on MNIST's 60,000 training images: the {recipe['profile']} profile's "
        f"{recipe['entry']!r} settings, {'adversarial' if recipe['adversarial'] else 'standard'} training",
        "settings": settings,
        "adversarial": recipe["adversarial"],
        "data_licence": data_licence("mnist"),
        "history": [round(loss, 6) for loss in history],
    }
    run_settings = {"seed": seed, **recipe, "command": "python scripts/store_models.py"}
    about = results.with_provenance(about, start=start, settings=run_settings, device=device)
    with tempfile.TemporaryDirectory() as scratch:  # measure the network as its file gives it back
        trained.save_network(network, name, scratch, precision="float16")
        loaded = trained.load_network(name, MnistCNN(width=settings.get("width", 1)), scratch).to(device)
        figures = {**classifier_figures(loaded, x_test, y_test), "training_seconds": round(training_seconds, 1)}
    return trained.save_network(network, name, MODELS, precision="float16", **about, figures=figures)


def main() -> None:
    every = {**STORED, **STORED_NETWORKS}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"default: every model not stored yet ({', '.join(every)})")
    parser.add_argument("--force", action="store_true", help="train again the models that are stored")
    parser.add_argument("--list", action="store_true", help="list the models and whether they are stored")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="a budget curve's checkpoint folder: go on from its METHOD.pt instead of training from scratch",
    )
    parser.add_argument(
        "--again",
        action="store_true",
        help="write the named stored detectors again without training (at the precision STORED gives them), "
        "with their figures measured again",
    )
    parser.add_argument(
        "--check", action="store_true", help="score every stored detector on its whole test set, beside its manifest"
    )
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(every))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; the course stores: {', '.join(every)}")
    stored = trained.read_manifest(MODELS)
    if args.list:
        for name in every:
            figures = stored.get(name, {}).get("figures")
            kind = STORED[name]["method"] if name in STORED else "classifier"
            if not figures:
                state = "not stored"
            elif name in STORED:
                state = f"AUROC {figures['auroc']:.2f}"
            else:
                state = f"accuracy {figures['accuracy']:.2f}%"
            print(f"{name:<24}{kind:<12}{state}")
        return
    if args.check:
        check_stored(pick_device(args.device))
        return
    if args.again:
        device = pick_device(args.device)
        for name in args.names:
            if name not in STORED or name not in stored:
                parser.error(f"--again: {name!r} is not a stored detector")
            entry = store_again(name, load_split(*where_trained(name), device), device)
            f = entry["figures"]
            print(
                f"{name}: {entry['precision']}, {entry['bytes'] / 1e6:.2f} MB; AUROC {f['auroc']:.2f}; "
                f"first {FIRST:,} test images {f.get(f'auroc_first_{FIRST}', float('nan')):.2f}",
                flush=True,
            )
        return
    names = args.names or [name for name in every if args.force or name not in stored]
    if not names:
        print("every model is stored; --force trains them again")
        return
    device = pick_device(args.device)
    print(f"{device}, {torch.get_num_threads()} thread(s)")
    for name in [name for name in names if name in STORED_NETWORKS]:
        entry = store_network(name, device)
        f = entry["figures"]
        print(
            f"{name}: accuracy {f['accuracy']:.2f}%, under PGD-{PGD_CHECK['steps']} at eps {PGD_CHECK['eps']} "
            f"{f['pgd_accuracy']:.2f}%, trained in {f['training_seconds']:.0f} s; {entry['bytes'] / 1e6:.2f} MB, "
            f"sha256 {entry['sha256'][:12]}...",
            flush=True,
        )
    splits = {}  # each table's case is loaded once
    for name in [name for name in names if name in STORED]:
        if where_trained(name) not in splits:
            splits[where_trained(name)] = load_split(*where_trained(name), device)
            print(f"{' '.join(where_trained(name))}: {splits[where_trained(name)].describe()}")
        entry = store(name, splits[where_trained(name)], device, checkpoints=args.checkpoints)
        f = entry["figures"]
        print(
            f"{name}: AUROC {f['auroc']:.2f} (mean image {f['mean_image_auroc']:.2f}), trained in "
            f"{f['training_seconds']:.0f} s; {entry['bytes'] / 1e6:.2f} MB, sha256 {entry['sha256'][:12]}...",
            flush=True,
        )


if __name__ == "__main__":
    main()
