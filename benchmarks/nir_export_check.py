"""Run an evsim-exported NIR file in snntorch and SpikingJelly (their own importers) and record
their per-step outputs, for tests/test_nir.py's recorded check of evsim -> NIR -> peer.

Run with the peers' virtualenv (benchmarks/nir_peer_fixtures.py says how to make it)::

    /work/peers-venv/bin/python benchmarks/nir_export_check.py FILE.nir INPUTS.npz --out PEERS.npz

``INPUTS.npz`` holds ``x [N, T, C, H, W]`` float32 event counts. ``PEERS.npz`` gets ``snntorch``
and ``spikingjelly``, each ``[N, T, ...]``: the graph's output at every step, which evsim's readout
(the file's metadata ``evsim_readout``) turns into evsim's output; and ``file_digest``, the
SHA-256 of the file's content, which tells the test that the recorded run is of what evsim
exports today. snntorch runs one sample at a
time (its imported Flatten does not shift past the batch dimension), SpikingJelly the batch.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
from pathlib import Path

import nir
import numpy as np
import torch

from evsim.interop.nir import content_digest
from nir_peer_importers import import_snntorch, import_spikingjelly


def run_snntorch(path: Path, x: torch.Tensor) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):  # it prints whole arrays
        return np.concatenate([import_snntorch(nir.read(path), x[i:i + 1]).numpy() for i in range(len(x))])


def run_spikingjelly(path: Path, x: torch.Tensor) -> np.ndarray:
    return import_spikingjelly(nir.read(path), x).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("file", type=Path)
    ap.add_argument("inputs", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(args.inputs)["x"].astype(np.float32))
    outs = {"snntorch": run_snntorch(args.file, x), "spikingjelly": run_spikingjelly(args.file, x)}
    np.savez_compressed(args.out, **outs, file_digest=np.array(content_digest(args.file)))
    for name, o in outs.items():
        print(f"{name}: output {o.shape}, sum {o.sum():.6g}")


if __name__ == "__main__":
    main()
