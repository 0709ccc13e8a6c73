"""A/B: the engine of two checkouts on the same recordings, in alternating processes.

    python benchmarks/ab_engine.py /tmp/evsim-base . --model lenet-nmnist --rounds 5 --modes step async

Each round runs every checkout once, in turn, in a fresh process whose ``PYTHONPATH`` puts that
checkout's ``evsim`` first (the checkout needs ``evsim/training`` and ``evsim/datasets`` links to
``training/`` and ``datasets/``, as a worktree made for this gets). In each process: load the model,
read the recordings once, run all of them once untimed (compile or load the kernels), then time one
pass over them per mode with ``Network.run_many`` (as ``evsim run`` and ``bench`` run them; on one
thread, the calling one, unless ``--threads``; ``--per-input``: ``Network.run`` per input). Reported per checkout and mode: the median samples/s over
rounds of wall time and of CPU time (``time.thread_time``, which a busy machine disturbs less: it
leaves out the time the thread waits for a core), synops per sample, G synops/s per core, and a
digest of predictions and counters, which must be equal across checkouts. Alternating rounds in
one run spread machine noise over both sides alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import hashlib, json, sys, time
import numpy as np
import evsim
from evsim.datasets.formats import read_events
model, modes, threads, run_many, files = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5:]
net = evsim.load(model)
inputs = []
for f in files:
    events, _ = read_events(f)
    events = events.copy()
    events["t"] -= events["t"][0]
    inputs.append(events)
out = {"engine": evsim.__file__}
from evsim.analysis.bench import _ceiling_kernel
# the bare scatter-add of evsim bench (runs of 250 float32 adds at random places), on CPU time
rng = np.random.default_rng(0)
V = np.zeros(23_120 + 250, dtype=np.float32)
W = rng.standard_normal(65_536 + 250).astype(np.float32)
bases, woffs = rng.integers(0, 23_120, 200_000), rng.integers(0, 65_536, 200_000)
_ceiling_kernel(V, W, bases[:10], woffs[:10], 250)
best = 0.0
for _ in range(3):
    cpu = time.thread_time()
    adds = _ceiling_kernel(V, W, bases, woffs, 250)
    best = max(best, adds / (time.thread_time() - cpu))
out["ceiling_synops_per_s"] = best
for mode in modes:
    list(net.run_many(inputs[:2], workers=threads, mode=mode))
    digest = hashlib.sha256()
    synops = 0
    wall, cpu = time.perf_counter(), time.thread_time()
    if threads == 1 and not run_many:
        results = [net.run(x, mode=mode) for x in inputs]
    else:  # as evsim run and bench run them: one run_many (on one thread, the calling one)
        results = list(net.run_many(inputs, workers=threads, mode=mode))
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    if threads > 1:
        cpu = wall  # the main thread's CPU time says nothing of the workers'
    for r in results:
        synops += r.synops
        digest.update(np.asarray(r.output, np.float64).tobytes())
        digest.update(str([(l.synops, l.spikes) for l in r.layers]).encode())
    out[mode] = {"wall_s": wall, "cpu_s": cpu, "samples": len(inputs), "synops": synops, "digest": digest.hexdigest()[:16]}
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("trees", nargs="+", type=Path, help="checkouts to compare (the first is the baseline)")
    parser.add_argument("--model", default="lenet-nmnist", help="model file or bundled name")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder of N-MNIST .bin recordings (default: the bundled test recordings)")
    parser.add_argument("--limit", type=int, default=28, help="recordings to use (default 28)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--modes", nargs="+", default=["step", "async"], choices=["step", "async"])
    parser.add_argument("--threads", type=int, default=1,
                        help="run the recordings on this many threads with Network.run_many, as evsim bench "
                             "does, and compare wall time (default 1: one thread, CPU time)")
    parser.add_argument("--scaling", type=int, default=None, metavar="N",
                        help="run each checkout on 1 and on N threads (run_many) in every round and print the wall "
                             "time speedup N / 1 per checkout")
    parser.add_argument("--per-input", action="store_true",
                        help="with one thread, time Network.run per input instead of one Network.run_many")
    parser.add_argument("--json", action="store_true", help="print the raw rounds as JSON too")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.data is None:
        from evsim.paths import BUNDLED_DATA

        args.data = BUNDLED_DATA / "nmnist"
    files = sorted(str(p) for p in args.data.rglob("*.bin"))[: args.limit]
    if args.scaling is not None:
        scaling(args, files)
        return
    rounds: dict[str, list[dict]] = {str(t): [] for t in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            rounds[str(tree)].append(run_worker(tree, args, files, args.threads))
    base = str(args.trees[0])
    ceiling = statistics.median(r["ceiling_synops_per_s"] for runs in rounds.values() for r in runs)
    on = "one thread" if args.threads == 1 else f"{args.threads} threads (run_many; the CPU columns are wall time)"
    print(f"{args.model}: {len(files)} recordings from {args.data}, {args.rounds} alternating rounds, {on}; "
          f"bare scatter-add ceiling {ceiling / 1e9:.2f} G adds/s of CPU time (runs of 250, median of all processes)")
    print(f"{'checkout':<28} {'mode':<6} {'samples/s wall':>15} {'samples/s CPU':>14} {'x base (CPU)':>13} "
          f"{'synops/sample':>14} {'G synops/s CPU':>15} {'of ceiling':>10}  digest")
    for mode in args.modes:
        base_cpu = statistics.median(r[mode]["samples"] / r[mode]["cpu_s"] for r in rounds[base])
        for tree, runs in rounds.items():
            wall = statistics.median(r[mode]["samples"] / r[mode]["wall_s"] for r in runs)
            cpu = statistics.median(r[mode]["samples"] / r[mode]["cpu_s"] for r in runs)
            synops = runs[0][mode]["synops"] / runs[0][mode]["samples"]
            digests = {r[mode]["digest"] for r in runs}
            print(f"{Path(tree).name or tree:<28} {mode:<6} {wall:>15.1f} {cpu:>14.1f} {cpu / base_cpu:>13.2f} "
                  f"{synops:>14,.0f} {synops * cpu / 1e9:>15.2f} {synops * cpu / ceiling:>10.0%}  "
                  f"{','.join(sorted(digests))}")
    if args.json:
        print(json.dumps(rounds))


def run_worker(tree: Path, args, files: list[str], threads: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), NUMBA_NUM_THREADS=str(threads),
               NUMBA_THREADING_LAYER="workqueue")
    done = subprocess.run([sys.executable, "-c", WORKER, args.model, ",".join(args.modes), str(threads),
                           "0" if args.per_input else "1", *files],
                          env=env, capture_output=True, text=True, check=True, cwd=tree)
    return json.loads(done.stdout.strip().splitlines()[-1])


def scaling(args, files: list[str]) -> None:
    """Each checkout on 1 and ``args.scaling`` threads, alternating within every round: wall time."""
    counts = (1, args.scaling)
    rounds = {(str(t), n): [] for t in args.trees for n in counts}
    for _ in range(args.rounds):
        for tree in args.trees:
            for n in counts:
                rounds[(str(tree), n)].append(run_worker(tree, args, files, n))
    print(f"{args.model}: {len(files)} recordings from {args.data}, {args.rounds} alternating rounds, run_many on "
          f"1 and {args.scaling} threads, wall time (medians)")
    print(f"{'checkout':<28} {'mode':<6} {'1 thread':>10} {f'{args.scaling} threads':>11} {'speedup':>8}  digest")
    for mode in args.modes:
        for tree in args.trees:
            one, many = (statistics.median(r[mode]["samples"] / r[mode]["wall_s"] for r in rounds[(str(tree), n)])
                         for n in counts)
            digests = {r[mode]["digest"] for n in counts for r in rounds[(str(tree), n)]}
            print(f"{str(tree.name or tree.resolve().name):<28} {mode:<6} {one:>10.1f} {many:>11.1f} {many / one:>7.2f}x  "
                  f"{','.join(sorted(digests))}")
    if args.json:
        print(json.dumps({f"{t}@{n}": r for (t, n), r in rounds.items()}))


if __name__ == "__main__":
    main()
