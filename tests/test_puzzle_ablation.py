"""The talk's Table 9 (cifar10-ablation), and the same on MNIST (mnist-ablation): Puzzle-AE's variants
and aggregations (Lecture 5)."""

import copy
import json

import pytest
import torch
from recomputed import assert_rounds_to, sklearn_auroc
from test_data import make_fake_cifar10, make_fake_mnist

from anomaly_edu import profiles
from anomaly_edu.experiments import report, reproduce, tables
from anomaly_edu.experiments.cli import main
from anomaly_edu.puzzle_ae import PuzzleAEDetector

TINY = {"puzzle-ae": {"epochs": 1, "batch_size": 8, "widths": [2, 4], "val_size": 4}}
TINY_FLAGS = ["--set", "puzzle-ae.epochs=1", "--set", "puzzle-ae.batch_size=8"]
TINY_FLAGS += ["--set", "puzzle-ae.widths=[2,4]", "--set", "puzzle-ae.val_size=4"]
ROWS = {f"{variant} {aggregation}" for variant in ("PAE", "CPAE", "CPAE-G") for aggregation in ("avg", "max", "min")}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    make_fake_cifar10(root, per_class_test=10)  # 100 test images, 10 of them normal
    with pytest.MonkeyPatch.context() as patch:  # torchvision would refuse the fake files' MD5 sums
        patch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
        yield root


@pytest.fixture(scope="module")
def ablation(cifar_root):
    """One run on normal class 1, counting the fits and the scorings of the test
    set, and keeping the splits it loaded and the (images, errors) of each scoring."""
    calls, kept = {"fit": 0, "permutation_scores": 0}, {"table_splits": [], "permutation_scores": []}
    with pytest.MonkeyPatch.context() as patch:
        for name in calls:
            patch.setattr(PuzzleAEDetector, name, counted(getattr(PuzzleAEDetector, name), calls, name))
        scorings = PuzzleAEDetector.permutation_scores
        patch.setattr(PuzzleAEDetector, "permutation_scores", keeping(scorings, kept["permutation_scores"]))
        patch.setattr(reproduce, "table_splits", keeping(reproduce.table_splits, kept["table_splits"]))
        result = reproduce.run_puzzle_ablation([1], root=cifar_root, device="cpu", progress=False, changes=TINY)
    return result, calls, kept


def counted(method, calls, name):
    def wrapper(*args, **kwargs):
        calls[name] += 1
        return method(*args, **kwargs)

    return wrapper


def keeping(function, kept):
    """``function``, appending (its last positional argument, its result) of each call to ``kept``."""

    def wrapper(*args, **kwargs):
        out = function(*args, **kwargs)
        kept.append((args[-1], out))
        return out

    return wrapper


ONE_SCORE = {  # each aggregation of an image's (N, P) puzzle errors, written out here
    "avg": lambda errors: errors.mean(dim=1),
    "max": lambda errors: errors.max(dim=1).values,
    "min": lambda errors: errors.min(dim=1).values,
}


def test_each_variant_is_fitted_and_scored_once_for_its_three_aggregations(ablation):
    result, calls, kept = ablation
    assert set(result["results"]) == ROWS and result["table"] == "cifar10-ablation"
    for row in result["results"].values():
        assert list(row["auc"]) == ["1"] and row["mean"] == row["auc"]["1"]
    assert calls == {"fit": 3, "permutation_scores": 3}
    # each row's AUROC is scikit-learn's on its aggregation of the errors of its variant's one scoring
    [(_, splits)] = kept["table_splits"]
    split = splits["1"]
    for variant, (images, errors) in zip(("PAE", "CPAE", "CPAE-G"), kept["permutation_scores"]):
        assert images is split.x_test and errors.shape[0] == len(split.y_test) == 100
        for aggregation, one_score in ONE_SCORE.items():
            auc = result["results"][f"{variant} {aggregation}"]["auc"]["1"]
            assert_rounds_to(auc, sklearn_auroc(split.y_test, one_score(errors)), f"{variant} {aggregation}")
    used = result["provenance"]["settings"]
    assert used["variants"] == ["pae", "cpae", "cpae-g"] and used["classes"] == [1] and used["cases"] == ["1"]
    assert used["protocol"] == 2 and used["changed_from_profile"] == TINY
    puzzle_ae = used["methods"]["puzzle-ae"]  # the variant and the aggregation are the table's rows
    assert puzzle_ae["eps"] == pytest.approx(10 / 255) and "variant" not in puzzle_ae and "aggregation" not in puzzle_ae


def test_the_talks_table_9_is_read_by_row_name():
    talk = tables.talk_table("cifar10-ablation")
    assert set(talk) == ROWS
    assert talk["CPAE-G avg"]["mean"] == 72.47 and talk["PAE min"]["0"] == 76.32


def test_our_rows_are_shown_beside_the_talks(ablation):
    result = ablation[0]
    text = report.format_comparison(result)
    assert f"{78.05:.1f}" in talk_line(text, "CPAE-G avg"), text  # the talk's class 1
    assert "has no" not in text
    every_class = copy.deepcopy(result)  # over all ten classes the talk's mean is its own
    every_class["provenance"]["settings"].update(classes=list(range(10)), cases=[str(c) for c in range(10)])
    for row in every_class["results"].values():
        row["auc"] = {str(c): 50.0 for c in range(10)}
    assert talk_line(report.format_comparison(every_class), "CPAE-G avg").split()[-1] == "72.5"


def talk_line(text, row):
    return next(line for line in text.splitlines() if line.startswith(f"{row} (talk)"))


