"""Asynchronous (continuous-time) simulation, fed chunk by chunk.

Events keep their microsecond timestamps end to end. A neuron's leak is applied lazily from the
time it was last touched as ``exp(-dt / tau)``, with ``tau`` the continuous-time equivalent of the
trained per-step leak ``lambda`` over the bin width ``dt_bin`` used in training::

    tau = -dt_bin / ln(lambda)        (lambda = 0.99, dt_bin = 3 ms  ->  tau ~ 298.5 ms)

so that ``exp(-dt_bin / tau) = lambda`` exactly. The threshold is tested on every arriving event
and a spike leaves at the time of the event that caused it (plus an optional per-layer delay,
default 0).

A neuron that fired is refractory for ``refractory_us`` (default ``dt_bin / 2``): charge that
reaches it meanwhile is discarded. This is the continuous-time counterpart of the trained
step-mode neuron, which fires at most once per step and loses whatever arrives in the rest of the
step after its threshold crossing - on average half a step. Without it an asynchronous neuron
fires on every crossing and the trained network runs with about twice the spikes (measured on
N-MNIST: 2.0x synops, accuracy 3.6 points lower; see benchmarks/RESULTS.md). Only such neurons
(reset to zero, one spike per step: ``Neuron.async_refractory``) get the refractory period; a
neuron that resets by subtraction or fires several spikes per step keeps in step mode the charge
that arrives after it fired, so here it keeps it too: at every arrival that reaches it, it fires
under its own rule (evsim.model.neuron: its spike count, its reset, its lower bound), and a
residual still above threshold fires at its next arrival. State (membranes, last-update times) carries over from one chunk to the next, so a
recording of any length streams in constant memory, and the result does not depend on where the
chunks are cut.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from evsim.engine import kernels
from evsim.engine.counting import LayerCounts, RunResult
from evsim.engine.layers import LayerState
from evsim.errors import InputError
from evsim.events import TimedEvents, check_fed, timed_input_events
from evsim.model.graph import INPUT

STATIC_STEP_US = 1000.0
"""Bin width given to Poisson-coded images in asynchronous mode (they have no clock of their own)."""


def step_width_us(network) -> float:
    """The bin width the network was trained with: window / T for events, 1 ms per step otherwise."""
    return network.encoding.step_us(network.timesteps) or STATIC_STEP_US


def input_window_us(network) -> float:
    """The model's input window in µs: its time steps times the step width."""
    return step_width_us(network) * network.timesteps


LEAK_TABLE_US = 1 << 16
"""Gaps of whole microseconds below this find their leak in a table (65 ms: most gaps on N-MNIST)."""


@functools.lru_cache(maxsize=32)
def leak_table_us(log_leak_per_us: float) -> np.ndarray:
    """The leak of every whole-microsecond gap (kernels.exp_table), built once per leak; read-only."""
    if log_leak_per_us == 0.0:
        return np.zeros(0)
    table = kernels.exp_table(log_leak_per_us, LEAK_TABLE_US)
    table.flags.writeable = False
    return table


def _concat(parts: list[TimedEvents]) -> TimedEvents:
    return TimedEvents(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("time", "index", "sign")))


