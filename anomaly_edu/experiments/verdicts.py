"""Verdicts on the talk's claims: the reproduction report (the book's page after Lecture 7).

Each claim of the talk gets our evidence from the stored results (``results/``),
a verdict by the rules of COURSE.md ("Verdicts", written out in
``anomaly_edu.experiments.verdict_rules``), the compute it took and what a
decisive run would need. Nothing on the page is typed by hand:
``python -m anomaly_edu verdicts`` writes it from the stored results, and a
test rebuilds it and compares.
"""

from __future__ import annotations

__lecture__ = 7

import json
import os
from pathlib import Path

from ..profiles import get_profile
from .results import STORED_RESULTS
from .tables import METRIC_NAMES, talk_table
from .verdict_rules import (  # noqa: F401 (the rules, read as verdicts.<name> too)
    ASSUMED_GPU_SPEEDUP,
    DOES_NOT_HOLD,
    HOLDS,
    MIN_SEEDS,
    UNDECIDED,
    Claim,
    Interval,
    beats,
    hours_needed,
    reaches,
    t_interval,
)

TABLE1_DIGITS = (2, 3, 5, 8)  # the digits of the talk's largest ARAE - DAE gaps
REPORT_PAGE = "book/reproduction_report.md"


def read(name: str, folder: Path) -> dict | None:
    """The stored results file ``name`` of ``folder``, or None when it is not there."""
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def configuration(result: dict) -> str:
    """Where a stored run ran: the machine kind, threads and precision of its provenance (files
    written before the provenance named a precision ran in PyTorch's default, float32)."""
    return f"{result['provenance']['device']}, {result['provenance'].get('precision', 'float32')}"


def table1_runs(digit: int, folder: Path) -> dict[int, dict]:
    """The stored 400-epoch runs of one digit by seed: seed 0 in ``mnist_quick400_class{digit}.json``
    (a part of ``mnist_quick400.json``), the others in ``mnist_quick400_seed{seed}_class{digit}.json``."""
    runs = {}
    paths = [folder / f"mnist_quick400_class{digit}.json", *folder.glob(f"mnist_quick400_seed*_class{digit}.json")]
    for path in sorted(p for p in paths if p.is_file()):
        result = json.loads(path.read_text())
        runs[result["provenance"]["settings"]["seed"]] = result | {"file": path.name}
    return runs


def published_table1_budget(per_run_hours: float, digit: int) -> str:
    """What deciding a Table 1 digit at the published budget would cost: the stored 400-epoch runs' time
    scaled by ARAE's epochs and by its attack steps (each step a forward and a backward pass)."""
    quick, full = get_profile("quick")["arae"], get_profile("full")["arae"]
    scale = full["epochs"] / 400 * (full["steps"] + 1) / (quick["steps"] + 1)
    return (
        f"3 seeds at the published budget, {hours_needed(3 * per_run_hours * scale)} (the stored time scaled by "
        f"ARAE's epochs and attack steps): python -m anomaly_edu reproduce mnist --profile full --methods dae,arae "
        f"--classes {digit} --seed SEED"
    )


