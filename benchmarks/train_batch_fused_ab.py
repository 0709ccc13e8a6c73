"""A/B in one process: the trainer's fused kernels (DroppedFiring, FiringIntoPool) against
FiringRecurrence followed by torch's separate ``* mask``, ``sum(0)`` and ``avg_pool2d``
(``network.unfused()``), one LeNet N-MNIST mini-batch at a time, alternating.

    python benchmarks/train_batch_fused_ab.py --threads 2 --pairs 8

Both give the same bits (tests/test_training_recurrence.py); only the time differs. Each pair times
one training step (forward, loss with the synops penalty, backward, Adam) of each kind on the same
mini-batch, in alternating order, so that a shared machine's noise, which drifts over minutes,
falls on both alike; reported are the medians of wall and process CPU seconds per step and the
median of the pairs' ratios. Data: the shared data folder, else the recordings bundled with evsim.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # before numba starts: OpenMP fights torch

import argparse
import contextlib
import json
import statistics
import time

import numpy as np
import torch

from evsim.datasets import data_root
from evsim.datasets.samples import default_root, load_samples
from evsim.training.architectures import lenet
from evsim.training.network import SpikingNetwork, unfused
from evsim.training.regularizers import ActivityPenalty, fan_outs, penalty_sum, synops_per_sample
from evsim.training.trainer import configure_torch, loss_sum


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--timesteps", type=int, default=100)
    args = parser.parse_args(argv)
    configure_torch(args.threads)
    root = data_root() / "nmnist" if data_root() else default_root("nmnist")
    split = "train" if (root / "Train").is_dir() else "test"
    samples = load_samples("nmnist", root, split, limit=args.batch_size)
    graph = lenet(samples.input_shape, args.timesteps)
    torch.manual_seed(0)
    network = SpikingNetwork(graph, dropout=0.2)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    inputs = torch.from_numpy(samples.inputs(np.arange(len(samples)), args.timesteps, np.random.default_rng(0)))
    labels = torch.from_numpy(samples.labels)
    fans = fan_outs(graph, torch.float32)
    penalty = ActivityPenalty(synops=1e-7)

    def step(kind: str) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        with unfused() if kind == "unfused" else contextlib.nullcontext():
            activity: dict = {}
            output = network(inputs, activity=activity)
            objective = loss_sum(output, labels) + penalty_sum(penalty, synops_per_sample(inputs, activity, fans),
                                                               activity)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
        return time.perf_counter() - wall, time.process_time() - cpu

    step("fused"), step("unfused")  # compile or load the kernels
    times: dict[str, list[tuple[float, float]]] = {"fused": [], "unfused": []}
    for pair in range(args.pairs):
        for kind in ("fused", "unfused") if pair % 2 == 0 else ("unfused", "fused"):
            times[kind].append(step(kind))
        print(f"pair {pair + 1}: fused {times['fused'][-1][0]:.2f} s, unfused {times['unfused'][-1][0]:.2f} s", flush=True)
    median = {kind: {"wall": round(statistics.median(w for w, _ in values), 3),
                     "cpu": round(statistics.median(c for _, c in values), 3)} for kind, values in times.items()}
    ratios = {key: round(statistics.median(u[i] / f[i] for f, u in zip(times["fused"], times["unfused"])), 3)
              for i, key in enumerate(("wall", "cpu"))}
    print(json.dumps({"threads": args.threads, "batch_size": len(samples), "timesteps": args.timesteps,
                      "median_seconds_per_step": median, "median_pair_ratio_unfused_over_fused": ratios,
                      "steps": {kind: [[round(w, 3), round(c, 3)] for w, c in values] for kind, values in times.items()}}))


if __name__ == "__main__":
    main()
