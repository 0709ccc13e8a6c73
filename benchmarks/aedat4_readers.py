"""AEDAT 4.0 files: the ``aedat`` package (evsim's reader) against dv-processing's MonoCameraRecording.

The one real AEDAT 4.0 recording the project has (the DVXplorer sample, LZ4) is decoded by both;
then dv-processing's own MonoCameraWriter rewrites its events in each compression it offers and
both readers decode every copy (which compressions each handles, and whether they agree event for
event); then a long copy (the recording repeated ``--repeat`` times, shifted in time) measures
decoding speed and the peak memory of streaming it chunk by chunk, each reader in a process of its
own. Run:

    python benchmarks/aedat4_readers.py --data $EVSIM_DATA/dvs_samples/aedat4_dvxplorer/sample.aedat4
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

COMPRESSIONS = ("NONE", "LZ4", "LZ4_HIGH", "ZSTD", "ZSTD_HIGH")


def read_with_evsim(path: Path) -> np.ndarray:
    from evsim.datasets.formats import open_event_file

    return np.concatenate(list(open_event_file(path).chunks()))


def read_with_dv(path: Path) -> np.ndarray:
    import dv_processing as dv

    from evsim.datasets.live import _events_from_store

    recording = dv.io.MonoCameraRecording(str(path))
    parts = []
    while True:
        store = recording.getNextEventBatch()
        if store is None:
            break
        parts.append(_events_from_store(store))
    return np.concatenate(parts)


def write_copy(events: np.ndarray, size, path: Path, compression: str, repeat: int = 1) -> None:
    import dv_processing as dv

    config = dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_sample", size, getattr(dv.CompressionType, compression))
    writer = dv.io.MonoCameraWriter(str(path), config)
    span = int(events["t"][-1] - events["t"][0]) + 1
    for k in range(repeat):
        for part in np.array_split(events, max(1, len(events) // 5000)):  # packets of about 5,000 events
            store = dv.EventStore()
            for x, y, t, p in zip(part["x"].tolist(), part["y"].tolist(), (part["t"] + k * span).tolist(),
                                  part["p"].tolist(), strict=True):
                store.push_back(t, x, y, p)
            writer.writeEvents(store)
    del writer


def _measure(reader: str, path: str) -> None:
    """In a process of its own: stream the file chunk by chunk, print events, seconds, peak RSS."""
    import resource

    start = time.perf_counter()
    n = 0
    if reader == "aedat":
        from evsim.datasets.formats import open_event_file

        for chunk in open_event_file(Path(path)).chunks():
            n += len(chunk)
    else:
        import dv_processing as dv

        recording = dv.io.MonoCameraRecording(path)
        while (store := recording.getNextEventBatch()) is not None:
            n += len(store.numpy())
    seconds = time.perf_counter() - start
    print(json.dumps({"events": n, "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(reader: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", reader, str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="the DVXplorer sample.aedat4")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", nargs=2, metavar=("READER", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return _measure(*args.measure)
    events = read_with_evsim(args.data)
    same = np.array_equal(events, read_with_dv(args.data))
    print(f"{args.data.name}: {len(events):,} events; aedat and dv-processing agree event for event: {same}")
    import dv_processing as dv

    size = dv.io.MonoCameraRecording(str(args.data)).getEventResolution()
    with tempfile.TemporaryDirectory() as folder:
        for compression in COMPRESSIONS:
            path = Path(folder) / f"{compression}.aedat4"
            write_copy(events, size, path, compression)
            row = [compression, f"{path.stat().st_size:,} B"]
            for name, read in (("aedat", read_with_evsim), ("dv-processing", read_with_dv)):
                try:
                    row.append(f"{name}: {'equal' if np.array_equal(read(path), events) else 'DIFFERENT'}")
                except Exception as exc:  # a reader that cannot decode this compression
                    row.append(f"{name}: fails ({str(exc).splitlines()[0][:80]})")
            print(" | ".join(row))
        long = Path(folder) / "long.aedat4"
        write_copy(events, size, long, "LZ4", repeat=args.repeat)
        print(f"long copy: {len(events) * args.repeat:,} events, {long.stat().st_size / 1e6:.1f} MB (LZ4)")
        for r in range(args.rounds):
            for reader in ("aedat", "dv"):
                m = measure(reader, long)
                print(f"round {r + 1} {reader:>5}: {m['events'] / m['seconds'] / 1e6:.1f} M events/s, "
                      f"peak RSS {m['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
