"""benchmarks/peers.py, its smallest case, against the real peers (not in CI: they are heavy).

Runs where the peers are installed: in this interpreter, or in the virtualenv that
$EVSIM_PEERS_PYTHON names (benchmarks/nir_peer_fixtures.py says how to build it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the dense side needs torch")
pytest.importorskip("h5py", reason="NIR files need the nir extra (h5py)")

ROOT = Path(__file__).resolve().parent.parent


def _peers_python() -> str | None:
    here = all(importlib.util.find_spec(p) is not None for p in ("snntorch", "norse", "sinabs", "spikingjelly"))
    if here:
        return sys.executable
    python = os.environ.get("EVSIM_PEERS_PYTHON")
    if python and Path(python).exists():
        probe = subprocess.run([python, "-c", "import snntorch, norse, sinabs, spikingjelly"], capture_output=True)
        return python if probe.returncode == 0 else None
    return None


PEERS_PYTHON = _peers_python()


@pytest.mark.slow
@pytest.mark.skipif(PEERS_PYTHON is None, reason="snntorch and spikingjelly are not installed "
                    "(nor norse and sinabs; or set EVSIM_PEERS_PYTHON to the peers' virtualenv python)")
def test_peers_side_by_side_smallest_case():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peers

    report = peers.main(["--samples", "2", "--rounds", "1", "--batches", "2", "--peers-python", PEERS_PYTHON])
    lenet = {row["simulator"]: row for row in report["lenet-nmnist"]}
    cnn = {row["simulator"]: row for row in report["sinabs-nmnist"]}
    for rows in (lenet, cnn):
        assert rows["evsim dense PyTorch"]["agreement"] == 1.0  # step mode is the dense forward, exactly
        assert all(rows[s]["batch1"] > 0 for s in ("evsim step", "evsim async", "evsim dense PyTorch"))
    # snntorch and SpikingJelly import evsim's export and compute evsim's outputs
    for peer in ("snntorch", "spikingjelly"):
        assert lenet[peer]["same_outputs"] and lenet[peer]["agreement"] == 1.0
    # SpikingJelly counts the exported pooling neurons too (they spike: an average pool with a threshold)
    evsim_spikes = sum(spikes for name, (kind, _, spikes) in report["lenet-nmnist/evsim_layers"].items() if kind != "output")
    assert lenet["spikingjelly"]["counters"]["spikes"] == evsim_spikes
    # norse and sinabs cannot read it, and the table says why
    assert "pool1_avgpool" in lenet["norse"]["error"] and "sinabs/nir.py" in lenet["sinabs"]["error"]
    # sinabs on its own CNN: evsim's spikes exactly, and its synops are evsim's weight-layer synops
    assert cnn["sinabs"]["same_outputs"] and cnn["sinabs"]["counters"]["spikes"] == cnn["evsim step"]["counters"]["spikes"]
    layers = report["sinabs-nmnist/evsim_layers"]
    weight_synops = sum(synops for kind, synops, _ in layers.values() if kind == "lif")
    assert cnn["sinabs"]["counters"]["synops"] == pytest.approx(weight_synops)
