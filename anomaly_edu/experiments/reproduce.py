"""Reproduce the talk's tables with our code, and record where the numbers came from.

``python -m anomaly_edu reproduce mnist --methods ae,dae,ocsvm,dsvdd --classes 0-9
--profile quick --seed 0 --out results/mnist_quick.json`` trains one detector per
method and normal class, prints our AUCs beside the talk's, and writes a JSON
file with the numbers and their provenance. Every table runs through
:func:`run_table`; the methods come from :mod:`anomaly_edu.methods`.
Introduced in Lecture 1.
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import time
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .anomaly_maps import resize_maps
from .batched import fit_stacked
from .data import OneClassSplit, available_datasets, coil100_split, load_coil100, load_dataset, protocol2_split
from .magnetic_tile import magnetic_tile_split
from .medical import MEDICAL_PROTOCOL, MEDICAL_SETS, available_medical, load_medical, medical_split
from .methods import METHODS, check_methods, make_detector
from .metrics import au_pro, auroc, choose_threshold, f1_at_threshold, fpr_at_tpr, pixel_auroc
from .mvtec import MVTEC_CATEGORIES, MVTEC_TEXTURES, available_mvtec, mvtec_split
from .profiles import get_profile
from .puzzle_ae import AGGREGATIONS, VARIANTS, aggregate
from .results import git_state, provenance, same_code_at, write_json_atomically
from .stress import attack_numbers
from .training import pick_device


@dataclass(frozen=True)
class Table:
    """One of the talk's tables. Lecture 1."""

    dataset: str
    talk_csv: str | None  # the talk's numbers, in anomaly_edu/paper_tables/ (None: the talk has no such table)
    protocol: int  # 2: one normal class, the official test set; 1: the ARAE code's split with validation;
    # 0: the course's medical split (normal images 60/20/20, every anomaly in the test set);
    # 3: MVTec AD (validation carved from train/good, the official test set, masks);
    # 4: magnetic tiles (defect-free tiles 60/20/20, every defective tile in the test set, masks)
    image_shape: tuple[int, int, int]  # (C, H, W) of the images the detectors get


TABLES = {
    "mnist": Table("mnist", "mnist_protocol2_auc.csv", protocol=2, image_shape=(1, 28, 28)),
    "fashion-mnist": Table("fashion-mnist", "fashion_mnist_protocol2_auc.csv", protocol=2, image_shape=(1, 28, 28)),
    "coil100": Table("coil100", "coil100_protocol1.csv", protocol=1, image_shape=(3, 32, 32)),
    # every medical set of anomaly_edu.medical that is under the data root, resized to 64x64 grey
    "medical": Table("medical", "medical.csv", protocol=0, image_shape=(1, 64, 64)),
    # the talk's Table 9: Puzzle-AE's variants and aggregations (run by run_puzzle_ablation)
    "cifar10-ablation": Table("cifar10", "cifar10_puzzle_ablation.csv", protocol=2, image_shape=(3, 32, 32)),
    # Lecture 5: the same ablation on MNIST (the talk has none; ours runs where CIFAR-10 is absent)
    "mnist-ablation": Table("mnist", None, protocol=2, image_shape=(1, 28, 28)),
    # Lecture 6: CIFAR-10 under protocol 2 (the talk gives only Puzzle-AE's mean, in its summary)
    "cifar10": Table("cifar10", None, protocol=2, image_shape=(3, 32, 32)),
    # the 15 MVTec AD categories at the talk's 128x128, image AUROC, pixel AUROC and AU-PRO
    "mvtec": Table("mvtec", "mvtec_image_auc.csv", protocol=3, image_shape=(3, 128, 128)),
    # the magnetic-tile defects at 64x64 grey; pixel metrics at each tile's own size
    "magnetic-tile": Table("magnetic-tile", None, protocol=4, image_shape=(1, 64, 64)),
    # Lecture 7, the talk's Figure 10: MNIST (digit 8 by default) after a test-time attack
    "mnist-attack": Table("mnist", None, protocol=2, image_shape=(1, 28, 28)),
    # GT against Puzzle-AE over data sets (run by run_generality from the tables above)
    # (its image_shape is that of its largest images; each data set's table checks its own)
    "generality": Table("generality", "generality.csv", protocol=-1, image_shape=(3, 128, 128)),
}
# the tables that compare Puzzle-AE's variants and aggregations (run by run_puzzle_ablation)
PUZZLE_ABLATIONS = ("cifar10-ablation", "mnist-ablation")
# the generality table's columns: the talk's name of each and the table that makes our number
GENERALITY_COLUMNS = {
    "MNIST": "mnist",
    "CIFAR-10": "cifar10",
    "MVTec": "mvtec",
    "head_ct_hemorrhage": "medical",
    "brain_tumor": "medical",
}
# the names of the numbers a table can hold, as printed
METRIC_NAMES = {
    "auc": "AUC",
    "fpr_995": "FPR at TPR 99.5%",
    "f1": "F1",
    "pixel_auc": "pixel AUC",
    "au_pro": "AU-PRO",
}
# the talk's names of the medical sets (rows of medical.csv)
TALK_MEDICAL_NAMES = {"head-ct": "head_ct_hemorrhage", "brain-mri": "brain_tumor"}
# the talk's Table 3 (COIL-100): (normal classes, anomaly fraction) of each row
COIL100_SETTINGS = [(1, 0.5), (4, 0.25), (7, 0.15)]


