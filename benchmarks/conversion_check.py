"""The conversion's done-when check: a converted SNN's accuracy against its ANN's on a test split,
in the event engine (step mode) and in the dense simulation (torch), on the same Poisson inputs.

The samples run in a fixed random order (seed 0), and the running figures are written to
``--out`` (JSON) every ``--every`` samples, so that a run stopped early still reports an
unbiased subset. The dense simulation runs on the first ``--dense`` samples of that order, in
mini-batches of ``--batch`` (every synapse, every step: batching is what makes all 10,000 MNIST
test images affordable on one core); a sample's dense output does not depend on its batch.

    python benchmarks/conversion_check.py --ann lenet-mnist-ann --snn lenet-mnist-converted.npz \
        --dataset mnist --data $EVSIM_DATA/mnist --dense 10000 --out results/conversion_mnist.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--ann", required=True)
    parser.add_argument("--snn", required=True)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--dense", type=int, default=200, help="samples also run in the dense simulation")
    parser.add_argument("--batch", type=int, default=25, help="samples per dense mini-batch")
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--stop", type=int, default=None, help="stop after this many samples of the order")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch

    import evsim
    from evsim.runtime.inputs import sample_input
    from evsim.datasets.samples import load_samples
    from evsim.model.file import load_model
    from evsim.training.ann import analog_inputs, load_ann
    from evsim.training.network import dense_forward

    torch.set_num_threads(1)
    ann = load_ann(args.ann)
    snn_file = load_model(args.snn)
    network = evsim.load(args.snn)
    samples = load_samples(args.dataset, args.data, "test", args.limit, encoding=network.encoding)
    order = np.random.default_rng(args.seed).permutation(len(samples))[:args.stop]
    with torch.no_grad():
        ann_pred = np.concatenate([ann(torch.from_numpy(analog_inputs(samples, order[i:i + 500], ann.graph.timesteps, None)))
                                   .argmax(1).numpy() for i in range(0, len(order), 500)])
    labels = samples.labels[order]
    engine_pred, dense_pred, pending = [], [], []
    started = time.perf_counter()
    for k, position in enumerate(order):
        position = int(position)
        train = sample_input(samples, position, network.timesteps, args.seed, position)
        engine_pred.append(network.run(train).prediction)
        if k < args.dense:
            pending.append(train.astype(np.float32))
        if pending and (len(pending) == args.batch or k + 1 == min(args.dense, len(order))):
            output, _ = dense_forward(snn_file.graph, snn_file.weights, np.stack(pending, axis=1), dtype=torch.float32)
            dense_pred.extend(int(p) for p in output.argmax(1))
            pending = []
        if (k + 1) % args.every == 0 or k + 1 == len(order):
            n, m = len(engine_pred), len(dense_pred)
            report = {
                "command": "python benchmarks/conversion_check.py " + " ".join(
                    f"--{key} {value}" for key, value in vars(args).items() if value is not None),
                "ann": args.ann, "snn": args.snn, "timesteps": network.timesteps, "dataset": args.dataset,
                "samples_run": n, "samples_total": len(samples), "seconds": time.perf_counter() - started,
                "ann_accuracy_on_run": float((ann_pred[:n] == labels[:n]).mean()),
                "ann_accuracy_all": float((ann_pred == labels).mean()),
                "engine_accuracy": float((np.array(engine_pred) == labels[:n]).mean()),
                "dense_samples": m,
                "dense_accuracy": float((np.array(dense_pred) == labels[:m]).mean()) if m else None,
                "engine_accuracy_on_dense_samples": float((np.array(engine_pred[:m]) == labels[:m]).mean()) if m else None,
                "engine_dense_agreement": float((np.array(engine_pred[:m]) == np.array(dense_pred)).mean()) if m else None,
                "engine_ann_agreement": float((np.array(engine_pred) == ann_pred[:n]).mean()),
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
            print(json.dumps({k: report[k] for k in ("samples_run", "engine_accuracy", "ann_accuracy_on_run",
                                                     "dense_accuracy", "engine_dense_agreement")}), flush=True)


if __name__ == "__main__":
    main()
