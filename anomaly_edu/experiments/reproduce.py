"""Reproduce the talk's tables with our code, and record where the numbers came from.

``python -m anomaly_edu reproduce mnist --methods ae,dae,ocsvm,dsvdd --classes 0-9
--profile quick --seed 0 --out results/mnist_quick.json`` trains one detector per
method and normal class, prints our AUCs beside the talk's, and writes a JSON
file with the numbers and their provenance. Every table runs through
:func:`run_table`, which goes down the layers: the table's definition
(:mod:`.tables`), its splits (:mod:`.splits`), a detector per case from the
registry (:mod:`.methods`), its ``fit`` and ``anomaly_score``, then
:func:`evaluate`. Printing and merging the results is :mod:`.report`'s.
Introduced in Lecture 1.
"""

from __future__ import annotations

__lecture__ = 1

import time
from pathlib import Path

import numpy as np

from ..anomaly_maps import resize_maps
from ..data import OneClassSplit, available_datasets
from ..data.medical import MEDICAL_PROTOCOL, available_medical
from ..data.mvtec import available_mvtec
from ..metrics import au_pro, auroc, choose_threshold, f1_at_threshold, fpr_at_tpr, pixel_auroc
from ..profiles import get_profile
from ..puzzle_ae import AGGREGATIONS, VARIANTS, aggregate
from ..score_attacks import attack_numbers
from ..training import pick_device
from .batched import fit_stacked
from .checkpoints import fit_with_checkpoint, open_checkpoints, record_finished
from .methods import METHODS, check_methods, make_detector
from .results import RunStart, with_provenance
from .splits import fewer_training_images, table_splits
from .tables import (
    COIL100_SETTINGS,
    GENERALITY_COLUMNS,
    METRIC_NAMES,
    PUZZLE_ABLATIONS,
    TABLES,
    TALK_MEDICAL_NAMES,
    apply_changes,
    case_settings,
    get_table,
    mvtec_categories,
)


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
    provenance (see :func:`~anomaly_edu.experiments.results.provenance`). Results are AUROC
    in percent, and for protocol 1, where a validation set exists, also F1 at
    the threshold chosen on validation. ``classes`` are the normal classes of a
    protocol-2 table (default all ten). ``changes`` alters the profile's settings
    (see :func:`~anomaly_edu.experiments.tables.parse_changes`) and is recorded. ``stacked``
    trains the models of a stackable method (see :mod:`anomaly_edu.experiments.methods`) side by
    side (:mod:`anomaly_edu.experiments.batched`); by default it does so on a GPU only, where it
    is faster. With a ``checkpoints`` folder the run survives interruption:
    rerun the same call and it skips the finished detectors and resumes the
    one in progress (see :mod:`~anomaly_edu.experiments.checkpoints`; one model at a time, not
    stacked). ``n_train`` trains on that many of each case's normal training
    images, for as many gradient updates as the whole set gets (see
    :func:`fewer_training_images`). Everything is checked before anything
    trains. Lecture 1 (COIL-100, stacking and checkpoints: Lecture 4;
    ``n_train``: Lecture 7).

    The steps, each a function below: refuse what cannot run
    (:func:`refuse_run`); hand the generality and ablation tables to their own
    runners; settle the cases and settings (:func:`table_cases`,
    :func:`run_settings`); load the splits (:func:`table_splits`); then train and
    evaluate one method at a time (:func:`method_results`)."""
    spec = get_table(table)
    refuse_run(table, methods, classes, n_train)
    shared = dict(profile=profile, seed=seed, device=device, root=root, progress=progress, changes=changes)
    shared |= dict(checkpoints=checkpoints, checkpoint_every=checkpoint_every)
    if table == "generality":
        return run_generality(methods, classes, **shared)
    classes = table_cases(table, classes, root)
    check_methods(methods, spec.image_shape, where=f"the {table} table")
    if table in PUZZLE_ABLATIONS:  # one method, in three variants
        if list(methods) != ["puzzle-ae"]:
            raise ValueError(
                f"the {table} table compares the variants of puzzle-ae, its only method; "
                f"run it with --methods puzzle-ae (or no --methods), not {', '.join(methods)}"
            )
        return run_puzzle_ablation(classes, table=table, **shared)
    settings = run_settings(table, methods, profile, changes)
    size = settings.get("images", {}).get("size")  # the profile's image size, where the table resizes
    if checkpoints is not None and stacked:
        raise ValueError("stacked training has no checkpoints: resume with --stacked no (one model at a time)")
    device = pick_device(device)
    run_start = RunStart()
    splits = table_splits(table, classes, seed=seed, root=root, device=device, size=size)
    if n_train is not None:
        splits, settings = fewer_training_images(splits, settings, methods, int(n_train), seed=seed)
    stacked = (device.type == "cuda" and checkpoints is None) if stacked is None else stacked
    side_by_side = sorted(m for m in methods if stacked and METHODS[m].stackable and len(splits) > 1)
    used = recorded_settings(table, profile, changes, seed, splits)
    used |= {"n_train": n_train, "image_shape": list(next(iter(splits.values())).x_train.shape[1:])}
    used |= {"stacked_training": side_by_side, "methods": {m: settings[m] for m in methods}}
    if spec.protocol in (2, 3):
        used["classes"] = classes  # the normal classes, or the MVTec categories
    if table == "mnist-attack":
        used["attack"] = settings["stress"]
    finished, resumed = resume_from(checkpoints, used, run_start)
    run = dict(table=table, splits=splits, settings=settings, seed=seed, device=device, progress=progress)
    run |= dict(finished=finished, checkpoints=checkpoints, checkpoint_every=checkpoint_every)
    results = {m: method_results(m, stacked=m in side_by_side, **run) for m in methods}
    record = {"table": table, "metric": METRIC_OF_PROTOCOL.get(spec.protocol, "AUROC (%)"), "results": results}
    return with_provenance(record, start=run_start, settings=used, device=device, resumed=resumed)


# what the numbers of a table are, by protocol (others: AUROC alone)
METRIC_OF_PROTOCOL = {
    1: "AUROC and F1 (%), F1 at the threshold chosen on validation",
    3: "image AUROC, pixel AUROC and AU-PRO up to FPR 0.3 (%), pixel metrics at 128x128",
    4: "image AUROC, pixel AUROC and AU-PRO up to FPR 0.3 (%), pixel metrics at each tile's own size",
}


def refuse_run(table: str, methods: list[str], classes, n_train) -> None:
    """One clear error, before anything loads or trains, for a run the table
    cannot make: classes on a table with fixed rows, an ``n_train`` it does not
    take, a method Figure 10's attack cannot go through. Lecture 1."""
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
    if table == "mnist-attack":  # the talk's Figure 10 attacks detectors through their score
        unattackable = [m for m in methods if not hasattr(METHODS[m].detector, "differentiable_score")]
        if unattackable:
            raise ValueError(
                f"the {table} table attacks each detector through the gradient of its score; "
                f"{', '.join(unattackable)} has none: leave it out"
            )


