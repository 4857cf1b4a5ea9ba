"""A lecture opened alone on Colab shows the stored results, on Colab's stack too.

On Colab a lecture runs with the package installed from its wheel, in a folder
that holds no clone of the repository. This test does the same here: it builds
the wheel of this checkout and installs it into a fresh virtual environment
pinned to the versions on Colab (``tests/colab_constraints.txt``, from Google's
list of 2026-08) with a plain ``pip install``, which must change none of them.
Then it executes Lecture 1 and an exercise with papermill, each in an empty
folder. The lecture must find the stored results that ship inside the wheel
(``anomaly_edu/stored_results``, a link to ``results/`` in the repository), and
anomaly_edu must come from the wheel, not the checkout. Two environment variables say
how close to Colab it gets (CI's colab-stack job sets both):

- ``COLAB_PYTHON``: the python that makes that environment; Colab's is 3.13.
  Default: the python running the tests (3.11 on the project's machines, which
  have no 3.13).
- ``COLAB_TORCH=1``: install Colab's torch 2.11 and torchvision 0.26 (CPU
  builds, from PyTorch's CPU index). Default: use this environment's torch and
  torchvision, linked in, not installed again, and its setuptools (the
  project's machines reach PyPI only, whose torch 2.11 is a CUDA build of
  several GB).

``test_colabs_stack_ran_on_colabs_python_and_torch`` is skipped, naming what
differed, when either is not Colab's.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from anomaly_edu.experiments import results

ROOT = Path(__file__).resolve().parents[1]
# The lecture executed alone; it prints the stored full-profile MNIST table.
LECTURE = "lectures/01_autoencoders.ipynb"
# A notebook cell that prints the python running it and where it imported anomaly_edu from.
WHICH_PYTHON = "import sys\n\nimport anomaly_edu\n\nprint(sys.executable)\nprint(anomaly_edu.__file__)"
# Everything the wheel is built from.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "anomaly_edu", "results", "models")

# Colab's stack: its versions, its Python, where its torch comes from, and the exercise run on it
# (Exercise 7b: the cheapest, a few seconds; it reads stored results with pandas and scipy).
COLAB_CONSTRAINTS = ROOT / "tests" / "colab_constraints.txt"
COLAB_PYTHON_VERSION = "3.13"
COLAB_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH = ("torch", "torchvision")
EXERCISE = "exercises/solutions/ex07b_seeds.ipynb"
# Prints every distribution that a python sees, with its version, as JSON.
LIST_VERSIONS = (
    "import json; from importlib import metadata; "
    "print(json.dumps({d.metadata['Name']: d.version for d in metadata.distributions()}))"
)


def run(command: list, **kwargs) -> str:
    """Run ``command`` and return what it printed; fail the test, showing its
    output, when it fails."""
    command = [str(part) for part in command]
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def build_wheel(folder: Path) -> Path:
    """Build the wheel of this checkout into ``folder``; its path.

    It is built from a copy of the files it is made of, so that setuptools'
    build/ folder lands in ``folder``, not in the checkout (where files left in
    build/ by an earlier build would end up in the wheel too)."""
    source = folder / "source"
    source.mkdir(parents=True)
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():  # symlinks=True: stored_results and stored_models stay links
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", folder, "."], cwd=source)
    (wheel,) = folder.glob("*.whl")
    return wheel


def new_environment(folder: Path, base: str = sys.executable) -> Path:
    """A new virtual environment in ``folder``, made by the python ``base``; its python."""
    run([base, "-m", "venv", folder])
    return folder / "bin" / "python"


def add_to_path(python: Path, folders: list) -> None:
    """Make ``python`` see the packages in ``folders`` too, after its own: a
    .pth file in its site-packages lists them. A path line in a .pth file is
    only added to sys.path; the .pth files in those folders are not run."""
    own_site_packages = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    Path(own_site_packages, "test_environment.pth").write_text("".join(f"{folder}\n" for folder in folders))


def write_notebook(path: Path, source: str) -> Path:
    """A notebook at ``path`` with one code cell."""
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
    return path


def execute(python: Path, notebook: Path, data_root: Path) -> str:
    """Execute ``notebook`` in its own folder, as Colab would: papermill run by
    ``python`` (so the kernel runs it too), no PYTHONPATH, the data sets at
    ``data_root``. What its cells printed."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    env["ANOMALY_EDU_DATA"] = str(data_root)
    folder = notebook.parent
    executed = folder / f"executed_{notebook.name}"
    papermill = [python, "-m", "papermill", notebook, executed, "-k", "python3", "--cwd", folder, "--no-progress-bar"]
    run(papermill, cwd=folder, env=env, timeout=1800)
    cells = nbformat.read(executed, as_version=4).cells
    return "".join(
        output.get("text", "")
        for cell in cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


def execute_alone(python: Path, notebook: str, folder: Path, data_root: Path) -> str:
    """Copy ``notebook`` (a path in the repository) into ``folder``, a new empty
    folder, and execute it there; what its cells printed."""
    folder.mkdir()
    return execute(python, Path(shutil.copy(ROOT / notebook, folder)), data_root)


def check_lecture_alone(python: Path, environment: Path, folder: Path, data_root: Path) -> None:
    """A notebook's kernel is ``python`` and imports anomaly_edu from the wheel
    installed in ``environment``; Lecture 1, alone in an empty folder, shows
    the stored results."""
    (folder / "check").mkdir()
    check = write_notebook(folder / "check" / "check.ipynb", WHICH_PYTHON)
    executable, package = execute(python, check, data_root).splitlines()
    assert executable == str(python)
    assert Path(package).is_relative_to(environment), f"anomaly_edu imported from {package}, not the wheel"

    printed = execute_alone(python, LECTURE, folder / "alone", data_root)
    assert re.search(r"mnist_full(_cpu)?\.json:", printed), "the stored full-profile MNIST table is not shown"
    assert "made by commit" in printed
    assert "no stored result" not in printed


def read_pins(path: Path) -> dict:
    """The ``name==version`` lines of a constraints file, as {name: version}."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    return pins


def installed_versions(python: Path) -> dict:
    """Every distribution that ``python`` sees, as {canonical name: version}."""
    listed = json.loads(run([python, "-c", LIST_VERSIONS]))
    return {canonicalize_name(name): version for name, version in listed.items()}


def needed_distributions(names: tuple, leave_out: set) -> list:
    """This environment's distributions of ``names`` and of all they need,
    directly or not, with the extras asked for; those named in ``leave_out``
    (and what only they need) left out."""
    found, seen = {}, set()
    todo = [Requirement(name) for name in names]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in leave_out:
            continue
        found.setdefault(name, metadata.distribution(name))
        for extra in ["", *requirement.extras]:
            if (name, extra) not in seen:
                seen.add((name, extra))
                needs = [Requirement(line) for line in found[name].requires or []]
                todo += [need for need in needs if need.marker is None or need.marker.evaluate({"extra": extra})]
    return list(found.values())


def link_distributions(distributions: list, folder: Path) -> Path:
    """``folder``, new, with links to the packages, modules and .dist-info
    folders of ``distributions``: a python that has it on its path sees them
    installed."""
    folder.mkdir()
    for distribution in distributions:
        for top in {file.parts[0] for file in distribution.files or []} - {"..", "__pycache__"}:
            if not (folder / top).exists():  # a namespace package (nvidia/) is shared by several
                (folder / top).symlink_to(distribution.locate_file(top))
    return folder


@dataclass
class ColabStack:
    """A fresh environment on Colab's versions that got the wheel with a plain
    ``pip install``: its python, the versions it was pinned to and every
    distribution's version before and after installing the wheel (each
    {canonical name: version})."""

    python: Path
    pinned: dict
    before: dict
    after: dict


def colab_stack(folder: Path, wheel: Path) -> ColabStack:
    """Make an environment in ``folder`` on Colab's versions (with COLAB_PYTHON
    and COLAB_TORCH as the module's docstring says) and install ``wheel``."""
    python = new_environment(folder / "env", os.environ.get("COLAB_PYTHON", sys.executable))
    pins = read_pins(COLAB_CONSTRAINTS)
    install = [python, "-m", "pip", "install", "--quiet", "--no-compile"]
    if os.environ.get("COLAB_TORCH") == "1":
        pin_install = [*install, "--extra-index-url", COLAB_TORCH_INDEX]  # Colab's CPU builds of torch
    else:
        # This environment's torch, linked in, and its setuptools (torch 2.14 needs one newer than Colab's).
        pins = {name: version for name, version in pins.items() if name not in TORCH}
        pins["setuptools"] = metadata.version("setuptools")
        torch = needed_distributions(TORCH, leave_out={canonicalize_name(name) for name in pins})
        add_to_path(python, [link_distributions(torch, folder / "torch")])
        pin_install = install
    requirements = folder / "colab_requirements.txt"
    requirements.write_text("".join(f"{name}=={version}\n" for name, version in pins.items()))
    run([*pin_install, "-r", requirements])
    before = installed_versions(python)
    run([*install, wheel])  # plain, as `%pip install` on Colab: no constraints
    pinned = {canonicalize_name(name): version for name, version in pins.items()}
    return ColabStack(python, pinned, before, installed_versions(python))


