"""The vocabulary every subcommand shares: argument types, the model/data/output arguments, and
the input plumbing of the commands that run a model on a dataset.

One word, one meaning across commands: ``--threads`` are threads in this process, ``--workers``
are processes; ``--json`` prints one JSON object and nothing else on stdout; ``--no-progress``
hides the progress bars (they go to stderr, and only on a terminal anyway); ``--dataset``
defaults to the dataset the model records, ``--data`` to :func:`evsim.datasets.samples.default_root`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

from evsim.datasets.samples import DATASETS
from evsim.errors import InputError, require

DEFAULT_THREADS = 2


# --- argument types -----------------------------------------------------------------------


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts: threads, rounds, samples, time steps, epochs)."""
    return _whole_number(text, least=1)


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (seeds)."""
    return _whole_number(text, least=0)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < least:
        bound = "0 or more" if least == 0 else f"at least {least}"
        raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, widths)."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (penalties, momentum, weight decay, degrees)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def scale_factor(text: str) -> float:
    """A factor in (0, 1] (``--downsample``)."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1] (accuracies)."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def seed_argument(parser, what: str) -> None:
    """``--seed``: a whole number >= 0 (numpy's generators refuse negative seeds)."""
    parser.add_argument("--seed", type=non_negative_int, default=0, help=f"seed of {what} (default 0)")


def sample_range(text: str) -> int | tuple[int, int]:
    """``--limit`` of training: N (a fixed random subset) or START:STOP (a slice of the same fixed
    order, e.g. the samples a shorter ``--limit`` left out)."""
    if ":" not in text:
        return positive_int(text)
    start, _, stop = text.partition(":")
    try:
        first, end = int(start), int(stop)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or START:STOP, got {text!r}") from None
    if not 0 <= first < end:
        raise argparse.ArgumentTypeError(f"START:STOP needs 0 <= START < STOP, got {text!r}")
    return first, end


# --- shared arguments ---------------------------------------------------------------------


def add_model_argument(parser, required: bool = True, default=None) -> None:
    parser.add_argument(
        "--model", required=required, default=default,
        help="model file (.npz written by `evsim train`) or the name of a bundled model "
             "(lenet-nmnist, lenet-mnist; lenet-mnist-ann, an ANN, for evsim eval and convert)" + (f"; default {default}" if default else ""),
    )


def add_data_arguments(parser, limit_default: int | None = None, dataset_help: str = "dataset to run on",
                       subset: bool = True) -> None:
    """``--dataset`` and ``--data``; with ``subset``, also ``--split`` and ``--limit``."""
    parser.add_argument("--dataset", choices=DATASETS, default=None,
                        help=f"{dataset_help} (default: the one the model was trained on)")
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset folder (default: $EVSIM_DATA/<dataset> or ../shared/data/<dataset> when it "
                             "exists; for nmnist otherwise the recordings bundled with evsim)")
    if not subset:
        return
    parser.add_argument("--split", choices=("test", "train"), default="test", help="dataset split (default test)")
    parser.add_argument("--limit", type=positive_int, default=limit_default,
                        help="run a fixed random subset of this many samples"
                             + (f" (default {limit_default})" if limit_default else " (default: all)"))


def add_threads_argument(parser, default: int | None = DEFAULT_THREADS, what: str = "threads running samples in parallel") -> None:
    shown = f"default {default}" if default is not None else "default: torch's choice"
    parser.add_argument("--threads", type=positive_int, default=default, metavar="N", help=f"{what} ({shown})")


def add_device_argument(parser) -> None:
    """``--device`` of the commands that run torch (checked by :func:`torch_device`)."""
    parser.add_argument("--device", help="torch device: cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)")


def add_output_arguments(parser, progress: bool = True) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of text")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (they go to stderr, and only on a terminal)" if progress
                        else "accepted by every command; this one shows no progress")