def get_table(name: str) -> Table:
    """The table called ``name``, or a clear error listing the known ones. Lecture 1."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    return TABLES[name]


def talk_table(table: str, metric: str = "AUC") -> dict[str, dict[str, float]]:
    """The talk's numbers of one table, in percent, as {row: {case: value}}:
    the cases are the normal classes and "mean" (protocol 2), or "1-0.50",
    "4-0.25", "7-0.15" (COIL-100, whose ``metric`` may also be "F1"). The
    rows are methods, or for cifar10-ablation "PAE avg", ..., "CPAE-G min".
    The medical table's FPR (a fraction in the CSV) is returned, in percent,
    for ``metric`` "FPR at TPR 99.5%", though the talk does not say at which TPR
    it was measured. Lecture 1."""
    medical_fpr = table == "medical" and metric == METRIC_NAMES["fpr_995"]
    if get_table(table).talk_csv is None or not (medical_fpr or metric in ("AUC", "F1", "AUC_std", "F1_std")):
        return {}  # the talk has no such numbers
    text = paper_table_text(get_table(table).talk_csv)
    rows = csv.DictReader(io.StringIO(text))
    if table == "medical":  # one line per data set and metric; AUC_std is the spread over seeds
        numbers = {}
        for row in rows:
            case = {talk: ours for ours, talk in TALK_MEDICAL_NAMES.items()}[row.pop("dataset")]
            if row.pop("metric") == ("FPR" if medical_fpr else metric):
                for method, value in row.items():
                    numbers.setdefault(method, {})[case] = round(100 * float(value), 2) if medical_fpr else float(value)
        return numbers
    if table == "generality":  # one line per method, one column per data set
        return {row.pop("method"): {k: float(v) for k, v in row.items()} for row in rows}
    if table == "cifar10-ablation":  # one line per aggregation and variant
        return {f"{row.pop('variant')} {row.pop('aggregation')}": {k: float(v) for k, v in row.items()} for row in rows}
    if table != "coil100":
        return {row.pop("method"): {k: float(v) for k, v in row.items()} for row in rows}
    numbers: dict[str, dict[str, float]] = {}  # the CSV has one line per case and metric, in fractions
    for row in rows:
        case, row_metric = f"{row.pop('normal_classes')}-{row.pop('anomaly_fraction')}", row.pop("metric")
        if row_metric == metric:
            for method, value in row.items():
                numbers.setdefault(method, {})[case] = round(100 * float(value), 2)
    return numbers


def paper_table_text(name: str) -> str:
    """The text of one of the talk's tables as shipped with the package
    (``anomaly_edu/paper_tables/<name>``, CSV). Lecture 1."""
    return resources.files("anomaly_edu").joinpath("paper_tables", name).read_text()


def talk_summary(table: str) -> dict[str, float]:
    """The talk's mean AUROC (%) per method from its Puzzle-AE summary table,
    for the data set of ``table`` (empty if the summary does not cover it). Lecture 5."""
    names = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
    text = paper_table_text("puzzle_summary_mean_auc.csv")
    dataset = names.get(get_table(table).dataset)
    return {
        row["method"]: float(row["mean_auc"]) for row in csv.DictReader(io.StringIO(text)) if row["dataset"] == dataset
    }


def parse_classes(text: str) -> list[int]:
    """ "0-9" -> [0, ..., 9]; "1,3,8" -> [1, 3, 8]; "8" -> [8]. Lecture 1."""
    classes = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part:
                first, last = (int(p) for p in part.split("-"))
                classes.extend(range(first, last + 1))
            else:
                classes.append(int(part))
        except ValueError:
            raise ValueError(f"cannot read classes {text!r}: use e.g. 0-9 or 1,3,8") from None
    if not classes:
        raise ValueError(f"no classes in {text!r}")
    return classes


def parse_seeds(text: str) -> list[int]:
    """ "0,1,2" or "0-2" -> [0, 1, 2]. Lecture 5."""
    try:
        return parse_classes(text)
    except ValueError:
        raise ValueError(f"cannot read seeds {text!r}: use e.g. 0,1,2 or 0-4") from None


def parse_changes(items: list[str] | None) -> dict[str, dict]:
    """["arae.epochs=30", "dsvdd.lr=1e-4"] -> {"arae": {"epochs": 30}, "dsvdd": {"lr": 0.0001}}:
    changes to a profile's settings, e.g. a shorter budget. Lecture 4."""
    changes: dict[str, dict] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        method, dot, key = name.strip().partition(".")
        if not sep or not dot or not method or not key:
            raise ValueError(f"cannot read the setting {item!r}: write METHOD.KEY=VALUE, e.g. arae.epochs=30")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text.strip()
        changes.setdefault(method, {})[key] = value
    return changes


def apply_changes(settings: dict, changes: dict[str, dict]) -> dict:
    """A copy of a profile's ``settings`` with ``changes`` (from :func:`parse_changes`)
    applied; a method or key the profile does not have is an error. Lecture 4."""
    settings = {method: dict(values) for method, values in settings.items()}
    for method, values in changes.items():
        if method not in settings:
            raise ValueError(f"the profile has no method {method!r}; known: {', '.join(sorted(settings))}")
        unknown = sorted(set(values) - set(settings[method]))
        if unknown:
            raise ValueError(
                f"{method} has no setting {', '.join(unknown)}; its settings are {', '.join(sorted(settings[method]))}"
            )
        settings[method].update(values)
    return settings


def table_splits(
    table: str, classes: list[int] | None, *, seed: int = 0, root=None, device="cpu"
) -> dict[str, OneClassSplit]:
    """The one-class splits of a table, by case: one per normal class under
    protocol 2 (``classes``), the talk's three COIL-100 rows under protocol 1,
    or one per medical set present under the data root (a line says which are
    missing), one per MVTec category (``classes``: their names), or the one
    magnetic-tile split. Lecture 1 (COIL-100: Lecture 4; medical: Lecture 5;
    MVTec and magnetic tiles: Lecture 6)."""
    spec = get_table(table)
    size = spec.image_shape[-1]
    if spec.protocol == 4:
        return {"magnetic-tile": magnetic_tile_split(root, size=size, seed=seed, progress=False)}
    if spec.protocol == 3:
        return {c: mvtec_split(c, root, size=size, seed=seed) for c in classes}
    if spec.protocol == 0:
        present = [name for name, here in available_medical(root).items() if here]
        for name in sorted(set(MEDICAL_SETS) - set(present)):
            print(f"medical: {name} is not under the data root; get it from {MEDICAL_SETS[name].source}")
        if not present:
            load_medical(next(iter(MEDICAL_SETS)), root)  # raises the error that says where to get it
        splits = {}
        for name in present:
            images, labels = load_medical(name, root, size=spec.image_shape[-1])
            splits[name] = medical_split(images.to(device), labels.to(device), seed=seed)
        return splits
    if spec.protocol == 2:
        train = load_dataset(spec.dataset, True, root=root, device=device)
        test = load_dataset(spec.dataset, False, root=root, device=device)
        return {str(c): protocol2_split(train, test, c) for c in classes}
    images, labels = load_coil100(root, size=spec.image_shape[-1], device=device)
    return {
        f"{n}-{fraction:.2f}": coil100_split(images, labels, n_normal_classes=n, anomaly_fraction=fraction, seed=seed)
        for n, fraction in COIL100_SETTINGS
    }


