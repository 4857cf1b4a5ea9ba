"""The sweep (Lecture 7): a sweep file expands into checked runs; each run
writes its own file atomically; finished runs are skipped, so an interrupted
sweep resumes without losing or repeating a run; shards split the runs and
their folders join again; bad input is one clear error."""

import json

import pytest
import torch
from recomputed import check_evaluation, record_evaluations
from test_data import make_fake_mnist

from anomaly_edu.data import OneClassSplit
from anomaly_edu.experiments import sweep as sw
from anomaly_edu.experiments.cli import main
from anomaly_edu.experiments.reproduce import fewer_training_images, run_table

SWEEP = {
    "table": "mnist",
    "classes": [1],
    "methods": ["ae", "dae"],
    "seeds": [0, 1, 2],
    "grid": {"ae.epochs": [1, 2]},
}


def fake_run(calls, fail_at=None):
    """A stand-in for run_table: records each call, and raises KeyboardInterrupt
    on call number ``fail_at`` (an interruption in the middle of a sweep)."""

    def run(table, methods, classes, *, profile, seed, changes, n_train, **options):
        calls.append((methods[0], seed, json.dumps(changes, sort_keys=True), n_train))
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt
        return {"table": table, "results": {methods[0]: {"auc": {"1": 50.0 + seed}}}, "provenance": {"seed": seed}}

    return run


def test_a_sweep_expands_into_one_run_per_method_grid_value_and_seed():
    runs = sw.sweep_runs(SWEEP)
    assert len(runs) == 2 * 3 + 3  # AE: two epochs x three seeds; DAE: three seeds
    assert runs[0] == {
        "table": "mnist",
        "method": "ae",
        "classes": [1],
        "seed": 0,
        "profile": "quick",
        "n_train": None,
        "changes": {"ae": {"epochs": 1}},
    }
    assert {r["changes"].get("dae") for r in runs if r["method"] == "dae"} == {None}
    assert len({sw.run_name(r) for r in runs}) == len(runs)  # one file each


@pytest.mark.parametrize(
    "change, message",
    [
        ({"methods": ["ae", "nonsense"]}, "unknown method"),
        ({"grid": {"ae.nonsense": [1]}}, "ae has no setting nonsense"),
        ({"grid": {"arae.epochs": [1]}}, "the grid changes arae, which the sweep does not run"),
        ({"grid": {"ae.epochs": 3}}, "must be a non-empty list"),
        ({"seeds": [0, 0]}, "without repeats"),
        ({"table": "imagenet"}, "unknown table"),
        ({"colour": "blue"}, "unknown sweep key"),
        ({"n_train": [50, 50]}, "n_train must be a non-empty list"),
        ({"n_train": 50}, "n_train must be a non-empty list"),
        ({"n_train": [0]}, "positive whole numbers"),
        ({"n_train": [2.5]}, "positive whole numbers"),
        ({"methods": ["dsvdd"], "table": "coil100"}, "dsvdd cannot run on the coil100 table"),
    ],
)
def test_bad_sweep_files_are_one_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        sw.sweep_runs({**SWEEP, **change})


def test_training_set_sizes_multiply_the_runs_and_name_their_files():
    runs = sw.sweep_runs({**SWEEP, "methods": ["ae"], "grid": {}, "n_train": [50, None]})
    assert [(r["n_train"], r["seed"]) for r in runs] == [(50, 0), (50, 1), (50, 2), (None, 0), (None, 1), (None, 2)]
    assert "_n-50_seed-0_" in sw.run_name(runs[0]) and "_n-" not in sw.run_name(runs[3])
    assert "_classes-1_epochs-2_seed-0_" in sw.run_name(sw.sweep_runs(SWEEP)[3])  # the grid's values too


@pytest.mark.parametrize("text", ["3/2", "0/2", "1/0", "a/b", "2", "1/2/3"])
def test_bad_shard_specs_are_refused(text):
    with pytest.raises(ValueError, match="shard"):
        sw.parse_shard(text)