def table1_claims(folder: Path) -> list[Claim]:
    """Table 1 (ARAE beats DAE) and Figure 3 (ARAE's FPR at TPR 99.5% is lower), per digit."""
    talk, full = talk_table("mnist"), get_profile("full")["arae"]
    published = f"ARAE {full['epochs']} epochs, {full['steps']} attack steps, batches of {full['batch_size']}"
    claims = []
    for digit in TABLE1_DIGITS:
        case, runs = str(digit), table1_runs(digit, folder)
        if not runs:
            continue
        kinds = {configuration(r) for r in runs.values()}
        same = [r for r in runs.values() if configuration(r) == configuration(runs[min(runs)])]
        auc = [r["results"]["arae"]["auc"][case] - r["results"]["dae"]["auc"][case] for r in same]
        fpr = [r["results"]["dae"]["fpr_995"][case] - r["results"]["arae"]["fpr_995"][case] for r in same]
        first = runs[min(runs)]["results"]
        baselines = ", ".join(f"{m} {first[m]['auc'][case]:.2f}" for m in ("mean-image", "pca") if m in first)
        missing = sorted({0, 1, 2} - {r["provenance"]["settings"]["seed"] for r in same})
        command = (
            f"python -m anomaly_edu reproduce mnist --methods dae,arae --classes {digit} --seed SEED "
            f"--set dae.epochs=400 --set arae.epochs=400 --device cpu "
            f"--out results/mnist_quick400_seedSEED_class{digit}.json  (1 thread; SEED in {missing})"
        )
        hours = sum(r["provenance"]["wall_time_s"] for r in same) / 3600
        per_run = hours / len(same)
        left_out = "" if len(kinds) == 1 else f" (runs of another configuration left out: {sorted(kinds)})"
        means = "; ".join(
            f"{m.upper()} {t_interval([r['results'][m]['auc'][case] for r in same]).text()}" for m in ("dae", "arae")
        )
        evidence = [
            f"AUROC over the same seeds: {means}",
            f"budget: the quick ARAE and DAE at 400 epochs (the epochs the budget curve chose; the published "
            f"budget is the full profile's {published}); baselines {baselines}",
            f"configuration: {configuration(same[0])}{left_out}",
            "files: " + ", ".join(r["file"] for r in same),
        ]
        verdict, interval = beats(auc)
        to_decide = f"{len(missing)} more run(s), {hours_needed(per_run * len(missing))}: {command}" if missing else ""
        if verdict == UNDECIDED and not missing:  # three seeds were not enough at this budget
            to_decide = published_table1_budget(per_run, digit)
        talk_gap = talk["ARAE"][case] - talk["DAE"][case]
        if verdict == HOLDS:  # say whether the interval also reaches the talk's margin
            reach = "reaches" if interval.high >= talk_gap else "stays below"
            evidence.insert(0, f"the interval {reach} the talk's margin of {talk_gap:+.1f}")
        claims.append(
            Claim(
                f"table1-digit{digit}",
                f"ARAE beats DAE on MNIST digit {digit} (Table 1)",
                f"ARAE - DAE = {talk_gap:+.1f}",
                f"{interval}",
                verdict,
                evidence,
                hours,
                to_decide,
            )
        )
        verdict, interval = beats(fpr)
        claims.append(
            Claim(
                f"figure3-digit{digit}",
                f"ARAE's FPR at TPR 99.5% is below DAE's on digit {digit} (Figure 3)",
                "a figure",
                f"DAE - ARAE, in points of FPR: {interval}",
                verdict,
                [line for line in evidence if not line.startswith(("AUROC", "configuration", "the interval"))],
                0.0,
                "from the same runs" if to_decide else "",
            )
        )
    return claims


def figure1_claim(folder: Path) -> list[Claim]:
    """ARAE draws a normal digit where the DAE copies the anomaly (Figure 1), from ``figure1_digit8.json``."""
    result = read("figure1_digit8.json", folder)
    if result is None:
        return []
    shares = {m: r["share_nearer_normal"] for m, r in result["results"].items()}
    ours = "anomalies whose reconstruction is nearer a training 8 than the input: " + ", ".join(
        f"{m} {v:.1f}%" for m, v in shares.items()
    )
    distances = ", ".join(
        f"{m} {r['to_input']:.3f} to the input, {r['to_nearest_normal']:.3f} to the nearest 8"
        for m, r in result["results"].items()
    )
    settings = result["provenance"]["settings"]
    return [
        Claim(
            "figure1",
            "ARAE reconstructs an anomaly as a normal image, where the DAE copies it (Figure 1)",
            "one digit 1, shown",
            ours,
            UNDECIDED,
            [
                f"mean distances (root mean square over pixels): {distances}",
                f"the stored digit-8 models (models/, one seed each), {settings['anomalies']} anomalous test images",
                f"configuration: {configuration(result)}; file: figure1_digit8.json",
            ],
            result["provenance"]["wall_time_s"] / 3600,
            "the same measurement on the models of 3 seeds of one configuration (the Table 1 runs, stored): "
            "python benchmarks/figure1.py --out results/figure1_digit8.json",
        )
    ]


def head_ct_runs(folder: Path) -> dict[int, dict]:
    """The stored runs of the faithful head-CT configuration by seed, one file per seed:
    ``medical_head_ct_faithful_seed{seed}.json`` (each a ``reproduce medical --seed SEED`` part)."""
    runs = {}
    for path in sorted(folder.glob("medical_head_ct_faithful_seed*.json")):
        result = json.loads(path.read_text())
        runs[result["provenance"]["settings"]["seed"]] = result | {"file": path.name}
    return runs


