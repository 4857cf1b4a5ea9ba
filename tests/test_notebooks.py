"""Every lecture and exercise notebook executes in the quick profile.

The notebooks are executed once per run by scripts/build_course.py (nbval, which
also compares the marked cells with their references; the student versions with
nbclient), which skips notebooks whose executed copy is up to date; these tests
read the executed copies. The book test reuses them.
"""

import ast
import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

from anomaly_edu import profiles
from anomaly_edu.experiments import report

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_course  # noqa: E402
import nbval_tolerance  # noqa: E402
import notebook_runs  # noqa: E402
import pin_release  # noqa: E402

LECTURES = sorted(p.relative_to(ROOT) for p in (ROOT / "lectures").glob("*.ipynb"))
INSTRUCTOR = sorted(p.relative_to(ROOT) for p in (ROOT / "exercises" / "solutions").glob("*.ipynb"))
STUDENT = sorted(p.relative_to(ROOT) for p in (ROOT / "exercises").glob("*.ipynb"))


@pytest.fixture(scope="session")
def executed(mnist_root, notebooks_in_background):
    build_course.execute_notebooks(profile="quick")
    return lambda path: nbformat.read(build_course.executed_path(path), as_version=4)


def errors(nb):
    return [
        (i, o)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]


def stdout(nb):
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "stream" and o.name == "stdout"
    )