def table_cases(table: str, classes, root=None):
    """The cases a run covers: the given normal classes (all ten by default
    under protocol 2; digit 8 for Figure 10's attack), the MVTec categories
    (every one under the data root by default), or None where the table's rows
    are fixed. Lecture 1."""
    spec = get_table(table)
    if table == "mnist-attack" and classes is None:
        return [8]
    if spec.protocol == 2 and classes is None:
        return list(range(10))
    if spec.protocol == 3:
        return mvtec_categories(classes, root)
    return classes


def recorded_settings(table: str, profile: str, changes: dict | None, seed: int, splits: dict) -> dict:
    """What every run's provenance records of its command: the table, its data set and protocol, the
    profile and the changes to it, the seed and the cases. Lecture 4."""
    spec = TABLES[table]
    return {
        "table": table,
        "dataset": spec.dataset,
        "protocol": spec.protocol,
        "profile": profile,
        "changed_from_profile": changes or {},
        "seed": seed,
        "cases": list(splits),
    }


def resume_from(checkpoints, used: dict, run_start: RunStart) -> tuple[dict, bool]:
    """The work a run with ``--resume checkpoints`` finished before ({} without one), and whether it
    resumes at all (a method's checkpoint mid-training counts). Lecture 4."""
    if checkpoints is None:
        return {}, False
    finished = open_checkpoints(checkpoints, {**used, "commit": run_start.git["commit"]})
    return finished, bool(finished) or any(Path(checkpoints).glob("*.pt"))