def quick_head_ct_line(folder: Path) -> str:
    """The quick configuration's head-CT run (``medical_head_ct.json``, the one Lectures 5 and 6 train
    in a few minutes), as one line of evidence beside the faithful runs."""
    result = read("medical_head_ct.json", folder)
    if result is None:
        return ""
    seeds = result["provenance"]["settings"]["seeds"]
    methods = result["provenance"]["settings"]["methods"]
    size = result["provenance"]["settings"].get("image_shape", [1, 64, 64])[-1]  # older runs: 64 px
    per_seed = {m: [r["auc_per_seed"][str(s)]["head-ct"] for s in seeds] for m, r in result["results"].items()}
    numbers = ", ".join(f"{m} {t_interval(v).mean:.2f}" for m, v in per_seed.items())
    puzzle = methods["puzzle-ae"]
    return (
        f"the quick configuration of Lectures 5 and 6 ({puzzle['variant']}, {puzzle['epochs']} epochs, {size} px, "
        f"the {puzzle.get('networks', 'course')} networks, {len(seeds)} seeds; medical_head_ct.json): {numbers}"
    )


def head_ct_claim(folder: Path) -> list[Claim]:
    """Puzzle-AE reaches the talk's 86.43 on head CT, in the faithful configuration (CPAE-G, 128 px, the
    code's networks, batches of 8, eps 0.07), beside the baselines of the same runs."""
    runs = head_ct_runs(folder)
    talk = talk_table("medical")["Puzzle-AE"]["head-ct"]
    talk_fpr = talk_table("medical", METRIC_NAMES["fpr_995"])["Puzzle-AE"]["head-ct"]
    claim, talk_figures = (
        f"Puzzle-AE reaches {talk:.2f} AUROC on head CT (the medical table)",
        f"{talk:.2f} (FPR {talk_fpr:.2f}%)",
    )
    if not runs:
        return [
            Claim("head-ct", claim, talk_figures, "no faithful run stored yet", UNDECIDED, [quick_head_ct_line(folder)])
        ]
    kinds = {configuration(r) for r in runs.values()}
    same = [runs[s] for s in sorted(runs) if configuration(runs[s]) == configuration(runs[min(runs)])]
    methods = list(same[0]["results"])
    auc = {m: [r["results"][m]["auc"]["head-ct"] for r in same] for m in methods}
    fpr = {m: [r["results"][m]["fpr_995"]["head-ct"] for r in same] for m in methods}
    verdict, interval = reaches(auc["puzzle-ae"], talk, published_budget=False)
    settings = same[0]["provenance"]["settings"]
    puzzle, size = settings["methods"]["puzzle-ae"], settings["image_shape"][-1]
    full_epochs = get_profile("full", "medical")["puzzle-ae"]["epochs"]
    hours = sum(r["provenance"]["wall_time_s"] for r in same) / 3600
    seeds_missing = sorted({0, 1, 2} - {r["provenance"]["settings"]["seed"] for r in same})
    left_out = "" if len(kinds) == 1 else f" (runs of another configuration left out: {sorted(kinds)})"
    beside = ", ".join(f"{m} {t_interval(v).text()}" for m, v in auc.items() if m != "puzzle-ae")
    command = (
        "python -m anomaly_edu reproduce medical --profile full --methods mean-image,pca,ae,puzzle-ae,gt "
        f"--set puzzle-ae.epochs={puzzle['epochs']} --set puzzle-ae.widths={puzzle['widths']} "
        f"--set ae.epochs={settings['methods']['ae']['epochs']} --seed SEED --device cpu "
        "--out results/medical_head_ct_faithful_seedSEED.json  (1 thread)"
    )
    per_seed_hours = hours / len(same)
    more_seeds = f"{len(seeds_missing)} more seed(s), {hours_needed(per_seed_hours * len(seeds_missing))}: {command}; "
    to_decide = (more_seeds if seeds_missing else "") + (
        f"the full profile's {full_epochs} epochs on 3 seeds, at these widths: "
        f"{hours_needed(3 * per_seed_hours * full_epochs / puzzle['epochs'])} (the stored time scaled by the epochs); "
        "the published widths cost more per epoch (the same command with `--profile full` alone)"
    )
    return [
        Claim(
            "head-ct",
            claim,
            talk_figures,
            f"{interval.text()}; FPR at TPR 99.5%: {t_interval(fpr['puzzle-ae']).text()}",
            verdict,
            [
                f"beside, on the same splits and seeds (AUROC): {beside}",
                f"budget: {puzzle['variant']}, {puzzle['epochs']} epochs (the full profile: {full_epochs}), "
                f"widths {puzzle['widths']} (the full profile: 64-128-256-512-512), {size} px, the "
                f"{puzzle['networks']} networks, batches of {puzzle['batch_size']}, eps {puzzle['eps']}",
                f"configuration: {configuration(same[0])}{left_out}",
                "files: " + ", ".join(r["file"] for r in same),
                quick_head_ct_line(folder),
            ],
            hours,
            to_decide,
        )
    ]


