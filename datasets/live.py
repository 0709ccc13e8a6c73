"""Live event streams: AEDAT 4.0 over TCP, as iniVation's DV software and dv-processing serve them.

A camera does not hand over files: DV's network output (and ``dv_processing.io.NetworkWriter``)
serves its event stream over TCP, and :class:`LiveStream` reads it through dv-processing's own
client, ``dv_processing.io.NetworkReader``, as chunks of ``EVENT_DTYPE`` events, like an event
file's :meth:`~evsim.datasets.formats.EventFile.chunks`. The sensor size comes from the stream's
own description.

What a live source adds to a file is time. Events keep arriving while the engine works, so the
source counts what it has *received* (drained from the connection) and *handed on* to the engine,
and the *lag*: how far, in stream time, the newest event handed on is behind the newest received.
For a sender at the camera's pace that is how far evsim runs behind the camera. With
``max_lag_us`` set, when the lag would exceed it the oldest unprocessed events are dropped (and
counted) so that the prediction follows the scene; without it every event is kept and the lag grows.

The AEDAT 4.0 network protocol has no end-of-stream message: a server that stops and a server
that dies both close the connection, and the stream ends with what arrived (``end`` is
``"closed"``). A connection that goes silent for ``timeout_s`` while open is taken as lost: a
:class:`~evsim.errors.DataError` after everything received was handed on.

:func:`serve_events` is the other side, for tests and for trying evsim without a camera: it
serves an event array through a ``NetworkWriter`` on a local address at its recorded pace, or
``speed`` times faster.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from evsim.events import EVENT_DTYPE
from evsim.errors import DataError, InputError, require

SCHEME = "tcp://"
POLL_S = 0.001
IDLE_YIELD_S = 0.05  # how often a waiting source yields an empty chunk, so that Ctrl-C is seen
DEFAULT_TIMEOUT_S = 10.0
LINGER_S = 1.0
_WRITERS: list = []  # see serve_events: never destroyed while the process runs


def is_stream_address(text) -> bool:
    return isinstance(text, str) and text.startswith(SCHEME)


def parse_address(text: str) -> tuple[str, int]:
    """``tcp://HOST:PORT`` -> (host, port), or an InputError that shows the form."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise InputError(f"{text!r} is not a stream address: use tcp://HOST:PORT, e.g. tcp://127.0.0.1:7777")
    return parts.hostname, port


def _dv():
    return require("dv_processing", "live", "live event streams (tcp://HOST:PORT)")


def _events_from_store(store) -> np.ndarray:
    """A dv.EventStore as an EVENT_DTYPE array (dv's polarity is 0/1, as tonic's)."""
    raw = store.numpy()
    events = np.empty(len(raw), dtype=EVENT_DTYPE)
    events["t"], events["x"], events["y"] = raw["timestamp"], raw["x"], raw["y"]
    events["p"] = raw["polarity"] != 0
    return events


@dataclass
class LiveCounts:
    """What a live source has seen so far; times are the stream's µs."""

    received: int = 0
    handed_on: int = 0
    dropped: int = 0
    newest_received_us: int | None = None
    newest_handed_on_us: int | None = None

    @property
    def lag_us(self) -> int:
        if self.newest_received_us is None or self.newest_handed_on_us is None:
            return 0
        return self.newest_received_us - self.newest_handed_on_us

    def as_dict(self) -> dict:
        return {"received": self.received, "processed": self.handed_on, "dropped": self.dropped,
                "lag_us": self.lag_us}


