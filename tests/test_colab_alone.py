"""A lecture opened alone on Colab shows the stored results.

On Colab a lecture runs with the package installed from its wheel, in a folder
that holds no clone of the repository. This test does the same here: it builds
the wheel of this checkout, installs it alone into a fresh virtual environment,
and executes a lecture with papermill in an empty folder. The lecture must find
the stored results that ship inside the wheel (``anomaly_edu/stored_results``,
a link to ``results/`` in the repository).
"""

import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from anomaly_edu import results

ROOT = Path(__file__).resolve().parents[1]
# The lecture executed alone; it prints the stored full-profile MNIST table.
LECTURE = "lectures/01_autoencoders.ipynb"
# A notebook cell that prints the python running it and where it imported anomaly_edu from.
WHICH_PYTHON = "import sys\n\nimport anomaly_edu\n\nprint(sys.executable)\nprint(anomaly_edu.__file__)"
# Everything the wheel is built from.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "anomaly_edu", "results")


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
        if (ROOT / name).is_dir():  # symlinks=True: the link stored_results stays a link
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", folder, "."], cwd=source)
    (wheel,) = folder.glob("*.whl")
    return wheel


def fresh_environment(folder: Path, wheel: Path) -> Path:
    """A new virtual environment in ``folder`` with the wheel installed and
    nothing else; its python.

    The dependencies (torch, papermill, ...) come from this test's environment,
    without installing them again: a .pth file lists its site-packages. A path
    line in a .pth file is only added to sys.path; the .pth files in that
    folder are not run, so the editable install of the checkout stays out and
    anomaly_edu comes from the wheel alone."""
    run([sys.executable, "-m", "venv", folder])
    python = folder / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel])
    own_site_packages = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    Path(own_site_packages, "test_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built once for the tests of this file."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_the_stored_results_and_the_talks_tables(wheel):
    assert os.readlink(ROOT / "anomaly_edu" / "stored_results") == "../results"  # relative: it works in any clone
    assert results.STORED_RESULTS.resolve() == ROOT / "results"  # a checkout reads results/ itself
    inside = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted((ROOT / "results").glob("*.json")):
        assert f"anomaly_edu/stored_results/{path.name}" in inside
    for path in sorted((ROOT / "anomaly_edu" / "paper_tables").glob("*.csv")):
        assert f"anomaly_edu/paper_tables/{path.name}" in inside


def test_a_lecture_opened_alone_shows_the_stored_results(wheel, tmp_path, mnist_root):
    python = fresh_environment(tmp_path / "fresh", wheel)

    # First, which python the kernel runs and where it imports anomaly_edu from.
    (tmp_path / "check").mkdir()
    check = write_notebook(tmp_path / "check" / "check.ipynb", WHICH_PYTHON)
    executable, package = execute(python, check, mnist_root).splitlines()
    assert executable == str(python)
    assert Path(package).is_relative_to(tmp_path / "fresh"), f"anomaly_edu imported from {package}, not the wheel"

    # The lecture, alone in an empty folder.
    (tmp_path / "alone").mkdir()
    lecture = Path(shutil.copy(ROOT / LECTURE, tmp_path / "alone"))
    printed = execute(python, lecture, mnist_root)
    assert re.search(r"mnist_full(_cpu)?\.json:", printed), "the stored full-profile MNIST table is not shown"
    assert "made by commit" in printed
    assert "no stored result" not in printed