def talk_figure(table: str, row: str, column: str) -> str:
    """One of the talk's numbers, as the page prints it."""
    return f"{talk_table(table)[row][column]:.2f}"


def auc_of(case: str):
    """A picker of each method's AUROC on one case of a stored run."""
    return lambda result: {m: r["auc"][case] for m, r in result["results"].items()}


def attacked_auc(eps: str):
    """A picker of each method's AUROC after the attack on the normal test images at ``eps`` (Figure 10)."""
    return lambda result: {m: next(iter(r["attack"].values()))["normal"][eps] for m, r in result["results"].items()}


def one_run_list() -> list[tuple]:
    """Claims with one stored run: (key, claim, the talk's figure, stored file, what "ours" shows, picker,
    the runs a decisive experiment adds to it (how many, which), command)."""
    generality = f"GT {talk_figure('generality', 'GT', 'head_ct_hemorrhage')}, Puzzle-AE " + talk_figure(
        "generality", "Puzzle-AE", "head_ct_hemorrhage"
    )
    return [
        (
            "puzzle-mnist",
            "Puzzle-AE beats ARAE and the baselines on MNIST",
            f"{talk_figure('generality', 'Puzzle-AE', 'MNIST')} mean",
            "mnist_puzzle_quick.json",
            "digit 8 only",
            auc_of("8"),
            (13, "the nine other digits (seed 0), and seeds 1 and 2 on two digits"),
            "python -m anomaly_edu reproduce mnist --methods mean-image,pca,arae,puzzle-ae --classes 0-9 --seed SEED",
        ),
        (
            "table9",
            "CPAE-G >= CPAE >= PAE; the average the right aggregation (Table 9)",
            "the CIFAR-10 table",
            "mnist_ablation_digit8.json",
            "MNIST digit 8",
            auc_of("8"),
            (2, "seeds 1 and 2"),
            "python -m anomaly_edu reproduce mnist-ablation --classes 8 --seed SEED",
        ),
        (
            "figure10",
            "Puzzle-AE is the most robust to test-time attacks (Figure 10)",
            "a figure",
            "mnist_attack_quick.json",
            "digit 8, AUROC after a PGD attack on the normal images at eps 0.1",
            attacked_auc("0.1"),
            (2, "seeds 1 and 2"),
            "python -m anomaly_edu reproduce mnist-attack --classes 8 --seed SEED",
        ),
        (
            "generality",
            "GT fails on head CT where Puzzle-AE works (generality)",
            generality,
            "generality_quick.json",
            "head CT",
            auc_of("head_ct_hemorrhage"),
            (2, "seeds 1 and 2"),
            "python -m anomaly_edu reproduce generality --seed SEED",
        ),
    ]


