"""Training throughput of the dense trainer: layer-major vs the step-by-step loop (plain
PyTorch, one conv/linear call per step), and what issue 12's sparse training adds to it.

    python benchmarks/train_speed.py --dataset mnist --timesteps 50 --threads 1
    python benchmarks/train_speed.py --dataset nmnist --timesteps 100 --threads 1

Runs LeNet training steps (forward, backward, SGD/Adam update; input encoding included) on real
samples and prints samples/s for: the layer-major forward; the same with the synops penalty of
``--synops-penalty`` (default 1e-7) and, for N-MNIST, ``--augment``'s event augmentation, as
the sparse models were trained; the same with the firing recurrence as the torch loop instead of
evsim.training.recurrence's Numba kernels (identical results; the kernels' gain); and the
step-by-step loop. Data: the shared data folder when there is one,
else the small samples bundled in the repository.

With ``--profile`` it runs the sparse configuration alone under torch's profiler and prints its
operators sorted by their own CPU time (where a training step's time goes)::

    python benchmarks/train_speed.py --dataset nmnist --timesteps 100 --batches 1 --profile > benchmarks/results/train_profile.txt
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # before numba starts: OpenMP fights torch

import argparse
import contextlib
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from evsim.datasets import data_root
from evsim.datasets.augment import EventAugment
from evsim.datasets.samples import load_samples
from evsim.errors import EvsimError
from evsim.training.architectures import lenet
from evsim.training.network import SpikingNetwork
from evsim.training.neurons import torch_recurrence
from evsim.training.regularizers import ActivityPenalty
from evsim.training.trainer import TrainConfig, make_optimizer, retain_freed_memory, run_epoch

REPO = Path(__file__).resolve().parent.parent
VENDORED = {"mnist": REPO / "tests" / "data" / "mnist", "nmnist": REPO / "evsim" / "data" / "nmnist"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--dataset", choices=("mnist", "nmnist"), default="mnist")
    parser.add_argument("--timesteps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3, help="timed mini-batches per forward kind")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="time every kind this many times, in alternating order, and report the medians")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--profile", action="store_true",
                        help="profile the sparse configuration with torch's profiler instead of timing every kind")
    parser.add_argument("--rows", type=int, default=18, help="operators --profile prints (default 18)")
    parser.add_argument("--plain-malloc", action="store_true",
                        help="leave glibc's malloc as it is (see trainer.retain_freed_memory)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.plain_malloc:
        retain_freed_memory()
    root = args.data or (data_root() / args.dataset if data_root() else VENDORED[args.dataset])
    split = "train"
    try:
        samples = load_samples(args.dataset, root, split, limit=args.batch_size * (args.batches + 1))
    except EvsimError:  # the vendored N-MNIST sample is mostly Test/
        split = "test"
        samples = load_samples(args.dataset, root, split, limit=args.batch_size * (args.batches + 1))
    graph = lenet(samples.input_shape, args.timesteps)
    results = {"dataset": args.dataset, "timesteps": args.timesteps, "batch_size": args.batch_size,
               "threads": args.threads, "retain_freed_memory": not args.plain_malloc, "torch": torch.__version__}
    sparse = ActivityPenalty(synops=1e-7).check(graph)
    augmented = dataclasses.replace(samples, event_augment=EventAugment()) if args.dataset == "nmnist" else samples
    kinds = ("layer_major", "layer_major_sparse", "layer_major_sparse_torch_recurrence", "stepwise")
    if args.profile:
        time_kind("layer_major_sparse", args, graph, root, split, samples, augmented, sparse)
        return
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_ in range(args.rounds):  # alternating order, so that machine noise falls on every kind alike
        for kind in kinds if round_ % 2 == 0 else kinds[::-1]:
            rate = time_kind(kind, args, graph, root, split, samples, augmented, sparse)
            rates[kind].append(rate)
            print(f"round {round_ + 1} {kind}: {rate:.2f} samples/s", flush=True)
    for kind in kinds:
        results[f"{kind}_samples_per_s"] = round(statistics.median(rates[kind]), 2)
    results["speedup"] = round(results["layer_major_samples_per_s"] / results["stepwise_samples_per_s"], 2)
    results["sparse_training_cost"] = round(results["layer_major_samples_per_s"] / results["layer_major_sparse_samples_per_s"], 2)
    results["recurrence_kernels_speedup"] = round(
        results["layer_major_sparse_samples_per_s"] / results["layer_major_sparse_torch_recurrence_samples_per_s"], 2)
    print(json.dumps(results))


def time_kind(kind, args, graph, root, split, samples, augmented, sparse) -> float:
    """Training samples/s of one kind: a fresh seeded network, one untimed warm-up batch, then the timed ones."""
    torch.manual_seed(0)
    network = SpikingNetwork(graph, dropout=0.2)
    optimizer, _ = make_optimizer(network, TrainConfig(
        "lenet", args.dataset, root, Path("unused"), 1, args.timesteps).resolved())
    rng = np.random.default_rng(0)
    warm = load_samples(args.dataset, root, split, limit=args.batch_size)
    penalty = sparse if kind.startswith("layer_major_sparse") else ActivityPenalty()
    timed = augmented if kind.startswith("layer_major_sparse") else samples
    recurrence = torch_recurrence() if kind.endswith("torch_recurrence") else contextlib.nullcontext()
    with recurrence:
        run_epoch(network, warm, args.timesteps, args.batch_size, rng, optimizer, stepwise=kind == "stepwise",
                  penalty=penalty)
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) if args.profile else contextlib.nullcontext() as prof:
            result = run_epoch(network, timed, args.timesteps, args.batch_size, rng, optimizer,
                               stepwise=kind == "stepwise", penalty=penalty)
        seconds = time.perf_counter() - start
    if args.profile:
        print(f"{result.samples} training samples, {args.dataset}, T = {args.timesteps}, torch {torch.__version__}, "
              f"{args.threads} thread(s)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return result.samples / seconds


if __name__ == "__main__":
    main()
