"""Every form events take in evsim, and the conversions between them.

- Raw events: numpy structured arrays in tonic's dtype (:data:`EVENT_DTYPE`: ``x``, ``y``, ``t``
  in microseconds, ``p``), as the dataset readers (evsim.datasets) produce them.
- The input window: :func:`window_events` is the one definition of which events of a sample a
  model sees. Time starts at the sample's first event unless the caller passes an origin, and the
  window lasts the model's ``window_us``; it reports what it read, used and dropped and why
  (:class:`WindowCounts`). The trainer's frames, both engine modes and the streaming path all
  take their events through it.
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
from evsim.model.encoding import DEFAULT_WINDOW_US, Encoding

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
"""tonic's event dtype (``tonic.io.events_struct``)."""

def make_events(x, y, t, p) -> np.ndarray:
    """A structured event array from four equal-length sequences."""
    x = np.asarray(x)
    check_whole_microseconds(t)
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
    wrong_polarity = (p < 0) | (p >= polarities)
    if wrong_polarity.any():
        # a polarity is not a place on the sensor: say what the convention is (other libraries use -1/+1)
        i = int(np.flatnonzero(wrong_polarity)[0])
        allowed = "0 (OFF) or 1 (ON)" if polarities == 2 else f"0 .. {polarities - 1}"
        raise InputError(
            f"event {i} has polarity p={p[i]}; evsim takes p = {allowed}, as tonic does "
            "(convert -1/+1 polarities with p = p > 0)"
        )
    bad = (x < 0) | (x >= width) | (y < 0) | (y >= height)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"event {i} at x={x[i]}, y={y[i]}, p={p[i]} lies outside the {what} "
            f"{width}x{height}x{polarities}; events of a larger sensor need cropping or downsampling first "
            f"(tonic.transforms.CenterCrop(sensor_size, ({width}, {height})) or Downsample, as evsim stream's "
            "--crop and --downsample do)"
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
        raise DataError(f"{label} {int(t[k])} µs comes after {before} µs; {consequence}", path, byte_offset(k))


@dataclass(frozen=True)
class WindowCounts:
    """What the input window did to one sample's events.

    ``read``: events in the sample; ``used``: events inside the window, the ones the network
    sees; ``dropped``: the rest by reason (``"before_origin"``, ``"after_window"``), only the
    reasons that dropped any. ``origin_us`` is the time 0 of the window on the sample's own clock
    (None when there were no events, or for inputs with no clock such as spike trains).
    """

    read: int
    used: int
    dropped: dict
    origin_us: int | None = None

    @classmethod
    def untimed(cls, count: int) -> "WindowCounts":
        """Inputs without a clock (spike trains, pre-binned events): every event is used."""
        return cls(read=int(count), used=int(count), dropped={})

    def to_dict(self) -> dict:
        # the keys every JSON output uses for these (README: JSON keys)
        return {"events": self.read, "input_events": self.used, "events_dropped": dict(self.dropped),
                "time_origin_us": self.origin_us}


def window_events(events: np.ndarray, window_us: float | None, origin_us: int | None = None):
    """The events inside the input window, with their times relative to its start, and the counts.

    The window starts at ``origin_us`` on the events' own clock, by default the first (earliest)
    event: recordings stamp time from a camera's start or the Unix epoch, so only the sample's own
    start is meaningful. It lasts ``window_us`` (None: no end). Events before the origin or at or
    after its end are dropped and counted, never silently.
    """
    _check_event_fields(events, "the input window")
    keep, relative, counts = _window(events["t"], window_us, origin_us)
    kept = events.copy() if keep is None else events[keep]
    kept["t"] = relative
    return kept, counts


def _window(t: np.ndarray, window_us: float | None, origin_us: int | None):
    """:func:`window_events` on timestamps alone: the mask of events kept (None: all), their times
    relative to the window's start, and the counts."""
    t = t.astype(np.int64)
    read = len(t)
    if read == 0:
        return None, t, WindowCounts(0, 0, {}, origin_us)
    origin = int(t.min()) if origin_us is None else int(origin_us)
    relative = t - origin
    before = relative < 0
    after = relative >= window_us if window_us is not None else np.zeros(read, dtype=bool)
    dropped = {reason: int(n) for reason, n in (("before_origin", before.sum()), ("after_window", after.sum())) if n}
    if not dropped:
        return None, relative, WindowCounts(read, read, {}, origin)
    keep = ~(before | after)
    return keep, relative[keep], WindowCounts(read, int(keep.sum()), dropped, origin)