class Stream:
    """A network's asynchronous state; :meth:`feed` time-sorted input chunks, then read it out."""

    def __init__(self, network, delays_us: dict[str, float] | None = None, refractory_us: float | None = None):
        self.network = network
        self.step_us = step_width_us(network)
        self.refractory_us = self.step_us / 2 if refractory_us is None else float(refractory_us)
        self.delays_us = {layer.name: float((delays_us or {}).get(layer.name, 0.0)) for layer in network.layers}
        dtype = network.dtype
        self.states = [LayerState.allocate(layer, dtype, np.float64) for layer in network.layers]
        self.refractory_end = [np.full(layer.size, -math.inf) for layer in network.layers]
        self.unit_refractory_end = [np.full(layer.units, -math.inf) for layer in network.layers]
        self.log_leak_per_us = [math.log(layer.neuron.leak) / self.step_us for layer in network.layers]
        self.leak_tables = [leak_table_us(log_leak) for log_leak in self.log_leak_per_us]
        self.counters = [np.zeros(kernels.COUNTER_COLUMNS, dtype=np.int64) for _ in network.layers]
        self.tag = 0
        self.time_us = 0.0
        self.input_events = 0
        self.first_time_us: float | None = None
        self._pending: TimedEvents | None = None  # the last timestamp's events, until it is complete
        # per layer and projection: events that arrived but may not run yet (see _process)
        self._no_events = TimedEvents(np.zeros(0), np.zeros(0, np.int32), np.zeros(0, dtype))
        self._held = [[self._no_events] * len(layer.sources) for layer in network.layers]
        # a chunk fed with ``hold``: its events not processed yet, and the time it was read up to
        self._waiting: TimedEvents | None = None
        self._waiting_end_us = -math.inf
        self.read_at_us: float | None = None  # the last advance_to
        self.window_end_us = input_window_us(network)
        self._window: RunResult | None = None

    def feed(self, events, flush: bool = False, hold: bool = False, end_us: float | None = None) -> None:
        """Process one chunk: tonic events (or TimedEvents), in time order after earlier chunks.

        Events sharing the chunk's last timestamp are held back until a later chunk (or
        :meth:`flush`) shows that no more arrive at that time: simultaneous events must arrive
        together, wherever the chunks are cut. ``flush=True`` then flushes, in one pass: what
        ``feed`` and :meth:`flush` do, for the end of a recording or a read-out.

        With ``hold`` the chunk (tonic events, read up to ``end_us``: its last event's time if
        not given) waits: :meth:`advance_to` feeds it up to each read-out time, the next ``feed``
        or :meth:`finish` feeds the rest, and the state at the model's window end is taken on the
        way (:meth:`window_result`). An event at or after a time shows that every event before it
        has arrived, so read-outs do not depend on how the chunks are cut.
        """
        self._settle()
        if hold:
            self._waiting = timed_input_events(events, self.network.input_shape, self.network.dtype)
            self._waiting_end_us = (float(end_us) if end_us is not None
                                    else float(self._waiting.time[-1]) if len(self._waiting) else -math.inf)
            return
        self._feed(events, flush)

    def _feed(self, events, flush: bool) -> None:
        last_time = self._pending.time[-1] if self._pending is not None else (self.time_us if self.input_events else -math.inf)
        if not isinstance(events, TimedEvents):
            events = timed_input_events(events, self.network.input_shape, self.network.dtype, last_time)
        elif len(events) and (np.any(np.diff(events.time) < 0) or events.time[0] < last_time):
            raise InputError("event timestamps must not decrease (within and across chunks)")
        if not len(events):
            if flush:
                self.flush()
            return
        if self._pending is not None:
            events = _concat([self._pending, events])
        if flush:
            self._pending = None
            self._process(events, horizon=math.inf)
            return
        cut = int(np.searchsorted(events.time, events.time[-1], side="left"))
        self._pending = events[cut:]
        self._process(events[:cut], horizon=float(events.time[-1]))

    def advance_to(self, time_us: float) -> None:
        """Every event before ``time_us`` has been fed: process the waiting chunk's events before
        it (taking the window's state if it ends by then); :meth:`output` then reads at ``time_us``."""
        if self._window is None and self.window_end_us <= time_us:
            self._take_window()
        self._feed_before(time_us)
        self.read_at_us = time_us

    def finish(self, end_us: float | None = None) -> RunResult:
        """The stream has ended (``end_us``: the last event read, None when there was none): the
        result of the whole stream, read out at ``end_us``, empty if no event arrived."""
        self._settle()
        # read out at the last event read, which a crop may have kept from the network
        result = self.result(at_us=float(end_us) if end_us is not None else None, allow_empty=True)
        if self._window is None and end_us is not None:  # the recording ended inside the window
            self._window = self.result(at_us=self.window_end_us, allow_empty=True)
        return result

    def window_result(self, allow_empty: bool = False) -> RunResult | None:
        """The state at the model's window end (``Network.run(events, mode="async")``'s result),
        once a read-out or :meth:`finish` has passed it with chunks fed with ``hold``; else None.
        An InputError if no event reached the network in the window, unless ``allow_empty``."""
        if self._window is not None and not allow_empty:
            check_fed(self._window.input_events, False)
        return self._window

    def facts(self) -> dict:
        """What this mode adds to a stream's report: nothing."""
        return {}

    def _feed_before(self, time_us: float) -> None:
        if self._waiting is None:
            return
        cut = int(np.searchsorted(self._waiting.time, time_us, side="left"))
        self._feed(self._waiting[:cut], flush=True)  # every event before time_us is here
        self._waiting = self._waiting[cut:]

    def _take_window(self) -> None:
        self._feed_before(self.window_end_us)
        self._window = self.result(at_us=self.window_end_us, allow_empty=True)

    def _settle(self) -> None:
        """A waiting chunk's read-outs are done: take the window if the chunk reached its end,
        and feed the rest of the chunk."""
        if self._waiting is None:
            return
        if self._window is None and self.window_end_us <= self._waiting_end_us:
            self._take_window()
        waiting, self._waiting = self._waiting, None
        self._feed(waiting, flush=False)

    def flush(self) -> None:
        """Process every event held back by :meth:`feed` (the stream has ended or paused)."""
        pending, self._pending = self._pending, None
        if pending is not None or any(len(held) for layer in self._held for held in layer):
            self._process(pending if pending is not None else self._no_events, horizon=math.inf)

    def _process(self, events: TimedEvents, horizon: float) -> None:
        """Run the input ``events``, all earlier than ``horizon``, the time before which the input
        is complete.

        A layer runs only the arrivals earlier than its *horizon*, the time before which every
        source has delivered all it ever will: the input's horizon, and for a layer's output its
        sources' smallest horizon plus its own delay. The rest waits for a later call. With
        unequal delays along the paths into a population, a later chunk can bring spikes older
        than ones already here; they must still merge in time order, so that the result does not
        depend on where the chunks are cut.
        """
        if len(events):
            if self.first_time_us is None:
                self.first_time_us = float(events.time[0])
            self.input_events += len(events)
            self.time_us = max(self.time_us, float(events.time[-1]))
        arrived, horizons = {INPUT: events}, {INPUT: horizon}
        for i, layer in enumerate(self.network.layers):
            ready_before = min(horizons[s] for s in layer.sources)
            ready = []
            for q, source in enumerate(layer.sources):
                queue = _concat([self._held[i][q], arrived[source]]) if len(self._held[i][q]) else arrived[source]
                cut = int(np.searchsorted(queue.time, ready_before, side="left"))
                ready.append(queue[:cut])
                self._held[i][q] = queue[cut:]
            arrived[layer.name] = self._run_layer(i, layer, ready)
            horizons[layer.name] = ready_before + self.delays_us[layer.name]

    def _run_layer(self, i: int, layer, sources: list[TimedEvents]) -> TimedEvents:
        if not any(len(s) for s in sources):
            # nothing arrives: the kernel would change nothing (leaks are applied on the next touch)
            return self._no_events
        if len(sources) == 1:
            merged = sources[0]
            bounds = np.array([[0, len(merged)]], dtype=np.int64)
        else:
            merged = _concat(sources)
            sizes = np.array([len(s) for s in sources], dtype=np.int64)
            ends = np.cumsum(sizes)
            bounds = np.stack([ends - sizes, ends], axis=1)
        time, index, sign = merged.time, merged.index, merged.sign
        heads = bounds[:, 0].copy()
        fires = layer.neuron.fires
        capacity = max(1024, 4 * len(index)) if fires else 1
        parts = []
        state = self.states[i]
        refractory_us = self.refractory_us if layer.neuron.async_refractory else 0.0
        while True:
            out_time = np.empty(capacity + layer.unit, dtype=np.float64)  # + slack for kernels._fire
            out_index = np.empty(capacity + layer.unit, dtype=np.int32)
            out_count = np.empty(capacity + layer.unit, dtype=self.network.dtype)
            n, self.tag = kernels.run_population_async(
                state.V, layer.unit, state.t_last, state.stamp, state.touched, self.tag,
                self.leak_tables[i], self.log_leak_per_us[i], *layer.firing, fires, self.delays_us[layer.name],
                refractory_us, self.refractory_end[i], self.unit_refractory_end[i],
                layer.projections, layer.weights, layer.routes, bounds, heads, time, index, sign,
                out_time, out_index, out_count, self.counters[i],
            )
            parts.append(TimedEvents(out_time[:n], out_index[:n], out_count[:n]))
            if (heads >= bounds[:, 1]).all():
                break
            capacity *= 2
        if not fires:
            return self._no_events
        return parts[0] if len(parts) == 1 else _concat(parts)

    def output(self, at_us: float | None = None) -> np.ndarray:
        """The output membranes leaked to ``at_us`` (default: the last :meth:`advance_to`, else the
        last event), divided by T.

        Events held back by :meth:`feed` are not included; :meth:`result` flushes them first.
        """
        at = at_us if at_us is not None else self.read_at_us if self.read_at_us is not None else self.time_us
        last = len(self.network.layers) - 1
        state = self.states[last]
        V = state.V.astype(np.float64)
        decay = np.exp(self.log_leak_per_us[last] * np.maximum(at - state.t_last, 0.0))
        return V * decay / self.network.timesteps

    def result(self, at_us: float | None = None, allow_empty: bool = False) -> RunResult:
        """Counters and output so far (held-back events are processed first). Before any event
        has reached the network there is no answer: an InputError, unless ``allow_empty``."""
        self.flush()
        check_fed(self.input_events, allow_empty)
        layers = [
            LayerCounts.from_counters(layer, counters, self.network.timesteps)
            for layer, counters in zip(self.network.layers, self.counters)
        ]
        return RunResult(output=self.output(at_us), layers=layers, input_events=self.input_events)
