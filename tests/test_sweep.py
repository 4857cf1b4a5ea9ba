"""The sweep (Lecture 7): a sweep file expands into checked runs; each run
writes its own file atomically; finished runs are skipped, so an interrupted
sweep resumes without losing or repeating a run; shards split the runs and
their folders join again; bad input is one clear error."""

import json

import pytest
from test_data import make_fake_mnist

from anomaly_edu import sweep as sw
from anomaly_edu.__main__ import main

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

    def run(table, methods, classes, *, profile, seed, changes, **options):
        calls.append((methods[0], seed, json.dumps(changes, sort_keys=True)))
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
        ({"methods": ["dsvdd"], "table": "coil100"}, "dsvdd cannot run on the coil100 table"),
    ],
)
def test_bad_sweep_files_are_one_clear_error(change, message):
    with pytest.raises(ValueError, match=message):
        sw.sweep_runs({**SWEEP, **change})


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


def test_the_command_line_runs_a_real_sweep_in_shards_and_collects_it(tmp_path, capsys):
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
    assert all(0 <= r["results"]["ae"]["auc"]["1"] <= 100 for r in collected["runs"])
    assert main(["sweep", str(sweep_file), "--collect", parts[0], "--out", str(joined)]) == 1
    assert "missing: mnist_ae_classes-1_seed-1" in capsys.readouterr().out
    assert main(["sweep", str(sweep_file), "--out", str(tmp_path / "x"), "--shard", "3/2", *common]) == 2
    assert "shard" in capsys.readouterr().err