def test_shards_split_the_runs_and_their_folders_join_again(tmp_path):
    runs = sw.sweep_runs(SWEEP)
    calls = []
    for i in (1, 2, 3):
        sw.run_sweep(runs, tmp_path / f"shard-{i}", shard=(i, 3), run_one=fake_run(calls))
    assert len(calls) == len(runs) and len(set(calls)) == len(runs)  # every run once, in some shard
    assert sw.parse_shard("2/3") == (2, 3)
    joined = sw.collect_sweep(runs, [tmp_path / f"shard-{i}" for i in (1, 2, 3)])
    assert joined["missing"] == [] and [r["run"] for r in joined["runs"]] == runs
    partial = sw.collect_sweep(runs, [tmp_path / "shard-1"])
    assert len(partial["runs"]) == 3 and len(partial["missing"]) == len(runs) - 3


def test_an_interrupted_sweep_resumes_without_losing_or_repeating_a_run(tmp_path):
    runs = sw.sweep_runs(SWEEP)
    calls = []
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep(runs, tmp_path, run_one=fake_run(calls, fail_at=4))
    assert len(list(tmp_path.glob("*.json"))) == 3  # the three finished runs, nothing of the fourth
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    done = sw.run_sweep(runs, tmp_path, run_one=fake_run(calls))
    assert len(done["skipped"]) == 3 and len(done["ran"]) == len(runs) - 3
    # the interrupted run was started twice (it never finished); every other run exactly once
    assert len(calls) == len(runs) + 1 and calls[3] == calls[4] and len(set(calls)) == len(runs)
    again = sw.run_sweep(runs, tmp_path, run_one=fake_run(calls))
    assert again["ran"] == [] and len(again["skipped"]) == len(runs)


def test_a_damaged_or_foreign_results_file_is_a_clear_error(tmp_path):
    runs = sw.sweep_runs(SWEEP)
    sw.run_sweep(runs[:1], tmp_path, run_one=fake_run([]))
    path = tmp_path / sw.run_name(runs[0])
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # as if cut off by hand: not JSON any more
    with pytest.raises(ValueError, match=f"{path.name} is not a complete results file; delete it"):
        sw.run_sweep(runs, tmp_path, run_one=fake_run([]))
    path.write_text(json.dumps({"run": runs[1], "results": {}}))
    with pytest.raises(ValueError, match="holds the result of another run"):
        sw.run_sweep(runs, tmp_path, run_one=fake_run([]))
    path.unlink()
    (tmp_path / f".{path.name}.abc.tmp").write_text("{")  # a temporary file of an interrupted write
    assert len(sw.run_sweep(runs[:1], tmp_path, run_one=fake_run([]))["ran"]) == 1  # ignored, run again


def test_the_command_line_runs_a_real_sweep_in_shards_and_collects_it(tmp_path, capsys, monkeypatch):
    evaluated = record_evaluations(monkeypatch)
    root = tmp_path / "data"
    make_fake_mnist(root)
    sweep_file = tmp_path / "sweep.json"
    sweep = {"table": "mnist", "classes": [1], "methods": ["ae"], "seeds": [0, 1], "grid": {"ae.epochs": [1]}}
    sweep_file.write_text(json.dumps(sweep))
    common = ["--data-root", str(root), "--device", "cpu", "--no-progress"]
    for shard in ("1/2", "2/2"):
        out = str(tmp_path / f"part-{shard[0]}")
        assert main(["sweep", str(sweep_file), "--out", out, "--shard", shard, *common]) == 0
    assert "1 runs done, 0 already there" in capsys.readouterr().out
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path / "part-1"), "--shard", "1/2", *common]) == 0
    assert "0 runs done, 1 already there (skipped)" in capsys.readouterr().out
    joined = tmp_path / "sweep-results.json"
    parts = [str(tmp_path / "part-1"), str(tmp_path / "part-2")]
    assert main(["sweep", str(sweep_file), "--collect", *parts, "--out", str(joined)]) == 0
    collected = json.loads(joined.read_text())
    assert [r["run"]["seed"] for r in collected["runs"]] == [0, 1] and collected["missing"] == []
    assert collected["sweep"] == sweep  # the sweep file travels with its results
    assert sw.describe_sweep(collected).startswith("2 runs made by commit")
    assert sw.describe_sweep({"runs": [], "missing": [{}, {}]}) == "no runs collected yet (2 missing)"
    # the collected AUROCs are those of the two runs (seeds 0 and 1), each scikit-learn's on its AE's own scores
    assert [r["results"]["ae"]["auc"] for r in collected["runs"]] == [{"1": n["auc"]} for _, _, n in evaluated]
    for detector, split, numbers in evaluated:
        check_evaluation(detector, split, numbers, "ae 1")
    assert main(["sweep", str(sweep_file), "--collect", parts[0], "--out", str(joined)]) == 1
    assert "missing: mnist_ae_classes-1_epochs-1_seed-1_" in capsys.readouterr().out
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path / "x"), "--shard", "3/2", *common]) == 2
    assert "shard" in capsys.readouterr().err


