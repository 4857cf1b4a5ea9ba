"""Reproduce the talk's tables with our code, and record where the numbers came from.

``python -m anomaly_edu reproduce mnist --methods ae,dae,ocsvm,dsvdd --classes 0-9
--profile quick --seed 0 --out results/mnist_quick.json`` trains one detector per
method and normal class under protocol 2, prints our AUCs beside the talk's, and
writes a JSON file with the numbers and their provenance. Introduced in Lecture 1.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import platform
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from . import __version__
from .batched import fit_stacked
from .data import load_dataset, protocol2_split
from .detectors import make_detector
from .metrics import auroc
from .profiles import get_profile
from .training import pick_device

# table name -> (data set, CSV of the talk's table)
TABLES = {
    "mnist": ("mnist", "mnist_protocol2_auc.csv"),
    "fashion-mnist": ("fashion-mnist", "fashion_mnist_protocol2_auc.csv"),
    "coil100": ("coil100", "coil100_protocol1.csv"),
}
# the talk's Table 3: (normal classes, anomaly fraction) of each row
COIL100_SETTINGS = [(1, 0.5), (4, 0.25), (7, 0.15)]
# our method name -> the row of the same method in the talk's tables
TALK_ROW = {"ae": None, "dae": "DAE", "ocsvm": "OCSVM", "dsvdd": "DSVDD", "arae": "ARAE", "arae-union": None}
# the methods whose one-class models can be trained side by side as one stacked model
STACKABLE = {"ae", "dae", "arae"}


def talk_table(table: str) -> dict[str, dict[str, float]]:
    """The talk's AUC table (percent) as {method: {"0": .., ..., "mean": ..}}. Lecture 1."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known tables: {', '.join(TABLES)}")
    text = resources.files("anomaly_edu").joinpath("paper_tables", TABLES[table][1]).read_text()
    rows = csv.DictReader(io.StringIO(text))
    if table == "coil100":  # {method: {"1-0.50 AUC": .., "1-0.50 F1": .., ...}}, as fractions
        table_3 = {}
        for row in rows:
            key = f"{row.pop('normal_classes')}-{row.pop('anomaly_fraction')} {row.pop('metric')}"
            for method, value in row.items():
                table_3.setdefault(method, {})[key] = float(value)
        return table_3
    return {row.pop("method"): {k: float(v) for k, v in row.items()} for row in rows}


def parse_classes(text: str) -> list[int]:
    """"0-9" -> [0, ..., 9]; "1,3,8" -> [1, 3, 8]; "8" -> [8]. Lecture 1."""
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
            raise ValueError(f"{method} has no setting {', '.join(unknown)}; "
                             f"its settings are {', '.join(sorted(settings[method]))}")
        settings[method].update(values)
    return settings


def git_state() -> dict:
    """The commit of this checkout and whether the package has uncommitted
    changes (call it when a run starts). Lecture 1."""

    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                                  cwd=Path(__file__).parent).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD") or "unknown (not a git checkout)",
            "uncommitted_changes": bool(git("status", "--porcelain", "--", "."))}


