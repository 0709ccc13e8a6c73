"""One entry point for event files of every format evsim reads: :func:`read_events`.

Each format maps its file suffix to a reader that returns the events (``EVENT_DTYPE``,
time-sorted) and the sensor size ``(width, height, polarities)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from evsim.errors import DataError

SensorSize = tuple[int, int, int]


def _read_nmnist_bin(path: Path) -> tuple[np.ndarray, SensorSize]:
    from evsim.datasets.nmnist import SENSOR_SIZE, read_nmnist

    return read_nmnist(path), SENSOR_SIZE


READERS: dict[str, Callable[[Path], tuple[np.ndarray, SensorSize]]] = {
    ".bin": _read_nmnist_bin,
}


def read_events(path) -> tuple[np.ndarray, SensorSize]:
    """The events of the file at ``path`` and its sensor size, the format chosen by suffix."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise DataError(path, f"unknown event file format {path.suffix!r} (known: {known})")
    if not path.is_file():
        raise DataError(path, "no such file")
    return reader(path)
