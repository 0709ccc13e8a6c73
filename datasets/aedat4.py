"""AEDAT 4.0 (iniVation DV) event files, read packet by packet through the ``aedat`` package.

A file is the magic line ``#!AER-DAT4.0\\r\\n``, an int32 header size and a flatbuffer header
(compression, the XML stream descriptions), then packets: int32 stream id, int32 byte size, an
LZ4- or Zstd-compressed flatbuffer. ``aedat`` (the Rust decoder that ``tonic.io.read_aedat4``
uses) decodes one packet at a time, so a recording streams in bounded memory; tonic's function
itself concatenates the whole file and does not return the sensor size, so we call ``aedat``
directly, choosing the event stream as tonic does (the lowest stream id of type ``events``).

``aedat`` reports damage without a byte offset ("failed to fill whole buffer"), so we walk the
packet framing beside it: when decoding fails after ``k`` packets, packet ``k``'s offset is where
the damage is. Timestamps are Unix-epoch microseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evsim.events import EVENT_DTYPE
from evsim.errors import DataError, require

MAGIC = b"#!AER-DAT4.0\r\n"
PACKET_HEADER = struct.Struct("<ii")


@dataclass(frozen=True)
class Aedat4Info:
    stream_id: int
    sensor_size: tuple[int, int]  # (width, height)


def _decoder(path: Path):
    aedat = require("aedat", "data", "reading AEDAT 4.0 files")
    _header_end(path)  # the header's size field checked before the decoder allocates it
    try:
        return aedat.Decoder(str(path))
    except Exception as exc:  # aedat raises plain exceptions for any header problem
        raise DataError(f"not a readable AEDAT 4.0 file ({exc})", path, 0) from None


def probe_aedat4(path: Path) -> Aedat4Info:
    """The event stream's id and sensor size from the header's stream descriptions."""
    streams = _decoder(path).id_to_stream()
    event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
    if not event_ids:
        kinds = ", ".join(sorted({str(s.get("type")) for s in streams.values()})) or "none"
        raise DataError(f"the AEDAT 4.0 file holds no event stream (streams: {kinds})", path)
    stream = streams[event_ids[0]]
    width, height = stream.get("width"), stream.get("height")
    if not width or not height:
        raise DataError("the AEDAT 4.0 event stream does not state its sensor size", path)
    return Aedat4Info(event_ids[0], (int(width), int(height)))


class _PacketWalk:
    """Byte offsets of the packets, read from the framing as the decoder moves through the file."""

    def __init__(self, path: Path):
        self.path = path
        self.size = path.stat().st_size
        self.offset = _header_end(path)  # of the next packet
        self.end = _data_table_position(path, self.offset)  # the decoder stops there: the file's index follows

    def advance(self, fh) -> None:
        fh.seek(self.offset)
        _, size = PACKET_HEADER.unpack(fh.read(PACKET_HEADER.size))
        self.offset += PACKET_HEADER.size + size

    def check_next(self, fh) -> None:
        """Refuse the next packet if its size field claims more bytes than the file holds, before
        the decoder allocates a buffer of that size."""
        error = self.oversized(fh)
        if error is not None:
            raise error

    def oversized(self, fh) -> DataError | None:
        if self.end is not None and self.offset >= self.end:
            return None
        fh.seek(self.offset)
        head = fh.read(PACKET_HEADER.size)
        if len(head) < PACKET_HEADER.size:
            return None
        stream_id, size = PACKET_HEADER.unpack(head)
        remaining = self.size - self.offset - PACKET_HEADER.size
        if size < 0 or size > remaining:
            return DataError(
                f"the file ends inside a packet of stream {stream_id}: it declares {size} bytes, "
                f"{remaining} remain (cut short?)",
                self.path,
                self.offset,
            )
        return None

    def describe_failure(self, fh, exc: Exception) -> DataError:
        fh.seek(self.offset)
        head = fh.read(PACKET_HEADER.size)
        if len(head) < PACKET_HEADER.size:
            return DataError(f"the file ends inside a packet header (cut short?; aedat: {exc})", self.path, self.offset)
        stream_id, _ = PACKET_HEADER.unpack(head)
        return self.oversized(fh) or DataError(f"cannot decode the packet of stream {stream_id} here ({exc})", self.path,
                                               self.offset)


def _data_table_position(path: Path, header_end: int) -> int | None:
    """The header's ``dataTablePosition`` (field 1 of the IOHeader flatbuffer), where the packets
    end; None if the file has none (-1) or the header does not parse (the decoder then refuses it)."""
    with open(path, "rb") as fh:
        fh.seek(len(MAGIC) + 4)
        buf = fh.read(header_end - len(MAGIC) - 4)
    try:
        (table,) = struct.unpack_from("<I", buf, 0)
        vtable = table - struct.unpack_from("<i", buf, table)[0]
        (vtable_size,) = struct.unpack_from("<H", buf, vtable)
        (field,) = struct.unpack_from("<H", buf, vtable + 6) if vtable_size > 6 else (0,)
        position = struct.unpack_from("<q", buf, table + field)[0] if field else -1
    except struct.error:
        return None
    return position if position >= header_end else None


def _header_end(path: Path) -> int:
    """The offset after the file header; DataError if the magic line is missing or the header's
    size field is negative or larger than the file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or not head.startswith(MAGIC):
        raise DataError("does not start with the AEDAT 4.0 magic line #!AER-DAT4.0", path, 0)
    (header_size,) = struct.unpack("<i", head[len(MAGIC):])
    if header_size < 0 or len(head) + header_size > size:
        raise DataError(f"the header declares {header_size} bytes, the file has {size - len(head)} after "
                        "its size field (cut short or damaged)", path, len(MAGIC))
    return len(head) + header_size


