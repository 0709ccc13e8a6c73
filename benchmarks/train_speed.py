"""Training throughput of the dense trainer: layer-major vs the step-by-step loop.

    python benchmarks/train_speed.py --dataset mnist --timesteps 50 --threads 1
    python benchmarks/train_speed.py --dataset nmnist --timesteps 100 --threads 1

Runs LeNet training steps (forward, backward, SGD/Adam update; input encoding included) on real
samples and prints samples/s for both forwards. Data: the shared data folder when there is one,
else the small samples vendored in tests/data.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from evsim.datasets import data_root
from evsim.errors import EvsimError
from evsim.training.architectures import lenet
from evsim.datasets.samples import load_samples
from evsim.training.network import SpikingNetwork
from evsim.training.trainer import TrainConfig, make_optimizer, retain_freed_memory, run_epoch

VENDORED = Path(__file__).resolve().parent.parent / "tests" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--dataset", choices=("mnist", "nmnist"), default="mnist")
    parser.add_argument("--timesteps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=3, help="timed mini-batches per forward kind")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path)
    parser.add_argument("--plain-malloc", action="store_true",
                        help="leave glibc's malloc as it is (see trainer.retain_freed_memory)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.plain_malloc:
        retain_freed_memory()
    root = args.data or ((data_root() or VENDORED) / args.dataset)
    split = "train"
    try:
        samples = load_samples(args.dataset, root, split, limit=args.batch_size * (args.batches + 1))
    except EvsimError:  # the vendored N-MNIST sample is mostly Test/
        split = "test"
        samples = load_samples(args.dataset, root, split, limit=args.batch_size * (args.batches + 1))
    graph = lenet(samples.input_shape, args.timesteps)
    results = {"dataset": args.dataset, "timesteps": args.timesteps, "batch_size": args.batch_size,
               "threads": args.threads, "retain_freed_memory": not args.plain_malloc, "torch": torch.__version__}
    for kind in ("layer_major", "stepwise"):
        torch.manual_seed(0)
        network = SpikingNetwork(graph, dropout=0.2)
        optimizer, _ = make_optimizer(network, TrainConfig(
            "lenet", args.dataset, root, Path("unused"), 1, args.timesteps).resolved())
        rng = np.random.default_rng(0)
        warm = load_samples(args.dataset, root, split, limit=args.batch_size)
        run_epoch(network, warm, args.timesteps, args.batch_size, rng, optimizer, stepwise=kind == "stepwise")
        start = time.perf_counter()
        result = run_epoch(network, samples, args.timesteps, args.batch_size, rng, optimizer,
                           stepwise=kind == "stepwise")
        seconds = time.perf_counter() - start
        results[f"{kind}_samples_per_s"] = round(result.samples / seconds, 2)
        print(f"{kind:12s}: {result.samples} samples in {seconds:.1f} s = {result.samples / seconds:.2f} samples/s",
              flush=True)
    results["speedup"] = round(results["layer_major_samples_per_s"] / results["stepwise_samples_per_s"], 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
