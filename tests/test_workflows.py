"""The CI workflows (.github/workflows/) and their script (scripts/gpu_ci.sh).

actionlint and zizmor (offline) check the workflows and must find nothing; the
rules the workflows keep (actions pinned to a commit, no ``${{ }}`` inside a
script, least privilege, timeouts) are checked here too, and the script must
pass ``bash -n`` and shellcheck. The script's tiny mode then makes a table in
two parts on a fake MNIST and merges them, as the GPU workflow's matrix does.
The linters are pinned in requirements-ci.txt (``make setup`` installs them).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_data import make_fake_mnist

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
SCRIPT = ROOT / "scripts" / "gpu_ci.sh"


def tool(name: str) -> str:
    """The path of a command-line tool: the one beside this Python first (the .venv's)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is not installed: run `make setup` (requirements-ci.txt pins it)")
    return found


def run(command: list[str], **options) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, **options)


def load(workflow: Path) -> dict:
    return yaml.safe_load(workflow.read_text())


def steps(workflow: Path):
    """(job name, step) for every step of the workflow."""
    for name, job in load(workflow)["jobs"].items():
        for step in job.get("steps", []):
            yield name, step


def test_there_are_the_workflows():
    assert [w.name for w in WORKFLOWS] == ["colab-image.yml", "cpu.yml", "gpu.yml", "pages.yml"]


# ------------------------------------------------------------------ the linters


def test_actionlint_finds_nothing():
    # shellcheck checks the scripts of the run: steps; no step runs Python inline.
    result = run([tool("actionlint"), "-shellcheck", tool("shellcheck"), "-pyflakes=", *map(str, WORKFLOWS)])
    assert result.returncode == 0, f"actionlint:\n{result.stdout}{result.stderr}"


def test_zizmor_finds_nothing_even_as_an_auditor():
    # --offline: no network; --strict-collection: a file it cannot parse is an error, not a warning;
    # the auditor persona reports everything. Accepted findings are ignored in place, with a reason.
    command = [tool("zizmor"), "--offline", "--strict-collection", "--persona=auditor", "--color=never"]
    result = run([*command, ".github/workflows/"])
    assert result.returncode == 0, f"zizmor:\n{result.stdout}{result.stderr}"
    assert "No findings" in result.stdout, result.stdout


def test_the_script_passes_bash_n_and_shellcheck():
    result = run(["bash", "-n", str(SCRIPT)])
    assert result.returncode == 0, result.stderr
    result = run([tool("shellcheck"), str(SCRIPT)])
    assert result.returncode == 0, f"shellcheck:\n{result.stdout}{result.stderr}"


# ------------------------------------------------------------------ the rules they keep


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_every_action_is_pinned_to_a_commit_with_its_version_beside_it(workflow):
    uses = [step["uses"] for _, step in steps(workflow) if "uses" in step]
    assert uses, "no action used?"
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{action}: not pinned to a full commit SHA"
    # the version in a comment, for the reader and for update tools: `uses: owner/name@SHA # v1.2.3`
    lines = [line for line in workflow.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert len(lines) == len(uses)
    for line in lines:
        assert re.search(r"@[0-9a-f]{40} # v\d+(\.\d+)*$", line), f"no version comment: {line.strip()}"


# The only jobs that get more than the workflow's `contents: read`, and what they get.
JOB_PERMISSIONS = {
    ("pages.yml", "site"): {"contents": "write"},  # pushes the site to the gh-pages branch
    ("pages.yml", "deploy"): {"pages": "write", "id-token": "write"},  # deploys it to GitHub Pages
    ("pages.yml", "release"): {"contents": "write"},  # attaches the PDF to the tag's release
    ("colab-image.yml", "report"): {"contents": "read", "issues": "write"},  # opens the issue of a failure
}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_least_privilege_timeouts_and_concurrency(workflow):
    spec = load(workflow)
    assert spec["permissions"] == {"contents": "read"}
    assert "group" in spec["concurrency"]
    for name, job in spec["jobs"].items():
        assert "timeout-minutes" in job, f"job {name} has no timeout"
        expected = JOB_PERMISSIONS.get((workflow.name, name))
        assert job.get("permissions") == expected, f"job {name} asks for {job.get('permissions')}, not {expected}"
    for name, step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, f"job {name}: checkout keeps the token"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda w: w.name)
def test_no_expression_is_pasted_into_a_script(workflow):
    # Values reach a script through env:, so that no value can become shell code.
    for name, step in steps(workflow):
        assert "${{" not in step.get("run", ""), f"job {name}, step {step.get('name')}: pass it through env:"


def test_every_step_of_the_gpu_workflow_is_the_script():
    spec = load(ROOT / ".github" / "workflows" / "gpu.yml")
    assert spec["jobs"]["table"]["runs-on"] == ["self-hosted", "gpu"]
    matrix = spec["jobs"]["table"]["strategy"]["matrix"]
    assert "mnist" in matrix["table"] and matrix["classes"] == ["0-4", "5-9"]
    scripts = [step["run"] for _, step in steps(ROOT / ".github" / "workflows" / "gpu.yml") if "run" in step]
    assert scripts and all(s.startswith("bash scripts/gpu_ci.sh ") and "\n" not in s.strip() for s in scripts)