def check_window_used(counts: WindowCounts, window_us: float | None) -> None:
    """A sample the network sees nothing of has no answer: refuse it rather than predict class 0."""
    if counts.read == 0:
        raise InputError("the sample holds no events: there is nothing to classify")
    if counts.used == 0:
        reasons = ", ".join(f"{n:,} {reason.replace('_', ' ')}" for reason, n in counts.dropped.items())
        span = "" if window_us is None else f" [{counts.origin_us:,}, {counts.origin_us + int(window_us):,}) µs"
        raise InputError(
            f"all {counts.read:,} events lie outside the input window{span} ({reasons}); "
            "time starts at the first event unless you pass origin_us"
        )


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
    window: WindowCounts | None = None  # what the input window kept (None: built by hand)

    @property
    def timesteps(self) -> int:
        return len(self.step_offsets) - 1


def bin_events(
    events: np.ndarray,
    sensor_size: tuple[int, int, int] = (34, 34, 2),
    timesteps: int = 100,
    window_us: int = DEFAULT_WINDOW_US,
    origin_us: int | None = None,
) -> BinnedEvents:
    """Group ``events`` into ``timesteps`` bins of ``window_us / timesteps`` each.

    ``sensor_size`` is tonic's ``(width, height, polarities)``. The window starts at the first
    event unless ``origin_us`` says otherwise (:func:`window_events`); events outside it are
    dropped and counted in ``window``. Events outside the sensor are an error, never clipped.
    """
    width, height, polarities = sensor_size
    _check_event_fields(events, "the input window")
    x, y, p = checked_coordinates(events, sensor_size)
    if timesteps < 1 or window_us < 1:
        raise InputError(f"need timesteps >= 1 and window_us >= 1, got {timesteps}, {window_us}")
    keep, relative, counts = _window(events["t"], window_us, origin_us)  # window_events, without the record copy
    if keep is not None:
        x, y, p = x[keep], y[keep], p[keep]
    steps = time_bins(relative, timesteps, window_us)
    order = np.argsort(steps, kind="stable")
    steps = steps[order]
    offsets = np.searchsorted(steps, np.arange(timesteps + 1), side="left").astype(np.int64)
    return BinnedEvents(
        step_offsets=offsets,
        channel=p[order].astype(np.int32),
        y=y[order].astype(np.int32),
        x=x[order].astype(np.int32),
        shape=(polarities, height, width),
        window=counts,
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
    check_whole_microseconds(events["t"])


def check_whole_microseconds(t) -> None:
    """Timestamps are whole microseconds: fractions (seconds as floats) would all truncate to 0."""
    t = np.asarray(t)
    if np.issubdtype(t.dtype, np.floating) and len(t) and not np.array_equal(t, np.floor(t)):
        i = int(np.flatnonzero(t != np.floor(t))[0])
        raise InputError(f"event {i} has t={t[i]:g}: evsim takes t in whole microseconds (µs); "
                         "for seconds multiply by 1,000,000, for milliseconds by 1,000")


CROWDED_STEPS = 2  # a recording whose events all fall into this many steps or fewer looks mis-scaled
CROWDED_MIN_EVENTS = 100  # fewer events may well be one short burst


def warn_if_crowded(steps: np.ndarray, timesteps: int) -> None:
    """Warn when many events all land in one or two of the model's steps: timestamps in ms or s
    read as µs do that, and the network then answers from almost nothing."""
    # steps are small non-negative integers: counting them is several times cheaper than np.unique
    occupied = np.flatnonzero(np.bincount(steps[steps >= 0]))
    if len(steps) >= CROWDED_MIN_EVENTS and timesteps > 2 * CROWDED_STEPS and len(occupied) <= CROWDED_STEPS:
        import warnings

        which = ", ".join(str(int(s)) for s in occupied)
        warnings.warn(f"all {len(steps):,} events fall into {len(occupied)} of the model's {timesteps} time steps "
                      f"(step {which}): evsim reads t in microseconds (µs); timestamps in milliseconds need "
                      "multiplying by 1,000, in seconds by 1,000,000", UserWarning, stacklevel=4)


def check_has_spikes(count: int) -> None:
    """An input with no spike at all has no answer: refuse it rather than predict class 0."""
    if count == 0:
        raise InputError("the input holds no spikes (all zero): there is nothing to classify")


def check_fed(input_events: int, allow_empty: bool = False) -> None:
    """A stream's result needs input: before any event reached the network it would say class 0."""
    if input_events == 0 and not allow_empty:
        raise InputError("no event has reached the network yet: feed events (and flush) before reading "
                         "the result; there is nothing to classify")


def check_spike_values(train: np.ndarray, encoding: dict) -> None:
    """Spike counts that the model's input coding can produce: event counts are never negative,
    and a Poisson-coded image spikes at most once per pixel and step (-1 only for colour images,
    which are normalised to [-1, 1])."""
    kind = encoding.get("kind") if encoding else None
    if kind not in ("events", "poisson") or not train.size:
        return
    low, high = int(train.min()), int(train.max())
    signed = kind == "poisson" and "normalisation" in encoding
    if low < 0 and not signed:
        what = "event counts" if kind == "events" else "spikes of images in [0, 1]"
        raise InputError(f"the spike train holds negative counts (down to {low}); the model's inputs are {what}, "
                         "never negative")
    if kind == "poisson" and max(high, -low) > 1:
        raise InputError(f"the spike train holds counts up to {max(high, -low)}; the model takes Poisson spikes, at "
                         "most one per pixel and step: pass spikes (evsim.datasets.encoding.poisson_spikes), not "
                         "pixel intensities")


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
    window: WindowCounts | None = None  # what the input window kept, for events with a clock

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
    return SpikeEvents(binned.step_offsets.astype(np.int64), index, np.ones(len(index), dtype=dtype), binned.window)


def to_spike_events(inputs, input_shape, timesteps: int, encoding: Encoding | dict, dtype=np.float64,
                    origin_us: int | None = None) -> SpikeEvents:
    """Validate ``inputs`` against the network's input and convert them to SpikeEvents.

    Raw events go through the model's input window (:func:`window_events`, starting at the first
    event unless ``origin_us`` is given); a sample with no event inside it is an InputError.
    """
    raw = isinstance(inputs, np.ndarray) and inputs.dtype.names is not None  # tonic events
    if isinstance(inputs, SpikeEvents):
        events = inputs
    elif isinstance(inputs, BinnedEvents):
        if tuple(inputs.shape) != tuple(input_shape):
            raise InputError(f"binned events of shape {inputs.shape} do not fit input {tuple(input_shape)}")
        events = from_binned(inputs, dtype)
    elif raw:
        _check_event_fields(inputs, "an event array")
        sensor = sensor_size(input_shape)
        encoding = Encoding.of(encoding)
        if (encoding.sensor_size or sensor) != sensor:
            raise InputError(f"model sensor size {encoding.sensor_size} does not match its input {tuple(input_shape)}")
        window = encoding.window
        binned = bin_events(inputs, sensor, timesteps, window, origin_us)
        check_window_used(binned.window, window)
        warn_if_crowded(np.repeat(np.arange(timesteps), np.diff(binned.step_offsets)), timesteps)
        events = from_binned(binned, dtype)  # valid by construction: bin_events checked every coordinate
    elif isinstance(inputs, np.ndarray):
        check_spike_train(inputs, input_shape)
        events = from_spike_train(inputs, dtype)
        check_spike_values(inputs, encoding)
    else:
        raise InputError(f"cannot run a network on {type(inputs).__name__}")
    if not raw:
        check_spike_events(events, int(np.prod(input_shape)), timesteps)
    check_has_spikes(len(events))
    if events.window is None:
        events = SpikeEvents(events.step_offsets, events.index, events.sign, WindowCounts.untimed(len(events)))
    if events.sign.dtype != dtype:
        events = SpikeEvents(events.step_offsets, events.index, events.sign.astype(dtype), events.window)
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

    def __getitem__(self, part: slice) -> "TimedEvents":
        return TimedEvents(self.time[part], self.index[part], self.sign[part])


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