@pytest.mark.parametrize("path", LECTURES + INSTRUCTOR + STUDENT, ids=str)
def test_notebook_follows_the_course_conventions(path):
    nb = nbformat.read(ROOT / path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "import anomaly_edu" in code[0].source and "pip install" in code[0].source
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    for name in ("PROFILE", "SEED", "DATA_ROOT", "DEVICE"):
        assert re.search(rf"^{name} = ", parameters[0].source, re.M), f"{path}: no {name} parameter"
    page = path.as_posix().replace("solutions/", "")
    repository = pin_release.repository_url().removeprefix("https://github.com/")
    badge = f"colab.research.google.com/github/{repository}/blob/{pin_release.release()}/{page}"
    assert badge in nb.cells[0].source, f"{path}: the first cell needs an Open-in-Colab badge to {badge}"
    assert "../shared" not in "".join(c.source for c in nb.cells)
    stored = [c for c in code if c.get("outputs") or c.execution_count is not None]
    assert all(notebook_runs.is_marked(c) for c in stored), f"{path}: only nbval's references keep outputs"


@pytest.mark.parametrize("path", LECTURES + INSTRUCTOR + STUDENT, ids=str)
def test_notebook_installs_the_release_it_belongs_to(path):
    """The install cell and the badge name the release of pyproject.toml in the
    repository of _config.yml (scripts/pin_release.py writes them)."""
    nb = nbformat.read(ROOT / path, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    expected = {(pin_release.repository_url(), pin_release.release())}
    assert pin_release.pins(nb.cells[0].source + code[0].source) == expected, f"{path}: run scripts/pin_release.py"
    assert f"git+{pin_release.repository_url()}@{pin_release.release()}" in code[0].source


def test_a_fork_pins_the_notebooks_to_its_own_repository_and_ref():
    badge = "(https://colab.research.google.com/github/anomaly-edu/anomaly-edu/blob/main/lectures/x.ipynb)"
    cell = '%pip install -q "anomaly-edu @ git+https://github.com/anomaly-edu/anomaly-edu"'
    pinned = pin_release.pin_text(badge + "\n" + cell, "https://github.com/me/course-fork", "abc123")
    assert pin_release.pins(pinned) == {("https://github.com/me/course-fork", "abc123")}
    assert "github/me/course-fork/blob/abc123/lectures/x.ipynb" in pinned
    assert pin_release.pin_text(pinned, "https://github.com/me/course-fork", "v2.0").count("v2.0") == 2


@pytest.mark.parametrize("path", LECTURES + INSTRUCTOR, ids=str)
def test_nbval_checks_outputs_of_every_lecture_and_instructor_notebook(path):
    """Each has cells marked for nbval, each marker a comment line of its own
    (nbval ignores one at the end of a code line), each with a reference that
    has an execution count (nbval skips a reference without one as "unrun")."""
    nb = nbformat.read(ROOT / path, as_version=4)
    marked = [c for c in nb.cells if notebook_runs.is_marked(c)]
    assert marked, f"{path}: no cell is marked {notebook_runs.NBVAL_MARKER}"
    for cell in marked:
        assert cell.outputs and cell.execution_count, f"{path}: a marked cell has no reference; run references"
    trailing = [c for c in nb.cells if c.cell_type == "code" and re.search(r"\S.*# NBVAL_", c.source)]
    assert not trailing, f"{path}: an nbval marker at the end of a code line is ignored; give it its own line"


@pytest.mark.parametrize("path", LECTURES + INSTRUCTOR, ids=str)
def test_notebook_executes_without_errors(executed, path):
    nb = executed(path)
    assert not errors(nb)
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_lecture1_shows_real_results(executed):
    nb = executed(Path("lectures/01_autoencoders.ipynb"))
    text = stdout(nb)
    assert "train 5851 normal" in text and "974 normal" in text
    auc = float(re.search(r"AE  AUROC ([\d.]+)%", text).group(1))
    assert 60 < auc <= 100
    assert "threshold chosen on validation" in text
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    assert html.count("plotly-graph-div") >= 5  # figures are embedded, not dropped


@pytest.mark.parametrize("path", INSTRUCTOR, ids=str)
def test_instructor_version_passes_every_check(executed, path):
    nb = executed(path)
    graded = [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
    passed = stdout(nb).count("✓")
    assert graded and passed == len(graded)


@pytest.mark.parametrize("path", STUDENT, ids=str)
def test_student_version_stops_only_at_its_stubs(executed, path):
    nb = executed(path)
    failing = errors(nb)
    assert failing, "a student version with nothing to do"
    for index, output in failing:
        assert "raises-exception" in nb.cells[index].metadata.get("tags", [])
        assert output.ename == "NotImplementedError" or "not done yet" in output.evalue, output.evalue
    first_check = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade"))
    check_outputs = nb.cells[first_check].outputs
    assert any(o.output_type == "error" and "not done yet" in o.evalue for o in check_outputs)


def test_lectures_show_the_stored_full_profile_results(executed):
    """Lectures 3 and 4 print the stored results of results/ with their budget and provenance."""
    lecture4 = stdout(executed(Path("lectures/04_arae.ipynb")))
    assert re.search(r"mnist_full(_cpu)?\.json:", lecture4) and "ARAE (talk)" in lecture4
    if "mnist_full.json:" not in lecture4:  # a CPU run says what budget it had, and how it was made
        assert "profile full (changed: arae.epochs=" in lecture4
        parts = json.loads((ROOT / "results" / "mnist_full_cpu.json").read_text())["provenance"].get("parts", [])
        assert all(f"part: classes {part['classes']}" in lecture4 for part in parts)
    assert "made by commit" in lecture4
    lecture3 = executed(Path("lectures/03_pgd_adversarial_training.ipynb"))
    assert "ours, full profile: made by commit" in stdout(lecture3)


def test_lecture5_measures_the_shortcut_and_shows_the_stored_tables(executed):
    """Lecture 5 prints the shortcut measurement (four accuracies beside chance)
    and the stored medical and MNIST results with their provenance."""
    nb = executed(Path("lectures/05_puzzle_ae.ipynb"))
    text = stdout(nb)
    tables = "".join(o.get("data", {}).get("text/plain", "") for c in nb.cells for o in c.get("outputs", []))
    for row in ("whole image", "seams only", "seams only, perturbed (eps 0.1)"):
        assert re.search(rf"{re.escape(row)}\s+[\d.]+\s+4\.3", tables), row
    assert "times chance" in text
    assert "medical protocol 0" in text and "Puzzle-AE (talk)" in text and "86.4" in text
    assert "mean over seeds [0, 1, 2]" in text
    assert text.count("made by commit") >= 2


def test_lecture6_shows_maps_curves_and_the_stored_tables(executed):
    """Lecture 6 computes the worked example (a high pixel AUROC beside a low
    AU-PRO), shows the overlays and PRO curves, and prints the stored
    magnetic-tile and head CT tables with their provenance."""
    nb = executed(Path("lectures/06_industrial_evaluation.ipynb"))
    text = stdout(nb)
    tables = "".join(o.get("data", {}).get("text/plain", "") for c in nb.cells for o in c.get("outputs", []))
    a = re.search(r"A: finds the large defect only\s+([\d.]+)\s+([\d.]+)", tables)
    assert a and float(a.group(1)) > 0.95 and float(a.group(2)) < 0.7
    assert "magnetic-tile protocol 4" in text and "AU-PRO" in text and "(no pixel AUC: gt" in text
    assert "medical protocol 0" in text and text.count("made by commit") >= 3
    assert "generality protocol of each data set" in text and "ours, mnist: mean over normal classes [8]" in text
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    assert html.count("plotly-graph-div") >= 6  # gallery, sizes, two sets of PRO curves, overlays, MVTec bars


def test_lecture7_attacks_live_and_shows_the_stored_stress_tests(executed):
    """Lecture 7 attacks a live AE, refuses the one-class SVM, prints the
    stored Figure 10 table and the sweeps' provenance, and runs a tiny sweep
    that is interrupted, resumed and collected without losing or repeating a run."""
    nb = executed(Path("lectures/07_stress_tests.ipynb"))
    text = stdout(nb)
    assert "OCSVMDetector has no differentiable score" in text
    assert "AUROC after a test-time attack, normal class 8" in text and "puzzle-ae (normal attacked)" in text
    assert "least degraded on average over the three radii:" in text
    for name in ("stability", "data_efficiency", "data_efficiency_puzzle", "sensitivity", "sensitivity_puzzle"):
        assert f"no stored result {name}_quick.json" not in text, name
    assert text.count("runs made by commit") >= 5
    assert "shard 1/2 resumed: ran 1, skipped 1" in text and "collected 4 runs, missing 0" in text
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    assert html.count("plotly-graph-div") >= 8  # attack grid and curves, Figure 10, spread, data, budgets, ARAE, eps


# ---------------------------------------------------------------- numbers in the prose
# A number in a lecture's text must be one that a source holds: a printed output of the
# lecture's own run, a stored results file, the talk's tables (paper_tables/) or the
# settings of the profiles. Then it cannot go stale unnoticed: change a result, and the
# text that quotes the old number fails here. Numbers from elsewhere (a paper, a fact
# about a data set) are listed below with where they come from. Small whole numbers
# (0-10: digits, counts, section numbers), headings, code, math and links are not read.
NUMBER = re.compile(r"(?<![\w.\\])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w])")
NUMBERS_FROM_ELSEWHERE = {
    "lectures/01_autoencoders.ipynb": {"784": "MNIST's 28 x 28 pixels: the talk's network's input"},
    "lectures/02_adversarial_examples.ipynb": {
        "0.005": "the talk's pig example: 0.005 times a noise pattern",
        "784": "MNIST's 28 x 28 pixels",
    },
    "lectures/03_pgd_adversarial_training.ipynb": {
        "100,000": "Madry et al.'s MNIST training: 100,000 steps",
        "87": "Madry et al.'s robust CIFAR-10 network: 87% clean accuracy",
        "95": "Madry et al.'s standard CIFAR-10 network: about 95% clean accuracy",
    },
    "lectures/04_arae.ipynb": {"279": "the published union variant: 31 angles x 9 shifts (profiles: arae-union)"},
    "lectures/05_puzzle_ae.ipynb": {"362,879": "9! - 1 permutations of a 3 x 3 puzzle other than the identity"},
    "lectures/06_industrial_evaluation.ipynb": {
        "4.9": "MVTec AD's download, 4.9 GB",
        "1,344": "the magnetic-tile defects set: 1,344 images (Huang, Qiu and Yuan; its repository's README)",
        "72": "the GT paper's 72 transformations",
        "1.05": "the Puzzle-AE code's MVTec augmentation: a random zoom between 1.05 and 1.2",
        "1.2": "the Puzzle-AE code's MVTec augmentation: a random zoom between 1.05 and 1.2",
        "253": "the Kaggle brain MRI set: 253 slices (its Kaggle page; anomaly_edu.data.medical.MEDICAL_SETS)",
        "98": "the Kaggle brain MRI set: 98 slices without a tumour (its Kaggle page)",
        "155": "the Kaggle brain MRI set: 155 slices with a tumour (its Kaggle page)",
    },
}


def prose(markdown: str) -> str:
    """A markdown cell without its headings, code, math and link targets."""
    for pattern in (r"<!--.*?-->", r"```.*?```", r"`[^`]*`", r"\$\$.*?\$\$", r"\$[^$]*\$", r"\]\([^)]*\)"):
        markdown = re.sub(pattern, " ", markdown, flags=re.S)
    return re.sub(r"^#+ .*$", " ", markdown, flags=re.M)  # a heading ends at its line's end


def spellings(value: float) -> set[str]:
    """How a source's value may be quoted: whole, or rounded to 1-3 decimals; a fraction also in %."""
    found = {str(int(value))} if float(value).is_integer() else {f"{value:.{d}f}" for d in (1, 2, 3)}
    if 0 < value < 1:
        found |= spellings(round(100 * value, 6))
    return found


def numbers_in(value) -> set[str]:
    """The spellings of every number in a text, or in the values of a JSON-like object."""
    if isinstance(value, str):
        return set().union(*(spellings(float(n.replace(",", ""))) for n in NUMBER.findall(value)))
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return set().union(set(), *(numbers_in(v) for v in value))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return spellings(value)
    return set()


@pytest.fixture(scope="module")
def stored_numbers() -> set[str]:
    """Every number of the stored results, the talk's tables and the profiles."""
    found = {str(n) for n in range(11)}
    for path in (ROOT / "results").glob("*.json"):
        found |= numbers_in(json.loads(path.read_text()))
    for path in (ROOT / "anomaly_edu" / "paper_tables").glob("*.csv"):
        found |= numbers_in(path.read_text())
    return found | numbers_in(profiles.PROFILES) | numbers_in(profiles.DATASET_SETTINGS)


@pytest.mark.parametrize("path", LECTURES, ids=str)
def test_every_number_in_a_lectures_text_comes_from_a_source(executed, stored_numbers, path):
    printed = "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in executed(path).cells
        for o in c.get("outputs", [])
    )
    allowed = stored_numbers | numbers_in(printed) | set(NUMBERS_FROM_ELSEWHERE.get(path.as_posix(), {}))
    typed = [
        (index, number)
        for index, cell in enumerate(nbformat.read(ROOT / path, as_version=4).cells)
        if cell.cell_type == "markdown"
        for number in NUMBER.findall(prose(cell.source))
        if number.replace(",", "") not in allowed and number not in allowed
    ]
    assert not typed, (
        f"{path}: numbers in the text that no output, stored result, talk table or profile holds "
        f"(cell, number): {typed}; print them from the run or the stored file, or list their source "
        "in NUMBERS_FROM_ELSEWHERE"
    )


# Claims about which method is ahead where. A sentence that ranks methods row by row
# carries a claim in an HTML comment (not rendered), which names the table it reads:
#   <!-- claim: mvtec_image_auc.csv AE_L2 > Puzzle-AE on metal_nut, tile -->
# The table is a talk table (paper_tables/*.csv: a row per method; the summary table: a
# column per data set) or a stored result (results/*.json: each method's "auc" per case;
# FILE:fpr_995 or FILE:mean: another of its numbers; FILE#normal or FILE#both: Figure 10's
# AUROC per eps; a sweep: each method's AUROC per seed, or with FILE#range the lowest and
# highest over the seeds, as ae.min and ae.max; a budget curve: each method's AUROC per
# number of epochs; manifest.json: each stored model's AUROC on its normal class).
# FILE[8] keeps the case 8 only, for a sentence about some of a table's cases (it names
# them). A method whose name has spaces is written with underscores: Puzzle-AE_(9_parts).
# "on" lists every case where the comparison holds, or says "every", "none" or "every but
# A, B". The test recomputes that list from the table and checks that the cell's prose
# names each listed case, so that text and table cannot drift apart.
#
# A sentence that compares two numbers of the lecture's own run reads them with glue
# (report.glue in a code cell, {glue:text}`name` in the text) and carries
#   <!-- claim: glue ae_fpr99 > mean_image_fpr99 -->
# Both values must be glued by a cell that nbval checks (# NBVAL_CHECK_OUTPUT), so that its
# reference holds them and every run is compared with it, and the comparison must hold at
# the far ends of that cell's tolerance: a run that nbval passes cannot make the sentence
# false. The cell's text must paste both numbers. A whole number that the text types (the
# digit with the lowest error) is checked the same way, against the literal it types:
#   <!-- claim: glue lowest_error_digit = 1 -->
# holds when the reference is that number and the cell's tolerance admits no other whole
# number, and the text must type it. A claim comment in none of these forms fails.
CLAIM = re.compile(r"<!-- claim: (\S+) (\S+) ([<>]) (\S+) on (.*?) -->")
GLUE_CLAIM = re.compile(r"<!-- claim: glue (\S+) ([<>=]) (\S+) -->")
ANY_CLAIM = re.compile(r"<!--\s*claim\b.*?-->", re.S)


def claim_table(source: str) -> dict[str, dict[str, float]]:
    """{method: {case: value}} of a talk table or a stored result; "FILE[8,9]": its cases 8 and 9 only."""
    source, _, only = source.partition("[")
    if only:
        kept = [c.strip() for c in only.rstrip("]").split(",")]
        return {m: {c: v for c, v in values.items() if c in kept} for m, values in claim_table(source).items()}
    if source.endswith(".csv"):
        lines = (ROOT / "anomaly_edu" / "paper_tables" / source).read_text().strip().splitlines()
        header = lines[0].split(",")
        rows = [line.split(",") for line in lines[1:]]
        if header == ["dataset", "method", "mean_auc"]:  # the talk's summary: a line per data set and method
            summary: dict[str, dict[str, float]] = {}
            for dataset, method, value in rows:
                summary.setdefault(method, {})[dataset] = float(value)
            return summary
        return {r[0]: {c: float(v) for c, v in zip(header[1:], r[1:]) if c != "mean"} for r in rows}
    if source == "manifest.json":  # the stored models: each one's AUROC on its normal class
        entries = json.loads((ROOT / "models" / "manifest.json").read_text())
        entries = entries.get("models", entries)
        return {
            name: {str(entry["data"]["normal_class"]): entry["figures"]["auroc"]}
            for name, entry in entries.items()
            if "auroc" in entry.get("figures", {}) and "normal_class" in entry.get("data", {})
        }
    source, _, attacked = source.partition("#")  # e.g. mnist_attack_quick.json#normal: AUROC per eps
    source, _, metric = source.partition(":")  # e.g. mnist_quick400.json:fpr_995: another number than the AUROC
    stored = json.loads((ROOT / "results" / source).read_text())
    if "runs" in stored:  # a sweep: its runs at the profile's settings, each method's AUROC per seed
        return sweep_table(stored["runs"], attacked)
    if "benchmark" in stored:  # a budget curve: each method's AUROC per number of epochs
        return {m: {str(p["epochs"]): p["auroc"] for p in points} for m, points in stored["results"].items()}
    stored = stored["results"]
    if attacked:
        return {method: next(iter(numbers["attack"].values()))[attacked] for method, numbers in stored.items()}
    numbers = {method: values[metric or "auc"] for method, values in stored.items()}
    return {m: v if isinstance(v, dict) else {metric: v} for m, v in numbers.items()}  # FILE:mean: one case


def sweep_table(runs: list[dict], kind: str) -> dict[str, dict[str, float]]:
    """A sweep's runs at the profile's settings (all its training images, no change) as
    {method: {seed: AUROC}}, for one normal class; kind "range": {"ae.min": {class: lowest
    AUROC over the seeds}, "ae.max": {class: highest}}, for a claim about every seed."""
    by_method: dict[str, dict[str, dict[str, float]]] = {}
    for run in runs:
        settings = run["run"]
        if settings["changes"] or settings["n_train"] is not None:
            continue
        for case, value in run["results"][settings["method"]]["auc"].items():
            by_method.setdefault(settings["method"], {}).setdefault(case, {})[str(settings["seed"])] = value
    if kind == "range":
        return {
            f"{method}.{end}": {case: pick(seeds.values()) for case, seeds in cases.items()}
            for method, cases in by_method.items()
            for end, pick in (("min", min), ("max", max))
        }
    assert not kind, f"a sweep has no {kind!r} numbers"
    (only,) = {case for cases in by_method.values() for case in cases}  # one normal class
    return {method: cases[only] for method, cases in by_method.items()}


def claimed_cases(listed: str, cases: list[str]) -> tuple[list[str], list[str]]:
    """The cases a claim's "on" part lists, and those its sentence must name:
    "every", "none", "every but 8, 9" (the text names the exceptions) or a list."""
    if listed in ("every", "none"):
        return (cases if listed == "every" else []), []
    if listed.startswith("every but "):
        excluded = [c.strip() for c in listed.removeprefix("every but ").split(",")]
        return [c for c in cases if c not in excluded], excluded
    names = [c.strip() for c in listed.split(",")]
    return names, names


def claim_errors(cell_text: str, glued: dict | None = None) -> list[str]:
    """What is wrong with each claim of a markdown cell (empty: all hold). ``glued``:
    the values that the notebook's checked cells glue (glued_references)."""
    errors = [
        f"a claim in neither form (table or glue): {c!r}"
        for c in ANY_CLAIM.findall(cell_text)
        if not (CLAIM.fullmatch(c) or GLUE_CLAIM.fullmatch(c))
    ]
    errors += [
        f"text after a claim on its line is raw HTML, its markdown unrendered: {line.strip()!r}"
        for line in cell_text.splitlines()
        if re.search(r"<!--\s*claim\b.*-->\s*\S", line)
    ]
    errors += glue_claim_errors(cell_text, glued or {})
    for source, a, op, b, listed in CLAIM.findall(cell_text):
        table = claim_table(source)
        a, b = (m if m in table else m.replace("_", " ") for m in (a, b))  # Puzzle-AE_(9_parts)
        missing = [m for m in (a, b) if m not in table]
        if missing:
            errors.append(f"{source} has no row {missing}")
            continue
        cases = [c for c in table[a] if c in table[b]]
        holds = [c for c in cases if (table[a][c] > table[b][c] if op == ">" else table[a][c] < table[b][c])]
        names, named = claimed_cases(listed.strip(), cases)
        if "[" in source:  # a claim about some of a table's cases names them all
            named = sorted(set(named) | set(cases))
        if sorted(names) != sorted(holds):
            errors.append(f"{source}: {a} {op} {b} on {sorted(holds)}, the claim says {sorted(names)}")
        text = prose(cell_text).lower()
        unnamed = [c for c in named if not re.search(rf"\b{re.escape(c.replace('_', ' ').lower())}\b", text)]
        if unnamed:
            errors.append(f"the text around the claim {a} {op} {b} does not name {unnamed}")
    return errors


def glued_references(cells) -> dict[str, tuple[object, nbval_tolerance.Tolerance | None]]:
    """{name: (value, tolerance)} of every value glued by a cell that nbval checks, read
    from the cell's reference; the tolerance is the cell's (None: compared exactly)."""
    glued = {}
    for cell in cells:
        if not notebook_runs.is_marked(cell):
            continue
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            text = output.get("data", {}).get(report.GLUE_PREFIX + "text/plain")
            if name and text is not None:
                glued[name] = (ast.literal_eval(text), nbval_tolerance.declared_tolerance(cell.source))
    return glued


def pasted(cell_text: str) -> set[str]:
    """The glued names a markdown cell pastes ({glue}`name`, {glue:text}`name:.1f`)."""
    return set(re.findall(r"\{glue(?::\w+)?\}`(?:[^`:]*::)?([^`:]+)", cell_text))


def glue_claim_errors(cell_text: str, glued: dict) -> list[str]:
    """What is wrong with each glue claim of a markdown cell (see above)."""
    errors = []
    for a, op, b in GLUE_CLAIM.findall(cell_text):
        if op == "=":
            errors += typed_glue_errors(cell_text, glued, a, b)
            continue
        unchecked = [name for name in (a, b) if name not in glued]
        if unchecked:
            errors.append(f"glue {unchecked}: no cell that nbval checks glues them (their reference holds them)")
            continue
        (x, x_tolerance), (y, y_tolerance) = glued[a], glued[b]
        if op == "<":
            (x, x_tolerance), (y, y_tolerance) = (y, y_tolerance), (x, x_tolerance)
        low = x - (max(x_tolerance.absolute, x_tolerance.relative * abs(x)) if x_tolerance else 0)
        high = y + (max(y_tolerance.absolute, y_tolerance.relative * abs(y)) if y_tolerance else 0)
        if not x > y:
            errors.append(f"glue {a} {op} {b}: the references read {glued[a][0]} and {glued[b][0]}")
        elif not low > high:
            errors.append(f"glue {a} {op} {b}: holds in the references, but not at the ends of their tolerance")
        unpasted = {a, b} - pasted(cell_text)
        if unpasted:
            errors.append(f"the text around the claim glue {a} {op} {b} does not paste {sorted(unpasted)}")
    return errors


def typed_glue_errors(cell_text: str, glued: dict, name: str, typed: str) -> list[str]:
    """What is wrong with a claim that the glued whole number ``name`` is ``typed``."""
    if name not in glued:
        return [f"glue {name}: no cell that nbval checks glues it (its reference holds it)"]
    value, tolerance = glued[name]
    if value != int(typed):
        return [f"glue {name} = {typed}: the reference reads {value}"]
    if tolerance and max(tolerance.absolute, tolerance.relative * abs(value)) >= 1:
        return [f"glue {name} = {typed}: its cell's tolerance ({tolerance}) admits another whole number"]
    if not re.search(rf"(?<![\w.]){re.escape(typed)}(?![\d.])", prose(cell_text)):
        return [f"the text around the claim glue {name} = {typed} does not type {typed}"]
    return []


@pytest.mark.parametrize("path", LECTURES, ids=str)
def test_every_ranking_claim_in_a_lecture_holds_in_its_table(path):
    cells = nbformat.read(ROOT / path, as_version=4).cells
    glued = glued_references(cells)
    errors = [(i, e) for i, c in enumerate(cells) if c.cell_type == "markdown" for e in claim_errors(c.source, glued)]
    assert not errors, f"{path}: ranking claims that their tables contradict (cell, problem): {errors}"


@pytest.mark.parametrize("path", LECTURES, ids=str)
def test_every_number_a_lectures_text_pastes_is_glued_by_its_code(path):
    """myst-nb leaves a pasted name that no cell glued as a warning, which fails the book;
    this says so without building it."""
    cells = nbformat.read(ROOT / path, as_version=4).cells
    code = "".join(c.source for c in cells if c.cell_type == "code")
    glued = set(re.findall(r"\bglue\(\s*[\"']([^\"']+)[\"']", code))
    unglued = [(i, n) for i, c in enumerate(cells) if c.cell_type == "markdown" for n in pasted(c.source) - glued]
    assert not unglued, f"{path}: the text pastes names that no code cell glues (cell, name): {unglued}"


def test_the_glue_claim_check_fails_a_false_a_fragile_an_unchecked_or_an_unquoted_comparison():
    relative = nbval_tolerance.TOLERANCES["relative"]
    glued = {"ae": (0.92, relative), "mean": (0.63, relative), "close": (0.88, relative), "exact": (0.5, None)}
    text = "The AE flags {glue:text}`ae:.1%`, the mean image {glue:text}`mean:.1%`.\n"
    assert claim_errors(text + "<!-- claim: glue ae > mean -->", glued) == []
    assert claim_errors(text + "<!-- claim: glue mean < ae -->", glued) == []
    assert claim_errors(text + "<!-- claim: glue mean > ae -->", glued), "a false comparison must fail"
    fragile = "{glue}`ae` against {glue}`close`\n<!-- claim: glue ae > close -->"
    assert claim_errors(fragile, glued), "a comparison that a run within tolerance can reverse must fail"
    assert claim_errors(text + "<!-- claim: glue ae > live -->", glued), "a value nbval does not check must fail"
    assert claim_errors("The AE is worse.\n<!-- claim: glue ae > mean -->", glued), "unquoted numbers must fail"
    assert claim_errors(text + "<!-- claim: ae > mean -->", glued), "a claim in neither form must fail"
    assert claim_errors(text + "<!-- claim: glue ae > mean --> So **this** is raw.", glued), "text after it must fail"
    glued |= {"digit": (1, relative), "count": (12, relative)}
    assert claim_errors("The 1s score lowest.\n<!-- claim: glue digit = 1 -->", glued) == []
    assert claim_errors("The 2s score lowest.\n<!-- claim: glue digit = 2 -->", glued), "a wrong number must fail"
    assert claim_errors("The 2s score lowest.\n<!-- claim: glue digit = 1 -->", glued), "the text must type it"
    assert claim_errors("12 of them.\n<!-- claim: glue count = 12 -->", glued), "13 is within 10% of 12"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\n# NBVAL_TOLERANCE relative\nreport.glue('ae', 0.92)")]
    nb.cells[0].outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={report.GLUE_PREFIX + "text/plain": "0.92"},
            metadata={"scrapbook": {"name": "ae", "mime_prefix": report.GLUE_PREFIX}},
        )
    ]
    assert glued_references(nb.cells) == {"ae": (0.92, relative)}
    nb.cells[0].source = "report.glue('ae', 0.92)"  # unchecked: nbval compares nothing
    assert glued_references(nb.cells) == {}


