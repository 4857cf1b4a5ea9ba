"""The reproduction report (the book's page after Lecture 7): the verdict rules on cases with known
answers, the intervals against scipy, and the page rebuilt from results/ and compared."""

import json
import math
import shutil
from pathlib import Path

import pytest
from scipy import stats

from anomaly_edu.experiments import verdicts
from anomaly_edu.experiments.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_the_t_interval_is_scipys():
    values = [1.0, 2.5, 0.5, 3.0]
    interval = verdicts.t_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values))
    assert interval.n == 4 and interval.mean == pytest.approx(1.75)
    assert (interval.low, interval.high) == (pytest.approx(low), pytest.approx(high))
    one = verdicts.t_interval([2.0])
    assert one.n == 1 and math.isnan(one.low) and "1 run" in str(one)
    with pytest.raises(ValueError, match="at least one value"):
        verdicts.t_interval([])


@pytest.mark.parametrize(
    "differences, verdict",
    [
        ([1.0, 1.2, 0.9], verdicts.HOLDS),  # the interval lies above 0
        ([-1.0, -1.2, -0.9], verdicts.DOES_NOT_HOLD),  # at or below 0
        ([1.0, -1.0, 0.5], verdicts.UNDECIDED),  # holds 0
        ([3.0, 4.0], verdicts.UNDECIDED),  # fewer than 3 seeds decide nothing, however large
    ],
)
def test_a_beats_b_by_the_paired_interval(differences, verdict):
    assert verdicts.beats(differences)[0] == verdict


def test_reaching_the_talks_number_fails_only_at_the_published_budget():
    below = [80.0, 81.0, 80.5]
    assert verdicts.reaches(below, 86.43, published_budget=False)[0] == verdicts.UNDECIDED
    assert verdicts.reaches(below, 86.43, published_budget=True)[0] == verdicts.DOES_NOT_HOLD
    assert verdicts.reaches([86.0, 87.0, 86.5], 86.43, published_budget=True)[0] == verdicts.HOLDS
    assert verdicts.reaches([90.0], 86.43, published_budget=True)[0] == verdicts.UNDECIDED  # one seed


def fake_table1_run(folder: Path, digit: int, seed: int, arae: float, dae: float, device="cpu (AMD EPYC, 1 threads)"):
    name = f"mnist_quick400_class{digit}.json" if seed == 0 else f"mnist_quick400_seed{seed}_class{digit}.json"
    case = str(digit)
    result = {
        "results": {
            "mean-image": {"auc": {case: 79.0}, "fpr_995": {case: 70.0}},
            "arae": {"auc": {case: arae}, "fpr_995": {case: 60.0 - arae}},
            "dae": {"auc": {case: dae}, "fpr_995": {case: 60.0 - dae}},
        },
        "provenance": {"device": device, "wall_time_s": 3600.0, "settings": {"seed": seed}},
    }
    (folder / name).write_text(json.dumps(result))


def test_table1_pairs_the_seeds_of_one_configuration(tmp_path):
    for seed, (arae, dae) in enumerate([(92.0, 90.0), (91.5, 90.1), (92.2, 90.3)]):
        fake_table1_run(tmp_path, 8, seed, arae, dae)
    fake_table1_run(tmp_path, 8, 3, 80.0, 95.0, device="cpu (Intel(R) Xeon(R) Processor, 2 threads)")
    claims = {c.key: c for c in verdicts.table1_claims(tmp_path)}
    table1, figure3 = claims["table1-digit8"], claims["figure3-digit8"]
    # the Intel run is another configuration: left out, and said so; the three AMD runs decide
    assert table1.verdict == verdicts.HOLDS and "3 seeds" in table1.ours and "+1.77" in table1.ours
    assert any("left out" in line for line in table1.evidence) and table1.hours == pytest.approx(3.0)
    assert table1.to_decide == "" and "stays below the talk's margin of +3.3" in table1.evidence[0]
    assert figure3.verdict == verdicts.HOLDS  # a lower FPR for ARAE on every seed
    assert any(line.startswith("AUROC over the same seeds: DAE 90.13 [") for line in table1.evidence)
    assert not any(line.startswith(("AUROC", "the interval")) for line in figure3.evidence)  # Table 1's, not its own
    fake_table1_run(tmp_path, 2, 0, 90.0, 91.0)  # one seed of digit 2: undecided, with the command that decides
    digit2 = {c.key: c for c in verdicts.table1_claims(tmp_path)}["table1-digit2"]
    assert digit2.verdict == verdicts.UNDECIDED and "--classes 2 --seed SEED" in digit2.to_decide
    assert "SEED in [1, 2]" in digit2.to_decide
    assert "2 more run(s), about 2.0 machine-hours here" in digit2.to_decide


