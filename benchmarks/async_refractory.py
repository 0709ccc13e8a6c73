"""Asynchronous-mode accuracy and synops as a function of the refractory period.

    python benchmarks/async_refractory.py --split train --limit 200 --refractory 0 1500 3000

Runs the bundled ``lenet-nmnist`` (or ``--model``) in continuous time on real N-MNIST recordings
from ``$EVSIM_DATA/nmnist`` (the first 300 ms window, read out at its end, as ``evsim run --mode
async`` does) once per refractory period, and prints accuracy, synops per sample and samples/s.
"""

from __future__ import annotations

import argparse
import time

import evsim
from evsim.datasets.samples import default_root, load_samples
from evsim.engine.asynchronous import Stream, step_width_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--model", default="lenet-nmnist")
    parser.add_argument("--data", default=None)
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--refractory", type=float, nargs="+", default=[0.0, 1500.0, 3000.0], help="periods in µs")
    args = parser.parse_args()
    network = evsim.load(args.model)
    samples = load_samples("nmnist", args.data or default_root("nmnist"), args.split, limit=args.limit, encoding=network.encoding)
    window = step_width_us(network) * network.timesteps
    print(f"{args.model}: {len(samples)} N-MNIST {args.split} recordings, async mode, read out at {window / 1000:.0f} ms")
    print(f"{'refractory µs':>14} {'accuracy':>9} {'synops/sample':>15} {'samples/s':>10}")
    for refractory in args.refractory:
        correct, synops, start = 0, 0, time.perf_counter()
        for i in range(len(samples)):
            events = samples.events(i)
            stream = Stream(network, refractory_us=refractory)
            stream.feed(events[(events["t"] >= 0) & (events["t"] < window)])
            result = stream.result(at_us=window)
            correct += int(result.prediction == samples.labels[i])
            synops += result.synops
        rate = len(samples) / (time.perf_counter() - start)
        print(f"{refractory:>14.0f} {100 * correct / len(samples):>8.2f}% {synops / len(samples):>15,.0f} {rate:>10.1f}")


if __name__ == "__main__":
    main()
