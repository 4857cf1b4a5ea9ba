import copy
import functools
import json
import subprocess

import numpy as np
import pytest
import torch
from recomputed import check_evaluation, record_evaluations

from anomaly_edu import detectors, profiles
from anomaly_edu.data import files
from anomaly_edu.experiments import methods, report, reproduce, results, tables
from anomaly_edu.metrics import auroc


def blobs(n=300, seed=0):
    """Normal images: dark with a bright square top-left; anomalies: bright bottom-right."""
    g = torch.Generator().manual_seed(seed)
    normal = 0.1 * torch.rand(n, 1, 28, 28, generator=g)
    normal[:, :, 2:12, 2:12] += 0.8
    anomalous = 0.1 * torch.rand(n // 3, 1, 28, 28, generator=g)
    anomalous[:, :, 16:26, 16:26] += 0.8
    return normal, anomalous


@pytest.mark.parametrize(
    "detector",
    [
        detectors.AEDetector(epochs=8, batch_size=32, progress=False),
        detectors.DAEDetector(epochs=8, batch_size=32, noise_std=0.2, progress=False),
        detectors.OCSVMDetector(nu=0.1),
        detectors.DeepSVDDDetector(epochs=5, batch_size=50, lr=1e-3, progress=False),
    ],
    ids=["ae", "dae", "ocsvm", "dsvdd"],
)
def test_detectors_score_obvious_anomalies_higher(detector):
    normal, anomalous = blobs()
    detector.fit(normal[:250])
    test = torch.cat([normal[250:], anomalous])
    labels = np.r_[np.zeros(50), np.ones(len(anomalous))]
    scores = detector.anomaly_score(test)
    assert scores.shape == (len(test),)
    assert auroc(labels, scores) > 0.95


def test_reconstruction_error_is_the_sum_of_squared_errors():
    class Zeros(torch.nn.Module):
        def forward(self, b):
            return torch.zeros_like(b)

    x = torch.rand(3, 1, 2, 2)
    assert torch.allclose(detectors.reconstruction_error(Zeros(), x), (x**2).flatten(1).sum(1))
    assert torch.allclose(detectors.reconstruction_error(torch.nn.Identity(), x), torch.zeros(3))


def test_detectors_refuse_to_score_before_fit():
    for d in (detectors.AEDetector(), detectors.OCSVMDetector(), detectors.DeepSVDDDetector()):
        with pytest.raises(RuntimeError, match="fit"):
            d.anomaly_score(torch.rand(2, 1, 28, 28))


def test_detectors_reject_images_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        detectors.AEDetector(progress=False).fit(torch.rand(4, 1, 28, 28) * 255)


def test_same_seed_gives_the_same_scores():
    normal, _ = blobs(60)
    a = detectors.AEDetector(epochs=2, batch_size=16, seed=3, progress=False).fit(normal).anomaly_score(normal)
    b = detectors.AEDetector(epochs=2, batch_size=16, seed=3, progress=False).fit(normal).anomaly_score(normal)
    np.testing.assert_array_equal(a, b)


def test_make_detector_reads_the_profile():
    p = profiles.get_profile("quick")
    d = methods.make_detector("dae", p, progress=False)
    assert isinstance(d, detectors.DAEDetector) and d.epochs == p["dae"]["epochs"]
    with pytest.raises(ValueError, match="unknown method"):
        methods.make_detector("vae", p)
    with pytest.raises(ValueError, match="unknown profile"):
        profiles.get_profile("fast")


def test_gcn_gives_zero_mean_unit_l1_images():
    x = torch.rand(4, 1, 8, 8)
    g = detectors.global_contrast_normalize(x)
    assert torch.allclose(g.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-6)
    assert torch.allclose(g.abs().mean(dim=(1, 2, 3)), torch.ones(4), atol=1e-5)


# ------------------------------------------------------------------ reproduce


def test_parse_classes():
    assert tables.parse_classes("0-9") == list(range(10))
    assert tables.parse_classes("1,3,8") == [1, 3, 8]
    with pytest.raises(ValueError, match="cannot read"):
        tables.parse_classes("eight")


def test_talk_table_is_the_papers_table_1():
    table = tables.talk_table("mnist")
    assert table["ARAE"]["mean"] == 97.5 and table["DAE"]["8"] == 89.1
    assert np.mean([table["OCSVM"][str(c)] for c in range(10)]) == pytest.approx(96.0, abs=0.05)


def test_reproduce_command_writes_results_with_provenance(mnist_root, tmp_path, monkeypatch, capsys, fewer_images):
    # Shrink the quick profile so that the test stays short; the real run is measured in the notes.
    small = profiles.get_profile("quick")
    small["ae"]["epochs"] = small["dae"]["epochs"] = 1
    monkeypatch.setattr(reproduce, "get_profile", lambda name, dataset=None: small)
    evaluated = record_evaluations(monkeypatch)
    from anomaly_edu.experiments.cli import main

    out = tmp_path / "r.json"
    assert (
        main(
            [
                "reproduce",
                "mnist",
                "--methods",
                "ae,dae",
                "--classes",
                "8",
                "--out",
                str(out),
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "dae (ours)" in printed and "DAE (talk)" in printed and "89.1" in printed
    result = json.loads(out.read_text())
    assert set(result["results"]) == {"ae", "dae"}
    auc = result["results"]["dae"]["auc"]["8"]
    assert 50 < auc <= 100 and result["results"]["dae"]["mean"] == auc
    detector, split, numbers = evaluated[-1]  # ae, then dae
    assert len(evaluated) == 2 and isinstance(detector, detectors.DAEDetector)
    assert numbers == {"auc": auc, "fpr_995": result["results"]["dae"]["fpr_995"]["8"]}  # protocol 2: and Figure 3
    check_evaluation(detector, split, numbers, "dae 8")  # scikit-learn's AUROC and FPR on the DAE's own scores
    prov = result["provenance"]
    assert {"commit", "device", "precision", "versions", "date", "wall_time_s", "settings"} <= set(prov)
    assert prov["precision"] == "float32"
    assert prov["settings"]["classes"] == [8] and prov["settings"]["profile"] == "quick"
    assert prov["versions"]["torch"] == torch.__version__
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "r.json"
    files.write_json_atomically({"a": 1}, path)
    with pytest.raises(TypeError):
        files.write_json_atomically({"a": object()}, path)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by all, like any file a command writes


def test_reproduce_rejects_unknown_methods_and_tables():
    with pytest.raises(ValueError, match="unknown method"):
        reproduce.run_table("mnist", ["vae"], [8])
    with pytest.raises(ValueError, match="unknown table 'svhn'"):
        reproduce.run_table("svhn", ["ae"], [8])


def test_merging_runs_on_disjoint_classes_equals_one_run(mnist_root, monkeypatch, tmp_path, fewer_images):
    small = {"ae": {"epochs": 1, "batch_size": 256, "lr": 1e-3}}
    monkeypatch.setattr(reproduce, "get_profile", lambda name, dataset=None: small)
    run = functools.partial(reproduce.run_table, "mnist", ["ae"], device="cpu", progress=False, stacked=False)
    together, first, second = run([1, 4]), run([1]), run([4])
    merged = report.merge_results([second, first])
    assert merged["provenance"]["settings"]["classes"] == [1, 4]
    assert merged["results"]["ae"]["auc"] == pytest.approx(together["results"]["ae"]["auc"], abs=0.02)
    assert merged["results"]["ae"]["mean"] == pytest.approx(np.mean(list(merged["results"]["ae"]["auc"].values())))
    assert [p["classes"] for p in merged["provenance"]["parts"]] == [[4], [1]]
    assert merged["provenance"]["wall_time_s"] == pytest.approx(
        first["provenance"]["wall_time_s"] + second["provenance"]["wall_time_s"], abs=0.2
    )

    third = copy.deepcopy(second)  # a merged file merges again, keeping every run it was made of
    third["provenance"]["settings"]["classes"], third["results"]["ae"]["auc"] = [7], {"7": 90.0}
    with pytest.raises(ValueError, match=r"no fpr_995 of ae for class\(es\) \[7\]"):
        report.merge_results([merged, third])  # its FPR still names class 4
    third["results"]["ae"]["fpr_995"] = {"7": 5.0}
    again = report.merge_results([merged, third])
    assert again["results"]["ae"]["fpr_995"] == {**merged["results"]["ae"]["fpr_995"], "7": 5.0}
    assert [p["classes"] for p in again["provenance"]["parts"]] == [[4], [1], [7]]
    assert again["results"]["ae"]["mean"] == round(np.mean([*merged["results"]["ae"]["auc"].values(), 90.0]), 2)

    with pytest.raises(ValueError, match=r"class\(es\) \[4\]"):
        report.merge_results([second, together])
    longer = copy.deepcopy(second)
    longer["provenance"]["settings"]["methods"]["ae"]["epochs"] = 2
    with pytest.raises(ValueError, match="not runs of the same command"):
        report.merge_results([first, longer])
    with pytest.raises(ValueError, match="at least two"):
        report.merge_results([first])

    from anomaly_edu.experiments.cli import main

    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for path, part in zip(paths, (first, second)):
        files.write_json_atomically(part, path)
    out = tmp_path / "all.json"
    assert main(["merge", *map(str, paths), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["results"] == merged["results"]
    (tmp_path / "bad.json").write_text("{}")
    assert main(["merge", str(paths[0]), str(tmp_path / "bad.json"), "--out", str(out)]) == 2


def test_merge_joins_every_per_class_number_and_parts_of_other_commits_with_the_same_code(monkeypatch):
    def part(cls, commit):
        settings = {"table": "mnist", "protocol": 2, "classes": [cls], "cases": [str(cls)], "methods": {"ae": {}}}
        numbers = {"auc": {str(cls): 90.0 + cls}, "fpr_995": {str(cls): 10.0 + cls}, "mean": 90.0 + cls}
        prov = {"commit": commit, "uncommitted_changes": False, "settings": settings, "device": "cpu"}
        prov |= {"date": "2026-12-07T00:00:00+00:00", "wall_time_s": 1.0}
        return {"table": "mnist", "metric": "AUROC (%)", "results": {"ae": numbers}, "provenance": prov}

    asked = []
    monkeypatch.setattr(report, "same_code_at", lambda commits: asked.append(commits) or True)
    merged = report.merge_results([part(0, "a" * 40), part(1, "b" * 40)])
    assert merged["results"]["ae"] == {"auc": {"0": 90.0, "1": 91.0}, "fpr_995": {"0": 10.0, "1": 11.0}, "mean": 90.5}
    assert asked == [["a" * 40, "b" * 40]] and merged["provenance"]["commits"] == ["a" * 40, "b" * 40]
    again = report.merge_results([merged, part(2, "c" * 40)])  # a merged part brings its commits along
    assert again["provenance"]["commits"] == ["a" * 40, "b" * 40, "c" * 40]
    same = report.merge_results([part(0, "a" * 40), part(1, "a" * 40)])
    assert "commits" not in same["provenance"] and len(asked) == 2  # one commit: nothing to compare
    monkeypatch.setattr(report, "same_code_at", lambda commits: False)
    with pytest.raises(ValueError, match="package code differs.*git worktree add"):
        report.merge_results([part(0, "a" * 40), part(1, "b" * 40)])
    monkeypatch.setattr(report, "same_code_at", lambda commits: None)  # git cannot tell
    with pytest.raises(ValueError, match="package code differs"):
        report.merge_results([part(0, "a" * 40), part(1, "b" * 40)])


def test_same_code_at_compares_only_the_packages_folder(tmp_path):
    def git(*args):
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "code.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("one\n")
    git("add", "-A")
    git("commit", "-qm", "one")
    first = git("rev-parse", "HEAD")
    (tmp_path / "notes.md").write_text("two\n")  # outside the package
    git("commit", "-qam", "two")
    second = git("rev-parse", "HEAD")
    (tmp_path / "package" / "code.py").write_text("x = 2\n")
    git("commit", "-qam", "three")
    third = git("rev-parse", "HEAD")
    package = tmp_path / "package"
    assert results.same_code_at([first, second], package) is True
    assert results.same_code_at([first, second, third], package) is False
    assert results.same_code_at([first, "0" * 40], package) is None  # a commit this checkout lacks


def test_coil100_table_runs_on_a_generated_tree(tmp_path, monkeypatch):
    from test_data import make_fake_coil

    make_fake_coil(tmp_path, objects=12, views=20, size=8)
    small = profiles.get_profile("quick", "coil100")
    small["dae"].update(epochs=1, batch_size=16)
    small["arae"].update(epochs=1, batch_size=16, steps=1)
    monkeypatch.setattr(reproduce, "get_profile", lambda name, dataset=None: small)
    evaluated = record_evaluations(monkeypatch)
    result = reproduce.run_table(
        "coil100", ["dae", "arae"], root=tmp_path, device="cpu", progress=False, changes={"arae": {"eps": 0.1}}
    )
    cases = ["1-0.50", "4-0.25", "7-0.15"]
    for metric in ("auc", "f1"):
        assert list(result["results"]["arae"][metric]) == cases
    # each AUROC and F1 is scikit-learn's on the detector's own scores (F1 at a threshold F1-best on validation)
    assert len(evaluated) == 6
    for (detector, split, numbers), (method, case) in zip(evaluated, [(m, c) for m in ("dae", "arae") for c in cases]):
        assert {metric: result["results"][method][metric][case] for metric in ("auc", "f1")} == numbers
        check_evaluation(detector, split, numbers, f"{method} {case}")
    prov = result["provenance"]["settings"]
    assert prov["protocol"] == 1 and prov["changed_from_profile"] == {"arae": {"eps": 0.1}}
    assert prov["methods"]["arae"]["eps"] == 0.1  # --set works for coil100 too
    text = report.format_comparison(result)
    assert "ARAE (talk)" in text and "99.8" in text and "F1" in text
    with pytest.raises(ValueError, match="dsvdd cannot run on the coil100 table"):
        reproduce.run_table("coil100", ["dae", "dsvdd"], root=tmp_path)
    with pytest.raises(ValueError, match="fixed rows"):
        reproduce.run_table("coil100", ["dae"], [1, 2], root=tmp_path)


def test_dataset_settings_follow_methods():
    assert profiles.get_profile("full", "mnist")["arae"]["eps"] == 0.2
    assert profiles.get_profile("full", "fashion-mnist")["arae"]["eps"] == 0.05
    coil = profiles.get_profile("full", "coil100")["arae"]
    assert (coil["eps"], coil["steps"], coil["batch_size"]) == (0.05, 20, 16)
