"""Shared fixtures. Tests that need real MNIST read it from the data root
($ANOMALY_EDU_DATA); .ci/run points that at ../shared/data."""

import os

import pytest
import torch

from anomaly_edu.data import available_datasets, data_root

torch.set_num_threads(2)


# Marker of tests/test_book.py (the built book, checked in headless Chromium).
# Select or skip them with `pytest -m book` / `pytest -m "not book"`.
def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "book: builds the book (executing notebooks not yet up to date) and checks the HTML in headless Chromium",
    )


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
