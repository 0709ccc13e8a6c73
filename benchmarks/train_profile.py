"""Where a training step's time goes: torch's profiler over LeNet N-MNIST training as the sparse
models were trained (T = 100, batch 32, dropout 0.2, Adam, synops penalty 1e-7, event
augmentation, one thread), operators sorted by their own CPU time.

    python benchmarks/train_profile.py --data $EVSIM_DATA/nmnist --samples 64 > benchmarks/results/train_profile.txt
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from evsim.datasets.augment import EventAugment
from evsim.datasets.samples import load_samples
from evsim.training.architectures import lenet
from evsim.training.network import SpikingNetwork
from evsim.training.regularizers import ActivityPenalty
from evsim.training.trainer import TrainConfig, make_optimizer, retain_freed_memory, run_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--data", type=Path, required=True, help="N-MNIST folder")
    parser.add_argument("--samples", type=int, default=64, help="profiled training samples (default 64)")
    parser.add_argument("--rows", type=int, default=18)
    args = parser.parse_args()
    torch.set_num_threads(1)
    retain_freed_memory()
    samples = dataclasses.replace(load_samples("nmnist", args.data, "train", limit=args.samples),
                                  event_augment=EventAugment())
    graph = lenet(samples.input_shape, 100)
    torch.manual_seed(0)
    network = SpikingNetwork(graph, dropout=0.2)
    optimizer, _ = make_optimizer(network, TrainConfig("lenet", "nmnist", args.data, Path("unused"), 1, 100).resolved())
    penalty = ActivityPenalty(synops=1e-7).check(graph)
    rng = np.random.default_rng(0)
    run_epoch(network, load_samples("nmnist", args.data, "train", limit=32), 100, 32, rng, optimizer, penalty=penalty)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = run_epoch(network, samples, 100, 32, rng, optimizer, penalty=penalty)
    print(f"{result.samples} training samples, torch {torch.__version__}, 1 thread")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
