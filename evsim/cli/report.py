"""``evsim report``: the paper's spike-activity, latency and compute analyses for one model, as
report.md (+ report.json) and PNG figures."""

from __future__ import annotations

import argparse
import shlex

from evsim.cli.common import add_data_arguments, load_split


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
    p.add_argument("--model", required=True, help="model file (.npz from `evsim train`) or bundled model name")
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="folder for report.md, report.json and the figures")
    p.add_argument("--timesteps", type=timestep_list, default=None,
                   help="latencies T' to run, e.g. 10,20,50 (default: 10 %%-100 %% of the model's T; its T is always run)")
    p.add_argument("--workers", type=int, default=2, help="threads running samples in parallel (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson input coding (static images)")
    p.set_defaults(func=main)


def command_line(args) -> str:
    """The command that reproduces this report, rebuilt from the parsed arguments."""
    words = ["evsim", "report", "--model", str(args.model), "--dataset", args.dataset]
    if args.data is not None:
        words += ["--data", str(args.data)]
    words += ["--split", args.split]
    if args.limit is not None:
        words += ["--limit", str(args.limit)]
    if args.timesteps:
        words += ["--timesteps", ",".join(map(str, args.timesteps))]
    words += ["--seed", str(args.seed), "--out", str(args.out)]
    return shlex.join(words)


def main(args) -> int:
    from tqdm import tqdm

    import evsim
    from evsim.analysis.report import analyse, default_timesteps, pyplot, write_report

    pyplot()  # fail before the measurements, not after, when matplotlib is missing
    network = evsim.load(args.model)
    samples = load_split(args, network)
    steps = sorted(set(args.timesteps or default_timesteps(network.graph)) | {network.timesteps})
    with tqdm(total=len(samples) * len(steps), desc="evsim report", unit="sample", disable=None, leave=False) as bar:
        analysis = analyse(network, samples, steps, workers=args.workers, seed=args.seed, progress=bar.update)
    analysis["data"]["model"] = str(args.model)
    paths = write_report(analysis, args.out, command_line(args))
    d = analysis["data"]
    print(f"{d['dataset']} {d['split']}, {d['samples']} samples; latencies T' = {', '.join(map(str, steps))}")
    for row in analysis["latency"]:
        acc = "n/a" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f} %"
        print(f"  T'={row['timesteps']:<5} accuracy {acc:>7}   spikes/inference {row['spikes_per_inference']:>12,.0f}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0
