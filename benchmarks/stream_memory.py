"""Does ``evsim stream`` run in constant memory? Peak RSS for recordings 1x, 4x and 16x as long.

The recordings are real N-MNIST samples laid end to end, one every ``--slot-ms`` (shifting their
timestamps), written as valid N-MNIST ``.bin`` files: the 23-bit timestamp field covers only
8.4 s, so the files carry the format's own overflow markers (a record with y = 240 adds 2**13 µs to
every later timestamp, as tonic reads them); each event's field holds its time modulo 8192 µs.
The script checks that the 1x file reads back as exactly the events it wrote.

Each length is streamed by a separate ``python -m evsim.cli stream FILE --model MODEL`` process
(text output, default 50 ms read-outs) and its peak RSS taken from ``os.wait4``. For contrast, the
same is measured for ``read_events`` loading the whole 16x file at once: memory that grows with
the recording shows there.

    python benchmarks/stream_memory.py                     # 2 / 8 / 32 minutes of recording
    python benchmarks/stream_memory.py --base-minutes 0.5  # a quick run

The model defaults to the tiny random-weight LeNet of the tests (tests/random_model.py); pass
``--model`` to use a trained one.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OVERFLOW_US = 1 << 13


def nmnist_files() -> list[Path]:
    from evsim.datasets import data_root
    from evsim.paths import BUNDLED_DATA

    root = data_root()
    for base in ([root / "nmnist"] if root is not None else []) + [BUNDLED_DATA / "nmnist"]:
        files = sorted(base.glob("T*/[0-9]/*.bin"))
        if files:
            return files
    raise SystemExit("no N-MNIST recordings found (shared data or evsim/data/nmnist)")


def long_recording(files: list[Path], samples: int, slot_us: int) -> np.ndarray:
    """``samples`` recordings, cycling through ``files``, sample k shifted to start at k * slot."""
    from evsim.datasets.formats import read_events

    recordings = [read_events(f)[0] for f in files]
    parts = []
    for k in range(samples):
        events = recordings[k % len(recordings)].copy()
        events["t"] += k * slot_us
        parts.append(events)
    return np.concatenate(parts)


def encode_nmnist(events: np.ndarray) -> bytes:
    """Valid N-MNIST records for time-sorted events of any length, with overflow markers."""
    t = events["t"].astype(np.int64)
    markers_before = t // OVERFLOW_US  # markers needed before each event
    field = t - markers_before * OVERFLOW_US  # < 8192, fits the 23-bit field
    total = len(t) + int(markers_before[-1])
    records = np.zeros((total, 5), dtype=np.uint8)
    records[:, 1] = 240  # every slot is a marker ...
    at = np.arange(len(t)) + markers_before  # ... except where an event goes
    records[at, 0] = events["x"]
    records[at, 1] = events["y"]
    records[at, 2] = (events["p"].astype(np.uint8) << 7) | ((field >> 16) & 0x7F).astype(np.uint8)
    records[at, 3] = (field >> 8) & 0xFF
    records[at, 4] = field & 0xFF
    return records.tobytes()


def peak_rss_of(command: list[str], stdout) -> tuple[float, float, int]:
    """Run ``command``; its peak RSS (MiB), wall time (s) and exit code."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, cwd=REPO)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, wall, process.returncode  # ru_maxrss is in KiB on Linux


def write_recordings(folder: Path, base_samples: int, slot_us: int, multiples) -> None:
    """The 1x, 4x, 16x ... files; run in a child process, so that the measuring parent stays small
    (a child's peak RSS on Linux includes its parent's RSS at the fork)."""
    from evsim.datasets.formats import read_events

    files = nmnist_files()
    events = long_recording(files, base_samples * multiples[-1], slot_us)
    for m in multiples:
        part = events[: np.searchsorted(events["t"], base_samples * m * slot_us)]
        (folder / f"nmnist_{m}x.bin").write_bytes(encode_nmnist(part))
    check, _ = read_events(folder / f"nmnist_{multiples[0]}x.bin")
    assert np.array_equal(check, events[: len(check)]), "the written file does not read back"
    print(f"{len(files)} N-MNIST recordings, one every {slot_us / 1000:g} ms")


def main() -> None:
    import resource

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--base-minutes", type=float, default=2.0, help="length of the 1x recording")
    parser.add_argument("--slot-ms", type=float, default=500.0, help="one N-MNIST sample every this many ms")
    parser.add_argument("--model", type=Path, help="model file (default: a tiny random-weight LeNet)")
    parser.add_argument("--keep", type=Path, help="write the recordings here instead of a temporary folder")
    parser.add_argument("--write-recordings", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()

    slot_us = int(args.slot_ms * 1000)
    base_samples = max(1, round(args.base_minutes * 60e6 / slot_us))
    multiples = (1, 4, 16)
    if args.write_recordings:
        write_recordings(args.write_recordings, base_samples, slot_us, multiples)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model = args.model
        if model is None:
            model = folder / "random_tiny_lenet.npz"
            subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "from random_model import save_random_nmnist_model as save; save(sys.argv[2])",
                            str(REPO / "tests"), str(model)], check=True)
        subprocess.run([sys.executable, __file__, "--write-recordings", str(folder),
                        "--base-minutes", str(args.base_minutes), "--slot-ms", str(args.slot_ms)], check=True)
        paths = {m: folder / f"nmnist_{m}x.bin" for m in multiples}
        print(f"model {model}")

        rows = []
        for m in multiples:
            out_path = folder / f"stream_{m}x.txt"
            with open(out_path, "wb") as out:
                command = [sys.executable, "-m", "evsim.cli", "stream", str(paths[m]), "--model", str(model)]
                rss, wall, _ = peak_rss_of(command, out)
            text = out_path.read_text()
            n_events = int(re.search(r"^events\s+([\d,]+) read", text, re.M).group(1).replace(",", ""))
            speed = re.search(r"([\d,.]+)x real time", text).group(1)
            minutes = float(re.search(r"^final .* after ([\d,.]+) ms", text, re.M).group(1).replace(",", "")) / 60e3
            lines = text.count("\n")
            rows.append((f"{m}x", f"{minutes:.2f} min", f"{n_events:,}", f"{paths[m].stat().st_size / 2**20:.1f}",
                         f"{rss:.0f}", f"{wall:.1f}", speed, f"{lines:,}"))

        whole_command = [sys.executable, "-c",
                         "import sys; from evsim.datasets.formats import read_events; read_events(sys.argv[1])",
                         str(paths[multiples[-1]])]
        whole_rss, whole_wall, _ = peak_rss_of(whole_command, subprocess.DEVNULL)

    header = ("length", "recording", "events", "file MiB", "peak RSS MiB", "wall s", "x real time", "output lines")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("evsim stream (text output, read-out every 50 ms), one process per length:")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    print(f"contrast: read_events() of the whole {multiples[-1]}x file at once: peak RSS {whole_rss:.0f} MiB "
          f"({whole_wall:.1f} s)")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this measuring process peaked at {own:.0f} MiB, below every figure above, so none is inherited from it)")


if __name__ == "__main__":
    main()
