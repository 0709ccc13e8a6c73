"""``evsim report``: the paper's spike-activity, latency and compute analyses for one model, as
report.md (+ report.json) and PNG figures."""

from __future__ import annotations

import argparse
import json
import shlex

from pathlib import Path

from evsim.cli.common import (
    seed_argument,
    add_data_arguments,
    add_model_argument,
    add_output_arguments,
    add_threads_argument,
    fraction,
    load_split,
    print_json,
    progress_disabled,
)
from evsim.errors import InputError


def timestep_list(text: str) -> list[int]:
    try:
        steps = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"time steps must be positive whole numbers, got {text!r}")
    return steps


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="spike activity per layer, accuracy vs latency vs spikes, compute and energy estimate: report.md + PNGs",
        description="Measure the paper's section 5 analyses (fig. 9-11, tables 8-9) for one model with the event "
        "engine and write report.md, report.json and PNG figures (needs matplotlib: the 'plot' extra).",
    )
    add_model_argument(p, required=False)
    p.add_argument("--compare", nargs="+", metavar="MODEL",
                   help="instead of --model: several models side by side on the same inputs (e.g. a direct-trained "
                        "SNN, a converted SNN and its ANN): accuracy vs time steps, spikes and time steps at "
                        "iso-accuracy and at maximum accuracy, operations and energy vs the ANN, spikes per layer")
    p.add_argument("--iso-accuracy", type=fraction, default=None, metavar="A",
                   help="with --compare: the accuracy (0-1) at which spikes and time steps are compared (default: the "
                        "highest accuracy of the first spiking model given)")
    add_data_arguments(p)
    p.add_argument("--out", type=Path, required=True,
                   help="folder for report.md, report.json and the figures (created; may exist, not as a file)")
    p.add_argument("--latencies", type=timestep_list, default=None, metavar="T1,T2,...",
                   help="latencies T' in time steps to run, e.g. 10,20,50 (default: 10 %%-100 %% of the model's T; "
                        "its T is always run)")
    add_threads_argument(p)
    seed_argument(p, "the Poisson input coding of static images")
    add_output_arguments(p)
    p.set_defaults(func=main)


def command_line(args) -> str:
    """The command that reproduces this report, rebuilt from the parsed arguments."""
    models = ["--compare", *map(str, args.compare)] if args.compare else ["--model", str(args.model)]
    words = ["evsim", "report", *models, "--dataset", args.dataset]
    if args.data is not None:
        words += ["--data", str(args.data)]
    words += ["--split", args.split]
    if args.limit is not None:
        words += ["--limit", str(args.limit)]
    if args.latencies:
        words += ["--latencies", ",".join(map(str, args.latencies))]
    if args.iso_accuracy is not None:
        words += ["--iso-accuracy", str(args.iso_accuracy)]
    words += ["--seed", str(args.seed), "--out", str(args.out)]
    return shlex.join(words)


def main(args) -> int:
    from tqdm import tqdm

    import evsim
    from evsim.analysis.report import analyse, default_timesteps, pyplot, write_report

    # fail before the measurements, not after: matplotlib missing, or --out not a folder
    pyplot()
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out} is a file; name a folder (it is created if missing)")
    if args.compare:
        if args.model is not None:
            raise InputError("give either --model MODEL or --compare MODEL MODEL ..., not both")
        return compare_main(args)
    if args.model is None:
        raise InputError("give --model MODEL, or --compare MODEL MODEL ... to compare several")
    if args.iso_accuracy is not None:
        raise InputError("--iso-accuracy goes with --compare")
    network = evsim.load(args.model)
    samples = load_split(args, network)
    steps = sorted(set(args.latencies or default_timesteps(network.graph)) | {network.timesteps})
    with tqdm(total=len(samples) * len(steps), desc="evsim report", unit="sample", disable=progress_disabled(args),
              leave=False) as bar:
        analysis = analyse(network, samples, steps, workers=args.threads, seed=args.seed, progress=bar.update)
    analysis["data"]["model"] = str(args.model)
    analysis["data"]["data"] = str(args.data)
    paths = write_report(analysis, args.out, command_line(args))
    if args.json:
        print_written_json(paths)
        return 0
    d = analysis["data"]
    print(f"{d['dataset']} {d['split']}, {d['samples']} samples; latencies T' = {', '.join(map(str, steps))}")
    for row in analysis["latency"]:
        acc = "n/a" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f} %"
        print(f"  T'={row['timesteps']:<5} accuracy {acc:>7}   spikes/inference {row['spikes_per_inference']:>12,.0f}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0


def print_written_json(paths: dict) -> None:
    """report.json as written (non-finite values made null there), plus where the files are."""
    print_json({**json.loads(paths["json"].read_text()), "files": {name: str(path) for name, path in paths.items()}})


def compare_main(args) -> int:
    """``--compare``: the models side by side (evsim.analysis.compare) on one split, loaded once
    per model's encoding with the dataset checks of a single report."""
    from types import SimpleNamespace

    from tqdm import tqdm

    from evsim.analysis.compare import compare, write_comparison

    if args.iso_accuracy is not None and not 0.0 < args.iso_accuracy <= 1.0:
        raise InputError(f"--iso-accuracy is a fraction in (0, 1], got {args.iso_accuracy}")

    def samples_for(name, graph):
        named = SimpleNamespace(**{**vars(args), "model": name})
        samples = load_split(named, SimpleNamespace(graph=graph, encoding=graph.encoding, input_shape=graph.input_shape))
        args.dataset, args.data = named.dataset, named.data  # the first model's dataset holds for the rest
        return samples

    with tqdm(desc="evsim report --compare", unit="sample", disable=progress_disabled(args), leave=False) as bar:
        result = compare(args.compare, samples_for, args.latencies, workers=args.threads, seed=args.seed,
                         progress=bar.update, iso_accuracy=args.iso_accuracy)
    result["data"]["data"] = str(args.data)
    paths = write_comparison(result, args.out, command_line(args))
    if args.json:
        print_written_json(paths)
        return 0
    d = result["data"]
    print(f"{d['dataset']} {d['split']}, {d['samples']} samples, the same inputs for every model")
    for entry in result["models"]:
        if entry["kind"] == "ann":
            print(f"  {entry['model']} (ANN): accuracy {100 * entry['accuracy']:.2f} %")
            continue
        s = entry["summary"]
        iso = (f"iso-accuracy at T'={s['iso_accuracy_timesteps']} ({s['iso_accuracy_spikes']:,.0f} spikes)"
               if s["iso_accuracy_timesteps"] is not None else "iso-accuracy not reached")
        print(f"  {entry['model']} ({entry['kind']}): max accuracy {100 * s['max_accuracy']:.2f} % at "
              f"T'={s['max_accuracy_timesteps']} ({s['max_accuracy_spikes']:,.0f} spikes per image); {iso}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0
