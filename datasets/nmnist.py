"""N-MNIST: the original 40-bit ``.bin`` event files and the dataset folder that holds them.

A file is a flat sequence of 5-byte records, big-endian bit fields, no header:
x (8 bits), y (8 bits), polarity (1 bit, 1 = ON), timestamp (23 bits, µs). A record with
``y == 240`` is not an event but a timestamp overflow marker: it adds 2**13 µs to every later
timestamp and is dropped, exactly as ``tonic.io.read_mnist_file`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evsim.datasets import resolve_split
from evsim.events import EVENT_DTYPE, check_time_order
from evsim.errors import DataError, require

RECORD_BYTES = 5
SENSOR_SIZE = (34, 34, 2)
OVERFLOW_Y = 240
OVERFLOW_US = 2**13
SPLIT_FOLDERS = {"train": "Train", "test": "Test"}


@dataclass(frozen=True)
class DecodedNmnist:
    """The events of one chunk of an N-MNIST file and where the decoding of the next chunk resumes.

    To decode a file in pieces, cut it at record boundaries and feed each piece the previous
    result's ``next_offset``, ``time_offset`` and ``last_t``::

        state = decode_nmnist(b"")
        for chunk in chunks:
            state = decode_nmnist(chunk, path, state.next_offset, state.time_offset, state.last_t)
            use(state.events)
    """

    events: np.ndarray  # EVENT_DTYPE, time-sorted
    next_offset: int  # byte offset in the file of the record after this chunk
    time_offset: int  # overflow time (µs) accumulated up to the end of this chunk
    last_t: int  # timestamp of the last event so far (µs), for the ordering check


def decode_nmnist(
    raw: bytes | np.ndarray,
    path=None,
    offset: int = 0,
    time_offset: int = 0,
    last_t: int = 0,
) -> DecodedNmnist:
    """Decode whole 5-byte records into events, checking them as it goes.

    ``offset`` is the byte offset of ``raw`` in its file and ``path`` the file's name: both only
    serve the error messages. ``time_offset`` is the overflow time already accumulated before this
    chunk and ``last_t`` the last timestamp before it. Raises :class:`DataError` for a partial
    record, a coordinate outside the 34x34 sensor, or a timestamp earlier than the one before it
    (the official files are time-sorted, so a step back means a damaged or foreign file).
    """
    if isinstance(raw, (bytes, bytearray, memoryview)):
        data = np.frombuffer(raw, dtype=np.uint8)
    else:
        data = np.asarray(raw, dtype=np.uint8).reshape(-1)
    whole = len(data) - len(data) % RECORD_BYTES
    if whole != len(data):
        raise DataError(
            f"{len(data) % RECORD_BYTES} trailing bytes do not make a whole {RECORD_BYTES}-byte "
            "event record (N-MNIST files are a multiple of 5 bytes long)",
            path,
            offset + whole,
        )
    records = data.reshape(-1, RECORD_BYTES).astype(np.int64)
    x, y = records[:, 0], records[:, 1]
    p = records[:, 2] >> 7
    t = ((records[:, 2] & 0x7F) << 16) | (records[:, 3] << 8) | records[:, 4]

    is_overflow = y == OVERFLOW_Y
    # tonic adds the increment from the marker on, so an event sees every marker before it.
    t = t + time_offset + OVERFLOW_US * np.cumsum(is_overflow)
    end_time_offset = time_offset + OVERFLOW_US * int(is_overflow.sum())

    is_event = ~is_overflow
    index = np.flatnonzero(is_event)
    outside = (x[index] >= SENSOR_SIZE[0]) | (y[index] >= SENSOR_SIZE[1])
    if outside.any():
        i = int(index[np.argmax(outside)])
        raise DataError(
            f"event at x={x[i]}, y={y[i]} lies outside the {SENSOR_SIZE[0]}x{SENSOR_SIZE[1]} "
            "N-MNIST sensor",
            path,
            offset + RECORD_BYTES * i,
        )
    event_t = t[index]
    check_time_order(event_t, last_t, path, lambda k: offset + RECORD_BYTES * int(index[k]),
                     "timestamp", "N-MNIST files are time-sorted")

    events = np.empty(len(index), dtype=EVENT_DTYPE)
    events["x"] = x[index]
    events["y"] = y[index]
    events["t"] = event_t
    events["p"] = p[index].astype(bool)
    return DecodedNmnist(
        events=events,
        next_offset=offset + len(data),
        time_offset=end_time_offset,
        last_t=int(event_t[-1]) if len(event_t) else last_t,
    )


def read_nmnist(path) -> np.ndarray:
    """All events of one N-MNIST ``.bin`` file, time-sorted, in ``EVENT_DTYPE``.

    Besides the checks of :func:`decode_nmnist`, a file without a single event is a
    :class:`DataError`: it can only be a failed copy.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read N-MNIST file: {exc.strerror or exc}", path) from exc
    if not raw:
        raise DataError("file is empty; an N-MNIST recording holds at least one event", path)
    events = decode_nmnist(raw, path).events
    if len(events) == 0:
        raise DataError("file holds only timestamp overflow markers, no events", path)
    return events


