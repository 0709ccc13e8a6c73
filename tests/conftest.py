"""Paths to the small real-data sample vendored in tests/data (see tests/data/README.md), and the
CI rules: derandomised hypothesis, every optional dependency present, no unexpected skip.

With ``CI`` set (``.ci/run`` sets it) a test that skips for a reason not listed in
:data:`EXPECTED_SKIPS` fails the run, and a missing optional dependency stops it before any test
runs: otherwise a missing torch would skip the exactness oracle and CI would stay green.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

TEST_DATA = Path(__file__).parent / "data"
CI = bool(os.environ.get("CI"))

# CI draws the same examples on every run (a red CI run is reproducible and never flaky); a
# developer's run draws new ones, so the examples explored keep growing.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if CI else "dev"))

EXPECTED_SKIPS = {
    # the full datasets are not part of a clone and nothing downloads in tests
    "no full data folder (set EVSIM_DATA)": "full-data checks need $EVSIM_DATA",
    "no N-MNIST in the data folder": "full-data checks need $EVSIM_DATA/nmnist",
    "no MNIST in the data folder": "full-data checks need $EVSIM_DATA/mnist",
    # the peers are heavy; tests/test_nir.py checks their recorded runs instead (tests/data/nir)
    "snntorch and spikingjelly are not installed": "the live NIR peer check needs the peers' virtualenv",
}
"""Skip reasons CI accepts (prefix match), with why. Anything else that skips under CI is a failure."""

REQUIRED_IN_CI = ("torch", "hypothesis", "expelliarmus", "matplotlib", "tonic", "aedat", "scipy", "h5py", "ray",
                  "dv_processing")
"""What `.ci/run` installs ([train,plot,data,nir,cluster,live,dev]); tests importorskip them for lighter local installs."""

_unexpected_skips: list[str] = []


def pytest_configure(config):
    if CI:
        missing = [name for name in REQUIRED_IN_CI if importlib.util.find_spec(name) is None]
        if missing:
            raise pytest.UsageError(
                f"CI is set but {', '.join(missing)} is not installed: the tests needing it would skip "
                "(install the [train,plot,data,dev] extras)"
            )


def _skip_reason(report) -> str | None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _record_skip(report) -> None:
    reason = _skip_reason(report)
    if reason is not None and not any(reason.startswith(expected) for expected in EXPECTED_SKIPS):
        _unexpected_skips.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report):
    _record_skip(report)


def pytest_collectreport(report):
    _record_skip(report)  # a module-level importorskip skips at collection


def pytest_terminal_summary(terminalreporter):
    if CI and _unexpected_skips:
        terminalreporter.section("unexpected skips (CI is set; allowed: tests/conftest.py EXPECTED_SKIPS)", red=True)
        for line in _unexpected_skips:
            terminalreporter.line(line)


def pytest_sessionfinish(session, exitstatus):
    if CI and _unexpected_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(params=["kernels", "torch_loop"])
def recurrence(request):
    """The trainer's tests run on both paths of the paper's rule: the Numba kernels (CPU) and the
    torch loop (GPUs; the reference the kernels are checked against bit for bit)."""
    import contextlib

    pytest.importorskip("torch")
    from evsim.training.neurons import torch_recurrence

    with torch_recurrence() if request.param == "torch_loop" else contextlib.nullcontext():
        yield request.param


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
def simulated_mnist_root(mnist_root, tmp_path_factory) -> Path:
    """An MNIST folder with 40 digits for the N-MNIST simulator (``nmnist-sim``): the vendored
    1000 training digits (which real recordings show, so the simulator leaves them out) plus
    test digits 201-240 as training digits 1001-1040; test digits 1-140."""
    from evsim.datasets.mnist import load_mnist
    from idx_files import write_idx

    images, labels = load_mnist(mnist_root, "train")
    test_images, test_labels = load_mnist(mnist_root, "test")
    root = tmp_path_factory.mktemp("mnist")
    write_idx(root / "train-images-idx3-ubyte", np.concatenate([images, test_images[200:240]]), 2051)
    write_idx(root / "train-labels-idx1-ubyte", np.concatenate([labels, test_labels[200:240]]), 2049)
    write_idx(root / "t10k-images-idx3-ubyte", test_images[:140], 2051)
    write_idx(root / "t10k-labels-idx1-ubyte", test_labels[:140], 2049)
    return root


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
