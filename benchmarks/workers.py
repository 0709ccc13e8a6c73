"""From one core to two: `evsim run --threads 1|2` and `evsim stream DIR... --workers 1|2`.

    python benchmarks/workers.py --model lenet-nmnist --data $EVSIM_DATA/nmnist --rounds 3

Each command runs as a user runs it (a fresh process, data read from disk), alternating 1 and 2
threads (run: samples in parallel threads) or worker processes (stream: files in parallel) round
by round; reported per command and worker count: the median over rounds of the
command's wall time and of the rate it reports, and the 2-worker speedup. `evsim run` times its
own simulation (``samples_per_s``, recordings already decoded); `evsim stream` is timed whole,
process start, reading and decoding included, over every recording of the training split.
Needs a quiet machine: on 2 cores, any other busy process takes the second worker's core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(command: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--model", default="lenet-nmnist")
    parser.add_argument("--data", type=Path, required=True, help="N-MNIST folder (Train/, Test/)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the raw rounds here (JSON)")
    args = parser.parse_args()
    evsim = [sys.executable, "-m", "evsim.cli"]
    folders = sorted(str(p) for p in (args.data / "Train").iterdir() if p.is_dir())
    commands = {
        "run": evsim + ["run", "--model", args.model, "--dataset", "nmnist", "--data", str(args.data), "--split", "train",
                        "--json", "--no-progress", "--threads"],
        "stream": evsim + ["stream", "--model", args.model, *folders, "--json", "--no-progress", "--workers"],
    }
    rows = {(name, w): [] for name in commands for w in (1, 2)}
    for _ in range(args.rounds):
        for name, command in commands.items():
            for workers in (1, 2):
                wall, out = timed(command + [str(workers)])
                if name == "run":
                    rows[name, workers].append({"wall_s": wall, "samples": out["samples"], "rate": out["samples_per_s"]})
                else:
                    files = len(out["files"])
                    rows[name, workers].append({"wall_s": wall, "samples": files, "rate": files / wall})
    print(f"{args.model}: {args.rounds} alternating rounds (median)")
    print(f"{'command':<8} {'threads or workers':>19} {'samples':>8} {'wall s':>8} {'samples/s':>10} {'x 1 worker':>10}")
    for name in commands:
        base = statistics.median(r["rate"] for r in rows[name, 1])
        for workers in (1, 2):
            runs = rows[name, workers]
            rate = statistics.median(r["rate"] for r in runs)
            print(f"{name:<8} {workers:>19} {runs[0]['samples']:>8} {statistics.median(r['wall_s'] for r in runs):>8.2f} "
                  f"{rate:>10.1f} {rate / base:>9.2f}x")
    if args.out:
        args.out.write_text(json.dumps({f"{n} --workers {w}": v for (n, w), v in rows.items()}, indent=1) + "\n")


if __name__ == "__main__":
    main()