def test_an_undecided_digit_with_three_seeds_gets_the_published_budget(tmp_path):
    for seed, (arae, dae) in enumerate([(92.0, 90.0), (90.0, 92.0), (91.0, 91.5)]):
        fake_table1_run(tmp_path, 8, seed, arae, dae)
    table1 = {c.key: c for c in verdicts.table1_claims(tmp_path)}["table1-digit8"]
    assert table1.verdict == verdicts.UNDECIDED
    # 1 hour per stored run, scaled by 1600 / 400 epochs and (40 + 1) / (5 + 1) attack passes, 3 seeds
    hours = 3 * 1600 / 400 * 41 / 6
    assert f"about {hours:.1f} machine-hours here" in table1.to_decide and "--profile full" in table1.to_decide
    assert f"{hours / verdicts.ASSUMED_GPU_SPEEDUP:.2f} GPU-hours" in table1.to_decide


def fake_head_ct_run(folder: Path, seed: int, puzzle: float, device="cpu (AMD EPYC, 1 threads)"):
    methods = {"mean-image": 65.0, "pca": 82.0, "puzzle-ae": puzzle}
    result = {
        "results": {m: {"auc": {"head-ct": v}, "fpr_995": {"head-ct": 100 - v}} for m, v in methods.items()},
        "provenance": {
            "device": device,
            "wall_time_s": 1800.0,
            "settings": {
                "seed": seed,
                "image_shape": [1, 128, 128],
                "methods": {
                    "puzzle-ae": {
                        "variant": "cpae-g",
                        "epochs": 100,
                        "widths": [16, 32, 64, 128, 128],
                        "networks": "published",
                        "batch_size": 8,
                        "eps": 0.07,
                    },
                    "ae": {"epochs": 100},
                },
            },
        },
    }
    (folder / f"medical_head_ct_faithful_seed{seed}.json").write_text(json.dumps(result))


def test_head_ct_reads_the_faithful_runs_one_file_per_seed(tmp_path):
    (claim,) = verdicts.head_ct_claim(tmp_path)  # nothing stored: a row that says so
    assert claim.verdict == verdicts.UNDECIDED and claim.ours == "no faithful run stored yet"
    fake_head_ct_run(tmp_path, 0, 70.0)
    (claim,) = verdicts.head_ct_claim(tmp_path)
    assert "1 run" in claim.ours and "2 more seed(s)" in claim.to_decide and "seedSEED.json" in claim.to_decide
    fake_head_ct_run(tmp_path, 1, 72.0)
    fake_head_ct_run(tmp_path, 2, 74.0)
    fake_head_ct_run(tmp_path, 3, 99.0, device="cpu (Intel(R) Xeon(R) Processor, 2 threads)")  # left out
    (claim,) = verdicts.head_ct_claim(tmp_path)
    assert claim.verdict == verdicts.UNDECIDED and claim.ours.startswith("72.00 [") and "3 seeds" in claim.ours
    assert claim.talk.startswith("86.43") and claim.hours == pytest.approx(1.5)
    assert any("left out" in line for line in claim.evidence)
    assert any(line.startswith("beside") and "pca 82.00" in line for line in claim.evidence)
    assert any("128 px" in line and "cpae-g" in line for line in claim.evidence)
    # the full profile's 1,000 epochs on 3 seeds: the stored 0.5 hour per seed, times 10
    assert "more seed" not in claim.to_decide and "about 15.0 machine-hours here" in claim.to_decide


def test_the_books_report_is_the_one_the_stored_results_make(tmp_path):
    page = (ROOT / verdicts.REPORT_PAGE).read_text()
    assert page == verdicts.report_page(), (
        f"{verdicts.REPORT_PAGE} is not what results/ gives: run `python -m anomaly_edu verdicts --out "
        f"{verdicts.REPORT_PAGE}` and commit it"
    )
    keys = [c.key for c in verdicts.report_claims()]
    assert len(keys) == len(set(keys))
    for key in (
        "table1-digit8",
        "figure3-digit8",
        "figure1",
        "head-ct",
        "figure10",
        "table9",
        "generality",
        "brain-mri",
    ):
        assert key in keys and f"(report-{key})=" in page
    assert "reproduction_report" in (ROOT / "_toc.yml").read_text()


def test_the_command_writes_the_page_from_a_results_folder(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    assert main(["verdicts", "--results", str(results), "--out", str(tmp_path / "report.md")]) == 0
    assert (tmp_path / "report.md").read_text() == verdicts.report_page(results)
    assert main(["verdicts", "--results", str(results)]) == 0
    assert "# Reproduction report" in capsys.readouterr().out