class LiveStream:
    """A live AEDAT 4.0 event stream at ``tcp://HOST:PORT``, read in chunks as it arrives."""

    format = "AEDAT 4.0 live stream (dv-processing)"
    sensor_size_from = "stream's description"

    def __init__(self, address: str, timeout_s: float = DEFAULT_TIMEOUT_S, max_lag_us: float | None = None):
        if timeout_s <= 0:
            raise InputError(f"the stream timeout must be positive, got {timeout_s}")
        if max_lag_us is not None and max_lag_us < 0:
            raise InputError(f"the maximum lag must be at least 0, got {max_lag_us}")
        self.path = address  # named as an EventFile's, which a report reads
        host, port = parse_address(address)
        dv = _dv()
        try:
            self._reader = dv.io.NetworkReader(host, port)
        except RuntimeError as exc:  # boost's message: "connect: Connection refused [system:111 at ...]"
            reason = str(exc).split(" [", 1)[0]
            raise DataError(f"no event stream there ({reason})", address) from None
        if not self._reader.isEventStreamAvailable():
            raise DataError("the server streams no events (only frames, IMU or triggers)", address)
        width, height = self._reader.getEventResolution()
        self.sensor_size = (int(width), int(height), 2)
        self.camera = self._reader.getCameraName()
        self.timeout_s = float(timeout_s)
        self.max_lag_us = max_lag_us
        self.counts = LiveCounts()
        self.end: str | None = None  # "closed" once the server closed the connection
        self._pending: deque[np.ndarray] = deque()  # appended by the receiving thread alone
        self._failure: Exception | None = None
        self._closing, self._received_all = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._receive, name="evsim-live-receiver", daemon=True)
        self._thread.start()

    def progress(self) -> dict:
        return self.counts.as_dict()

    def _receive(self) -> None:
        """The receiving thread: drains the connection as data comes (dv's reader discards what
        it holds once the connection closes), until it closes or :meth:`close` is called."""
        try:
            while not self._closing.is_set():
                store = self._reader.getNextEventBatch()
                if store is None:
                    if not self._reader.isRunning():
                        return
                    time.sleep(POLL_S)
                elif len(store):
                    events = _events_from_store(store)
                    self._pending.append(events)
                    self.counts.received += len(events)
                    self.counts.newest_received_us = int(events["t"][-1])
        except Exception as exc:  # a broken packet: the consumer raises it as a DataError
            self._failure = exc
        finally:
            self._received_all.set()

    def close(self) -> None:
        self._closing.set()
        self._thread.join()

    def _drop_late(self) -> None:
        """Drop the oldest unprocessed events that are more than ``max_lag_us`` behind the newest."""
        if self.max_lag_us is None or not self._pending:
            return
        oldest_kept = self.counts.newest_received_us - self.max_lag_us
        while self._pending and self._pending[0]["t"][-1] < oldest_kept:
            self.counts.dropped += len(self._pending.popleft())
        if self._pending:
            first = self._pending[0]
            cut = int(np.searchsorted(first["t"], oldest_kept, side="left"))
            if cut:
                self.counts.dropped += cut
                self._pending[0] = first[cut:]

    def _take(self, chunk_events: int) -> np.ndarray:
        taken, n = [], 0
        while self._pending and n < chunk_events:
            events = self._pending.popleft()
            if n + len(events) > chunk_events:
                events, rest = events[: chunk_events - n], events[chunk_events - n :]
                self._pending.appendleft(rest)
            taken.append(events)
            n += len(events)
        chunk = np.concatenate(taken) if len(taken) > 1 else taken[0]
        self.counts.handed_on += len(chunk)
        self.counts.newest_handed_on_us = int(chunk["t"][-1])
        return chunk

    def chunks(self, chunk_events: int = 1 << 16) -> Iterator[np.ndarray]:
        """Event arrays as they arrive, each at most ``chunk_events`` long, time-sorted.

        While nothing arrives, an empty array every 50 ms: the consumer can stop between chunks
        (Ctrl-C) without waiting for the next event.
        """
        if chunk_events < 1:
            raise InputError(f"chunk_events must be positive, got {chunk_events}")
        last_event = time.monotonic()
        last_yield = last_event
        try:
            while True:
                closed = self._received_all.is_set()  # read before the queue: nothing arrives after
                self._drop_late()
                now = time.monotonic()
                if self._pending:
                    last_event = last_yield = now
                    yield self._take(chunk_events)
                    continue
                if closed:
                    if self._failure is not None:
                        raise DataError(f"the stream broke: {self._failure}", self.path)
                    self.end = "closed"
                    return
                if now - last_event > self.timeout_s:
                    raise DataError(f"no event for {self.timeout_s:g} s while connected: "
                                    "the connection is taken as lost", self.path)
                if now - last_yield > IDLE_YIELD_S:
                    last_yield = now
                    yield np.empty(0, dtype=EVENT_DTYPE)
                time.sleep(POLL_S)
        finally:
            self.close()


def serve_events(events: np.ndarray, sensor_size, host: str, port: int, speed: float = 1.0,
                 packet_us: int = 1000, wait_for_client_s: float = 30.0, name: str = "evsim",
                 on_listening=None, linger_s: float = LINGER_S) -> int:
    """Serve ``events`` (EVENT_DTYPE) as a live AEDAT 4.0 stream on ``host:port``: wait for one
    client, then send one packet per ``packet_us`` of recording time, at ``speed`` times the
    recorded pace (``speed`` 0: as fast as possible). Returns the events sent.

    ``on_listening()`` is called once the port is bound; the connection stays open ``linger_s``
    after the last packet (dv's reader drops what it has not parsed when the connection closes).
    dv-processing's ``NetworkWriter`` (2.0.4) never returns from its destructor once a client has
    connected, so the writer is kept until the process ends: run this in a process of its own and
    end it with ``os._exit`` when this returns (which closes the connection).
    """
    if speed < 0:
        raise InputError(f"the speed must be at least 0, got {speed}")
    dv = _dv()
    packets = _packets(dv, events, packet_us)  # built before the clock starts
    width, height = int(sensor_size[0]), int(sensor_size[1])
    try:
        writer = dv.io.NetworkWriter(host, port, dv.io.Stream.EventStream(0, "events", name, (width, height)))
    except RuntimeError as exc:
        raise DataError(f"cannot serve there ({str(exc).split(' [', 1)[0]})", f"{SCHEME}{host}:{port}") from None
    _WRITERS.append(writer)
    if on_listening is not None:
        on_listening()
    deadline = time.monotonic() + wait_for_client_s
    while writer.getClientCount() == 0:
        if time.monotonic() > deadline:
            raise DataError(f"no client connected within {wait_for_client_s:g} s", f"{SCHEME}{host}:{port}")
        time.sleep(POLL_S)
    started = time.monotonic()
    for offset_us, store in packets:
        if speed > 0:
            time.sleep(max(0.0, started + offset_us * 1e-6 / speed - time.monotonic()))
        writer.writeEvents(store)
    while writer.getQueuedPacketCount() > 0:  # let the last packets leave before the caller exits
        time.sleep(POLL_S)
    time.sleep(linger_s)
    return len(events)


def _packets(dv, events: np.ndarray, packet_us: int) -> list:
    """(offset from the first event in µs, dv.EventStore) per ``packet_us`` of recording time."""
    if len(events) == 0:
        return []
    t = events["t"].astype(np.int64)
    edges = np.r_[np.searchsorted(t, np.arange(t[0], t[-1] + 1, packet_us), side="left"), len(t)]
    packets = []
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        if start == stop:
            continue
        store = dv.EventStore()
        for x, y, stamp, p in zip(events["x"][start:stop].tolist(), events["y"][start:stop].tolist(),
                                  t[start:stop].tolist(), events["p"][start:stop].tolist(), strict=True):
            store.push_back(stamp, x, y, p)
        packets.append((int(t[start] - t[0]), store))
    return packets
