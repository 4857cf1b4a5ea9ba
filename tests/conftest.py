"""Shared fixtures. Tests that need real MNIST read it from the data root
($ANOMALY_EDU_DATA); .ci/run points that at ../shared/data."""

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anomaly_edu.data import available_datasets, data_root

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]


# Marker of tests/test_book.py (the built book, checked in headless Chromium).
# Select or skip them with `pytest -m book` / `pytest -m "not book"`.
def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "book: builds the book (executing notebooks not yet up to date) and checks the HTML in headless Chromium",
    )


# ------------------------------------------------------------------ notebooks in the background
# Executing the notebooks (scripts/build_course.py, one per core) takes most of the suite's time.
# When a run includes tests that need them (whose fixtures ask for notebooks_in_background: the
# book's, tests/test_notebooks.py's), the notebooks
# start at once in a process of their own and those tests move to the end: the other tests run
# meanwhile, at one thread, in the time the notebooks leave free. The notebook tests' fixtures
# wait for that process; the build they then call executes only what is not up to date (nothing,
# unless a notebook failed: it runs again there and the failure is reported as before).

BACKGROUND_LOG = ROOT / "_build" / "notebooks_in_background.log"
_background: dict = {}
# To work on the book's tests (tests/test_book.py, tests/test_pdf.py) without building the book:
# ANOMALY_EDU_BOOK_HTML=<the html folder of a built book> makes them check that book, and no
# notebook runs in the background. CI never sets it.
BUILT_BOOK_VAR = "ANOMALY_EDU_BOOK_HTML"


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what they deselect
def pytest_collection_modifyitems(session, config, items):
    needing = [item for item in items if "notebooks_in_background" in item.fixturenames]  # directly or not
    if not needing or config.getoption("collectonly") or os.environ.get(BUILT_BOOK_VAR):
        return
    waiting = {id(item) for item in needing}
    items[:] = [item for item in items if id(item) not in waiting] + needing
    BACKGROUND_LOG.parent.mkdir(parents=True, exist_ok=True)
    with open(BACKGROUND_LOG, "w") as log:
        _background["process"] = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "build_course.py"), "execute", "--profile", "quick"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its kernels if the run stops early
        )
    # One thread here and in the processes the tests start (kernels, pip, nbval), unless a test
    # sets its own; threads that wait sleep instead of spinning, as two notebooks hold the cores
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


@pytest.fixture(scope="session")
def notebooks_in_background():
    """Wait until the notebooks started in the background have run (if any were started)."""
    process = _background.get("process")
    if process is not None:
        process.wait()


def load_build_course():
    spec = importlib.util.spec_from_file_location("build_course", ROOT / "scripts" / "build_course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The built book, shared by tests/test_book.py and tests/test_pdf.py: built once per session.
@pytest.fixture(scope="session")
def book_html(notebooks_in_background) -> Path:
    """Build the book (quick profile) and return the folder of its HTML; strict:
    an output beyond its tolerance fails here, as in every test. (The notebooks
    have run in the background by then: only what is not up to date runs here.)
    With $ANOMALY_EDU_BOOK_HTML set, that built book instead."""
    given = os.environ.get(BUILT_BOOK_VAR)
    if given:
        if not (Path(given) / "index.html").is_file():
            pytest.fail(f"{BUILT_BOOK_VAR}={given} is not the html folder of a built book", pytrace=False)
        return Path(given).resolve()
    build_course = load_build_course()
    try:
        return build_course.build_book(profile="quick", strict=True).parent
    except build_course.BuildError as error:
        message = str(error)
    pytest.fail(f"the book did not build: {message}", pytrace=False)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium, which opens the built book (Debian's package)."""
    for name in ["chromium", "chromium-browser"]:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "headless Chromium is needed to check the rendered book, and none was "
        "found on PATH; install Debian's package: apt-get install chromium"
    )


def pytest_unconfigure(config):
    process = _background.get("process")
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()


@pytest.fixture(scope="session")
def mnist_root():
    """The data root, or skip when it holds no MNIST (CI always has it)."""
    root = data_root()
    if not available_datasets(root)["mnist"]:
        if os.environ.get("CI"):
            pytest.fail(f"MNIST missing under {root}: CI must set ANOMALY_EDU_DATA")
        pytest.skip(f"MNIST not under the data root {root}; set ANOMALY_EDU_DATA")
    return root


@pytest.fixture(scope="session")
def mnist(mnist_root):
    from anomaly_edu.data import load_dataset

    return load_dataset("mnist", True, root=mnist_root), load_dataset("mnist", False, root=mnist_root)


# ------------------------------------------------------------------ time per test file
# Printed at the end of every run, the slowest files first: what the suite's time
# is spent on (setup, call and teardown of every test of the file, fixtures included).

_SECONDS_PER_FILE: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    _SECONDS_PER_FILE[path] = _SECONDS_PER_FILE.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _SECONDS_PER_FILE:
        return
    terminalreporter.write_sep("=", "seconds per test file")
    for path, seconds in sorted(_SECONDS_PER_FILE.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:8.1f}  {path}")
    terminalreporter.write_line(f"{sum(_SECONDS_PER_FILE.values()):8.1f}  in all")
    if "process" in _background and BACKGROUND_LOG.is_file():
        terminalreporter.write_sep("=", f"notebooks executed in the background ({BACKGROUND_LOG.relative_to(ROOT)})")
        for line in BACKGROUND_LOG.read_text().splitlines():
            if line.startswith("execute:"):
                terminalreporter.write_line(line)


@pytest.fixture
def fewer_images(monkeypatch):
    """Every split a table run loads, cut to its first 500 training and 1,000
    test images (MNIST's test set is in random order, so every digit is among
    them): the same code paths as the whole set in a fraction of the time, for
    tests of bookkeeping, not of how well a model learns."""
    from dataclasses import replace

    from anomaly_edu.experiments import reproduce

    whole = reproduce.table_splits

    def cut(*args, **kwargs):
        return {
            case: replace(
                split,
                x_train=split.x_train[:500],
                x_test=split.x_test[:1000],
                y_test=split.y_test[:1000],
                test_classes=split.test_classes[:1000],
            )
            for case, split in whole(*args, **kwargs).items()
        }

    monkeypatch.setattr(reproduce, "table_splits", cut)
