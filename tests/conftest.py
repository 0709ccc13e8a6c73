"""Paths to the small real-data sample vendored in tests/data (see tests/data/README.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

TEST_DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def test_data_dir() -> Path:
    return TEST_DATA


@pytest.fixture(scope="session")
def nmnist_root() -> Path:
    """The recordings bundled with evsim: ``Test/<digit>/`` (two per digit; digit 8's second one
    is in ``Train/8/``)."""
    from evsim.paths import BUNDLED_DATA

    return BUNDLED_DATA / "nmnist"


@pytest.fixture(scope="session")
def nmnist_manifest(nmnist_root) -> list[dict]:
    """The rows of the shared MANIFEST.tsv for the vendored recordings (numbers as int)."""
    with open(nmnist_root / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    numeric = ("label", "mnist_index_1based", "n_events", "t_first_us", "t_last_us", "n_on_events")
    for row in rows:
        for key in numeric:
            row[key] = int(row[key])
    return rows


@pytest.fixture(scope="session")
def nmnist_bin_files(nmnist_root, dvs_dir) -> list[Path]:
    """Every vendored N-MNIST .bin file, including the one from tonic's test data."""
    return sorted(nmnist_root.rglob("*.bin")) + [dvs_dir / "sample_nmnist.bin"]


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The first 500 MNIST test and 1000 training images and labels, as gzipped IDX files."""
    return TEST_DATA / "mnist"


@pytest.fixture(scope="session")
def dvs_dir() -> Path:
    """One sample file per other event-camera format, with reference arrays where upstream has them."""
    return TEST_DATA / "dvs"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full data folder (``$EVSIM_DATA`` or ``../shared/data``); tests that need it skip without it."""
    from evsim.datasets import data_root

    root = data_root()
    if root is None or not root.is_dir():
        pytest.skip("no full data folder (set EVSIM_DATA)")
    return root
