"""The medical table and runs over several seeds (Lecture 5)."""

import shutil
import statistics

import numpy as np
import pytest
from PIL import Image
from recomputed import check_evaluation, record_evaluations
from test_medical import make_head_ct

from anomaly_edu.data import DatasetNotFoundError
from anomaly_edu.experiments import report, reproduce
from anomaly_edu.experiments.cli import main

TINY = {"ae": {"epochs": 1, "batch_size": 8}, "puzzle-ae": {"epochs": 1, "batch_size": 8, "widths": [2, 4]}}


@pytest.fixture(scope="module")
def head_ct_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("medical")
    make_head_ct(root, {i: int(i >= 10) for i in range(20)})  # 10 normal, 10 hemorrhage
    return root


def run(root, methods, **options):
    changes = {m: TINY[m] for m in methods}
    return dict(root=root, device="cpu", progress=False, changes=changes, **options)


def test_the_medical_table_runs_on_every_set_present_and_names_the_missing_ones(head_ct_root, capsys, monkeypatch):
    evaluated = record_evaluations(monkeypatch)
    result = reproduce.run_table("medical", ["ae", "puzzle-ae"], **run(head_ct_root, ["ae", "puzzle-ae"]))
    assert "brain-mri is not under the data root" in capsys.readouterr().out
    assert result["provenance"]["settings"]["cases"] == ["head-ct"]
    assert set(result["results"]) == {"ae", "puzzle-ae"}
    # each AUROC is scikit-learn's on the detector's own scores of the head-CT test images
    reported = [
        {metric: result["results"][method][metric]["head-ct"] for metric in ("auc", "fpr_995")}
        for method in ("ae", "puzzle-ae")
    ]
    assert [numbers for _, _, numbers in evaluated] == reported
    for (detector, split, numbers), method in zip(evaluated, ("ae", "puzzle-ae")):
        check_evaluation(detector, split, numbers, f"{method} head-ct")  # AUROC and FPR, from scikit-learn
    text = report.format_comparison(result)
    assert "Puzzle-AE (talk)" in text and "86.4" in text, text
    # the talk's FPR column (0.70 for Puzzle-AE on head CT) beside ours, with what it leaves unsaid
    fpr_table = text[text.index("FPR at TPR 99.5%") :]
    assert "Puzzle-AE (talk)" in fpr_table and "70.0" in fpr_table, text
    assert "does not say at which TPR" in text and "talk: the seed talk's table" in text


def test_several_seeds_give_a_mean_a_spread_and_every_seeds_numbers(head_ct_root):
    result = reproduce.run_seeds("medical", ["ae"], [0, 1, 2], **run(head_ct_root, ["ae"]))
    ours = result["results"]["ae"]
    per_seed = [ours["auc_per_seed"][s]["head-ct"] for s in ("0", "1", "2")]
    assert ours["auc"]["head-ct"] == pytest.approx(sum(per_seed) / 3, abs=0.01)
    mean = sum(per_seed) / 3
    assert ours["auc_std"]["head-ct"] == pytest.approx((sum((v - mean) ** 2 for v in per_seed) / 2) ** 0.5, abs=0.01)
    assert result["provenance"]["settings"]["seeds"] == [0, 1, 2] and "seed" not in result["provenance"]["settings"]
    assert "± std" in report.format_comparison(result)
    fprs = [ours["fpr_995_per_seed"][s]["head-ct"] for s in ("0", "1", "2")]
    assert ours["fpr_995"]["head-ct"] == pytest.approx(sum(fprs) / 3, abs=0.01)
    assert ours["fpr_995_std"]["head-ct"] == pytest.approx(statistics.stdev(fprs), abs=0.01)
    with pytest.raises(ValueError, match="at least two different seeds"):
        reproduce.run_seeds("medical", ["ae"], [4], **run(head_ct_root, ["ae"]))


def test_brain_mri_beside_head_ct_gets_its_own_column_and_the_talks_numbers(head_ct_root, tmp_path, monkeypatch):
    """Both medical sets under one data root: one case each, every number recomputed."""
    root = tmp_path / "both"
    shutil.copytree(head_ct_root, root)
    generator = np.random.default_rng(0)
    for label, brightness in (("no", 60), ("yes", 180)):  # the Kaggle layout: no/ normal, yes/ tumour
        (root / "brain_tumor_dataset" / label).mkdir(parents=True)
        for i in range(12):
            pixels = np.clip(generator.normal(brightness, 30, (40, 40)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "brain_tumor_dataset" / label / f"{label}{i}.jpg")
    evaluated = record_evaluations(monkeypatch)
    result = reproduce.run_table("medical", ["puzzle-ae"], **run(root, ["puzzle-ae"]))
    assert result["provenance"]["settings"]["cases"] == ["head-ct", "brain-mri"]
    assert [int(split.y_test.sum()) for _, split, _ in evaluated] == [10, 12]  # every anomaly of each set
    for (detector, split, numbers), case in zip(evaluated, ("head-ct", "brain-mri")):
        check_evaluation(detector, split, numbers, f"puzzle-ae {case}")
        assert {metric: result["results"]["puzzle-ae"][metric][case] for metric in ("auc", "fpr_995")} == numbers
    talk_rows = [line.split()[2:] for line in report.format_comparison(result).splitlines() if "(talk)" in line]
    assert talk_rows == [["86.4", "96.3", "91.4"], ["70.0", "50.0", "60.0"]]  # Puzzle-AE's AUC, then its FPR


def test_each_seed_draws_its_own_split(head_ct_root):
    first, second = (reproduce.table_splits("medical", None, seed=s, root=head_ct_root)["head-ct"] for s in (0, 1))
    assert not (first.x_train.shape == second.x_train.shape and bool((first.x_train == second.x_train).all()))


def test_no_medical_set_at_all_is_one_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="head"):
        reproduce.run_table("medical", ["ae"], **run(tmp_path, ["ae"]))


def test_classes_make_no_sense_on_the_medical_table(head_ct_root):
    with pytest.raises(ValueError, match="one row per data set, not normal classes"):
        reproduce.run_table("medical", ["ae"], [1], **run(head_ct_root, ["ae"]))


def test_the_command_line_takes_seeds(head_ct_root, tmp_path, capsys):
    out = tmp_path / "medical.json"
    argv = ["reproduce", "medical", "--methods", "ae", "--seeds", "0,1", "--data-root", str(head_ct_root)]
    argv += ["--set", "ae.epochs=1", "--set", "ae.batch_size=8", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert "mean over seeds [0, 1]" in capsys.readouterr().out and out.exists()
    assert main(["reproduce", "medical", "--methods", "ae", "--seeds", "zero"]) == 2
    assert "cannot read seeds 'zero'" in capsys.readouterr().err


@pytest.mark.parametrize("profile,size", [("quick", 64), ("full", 128)])
def test_medical_images_are_128_px_as_published_in_the_full_profile_and_64_in_the_quick(head_ct_root, profile, size):
    changes = {"ae": {"epochs": 1, "batch_size": 8}}
    result = reproduce.run_table(
        "medical", ["ae"], root=head_ct_root, device="cpu", progress=False, changes=changes, profile=profile
    )
    assert result["provenance"]["settings"]["image_shape"] == [1, size, size]
    # the size is a setting like any other: the quick profile runs at the published 128 px with images.size=128
    changes["images"] = {"size": 128}
    result = reproduce.run_table("medical", ["ae"], root=head_ct_root, device="cpu", progress=False, changes=changes)
    assert result["provenance"]["settings"]["image_shape"] == [1, 128, 128]
