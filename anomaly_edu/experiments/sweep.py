"""Running many small experiments well: a sweep. Introduced in Lecture 7.

Stability over seeds, data efficiency and sensitivity to a setting are each
dozens of small, independent runs. A **sweep** lists them; each run is one call
of :func:`anomaly_edu.experiments.reproduce.run_table` (one table, one method, some normal
classes, one seed, some changed settings).

- :func:`sweep_runs` expands a sweep file (JSON) into its list of runs and
  checks every method and setting before anything runs;
- :func:`run_sweep` runs them. Each run writes its own results file, named
  after its settings and written atomically (never half-written), with its
  provenance. A run whose file is already there is skipped, so an interrupted
  sweep resumes where it stopped and nothing runs twice. ``shard=(i, n)`` runs
  every n-th run from the i-th: an existing scheduler (a CI matrix, a Slurm job
  array) runs the n shards on n machines;
- :func:`collect_sweep` joins the files of all shards (copied into one or more
  folders) into one list, and says which runs are missing.

A sweep file::

    {"table": "mnist", "classes": [8], "methods": ["ae", "dae"],
     "seeds": [0, 1, 2, 3, 4], "profile": "quick",
     "grid": {"ae.epochs": [5, 10], "dae.noise_std": [0.1, 0.2]}}

gives, for each method, each seed and each combination of that method's
``grid`` values, one run (here 10 runs of AE and 10 of DAE). An optional
``"n_train": [50, 500, null]`` runs each of them once per training-set size
(null: all the normal training images; see
:func:`~anomaly_edu.experiments.reproduce.fewer_training_images`). A grid value equal to
the profile's own is not a change: that run is the profile's, and sweeps that
share it (say, stability over seeds and a sensitivity sweep through the
profile's value) run it once.
"""

from __future__ import annotations

__lecture__ = 7

import hashlib
import itertools
import json
import os
from collections.abc import Callable
from pathlib import Path

from ..data.files import write_json_atomically
from ..profiles import get_profile
from .methods import check_methods
from .reproduce import run_table
from .tables import PUZZLE_ABLATIONS, apply_changes, get_table, parse_changes

SWEEP_KEYS = {"table", "classes", "methods", "seeds", "profile", "grid", "n_train"}


def sweep_runs(sweep: dict) -> list[dict]:
    """The runs of a sweep (see the module's docstring), in a fixed order:
    method, then grid values, then training-set size, then seed. Each run is a
    dict with the keys table, method, classes, seed, profile, n_train and
    changes ({method: {key: value}}).
    An unknown key, table, method or setting is one clear error. Lecture 7."""
    if not isinstance(sweep, dict):
        raise ValueError(f"a sweep is a JSON object with the keys {sorted(SWEEP_KEYS)}, got {type(sweep).__name__}")
    unknown = sorted(set(sweep) - SWEEP_KEYS)
    if unknown:
        raise ValueError(f"unknown sweep key(s) {', '.join(unknown)}; a sweep has {', '.join(sorted(SWEEP_KEYS))}")
    missing = sorted({"table", "methods", "seeds"} - set(sweep))
    if missing:
        raise ValueError(f"the sweep needs {', '.join(missing)}")
    table, methods = sweep["table"], list(sweep["methods"])
    spec = get_table(table)
    if table in ("generality", *PUZZLE_ABLATIONS):
        raise ValueError(f"a sweep runs one method at a time; the {table} table cannot be swept")
    check_methods(methods, spec.image_shape, where=f"the {table} table")
    seeds = [int(s) for s in sweep["seeds"]]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list without repeats, got {sweep['seeds']}")
    sizes = sweep.get("n_train", [None])
    if not isinstance(sizes, list) or not sizes or len(set(sizes)) != len(sizes):
        raise ValueError(f"n_train must be a non-empty list of sizes without repeats (null: all), got {sizes!r}")
    for size in sizes:
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise ValueError(f"n_train sizes are positive whole numbers of images or null (all), got {size!r}")
    profile = sweep.get("profile", "quick")
    grid = parse_changes([f"{key}={json.dumps(value)}" for key, value in sweep.get("grid", {}).items()])
    for method in grid:  # every key names a method of the sweep and one of its settings
        if method not in methods:
            raise ValueError(f"the grid changes {method}, which the sweep does not run; add it to methods")
    runs = []
    for method in methods:
        keys = sorted(grid.get(method, {}))
        for values in itertools.product(*(_as_list(grid[method][k], f"{method}.{k}") for k in keys)):
            changes = {method: dict(zip(keys, values))} if keys else {}
            defaults = get_profile(profile, spec.dataset)
            apply_changes(defaults, changes)  # raises for a setting it does not have
            # a grid value equal to the profile's is no change: that run is the profile's own,
            # with the same file, so sweeps that share it (stability, sensitivity) run it once
            changes = {
                m: kept for m, c in changes.items() if (kept := {k: v for k, v in c.items() if v != defaults[m][k]})
            }
            for size, seed in itertools.product(sizes, seeds):
                runs.append(
                    {
                        "table": table,
                        "method": method,
                        "classes": sweep.get("classes"),
                        "seed": seed,
                        "profile": profile,
                        "n_train": size,
                        "changes": changes,
                    }
                )
    return runs


def _as_list(value, name: str) -> list:
    if not isinstance(value, list) or not value:
        raise ValueError(f"the grid's {name} must be a non-empty list of values, got {value!r}")
    return value


def parse_shard(text: str) -> tuple[int, int]:
    """ "2/4" -> (2, 4): the second of four shards (1 <= i <= n). Lecture 7."""
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"cannot read the shard {text!r}: write i/n, e.g. 1/4 for the first of four") from None
    if not 1 <= i <= n:
        raise ValueError(f"shard {text!r}: i must be between 1 and n (the number of shards), e.g. 1/{max(n, 1)}")
    return i, n