def test_the_pages_workflow_builds_each_release_with_make_book_and_deploys_it_and_its_pdf():
    path = ROOT / ".github" / "workflows" / "pages.yml"
    spec = load(path)
    on = spec[True]  # YAML 1.1 reads the key `on` as True
    assert on["push"] == {"tags": ["v*"]} and on["workflow_dispatch"]["inputs"]["tag"]["required"] is True
    assert spec["concurrency"]["cancel-in-progress"] is False  # a queued release is never dropped
    build, site, deploy, release = (spec["jobs"][name] for name in ("build", "site", "deploy", "release"))
    assert [step["run"] for step in build["steps"] if step.get("run", "").startswith("make book")] == ["make book pdf"]
    assert site["needs"] == "build" and deploy["needs"] == "site"
    scripts = "\n".join(step.get("run", "") for step in site["steps"])
    assert 'site_layout.py book "$TAG" site' in scripts and "push --quiet origin gh-pages" in scripts
    uploads = [step for step in site["steps"] if step.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert [step["with"]["path"] for step in uploads] == ["site/"]
    assert deploy["environment"]["name"] == "github-pages"
    assert [step["uses"].split("@")[0] for step in deploy["steps"]] == ["actions/deploy-pages"]
    # the PDF (make pdf) goes from the build to the tag's release; that job checks nothing out
    pdfs = [step["with"]["path"] for step in build["steps"] if step.get("with", {}).get("name") == "pdf"]
    assert pdfs == ["anomaly-edu/_build/pdf/anomaly-edu.pdf"] and release["needs"] == "build"
    assert not any(step.get("uses", "").startswith("actions/checkout@") for step in release["steps"])
    attach = "\n".join(step.get("run", "") for step in release["steps"])
    assert 'gh release upload "$TAG" "anomaly-edu-$TAG.pdf"' in attach


def test_the_colab_image_workflow_runs_the_notebooks_in_colabs_image_and_reports_a_failure():
    spec = load(ROOT / ".github" / "workflows" / "colab-image.yml")
    on = spec[True]  # YAML 1.1 reads the key `on` as True
    assert on["schedule"][0]["cron"].endswith("* * 3") and "workflow_dispatch" in on  # weekly, and by hand
    run, report = spec["jobs"]["run"], spec["jobs"]["report"]
    assert run["container"]["image"].startswith("us-docker.pkg.dev/colab-images/public/runtime")
    scripts = "\n".join(step.get("run", "") for step in run["steps"])
    # installed as the notebooks' first cell does: a plain pip install from the repository on GitHub
    cell = json.loads((ROOT / "lectures" / "01_autoencoders.ipynb").read_text())["cells"][1]
    assert '%pip install -q "anomaly-edu @ git+https://github.com/' in "".join(cell["source"])
    assert 'pip install -q "anomaly-edu @ git+https://github.com/$REPOSITORY@$COMMIT"' in scripts
    assert "pip list --format=freeze" in scripts
    for notebook in ("lectures/01_autoencoders.ipynb", "exercises/solutions/ex07b_seeds.ipynb"):
        assert notebook in scripts and (ROOT / notebook).is_file()
    assert "python3 -m papermill" in scripts and "-p PROFILE quick" in scripts
    assert report["needs"] == "run" and report["if"] == "${{ failure() }}"
    reporting = "\n".join(step.get("run", "") for step in report["steps"])
    assert "scripts/refresh_colab_constraints.py from-run/colab-pip-list.txt --dry-run" in reporting
    assert "gh issue comment" in reporting and "gh issue create" in reporting


# ------------------------------------------------------------------ the script's tiny mode


def test_tiny_mode_makes_a_table_in_two_parts_and_merges_them(tmp_path):
    make_fake_mnist(tmp_path / "data")
    env = dict(
        os.environ,
        ANOMALY_EDU_DATA=str(tmp_path / "data"),
        PY=sys.executable,
        PROFILE="quick",
        DEVICE="cpu",
        TINY="1",
        OMP_NUM_THREADS="1",
    )
    parts, results = tmp_path / "parts", tmp_path / "results"
    for command in (["table", "mnist", "0-4", str(parts)], ["table", "mnist", "5-9", str(parts)]):
        result = run(["bash", str(SCRIPT), *command], env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in parts.iterdir()) == ["mnist_0-4.json", "mnist_5-9.json"]

    result = run(["bash", str(SCRIPT), "merge", str(results), str(parts)], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    merged = json.loads((results / "mnist.json").read_text())
    # tiny: the first class of each range, one epoch of each method
    assert merged["table"] == "mnist" and merged["provenance"]["settings"]["classes"] == [0, 5]
    assert [part["classes"] for part in merged["provenance"]["parts"]] == [[0], [5]]
    assert merged["provenance"]["settings"]["changed_from_profile"]["ae"] == {"epochs": 1}
    for method in ("ae", "dae", "ocsvm", "dsvdd", "arae"):
        assert set(merged["results"][method]["auc"]) == {"0", "5"}


def test_tiny_mode_runs_nbval_on_the_notebooks_and_keeps_the_executed_copies(tmp_path, mnist_root):
    """The GPU workflow's nbval step on a CPU: nbval executes the two tiny
    notebooks, compares their marked cells with the references, and the
    executed copies come out with their outputs."""
    env = dict(os.environ, ANOMALY_EDU_DATA=str(mnist_root), PY=sys.executable, DEVICE="cpu", TINY="1")
    result = run(["bash", str(SCRIPT), "nbval", str(tmp_path)], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    executed = sorted(tmp_path.rglob("*.ipynb"))
    assert [p.name for p in executed] == ["ex06b_masks.ipynb", "ex07b_seeds.ipynb"]
    for notebook in executed:
        outputs = [o for c in json.loads(notebook.read_text())["cells"] for o in c.get("outputs", [])]
        assert any("correct" in "".join(o.get("text", "")) for o in outputs), notebook.name
    assert result.stdout.count("(quick)") == 2