def run_table(
    table: str,
    methods: list[str],
    classes: list[int] | None = None,
    *,
    profile: str = "quick",
    seed: int = 0,
    device=None,
    root=None,
    progress: bool = True,
    changes: dict[str, dict] | None = None,
    stacked: bool | None = None,
    checkpoints=None,
    checkpoint_every: int = 1,
    n_train: int | None = None,
) -> dict:
    """Train every method on every case of a table (a normal class; for
    COIL-100, one of the talk's rows) and return the results with their
    provenance (see :func:`~anomaly_edu.results.provenance`). Results are AUROC
    in percent, and for protocol 1, where a validation set exists, also F1 at
    the threshold chosen on validation. ``classes`` are the normal classes of a
    protocol-2 table (default all ten). ``changes`` alters the profile's settings
    (see :func:`parse_changes`) and is recorded. ``stacked`` trains the models of
    a stackable method (see :mod:`anomaly_edu.methods`) side by side
    (:mod:`anomaly_edu.batched`); by default it does so on a GPU only, where it
    is faster. With a ``checkpoints`` folder the run survives interruption:
    rerun the same call and it skips the finished detectors and resumes the
    one in progress (see :func:`open_checkpoints`; one model at a time, not
    stacked). ``n_train`` trains on that many of each case's normal training
    images, for as many gradient updates as the whole set gets (see
    :func:`fewer_training_images`). Everything is checked before anything
    trains. Lecture 1 (COIL-100, stacking and checkpoints: Lecture 4;
    ``n_train``: Lecture 7). The cifar10-ablation
    table goes to :func:`run_puzzle_ablation` (Lecture 5)."""
    spec = get_table(table)
    if spec.protocol == 1 and classes is not None:
        raise ValueError(
            f"{table} has fixed rows (the talk's {', '.join(str(n) for n, _ in COIL100_SETTINGS)} "
            "normal classes); drop the classes"
        )
    if spec.protocol in (0, 4) and classes is not None:
        raise ValueError(f"{table} has one row per data set, not normal classes; drop the classes")
    if n_train is not None and (table in ("generality", *PUZZLE_ABLATIONS) or int(n_train) < 1):
        raise ValueError(
            f"n_train must be a positive number of images, on a table other than generality and "
            f"{' and '.join(PUZZLE_ABLATIONS)}; got n_train={n_train!r} on {table}"
        )
    if table == "generality":
        options = dict(profile=profile, seed=seed, device=device, root=root, progress=progress, changes=changes)
        return run_generality(methods, classes, **options, checkpoints=checkpoints, checkpoint_every=checkpoint_every)
    if table == "mnist-attack":  # the talk's Figure 10 attacks detectors of digit 8
        classes = [8] if classes is None else classes
        unattackable = [m for m in methods if not hasattr(METHODS[m].detector, "differentiable_score")]
        if unattackable:
            raise ValueError(
                f"the {table} table attacks each detector through the gradient of its score; "
                f"{', '.join(unattackable)} has none: leave it out"
            )
    classes = list(range(10)) if classes is None and spec.protocol == 2 else classes
    if spec.protocol == 3:
        classes = mvtec_categories(classes, root)
    check_methods(methods, spec.image_shape, where=f"the {table} table")
    if table in PUZZLE_ABLATIONS:  # one method, in three variants
        if list(methods) != ["puzzle-ae"]:
            raise ValueError(
                f"the {table} table compares the variants of puzzle-ae, its only method; "
                f"run it with --methods puzzle-ae (or no --methods), not {', '.join(methods)}"
            )
        options = dict(profile=profile, seed=seed, device=device, root=root, progress=progress, changes=changes)
        options |= dict(checkpoints=checkpoints, checkpoint_every=checkpoint_every)
        return run_puzzle_ablation(classes, table=table, **options)
    unused = sorted(set(changes or {}) - set(methods) - ({"stress"} if table == "mnist-attack" else set()))
    if unused:
        raise ValueError(
            f"settings are changed for {', '.join(unused)}, which this run does not train; "
            f"add it to the methods or drop the change"
        )
    settings = apply_changes(get_profile(profile, spec.dataset), changes or {})
    missing = [m for m in methods if m not in settings]
    if missing:
        raise ValueError(
            f"profile {profile!r} has no settings for {', '.join(missing)}; add them to anomaly_edu/profiles.py"
        )
    if checkpoints is not None and stacked:
        raise ValueError("stacked training has no checkpoints: resume with --stacked no (one model at a time)")
    device = pick_device(device)
    start, code_state = time.perf_counter(), git_state()
    splits = table_splits(table, classes, seed=seed, root=root, device=device)
    if n_train is not None:
        splits, settings = fewer_training_images(splits, settings, methods, int(n_train), seed=seed)
    stacked = (device.type == "cuda" and checkpoints is None) if stacked is None else stacked
    side_by_side = sorted(m for m in methods if stacked and METHODS[m].stackable and len(splits) > 1)
    used = {
        "table": table,
        "dataset": spec.dataset,
        "protocol": spec.protocol,
        "profile": profile,
        "changed_from_profile": changes or {},
        "seed": seed,
        "n_train": n_train,
        "cases": list(splits),
        "stacked_training": side_by_side,
        "methods": {m: settings[m] for m in methods},
    }
    if spec.protocol in (2, 3):
        used["classes"] = classes  # the normal classes, or the MVTec categories
    if table == "mnist-attack":
        used["attack"] = settings["stress"]
    finished = {} if checkpoints is None else open_checkpoints(checkpoints, {**used, "commit": code_state["commit"]})
    resumed = bool(finished) or checkpoints is not None and any(Path(checkpoints).glob("*.pt"))
    results = {}
    for m in methods:
        detectors = {
            case: make_detector(m, case_settings(table, case, settings), seed=seed, device=device, progress=progress)
            for case in splits
        }
        if m in side_by_side:
            fit_stacked(list(detectors.values()), [split.x_train for split in splits.values()], progress=progress)
        results[m] = {"auc": {}}
        for case, detector in detectors.items():
            numbers = finished.get(m, {}).get(case)
            if numbers is None:
                if m not in side_by_side:
                    fit_with_checkpoint(detector, splits[case], checkpoints, f"{m}-{case}", checkpoint_every)
                numbers = evaluate(detector, splits[case], spec.protocol)
                if table == "mnist-attack":
                    numbers["attack"] = attack_numbers(
                        detector, splits[case], settings["stress"], seed=seed, progress=progress
                    )
                if checkpoints is not None:
                    finished.setdefault(m, {})[case] = numbers
                    record_finished(checkpoints, finished)
            for metric, value in numbers.items():
                results[m].setdefault(metric, {})[case] = value
            if progress:
                print(f"{table} {case} {m}: AUC {results[m]['auc'][case]:.1f}", flush=True)
        results[m]["mean"] = round(float(np.mean(list(results[m]["auc"].values()))), 2)
    metric = {
        1: "AUROC and F1 (%), F1 at the threshold chosen on validation",
        3: "image AUROC, pixel AUROC and AU-PRO up to FPR 0.3 (%), pixel metrics at 128x128",
        4: "image AUROC, pixel AUROC and AU-PRO up to FPR 0.3 (%), pixel metrics at each tile's own size",
    }.get(spec.protocol, "AUROC (%)")
    prov = provenance(settings=used, wall_time_s=time.perf_counter() - start, device=device, git=code_state)
    if resumed:
        prov["resumed"] = True  # from checkpoints; wall_time_s counts the last session only
    return {"table": table, "metric": metric, "results": results, "provenance": prov}


