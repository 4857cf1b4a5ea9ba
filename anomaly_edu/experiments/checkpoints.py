"""Runs that survive interruption: a checkpoint folder records the run's
settings and every finished result, so that ``--resume`` skips what is done and
continues a detector's training from its last epoch. Lecture 4."""

from __future__ import annotations

__lecture__ = 4

import inspect
import json
from pathlib import Path

from ..data import OneClassSplit
from ..data.files import write_json_atomically

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