def run_name(run: dict) -> str:
    """The results file of one run: readable, plus a hash of all its settings
    (two different runs never share a name). Lecture 7."""
    key = json.dumps(run, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    classes = "all" if run["classes"] is None else "-".join(map(str, run["classes"]))
    size = "" if run["n_train"] is None else f"_n-{run['n_train']}"
    changed = "".join(f"_{key}-{value}" for values in run["changes"].values() for key, value in sorted(values.items()))
    return f"{run['table']}_{run['method']}_classes-{classes}{size}{changed}_seed-{run['seed']}_{digest}.json"


def finished_run(folder: Path, run: dict) -> dict | None:
    """The stored result of ``run`` in ``folder``, or None when it has not
    finished. A file that is not a finished result of this very run is a
    clear error naming it (results are written atomically, so such a file was
    damaged or put there by hand). Lecture 7."""
    path = folder / run_name(run)
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"{path} is not a complete results file; delete it and rerun the sweep to redo it") from None
    if not isinstance(stored, dict) or stored.get("run") != json.loads(json.dumps(run)):
        raise ValueError(f"{path} holds the result of another run; delete it and rerun the sweep to redo it")
    return stored


def run_sweep(
    runs: list[dict],
    folder,
    *,
    shard: tuple[int, int] | None = None,
    run_one: Callable[..., dict] = run_table,
    **options,
) -> dict[str, list[str]]:
    """Run the runs of a sweep (:func:`sweep_runs`) that have no results file
    in ``folder`` yet, and write one file per run (atomically: the run, its
    results and provenance). With ``shard=(i, n)``, only runs i, i + n, i + 2n,
    ... (counting from 1). ``options`` (device, root, progress) go to
    ``run_one`` (by default :func:`~anomaly_edu.experiments.reproduce.run_table`). Returns
    the file names run and skipped. Lecture 7."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file; give a folder for the sweep's results")
    i, n = shard or (1, 1)
    if not 1 <= i <= n:
        raise ValueError(f"shard {i}/{n}: i must be between 1 and n")
    mine = runs[i - 1 :: n]
    done = {"ran": [], "skipped": []}
    for run in mine:
        name = run_name(run)
        if finished_run(folder, run) is not None:
            done["skipped"].append(name)
            continue
        result = run_one(
            run["table"],
            [run["method"]],
            run["classes"],
            profile=run["profile"],
            seed=run["seed"],
            changes=run["changes"] or None,
            n_train=run["n_train"],
            **options,
        )
        write_json_atomically({"run": run, **result}, folder / name)
        done["ran"].append(name)
    return done


def collect_sweep(runs: list[dict], folders: list) -> dict:
    """The results of a sweep's runs from the folders its shards wrote (or
    copied into): ``{"runs": [{"run", "results", "provenance"}, ...],
    "missing": [run, ...]}``, in the sweep's order. A run found in two folders
    must have the same numbers there. Lecture 7."""
    found, missing = [], []
    for run in runs:
        copies = [stored for folder in folders if (stored := finished_run(Path(folder), run)) is not None]
        if not copies:
            missing.append(run)
            continue
        if any(copy["results"] != copies[0]["results"] for copy in copies[1:]):
            raise ValueError(f"{run_name(run)} is in more than one folder with different numbers; keep one")
        found.append({key: copies[0][key] for key in ("run", "results", "provenance")})
    return {"runs": found, "missing": missing}


def read_sweep_file(path: str | os.PathLike) -> dict:
    """A sweep file (JSON), read, with a clear error when it is not one. Lecture 7."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no sweep file {path}") from None
    except ValueError as err:
        raise ValueError(f"{path} is not a sweep file (bad JSON: {err})") from None


def aurocs_by(collected: dict, setting: str | tuple[str, ...] | None = None) -> dict[str, dict]:
    """The AUROCs (%) of a collected sweep (:func:`collect_sweep`), grouped as
    ``{method: {value: [AUROC of each run, ...]}}`` in the sweep's order.
    ``value`` is the run's ``setting``: "n_train" (None: all the training
    images), a setting of the method such as "epochs" or "eps" (the value it
    trained with), a tuple of settings (a tuple of values), or with no setting
    "all" (one group per method: the spread over seeds). A run's AUROC is its
    mean over the normal classes it ran. Lecture 7."""
    names = (setting,) if isinstance(setting, str) else setting
    groups: dict[str, dict] = {}
    for stored in collected["runs"]:
        method = stored["run"]["method"]
        used = stored["provenance"]["settings"]
        if names is None:
            value = "all"
        else:
            values = [used.get("n_train") if name == "n_train" else used["methods"][method].get(name) for name in names]
            value = values[0] if isinstance(setting, str) else tuple(values)
        groups.setdefault(method, {}).setdefault(value, []).append(stored["results"][method]["mean"])
    return groups


def describe_sweep(collected: dict) -> str:
    """One line on how a collected sweep was made: how many runs, by which
    commits, on what, when, and their computing time added up. Lecture 7."""
    provs = [stored["provenance"] for stored in collected["runs"]]
    if not provs:
        return f"no runs collected yet ({len(collected.get('missing', []))} missing)"
    commits = sorted({p["commit"][:10] for p in provs})
    devices = sorted({p["device"] for p in provs})
    dates = sorted(p["date"] for p in provs)
    minutes = sum(p["wall_time_s"] for p in provs) / 60
    return (
        f"{len(provs)} runs made by commit{'s' if len(commits) > 1 else ''} {', '.join(commits)} on "
        f"{'; '.join(devices)}, {dates[0][:10]} to {dates[-1][:10]}, in {minutes:.0f} min of computing in all"
    )