def test_the_claim_check_fails_a_sentence_that_names_the_wrong_method_or_rows():
    right = "AE_L2 is ahead on grid and tile.\n<!-- claim: mvtec_image_auc.csv AE_L2 > AE_SSIM on grid, tile -->"
    table = claim_table("mvtec_image_auc.csv")
    ahead = [c for c in table["AE_L2"] if table["AE_L2"][c] > table["AE_SSIM"][c]]
    listed = ", ".join(ahead)
    sentence = f"AE_L2 is ahead of AE_SSIM on {listed.replace('_', ' ')}."
    assert claim_errors(f"{sentence}\n<!-- claim: mvtec_image_auc.csv AE_L2 > AE_SSIM on {listed} -->") == []
    assert claim_errors(right), "a claim listing too few cases must fail"
    swapped = f"{sentence}\n<!-- claim: mvtec_image_auc.csv AE_SSIM > AE_L2 on {listed} -->"
    assert claim_errors(swapped), "a claim naming the wrong method ahead must fail"
    unnamed = f"AE_L2 is ahead.\n<!-- claim: mvtec_image_auc.csv AE_L2 > AE_SSIM on {listed} -->"
    assert claim_errors(unnamed), "a claim whose cases the sentence does not name must fail"
    stored = json.loads((ROOT / "results" / "mnist_quick400.json").read_text())["results"]
    assert claim_table("mnist_quick400.json:fpr_995[8]")["ae"] == {"8": stored["ae"]["fpr_995"]["8"]}
    seeds = claim_table("stability_quick.json")["arae"]
    assert len(seeds) > 1 and claim_table("stability_quick.json#range")["arae.min"] == {"8": min(seeds.values())}
    some = [c for c in table["AE_L2"] if c not in ahead][:1] + ahead[:1]
    claim = f"<!-- claim: mvtec_image_auc.csv[{','.join(some)}] AE_L2 > AE_SSIM on {ahead[0]} -->"
    assert claim_errors(f"On {' and '.join(some).replace('_', ' ')}: AE_L2 ahead on one.\n{claim}") == []
    assert claim_errors(f"AE_L2 is ahead on {ahead[0].replace('_', ' ')}.\n{claim}"), "it names every kept case"
    wrong = claim.replace(f" on {ahead[0]} ", f" on {some[0]} ")
    assert claim_errors(f"On {' and '.join(some).replace('_', ' ')}.\n{wrong}"), "the kept cases are checked"


def test_the_number_scan_reads_the_prose_only_and_spells_sources_as_quoted():
    text = "The AE reaches 83.17% on 5,851 images (`epochs=30`, $d = 784$).\n## 8. Summary"
    assert NUMBER.findall(prose(text)) == ["83.17", "5,851"]
    assert NUMBER.findall(prose("## 8. Summary\n\n- 97.3 for the AE")) == ["97.3"], "a heading is one line"
    assert "83.17" not in numbers_in("AUROC 83.2 %") and "83.2" in numbers_in({"auc": 83.17})
    assert "95.5" in numbers_in([0.955]) and "5851" in numbers_in("train 5851 normal")
