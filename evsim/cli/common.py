"""Arguments and input plumbing shared by the subcommands that run a model on a dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from evsim.datasets.samples import DATASETS



def add_data_arguments(parser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: $EVSIM_DATA/<dataset> or ../shared/data/<dataset>)")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--limit", type=int, default=None, help="run a fixed subset of this many samples")


def load_split(args, network):
    """The requested split, encoded the way the model was trained."""
    from evsim.datasets.samples import default_root, load_samples, same_inputs
    from evsim.errors import InputError

    trained_on = network.graph.meta.get("dataset")
    if trained_on and not same_inputs(trained_on, args.dataset):
        raise InputError(f"model {args.model} was trained on {trained_on}, not {args.dataset}")
    root = args.data if args.data is not None else default_root(args.dataset)
    samples = load_samples(args.dataset, root, args.split, limit=args.limit, encoding=network.encoding)
    if tuple(samples.input_shape) != tuple(network.input_shape):
        raise InputError(f"{args.dataset} inputs are {samples.input_shape}, the model takes {network.input_shape}")
    return samples


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=_jsonable)
    sys.stdout.write("\n")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
