"""The engine's object model: a Network of Layers built from a model file, and its run results.

A :class:`Layer` is one population of the graph with its incoming projections compiled into the
kernels' table form (evsim.kernels). :meth:`Network.run` feeds one input through the layers in
order, each layer draining the queues of its sources and filling its own.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evsim import kernels
from evsim.counting import LayerCounts, RunResult, dense_macs_per_step
from evsim.errors import InputError, ModelError
from evsim.graph import INPUT, Graph
from evsim.model_file import load_model, model_path
from evsim.spikes import SpikeEvents, to_spike_events

_OPS = {"conv": kernels.OP_CONV, "linear": kernels.OP_LINEAR, "avgpool": kernels.OP_AVGPOOL, "identity": kernels.OP_IDENTITY}


def as_chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


def engine_weight(op: str, weight: np.ndarray, source_shape: tuple[int, ...]) -> np.ndarray:
    """A trained weight in the kernels' layout (see evsim.kernels)."""
    if op == "conv":  # [C_out, C_in, K, K] -> [C_in, K, K (reversed), C_out]
        return np.ascontiguousarray(weight.transpose(1, 2, 3, 0)[:, :, ::-1, :])
    # linear: torch flattens the source in (C, H, W) order; the engine's neurons are channels-last
    c, h, w = as_chw(source_shape)
    n_out = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(n_out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, n_out))


