"""Event arrays and the one binning that both halves of evsim use.

Events are numpy structured arrays in tonic's dtype (``x``, ``y``, ``t`` in microseconds, ``p``).
:func:`time_bins` is the single place where a timestamp becomes a time step: the trainer's dense
frames (:func:`to_frames`) and the engine's per-step event lists (:func:`bin_events`) are both
derived from it, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evsim.errors import DataError, InputError

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
"""tonic's event dtype (``tonic.io.events_struct``)."""

DEFAULT_WINDOW_US = 300_000


def make_events(x, y, t, p) -> np.ndarray:
    """A structured event array from four equal-length sequences."""
    x = np.asarray(x)
    events = np.empty(x.shape[0], dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x, y, t, p
    return events


def checked_coordinates(events: np.ndarray, sensor_size: tuple[int, int, int], what: str = "sensor"):
    """``x, y, p`` of ``events`` as int64, after checking that every event lies on the sensor
    ``(width, height, polarities)``: the kernels index arrays with them unchecked."""
    width, height, polarities = sensor_size
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    bad = (x < 0) | (x >= width) | (y < 0) | (y >= height) | (p < 0) | (p >= polarities)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"event {i} at x={x[i]}, y={y[i]}, p={p[i]} lies outside the {what} "
            f"{width}x{height}x{polarities}"
        )
    return x, y, p


def check_time_order(t: np.ndarray, last_t: int, path, byte_offset, label: str, consequence: str) -> None:
    """Raise DataError at the first timestamp below its predecessor (``last_t`` before the first).

    ``byte_offset(k)`` gives the file offset of event ``k``, for the message.
    """
    back = np.diff(t, prepend=last_t) < 0
    if back.any():
        k = int(np.argmax(back))
        before = last_t if k == 0 else int(t[k - 1])
        raise DataError(path, f"{label} {int(t[k])} µs comes after {before} µs; {consequence}", byte_offset(k))


def time_bins(t: np.ndarray, timesteps: int, window_us: int = DEFAULT_WINDOW_US) -> np.ndarray:
    """The time step of each timestamp: ``T`` equal bins over ``[0, window_us)``; -1 outside it."""
    if timesteps < 1 or window_us < 1:
        raise InputError(f"need timesteps >= 1 and window_us >= 1, got {timesteps}, {window_us}")
    t = np.asarray(t, dtype=np.int64)
    steps = (t * timesteps) // window_us
    steps[(t < 0) | (t >= window_us)] = -1
    return steps


@dataclass(frozen=True)
class BinnedEvents:
    """Events grouped by time step, in step order (a bucket queue in CSR form).

    The events of step ``s`` are ``channel/y/x[step_offsets[s]:step_offsets[s + 1]]``; the channel
    is the polarity (0 = OFF, 1 = ON) and every event has sign +1.
    """

    step_offsets: np.ndarray
    channel: np.ndarray
    y: np.ndarray
    x: np.ndarray
    shape: tuple[int, int, int]  # (channels, height, width) of the frames

    @property
    def timesteps(self) -> int:
        return len(self.step_offsets) - 1

    def step(self, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = self.step_offsets[s], self.step_offsets[s + 1]
        return self.channel[lo:hi], self.y[lo:hi], self.x[lo:hi]


def bin_events(
    events: np.ndarray,
    sensor_size: tuple[int, int, int] = (34, 34, 2),
    timesteps: int = 100,
    window_us: int = DEFAULT_WINDOW_US,
) -> BinnedEvents:
    """Group ``events`` into ``timesteps`` bins of ``window_us / timesteps`` each.

    ``sensor_size`` is tonic's ``(width, height, polarities)``. Events past the window are dropped;
    events outside the sensor are an error, never silently clipped.
    """
    width, height, polarities = sensor_size
    x, y, p = checked_coordinates(events, sensor_size)
    steps = time_bins(events["t"], timesteps, window_us)
    keep = steps >= 0
    steps = steps[keep]
    order = np.argsort(steps, kind="stable")
    steps = steps[order]
    offsets = np.searchsorted(steps, np.arange(timesteps + 1), side="left").astype(np.int64)
    return BinnedEvents(
        step_offsets=offsets,
        channel=p[keep][order].astype(np.int32),
        y=y[keep][order].astype(np.int32),
        x=x[keep][order].astype(np.int32),
        shape=(polarities, height, width),
    )


def to_frames(binned: BinnedEvents, dtype=np.float32) -> np.ndarray:
    """Dense event-count frames ``[T, channels, height, width]`` for the trainer."""
    frames = np.zeros((binned.timesteps, *binned.shape), dtype=dtype)
    steps = np.repeat(np.arange(binned.timesteps), np.diff(binned.step_offsets))
    np.add.at(frames, (steps, binned.channel, binned.y, binned.x), 1)
    return frames