def progress_disabled(args) -> bool | None:
    """tqdm's ``disable``: off on request or with --json, else only on a terminal (None)."""
    return True if (args.no_progress or args.json) else None


def show_progress(args) -> bool:
    """Whether to draw progress bars: not on request or with --json, and only on a terminal."""
    return progress_disabled(args) is None and sys.stderr.isatty()


# --- outputs ------------------------------------------------------------------------------


def add_force_argument(parser, what: str = "model file") -> None:
    parser.add_argument("--force", action="store_true", help=f"replace --out when the {what} exists")


def check_output_file(path: Path, suffix: str, force: bool, what: str = "model file", keep: str = "") -> Path:
    """``--out`` checked before any work, so that none is lost at the end: a file (not a folder)
    with ``suffix``, in a folder that can be created, replaced only with ``--force``.

    ``keep`` names the other way to treat an existing file (train's ``--resume``)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"--out {path} is a folder; give the {what} to write, e.g. {path / ('model' + suffix)}")
    if path.suffix.lower() != suffix:
        raise InputError(f"--out {path}: a {what} is written; name it with the suffix {suffix} (e.g. {path.with_suffix(suffix)})")
    if path.exists() and not force:
        raise InputError(f"--out {path} exists; pass --force to replace it{keep}")
    folder = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not folder.is_dir():
        raise InputError(f"--out {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--out {path}: {folder} is not writable")
    return path


# --- the model's own data -------------------------------------------------------------------


def model_dataset(args, network) -> str:
    """``--dataset``, or the dataset the model records; refuses a dataset of other inputs."""
    from evsim.datasets.samples import same_inputs

    trained_on = network.graph.meta.get("dataset")
    dataset = args.dataset or trained_on
    if dataset is None:
        raise InputError(f"model {args.model} does not record its dataset; pass --dataset")
    if trained_on and not same_inputs(trained_on, dataset):
        raise InputError(f"model {args.model} was trained on {trained_on}, not {dataset}")
    return dataset


def load_split(args, network):
    """The requested split of the model's dataset, encoded the way the model was trained.

    Sets ``args.dataset`` and ``args.data`` to what was used, for the report.
    """
    from evsim.datasets.samples import default_root, load_samples

    args.dataset = model_dataset(args, network)
    if args.data is None:
        args.data = default_root(args.dataset)
    samples = load_samples(args.dataset, args.data, args.split, limit=args.limit, encoding=network.encoding)
    if tuple(samples.input_shape) != tuple(network.input_shape):
        raise InputError(f"{args.dataset} inputs are {samples.input_shape}, the model takes {network.input_shape}")
    announce_simulation(args, samples)
    return samples


def announce_simulation(args, samples) -> None:
    """Simulated recordings cost minutes: say so on stderr (even with --no-progress) before the work."""
    from evsim.datasets.samples import SIMULATED

    if args.dataset in SIMULATED:
        print(f"evsim {args.command}: simulating {len(samples):,} {SIMULATED[args.dataset]}-like recordings from the "
              f"digits in {args.data} ({args.dataset}, evsim.datasets.saccades; minutes for thousands): --limit N "
              f"simulates fewer, --dataset {SIMULATED[args.dataset]} runs real recordings", file=sys.stderr, flush=True)


# --- torch, for the commands that run the dense model ------------------------------------


def require_torch(purpose: str):
    return require("torch", "train", purpose)


def torch_device(name: str | None, purpose: str) -> str:
    """A torch device this machine has: ``name`` checked, or cuda when available, else cpu."""
    torch = require_torch(purpose)
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"--device {name!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch" if torch.version.cuda is None else "no visible GPU"
            raise InputError(f"--device {name}: this machine has {build}; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices (0 .. {torch.cuda.device_count() - 1})")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise InputError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise InputError(f"--device {name!r}: evsim runs torch on cpu, cuda or mps")
    return str(device)


# --- output -------------------------------------------------------------------------------


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=_jsonable)
    sys.stdout.write("\n")


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