def fewer_training_images(
    splits: dict[str, OneClassSplit], settings: dict, methods: list[str], n_train: int, *, seed: int = 0
) -> tuple[dict[str, OneClassSplit], dict]:
    """Each split with a seeded random ``n_train`` of its normal training
    images, and the settings that train on them fairly: as many epochs as give
    the same number of gradient updates (batches) as the whole training set
    would, so that a smaller set is not also a shorter training; a validation
    set held out of the training images (Puzzle-AE's ``val_size``) shrinks in
    proportion. Lecture 7 (data efficiency)."""
    sizes = {len(split.x_train) for split in splits.values()}
    if len(sizes) != 1:
        raise ValueError(
            f"n_train needs cases with equally many training images, got {sorted(sizes)}: "
            "run one normal class at a time (e.g. classes [8])"
        )
    n_full = sizes.pop()
    if not 1 <= n_train <= n_full:
        raise ValueError(f"n_train={n_train}: the training set has {n_full} images; choose 1 <= n_train <= {n_full}")
    settings = {**settings}
    for m in methods:
        values = settings[m] = dict(settings[m])
        if values.get("val_size"):
            values["val_size"] = max(1, round(values["val_size"] * n_train / n_full))
        if "epochs" in values:
            batch = values.get("batch_size", n_full)
            updates = values["epochs"] * math.ceil(n_full / batch)
            values["epochs"] = math.ceil(updates / math.ceil(n_train / batch))
    smaller = {}
    for case, split in splits.items():
        order = torch.randperm(n_full, generator=torch.Generator().manual_seed(seed))[:n_train]
        smaller[case] = replace(split, x_train=split.x_train[order.to(split.x_train.device)])
    return smaller, settings


def run_seeds(table: str, methods: list[str], seeds: list[int], classes: list[int] | None = None, **options) -> dict:
    """:func:`run_table` once per seed (the split, where it is drawn, and every
    detector's initialisation follow the seed); each number (AUROC, and the FPR
    or F1 where the table has them) becomes the mean over the seeds, with its
    standard deviation (``auc_std``, ``fpr_995_std``, ...: n - 1 in the
    denominator) and every seed's numbers (``auc_per_seed``, ...). With
    ``checkpoints``, each seed has its own subfolder. Lecture 5."""
    if table in PUZZLE_ABLATIONS:
        raise ValueError(f"the {table} table runs with one seed: use --seed, not --seeds")
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"give at least two different seeds for a mean and a spread, got {seeds}")
    folder = options.pop("checkpoints", None)
    runs = []
    for seed in seeds:
        where = None if folder is None else Path(folder) / f"seed-{seed}"
        runs.append(run_table(table, methods, classes, seed=seed, checkpoints=where, **options))
    results = {}
    for m in methods:
        results[m] = {}
        for metric in [key for key in METRIC_NAMES if key in runs[0]["results"][m]]:
            per_seed = {str(seed): run["results"][m][metric] for seed, run in zip(seeds, runs)}
            values = {case: [per_seed[str(seed)][case] for seed in seeds] for case in per_seed[str(seeds[0])]}
            results[m][metric] = {case: round(float(np.mean(v)), 2) for case, v in values.items()}
            results[m][f"{metric}_std"] = {case: round(float(np.std(v, ddof=1)), 2) for case, v in values.items()}
            results[m][f"{metric}_per_seed"] = per_seed
        results[m]["mean"] = round(float(np.mean(list(results[m]["auc"].values()))), 2)
    prov = dict(runs[0]["provenance"])
    prov["settings"] = {k: v for k, v in prov["settings"].items() if k != "seed"} | {"seeds": list(seeds)}
    prov["wall_time_s"] = round(sum(run["provenance"]["wall_time_s"] for run in runs), 1)
    metric = runs[0]["metric"] + f", mean and standard deviation over {len(seeds)} seeds"
    return {"table": table, "metric": metric, "results": results, "provenance": prov}