def differences(expected: dict, found: dict) -> dict:
    """{name: (expected version, found version)} where ``found`` has another
    version of a name in ``expected``, or none."""
    return {
        name: (version, found.get(name))
        for name, version in expected.items()
        if name not in found or Version(found[name]) != Version(version)
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built once for the tests of this file."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def colab(wheel, tmp_path_factory) -> ColabStack:
    """Colab's stack with the wheel installed, made once for the tests of this file."""
    return colab_stack(tmp_path_factory.mktemp("colab"), wheel)


def test_the_wheel_carries_the_stored_results_and_the_talks_tables(wheel):
    assert os.readlink(ROOT / "anomaly_edu" / "stored_results") == "../results"  # relative: it works in any clone
    assert results.STORED_RESULTS.resolve() == ROOT / "results"  # a checkout reads results/ itself
    inside = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted((ROOT / "results").glob("*.json")):
        assert f"anomaly_edu/stored_results/{path.name}" in inside
    for path in sorted((ROOT / "anomaly_edu" / "paper_tables").glob("*.csv")):
        assert f"anomaly_edu/paper_tables/{path.name}" in inside


def test_the_wheel_carries_the_stored_models_and_their_manifest(wheel):
    assert os.readlink(ROOT / "anomaly_edu" / "stored_models") == "../models"
    inside = set(zipfile.ZipFile(wheel).namelist())
    stored = sorted((ROOT / "models").glob("*.safetensors"))
    assert stored, "models/ holds no stored model (python scripts/store_models.py)"
    for path in [*stored, ROOT / "models" / "manifest.json"]:
        assert f"anomaly_edu/stored_models/{path.name}" in inside


def test_installing_the_wheel_on_colabs_stack_changes_none_of_its_versions(colab):
    not_pinned = differences(colab.pinned, colab.before)
    assert not not_pinned, f"not Colab's versions before the wheel (pinned, installed): {not_pinned}"
    changed = differences(colab.before, colab.after)
    assert not changed, (
        f"`pip install` of the wheel changed these versions (Colab's, now): {changed}; "
        "pyproject.toml's dependencies must admit Colab's versions"
    )
    assert "anomaly-edu" in colab.after


def test_a_lecture_and_an_exercise_run_on_colabs_stack(colab, tmp_path, mnist_root):
    check_lecture_alone(colab.python, colab.python.parents[1], tmp_path, mnist_root)
    printed = execute_alone(colab.python, EXERCISE, tmp_path / "exercise", mnist_root)
    assert "Exercise 7b.1 (the Welch interval): correct" in printed
    assert "Exercise 7b.2 (deciding from the interval): correct" in printed
    assert "no stored result" not in printed


def test_colabs_stack_ran_on_colabs_python_and_torch(colab):
    """Fails where COLAB_PYTHON or COLAB_TORCH asked for Colab's and got
    something else; skipped, naming what differed from Colab, where they were
    not set (the project's machines have no Python 3.13 and reach PyPI only)."""
    python = run([colab.python, "-c", "import platform; print(platform.python_version())"]).strip()
    if os.environ.get("COLAB_PYTHON"):
        assert python.startswith(f"{COLAB_PYTHON_VERSION}."), f"COLAB_PYTHON is Python {python}, not Colab's"
    not_colab = []
    if not python.startswith(f"{COLAB_PYTHON_VERSION}."):
        not_colab.append(f"Python {python}, not Colab's {COLAB_PYTHON_VERSION} (none here; set COLAB_PYTHON)")
    if "torch" not in colab.pinned:  # checked against Colab's by the test above when it is
        colab_torch = read_pins(COLAB_CONSTRAINTS)
        ours = ", ".join(f"{name} {colab.after[name]}" for name in TORCH)
        theirs = ", ".join(f"{name} {colab_torch[name]}" for name in TORCH)
        not_colab.append(f"this environment's {ours}, not Colab's {theirs} (set COLAB_TORCH=1)")
    if not_colab:
        pytest.skip("Colab's stack ran with " + "; ".join(not_colab) + ". CI's colab-stack job runs Colab's.")