def no_data_list() -> list[tuple]:
    """Claims on data that is not under the course's data root: (key, claim, the talk's figure, the data)."""
    return [
        (
            "brain-mri",
            "Puzzle-AE on brain MRI (the medical table)",
            talk_figure("medical", "Puzzle-AE", "brain-mri"),
            "the brain MRI set (Kaggle's layout, see anomaly_edu.data.medical)",
        ),
        (
            "mvtec",
            "Puzzle-AE on MVTec AD (the generality table)",
            talk_figure("generality", "Puzzle-AE", "MVTec"),
            "MVTec AD (4.9 GB: `python -m anomaly_edu data --download mvtec`)",
        ),
        (
            "cifar10",
            "Puzzle-AE on CIFAR-10 (the generality table)",
            talk_figure("generality", "Puzzle-AE", "CIFAR-10"),
            "CIFAR-10 (torchvision downloads it)",
        ),
        (
            "fashion-mnist",
            "ARAE on Fashion-MNIST (Table 2)",
            f"mean {talk_figure('fashion-mnist', 'ARAE', 'mean')}",
            "Fashion-MNIST (torchvision downloads it)",
        ),
        ("coil100", "ARAE on COIL-100 (Table 3)", "the COIL-100 table", "COIL-100 (coil-100/obj<N>__<angle>.png)"),
    ]


def one_run_claims(folder: Path) -> list[Claim]:
    claims = []
    for key, claim, talk, name, what, pick, (more_runs, which), command in one_run_list():
        result = read(name, folder)
        if result is None:
            continue
        ours = f"{what}: " + ", ".join(f"{m} {v:.2f}" for m, v in pick(result).items())
        hours = result["provenance"]["wall_time_s"] / 3600
        claims.append(
            Claim(
                key,
                claim,
                talk,
                ours,
                UNDECIDED,
                [f"one seed: no interval, so no ranking; configuration: {configuration(result)}; file: {name}"],
                hours,
                f"{which}, {hours_needed(more_runs * hours)} (the stored run's time for each): {command}",
            )
        )
    return claims


def no_data_claims() -> list[Claim]:
    return [
        Claim(
            key,
            claim,
            talk,
            "not run: the data is not under the course's data root",
            UNDECIDED,
            [f"data: {data}"],
            0.0,
            "the table's reproduce command once the data is there (README, 'The full profile on a GPU')",
        )
        for key, claim, talk, data in no_data_list()
    ]


def report_claims(folder: str | os.PathLike = STORED_RESULTS) -> list[Claim]:
    """Every claim of the report, from the stored results in ``folder``. Reproduction report."""
    folder = Path(folder)
    return (
        table1_claims(folder)
        + figure1_claim(folder)
        + head_ct_claim(folder)
        + one_run_claims(folder)
        + no_data_claims()
    )


def report_page(folder: str | os.PathLike = STORED_RESULTS) -> str:
    """The book's reproduction report (MyST markdown), built from the stored results. Reproduction report."""
    claims = report_claims(folder)
    lines = [
        "# Reproduction report",
        "",
        "Each claim of the talk, with our evidence from the stored results (`results/`), a verdict, the",
        "compute it took and what a decisive run needs. This page is written by",
        "`python -m anomaly_edu verdicts` from the stored results; no number on it is typed by hand.",
        "",
        "**The rules**: a claim is decided on at least 3 seeds of one",
        "configuration (threads, precision, machine kind), with the same seeds and splits for the methods",
        'compared. "A beats B": the paired differences A - B over the seeds give a mean and a 95%',
        "t-interval; it **holds** when the interval lies above 0, **does not hold** when it lies at or below 0,",
        'and is **undecided** otherwise. "A reaches the talk\'s X": it **holds** when the interval reaches X,',
        "**does not hold** only at the published budget, and is otherwise **undecided at this budget**.",
        f"A decisive run's GPU-hours assume a GPU {ASSUMED_GPU_SPEEDUP} times as fast as one CPU thread here:",
        "no GPU was measured for this page.",
        "",
        "| claim | the talk | ours | verdict |",
        "|---|---|---|---|",
    ]
    lines += [f"| {{ref}}`{c.claim} <report-{c.key}>` | {c.talk} | {c.ours} | **{c.verdict}** |" for c in claims]
    lines += ["", f"Machine-hours of the stored runs behind these rows: {sum(c.hours for c in claims):.1f}.", ""]
    for c in claims:
        lines += [
            f"(report-{c.key})=",
            f"## {c.claim}",
            "",
            f"- the talk: {c.talk}",
            f"- ours: {c.ours}",
            f"- verdict: **{c.verdict}**",
        ]
        lines += [f"- {line}" for line in c.evidence]
        if c.hours:
            lines.append(f"- compute: {c.hours:.2f} machine-hours")
        if c.to_decide:
            lines.append(f"- to decide: {c.to_decide}")
        lines.append("")
    return "\n".join(lines)
