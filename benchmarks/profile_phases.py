"""What one row-stepped convolution's step costs, phase by phase: marking, leak, adds, test and fire.

    python benchmarks/profile_phases.py --model lenet-nmnist --limit 100

Runs the first layer of the model (a convolution that steps by row masks, kernels._by_rows) over
real N-MNIST training recordings, spread over the digits, on one core (CPU time), with the
kernels' own pieces: marking alone (kernels._mark_rows), marking and leak (kernels._leak_chunks),
marking and adds (kernels._add_events), marking, leak and adds, and the whole layer
(kernels.run_population_steps: the same three, then the threshold test and firing). The
differences are what each phase costs; the adds are set against the bare scatter-add ceiling of
``evsim bench``. Data: ``$EVSIM_DATA/nmnist/Train``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from numba import njit

import evsim
from evsim.analysis.bench import _ceiling_kernel
from evsim.datasets.formats import read_events
from evsim.datasets.samples import default_root
from evsim.engine import kernels
from evsim.engine.step import Workspace, gather
from evsim.model.graph import INPUT


@njit(cache=False, nogil=True)
def _phases(V, t_last, leak_table, log_leak, projections, weights, routes, ev_offsets, ev_index, ev_sign,
            reached, chunk_row, chunk_bits, leak, add):
    """Every step's marking, then (if asked) the leak of the new pixels and the adds: the first
    half of kernels._step_rows, without the test."""
    V[:] = 0
    t_last[:] = 0
    geometry = kernels._geometry(projections[0])
    C, dst_w = projections[0, kernels.P_DST_C], projections[0, kernels.P_DST_W]
    done = 0
    for t in range(ev_offsets.shape[1] - 1):
        lo, hi = ev_offsets[0, t], ev_offsets[0, t + 1]
        n = kernels._mark_rows(geometry, ev_index, lo, hi, reached, chunk_row, chunk_bits, 0)
        if leak:
            done += kernels._leak_chunks(V, C, dst_w, chunk_row, chunk_bits, 0, n, t_last, t, leak_table, log_leak)
        if add:
            done += kernels._add_events(V, geometry, C, weights, routes, ev_index, ev_sign, lo, hi, V[:0], log_leak)
        reached[:] = 0
    return done


def recordings(root: Path, limit: int) -> list[Path]:
    """``limit`` training recordings spread evenly over the sorted files (so over the digits)."""
    files = sorted(root.joinpath("Train").rglob("*.bin"))
    return files[:: max(1, len(files) // limit)][:limit]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", default="lenet-nmnist")
    parser.add_argument("--data", type=Path, default=None, help="N-MNIST root (default $EVSIM_DATA/nmnist)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    network = evsim.load(args.model)
    layer = network.layers[0]
    if not kernels._by_rows(layer.projections, layer.unit, True):
        raise SystemExit(f"{layer.name} of {args.model} does not step by row masks")
    files = recordings(args.data or default_root("nmnist"), args.limit)
    queues = [gather({INPUT: network.encode(read_events(f)[0])}, layer.sources) for f in files]

    V = np.zeros(layer.size, dtype=network.dtype)
    t_last = np.zeros(layer.units, dtype=np.int64)
    rows = int(layer.projections[0, kernels.P_DST_H])
    reached = np.zeros(rows, dtype=np.uint64)
    chunk_row, chunk_bits = np.empty(layer.units + 1, dtype=np.int64), np.empty(layer.units + 1, dtype=np.uint64)
    table, log_leak = network._leak_tables[0], math.log(layer.neuron.leak)
    ws = Workspace.allocate(network.layers, network.timesteps, network.dtype)
    state = ws.states[0]

    def phases(leak: bool, add: bool):
        return lambda q: _phases(V, t_last, table, log_leak, layer.projections, layer.weights, layer.routes, *q,
                                 reached, chunk_row, chunk_bits, leak, add)

    def whole(q, counters=np.zeros(kernels.COUNTER_COLUMNS, dtype=np.int64)):
        state.reset()
        return kernels.run_population_steps(
            state.V, layer.unit, state.t_last, state.stamp, state.touched, state.carry, 0, table, log_leak,
            *layer.firing, True, layer.projections, layer.weights, layer.routes, *q,
            ws.out_index[0], ws.out_count[0], ws.out_offsets[0], counters)

    runs = {"marking": phases(False, False), "marking + leak": phases(True, False),
            "marking + adds": phases(False, True), "marking + leak + adds": phases(True, True),
            "the layer (+ test and fire)": whole}
    best = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            run(queues[0])
            start = time.thread_time()
            for q in queues:
                run(q)
            best[name] = min(best.get(name, math.inf), (time.thread_time() - start) / len(queues))
    counters = np.zeros(kernels.COUNTER_COLUMNS, dtype=np.int64)
    for q in queues:
        whole(q, counters)
    synops = counters[kernels.C_SYNOPS] / len(queues)
    rng = np.random.default_rng(0)
    cV, cW = np.zeros(23_120 + 250, dtype=np.float32), rng.standard_normal(65_536 + 250).astype(np.float32)
    bases, woffs = rng.integers(0, 23_120, 200_000), rng.integers(0, 65_536, 200_000)
    _ceiling_kernel(cV, cW, bases[:10], woffs[:10], 250)
    start = time.thread_time()
    ceiling = _ceiling_kernel(cV, cW, bases, woffs, 250) / (time.thread_time() - start)
    print(f"{args.model} {layer.name}: {len(queues)} N-MNIST training recordings, one core (CPU time), "
          f"{synops / 1e6:.2f} M synops per recording; scatter-add ceiling {ceiling / 1e9:.2f} G/s")
    for name, seconds in best.items():
        print(f"  {name:<28} {seconds * 1e3:6.3f} ms per recording")
    adds = best["marking + adds"] - best["marking"]
    print(f"  the adds alone {adds * 1e3:.3f} ms: {synops / adds / 1e9:.2f} G synops/s, "
          f"{synops / adds / ceiling:.0%} of the ceiling")


if __name__ == "__main__":
    main()