def run_puzzle_ablation(
    classes: list[int] | None = None,
    *,
    table: str = "cifar10-ablation",
    variants=VARIANTS,
    profile: str = "quick",
    seed: int = 0,
    device=None,
    root=None,
    progress: bool = True,
    changes: dict[str, dict] | None = None,
    checkpoints=None,
    checkpoint_every: int = 1,
) -> dict:
    """The talk's Table 9 (the ``cifar10-ablation`` table): Puzzle-AE's
    ``variants`` on CIFAR-10 under protocol 2, each scored by the mean, the
    maximum and the minimum of its normalised puzzle errors; with
    ``table="mnist-ablation"`` the same on MNIST, which the talk does not
    report (the course's, for where CIFAR-10 is absent). One detector is
    trained per variant and normal class (default all ten); its test images
    are scored once (``permutation_scores``) and the three aggregations come
    from those same errors. The rows are named as the talk's ("PAE avg", ...,
    "CPAE-G min"); the result has the shape of :func:`run_table`'s, and
    ``changes``, ``checkpoints`` and ``checkpoint_every`` work as there.
    Lecture 5."""
    if table not in PUZZLE_ABLATIONS:
        raise ValueError(f"the ablation tables are {', '.join(PUZZLE_ABLATIONS)}; got {table!r}")
    spec = TABLES[table]
    if not variants or not set(variants) <= set(VARIANTS):
        raise ValueError(f"Puzzle-AE's variants are {', '.join(VARIANTS)}; got {list(variants)}")
    others = sorted(set(changes or {}) - {"puzzle-ae"})
    if others:
        raise ValueError(f"the {table} table trains only puzzle-ae; drop the changes to {', '.join(others)}")
    classes = list(range(10)) if classes is None else list(classes)
    if not classes or not set(classes) <= set(range(10)):
        raise ValueError(f"{spec.dataset}'s classes are 0 to 9, got {classes}")
    settings = apply_changes(get_profile(profile, spec.dataset), changes or {})["puzzle-ae"]
    device = pick_device(device)
    start, code_state = time.perf_counter(), git_state()
    splits = table_splits(table, classes, seed=seed, root=root, device=device)
    used = {
        "table": table,
        "dataset": spec.dataset,
        "protocol": spec.protocol,
        "profile": profile,
        "changed_from_profile": changes or {},
        "seed": seed,
        "cases": list(splits),
        "classes": classes,
        "variants": list(variants),
        "aggregations": list(AGGREGATIONS),
        "methods": {"puzzle-ae": {k: v for k, v in settings.items() if k not in ("variant", "aggregation")}},
    }
    finished = {} if checkpoints is None else open_checkpoints(checkpoints, {**used, "commit": code_state["commit"]})
    resumed = bool(finished) or checkpoints is not None and any(Path(checkpoints).glob("*.pt"))
    results = {f"{v.upper()} {a}": {"auc": {}} for a in AGGREGATIONS for v in variants}  # the talk's row names
    for case, split in splits.items():
        for variant in variants:
            name = f"{variant}-{case}"  # finished: {name: {aggregation: AUROC}}
            if name not in finished:
                one_variant = {"puzzle-ae": {**settings, "variant": variant}}
                detector = make_detector("puzzle-ae", one_variant, seed=seed, device=device, progress=progress)
                fit_with_checkpoint(detector, split, checkpoints, name, checkpoint_every)
                errors = detector.permutation_scores(split.x_test)  # (N, P), once for all aggregations
                finished[name] = {
                    a: round(100 * auroc(split.y_test, aggregate(errors, a).cpu().numpy()), 2) for a in AGGREGATIONS
                }
                if checkpoints is not None:
                    record_finished(checkpoints, finished)
            for aggregation, auc in finished[name].items():
                results[f"{variant.upper()} {aggregation}"]["auc"][case] = auc
            if progress:
                aucs = ", ".join(f"{a} {auc:.1f}" for a, auc in finished[name].items())
                print(f"{table} {case} {variant}: AUC {aucs}", flush=True)
    for row in results.values():
        row["mean"] = round(float(np.mean(list(row["auc"].values()))), 2)
    prov = provenance(settings=used, wall_time_s=time.perf_counter() - start, device=device, git=code_state)
    if resumed:
        prov["resumed"] = True  # from checkpoints; wall_time_s counts the last session only
    return {"table": table, "metric": "AUROC (%)", "results": results, "provenance": prov}