def test_bad_requests_are_refused_before_any_data_loads(monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "table_splits", lambda *a, **k: pytest.fail("loaded data before refusing"))
    with pytest.raises(ValueError, match="variants are pae, cpae, cpae-g; got .*cpae-x"):
        reproduce.run_puzzle_ablation([1], variants=("pae", "cpae-x"), changes=TINY)
    with pytest.raises(ValueError, match="trains only puzzle-ae; drop the changes to ae"):
        reproduce.run_puzzle_ablation([1], changes={**TINY, "ae": {"epochs": 1}})
    with pytest.raises(ValueError, match="classes are 0 to 9"):
        reproduce.run_puzzle_ablation([12])
    with pytest.raises(ValueError, match="its only method"):
        reproduce.run_table("cifar10-ablation", ["ae", "puzzle-ae"], [1])
    with pytest.raises(ValueError, match="not --seeds"):
        reproduce.run_seeds("cifar10-ablation", ["puzzle-ae"], [0, 1], [1])
    for flags in (["--methods", "ae,dae"], ["--seeds", "0,1"]):
        assert main(["reproduce", "cifar10-ablation", "--classes", "1", *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("only method" in err or "not --seeds" in err), err


def test_run_table_hands_the_table_to_run_puzzle_ablation(monkeypatch):
    seen = {}
    monkeypatch.setattr(reproduce, "run_puzzle_ablation", lambda classes, **options: seen.update(options, c=classes))
    reproduce.run_table("cifar10-ablation", ["puzzle-ae"], [3], profile="full", seed=2, changes=TINY)
    assert seen["c"] == [3] and seen["profile"] == "full" and seen["seed"] == 2 and seen["changes"] == TINY


def test_a_run_with_checkpoints_resumes_without_training_again(cifar_root, tmp_path, monkeypatch):
    run = dict(variants=("pae",), root=cifar_root, device="cpu", progress=False, changes=TINY, checkpoints=tmp_path)
    first = reproduce.run_puzzle_ablation([1], **run)
    assert set(first["results"]) == {"PAE avg", "PAE max", "PAE min"}
    monkeypatch.setattr(PuzzleAEDetector, "fit", lambda *a, **k: pytest.fail("trained a finished detector again"))
    again = reproduce.run_puzzle_ablation([1], **run)
    assert again["results"] == first["results"] and again["provenance"]["resumed"]


def test_the_command_line_runs_the_table_and_its_parts_merge(ablation, cifar_root, tmp_path, capsys):
    out = tmp_path / "class0.json"
    argv = ["reproduce", "cifar10-ablation", "--classes", "0", "--data-root", str(cifar_root), "--device", "cpu"]
    assert main([*argv, *TINY_FLAGS, "--no-progress", "--out", str(out)]) == 0
    assert "CPAE-G avg (talk)" in capsys.readouterr().out
    class0 = json.loads(out.read_text())
    assert set(class0["results"]) == ROWS
    class1 = tmp_path / "class1.json"
    class1.write_text(json.dumps(ablation[0]))
    merged_path = tmp_path / "merged.json"
    assert main(["merge", str(class1), str(out), "--out", str(merged_path)]) == 0
    merged = json.loads(merged_path.read_text())
    assert merged["provenance"]["settings"]["classes"] == [0, 1]
    assert "stacked_training" not in merged["provenance"]["settings"]
    for name, row in merged["results"].items():
        parts = class0["results"][name]["auc"]["0"], ablation[0]["results"][name]["auc"]["1"]
        assert row["auc"] == {"0": parts[0], "1": parts[1]} and row["mean"] == pytest.approx(sum(parts) / 2, abs=0.01)


def test_the_mnist_ablation_runs_the_same_table_on_mnist(tmp_path, capsys):
    """The course's ablation where CIFAR-10 is absent: MNIST's splits, MNIST's
    settings, every row recomputed, and no talk rows beside it (the talk has none)."""
    make_fake_mnist(tmp_path)
    kept = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PuzzleAEDetector, "permutation_scores", keeping(PuzzleAEDetector.permutation_scores, kept))
        result = reproduce.run_table(
            "mnist-ablation", ["puzzle-ae"], [1], root=tmp_path, device="cpu", progress=False, changes=TINY
        )
    assert result["table"] == "mnist-ablation" and set(result["results"]) == ROWS
    used = result["provenance"]["settings"]
    assert used["dataset"] == "mnist" and used["classes"] == [1]
    assert used["methods"]["puzzle-ae"]["eps"] == profiles.get_profile("quick", "mnist")["puzzle-ae"]["eps"]
    split = reproduce.table_splits("mnist", [1], root=tmp_path)["1"]
    for variant, (images, errors) in zip(("PAE", "CPAE", "CPAE-G"), kept):
        assert images.shape == split.x_test.shape == (30, 1, 28, 28) and torch.equal(images, split.x_test)
        for aggregation, one_score in ONE_SCORE.items():
            auc = result["results"][f"{variant} {aggregation}"]["auc"]["1"]
            assert_rounds_to(auc, sklearn_auroc(split.y_test, one_score(errors)), f"{variant} {aggregation}")
    text = report.format_comparison(result)
    assert "(talk)" not in text and "CPAE-G avg (ours)" in text, text
    assert "the talk has no mnist-ablation table" in text and "seed talk's table" not in text
    with pytest.raises(ValueError, match="not --seeds"):
        reproduce.run_seeds("mnist-ablation", ["puzzle-ae"], [0, 1], [1])
    with pytest.raises(ValueError, match="ablation tables are"):
        reproduce.run_puzzle_ablation([1], table="mnist")
