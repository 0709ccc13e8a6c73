"""``evsim run``: event-driven inference over a dataset split, with every synaptic operation counted."""

from __future__ import annotations

import time

from evsim.analysis.inputs import sample_inputs
from evsim.cli.common import add_data_arguments, load_split, print_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="event-driven inference on a dataset: accuracy, synaptic operations, spikes, energy estimate",
    )
    p.add_argument("--model", required=True, help="model file (.npz from `evsim train`) or bundled model name")
    add_data_arguments(p)
    p.add_argument("--mode", choices=("step", "async"), default="step", help="time in steps (exact vs the dense model) or continuous µs")
    p.add_argument("--workers", type=int, default=2, help="threads running samples in parallel (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson input coding (static images)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(func=main)


def main(args) -> int:
    from tqdm import tqdm

    import evsim
    from evsim.engine.counting import Summary

    network = evsim.load(args.model)
    samples = load_split(args, network)
    summary = Summary()
    started = time.perf_counter()
    with tqdm(total=len(samples), desc=f"evsim run ({args.mode})", unit="sample", disable=None, leave=False) as bar:
        inputs = sample_inputs(samples, network, args.seed)
        for result, label in zip(network.run_many(inputs, workers=args.workers, mode=args.mode, progress=bar.update), samples.labels):
            summary.add(result, int(label))
    elapsed = time.perf_counter() - started
    report = run_report(summary, network, args, elapsed)
    if args.json:
        print_json(report)
    else:
        print_run_report(report)
    return 0


def run_report(summary, network, args, elapsed: float) -> dict:
    from evsim.engine.counting import energy_estimates

    n = summary.samples
    layers = [
        {
            "name": name,
            "synops": summary.layer_synops[name] / n,
            "spikes": summary.layer_spikes[name] / n,
            "neurons": summary.layer_neurons[name],
        }
        for name in summary.layer_synops
    ]
    synops = summary.synops / n
    ann_macs = summary.ann_macs / n
    dense_macs = summary.dense_macs / n
    return {
        "model": str(args.model),
        "dataset": args.dataset,
        "split": args.split,
        "mode": args.mode,
        "timesteps": network.timesteps,
        "samples": n,
        "accuracy": summary.accuracy,
        "input_events_per_sample": summary.input_events / n,
        "synops_per_sample": synops,
        "spikes_per_sample": summary.spikes / n,
        "dense_macs_per_sample": dense_macs,
        "ann_macs_per_sample": ann_macs,
        "energy_estimate": energy_estimates(synops, ann_macs, dense_macs),
        "samples_per_second": n / elapsed if elapsed > 0 else None,
        "seconds": elapsed,
        "layers": layers,
    }


def print_run_report(r: dict) -> None:
    acc = "n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %"
    print(f"model {r['model']}  ({r['dataset']} {r['split']}, {r['samples']} samples, T={r['timesteps']}, {r['mode']} mode)")
    print(f"accuracy            {acc}")
    print(f"input events/sample {r['input_events_per_sample']:,.0f}")
    print(f"synops/sample       {r['synops_per_sample']:,.0f}  (dense SNN MACs {r['dense_macs_per_sample']:,.0f}; ANN MACs {r['ann_macs_per_sample']:,.0f})")
    print(f"spikes/sample       {r['spikes_per_sample']:,.0f}")
    print(f"{'layer':<10} {'neurons':>9} {'spikes/sample':>14} {'synops/sample':>15}")
    for layer in r["layers"]:
        print(f"{layer['name']:<10} {layer['neurons']:>9,} {layer['spikes']:>14,.1f} {layer['synops']:>15,.0f}")
    for precision, e in r["energy_estimate"].items():
        print(
            f"energy estimate ({precision}, 45 nm): SNN {e['snn_event_driven_pj'] / 1e6:.3f} µJ vs ANN {e['ann_pj'] / 1e6:.3f} µJ"
            f" per sample ({e['ann_over_snn']:.1f}x)"
        )
    print(f"throughput          {r['samples_per_second']:.1f} samples/s")