def provenance(*, settings: dict, wall_time_s: float, device, git: dict | None = None) -> dict:
    """Where a result came from: commit, device, library versions, date, wall
    time and settings. Pass ``git=git_state()`` taken when the run started.
    Lecture 1."""
    import sklearn
    import torch
    import torchvision

    device = torch.device(device)
    return {
        **(git or git_state()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "versions": {"python": platform.python_version(), "anomaly_edu": __version__,
                     "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 1),
        "settings": settings,
    }


def write_json_atomically(data: dict, path: str | os.PathLike) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it into place,
    so that an interrupted run never leaves a half-written file. Lecture 1."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def run_table(table: str, methods: list[str], classes: list[int], *, profile: str = "quick",
              seed: int = 0, device=None, root=None, progress: bool = True,
              changes: dict[str, dict] | None = None, stacked: bool | None = None) -> dict:
    """Train every method on every normal class under protocol 2 and return the
    results with their provenance (see :func:`provenance`). ``changes`` alters
    the profile's settings (see :func:`parse_changes`) and is recorded.
    ``stacked`` trains the AE, DAE and ARAE models of all classes as one stacked
    model (:mod:`anomaly_edu.batched`); by default it does so on a GPU only,
    where it is faster. Lecture 1 (stacking: Lecture 4)."""
    if table not in TABLES or table == "coil100":
        raise ValueError(f"unknown protocol-2 table {table!r}; known: mnist, fashion-mnist "
                         f"(coil100 runs with run_coil100_table)")
    _check_methods(methods)
    unused = sorted(set(changes or {}) - set(methods))
    if unused:
        raise ValueError(f"settings are changed for {', '.join(unused)}, which this run does not train; "
                         f"add it to the methods or drop the change")
    settings = apply_changes(get_profile(profile, TABLES[table][0]), changes or {})
    device = pick_device(device)
    start, code_state = time.perf_counter(), git_state()
    train = load_dataset(TABLES[table][0], True, root=root, device=device)
    test = load_dataset(TABLES[table][0], False, root=root, device=device)
    stacked = device.type == "cuda" if stacked is None else stacked
    splits = {c: protocol2_split(train, test, c) for c in classes}
    auc = {m: {} for m in methods}
    for m in methods:
        detectors = {c: make_detector(m, settings, seed=seed, device=device, progress=progress) for c in classes}
        side_by_side = stacked and m in STACKABLE and len(classes) > 1
        if side_by_side:
            fit_stacked(list(detectors.values()), [splits[c].x_train for c in classes], progress=progress)
        for c, detector in detectors.items():
            if not side_by_side:
                detector.fit(splits[c].x_train)
            auc[m][str(c)] = round(100 * auroc(splits[c].y_test, detector.score(splits[c].x_test)), 2)
            if progress:
                print(f"class {c} {m}: AUC {auc[m][str(c)]:.1f}", flush=True)
    results = {m: {"auc": values, "mean": round(float(np.mean(list(values.values()))), 2)}
               for m, values in auc.items()}
    used = {"table": table, "dataset": TABLES[table][0], "protocol": 2, "profile": profile,
            "changed_from_profile": changes or {}, "seed": seed, "classes": classes,
            "stacked_training": sorted(set(methods) & STACKABLE) if stacked and len(classes) > 1 else [],
            "methods": {m: settings[m] for m in methods}}
    return {"table": table, "metric": "AUROC (%)", "results": results,
            "provenance": provenance(settings=used, wall_time_s=time.perf_counter() - start, device=device,
                                      git=code_state)}


def merge_results(parts: list[dict]) -> dict:
    """One table from runs of the same command on different normal classes (for
    example ``--classes 0-4`` and ``--classes 5-9`` on two cores or in two GPU
    sessions). The parts must come from the same commit, table, profile, seed,
    methods and settings, and must not share a class; means are recomputed over
    all classes, ``wall_time_s`` is the parts' wall times added up, and each
    part's device, date and time are kept under ``parts``. Lecture 4."""
    if len(parts) < 2:
        raise ValueError("merging needs at least two result files")
    if not all(isinstance(part, dict) and {"table", "results", "provenance"} <= set(part) for part in parts):
        raise ValueError("merge takes the JSON files that reproduce --out writes; one of these is not one")
    if any(part.get("table") not in TABLES or part["table"] == "coil100" for part in parts):
        raise ValueError("only protocol-2 tables (mnist, fashion-mnist) can be merged")
    first = parts[0]["provenance"]

    def same_run(prov):  # everything that must match, i.e. the settings without the classes
        used = {k: v for k, v in prov["settings"].items() if k not in ("classes", "stacked_training")}
        return prov["commit"], prov.get("uncommitted_changes"), used

    for part in parts[1:]:
        if part["table"] != parts[0]["table"] or same_run(part["provenance"]) != same_run(first):
            raise ValueError("the parts are not runs of the same command: their table, commit, profile, seed, "
                             "methods or settings differ; rerun the odd one out at the same commit and settings")
    classes = [c for part in parts for c in part["provenance"]["settings"]["classes"]]
    shared = sorted({c for c in classes if classes.count(c) > 1})
    if shared:
        raise ValueError(f"class(es) {shared} appear in more than one part; merge runs of disjoint classes")
    classes = sorted(classes)
    results = {}
    for method in parts[0]["results"]:
        auc = {}
        for part in parts:
            auc.update(part["results"][method]["auc"])
        auc = {str(c): auc[str(c)] for c in classes}
        results[method] = {"auc": auc, "mean": round(float(np.mean(list(auc.values()))), 2)}
    stacked = sorted({m for part in parts for m in part["provenance"]["settings"].get("stacked_training", [])})
    merged = {**first, "settings": {**first["settings"], "classes": classes, "stacked_training": stacked},
              "date": max(part["provenance"]["date"] for part in parts),
              "wall_time_s": round(sum(part["provenance"]["wall_time_s"] for part in parts), 1),
              "parts": [piece for part in parts for piece in _pieces(part["provenance"])]}
    devices = {part["provenance"]["device"] for part in parts}
    if len(devices) > 1:
        merged["device"] = " + ".join(sorted(devices))
    return {"table": parts[0]["table"], "metric": parts[0]["metric"], "results": results, "provenance": merged}


def _pieces(prov: dict) -> list[dict]:
    """The runs a results file was made of: its own, or those of a merged file."""
    return prov.get("parts") or [{key: prov[key] for key in ("device", "date", "wall_time_s")}
                                 | {"classes": prov["settings"]["classes"]}]


def _check_methods(methods: list[str]) -> None:
    unknown = [m for m in methods if m not in TALK_ROW]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known methods: {', '.join(TALK_ROW)}")


def run_coil100_table(methods: list[str], *, profile: str = "quick", seed: int = 0, device=None,
                      root=None, progress: bool = True) -> dict:
    """The talk's Table 3: COIL-100 under protocol 1 with 1, 4 and 7 normal
    classes and 50%, 25% and 15% anomalies; AUROC and F1 (threshold chosen on
    the validation half) as fractions, with provenance. Lecture 4."""
    from .data import coil100_split, load_coil100
    from .metrics import choose_threshold, f1_at_threshold

    _check_methods(methods)
    settings = get_profile(profile, "coil100")
    device = pick_device(device)
    start, code_state = time.perf_counter(), git_state()
    images, labels = load_coil100(root, size=32, device=device)
    results = {m: {} for m in methods}
    for n_classes, fraction in COIL100_SETTINGS:
        split = coil100_split(images, labels, n_normal_classes=n_classes, anomaly_fraction=fraction, seed=seed)
        for m in methods:
            detector = make_detector(m, settings, seed=seed, device=device, progress=progress).fit(split.x_train)
            threshold = choose_threshold(split.y_val, detector.score(split.x_val))
            scores = detector.score(split.x_test)
            key = f"{n_classes}-{fraction:.2f}"
            results[m][f"{key} AUC"] = round(auroc(split.y_test, scores), 3)
            results[m][f"{key} F1"] = round(f1_at_threshold(split.y_test, scores, threshold), 3)
    used = {"table": "coil100", "dataset": "coil100", "protocol": 1, "profile": profile, "seed": seed,
            "rows": COIL100_SETTINGS, "image_size": 32, "methods": {m: settings[m] for m in methods}}
    return {"table": "coil100", "metric": "AUROC and F1 (fractions)", "results": results,
            "provenance": provenance(settings=used, wall_time_s=time.perf_counter() - start, device=device,
                                      git=code_state)}


def format_comparison(result: dict) -> str:
    """A text table of our AUCs beside the talk's, one pair of rows per method. Lecture 1."""
    if result["table"] == "coil100":
        return _format_coil100(result)
    talk = talk_table(result["table"])
    classes = result["provenance"]["settings"]["classes"]
    head = f"{'method':<16}" + "".join(f"{c:>7}" for c in classes) + f"{'mean':>8}"
    used = result["provenance"]["settings"]
    changed = ", ".join(f"{m}.{k}={v}" for m, values in used.get("changed_from_profile", {}).items()
                        for k, v in values.items())
    lines = [f"{result['table']} protocol 2, AUROC in %, profile {used['profile']}"
             + (f" (changed: {changed})" if changed else ""), head, "-" * len(head)]
    for method, ours in result["results"].items():
        lines.append(f"{method + ' (ours)':<16}" + "".join(f"{ours['auc'][str(c)]:>7.1f}" for c in classes)
                     + f"{ours['mean']:>8.1f}")
        row = talk.get(TALK_ROW.get(method) or "")
        if row:
            talk_mean = np.mean([row[str(c)] for c in classes])
            lines.append(f"{TALK_ROW[method] + ' (talk)':<16}" + "".join(f"{row[str(c)]:>7.1f}" for c in classes)
                         + f"{talk_mean:>8.1f}")
        else:
            lines.append(f"{'':<16}(the talk has no {method} row)")
    lines.append("talk: the seed talk's table; mean over the classes shown")
    return "\n".join(lines)


def _format_coil100(result: dict) -> str:
    talk = talk_table("coil100")
    keys = [f"{n}-{p:.2f} {metric}" for n, p in COIL100_SETTINGS for metric in ("AUC", "F1")]
    head = f"{'method':<14}" + "".join(f"{k:>12}" for k in keys)
    lines = [f"coil100 protocol 1 (normal classes-anomaly fraction), profile "
             f"{result['provenance']['settings']['profile']}", head, "-" * len(head)]
    for method, ours in result["results"].items():
        lines.append(f"{method + ' (ours)':<14}" + "".join(f"{ours[k]:>12.3f}" for k in keys))
        row = talk.get(TALK_ROW.get(method) or "")
        if row:
            lines.append(f"{TALK_ROW[method] + ' (talk)':<14}" + "".join(f"{row[k]:>12.3f}" for k in keys))
    lines.append("talk: the seed talk's Table 3 (its F1 threshold was chosen on the test set; ours on validation)")
    return "\n".join(lines)