def run_generality(
    methods: list[str],
    classes: list[int] | None = None,
    *,
    checkpoints=None,
    **options,
) -> dict:
    """The talk's generality table: ``methods`` (GT and Puzzle-AE) on every
    data set of that table that is under the data root (MNIST, CIFAR-10, MVTec
    AD, head CT, brain MRI; a line names each one missing). Each column is the
    mean AUROC of the table that covers the data set, run by :func:`run_table`
    with the same ``options``; ``classes`` narrows MNIST and CIFAR-10 to some
    normal classes. Every run's settings are kept in the provenance. Lecture 6."""
    root = options.get("root")
    present = {
        "mnist": available_datasets(root)["mnist"],
        "cifar10": available_datasets(root)["cifar10"],
        "mvtec": any(available_mvtec(root).values()),
        "medical": any(available_medical(root).values()),
    }
    for table, here in present.items():
        if not here:
            print(f"generality: no {table} data under the data root; its column is left out")
    if not any(present.values()):
        raise ValueError("the generality table needs MNIST, CIFAR-10, MVTec AD or a medical set under the data root")
    for table in (t for t, here in present.items() if here):  # refuse a method before anything trains
        check_methods(methods, TABLES[table].image_shape, where=f"the generality table ({table})")
    start, runs = time.perf_counter(), {}
    for table in (t for t, here in present.items() if here):
        where = None if checkpoints is None else Path(checkpoints) / table
        narrowed = classes if table in ("mnist", "cifar10") else None
        runs[table] = run_table(table, methods, narrowed, checkpoints=where, **options)
    results = {m: {"auc": {}} for m in methods}
    for column, table in GENERALITY_COLUMNS.items():
        if table not in runs:
            continue
        for m in methods:
            if table == "medical":  # one column per medical set present
                ours = runs[table]["results"][m]["auc"].get({v: k for k, v in TALK_MEDICAL_NAMES.items()}[column])
            else:
                ours = runs[table]["results"][m]["mean"]
            if ours is not None:
                results[m]["auc"][column] = ours
    for m in methods:
        results[m]["mean"] = round(float(np.mean(list(results[m]["auc"].values()))), 2)
    first = next(iter(runs.values()))["provenance"]
    used = {
        "table": "generality",
        "protocol": "of each data set",
        "profile": options.get("profile", "quick"),
        "changed_from_profile": options.get("changes") or {},
        "seed": options.get("seed", 0),
        "cases": list(results[methods[0]]["auc"]),
        "runs": {table: run["provenance"]["settings"] for table, run in runs.items()},
    }
    prov = {**first, "settings": used, "wall_time_s": round(time.perf_counter() - start, 1)}
    return {
        "table": "generality",
        "metric": "mean AUROC (%) over each data set's cases",
        "results": results,
        "provenance": prov,
    }


def evaluate(detector, split: OneClassSplit, protocol: int) -> dict[str, float]:
    """A fitted detector's AUROC on a split's test set, in percent; under
    protocol 2 and on the medical sets also its false-positive rate at a
    true-positive rate of 99.5% (the talk's Figure 3; its medical table gives an
    FPR without saying at which TPR), under protocol 1 its F1 at the threshold
    chosen on validation. Where the split
    has defect masks and the detector an anomaly map (``score_and_map``), also the pixel AUROC and
    the AU-PRO (up to FPR 0.3), each map resized to its mask's size. Lecture 1
    (pixel metrics: Lecture 6)."""
    with_maps = split.masks_test is not None and hasattr(detector, "score_and_map")
    scores, maps = detector.score_and_map(split.x_test) if with_maps else (detector.score(split.x_test), None)
    numbers = {"auc": round(100 * auroc(split.y_test, scores), 2)}
    if protocol in (2, MEDICAL_PROTOCOL):  # Figure 3: the false alarms when 99.5% of the anomalies are caught
        numbers["fpr_995"] = round(100 * fpr_at_tpr(split.y_test, scores, 0.995), 2)
    if protocol == 1:
        threshold = choose_threshold(split.y_val, detector.score(split.x_val))
        numbers["f1"] = round(100 * f1_at_threshold(split.y_test, scores, threshold), 2)
    if with_maps:
        maps = resize_maps(maps, [mask.shape for mask in split.masks_test])
        numbers["pixel_auc"] = round(100 * pixel_auroc(split.masks_test, maps), 2)
        numbers["au_pro"] = round(100 * au_pro(split.masks_test, maps), 2)
    return numbers


def mvtec_categories(categories: list[str] | None, root=None) -> list[str]:
    """The MVTec categories a run covers: those given (checked), or every one
    under the data root. Lecture 6."""
    if categories is None:
        categories = [name for name, here in available_mvtec(root).items() if here]
        if not categories:
            mvtec_split(MVTEC_CATEGORIES[0], root)  # raises the error that says where to get the data
    unknown = [c for c in categories if c not in MVTEC_CATEGORIES]
    if unknown:
        raise ValueError(
            f"unknown MVTec categories {', '.join(map(str, unknown))}; known: {', '.join(MVTEC_CATEGORIES)}"
        )
    return list(categories)


def case_settings(table: str, case: str, settings: dict) -> dict:
    """The settings of one case of a table: the profile's, except that on the
    MVTec textures Puzzle-AE's puzzles swap two tiles (as in its code). Lecture 6."""
    if table == "mvtec" and case in MVTEC_TEXTURES and "puzzle-ae" in settings:
        return {**settings, "puzzle-ae": {**settings["puzzle-ae"], "puzzles": "swaps"}}
    return settings


# ---------------------------------------------------------------- runs that survive interruption

FINISHED = "finished.json"  # in a checkpoint folder: the run's settings and its finished results


def open_checkpoints(folder, run: dict) -> dict:
    """The results already finished in the checkpoint ``folder`` of ``run``
    (the settings of a :func:`run_table` call), as {method: {case: numbers}};
    none for a new folder, where the run's settings are written first. A
    folder of another run is refused. Lecture 4."""
    folder, run = Path(folder), json.loads(json.dumps(run))  # the settings as the file gives them back
    path = folder / FINISHED
    if path.exists():
        stored = json.loads(path.read_text())
        differing = sorted(k for k in set(stored["run"]) | set(run) if stored["run"].get(k) != run.get(k))
        if differing:
            raise ValueError(
                f"{folder} holds the checkpoints of another run (its {', '.join(differing)} differ); "
                "resume with the command that made them, or give a new folder"
            )
        return stored["finished"]
    if folder.is_dir() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty and has no {FINISHED}: give a new folder for the checkpoints")
    write_json_atomically({"run": run, "finished": {}}, path)
    return {}


