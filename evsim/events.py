"""Every form events take in evsim, and the conversions between them.

- Raw events: numpy structured arrays in tonic's dtype (:data:`EVENT_DTYPE`: ``x``, ``y``, ``t``
  in microseconds, ``p``), as the dataset readers (evsim.datasets) produce them.
- :class:`BinnedEvents`: raw events grouped by time step. :func:`time_bins` is the single place
  where a timestamp becomes a time step: the trainer's dense frames (:func:`to_frames`) and the
  engine's per-step event lists (:func:`bin_events`) are both derived from it, so the two cannot
  disagree.
- :class:`SpikeEvents`: one population's events over a window in the step engine's form, a bucket
  queue (CSR by time step) of channels-last neuron indices and signs (+1, or -1 for bipolar
  inputs). :func:`to_spike_events` turns raw events, binned events or dense spike trains
  ``[T, C, H, W]`` (Poisson-coded images) into it and validates it against the input shape,
  since the kernels do not bounds-check.
- :class:`TimedEvents`: time-sorted events with float µs timestamps, the asynchronous engine's form.

A network input ``(C, H, W)`` and a sensor ``(width, height, polarities)`` correspond through
:func:`sensor_size`; a pixel's neuron is :func:`channels_last_index`. Both are defined only here.
"""

from __future__ import annotations

import math
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


# --- the engine's forms -------------------------------------------------------------------


def sensor_size(input_shape) -> tuple[int, int, int]:
    """The sensor ``(width, height, polarities)`` whose events feed an input ``(C, H, W)``."""
    channels, height, width = input_shape
    return int(width), int(height), int(channels)


def channels_last_index(c, y, x, shape) -> np.ndarray:
    """Channels-last neuron index of ``(c, y, x)`` in a ``(C, H, W)`` population."""
    channels, _, width = shape
    return ((np.asarray(y, np.int64) * width + x) * channels + c).astype(np.int32)


def _check_event_fields(events: np.ndarray, what: str) -> None:
    if events.dtype.names is None or not {"x", "y", "t", "p"} <= set(events.dtype.names):
        raise InputError(f"{what} needs events with fields x, y, t, p; got {events.dtype.names}")


def check_spike_train(train: np.ndarray, input_shape, timesteps: int | None = None) -> None:
    """A dense spike train must be ``[T, C, H, W]`` with the input's ``(C, H, W)`` (and ``T``, when given)."""
    if tuple(train.shape[1:]) != tuple(input_shape) or (timesteps is not None and train.shape[0] != timesteps):
        steps = "T" if timesteps is None else f"T={timesteps}"
        raise InputError(
            f"a spike train of shape {train.shape} does not fit input [{steps}, {', '.join(map(str, input_shape))}]"
        )


@dataclass(frozen=True)
class SpikeEvents:
    step_offsets: np.ndarray  # int64 [T + 1]
    index: np.ndarray  # int32, channels-last neuron index
    sign: np.ndarray  # float, +1 or -1

    @property
    def timesteps(self) -> int:
        return len(self.step_offsets) - 1

    def __len__(self) -> int:
        return int(self.step_offsets[-1])

    def steps(self) -> np.ndarray:
        """The time step of every event."""
        return np.repeat(np.arange(self.timesteps), np.diff(self.step_offsets))


def from_spike_train(train: np.ndarray, dtype=np.float64) -> SpikeEvents:
    """Events of a dense train ``[T, C, H, W]``; a count ``n`` becomes ``|n|`` events of its sign."""
    train = np.asarray(train)
    if train.ndim != 4:
        raise InputError(f"a spike train must be [T, C, H, W], got shape {train.shape}")
    if not np.issubdtype(train.dtype, np.integer):
        rounded = np.rint(train)
        if not np.array_equal(rounded, train) or not np.all(np.isfinite(train)):
            raise InputError("a spike train must hold whole spike counts")
        train = rounded.astype(np.int64)
    timesteps = train.shape[0]
    # channels-last order within each step, so events are sorted by (step, neuron)
    flat = np.moveaxis(train, 1, -1).reshape(timesteps, -1)
    step, neuron = np.nonzero(flat)
    counts = flat[step, neuron].astype(np.int64)
    reps = np.abs(counts)
    step = np.repeat(step, reps)
    index = np.repeat(neuron, reps).astype(np.int32)
    sign = np.repeat(np.sign(counts), reps).astype(dtype)
    offsets = np.searchsorted(step, np.arange(timesteps + 1)).astype(np.int64)
    return SpikeEvents(offsets, index, sign)


