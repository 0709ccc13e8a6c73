"""Beyond one process: `evsim run` on a local Ray cluster of 1 and 2 workers, and `evsim train`
on 1 and 2 DDP ranks (torchrun, gloo), on this machine; and, from the measured per-core rate, the
expected time for all 70,000 N-MNIST recordings on N nodes.

(a) Ray: the same N-MNIST recordings through ``lenet-nmnist`` in step mode, with
    evsim.runtime.cluster.run_on_cluster on a local Ray of ``w`` CPUs, one thread per task (so
    ``w`` worker processes), and, for reference, in this process with Network.run_many on ``w``
    threads. Ray's start and each worker's first task (numba cache load, building the network)
    are outside the timing; the Ray start is reported beside it. The workers run at nice 0 like
    this process (``RAY_worker_niceness``; Ray's default, 15, yields to every other process).
(b) DDP: ``torchrun --nproc-per-node R -m evsim.cli train ... --distributed --threads 1`` for one
    epoch; the rate is the epoch's training samples over its training seconds (rank 0's clock).
    ``R = 0`` is the plain single-process trainer, for the DDP overhead.
(c) On paper: 70,000 recordings / (per-core rate x cores per node x nodes): linear scaling, since
    the samples are independent and a task costs milliseconds against seconds of work per chunk
    (the 2-worker efficiency measured in (a) is printed beside it: this machine's 2 cores are
    shared, so it says more about the machine than about Ray).

    python benchmarks/cluster_scaling.py            # a few minutes on 2 cores
    python benchmarks/cluster_scaling.py --quick    # tiny settings

Writes ``--json`` (default benchmarks/results/cluster.json) and prints the tables.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # before numba starts: OpenMP fights torch

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NMNIST_RECORDINGS = 70_000  # the official training (60,000) and test (10,000) sets


def load_recordings(limit: int):
    import evsim
    from evsim.datasets.samples import default_root, load_samples

    network = evsim.load("lenet-nmnist")
    root = default_root("nmnist")
    split = "train" if (root / "Train").is_dir() and len(list((root / "Train").rglob("*.bin"))) >= limit else "test"
    samples = load_samples("nmnist", root, split, limit=limit, encoding=network.encoding)
    return network, samples, f"{root} ({split}, {len(samples)} recordings)"


def ray_rates(network, samples, workers: int) -> dict:
    import ray

    from evsim.runtime.cluster import run_on_cluster, start_local

    # Ray runs its workers at nice 15; this process, to which they are compared, runs at 0
    os.environ.setdefault("RAY_worker_niceness", "0")
    started = time.perf_counter()
    start_local(workers)
    start_s = time.perf_counter() - started
    try:
        # every worker's first task: numba cache load and the network built, outside the timing
        list(run_on_cluster(network, samples.take(list(range(2 * workers))), "local", threads=1, chunk=1))
        started = time.perf_counter()
        results = list(run_on_cluster(network, samples, "local", threads=1))
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    return {"workers": workers, "samples": len(results), "seconds": seconds,
            "samples_per_s": len(results) / seconds, "ray_start_s": start_s}


def local_rate(network, samples, threads: int) -> dict:
    from evsim.runtime.inputs import sample_inputs

    network.run(next(sample_inputs(samples, network)))  # numba cache load
    started = time.perf_counter()
    results = list(network.run_many(sample_inputs(samples, network), workers=threads))
    seconds = time.perf_counter() - started
    return {"threads": threads, "samples": len(results), "seconds": seconds, "samples_per_s": len(results) / seconds}


def train_rate(ranks: int, args) -> dict:
    """One epoch of `evsim train` on ``ranks`` DDP ranks (0: the plain trainer)."""
    with tempfile.TemporaryDirectory() as folder:
        options = ["train", "--arch", "lenet", "--dataset", "nmnist", "--epochs", "1",
                   "--timesteps", str(args.timesteps), "--batch-size", str(args.batch_size),
                   "--limit", str(args.train_samples), "--test-limit", "8", "--threads", "1",
                   "--out", str(Path(folder) / "m.npz"), "--json", "--no-progress"]
        if ranks == 0:
            command = [sys.executable, "-m", "evsim.cli", *options]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks),
                       "--master-addr", "127.0.0.1", "--master-port", str(29500 + ranks),
                       "-m", "evsim.cli", *options, "--distributed"]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    epoch = json.loads(out)["epochs"][0]
    return {"ranks": ranks, "samples": args.train_samples, "seconds": epoch["train_seconds"],
            "samples_per_s": args.train_samples / epoch["train_seconds"]}


def on_paper(per_core: float, cores_per_node: int) -> list[dict]:
    rows = []
    for nodes in (1, 2, 4, 8, 16, 32, 64):
        rate = per_core * cores_per_node * nodes
        rows.append({"nodes": nodes, "cores": cores_per_node * nodes, "samples_per_s": rate,
                     "minutes": NMNIST_RECORDINGS / rate / 60})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=96, help="N-MNIST recordings for (a)")
    parser.add_argument("--train-samples", type=int, default=64, help="training samples for (b)")
    parser.add_argument("--timesteps", type=int, default=20, help="T of the trained network in (b)")
    parser.add_argument("--batch-size", type=int, default=16, help="mini-batch of (b), split over the ranks")
    parser.add_argument("--cores-per-node", type=int, default=16, help="cores per node in (c)")
    parser.add_argument("--quick", action="store_true", help="tiny settings")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "cluster.json")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.train_samples, args.timesteps = 8, 8, 4

    network, samples, data = load_recordings(args.samples)
    print(f"(a) {data}, lenet-nmnist, step mode")
    ray = [ray_rates(network, samples, w) for w in (1, 2)]
    local = [local_rate(network, samples, t) for t in (1, 2)]
    for r, l in zip(ray, local):
        print(f"  {r['workers']} Ray worker(s): {r['samples_per_s']:.2f} samples/s (Ray start {r['ray_start_s']:.1f} s)"
              f"   | in-process run_many, {l['threads']} thread(s): {l['samples_per_s']:.2f} samples/s")
    print(f"(b) lenet on nmnist, T={args.timesteps}, batch {args.batch_size}, {args.train_samples} samples, 1 thread per rank")
    train = [train_rate(r, args) for r in (0, 1, 2)]
    for t in train:
        name = "plain trainer" if t["ranks"] == 0 else f"{t['ranks']} DDP rank(s)"
        print(f"  {name}: {t['samples_per_s']:.2f} samples/s")
    per_core = ray[0]["samples_per_s"]
    efficiency = ray[1]["samples_per_s"] / (2 * per_core)
    paper = on_paper(per_core, args.cores_per_node)
    print(f"(c) {NMNIST_RECORDINGS:,} recordings at {per_core:.2f} samples/s per core, scaling linearly "
          f"(2 workers here: {100 * efficiency:.0f} % of twice one), {args.cores_per_node} cores per node:")
    for row in paper:
        print(f"  {row['nodes']:>3} node(s), {row['cores']:>5} cores: {row['minutes']:8.1f} min")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"data": data, "ray": ray, "local": local, "train": train,
                                     "per_core_samples_per_s": per_core, "efficiency_2_workers": efficiency,
                                     "cores_per_node": args.cores_per_node, "on_paper": paper,
                                     "cpus": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
