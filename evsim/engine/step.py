"""The step runtime: one input through the compiled layers in time steps, the dense model's semantics.

Layer by layer, each layer drains the per-step event queues of its sources (the input's
SpikeEvents first) through evsim.engine.kernels and fills its own queue, so the result equals the
dense forward. A :class:`Workspace` holds every layer's state and queues, preallocated once and
reused across inputs: the Network keeps them in a free list that its threads and streams draw from.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np

from evsim.engine import kernels
from evsim.engine.counting import LayerCounts, RunResult
from evsim.engine.layers import Layer, LayerState
from evsim.errors import InputError
from evsim.events import SpikeEvents, check_fed, time_bins, timed_input_events
from evsim.model.graph import INPUT


@dataclass
class Workspace:
    """Preallocated state and queues of every layer, reused input after input by whichever thread
    holds it (``Network.workspace``), and the order in which :func:`run_layers` runs the layers
    (see :func:`layer_passes`)."""

    states: list[LayerState]
    out_index: list[np.ndarray]
    out_offsets: list[np.ndarray]
    out_count: list[np.ndarray]  # the spike count of each output event (1 but for multi-spike neurons)
    passes: tuple[tuple[int, bool], ...]

    @classmethod
    def allocate(cls, layers: list[Layer], timesteps: int, dtype) -> "Workspace":
        out_index, out_offsets, out_count = [], [], []
        for layer in layers:
            # a neuron emits at most one event per step (its spike count rides on it), so T * size
            # bounds a layer's queue
            cap = timesteps * layer.size if layer.neuron.fires else 1
            out_index.append(np.zeros(cap + layer.unit, dtype=np.int32))  # + slack for kernels._fire_neurons
            out_count.append(np.zeros(cap + layer.unit, dtype=dtype))
            out_offsets.append(np.zeros(timesteps + 1, dtype=np.int64))
        states = [LayerState.allocate(layer, dtype, np.int64) for layer in layers]
        return cls(states, out_index, out_offsets, out_count, layer_passes(layers))


def leak_table(layer: Layer, timesteps: int, dtype) -> np.ndarray:
    """``leak ** gap`` for every whole number of steps, built by repeated multiplication as the
    dense model leaks (so that the two agree to the last bit)."""
    return np.cumprod(np.r_[1.0, np.full(timesteps, layer.neuron.leak)]).astype(dtype)


def run_steps(layers: list[Layer], leak_tables: list[np.ndarray], ws: Workspace, events: SpikeEvents,
              timesteps: int, record_spikes: bool = False) -> RunResult:
    """Simulate validated input ``events`` through ``layers``; the output and per-layer counters."""
    queues: dict[str, SpikeEvents] = {INPUT: events}
    for state in ws.states:
        state.reset()
    counters = [np.zeros(kernels.COUNTER_COLUMNS, dtype=np.int64) for _ in layers]
    run_layers(layers, leak_tables, ws, queues, counters, timesteps)
    spike_counts = {}
    output = None
    for i, layer in enumerate(layers):
        if not layer.neuron.fires:
            state = ws.states[i]
            kernels.leak_to(state.V, state.t_last, layer.unit, timesteps, math.log(layer.neuron.leak))
            output = state.V.astype(np.float64) / timesteps
        elif record_spikes:
            spike_counts[layer.name] = _to_chw_counts(queues[layer.name].index, queues[layer.name].sign, layer)
    counts = [LayerCounts.from_counters(layer, c, timesteps) for layer, c in zip(layers, counters)]
    return RunResult(output=output, layers=counts, spike_counts=spike_counts, input_events=len(events))


def run_layers(layers: list[Layer], tables: list[np.ndarray], ws: Workspace, queues: dict[str, SpikeEvents],
               counters: list[np.ndarray], steps: int, t0: int = 0) -> None:
    """Every layer in turn over the ``steps`` steps of ``queues`` (which holds the input's), the
    network's steps ``t0 .. t0 + steps - 1``; each firing layer's spikes go into ``queues``, its
    counts into ``counters``.

    A tiled pooling fed by the layer before it alone runs in that layer's pass
    (kernels.run_population_steps_pooled): the same results, one pass less over the spikes.
    """
    for i, pooled in ws.passes:
        layer, state = layers[i], ws.states[i]
        if pooled:
            pool, pool_state = layers[i + 1], ws.states[i + 1]
            ev_offsets, ev_index, ev_sign = gather(queues, layer.sources)
            n_out, n_pool = kernels.run_population_steps_pooled(
                state.V, layer.unit, state.t_last, state.stamp, state.touched, t0, tables[i], math.log(layer.neuron.leak),
                layer.neuron.threshold, layer.projections, layer.weights, layer.routes, ev_offsets, ev_index, ev_sign,
                ws.out_index[i], ws.out_count[i], ws.out_offsets[i], counters[i],
                pool_state.V, pool_state.t_last, pool_state.stamp, pool_state.touched, tables[i + 1],
                math.log(pool.neuron.leak), pool.neuron.threshold, pool.routes, pool_share_of(pool),
                ws.out_index[i + 1], ws.out_count[i + 1], ws.out_offsets[i + 1], counters[i + 1],
            )
            queues[layer.name] = _queue(ws, i, n_out, steps)
            queues[pool.name] = _queue(ws, i + 1, n_pool, steps)
            continue
        n_out = run_layer(layer, state, t0, tables[i], queues, ws.out_index[i], ws.out_count[i], ws.out_offsets[i],
                          counters[i])
        if layer.neuron.fires:
            queues[layer.name] = _queue(ws, i, n_out, steps)


def layer_passes(layers: list[Layer]) -> tuple[tuple[int, bool], ...]:
    """The kernel calls that run ``layers``: ``(i, pooled)``, layer ``i`` alone or, when
    ``pooled``, with layer ``i + 1`` (:func:`pools_into_next`) in the same call."""
    passes, i = [], 0
    while i < len(layers):
        pooled = pools_into_next(layers, i)
        passes.append((i, pooled))
        i += 2 if pooled else 1
    return tuple(passes)


def pools_into_next(layers: list[Layer], i: int) -> bool:
    """Whether layer ``i + 1`` is a tiled pooling fed by layer ``i`` alone, both firing by the
    paper's rule (the kernels' fast path), whose per-spike adds are exact (kernels.exact_shares:
    the paper's pool neuron, a power-of-two window), so that the two can run in one pass."""
    if i + 1 >= len(layers):
        return False
    layer, pool = layers[i], layers[i + 1]
    rows = pool.projections
    return (layer.neuron.fires and pool.neuron.fires and _paper_rule(layer) and _paper_rule(pool)
            and pool.sources == (layer.name,) and len(rows) == 1 and pool.unit == 1
            and rows[0, kernels.P_OP] in (kernels.OP_AVGPOOL, kernels.OP_SUMPOOL)
            and rows[0, kernels.P_ROUTE_OFFSET] == 0
            and kernels.exact_shares(math.log(pool.neuron.leak), pool_divisor_of(pool)))


def _paper_rule(layer: Layer) -> bool:
    return bool(layer.rule[kernels.R_DEFAULT] != 0.0) and layer.thresholds.shape[0] == 0


def pool_divisor_of(pool: Layer) -> float:
    """What the window sums of a pooling layer (its first projection) are divided by, as
    kernels._drain divides them: kernels.window_divisor."""
    return kernels.window_divisor(int(pool.projections[0, kernels.P_OP]), int(pool.projections[0, kernels.P_KERNEL]))


def pool_share_of(pool: Layer) -> float:
    """What each spike adds to a pooling neuron in a fused pass (exact there: pools_into_next)."""
    return 1.0 / pool_divisor_of(pool)


def _queue(ws: Workspace, i: int, n_out: int, steps: int) -> SpikeEvents:
    return SpikeEvents(ws.out_offsets[i][: steps + 1], ws.out_index[i][:n_out], ws.out_count[i][:n_out])


def run_layer(layer: Layer, state: LayerState, t0: int, table: np.ndarray, queues: dict[str, SpikeEvents],
              out_index: np.ndarray, out_count: np.ndarray, out_offsets: np.ndarray, counters: np.ndarray) -> int:
    """One layer over the steps of its sources' queues (step ``t`` of the call is time ``t0 + t``
    of ``state``); fills ``out_index``/``out_count``/``out_offsets`` and adds to ``counters``; the
    number of output events."""
    ev_offsets, ev_index, ev_sign = gather(queues, layer.sources)
    return kernels.run_population_steps(
        state.V, layer.unit, state.t_last, state.stamp, state.touched, state.carry, t0, table, math.log(layer.neuron.leak),
        *layer.firing, layer.neuron.fires, layer.projections, layer.weights, layer.routes,
        ev_offsets, ev_index, ev_sign, out_index, out_count, out_offsets, counters,
    )


def gather(queues: dict[str, SpikeEvents], sources: tuple[str, ...]):
    """The events of a layer's sources as one table of per-projection step offsets."""
    if len(sources) == 1:
        ev = queues[sources[0]]
        return ev.step_offsets[None, :], ev.index, ev.sign
    parts = [queues[s] for s in sources]
    bases = np.cumsum([0] + [len(p.index) for p in parts[:-1]])
    offsets = np.stack([p.step_offsets + b for p, b in zip(parts, bases)])
    return offsets, np.concatenate([p.index for p in parts]), np.concatenate([p.sign for p in parts])


def _to_chw_counts(index: np.ndarray, count: np.ndarray, layer: Layer) -> np.ndarray:
    c, h, w = layer.chw
    spikes = np.rint(np.bincount(index, weights=count, minlength=layer.size)).astype(np.int64)
    counts = spikes.reshape(h, w, c).transpose(2, 0, 1)
    return counts.reshape(layer.shape)


class StepStream:
    """A network's step-mode state fed by events as they arrive: ``evsim run``'s step mode, online.

    Each event goes to the time step its time since ``origin_us`` falls in (the binning of
    :func:`evsim.events.time_bins`, so ``T`` steps of ``window_us / T``, continued past the window
    for longer recordings). A step runs, through every layer, once its bin has closed: when an
    event of a later step arrives, :meth:`advance_to` says no earlier event is left, or
    :meth:`flush` ends the stream. State carries over, so the result does not depend on how the
    events are cut into chunks, and memory stays constant: the open step's events wait, and the
    events of chunks fed with ``hold`` until :meth:`advance_to` runs their steps.
    Over the model's window (its first ``T`` steps) the spikes, counters and output are exactly
    those of ``Network.run(events, mode="step")`` on the same events: :meth:`window_result`.
    """

    def __init__(self, network, origin_us: int | None = None):
        self.network = network
        self.timesteps = network.timesteps
        self.window_us = network.encoding.window
        self.origin_us = origin_us
        self.max_batch = self.timesteps
        layers = network.layers
        # gaps within a batch stay below T + max_batch steps (see _catch_up), so one table serves
        self.tables = [leak_table(layer, self.timesteps + self.max_batch, network.dtype) for layer in layers]
        # a stream per recording would otherwise allocate (and page-fault) tens of MB each time
        self.ws = network.take_workspace()
        weakref.finalize(self, network.give_back_workspace, self.ws)
        for state in self.ws.states:
            state.reset()
        self.counters = [np.zeros(kernels.COUNTER_COLUMNS, dtype=np.int64) for _ in layers]
        self.steps_done = 0  # steps 0 .. steps_done - 1 have run
        self.input_events = 0  # events that reached the network
        self.dropped_events = 0  # events before the origin
        self.last_time_us = -math.inf
        self._pending_step = -1  # the step still open, and its events
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._window: RunResult | None = None

    # --- input ------------------------------------------------------------------------------

    def feed(self, events: np.ndarray, hold: bool = False, end_us: float | None = None) -> None:
        """Take one chunk of tonic events, in time order after the earlier chunks; run every
        step that closes. With ``hold`` the events are only queued: the steps run at
        :meth:`advance_to`, :meth:`flush` or :meth:`finish`, which lets a caller read out between
        steps of a chunk it validated and binned once (results do not depend on when steps run).
        ``end_us``, the time the chunk was read up to, is the streams' common interface
        (evsim.engine.asynchronous.Stream takes the window at it); a step closes by its events."""
        timed = timed_input_events(events, self.network.input_shape, self.network.dtype, self.last_time_us)
        if not len(timed):
            return
        self.last_time_us = float(timed.time[-1])
        t = np.asarray(events["t"], dtype=np.int64)
        if self.origin_us is None:
            self.origin_us = int(t[0])
        steps = self.steps_of(t)
        keep = steps >= 0
        self.dropped_events += int(np.count_nonzero(~keep))
        if not keep.all():
            steps, index, sign = steps[keep], timed.index[keep], timed.sign[keep]
        else:
            index, sign = timed.index, timed.sign
        if not len(steps):
            return
        self._queue(steps, index, sign, run=not hold)

    def steps_of(self, t: np.ndarray) -> np.ndarray:
        """The time step of each timestamp (µs on the events' clock); -1 before the origin."""
        rel = np.asarray(t, dtype=np.int64) - self.origin_us
        # time_bins over enough whole windows to hold every event: m windows of T steps bin
        # exactly as one window does ((t * T * m) // (W * m) == (t * T) // W)
        windows = max(1, int(rel.max(initial=0)) // self.window_us + 1)
        return time_bins(rel, self.timesteps * windows, self.window_us * windows)

    def advance_to(self, time_us: float) -> None:
        """Every event before ``time_us`` has been fed: run the steps that end by then."""
        if self.origin_us is None:
            return
        step = int(self.steps_of(np.array([math.floor(time_us)]))[0])
        if step > self.steps_done:
            self._run_until(step)

    def flush(self) -> None:
        """The stream has ended: run the open step (the last, partial bin, as ``evsim run`` runs it)."""
        if self._pending_step >= 0:
            self._run_until(self._pending_step + 1)

    def finish(self, end_us: float | None = None) -> RunResult:
        """The stream has ended (``end_us``: the last event read, as the asynchronous stream takes
        it): :meth:`flush`, then the result of the whole stream, empty if no event arrived."""
        self.flush()
        return self.result(allow_empty=True)

    # --- output -----------------------------------------------------------------------------

    def output(self, at_step: int | None = None) -> np.ndarray:
        """The output layer's membranes after step ``at_step - 1`` (default: every step run so
        far), divided by T, as ``evsim run`` reads them out."""
        at = self.steps_done if at_step is None else at_step
        layer = self.network.layers[-1]
        state = self.ws.states[-1]
        V, t_last = state.V.copy(), state.t_last.copy()
        kernels.leak_to(V, t_last, layer.unit, at, math.log(layer.neuron.leak))
        return V.astype(np.float64) / self.timesteps

    def result(self, allow_empty: bool = False) -> RunResult:
        """Counters of every step run, and the output at the end (the window's end at the earliest,
        as ``evsim run`` reads a recording shorter than the window). Call :meth:`flush` first.
        Before any event has reached the network there is no answer: an InputError, unless
        ``allow_empty``."""
        check_fed(self.input_events, allow_empty)
        return self._result(max(self.steps_done, self.timesteps), self.counters, self.input_events)

    def window_result(self, allow_empty: bool = False) -> RunResult:
        """The model's window (steps 0 .. T - 1) alone: ``Network.run(events, mode="step")``'s result."""
        if self._window is not None:
            return self._window
        check_fed(self.input_events, allow_empty)
        return self._result(self.timesteps, self.counters, self.input_events)

    def facts(self) -> dict:
        """What this mode adds to a stream's report: the steps run."""
        return {"steps": self.steps_done}

    def _result(self, at_step: int, counters, input_events: int) -> RunResult:
        layers = [LayerCounts.from_counters(layer, c, self.timesteps) for layer, c in zip(self.network.layers, counters)]
        return RunResult(output=self.output(at_step), layers=layers, input_events=input_events)

    # --- running steps ----------------------------------------------------------------------

    def _queue(self, steps: np.ndarray, index: np.ndarray, sign: np.ndarray, run: bool) -> None:
        if steps[0] < self.steps_done:  # only after advance_to() was told wrong
            raise InputError("events arrived for a time step that had already run")
        self._pending.append((steps, index, sign))
        self._pending_step = last = int(steps[-1])
        if run and last > self.steps_done:
            self._run_until(last)  # events come in time order: every step before the last has closed

    def _run_until(self, end: int) -> None:
        """Run steps ``steps_done .. end - 1`` with the queued events of those steps."""
        if not self._pending:
            steps = np.zeros(0, np.int64)
            index, sign = np.zeros(0, np.int32), np.zeros(0, self.network.dtype)
        elif len(self._pending) == 1:
            steps, index, sign = self._pending[0]
        else:
            steps, index, sign = (np.concatenate(part) for part in zip(*self._pending))
        cut = int(np.searchsorted(steps, end, side="left"))
        rest = (steps[cut:], index[cut:], sign[cut:])
        self._pending = [rest] if len(rest[0]) else []
        if not self._pending:
            self._pending_step = -1
        steps, index, sign = steps[:cut], index[:cut], sign[:cut]
        start = self.steps_done
        while start < end:
            # batches of at most max_batch steps, split at the window's end for window_result()
            stop = min(end, start + self.max_batch)
            if start < self.timesteps < stop:
                stop = self.timesteps
            lo, hi = np.searchsorted(steps, [start, stop], side="left")
            self._run_batch(start, stop, steps[lo:hi], index[lo:hi], sign[lo:hi])
            start = stop

    def _run_batch(self, start: int, stop: int, steps, index, sign) -> None:
        offsets = np.searchsorted(steps, np.arange(start, stop + 1), side="left").astype(np.int64)
        queues: dict[str, SpikeEvents] = {INPUT: SpikeEvents(offsets, index, sign)}
        self._catch_up(start)
        run_layers(self.network.layers, self.tables, self.ws, queues, self.counters, stop - start, t0=start)
        self.input_events += len(index)
        self.steps_done = stop
        if stop == self.timesteps:
            self._window = self._result(self.timesteps, [c.copy() for c in self.counters], self.input_events)

    def _catch_up(self, start: int) -> None:
        """Past the window, leak units idle for more than T steps up to ``start - T``, so that
        every gap the kernel sees fits its leak table (inside the window none is that old)."""
        if start <= self.timesteps:
            return
        for layer, state in zip(self.network.layers, self.ws.states):
            stale = state.t_last < start - self.timesteps
            if stale.any():
                gaps = (start - self.timesteps) - state.t_last[stale]
                V = state.V.reshape(-1, layer.unit)
                V[stale] *= np.power(layer.neuron.leak, gaps.astype(np.float64))[:, None].astype(V.dtype)
                state.t_last[stale] = start - self.timesteps
