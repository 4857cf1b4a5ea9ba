"""The Lecture 6 tables of reproduce: magnetic tiles and MVTec AD (image AUROC,
pixel AUROC, AU-PRO), and the generality table built from the other tables;
all on small data sets that the tests write in the real layouts."""

import json

import numpy as np
import pytest
from recomputed import check_evaluation, record_evaluations
from test_data import make_fake_mnist
from test_magnetic_tile import make_magnetic_tile_tree
from test_medical import make_head_ct
from test_mvtec import make_mvtec_tree

from anomaly_edu.anomaly_maps import resize_maps
from anomaly_edu.data.magnetic_tile import magnetic_tile_split
from anomaly_edu.experiments import report, reproduce, tables
from anomaly_edu.experiments.cli import main
from anomaly_edu.experiments.methods import make_detector
from anomaly_edu.metrics import au_pro, auroc, pixel_auroc
from anomaly_edu.profiles import get_profile

TINY = {
    "ae-l2": {"epochs": 1, "batch_size": 4, "widths": [4, 8], "latent_dim": 4},
    "ae-ssim": {"epochs": 1, "batch_size": 4, "widths": [4, 8], "latent_dim": 4},
    "puzzle-ae": {"epochs": 1, "batch_size": 4, "widths": [2, 4], "val_size": 2},
    "gt": {"epochs": 1, "batch_size": 8, "widths": [2, 4]},
}
RUN = dict(device="cpu", progress=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("industrial")
    make_magnetic_tile_tree(root)
    make_mvtec_tree(root, categories=("bottle", "carpet"), size=8, n_train=27)  # 25 held out, as published
    return root


def test_the_magnetic_tile_table_has_pixel_metrics_for_the_methods_that_map(root, capsys, monkeypatch):
    evaluated = record_evaluations(monkeypatch)
    result = reproduce.run_table("magnetic-tile", list(TINY), root=root, changes=TINY, **RUN)
    numbers = result["results"]
    for method in ("ae-l2", "ae-ssim", "puzzle-ae"):
        assert set(numbers[method]) >= {"auc", "pixel_auc", "au_pro"}
    # every number is recomputed from the detector's own scores and maps: image and pixel
    # AUROC by scikit-learn, AU-PRO on maps resized to each tile's mask (tests/recomputed.py)
    assert len(evaluated) == len(TINY)
    for (detector, split, evaluation), method in zip(evaluated, TINY):
        assert {metric: numbers[method][metric]["magnetic-tile"] for metric in evaluation} == evaluation
        check_evaluation(detector, split, evaluation, method)
    assert "pixel_auc" not in numbers["gt"] and "au_pro" not in numbers["gt"]
    assert result["provenance"]["settings"]["protocol"] == 4
    assert "each tile's own size" in result["metric"]
    text = report.format_comparison(result)
    assert "(no pixel AUC: gt makes no anomaly map)" in text and "AU-PRO" in text
    assert "the talk has no magnetic-tile table" in text


def test_evaluate_scores_maps_at_each_masks_own_size(root):
    split = magnetic_tile_split(root, size=16, progress=False)
    settings = get_profile("quick", "magnetic-tile")
    settings["ae-l2"].update(TINY["ae-l2"])
    detector = make_detector("ae-l2", settings, **RUN)
    detector.fit(split.x_train)
    numbers = reproduce.evaluate(detector, split, protocol=4)
    maps = resize_maps(detector.anomaly_map(split.x_test), [m.shape for m in split.masks_test])
    assert len({m.shape for m in split.masks_test}) > 1  # the tiles differ in size
    assert numbers["auc"] == round(100 * auroc(split.y_test, detector.anomaly_score(split.x_test)), 2)
    assert numbers["pixel_auc"] == round(100 * pixel_auroc(split.masks_test, maps), 2)
    assert numbers["au_pro"] == round(100 * au_pro(split.masks_test, maps), 2)


def test_the_mvtec_table_runs_by_category_with_the_talks_numbers_beside(root):
    changes = {"ae-l2": TINY["ae-l2"]}
    result = reproduce.run_table("mvtec", ["ae-l2"], ["carpet", "bottle"], root=root, changes=changes, **RUN)
    assert list(result["results"]["ae-l2"]["auc"]) == ["carpet", "bottle"]
    assert result["provenance"]["settings"]["classes"] == ["carpet", "bottle"]
    text = report.format_comparison(result)
    assert "AE_L2 (talk)" in text and "talk 65.0" in text  # the talk: carpet 50, bottle 80
    assert "over the 1 textures run" in text and "over the 1 objects run" in text
    everything = reproduce.run_table("mvtec", ["ae-l2"], None, root=root, changes=changes, **RUN)
    assert sorted(everything["results"]["ae-l2"]["auc"]) == ["bottle", "carpet"]  # all under the data root
    with pytest.raises(ValueError, match="unknown MVTec categories marble"):
        reproduce.run_table("mvtec", ["ae-l2"], ["marble"], root=root, **RUN)


def test_puzzle_ae_swaps_two_tiles_on_mvtec_textures_only():
    settings = get_profile("quick", "mvtec")
    assert tables.case_settings("mvtec", "carpet", settings)["puzzle-ae"]["puzzles"] == "swaps"
    assert tables.case_settings("mvtec", "bottle", settings)["puzzle-ae"]["puzzles"] == "all"
    assert tables.case_settings("magnetic-tile", "magnetic-tile", settings)["puzzle-ae"]["puzzles"] == "all"
    assert settings["puzzle-ae"]["puzzles"] == "all"  # the profile itself is not changed


def test_the_command_line_takes_mvtec_categories_by_name(root, tmp_path, capsys):
    out = tmp_path / "mvtec.json"
    args = ["reproduce", "mvtec", "--methods", "ae-l2", "--classes", "bottle", "--data-root", str(root)]
    sets = [f"--set=ae-l2.{k}={json.dumps(v)}" for k, v in TINY["ae-l2"].items()]
    assert main([*args, *sets, "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
    assert list(json.loads(out.read_text())["results"]["ae-l2"]["auc"]) == ["bottle"]
    assert main(["reproduce", "mvtec", "--methods", "ae-l2", "--classes", "marble", "--data-root", str(root)]) == 2
    assert "unknown MVTec categories marble" in capsys.readouterr().err


def test_the_generality_table_gathers_the_other_tables_means(tmp_path, capsys):
    root = tmp_path / "data"
    make_fake_mnist(root)
    make_head_ct(root, {i: int(i >= 10) for i in range(20)})
    changes = {"gt": TINY["gt"], "puzzle-ae": TINY["puzzle-ae"]}
    result = reproduce.run_table("generality", ["gt", "puzzle-ae"], [1, 2], root=root, changes=changes, **RUN)
    printed = capsys.readouterr().out
    assert "no cifar10 data" in printed and "no mvtec data" in printed
    runs = result["provenance"]["settings"]["runs"]
    assert sorted(runs) == ["medical", "mnist"] and runs["mnist"]["classes"] == [1, 2]
    for method in ("gt", "puzzle-ae"):
        assert list(result["results"][method]["auc"]) == ["MNIST", "head_ct_hemorrhage"]
    text = report.format_comparison(result)
    assert "GT (talk)" in text and "Puzzle-AE (talk)" in text and "98.0" in text and "44.7" in text
    assert "ours, mnist: mean over normal classes [1, 2]" in text and "ours, medical: mean over cases head-ct" in text


def test_generality_refuses_a_method_that_cannot_take_some_data_before_training(tmp_path):
    root = tmp_path / "data"
    make_fake_mnist(root)
    make_mvtec_tree(root, categories=("bottle",), size=8, n_train=27)
    with pytest.raises(ValueError, match=r"dsvdd cannot run on the generality table \(mvtec\)"):
        reproduce.run_table("generality", ["dsvdd"], [1], root=root, **RUN)


def test_the_talks_generality_and_mvtec_numbers_are_read_as_printed():
    generality = tables.talk_table("generality")
    assert generality["GT"]["MVTec"] == 67.2 and generality["Puzzle-AE"]["brain_tumor"] == 96.34
    mvtec = tables.talk_table("mvtec")
    assert mvtec["Puzzle-AE"]["mean"] == 77.63 and mvtec["AE_SSIM"]["carpet"] == 67.0
    assert tables.talk_table("magnetic-tile") == {} and tables.talk_table("mvtec", "AU-PRO") == {}
    assert np.isclose(np.mean([mvtec["AE_L2"][c] for c in ("carpet", "bottle")]), 65.0)
