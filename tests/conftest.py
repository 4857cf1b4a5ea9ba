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