def from_binned(binned: BinnedEvents, dtype=np.float64) -> SpikeEvents:
    index = channels_last_index(binned.channel, binned.y, binned.x, binned.shape)
    return SpikeEvents(binned.step_offsets.astype(np.int64), index, np.ones(len(index), dtype=dtype))


def to_spike_events(inputs, input_shape, timesteps: int, encoding: dict, dtype=np.float64) -> SpikeEvents:
    """Validate ``inputs`` against the network's input and convert them to SpikeEvents."""
    if isinstance(inputs, SpikeEvents):
        events = inputs
    elif isinstance(inputs, BinnedEvents):
        if tuple(inputs.shape) != tuple(input_shape):
            raise InputError(f"binned events of shape {inputs.shape} do not fit input {tuple(input_shape)}")
        events = from_binned(inputs, dtype)
    elif isinstance(inputs, np.ndarray) and inputs.dtype.names is not None:
        _check_event_fields(inputs, "an event array")
        sensor = sensor_size(input_shape)
        if tuple(encoding.get("sensor_size", sensor)) != sensor:
            raise InputError(
                f"model sensor size {tuple(encoding['sensor_size'])} does not match its input {tuple(input_shape)}"
            )
        window = int(encoding.get("window_us", DEFAULT_WINDOW_US))
        events = from_binned(bin_events(inputs, sensor, timesteps, window), dtype)
    elif isinstance(inputs, np.ndarray):
        check_spike_train(inputs, input_shape)
        events = from_spike_train(inputs, dtype)
    else:
        raise InputError(f"cannot run a network on {type(inputs).__name__}")
    check_spike_events(events, int(np.prod(input_shape)), timesteps)
    if events.sign.dtype != dtype:
        events = SpikeEvents(events.step_offsets, events.index, events.sign.astype(dtype))
    return events


def check_spike_events(events: SpikeEvents, n_neurons: int, timesteps: int) -> None:
    offsets = np.asarray(events.step_offsets)
    if events.timesteps != timesteps:
        raise InputError(f"input has {events.timesteps} time steps, the network runs {timesteps}")
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != len(events.index):
        raise InputError("step offsets must start at 0, never decrease, and end at the event count")
    if len(events.sign) != len(events.index):
        raise InputError("every event needs one index and one sign")
    if len(events.index) and (events.index.min() < 0 or events.index.max() >= n_neurons):
        raise InputError(f"event neuron index outside the input's {n_neurons} neurons")
    if len(events.sign) and not np.all(np.abs(events.sign) == 1):
        raise InputError("event signs must be +1 or -1")


@dataclass
class TimedEvents:
    """Time-sorted events: time in µs (float64), channels-last neuron index, sign."""

    time: np.ndarray
    index: np.ndarray
    sign: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def timed_input_events(events: np.ndarray, input_shape, dtype, last_time: float = -math.inf) -> TimedEvents:
    """Validate a chunk of tonic events against the input and convert it for the kernels."""
    _check_event_fields(events, "asynchronous mode")
    x, y, p = checked_coordinates(events, sensor_size(input_shape), what="input")
    t = events["t"].astype(np.float64)
    if len(t) and (np.any(np.diff(t) < 0) or t[0] < last_time):
        raise InputError("event timestamps must not decrease (within and across chunks)")
    index = channels_last_index(p, y, x, input_shape)
    return TimedEvents(t, index, np.ones(len(index), dtype=dtype))


def timed_spike_train(train: np.ndarray, step_us: float, dtype) -> TimedEvents:
    """A dense spike train ``[T, C, H, W]`` as timed events at the start of each step."""
    events = from_spike_train(train, dtype)
    return TimedEvents(events.steps() * step_us, events.index, events.sign)