def run_settings(table: str, methods: list[str], profile: str, changes: dict | None) -> dict:
    """The profile's settings for the table's data set, with ``changes``
    applied; a change for a method the run does not train, or a method the
    profile has no settings for, is refused. Lecture 1."""
    unused = sorted(set(changes or {}) - set(methods) - {"images"} - ({"stress"} if table == "mnist-attack" else set()))
    if unused:
        raise ValueError(
            f"settings are changed for {', '.join(unused)}, which this run does not train; "
            f"add it to the methods or drop the change"
        )
    settings = apply_changes(get_profile(profile, get_table(table).dataset), changes or {})
    missing = [m for m in methods if m not in settings]
    if missing:
        raise ValueError(
            f"profile {profile!r} has no settings for {', '.join(missing)}; add them to anomaly_edu/profiles.py"
        )
    return settings


def method_results(
    method: str,
    *,
    table: str,
    splits: dict[str, OneClassSplit],
    settings: dict,
    seed: int,
    device,
    progress: bool,
    stacked: bool,
    finished: dict,
    checkpoints,
    checkpoint_every: int,
) -> dict:
    """One method on every case of a run: a detector per case, trained (side
    by side when ``stacked``, else one at a time with its checkpoint), then
    evaluated, and attacked on the mnist-attack table. A case ``finished`` in
    the checkpoint folder is taken from there; each new one is recorded as soon
    as it is done. Returns {metric: {case: value}, "mean": mean AUROC}. Lecture 1
    (checkpoints, stacking: Lecture 4; the attack: Lecture 7)."""
    detectors = {
        case: make_detector(method, case_settings(table, case, settings), seed=seed, device=device, progress=progress)
        for case in splits
    }
    if stacked:
        fit_stacked(list(detectors.values()), [split.x_train for split in splits.values()], progress=progress)
    results = {"auc": {}}
    for case, detector in detectors.items():
        numbers = finished.get(method, {}).get(case)
        if numbers is None:
            if not stacked:
                fit_with_checkpoint(detector, splits[case], checkpoints, f"{method}-{case}", checkpoint_every)
            numbers = evaluate(detector, splits[case], get_table(table).protocol)
            if table == "mnist-attack":
                numbers["attack"] = attack_numbers(
                    detector, splits[case], settings["stress"], seed=seed, progress=progress
                )
            if checkpoints is not None:
                finished.setdefault(method, {})[case] = numbers
                record_finished(checkpoints, finished)
        for metric, value in numbers.items():
            results.setdefault(metric, {})[case] = value
        if progress:
            print(f"{table} {case} {method}: AUC {results['auc'][case]:.1f}", flush=True)
    results["mean"] = round(float(np.mean(list(results["auc"].values()))), 2)
    return results


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
    run_start = RunStart()
    splits = table_splits(table, classes, seed=seed, root=root, device=device)
    used = recorded_settings(table, profile, changes, seed, splits)
    used |= {"classes": classes, "variants": list(variants), "aggregations": list(AGGREGATIONS)}
    used["methods"] = {"puzzle-ae": {k: v for k, v in settings.items() if k not in ("variant", "aggregation")}}
    finished, resumed = resume_from(checkpoints, used, run_start)
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
    record = {"table": table, "metric": "AUROC (%)", "results": results}
    return with_provenance(record, start=run_start, settings=used, device=device, resumed=resumed)


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
    scores, maps = detector.score_and_map(split.x_test) if with_maps else (detector.anomaly_score(split.x_test), None)
    numbers = {"auc": round(100 * auroc(split.y_test, scores), 2)}
    if protocol in (2, MEDICAL_PROTOCOL):  # Figure 3: the false alarms when 99.5% of the anomalies are caught
        numbers["fpr_995"] = round(100 * fpr_at_tpr(split.y_test, scores, 0.995), 2)
    if protocol == 1:
        threshold = choose_threshold(split.y_val, detector.anomaly_score(split.x_val))
        numbers["f1"] = round(100 * f1_at_threshold(split.y_test, scores, threshold), 2)
    if with_maps:
        maps = resize_maps(maps, [mask.shape for mask in split.masks_test])
        numbers["pixel_auc"] = round(100 * pixel_auroc(split.masks_test, maps), 2)
        numbers["au_pro"] = round(100 * au_pro(split.masks_test, maps), 2)
    return numbers