class NMNIST:
    """The N-MNIST recordings of one split, in the official layout ``Train|Test/<digit>/*.bin``.

    ``root`` is the folder that holds ``Train``/``Test``, or one that holds ``NMNIST/Train``
    (where ``tonic.datasets.NMNIST(save_to=root)`` extracts the official archives) or
    ``nmnist/Train``. Files are ordered by digit, then by name, as tonic orders them.

    ``dataset[i]`` is ``(events, label)``; ``transform`` is any callable on an event array (a
    tonic transform such as ``tonic.transforms.ToFrame``) and ``target_transform`` any callable
    on the label. The class is a map-style dataset: a ``torch.utils.data.DataLoader`` accepts it.

    The split is ``split="train"|"test"`` (default test) or, as in tonic, ``train=True|False``.

    ``download=True`` fetches the official archive of the split through tonic when no recordings
    are found under ``root`` (about 1 GB for the training split).
    """

    sensor_size = SENSOR_SIZE

    def __init__(
        self,
        root,
        split: str | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        download: bool = False,
        train: bool | None = None,
    ):
        split = resolve_split(split, train, default="test", what="N-MNIST", root=root)
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        folder = _find_split_folder(self.root, SPLIT_FOLDERS[split])
        if folder is None and download:
            _download(self.root, split)
            folder = _find_split_folder(self.root, SPLIT_FOLDERS[split])
        if folder is None:
            raise DataError(
                f"no N-MNIST {SPLIT_FOLDERS[split]}/<digit>/*.bin recordings here, nor under "
                f"NMNIST/ or nmnist/ (expected the official layout "
                f"{SPLIT_FOLDERS[split]}/0/00001.bin ...)",
                self.root,
            )
        self.folder = folder
        self.files, labels = _list_recordings(folder)
        self.labels = np.array(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        events = read_nmnist(self.files[index])
        label = int(self.labels[index])
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return events, label

    def __repr__(self) -> str:
        return f"NMNIST({str(self.folder)!r}, split={self.split!r}, {len(self)} recordings)"


def _find_split_folder(root: Path, split_folder: str) -> Path | None:
    for base in (root, root / "NMNIST", root / "nmnist"):
        folder = base / split_folder
        if folder.is_dir() and any(folder.glob("[0-9]/*.bin")):
            return folder
    return None


def _list_recordings(folder: Path) -> tuple[list[Path], list[int]]:
    files, labels = [], []
    for digit in range(10):
        for path in sorted((folder / str(digit)).glob("*.bin")):
            files.append(path)
            labels.append(digit)
    return files, labels


def _download(root: Path, split: str) -> None:
    tonic_datasets = require("tonic.datasets", "data", "downloading N-MNIST")
    # tonic extracts into root/NMNIST/Train|Test, a layout _find_split_folder knows.
    tonic_datasets.NMNIST(save_to=str(root), train=split == "train")
