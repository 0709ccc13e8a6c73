"""The step runtime: one input through the compiled layers in time steps, the dense model's semantics.

Layer by layer, each layer drains the per-step event queues of its sources (the input's
SpikeEvents first) through evsim.engine.kernels and fills its own queue, so the result equals the
dense forward. A :class:`Workspace` holds every layer's state and queues, preallocated once per
thread and reused across inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evsim.engine import kernels
from evsim.engine.counting import LayerCounts, RunResult
from evsim.engine.layers import Layer, LayerState
from evsim.events import SpikeEvents
from evsim.model.graph import INPUT


@dataclass
class Workspace:
    """Preallocated state and queues of every layer, reused across the inputs one thread runs."""

    states: list[LayerState]
    out_index: list[np.ndarray]
    out_offsets: list[np.ndarray]
    ones: np.ndarray

    @classmethod
    def allocate(cls, layers: list[Layer], timesteps: int, dtype) -> "Workspace":
        out_index, out_offsets = [], []
        capacity = 1
        for layer in layers:
            # a neuron fires at most once per step, so T * size bounds a layer's queue
            cap = timesteps * layer.size if layer.fires else 1
            capacity = max(capacity, cap)
            out_index.append(np.zeros(cap + layer.unit, dtype=np.int32))  # + slack for kernels._fire
            out_offsets.append(np.zeros(timesteps + 1, dtype=np.int64))
        states = [LayerState.allocate(layer, dtype, np.int64) for layer in layers]
        return cls(states, out_index, out_offsets, np.ones(capacity, dtype=dtype))


def leak_table(layer: Layer, timesteps: int, dtype) -> np.ndarray:
    """``leak ** gap`` for every whole number of steps, built by repeated multiplication as the
    dense model leaks (so that the two agree to the last bit)."""
    return np.cumprod(np.r_[1.0, np.full(timesteps, layer.leak)]).astype(dtype)


def run_steps(layers: list[Layer], leak_tables: list[np.ndarray], ws: Workspace, events: SpikeEvents,
              timesteps: int, record_spikes: bool = False) -> RunResult:
    """Simulate validated input ``events`` through ``layers``; the output and per-layer counters."""
    queues: dict[str, SpikeEvents] = {INPUT: events}
    counts = []
    spike_counts = {}
    output = None
    for i, layer in enumerate(layers):
        ev_offsets, ev_index, ev_sign = gather(queues, layer.sources)
        state = ws.states[i]
        state.reset()
        counters = np.zeros(kernels.COUNTER_COLUMNS, dtype=np.int64)
        n_out = kernels.run_population_steps(
            state.V, layer.unit, state.t_last, state.stamp, state.touched, leak_tables[i], math.log(layer.leak),
            layer.threshold, layer.fires, layer.projections, layer.weights, layer.routes,
            ev_offsets, ev_index, ev_sign, ws.out_index[i], ws.out_offsets[i], counters,
        )
        if layer.fires:
            queues[layer.name] = SpikeEvents(ws.out_offsets[i], ws.out_index[i][:n_out], ws.ones[:n_out])
            if record_spikes:
                spike_counts[layer.name] = _to_chw_counts(ws.out_index[i][:n_out], layer)
        else:
            kernels.leak_to(state.V, state.t_last, layer.unit, timesteps, math.log(layer.leak))
            output = state.V.astype(np.float64) / timesteps
        counts.append(LayerCounts.from_counters(layer, counters, timesteps))
    return RunResult(output=output, layers=counts, spike_counts=spike_counts, input_events=len(events))


def gather(queues: dict[str, SpikeEvents], sources: tuple[str, ...]):
    """The events of a layer's sources as one table of per-projection step offsets."""
    if len(sources) == 1:
        ev = queues[sources[0]]
        return ev.step_offsets[None, :], ev.index, ev.sign
    parts = [queues[s] for s in sources]
    bases = np.cumsum([0] + [len(p.index) for p in parts[:-1]])
    offsets = np.stack([p.step_offsets + b for p, b in zip(parts, bases)])
    return offsets, np.concatenate([p.index for p in parts]), np.concatenate([p.sign for p in parts])


def _to_chw_counts(index: np.ndarray, layer: Layer) -> np.ndarray:
    c, h, w = layer.chw
    counts = np.bincount(index, minlength=layer.size).reshape(h, w, c).transpose(2, 0, 1)
    return counts.reshape(layer.shape)
