"""``evsim convert``: an ANN (``evsim train --ann``) as a spiking network, by threshold balancing.

The method lives in evsim.training.convert; this module parses, loads and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evsim.cli.common import (
    seed_argument,
    add_data_arguments,
    add_device_argument,
    add_force_argument,
    check_output_file,
    add_model_argument,
    add_output_arguments,
    add_threads_argument,
    model_dataset,
    positive_float,
    positive_int,
    print_json,
    require_torch,
    torch_device,
)


def percentile(text: str) -> float:
    value = positive_float(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"must lie in (0, 100], got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert an ANN (evsim train --ann) into a spiking network (needs torch)",
        description="Convert an ANN model file into an ordinary evsim SNN: integrate-and-fire neurons with reset by "
        "subtraction, thresholds from the ANN's activations on training data (Rueckauer et al. 2017's robust "
        "percentile normalisation), the same input coding as the directly trained SNN.",
    )
    add_model_argument(p)
    add_data_arguments(p, dataset_help="dataset whose training split calibrates the thresholds", subset=False)
    p.add_argument("--out", type=Path, required=True, help="the converted model file to write (.npz)")
    add_force_argument(p)
    p.add_argument("--percentile", type=percentile, default=None, metavar="P",
                   help="percentile of each layer's non-zero activations that sets its scale (default 99.9; "
                        "100 is the layer-wise maximum)")
    p.add_argument("--timesteps", "-T", type=positive_int, default=None,
                   help="time steps of the converted model (default: the ANN's; recordings keep the ANN's step width)")
    p.add_argument("--calibration", type=positive_int, default=None, metavar="N",
                   help="training samples whose activations set the thresholds (default 1000, a fixed random subset)")
    seed_argument(p, "the calibration's input draws")
    add_threads_argument(p, default=None, what="torch CPU threads")
    add_device_argument(p)
    add_output_arguments(p, progress=False)
    p.set_defaults(func=run)


def run(args) -> int:
    require_torch("evsim convert")
    check_output_file(args.out, ".npz", args.force)
    from evsim.datasets.samples import default_root, load_samples
    from evsim.model.file import model_path, save_model
    from evsim.training.ann import load_ann
    from evsim.training.convert import DEFAULT_CALIBRATION, DEFAULT_PERCENTILE, Conversion, convert
    from evsim.training.trainer import configure_torch

    configure_torch(args.threads)
    device = torch_device(args.device, "evsim convert")
    conversion = Conversion(
        percentile=DEFAULT_PERCENTILE if args.percentile is None else args.percentile,
        timesteps=args.timesteps,
        calibration=args.calibration or DEFAULT_CALIBRATION,
        seed=args.seed,
    ).check()
    network = load_ann(args.model, device)
    args.dataset = model_dataset(args, network)
    if args.data is None:
        args.data = default_root(args.dataset)
    calibration = load_samples(args.dataset, args.data, "train", conversion.calibration, encoding=network.graph.encoding)
    graph, weights, scales = convert(network, calibration, conversion, name=model_path(args.model).stem)
    save_model(args.out, graph, weights)
    report = {
        "model": str(args.model),
        "out": str(args.out),
        "dataset": args.dataset,
        "data": str(args.data),
        "calibration_samples": len(calibration),
        "percentile": conversion.percentile,
        "timesteps": graph.timesteps,
        "populations": [{"name": pop.name, "kind": pop.kind, "scale": scales.get(pop.name),
                         "threshold": pop.threshold if pop.fires else None} for pop in graph.populations],
    }
    if args.json:
        print_json(report)
        return 0
    print(f"{args.model} -> {args.out}: IF neurons (leak 1), reset by subtraction, T={graph.timesteps}; scales are the "
          f"{conversion.percentile:g}th percentile of non-zero activations on {len(calibration)} {args.dataset} training samples")
    for row in report["populations"]:
        if row["threshold"] is not None:
            print(f"  {row['name']:<8} {row['kind']:<6} scale {row['scale']:.4f}  threshold {row['threshold']:.4f}")
    return 0
