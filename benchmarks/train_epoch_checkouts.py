"""A/B of whole training epochs between two checkouts, in alternating fresh processes.

    python benchmarks/train_epoch_checkouts.py /tmp/evsim-base . --threads 2 --rounds 4

Each round trains one small N-MNIST epoch per checkout, in turn, exactly as ``evsim train`` does
(``training.trainer.train``: the real recordings read and augmented, the simulated ones drawn and
simulated, dropout, the synops penalty, Adam, validation and test evaluation, the checkpoint), in
a fresh process whose ``PYTHONPATH`` puts that checkout's ``evsim`` first (the checkout needs
``evsim/training`` and ``evsim/datasets`` links to ``training/`` and ``datasets/``, as
benchmarks/ab_engine.py's do). Both checkouts train from the same seed in a round, so a change that
keeps every gradient identical ends the epoch with identical weights: the SHA-256 of the exported
weights must agree within a round. Reported per checkout: the median over rounds of the epoch's
training seconds (``train_seconds``), of the whole epoch (training, validation and test, wall)
and of the process's CPU seconds for it. Data: ``--data`` or ``$EVSIM_DATA/nmnist`` (real
recordings) and ``$EVSIM_DATA/mnist`` (for the simulated ones).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from train_epoch_ab import epoch_parser

WORKER = r"""
import hashlib, json, os, sys, tempfile, time
from pathlib import Path
import numpy as np
import evsim
from evsim.training.regularizers import ActivityPenalty
from evsim.training.trainer import TrainConfig, configure_torch, train
data, simulated, threads, real, mixed, val, timesteps, seed = sys.argv[1:9]
configure_torch(int(threads))
with tempfile.TemporaryDirectory() as scratch:
    config = TrainConfig(
        arch="lenet", dataset="nmnist", data=Path(data), out=Path(scratch) / "model.npz", epochs=1,
        timesteps=int(timesteps), optimizer="adam", lr=1e-3, augment=True, limit=int(real) + int(val),
        val=int(val), mix_simulated=int(mixed), simulated_data=Path(simulated) if simulated else None,
        test_limit=4, seed=int(seed), penalty=ActivityPenalty(synops=1e-7))
    wall, cpu = time.perf_counter(), time.process_time()
    history = train(config, log=lambda line: None, progress=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    weights = np.load(config.out)
    digest = hashlib.sha256(b"".join(weights[name].tobytes() for name in sorted(weights.files))).hexdigest()
print(json.dumps({"evsim": evsim.__file__, "train_seconds": history[0]["train_seconds"], "epoch_seconds": wall,
                  "cpu_seconds": cpu, "weights_sha256": digest}))
"""


def run(tree: Path, args, seed: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), NUMBA_THREADING_LAYER="workqueue")
    simulated = str(args.simulated_data or "")
    done = subprocess.run([sys.executable, "-c", WORKER, str(args.data), simulated, str(args.threads), str(args.real),
                           str(args.simulated), str(args.val), str(args.timesteps), str(seed)],
                          env=env, capture_output=True, text=True, check=True, cwd=tree)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["evsim"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"{tree} ran {result['evsim']}: give it evsim/training and evsim/datasets links")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = epoch_parser(__doc__)
    parser.add_argument("checkouts", nargs=2, type=Path, help="two checkouts (A, B), e.g. a base and .")
    parser.add_argument("--val", type=int, default=32, help="real recordings held out and evaluated (default 32)")
    args = parser.parse_args(argv)
    if args.data is None:
        if not os.environ.get("EVSIM_DATA"):
            parser.error("needs --data (and --simulated-data) or $EVSIM_DATA")
        args.data = Path(os.environ["EVSIM_DATA"]) / "nmnist"
    args.data = args.data.resolve()
    results: dict[str, list[dict]] = {str(tree): [] for tree in args.checkouts}
    for round_ in range(args.rounds):  # alternating order, so that machine noise falls on both alike
        digests = set()
        for tree in args.checkouts if round_ % 2 == 0 else args.checkouts[::-1]:
            result = run(tree, args, seed=round_)
            results[str(tree)].append(result)
            digests.add(result["weights_sha256"])
            print(f"round {round_ + 1} {tree}: train {result['train_seconds']:.1f} s, epoch {result['epoch_seconds']:.1f} s, "
                  f"CPU {result['cpu_seconds']:.1f} s, weights {result['weights_sha256'][:12]}", flush=True)
        if len(digests) != 1:
            print(f"round {round_ + 1}: the checkouts' weights differ after the epoch", flush=True)
    medians = {tree: {key: round(statistics.median(r[key] for r in rounds), 2)
                      for key in ("train_seconds", "epoch_seconds", "cpu_seconds")}
               for tree, rounds in results.items()}
    a, b = (str(tree) for tree in args.checkouts)
    print(json.dumps({"threads": args.threads, "samples_per_epoch": args.real + args.simulated, "val": args.val,
                      "timesteps": args.timesteps, "median": medians,
                      "speedup_b_over_a": {key: round(medians[a][key] / medians[b][key], 2) for key in medians[a]},
                      "same_weights_every_round": all(ra["weights_sha256"] == rb["weights_sha256"]
                                                      for ra, rb in zip(results[a], results[b])),
                      "rounds": results}))


if __name__ == "__main__":
    main()