@dataclass
class Layer:
    name: str
    kind: str
    shape: tuple[int, ...]
    threshold: float
    leak: float
    sources: tuple[str, ...]
    projections: np.ndarray  # [Q, kernels.PROJECTION_COLUMNS] int64
    weights: np.ndarray  # all projections' weights, flat
    routes: np.ndarray  # int32 lookup tables of tiled pooling projections, flat
    dense_macs_per_step: int

    @property
    def fires(self) -> bool:
        return self.kind != "output"

    @property
    def chw(self) -> tuple[int, int, int]:
        return as_chw(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def unit(self) -> int:
        """Neurons per touch unit: one pixel's channels, or single neurons when only pooling
        feeds the layer (a pooling event reaches one channel, so the rest need no test)."""
        if all(row[kernels.P_OP] == kernels.OP_AVGPOOL for row in self.projections):
            return 1
        return self.chw[0]

    @property
    def units(self) -> int:
        return self.size // self.unit


def compile_layer(graph: Graph, population, weights: dict[str, np.ndarray], dtype) -> Layer:
    table = np.zeros((len(population.inputs), kernels.PROJECTION_COLUMNS), dtype=np.int64)
    flat = []
    offset = 0
    routes = []
    route_offset = 0
    for q, proj in enumerate(population.inputs):
        src = as_chw(graph.shape_of(proj.source))
        dst = as_chw(population.shape)
        table[q, kernels.P_OP] = _OPS[proj.op]
        table[q, kernels.P_SRC_C : kernels.P_SRC_W + 1] = src
        table[q, kernels.P_DST_C : kernels.P_DST_W + 1] = dst
        table[q, kernels.P_KERNEL] = proj.kernel
        table[q, kernels.P_STRIDE] = proj.stride
        table[q, kernels.P_PADDING] = proj.padding
        table[q, kernels.P_WEIGHT_OFFSET] = offset
        table[q, kernels.P_ROUTE_OFFSET] = -1
        if proj.op == "avgpool" and proj.stride == proj.kernel:
            table[q, kernels.P_ROUTE_OFFSET] = route_offset
            routes.append(pooling_routes(src, dst, proj.kernel))
            route_offset += routes[-1].size
        if proj.weight is not None:
            w = engine_weight(proj.op, np.asarray(weights[proj.weight]), graph.shape_of(proj.source)).astype(dtype)
            flat.append(w.ravel())
            offset += w.size
    return Layer(
        name=population.name,
        kind=population.kind,
        shape=tuple(population.shape),
        threshold=population.threshold,
        leak=population.leak,
        sources=tuple(p.source for p in population.inputs),
        projections=table,
        weights=np.concatenate(flat) if flat else np.zeros(1, dtype=dtype),
        routes=np.concatenate(routes) if routes else np.zeros(1, dtype=np.int32),
        dense_macs_per_step=dense_macs_per_step(graph, population),
    )


def pooling_routes(src: tuple[int, int, int], dst: tuple[int, int, int], kernel: int) -> np.ndarray:
    """For tiled pooling: the channels-last index of each source neuron's target, or -1 where
    the source lies in the rows or columns that the windows cut off."""
    c, h, w = src
    _, oh, ow = dst
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    oy, ox = y // kernel, x // kernel
    target = (oy * ow + ox) * c + ch
    target[(oy >= oh) | (ox >= ow)] = -1
    return target.reshape(-1).astype(np.int32)


@dataclass
class _Workspace:
    """Preallocated state and queues of every layer, reused across the inputs one thread runs."""

    V: list = field(default_factory=list)
    t_last: list = field(default_factory=list)
    stamp: list = field(default_factory=list)
    touched_list: list = field(default_factory=list)
    out_index: list = field(default_factory=list)
    out_offsets: list = field(default_factory=list)
    ones: np.ndarray | None = None


class Network:
    """A trained spiking network ready for event-driven simulation."""

    def __init__(self, graph: Graph, weights: dict[str, np.ndarray], dtype=np.float32, name: str = ""):
        self.graph = graph
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ModelError(f"the engine runs in float32 or float64, not {self.dtype}")
        self.name = name
        self.layers = [compile_layer(graph, pop, weights, self.dtype) for pop in graph.populations]
        self.timesteps = graph.timesteps
        self._local = threading.local()
        # leak ** gap for every whole number of steps, built by repeated multiplication as the dense model leaks
        self._leak_table = [np.cumprod(np.r_[1.0, np.full(self.timesteps, layer.leak)]).astype(self.dtype) for layer in self.layers]

    @classmethod
    def from_file(cls, path_or_name, dtype=np.float32) -> "Network":
        """The model in a file, given as a path or as a bundled model's name."""
        path = model_path(path_or_name)
        model = load_model(path)
        return cls(model.graph, model.weights, dtype=dtype, name=path.stem)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.graph.input_shape

    @property
    def encoding(self) -> dict:
        return self.graph.encoding

    def __repr__(self) -> str:
        body = ", ".join(f"{l.name}:{l.kind}{list(l.shape)}" for l in self.layers)
        return f"Network({self.name or 'unnamed'}; input {list(self.input_shape)}; T={self.timesteps}; {body})"

    def _workspace(self) -> _Workspace:
        ws = getattr(self._local, "workspace", None)
        if ws is None:
            ws = _Workspace()
            capacity = 1
            for layer in self.layers:
                ws.V.append(np.zeros(layer.size, dtype=self.dtype))
                ws.t_last.append(np.zeros(layer.units, dtype=np.int64))
                ws.stamp.append(np.zeros(layer.units, dtype=np.int64))
                ws.touched_list.append(np.zeros(layer.units, dtype=np.int64))
                # a neuron fires at most once per step, so T * size bounds a layer's queue
                cap = self.timesteps * layer.size if layer.fires else 1
                capacity = max(capacity, cap)
                ws.out_index.append(np.zeros(cap + layer.unit, dtype=np.int32))  # + slack for kernels._fire
                ws.out_offsets.append(np.zeros(self.timesteps + 1, dtype=np.int64))
            ws.ones = np.ones(capacity, dtype=self.dtype)
            self._local.workspace = ws
        return ws

    def encode(self, inputs) -> SpikeEvents:
        """Validate and convert an input (events, binned events, spike train) to input events."""
        return to_spike_events(inputs, self.input_shape, self.timesteps, self.encoding, self.dtype)

    def run(self, inputs, mode: str = "step", record_spikes: bool = False) -> RunResult:
        """Simulate one input event-driven; return prediction, output and counters.

        ``mode="step"`` runs in time steps, the dense model's semantics (its result equals the
        dense forward); ``mode="async"`` runs in continuous time (evsim.stream). With
        ``record_spikes`` (step mode) the result also holds every layer's per-neuron spike counts
        in the graph's ``(C, H, W)`` layout (``result.spike_counts``).
        """
        if mode == "async":
            return self._run_async(inputs)
        if mode != "step":
            raise InputError(f"unknown mode {mode!r}; choose step or async")
        events = self.encode(inputs)
        ws = self._workspace()
        queues: dict[str, SpikeEvents] = {INPUT: events}
        counts = []
        spike_counts = {}
        output = None
        for i, layer in enumerate(self.layers):
            ev_offsets, ev_index, ev_sign = _gather(queues, layer.sources)
            V, t_last = ws.V[i], ws.t_last[i]
            V.fill(0)
            t_last.fill(0)
            ws.stamp[i].fill(-1)
            counters = np.zeros(kernels.COUNTER_COLUMNS, dtype=np.int64)
            n_out = kernels.run_population_steps(
                V, layer.unit, t_last, ws.stamp[i], ws.touched_list[i], self._leak_table[i], math.log(layer.leak),
                layer.threshold, layer.fires, layer.projections, layer.weights, layer.routes,
                ev_offsets, ev_index, ev_sign, ws.out_index[i], ws.out_offsets[i], counters,
            )
            if layer.fires:
                queues[layer.name] = SpikeEvents(ws.out_offsets[i], ws.out_index[i][:n_out], ws.ones[:n_out])
                if record_spikes:
                    spike_counts[layer.name] = _to_chw_counts(ws.out_index[i][:n_out], layer)
            else:
                kernels.leak_to(V, t_last, layer.unit, self.timesteps, math.log(layer.leak))
                output = V.astype(np.float64) / self.timesteps
            counts.append(LayerCounts.from_counters(layer, counters, self.timesteps))
        return RunResult(output=output, layers=counts, spike_counts=spike_counts, input_events=len(events))

    def _run_async(self, inputs) -> RunResult:
        """One input in continuous time over the model's window, read out at the window's end."""
        from evsim.stream import Stream, step_width_us, timed_spike_train

        stream = Stream(self)
        window_us = step_width_us(self) * self.timesteps
        if isinstance(inputs, np.ndarray) and inputs.dtype.names is not None:
            t = inputs["t"] if "t" in inputs.dtype.names else None
            if t is not None:
                inputs = inputs[(t >= 0) & (t < window_us)]
            stream.feed(inputs)
        elif isinstance(inputs, np.ndarray):
            if tuple(inputs.shape[1:]) != tuple(self.input_shape) or inputs.shape[0] != self.timesteps:
                raise InputError(f"a spike train of shape {inputs.shape} does not fit [T={self.timesteps}, {', '.join(map(str, self.input_shape))}]")
            stream.feed(timed_spike_train(inputs, step_width_us(self), self.dtype))
        else:
            raise InputError("asynchronous mode needs timestamped events or a dense spike train")
        return stream.result(at_us=window_us)

    def run_many(self, inputs, workers: int = 2, mode: str = "step", progress=None):
        """Run an iterable of inputs on ``workers`` threads (the kernels release the GIL).

        Yields RunResults in input order. ``progress`` is called once per finished input.
        """
        if workers <= 1:
            for x in inputs:
                result = self.run(x, mode=mode)
                if progress:
                    progress()
                yield result
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = []
            for x in inputs:
                pending.append(pool.submit(self.run, x, mode))
                if len(pending) >= 4 * workers:
                    result = pending.pop(0).result()
                    if progress:
                        progress()
                    yield result
            for future in pending:
                result = future.result()
                if progress:
                    progress()
                yield result


def _gather(queues: dict[str, SpikeEvents], sources: tuple[str, ...]):
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


def load(path_or_name, dtype=np.float32) -> Network:
    """A Network from a model file path, or the name of a model bundled with evsim."""
    return Network.from_file(path_or_name, dtype=dtype)
