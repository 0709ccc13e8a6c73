"""How fast a recording streams, against real time, in both modes, on CPU time and wall time.

    python benchmarks/realtime_stream.py /work/shared/data/dvs_samples/aedat4_dvxplorer/sample.aedat4 \\
        --model lenet-nmnist --downsample 0.1 --repeats 2

Streams the file through ``evsim.runtime.streaming.stream_file`` (what ``evsim stream`` runs:
decoding, the input fit and the engine) once untimed per mode (the kernels load), then
``--repeats`` times per mode, alternating. Prints per run the recording's length, the wall time
(the report's ``wall_s``) and the CPU time of the streaming thread (``time.thread_time``, which on
a shared machine leaves out the waits for a core), each as a real-time factor and input events/s.
"""

from __future__ import annotations

import argparse
import time

import evsim
from evsim.runtime.streaming import stream_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("file", help="event file")
    parser.add_argument("--model", default="lenet-nmnist", help="model file or bundled name")
    parser.add_argument("--downsample", type=float, default=None, help="as evsim stream --downsample")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per mode (default 2)")
    args = parser.parse_args()
    network = evsim.load(args.model)
    modes = ("step", "async")
    for mode in modes:
        stream_file(args.file, network, 50_000, downsample=args.downsample, mode=mode, keep_timeline=False)
    for _ in range(args.repeats):
        for mode in modes:
            cpu = time.thread_time()
            r = stream_file(args.file, network, 50_000, downsample=args.downsample, mode=mode, keep_timeline=False)
            cpu = time.thread_time() - cpu
            seconds = r["duration_us"] * 1e-6
            print(f"{mode:<5}: {r['events']:,} events over {seconds:.3f} s of recording; "
                  f"wall {r['wall_s']:.3f} s ({seconds / r['wall_s']:.2f}x real time, {r['events'] / r['wall_s']:,.0f} events/s); "
                  f"CPU {cpu:.3f} s ({seconds / cpu:.2f}x real time, {r['events'] / cpu:,.0f} events/s); "
                  f"synops {r['synops']:,}; prediction {r['prediction']}")


if __name__ == "__main__":
    main()
