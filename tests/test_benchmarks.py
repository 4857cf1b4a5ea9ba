"""The benchmarks run: benchmarks/full_table_speed.py, arae_budget.py and
union_ablation.py in their smallest settings, on real MNIST; the last two write
their results file with its provenance, and refuse a bad --out path at once."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_full_table_speed_prints_seconds_per_epoch_and_a_projection(mnist_root):
    command = [sys.executable, str(ROOT / "benchmarks" / "full_table_speed.py")]
    command += ["--max-train", "32", "--max-test", "500", "--epochs", "1"]
    env = {**os.environ, "ANOMALY_EDU_DATA": str(mnist_root)}
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    for method in ("ae", "dae", "arae"):
        assert re.search(rf"^{method} +ten stacked models: [0-9.]+ s per epoch", out, re.MULTILINE), out
    assert re.search(r"^projected total .*: [0-9.]+ min = [0-9.]+ h", out, re.MULTILINE), out
    assert "REDUCED RUN" in out and "one AE alone" in out


def run_benchmark(name, *args, data_root, check=True):
    """Run benchmarks/NAME.py with ARGS on one thread; return the finished process."""
    command = [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *map(str, args)]
    env = {**os.environ, "ANOMALY_EDU_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=check)


def check_provenance(written, benchmark):
    assert written["benchmark"] == benchmark
    assert written["command"].startswith(f"python benchmarks/{benchmark}.py ")
    prov = written["provenance"]
    assert {"commit", "device", "versions", "date", "wall_time_s", "settings"} <= prov.keys()
    assert prov["wall_time_s"] > 0 and prov["device"].startswith("cpu")
    return prov["settings"]


def test_arae_budget_writes_its_checkpoints_with_provenance(mnist_root, tmp_path):
    out = tmp_path / "budget.json"
    args = ["--epochs", 2, "--every", 1, "--variants", "ae,arae", "--max-train", 64, "--device", "cpu", "--out", out]
    printed = run_benchmark("arae_budget", *args, data_root=mnist_root).stdout
    assert f"wrote {out}" in printed
    written = json.loads(out.read_text())
    assert list(written["results"]) == ["ae", "arae"]
    for checkpoints in written["results"].values():
        assert [c["epoch"] for c in checkpoints] == [1, 2]
        for c in checkpoints:
            assert 0 <= c["auroc"] <= 100 and c["code_spread"] >= 0 and c["seconds"] >= 0
    settings = check_provenance(written, "arae_budget")
    assert (settings["normal_class"], settings["epochs"], settings["every"], settings["seed"]) == (5, 2, 1, 0)
    assert settings["n_train"] == 64
    assert settings["variants"]["arae"]["eps"] == 0.2 and settings["variants"]["arae"]["epochs"] == 2
    assert settings["variants"]["arae"]["attack"] == "once per batch"
    assert settings["variants"]["ae"]["method"] == "ae"
    assert 0 <= written["average_image_auroc"] <= 100


def test_union_ablation_writes_its_aurocs_with_provenance(mnist_root, tmp_path):
    out = tmp_path / "union.json"
    args = ["--epochs", 1, "--max-train", 64, "--device", "cpu", "--out", out]
    run_benchmark("union_ablation", *args, data_root=mnist_root)
    written = json.loads(out.read_text())
    assert len(written["results"]) == 4 and "L-inf alone" in written["results"]
    for figures in written["results"].values():
        assert 0 <= figures["auroc"] <= 100 and figures["seconds"] >= 0
    settings = check_provenance(written, "union_ablation")
    assert (settings["normal_class"], settings["epochs"], settings["seed"], settings["n_train"]) == (8, 1, 0, 64)
    assert settings["variants"]["without rotations and shifts"]["n_angles"] == 1


@pytest.mark.parametrize(
    "benchmark, bad, message",
    [("arae_budget", ".", "is a folder"), ("union_ablation", "a_file/x.json", "is a file, not a folder")],
)
def test_a_bad_out_path_fails_before_any_training(mnist_root, tmp_path, benchmark, bad, message):
    (tmp_path / "a_file").write_text("")
    done = run_benchmark(benchmark, "--out", tmp_path / bad, data_root=mnist_root, check=False)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "AUROC" not in done.stdout and "normal" not in done.stdout  # it stopped before loading the data
