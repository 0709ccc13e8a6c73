"""A/B of whole training epochs: the firing recurrence as Numba kernels vs as the torch loop.

    python benchmarks/train_epoch_ab.py --threads 2 --rounds 4

Each round trains one small N-MNIST epoch per path, in alternating order, exactly as ``evsim train``
does (``training.trainer.train``: data loading, augmentation, simulated recordings drawn and
simulated, the synops penalty, Adam, the checkpoint), and reads the epoch's ``train_seconds``.
Both paths give identical results (tests/test_training_recurrence.py), so only the time differs.
Data: ``--data`` or ``$EVSIM_DATA/nmnist`` (real recordings) and ``$EVSIM_DATA/mnist`` (for the
simulated ones).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # before numba starts: OpenMP fights torch

import argparse
import contextlib
import json
import statistics
import tempfile
from pathlib import Path

from evsim.datasets import data_root
from evsim.training.neurons import torch_recurrence
from evsim.training.regularizers import ActivityPenalty
from evsim.training.trainer import TrainConfig, configure_torch, train


def epoch_parser(doc: str) -> argparse.ArgumentParser:
    """The options of the small N-MNIST epoch that the epoch A/Bs time (also benchmarks/train_epoch_checkouts.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--data", type=Path, help="real N-MNIST recordings (default: $EVSIM_DATA/nmnist)")
    parser.add_argument("--simulated-data", type=Path, help="the MNIST folder simulated from (default: $EVSIM_DATA/mnist)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--real", type=int, default=96, help="real training recordings per epoch (default 96)")
    parser.add_argument("--simulated", type=int, default=96, help="simulated ones per epoch (default 96)")
    parser.add_argument("--timesteps", type=int, default=100)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = epoch_parser(__doc__)
    args = parser.parse_args(argv)
    configure_torch(args.threads)
    if args.data is None and data_root() is None:
        parser.error("needs --data (and --simulated-data) or $EVSIM_DATA")
    data = args.data or data_root() / "nmnist"
    seconds: dict[str, list[float]] = {"kernels": [], "torch_loop": []}
    with tempfile.TemporaryDirectory() as scratch:
        for round_ in range(args.rounds):
            for path in ("kernels", "torch_loop") if round_ % 2 == 0 else ("torch_loop", "kernels"):
                config = TrainConfig(
                    arch="lenet", dataset="nmnist", data=data, out=Path(scratch) / f"{path}.npz", epochs=1,
                    timesteps=args.timesteps, optimizer="adam", lr=1e-3, augment=True, limit=args.real,
                    mix_simulated=args.simulated, simulated_data=args.simulated_data, test_limit=4, seed=round_,
                    penalty=ActivityPenalty(synops=1e-7))
                with torch_recurrence() if path == "torch_loop" else contextlib.nullcontext():
                    history = train(config, log=lambda line: None, progress=False)
                seconds[path].append(history[0]["train_seconds"])
                print(f"round {round_ + 1} {path}: {seconds[path][-1]:.1f} s", flush=True)
    medians = {path: statistics.median(values) for path, values in seconds.items()}
    print(json.dumps({"threads": args.threads, "samples_per_epoch": args.real + args.simulated,
                      "timesteps": args.timesteps, "median_train_seconds": medians,
                      "kernels_speedup": round(medians["torch_loop"] / medians["kernels"], 2),
                      "train_seconds": seconds}))


if __name__ == "__main__":
    main()
