"""``evsim eval``: the dense (torch) accuracy of a trained model file on a dataset split."""

from __future__ import annotations

import json
from pathlib import Path

from evsim.datasets.samples import DATASETS
from evsim.errors import InputError



def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="accuracy of a model file, simulated densely with torch",
        description="Run a trained evsim model file clock-driven (torch) over a dataset split and "
        "print its accuracy.",
    )
    p.add_argument("--model", type=Path, required=True, help="evsim model file (.npz)")
    p.add_argument("--dataset", choices=DATASETS, help="default: the dataset the model was trained on")
    p.add_argument("--data", type=Path, help="dataset folder (default: the data root's <dataset>/)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--limit", type=int, help="a fixed random subset of N samples")
    p.add_argument("--timesteps", "-T", type=int, help="default: the model's own")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="seed of the Poisson input spikes")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from evsim.datasets.samples import default_root, load_samples
    from evsim.training.network import load_trained
    from evsim.training.trainer import configure_torch, evaluate

    configure_torch(args.threads)
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    network = load_trained(args.model, device)
    graph = network.graph
    dataset = args.dataset or graph.meta.get("dataset")
    if dataset is None:
        raise InputError("the model does not record its dataset; pass --dataset")
    timesteps = args.timesteps or graph.timesteps
    if timesteps < 1:
        raise InputError(f"--timesteps must be positive, got {timesteps}")
    encoding = graph.encoding or None
    samples = load_samples(dataset, args.data or default_root(dataset), args.split, args.limit, encoding=encoding)
    if tuple(samples.input_shape) != tuple(graph.input_shape):
        raise InputError(f"{dataset} inputs are {list(samples.input_shape)}, the model takes {list(graph.input_shape)}")
    result = evaluate(network, samples, timesteps, args.batch_size, args.seed, progress=not (args.no_progress or args.json))
    report = {
        "model": str(args.model),
        "arch": graph.meta.get("arch"),
        "dataset": dataset,
        "split": args.split,
        "samples": result.samples,
        "accuracy": result.accuracy,
        "loss": result.loss,
        "timesteps": timesteps,
        "seconds": result.seconds,
        "samples_per_second": result.samples_per_second,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.model}: {dataset} {args.split}, {result.samples} samples, T={timesteps}: "
              f"accuracy {100 * result.accuracy:.2f}% (loss {result.loss:.4f}, {result.samples_per_second:.1f} samples/s)")
    return 0