def record_finished(folder, finished: dict) -> None:
    """Add the ``finished`` results to the checkpoint folder's record (atomically). Lecture 4."""
    path = Path(folder) / FINISHED
    write_json_atomically({**json.loads(path.read_text()), "finished": finished}, path)


def fit_with_checkpoint(detector, split: OneClassSplit, folder, name: str, checkpoint_every: int = 1) -> None:
    """``detector.fit(split.x_train)``, with the checkpoint ``folder/name.pt``
    when there is a folder and the detector trains in epochs (the OCSVM fits in
    one go). A detector that takes normal validation images (Puzzle-AE) gets the
    split's, when it has some. Lecture 4 (validation images: Lecture 5)."""
    takes = inspect.signature(detector.fit).parameters
    options = {}
    normal_val = split.x_val[split.y_val == 0]
    if "x_val" in takes and len(normal_val):
        options["x_val"] = normal_val
    if folder is not None and "checkpoint" in takes:
        options.update(checkpoint=Path(folder) / f"{name}.pt", checkpoint_every=checkpoint_every)
    detector.fit(split.x_train, **options)


def merge_results(parts: list[dict]) -> dict:
    """One table from runs of the same command on different normal classes (for
    example ``--classes 0-4`` and ``--classes 5-9`` on two cores or in two GPU
    sessions). The parts must come from the same table, profile, seed, methods
    and settings, and from the same code: one commit, or commits at which the
    package's files are the same (git checks; the merged provenance then lists
    them under ``commits``). They must not share a class. Every per-class
    number (AUROC, and the FPR or F1 where the parts have them) is joined,
    means are recomputed over all classes, ``wall_time_s`` is the parts' wall
    times added up, and each part's device, date and time are kept under
    ``parts``. Lecture 4."""
    if len(parts) < 2:
        raise ValueError("merging needs at least two result files")
    if not all(isinstance(part, dict) and {"table", "results", "provenance"} <= set(part) for part in parts):
        raise ValueError("merge takes the JSON files that reproduce --out writes; one of these is not one")
    if any(part.get("table") not in TABLES or TABLES[part["table"]].protocol != 2 for part in parts):
        names = ", ".join(name for name, table in TABLES.items() if table.protocol == 2)
        raise ValueError(f"only protocol-2 tables ({names}) can be merged")
    first = parts[0]["provenance"]

    def same_run(prov):  # everything that must match, i.e. the settings without the classes
        used = {k: v for k, v in prov["settings"].items() if k not in ("classes", "cases", "stacked_training")}
        return prov.get("uncommitted_changes"), used

    for part in parts[1:]:
        if part["table"] != parts[0]["table"] or same_run(part["provenance"]) != same_run(first):
            raise ValueError(
                "the parts are not runs of the same command: their table, profile, seed, "
                "methods or settings differ, or one had uncommitted changes; rerun the odd one out "
                "at the same commit and settings"
            )
    commits = sorted({c for part in parts for c in part["provenance"].get("commits", [part["provenance"]["commit"]])})
    if len(commits) > 1 and (
        any(part["provenance"].get("uncommitted_changes") for part in parts) or not same_code_at(commits)
    ):
        short = ", ".join(commit[:10] for commit in commits)
        raise ValueError(
            f"the parts come from commits {short}, whose package code differs (or that git here cannot "
            f"compare); rerun the odd one out at the others' commit, e.g. from `git worktree add ../parts "
            f"{commits[0][:10]}`"
        )
    classes = [c for part in parts for c in part["provenance"]["settings"]["classes"]]
    shared = sorted({c for c in classes if classes.count(c) > 1})
    if shared:
        raise ValueError(f"class(es) {shared} appear in more than one part; merge runs of disjoint classes")
    classes = sorted(classes)
    results = {}
    for method in parts[0]["results"]:
        results[method] = {}
        for metric in [key for key in METRIC_NAMES if all(key in part["results"][method] for part in parts)]:
            joined = {}
            for part in parts:
                joined.update(part["results"][method][metric])
            missing = [c for c in classes if str(c) not in joined]
            if missing:
                raise ValueError(f"no {metric} of {method} for class(es) {missing} in the parts: is one edited?")
            results[method][metric] = {str(c): joined[str(c)] for c in classes}
        results[method]["mean"] = round(float(np.mean(list(results[method]["auc"].values()))), 2)
    stacked = sorted({m for part in parts for m in part["provenance"]["settings"].get("stacked_training", [])})
    merged_settings = {**first["settings"], "classes": classes}
    if "stacked_training" in merged_settings:  # cifar10-ablation has none
        merged_settings["stacked_training"] = stacked
    if "cases" in merged_settings:
        merged_settings["cases"] = [str(c) for c in classes]
    merged = {
        **first,
        "settings": merged_settings,
        "date": max(part["provenance"]["date"] for part in parts),
        "wall_time_s": round(sum(part["provenance"]["wall_time_s"] for part in parts), 1),
        "parts": [piece for part in parts for piece in _pieces(part["provenance"])],
    }
    if len(commits) > 1:
        merged["commits"] = commits  # the same package code at each (checked above)
    devices = {part["provenance"]["device"] for part in parts}
    if len(devices) > 1:
        merged["device"] = " + ".join(sorted(devices))
    return {"table": parts[0]["table"], "metric": parts[0]["metric"], "results": results, "provenance": merged}


def _pieces(prov: dict) -> list[dict]:
    """The runs a results file was made of: its own, or those of a merged file."""
    return prov.get("parts") or [
        {key: prov[key] for key in ("device", "date", "wall_time_s")} | {"classes": prov["settings"]["classes"]}
    ]


