"""``evsim run``: event-driven inference over a dataset split, with every synaptic operation counted."""

from __future__ import annotations

import time
from contextlib import closing

from evsim.cli.common import (
    seed_argument,
    add_data_arguments,
    add_model_argument,
    add_output_arguments,
    add_threads_argument,
    load_split,
    print_json,
    progress_disabled,
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="event-driven inference on a dataset: accuracy, synaptic operations, spikes, energy estimate",
        description="Run a model event-driven over a dataset split (by default the model's own dataset) and "
                    "report accuracy, synaptic operations and spikes per layer, the dense-equivalent MACs, an "
                    "energy estimate and the throughput.",
    )
    add_model_argument(p)
    add_data_arguments(p)
    p.add_argument("--mode", choices=("step", "async"), default="step",
                   help="step: the trained time steps, equal to the dense model (default); async: continuous time in µs")
    add_threads_argument(p)
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="run on a Ray cluster, one task of --threads threads per chunk of samples: local (Ray "
                        "started here) or the head's HOST:PORT, ray://HOST:PORT or auto (needs evsim[cluster])")
    seed_argument(p, "the Poisson input coding of static images")
    add_output_arguments(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from tqdm import tqdm

    import evsim
    from evsim.engine.counting import Summary

    network = evsim.load(args.model)
    samples = load_split(args, network)
    summary = Summary()
    started = time.perf_counter()
    dropped: dict[str, int] = {}
    read = 0
    with tqdm(total=len(samples), desc=f"evsim run ({args.mode})", unit="sample", disable=progress_disabled(args),
              leave=False) as bar:
        if args.cluster:
            from evsim.runtime.cluster import run_on_cluster

            results = run_on_cluster(network, samples, args.cluster, mode=args.mode, threads=args.threads,
                                     seed=args.seed, progress=bar.update)
        else:
            from evsim.runtime.inputs import sample_inputs

            inputs = sample_inputs(samples, network, args.seed)
            results = network.run_many(inputs, workers=args.threads, mode=args.mode, progress=bar.update)
        # closed on the way out, Ctrl-C included: a cluster's tasks are cancelled and Ray is shut
        # down here, not by the garbage collector at exit, after Ray's own exit handlers
        with closing(results):
            for result, label in zip(results, samples.labels):
                summary.add(result, int(label))
                read += result.window.read
                for reason, n in result.window.dropped.items():
                    dropped[reason] = dropped.get(reason, 0) + n
    elapsed = time.perf_counter() - started
    report = run_report(summary, network, args, elapsed)
    report["events_per_sample"] = read / summary.samples
    report["events_dropped"] = dropped
    report["cluster"] = args.cluster
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
            "neurons": summary.layer_neurons[name],
            "spikes_per_sample": summary.layer_spikes[name] / n,
            "synops_per_sample": summary.layer_synops[name] / n,
        }
        for name in summary.layer_synops
    ]
    synops = summary.synops / n
    ann_macs = summary.ann_macs / n
    dense_macs = summary.dense_macs / n
    return {
        "model": str(args.model),
        "dataset": args.dataset,
        "data": str(args.data),
        "split": args.split,
        "mode": args.mode,
        "batch": 1,
        "threads": args.threads,
        "timesteps": network.timesteps,
        "samples": n,
        "accuracy": summary.accuracy,
        "input_events_per_sample": summary.input_events / n,
        "synops_per_sample": synops,
        "spikes_per_sample": summary.spikes / n,
        "dense_macs_per_sample": dense_macs,
        "ann_macs_per_sample": ann_macs,
        "energy_estimate": energy_estimates(synops, ann_macs, dense_macs),
        "samples_per_s": n / elapsed if elapsed > 0 else None,
        "seconds": elapsed,
        "layers": layers,
    }


def print_run_report(r: dict) -> None:
    acc = "n/a" if r["accuracy"] is None else f"{100 * r['accuracy']:.2f} %"
    print(f"model {r['model']}  ({r['dataset']} {r['split']} from {r['data']}, {r['samples']} samples, T={r['timesteps']}, {r['mode']} mode)")
    print(f"accuracy            {acc}")
    dropped = ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in r["events_dropped"].items())
    print(f"input events/sample {r['input_events_per_sample']:,.0f} used of {r['events_per_sample']:,.0f} read"
          + (f" (dropped in all: {dropped})" if dropped else ""))
    print(f"synops/sample       {r['synops_per_sample']:,.0f}  (dense SNN MACs {r['dense_macs_per_sample']:,.0f}; ANN MACs {r['ann_macs_per_sample']:,.0f})")
    print(f"spikes/sample       {r['spikes_per_sample']:,.0f}")
    print(f"{'layer':<10} {'neurons':>9} {'spikes/sample':>14} {'synops/sample':>15}")
    for layer in r["layers"]:
        print(f"{layer['name']:<10} {layer['neurons']:>9,} {layer['spikes_per_sample']:>14,.1f} {layer['synops_per_sample']:>15,.0f}")
    for precision, e in r["energy_estimate"].items():
        print(
            f"energy estimate ({precision}, 45 nm): SNN {e['snn_event_driven_pj'] / 1e6:.3f} µJ vs ANN {e['ann_pj'] / 1e6:.3f} µJ"
            f" per sample ({e['ann_over_snn']:.1f}x)"
        )
    print(f"throughput          {r['samples_per_s']:.1f} samples/s (evsim {r['mode']} mode, batch 1, "
          f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}"
          + (f" per task on the Ray cluster {r['cluster']}, Ray's start included)" if r["cluster"] else ")"))