def test_a_smaller_training_set_keeps_the_number_of_gradient_updates():
    x = torch.rand(1000, 1, 28, 28)
    split = OneClassSplit(x, x[:0], torch.zeros(0), x[:10], torch.zeros(10), (1,), 2, torch.zeros(10))
    settings = {"ae": {"epochs": 30, "batch_size": 128}, "puzzle-ae": {"epochs": 5, "batch_size": 64, "val_size": 100}}
    splits, changed = fewer_training_images({"1": split}, settings, ["ae", "puzzle-ae"], 100, seed=3)
    small = splits["1"].x_train
    assert len(small) == 100 and len({tuple(row) for row in small.flatten(1)[:, :20].tolist()}) == 100
    assert all(any(torch.equal(row, other) for other in x) for row in small[:5])  # images of the set, not copies
    assert changed["ae"]["epochs"] == 30 * 8  # 8 batches of 128 per epoch before, 1 after
    assert changed["puzzle-ae"] == {"epochs": 5 * 16 // 2, "batch_size": 64, "val_size": 10}
    assert settings["ae"]["epochs"] == 30  # the caller's settings untouched
    again, _ = fewer_training_images({"1": split}, settings, ["ae"], 100, seed=3)
    assert torch.equal(again["1"].x_train, small)  # seeded
    with pytest.raises(ValueError, match="choose 1 <= n_train <= 1000"):
        fewer_training_images({"1": split}, settings, ["ae"], 2000)


def test_run_table_trains_on_n_train_images_and_records_it(tmp_path):
    make_fake_mnist(tmp_path)
    changes = {"ae": {"epochs": 1, "batch_size": 2}}  # the 6 training images of digit 1: 3 updates
    result = run_table("mnist", ["ae"], [1], root=tmp_path, device="cpu", progress=False, changes=changes, n_train=4)
    used = result["provenance"]["settings"]
    assert used["n_train"] == 4 and used["methods"]["ae"]["epochs"] == 2  # 2 batches of 4 images, twice
    with pytest.raises(ValueError, match="n_train must be a positive number"):
        run_table("mnist", ["ae"], [1], root=tmp_path, n_train=0)


def test_a_grid_value_equal_to_the_profiles_is_the_profiles_own_run():
    plain = sw.sweep_runs({**SWEEP, "methods": ["ae"], "grid": {}})
    swept = sw.sweep_runs({**SWEEP, "methods": ["ae"], "grid": {"ae.epochs": [1, 30]}})  # quick: 30 epochs
    assert [r["changes"] for r in swept] == [{"ae": {"epochs": 1}}] * 3 + [{}] * 3
    assert [sw.run_name(r) for r in swept[3:]] == [sw.run_name(r) for r in plain]  # one file, run once


def test_aurocs_are_grouped_by_method_and_by_the_value_of_a_setting(tmp_path):
    def stored(method, seed, n_train, eps, auc):
        settings = {"n_train": n_train, "methods": {method: {"eps": eps, "epochs": 3}}}
        return {
            "run": {"method": method, "seed": seed},
            "results": {method: {"auc": {"8": auc}, "mean": auc}},
            "provenance": {"settings": settings},
        }

    collected = {
        "runs": [
            stored("ae", 0, 50, 0.1, 70.0),
            stored("ae", 1, 50, 0.1, 72.0),
            stored("ae", 0, None, 0.2, 80.0),
            stored("dae", 0, None, 0.1, 81.0),
        ]
    }
    assert sw.aurocs_by(collected) == {"ae": {"all": [70.0, 72.0, 80.0]}, "dae": {"all": [81.0]}}
    assert sw.aurocs_by(collected, "n_train") == {"ae": {50: [70.0, 72.0], None: [80.0]}, "dae": {None: [81.0]}}
    assert sw.aurocs_by(collected, ("eps", "epochs"))["ae"] == {(0.1, 3): [70.0, 72.0], (0.2, 3): [80.0]}