def iter_aedat4_chunks(path: Path, info: Aedat4Info, chunk_events: int):
    """The event stream's events in arrays of at most ``chunk_events``, checked as they come.

    On damage, the events of the good packets before it are yielded, then the DataError raised.
    """
    pending: list[np.ndarray] = []
    pending_count = 0
    try:
        for events in _iter_packets(path, info):
            pending.append(events)
            pending_count += len(events)
            if pending_count >= chunk_events:
                merged = np.concatenate(pending)
                cut = len(merged) - len(merged) % chunk_events
                yield merged[:cut]
                pending, pending_count = [merged[cut:]], len(merged) - cut
    except DataError as error:
        if pending_count:
            yield np.concatenate(pending)
        raise error
    if pending_count:
        yield np.concatenate(pending)


def _iter_packets(path: Path, info: Aedat4Info):
    width, height = info.sensor_size
    walk = _PacketWalk(path)
    decoder = _decoder(path)
    last_t = None
    with open(path, "rb") as fh:
        packets = iter(decoder)
        while True:
            packet_offset = walk.offset
            walk.check_next(fh)
            try:
                packet = next(packets)
            except StopIteration:
                return
            except Exception as exc:  # aedat's errors carry no type of their own
                raise walk.describe_failure(fh, exc) from None
            walk.advance(fh)
            if packet.get("stream_id") != info.stream_id or "events" not in packet:
                continue
            raw = packet["events"]
            events = np.empty(len(raw), dtype=EVENT_DTYPE)
            events["t"] = raw["t"].astype(np.int64)
            events["x"] = raw["x"]
            events["y"] = raw["y"]
            events["p"] = raw["on"]
            _check_packet(path, events, raw, width, height, last_t, packet_offset)
            if len(events):
                last_t = int(events["t"][-1])
            yield events


def _check_packet(path, events, raw, width, height, last_t, offset) -> None:
    outside = (raw["x"] >= width) | (raw["y"] >= height)
    if outside.any():
        k = int(np.argmax(outside))
        raise DataError(
            f"event {k} of the packet here lies at x={int(raw['x'][k])}, y={int(raw['y'][k])}, "
            f"outside the {width}x{height} sensor; the file is damaged",
            path,
            offset,
        )
    t = events["t"]
    back = np.diff(t, prepend=t[:1] if last_t is None else last_t) < 0
    if back.any():
        k = int(np.argmax(back))
        raise DataError(f"event {k} of the packet here goes back in time; the file is damaged", path, offset)
