"""The health benchmarks run in their smallest settings on real MNIST:
benchmarks/quick_health.py (every method beside the trivial baselines) and
benchmarks/budget_curve.py (the AUROC along the epochs, resumable)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from anomaly_edu import data, viz
from anomaly_edu.experiments import results

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name, *args, data_root, check=True):
    """Run benchmarks/NAME.py with ARGS on one thread; return the finished process."""
    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *map(str, args)]
    env = {**os.environ, "ANOMALY_EDU_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=check)


def smoke_split(data_root, n_train, n_test):
    """The split the benchmarks' --max-train and --max-test make, rebuilt here."""
    split = data.load_one_class("mnist", 8, protocol=2, root=data_root)
    pick = torch.randperm(len(split.x_test), generator=torch.Generator().manual_seed(0))[:n_test]
    return split.x_train[:n_train], split.x_test[pick], split.y_test[pick].numpy()


def mean_image_auroc(x_train, x_test, y_test):
    distance = ((x_test - x_train.mean(0)) ** 2).flatten(1).sum(1).numpy()
    return round(100 * roc_auc_score(y_test, distance), 2)


def test_quick_health_puts_every_method_beside_the_mean_image(mnist_root, tmp_path):
    out = tmp_path / "health.json"
    args = ["--methods", "ae,puzzle-ae", "--max-train", 120, "--max-test", 300, "--device", "cpu", "--out", out]
    args += ["--set", "ae.epochs=2", "--set", "puzzle-ae.epochs=1", "--set", "puzzle-ae.val_size=40"]
    printed = run_benchmark("quick_health", *args, data_root=mnist_root).stdout
    written = json.loads(out.read_text())
    figures = written["results"]
    assert list(figures) == ["mean-image", "pca", "ae", "puzzle-ae"]
    x_train, x_test, y_test = smoke_split(mnist_root, 120, 300)
    assert figures["mean-image"]["auroc"] == mean_image_auroc(x_train, x_test, y_test)
    for name in ("ae", "puzzle-ae"):
        row = figures[name]
        assert row["margin"] == pytest.approx(row["auroc"] - figures["mean-image"]["auroc"], abs=0.011)
        assert row["healthy"] == (row["margin"] >= 3 and row["spread"] >= 1e-3)
        assert f"{'healthy' if row['healthy'] else 'NOT healthy'}" in printed.split(f"\n{name} ")[1].splitlines()[0]
    puzzle = figures["puzzle-ae"]["puzzle"]
    mean_image_error = ((x_train - x_train.mean(0)) ** 2).mean().item()
    assert puzzle["mean_image_error"] == pytest.approx(mean_image_error, abs=1e-5) and puzzle["puzzles"] == 23
    assert written["provenance"]["settings"]["n_train"] == 120 and written["provenance"]["settings"]["n_test"] == 300
    assert written["command"].startswith("python benchmarks/quick_health.py ")


def test_budget_curve_goes_on_from_its_checkpoints(mnist_root, tmp_path):
    folder, out = tmp_path / "curve", tmp_path / "curve.json"
    args = ["--methods", "ae", "--at", "1,3", "--max-train", 64, "--max-test", 200, "--device", "cpu"]
    run_benchmark("budget_curve", *args, "--checkpoints", folder, "--out", out, data_root=mnist_root)
    curve = json.loads(out.read_text())
    assert [row["epochs"] for row in curve["results"]["ae"]] == [1, 3]
    x_train, x_test, y_test = smoke_split(mnist_root, 64, 200)
    assert curve["baselines"]["mean-image"]["auroc"] == mean_image_auroc(x_train, x_test, y_test)

    # the same command again: every point is done, nothing trains
    checkpoint = folder / "ae.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = run_benchmark("budget_curve", *args, "--checkpoints", folder, data_root=mnist_root)
    assert checkpoint.stat().st_mtime_ns == stamp
    assert f"AUROC {curve['results']['ae'][1]['auroc']:6.2f}" in again.stdout

    # the point at 3 epochs, reached through the one at 1, is a straight 3-epoch training's
    straight = tmp_path / "straight.json"
    args_3 = [*args[:3], "3", *args[4:]]
    run_benchmark("budget_curve", *args_3, "--checkpoints", tmp_path / "other", "--out", straight, data_root=mnist_root)
    assert json.loads(straight.read_text())["results"]["ae"][0]["auroc"] == curve["results"]["ae"][1]["auroc"]

    # a folder of another run is refused before anything trains
    refused = run_benchmark(
        "budget_curve", *args, "--set", "ae.lr=0.01", "--checkpoints", folder, data_root=mnist_root, check=False
    )
    assert refused.returncode == 2 and "holds the checkpoints of another run (its methods differ)" in refused.stderr
    assert np.isfinite(curve["results"]["ae"][0]["spread"])


def test_a_stored_budget_curve_is_drawn_and_described_point_by_point():
    """Lectures 4 and 5 draw the stored curves: one line per method through its
    stored points, and one dotted line per baseline at its AUROC."""
    curve = results.read_stored("budget_curve_digit8.json")
    figure = viz.budget_curve_figure(curve)
    assert [trace.name for trace in figure.data] == [name.upper() for name in curve["results"]]
    for trace, points in zip(figure.data, curve["results"].values()):
        assert list(trace.x) == [point["epochs"] for point in points]
        assert list(trace.y) == [point["auroc"] for point in points]
    drawn_baselines = sorted(shape.y0 for shape in figure.layout.shapes)
    assert drawn_baselines == sorted(baseline["auroc"] for baseline in curve["baselines"].values())
    assert figure.layout.xaxis.type == "log"

    lines = results.describe_budget_curve(curve).splitlines()
    arae = curve["results"]["arae"]
    best = max(arae, key=lambda point: point["auroc"])
    assert len(lines) == len(curve["results"])
    assert f"best {best['auroc']:.1f} after {best['epochs']}" in lines[2]
    assert f"{arae[0]['auroc']:.1f} after {arae[0]['epochs']} epochs" in lines[2]


def test_seconds_per_epoch_never_goes_below_zero_on_a_noisy_clock(monkeypatch):
    """full_table_speed times a 1-epoch and a 3-epoch fit and takes the difference;
    when the clock's noise makes the longer fit look faster (a tiny run on a busy
    machine), it counts the longer fit's time per epoch instead of a negative one."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import full_table_speed

    durations = iter([2.0, 1.5])  # the 1-epoch fit, then the 3-epoch fit (noise: it looks faster)
    monkeypatch.setattr(full_table_speed, "timed", lambda run, device: (next(durations), "fitted"))
    per_epoch, setup, fitted = full_table_speed.seconds_per_epoch(lambda epochs: None, 2, torch.device("cpu"))
    assert (per_epoch, setup, fitted) == (0.5, 0.0, "fitted")
    durations = iter([2.0, 4.0])  # a clean clock: 1 s per epoch, 1 s of setting up
    assert full_table_speed.seconds_per_epoch(lambda epochs: None, 2, torch.device("cpu"))[:2] == (1.0, 1.0)
