"""One entry point for event files of every format evsim reads.

- :func:`open_event_file` identifies a file's format and sensor size from its name and header,
- :meth:`EventFile.chunks` (of :func:`open_event_file`) decodes it in chunks, in bounded memory, whatever its length,
- :func:`read_events` returns all its events at once (for files that fit in memory).

Events come as ``EVENT_DTYPE`` arrays (tonic's), time-sorted, with the file's own timestamps;
sensor sizes are tonic's ``(width, height, polarities)``.

The file's suffix selects the format family and its header confirms it: a ``.raw`` says its EVT
version in its ``%`` header, an ``.aedat4`` starts with ``#!AER-DAT4.0``, a ``.dat`` with ``%``
lines and no EVT version, and an N-MNIST ``.bin`` has no header (its first byte, an x below 34,
can never be ``%`` or ``#``). A file whose header contradicts its suffix is refused with what the
header says, rather than decoded as something it is not.

| suffix    | format                          | sensor size from                                    |
| --------- | ------------------------------- | --------------------------------------------------- |
| .bin      | N-MNIST (40-bit records)        | the format: 34 x 34                                 |
| .aedat4   | AEDAT 4.0 (iniVation DV)        | the event stream's description in the header        |
| .dat      | Prophesee DAT                   | ``% Width``/``% Height`` lines, else the events:    |
|           |                                 | (max x + 1, max y + 1); N-CARS samples have none    |
| .raw      | Prophesee RAW EVT 2.0 / EVT 3.0 | ``% geometry``, ``% format``, or the plugin name     |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evsim.datasets import prophesee
from evsim.events import EVENT_DTYPE
from evsim.errors import DataError

SensorSize = tuple[int, int, int]
DEFAULT_CHUNK_EVENTS = 1 << 16
MAX_SENSOR_SIDE = 1 << 16
"""No event camera comes near it (the largest are 1280 x 720); a header that says more is damaged."""
HEAD_BYTES = 64

SUPPORTED_FORMATS = (
    (".bin", "N-MNIST"),
    (".aedat4", "AEDAT 4.0"),
    (".dat", "Prophesee DAT"),
    (".raw", "Prophesee RAW EVT 2.0 or EVT 3.0"),
)


def supported_formats() -> str:
    return ", ".join(f"{name} ({suffix})" for suffix, name in SUPPORTED_FORMATS)


@dataclass(frozen=True)
class EventFile:
    """An event file whose format and sensor size are known; :meth:`chunks` decodes it."""

    path: Path
    format: str
    sensor_size: SensorSize | None  # None: the header does not say (only a DAT file)
    sensor_size_from: str  # "format", "header" or "events"
    decode: Callable[[int], Iterator[np.ndarray]]  # chunk_events -> event arrays

    def chunks(self, chunk_events: int = DEFAULT_CHUNK_EVENTS) -> Iterator[np.ndarray]:
        """Time-sorted event arrays of at most ``chunk_events`` events each, none empty.

        A damaged file raises :class:`DataError` when the damaged part is reached, after the
        chunks before it were yielded.
        """
        if chunk_events < 1:
            raise DataError(f"chunk_events must be positive, got {chunk_events}", self.path)
        try:
            for events in self.decode(chunk_events):
                for start in range(0, len(events), chunk_events):
                    yield events[start : start + chunk_events]
        except OSError as exc:
            raise DataError(f"cannot read: {exc.strerror or exc}", self.path) from None


# --- what a file's first bytes say ---------------------------------------------------------


def _header_claim(path: Path, head: bytes) -> str | None:
    """The format the first bytes of a file claim, in words; None if they claim none."""
    if head.startswith(b"#!AER-DAT4.0"):
        return "AEDAT 4.0"
    if head.startswith(b"#!AER-DAT"):
        version = head[9:].split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
        return f"AEDAT {version}"
    if head.startswith(b"%"):
        with open(path, "rb") as fh:
            header = prophesee.read_header(path, fh)
        version = header.evt_version()
        return f"Prophesee RAW EVT {version}" if version else "Prophesee DAT"
    return None


FOREIGN_MAGIC = (
    (b"\x89PNG", "PNG image"), (b"\xff\xd8\xff", "JPEG image"), (b"GIF8", "GIF image"),
    (b"PK\x03\x04", "zip (or .npz)"), (b"\x1f\x8b", "gzip"), (b"\x93NUMPY", "numpy .npy"),
)
"""First bytes of common files that are not event files, to name what a misnamed file is."""


def _refuse(path: Path, suffix_says: str, header_says: str | None) -> DataError:
    if header_says is None and suffix_says.startswith("N-MNIST"):
        reason = (f"the name says {suffix_says} but its first record is not an N-MNIST event "
                  "(x and y must lie on the 34 x 34 sensor)")
    elif header_says is not None and header_says.startswith("it is"):
        reason = f"the name says {suffix_says} but {header_says}"
    elif header_says is None:
        reason = f"the name says {suffix_says} but the file does not start with that format's header"
    else:
        reason = f"the name says {suffix_says} but the header says {header_says}"
    return DataError(f"{reason} (supported: {supported_formats()})", path, 0)


# --- one opener per suffix ------------------------------------------------------------------


def _open_nmnist(path: Path, head: bytes) -> EventFile:
    from evsim.datasets.nmnist import SENSOR_SIZE

    claim = _header_claim(path, head)
    if claim is not None:
        raise _refuse(path, "N-MNIST (.bin)", claim)
    # No header to check, so check the first record: its x and y must lie on the 34 x 34 sensor
    # (y = 240 marks a timestamp overflow), as no other file's first bytes do by chance.
    if len(head) >= 2 and (head[0] >= SENSOR_SIZE[0] or (head[1] >= SENSOR_SIZE[1] and head[1] != 240)):
        looks = next((name for magic, name in FOREIGN_MAGIC if head.startswith(magic)), None)
        raise _refuse(path, "N-MNIST (.bin)", None if looks is None else f"it is a {looks} file")
    return EventFile(path, "N-MNIST", SENSOR_SIZE, "format", lambda n: _nmnist_chunks(path, n))


def _nmnist_chunks(path: Path, chunk_events: int) -> Iterator[np.ndarray]:
    from evsim.datasets.nmnist import RECORD_BYTES, decode_nmnist

    state = decode_nmnist(b"")
    seen = 0
    with open(path, "rb") as fh:
        while True:
            raw = fh.read(RECORD_BYTES * chunk_events)
            if not raw:
                break
            whole = len(raw) - len(raw) % RECORD_BYTES
            # the whole records before a cut go out first; decoding the rest raises the DataError
            for part in (raw[:whole], raw[whole:]):
                if part:
                    state = decode_nmnist(part, path, state.next_offset, state.time_offset, state.last_t)
                    seen += len(state.events)
                    if len(state.events):
                        yield state.events
    if state.next_offset == 0:
        raise DataError("file is empty; an N-MNIST recording holds at least one event", path)
    if seen == 0:
        raise DataError("file holds only timestamp overflow markers, no events", path)


def _open_aedat4(path: Path, head: bytes) -> EventFile:
    from evsim.datasets.aedat4 import iter_aedat4_chunks, probe_aedat4

    if not head.startswith(b"#!AER-DAT4.0"):
        raise _refuse(path, "AEDAT 4.0 (.aedat4)", _header_claim(path, head))
    info = probe_aedat4(path)
    return EventFile(path, "AEDAT 4.0", (*info.sensor_size, 2), "header",
                     lambda n: iter_aedat4_chunks(path, info, n))


def _open_dat(path: Path, head: bytes) -> EventFile:
    claim = _header_claim(path, head)
    if claim != "Prophesee DAT":
        raise _refuse(path, "Prophesee DAT (.dat)", claim)
    with open(path, "rb") as fh:
        header = prophesee.read_header(path, fh)
        type_and_size = fh.read(2)
    version = header.value("version")
    if version is not None and version.strip() != "2":
        raise DataError(f"DAT version {version} is not supported (only version 2)", path, 0)
    if len(type_and_size) < 2:
        raise DataError("the file ends after its header, without the event type and size bytes", path,
                        header.data_offset)
    event_type, event_size = type_and_size
    if event_type not in prophesee.DAT_EVENT_TYPES or event_size != prophesee.DAT_EVENT_BYTES:
        raise DataError(
            f"DAT event type {event_type} of {event_size} bytes is not supported (only the 8-byte "
            f"CD events, types {' and '.join(map(str, prophesee.DAT_EVENT_TYPES))})",
            path,
            header.data_offset,
        )
    size = header.sensor_size()
    data_offset = header.data_offset + 2
    return EventFile(
        path, "Prophesee DAT", None if size is None else (*size, 2), "header" if size else "events",
        lambda n: prophesee.iter_word_chunks(path, prophesee.DAT, data_offset, size, n),
    )


def _open_raw(path: Path, head: bytes) -> EventFile:
    claim = _header_claim(path, head)
    formats = {"Prophesee RAW EVT 2.0": prophesee.EVT2, "Prophesee RAW EVT 3.0": prophesee.EVT3}
    if claim is None or not claim.startswith("Prophesee"):
        raise _refuse(path, "Prophesee RAW (.raw)", claim)
    if claim == "Prophesee DAT":
        raise DataError("the '%' header of this .raw file does not say its event format "
                        f"(no '% evt' or '% format' line; supported: {supported_formats()})", path, 0)
    if claim not in formats:
        raise DataError(f"{claim} is not supported (supported: {supported_formats()})", path, 0)
    with open(path, "rb") as fh:
        header = prophesee.read_header(path, fh)
    size = header.sensor_size()
    if size is None:
        raise DataError("the header names no sensor size (no '% geometry', '% format ...;width=;height=' "
                        "or known camera plugin)", path, 0)
    fmt = formats[claim]
    return EventFile(path, claim, (*size, 2), "header",
                     lambda n: prophesee.iter_word_chunks(path, fmt, header.data_offset, size, n))


READERS: dict[str, Callable[[Path, bytes], EventFile]] = {
    ".bin": _open_nmnist,
    ".aedat4": _open_aedat4,
    ".dat": _open_dat,
    ".raw": _open_raw,
}


# --- the API ------------------------------------------------------------------------------


def open_event_file(path, infer_sensor_size: bool = True) -> EventFile:
    """The format and sensor size of the event file at ``path``, ready to decode.

    A DAT file whose header states no size gets it from its events (a pass over the file in
    bounded memory) unless ``infer_sensor_size`` is False, which leaves ``sensor_size`` None.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError("is a folder, not an event file (name one of its files; `evsim stream` also takes folders)", path)
    if not path.is_file():
        raise DataError("no such file", path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", path) from None
    opener = READERS.get(path.suffix.lower())
    if opener is None:
        claim = _header_claim(path, head)
        hint = f"; its header looks like {claim}" if claim else ""
        raise DataError(f"unknown event file format {path.suffix!r}{hint} (supported: {supported_formats()})", path)
    event_file = opener(path, head)
    if event_file.sensor_size is not None and max(event_file.sensor_size[:2]) > MAX_SENSOR_SIDE:
        width, height = event_file.sensor_size[:2]
        raise DataError(f"the header declares a {width}x{height} sensor; evsim reads sensors of at most "
                        f"{MAX_SENSOR_SIDE} pixels a side", path, 0)
    if event_file.sensor_size is None and infer_sensor_size:
        size = _size_from_events(event_file.chunks())
        event_file = EventFile(path, event_file.format, size, "events", event_file.decode)
    return event_file


def _size_from_events(chunks) -> SensorSize:
    """(max x + 1, max y + 1, 2) over all chunks: the smallest sensor the events fit."""
    width = height = 0
    for events in chunks:
        width = max(width, int(events["x"].max()) + 1)
        height = max(height, int(events["y"].max()) + 1)
    return width, height, 2


def read_events(path) -> tuple[np.ndarray, SensorSize]:
    """All events of the file at ``path`` and its sensor size ``(width, height, polarities)``."""
    event_file = open_event_file(path, infer_sensor_size=False)
    parts = list(event_file.chunks(DEFAULT_CHUNK_EVENTS))
    events = np.concatenate(parts) if parts else np.empty(0, dtype=EVENT_DTYPE)
    return events, event_file.sensor_size or _size_from_events(parts)

