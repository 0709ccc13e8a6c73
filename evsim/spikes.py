"""Spike events in the engine's form, and the conversions from what users hold.

:class:`SpikeEvents` is one population's events over a window as a bucket queue: CSR by time step,
each event a channels-last neuron index and a sign (+1, or -1 for bipolar inputs). Inputs arrive
as tonic event arrays, binned events (datasets.events.BinnedEvents), or dense spike trains
``[T, C, H, W]`` (Poisson-coded images); :func:`to_spike_events` turns each into SpikeEvents and
validates it against the input shape, since the kernels do not bounds-check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evsim.datasets.events import BinnedEvents, bin_events
from evsim.errors import InputError


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


def channels_last_index(c, y, x, shape) -> np.ndarray:
    """Channels-last neuron index of ``(c, y, x)`` in a ``(C, H, W)`` population."""
    channels, _, width = shape
    return ((np.asarray(y, np.int64) * width + x) * channels + c).astype(np.int32)


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
        if not {"x", "y", "t", "p"} <= set(inputs.dtype.names):
            raise InputError(f"an event array needs fields x, y, t, p; got {inputs.dtype.names}")
        channels, height, width = input_shape
        sensor = encoding.get("sensor_size", (width, height, channels))
        if tuple(sensor) != (width, height, channels):
            raise InputError(f"model sensor size {tuple(sensor)} does not match its input {tuple(input_shape)}")
        window = int(encoding.get("window_us", 300_000))
        events = from_binned(bin_events(inputs, (width, height, channels), timesteps, window), dtype)
    elif isinstance(inputs, np.ndarray):
        if tuple(inputs.shape[1:]) != tuple(input_shape):
            raise InputError(
                f"a spike train of shape {inputs.shape} does not fit input [T, {', '.join(map(str, input_shape))}]"
            )
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