def format_comparison(result: dict) -> str:
    """A text table of our numbers beside the talk's, one pair of rows per
    method, or per row of the talk's table such as "CPAE-G avg": AUROC, and
    FPR at TPR 99.5%, F1, pixel AUROC and AU-PRO where the results have them
    (the talk's tables have only image AUROC and F1). Lecture 1 (pixel metrics: Lecture 6)."""
    used = result["provenance"]["settings"]
    cases = used.get("cases") or [str(c) for c in used["classes"]]
    changed = ", ".join(
        f"{m}.{k}={v}" for m, values in used.get("changed_from_profile", {}).items() for k, v in values.items()
    )
    lines = [
        f"{result['table']} protocol {used['protocol']}, in %, profile {used['profile']}"
        + (f" (changed: {changed})" if changed else "")
    ]
    metrics = [key for key in METRIC_NAMES if any(key in ours for ours in result["results"].values())]
    width = max(16, 7 + max(map(len, result["results"])))  # of the labels, e.g. "CPAE-G avg (ours)"
    column = max(8, 2 + max(map(len, cases)))
    for key in metrics:
        metric = METRIC_NAMES[key]
        talk = talk_table(result["table"], metric)
        head = f"{metric:<{width}}" + "".join(f"{c:>{column}}" for c in cases) + f"{'mean':>8}"
        lines += [head, "-" * len(head)]
        for method, ours in result["results"].items():
            if key not in ours:
                lines.append(f"{method + ' (ours)':<{width}}  (no {metric}: {method} makes no anomaly map)")
                continue
            values = [ours[key].get(c, float("nan")) for c in cases]
            lines.append(
                f"{method + ' (ours)':<{width}}"
                + "".join(f"{v:>{column}.1f}" for v in values)
                + f"{np.nanmean(values):>8.1f}"
            )
            if f"{key}_std" in ours:
                spread = [ours[f"{key}_std"][c] for c in cases]
                lines.append(f"{'  ± std':<{width}}" + "".join(f"{v:>{column}.2f}" for v in spread))
            row = METHODS[method].talk_row if method in METHODS else method if method in talk else None
            if row in talk:
                values = [talk[row].get(c, float("nan")) for c in cases]
                lines.append(
                    f"{row + ' (talk)':<{width}}"
                    + "".join(f"{v:>{column}.1f}" for v in values)
                    + f"{np.nanmean(values):>8.1f}"
                )
                spread = talk_table(result["table"], f"{metric}_std") if result["table"] == "medical" else {}
                if row in spread:
                    lines.append(f"{'  ± std':<{width}}" + "".join(f"{spread[row][c]:>{column}.2f}" for c in cases))
            elif key == "auc" and row in (summary := talk_summary(result["table"])):
                lines.append(
                    f"{row + ' (talk)':<{width}} mean over all ten classes {summary[row]:.1f} (no per-class numbers)"
                )
            elif key in ("auc", "f1") and get_table(result["table"]).talk_csv is not None:
                lines.append(f"{'':<{width}}(the talk has no {method} row)")
    if result["table"] == "mvtec":
        lines += mvtec_means(result)
    if result["table"] == "mnist-attack":
        lines += format_attack(result)
    for table, run in used.get("runs", {}).items():  # generality: what each column of ours covers
        covered = f"normal classes {run['classes']}" if "classes" in run else f"cases {', '.join(run['cases'])}"
        lines.append(f"ours, {table}: mean over {covered}")
    if result["table"] == "mnist-attack":
        lines.append("talk: its Figure 10 prints no numbers, only its reading (Puzzle-AE degrades least)")
    elif get_table(result["table"]).talk_csv is None and (
        result["table"] in PUZZLE_ABLATIONS or not talk_summary(result["table"])
    ):
        lines.append(f"the talk has no {result['table']} table: these are our numbers only")
    else:
        lines.append("talk: the seed talk's table; mean over the cases shown")
    if result["table"] == "medical" and "fpr_995" in metrics:
        lines.append("talk: its medical FPR does not say at which TPR; ours is at TPR 99.5% (its Figure 3's)")
    if "seeds" in used:
        lines.append(f"ours: mean over seeds {used['seeds']}; ± is the standard deviation over them")
    if result["table"] == "coil100":
        lines.append("the talk chose its F1 threshold on the test set; we choose it on validation")
    return "\n".join(lines)


def format_attack(result: dict) -> list[str]:
    """The lines of the mnist-attack table: AUROC per eps, one row per method
    and kind of attack. Lecture 7."""
    attack = result["provenance"]["settings"]["attack"]
    lines = []
    for case in result["provenance"]["settings"]["cases"]:
        first = next(iter(result["results"].values()))["attack"][case]
        eps_values = list(first["normal"])
        lines.append(
            f"AUROC after a test-time attack, normal class {case}: {first['n_normal']} normal test images and "
            f"{first['n_anomalies']} anomalies, PGD-{attack['steps']} in an L-inf ball of radius eps"
        )
        head = f"{'eps':<28}" + "".join(f"{e:>8}" for e in eps_values)
        lines += [head, "-" * len(head)]
        for method, ours in result["results"].items():
            for kind, label in (("normal", "normal attacked"), ("both", "both attacked")):
                values = ours["attack"][case][kind]
                lines.append(f"{f'{method} ({label})':<28}" + "".join(f"{values[e]:>8.1f}" for e in eps_values))
    return lines


def mvtec_means(result: dict) -> list[str]:
    """Lines with each method's mean image AUROC over the MVTec textures, the
    objects and all categories run, ours beside the talk's. Lecture 6."""
    talk, lines = talk_table("mvtec"), []
    objects = tuple(c for c in MVTEC_CATEGORIES if c not in MVTEC_TEXTURES)
    for method, ours in result["results"].items():
        row = METHODS[method].talk_row if method in METHODS else None
        for label, group in (("textures", MVTEC_TEXTURES), ("objects", objects), ("categories", MVTEC_CATEGORIES)):
            cases = [c for c in group if c in ours["auc"]]
            if cases:
                mean = np.mean([ours["auc"][c] for c in cases])
                line = f"{method}: mean image AUC over the {len(cases)} {label} run: ours {mean:.1f}"
                if row in talk:
                    line += f", talk {np.mean([talk[row][c] for c in cases]):.1f}"
                lines.append(line)
    return lines
