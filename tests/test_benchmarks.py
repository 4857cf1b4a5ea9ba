"""The benchmarks run: benchmarks/full_table_speed.py, arae_budget.py and
union_ablation.py in their smallest settings, on real MNIST; the last two write
their results file with its provenance, and refuse a bad --out path at once."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from recomputed import assert_rounds_to, sklearn_auroc

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


# Runs a benchmark (argv: RECORD SCRIPT ARGS...) as `python SCRIPT ARGS...` would, saving the
# (labels, scores) of every call of anomaly_edu.metrics.auroc to RECORD (.npz: y0, s0, y1, s1, ...).
RECORDING = """
import runpy, sys
from pathlib import Path
import numpy as np
record, script, args = sys.argv[1], sys.argv[2], sys.argv[3:]
sys.path.insert(0, str(Path(script).resolve().parents[1]))  # as the benchmark does: this checkout's package
import anomaly_edu.metrics as metrics
calls, auroc = [], metrics.auroc
def recording(labels, scores):
    calls.append((metrics.to_numpy(labels), metrics.to_numpy(scores)))
    return auroc(labels, scores)
metrics.auroc = recording
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
np.savez(record, **{f"{kind}{i}": a for i, call in enumerate(calls) for kind, a in zip("ys", call)})
"""


def run_benchmark(name, *args, data_root, check=True, record=None):
    """Run benchmarks/NAME.py with ARGS on one thread; return the finished process.
    With ``record`` (a path) the AUROCs it computes are recorded there (see RECORDING)."""
    script = str(ROOT / "benchmarks" / f"{name}.py")
    command = [sys.executable, *(["-c", RECORDING, str(record)] if record else []), script, *map(str, args)]
    env = {**os.environ, "ANOMALY_EDU_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=check)


def recorded_aurocs(record) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (labels, scores) of each AUROC a benchmark computed, in order."""
    with np.load(record) as saved:
        return [(saved[f"y{i}"], saved[f"s{i}"]) for i in range(len(saved.files) // 2)]


def protocol2_labels(mnist, normal_class) -> np.ndarray:
    """Protocol 2's test labels, from the official test set: 1 for every image of another class."""
    _, (_, test_labels) = mnist
    return (test_labels != normal_class).long().numpy()


def check_provenance(written, benchmark):
    assert written["benchmark"] == benchmark
    assert written["command"].startswith(f"python benchmarks/{benchmark}.py ")
    prov = written["provenance"]
    assert {"commit", "device", "versions", "date", "wall_time_s", "settings"} <= prov.keys()
    assert prov["wall_time_s"] > 0 and prov["device"].startswith("cpu")
    return prov["settings"]


def test_the_provenance_goes_last_and_the_file_is_written_whole(tmp_path):
    """The one writer that reproduce and the benchmarks share: the record's own
    keys first, then its provenance (with "resumed" where a run went on from
    checkpoints); a record that cannot be written leaves the old file as it was."""
    from anomaly_edu.experiments.results import RunStart, with_provenance, write_with_provenance

    start = RunStart()
    record = with_provenance({"table": "t", "results": {}}, start=start, settings={"seed": 0}, device="cpu")
    assert list(record) == ["table", "results", "provenance"]
    assert record["provenance"]["settings"] == {"seed": 0} and "resumed" not in record["provenance"]
    assert record["provenance"]["commit"] == start.git["commit"]
    resumed = with_provenance({}, start=start, settings={}, device="cpu", resumed=True)
    assert resumed["provenance"]["resumed"] is True
    out = tmp_path / "result.json"
    write_with_provenance({"benchmark": "b"}, out, start=start, settings={"n": 1}, device="cpu")
    written = json.loads(out.read_text())
    assert list(written) == ["benchmark", "provenance"] and written["provenance"]["settings"] == {"n": 1}
    with pytest.raises(TypeError):
        write_with_provenance({"benchmark": object()}, out, start=start, settings={}, device="cpu")
    assert json.loads(out.read_text()) == written


def test_arae_budget_writes_its_checkpoints_with_provenance(mnist_root, mnist, tmp_path):
    out, record = tmp_path / "budget.json", tmp_path / "aurocs.npz"
    args = ["--epochs", 2, "--every", 1, "--variants", "ae,arae", "--max-train", 64, "--device", "cpu", "--out", out]
    printed = run_benchmark("arae_budget", *args, data_root=mnist_root, record=record).stdout
    assert f"wrote {out}" in printed
    written = json.loads(out.read_text())
    assert list(written["results"]) == ["ae", "arae"]
    for checkpoints in written["results"].values():
        assert [c["epoch"] for c in checkpoints] == [1, 2]
        for c in checkpoints:
            assert c["code_spread"] >= 0 and c["seconds"] >= 0
    # the average image's AUROC, first, then each checkpoint's: scikit-learn's on the
    # scores the benchmark computed, the labels protocol 2's for normal digit 5
    (train_images, train_labels), (test_images, _) = mnist
    labels = protocol2_labels(mnist, 5)
    aurocs = recorded_aurocs(record)
    assert len(aurocs) == 1 + 2 * 2 and all(np.array_equal(y, labels) for y, _ in aurocs)
    checkpoints = [c for variant in written["results"].values() for c in variant]
    for c, (y, scores) in zip(checkpoints, aurocs[1:]):
        assert_rounds_to(c["auroc"], sklearn_auroc(y, scores), f"epoch {c['epoch']}")
    settings = check_provenance(written, "arae_budget")
    assert (settings["normal_class"], settings["epochs"], settings["every"], settings["seed"]) == (5, 2, 1, 0)
    assert settings["n_train"] == 64
    assert settings["variants"]["arae"]["eps"] == 0.2 and settings["variants"]["arae"]["epochs"] == 2
    assert settings["variants"]["arae"]["attack"] == "once per batch"
    assert settings["variants"]["ae"]["method"] == "ae"
    # the average image's AUROC recomputed from the data: each test image's mean squared
    # distance to the mean of the first 64 training images of digit 5
    average = train_images[train_labels == 5][:64].mean(dim=0)
    distance = (test_images - average).pow(2).flatten(1).mean(dim=1)
    assert written["average_image_auroc"] == pytest.approx(sklearn_auroc(labels, distance), abs=0.006)


def test_union_ablation_writes_its_aurocs_with_provenance(mnist_root, mnist, tmp_path):
    out, record = tmp_path / "union.json", tmp_path / "aurocs.npz"
    args = ["--epochs", 1, "--max-train", 64, "--device", "cpu", "--out", out]
    run_benchmark("union_ablation", *args, data_root=mnist_root, record=record)
    written = json.loads(out.read_text())
    assert len(written["results"]) == 4 and "L-inf alone" in written["results"]
    # each variant's AUROC is scikit-learn's on the scores the benchmark computed, the labels protocol 2's for digit 8
    aurocs = recorded_aurocs(record)
    assert len(aurocs) == 4 and all(np.array_equal(y, protocol2_labels(mnist, 8)) for y, _ in aurocs)
    for (variant, figures), (y, scores) in zip(written["results"].items(), aurocs):
        assert figures["seconds"] >= 0
        assert_rounds_to(figures["auroc"], sklearn_auroc(y, scores), variant)
    settings = check_provenance(written, "union_ablation")
    assert (settings["normal_class"], settings["epochs"], settings["seed"], settings["n_train"]) == (8, 1, 0, 64)
    assert settings["variants"]["without rotations and shifts"]["n_angles"] == 1


def test_test_time_cost_writes_each_detectors_cost_per_image_and_its_ratio_to_the_ae(mnist_root, tmp_path):
    out = tmp_path / "cost.json"
    args = ["--methods", "mean-image,ae,puzzle-ae", "--images", 40, "--train", 40, "--repeats", 2, "--out", out]
    printed = run_benchmark("test_time_cost", *args, data_root=mnist_root).stdout
    written = json.loads(out.read_text())
    figures = written["results"]
    assert list(figures) == ["mean-image", "ae", "puzzle-ae"]
    for method, numbers in figures.items():
        assert len(numbers["runs_ms"]) == 2 and numbers["ms_per_image"] > 0
        assert numbers["ms_per_image"] == pytest.approx(np.median(numbers["runs_ms"]), abs=1e-3)
        assert numbers["ratio_to_ae"] == pytest.approx(
            numbers["ms_per_image"] / figures["ae"]["ms_per_image"], abs=0.01
        )
        assert re.search(rf"^{method} +[0-9.]+ +{numbers['ratio_to_ae']:.2f}$", printed, re.MULTILINE), printed
    # 23 puzzles through a U-Net cost more than one pass through the small autoencoder
    assert figures["puzzle-ae"]["ratio_to_ae"] > 1
    settings = check_provenance(written, "test_time_cost")
    assert (settings["images"], settings["train_images"], settings["methods"]["ae"]["epochs"]) == (40, 40, 1)
    refused = run_benchmark("test_time_cost", "--methods", "pca", data_root=mnist_root, check=False)
    assert refused.returncode == 2 and "must include ae" in refused.stderr


@pytest.mark.parametrize(
    "benchmark, bad, message",
    [
        ("arae_budget", ".", "is a folder"),
        ("union_ablation", "a_file/x.json", "is a file, not a folder"),
        ("figure1", ".", "is a folder"),
        ("robustness", "a_file/x.json", "is a file, not a folder"),
        ("speed", ".", "is a folder"),
    ],
)
def test_a_bad_out_path_fails_before_any_training(mnist_root, tmp_path, benchmark, bad, message):
    (tmp_path / "a_file").write_text("")
    done = run_benchmark(benchmark, "--out", tmp_path / bad, data_root=mnist_root, check=False)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "AUROC" not in done.stdout and "normal" not in done.stdout  # it stopped before loading the data


# ------------------------------------------------------------------ the research log shows the stored runs

RESEARCH_LOG = ROOT / "book" / "arae_research_log.md"
BUDGET_ROWS = {  # the digit-5 table's row labels, and (file, variant) of each
    "AE": ("arae_budget_digit5_b.json", "ae"),
    "ARAE, as in the profile (eps 0.2, gamma 0.1)": ("arae_budget_digit5_a.json", "arae"),
    "the same, seed 1": ("arae_budget_digit5_a.json", "arae:seed=1"),
    "attack once per epoch, as the ARAE code does": ("arae_budget_digit5_a.json", "arae:attack=epoch"),
    "gamma 0 (no latent term)": ("arae_budget_digit5_b.json", "arae:gamma=0"),
    "eps 0.05 (the talk's eps for other data)": ("arae_budget_digit5_b.json", "arae:eps=0.05"),
}
UNION_FILE = "union_ablation_digit8.json"


def table_rows(text: str) -> dict[str, list[str]]:
    """The rows of the page's markdown tables: label -> the other cells."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(cells[0]) <= {"-"}:
            rows[cells[0]] = cells[1:]
    return rows


def spread(value: float) -> str:
    """A code spread as the page writes it: two decimals below 0.2 (a collapse), else one."""
    return f"{value:.2f}" if value < 0.2 else f"{value:.1f}"


def test_the_research_logs_tables_and_provenance_are_the_stored_results():
    """Every figure of the appendix's two tables equals the results file it
    names (AUROC to two decimals, seconds to whole seconds, code spreads as
    :func:`spread` writes them), and the provenance line of each file is on
    the page."""
    from anomaly_edu.experiments import results

    text = RESEARCH_LOG.read_text()
    rows = table_rows(text)
    files = {}
    for label, (name, variant) in BUDGET_ROWS.items():
        stored = files.setdefault(name, results.read_stored(name))
        expected = [f"{c['auroc']:.2f} ({spread(c['code_spread'])})" for c in stored["results"][variant]]
        assert rows[label] == expected, label
        assert [c["epoch"] for c in stored["results"][variant]] == [10, 20, 30, 40, 50, 60]
    union = results.read_stored(UNION_FILE)
    files[UNION_FILE] = union
    for variant, figures in union["results"].items():
        assert rows[variant] == [f"{figures['auroc']:.2f}", f"{figures['seconds']:.0f}"], variant
    flat = " ".join(text.split())  # the page wraps its lines
    for name, stored in files.items():
        assert f"`results/{name}`" in flat
        assert results.describe_provenance(stored) in flat, f"the provenance of {name} is not on the page"
    assert f"{files['arae_budget_digit5_a.json']['average_image_auroc']:.2f}" in flat
