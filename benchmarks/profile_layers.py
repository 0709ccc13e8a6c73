"""Where the event engine spends its time: per-layer kernel time, synops and rate, one core.

    python benchmarks/profile_layers.py --model lenet-nmnist --split test --limit 28
    python benchmarks/profile_layers.py --model lenet-nmnist --split train --limit 100 --off firing

Runs each sample layer by layer exactly as ``Network.run`` does (step mode), timing every layer's
kernel call, and prints per layer: input events, synaptic operations, spikes, ms per sample,
and G synops/s. Data: real N-MNIST recordings from ``$EVSIM_DATA/nmnist``.

``--off leak`` or ``--off firing`` times each layer's kernel with that part switched off (no
lazy leak; no threshold test and firing) on the same input events, to show what the part costs;
the events passed on, and every count printed, come from an untimed normal run.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import evsim
from evsim.engine import kernels
from evsim.datasets.samples import default_root, load_samples
from evsim.model.graph import INPUT
from evsim.engine.step import Workspace, gather
from evsim.events import SpikeEvents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", default="lenet-nmnist")
    parser.add_argument("--data", default=None)
    parser.add_argument("--split", choices=("train", "test"), default="test")
    parser.add_argument("--limit", type=int, default=28)
    parser.add_argument("--off", choices=("leak", "firing"), help="time the kernels with this part switched off")
    args = parser.parse_args()
    network = evsim.load(args.model)
    samples = load_samples("nmnist", args.data or default_root("nmnist"), args.split, limit=args.limit, encoding=network.encoding)
    inputs = [network.encode(samples.events(i)) for i in range(len(samples))]
    network.run(inputs[0])  # compile or load the kernels
    ws = Workspace.allocate(network.layers, network.timesteps, network.dtype)
    seconds = np.zeros(len(network.layers))
    totals = np.zeros((len(network.layers), kernels.COUNTER_COLUMNS), dtype=np.int64)
    for events in inputs:
        queues = {INPUT: events}
        for i, layer in enumerate(network.layers):
            ev_offsets, ev_index, ev_sign = gather(queues, layer.sources)
            state = ws.states[i]

            def run(leak_table, log_leak, fires, counters):
                state.reset()
                return kernels.run_population_steps(
                    state.V, layer.unit, state.t_last, state.stamp, state.touched, state.carry, 0, leak_table,
                    log_leak, *layer.firing, fires, layer.projections, layer.weights, layer.routes,
                    ev_offsets, ev_index, ev_sign, ws.out_index[i], ws.out_count[i], ws.out_offsets[i], counters,
                )

            normal = (network._leak_tables[i], math.log(layer.neuron.leak), layer.neuron.fires)
            timed = {None: normal, "leak": (normal[0][:0], 0.0, layer.neuron.fires), "firing": (*normal[:2], False)}[args.off]
            start = time.thread_time()
            n_out = run(*timed, totals[i] if args.off is None else np.zeros_like(totals[i]))
            seconds[i] += time.thread_time() - start
            if args.off is not None:
                n_out = run(*normal, totals[i])
            queues[layer.name] = SpikeEvents(ws.out_offsets[i], ws.out_index[i][:n_out], ws.out_count[i][:n_out])
    n = len(inputs)
    off = f", {args.off} switched off in the timed runs" if args.off else ""
    print(f"{args.model}: {n} N-MNIST {args.split} recordings, step mode, one core (CPU time){off}")
    print(f"{'layer':<8} {'in events':>11} {'synops':>13} {'spikes':>10} {'ms/sample':>10} {'share':>7} {'G synops/s':>11}")
    for i, layer in enumerate(network.layers):
        ev, syn, _, spk = totals[i] / n
        ms = 1000 * seconds[i] / n
        print(f"{layer.name:<8} {ev:>11,.0f} {syn:>13,.0f} {spk:>10,.0f} {ms:>10.2f} {seconds[i] / seconds.sum():>7.1%} {syn / (ms / 1000) / 1e9 if ms else 0:>11.2f}")
    total_ms = 1000 * seconds.sum() / n
    print(f"{'total':<8} {'':>11} {totals[:, kernels.C_SYNOPS].sum() / n:>13,.0f} {'':>10} {total_ms:>10.2f} {'':>7} "
          f"{totals[:, kernels.C_SYNOPS].sum() / n / (total_ms / 1000) / 1e9:>11.2f}")


if __name__ == "__main__":
    main()
