"""Compiled layers: one graph population with its incoming projections in the kernels' table form.

:func:`compile_layer` turns a population and its weights into a :class:`Layer` (weights in the
kernels' layout, projection table, tiled-pooling routes); :class:`LayerState` is the per-layer
neuron state both runtimes allocate (membranes and touch tracking).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from evsim.engine import kernels
from evsim.engine.counting import dense_macs_per_step
from evsim.model.graph import Graph
from evsim.model.neuron import FireTest, Neuron
from evsim.model.ops import POOLING, engine_weight

_OPS = {"conv": kernels.OP_CONV, "linear": kernels.OP_LINEAR, "avgpool": kernels.OP_AVGPOOL,
        "sumpool": kernels.OP_SUMPOOL, "identity": kernels.OP_IDENTITY}
_POOLING = (kernels.OP_AVGPOOL, kernels.OP_SUMPOOL)


def as_chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return tuple(shape) if len(shape) == 3 else (shape[0], 1, 1)


@dataclass(repr=False)
class Layer:
    name: str
    neuron: Neuron
    shape: tuple[int, ...]
    sources: tuple[str, ...]
    projections: np.ndarray  # [Q, kernels.PROJECTION_COLUMNS] int64
    weights: np.ndarray  # all projections' weights, flat
    routes: np.ndarray  # int32 lookup tables of tiled pooling projections, flat
    dense_macs_per_step: int
    rule: np.ndarray  # the firing rule as kernels.R_* numbers
    thresholds: np.ndarray  # per-neuron thresholds, channels-last (empty: one for the population)

    def __repr__(self) -> str:
        ops = ", ".join(sorted({op for op, code in _OPS.items() if code in set(self.projections[:, kernels.P_OP].tolist())}))
        return (f"Layer({self.name}: {self.neuron.kind} {list(self.shape)} <- {', '.join(self.sources)}; "
                f"{ops or 'no'} projection{'s' if len(self.projections) != 1 else ''}, {self.weights.size:,} weight{'s' if self.weights.size != 1 else ''})")

    @cached_property
    def chw(self) -> tuple[int, int, int]:
        return as_chw(self.shape)

    @cached_property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @cached_property
    def firing(self) -> tuple:
        """The kernels' firing arguments: the population's threshold (unused when per neuron),
        the per-neuron thresholds (empty when not), and the firing rule."""
        threshold = 0.0 if self.neuron.per_neuron_threshold else float(self.neuron.threshold)
        return threshold, self.thresholds, self.rule

    @cached_property  # the run loop reads it for every layer of every sample
    def unit(self) -> int:
        """Neurons per touch unit: one pixel's channels, or single neurons when only pooling
        feeds the layer (a pooling event reaches one channel, so the rest need no test)."""
        if all(row[kernels.P_OP] in _POOLING for row in self.projections):
            return 1
        return self.chw[0]

    @cached_property
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
        table[q, kernels.P_GROUPS] = proj.groups
        table[q, kernels.P_WEIGHT_OFFSET] = offset
        table[q, kernels.P_ROUTE_OFFSET] = -1
        if proj.op in POOLING and proj.stride == proj.kernel:
            table[q, kernels.P_ROUTE_OFFSET] = route_offset
            routes.append(pooling_routes(src, dst, proj.kernel))
            route_offset += routes[-1].size
        if proj.weight is not None:
            w = engine_weight(proj, np.asarray(weights[proj.weight]), graph.shape_of(proj.source)).astype(dtype)
            flat.append(w.ravel())
            offset += w.size
    return Layer(
        name=population.name,
        neuron=population.neuron,
        shape=tuple(population.shape),
        sources=tuple(p.source for p in population.inputs),
        projections=table,
        weights=np.concatenate(flat) if flat else np.zeros(1, dtype=dtype),
        routes=np.concatenate(routes) if routes else np.zeros(1, dtype=np.int32),
        dense_macs_per_step=dense_macs_per_step(graph, population),
        rule=firing_rule(population.neuron),
        thresholds=channels_last_thresholds(population.neuron, population.shape, dtype),
    )


def firing_rule(neuron: Neuron) -> np.ndarray:
    """The neuron's firing rule (evsim.model.neuron) as the kernels' ``rule`` row."""
    rule = np.zeros(kernels.RULE_COLUMNS, dtype=np.float64)
    rule[kernels.R_DEFAULT] = neuron.is_default_rule
    rule[kernels.R_INCLUSIVE] = neuron.fire_test == FireTest.INCLUSIVE
    rule[kernels.R_MAX_SPIKES] = neuron.spikes_per_step or 0
    rule[kernels.R_SUBTRACT] = neuron.reset.code  # the reset rule's number (Reset.code: 0 zero, 1 subtract)
    rule[kernels.R_HAS_FLOOR] = neuron.lower_bound is not None
    rule[kernels.R_FLOOR] = neuron.lower_bound or 0.0
    return rule


def channels_last_thresholds(neuron: Neuron, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Per-neuron thresholds in the engine's channels-last order, in the engine's precision as the
    dense model holds them; empty when the population has one threshold."""
    if not neuron.per_neuron_threshold or not neuron.fires:
        return np.zeros(0, dtype=dtype)
    c, h, w = as_chw(shape)
    return np.ascontiguousarray(neuron.thresholds(c * h * w).reshape(c, h, w).transpose(1, 2, 0).ravel().astype(dtype))


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
class LayerState:
    """A layer's neuron state: membranes per neuron; last update time, tag and touch list per unit;
    the units to visit at the next step without input (``carry[0]`` of them, from ``carry[1]``;
    see kernels.run_population_steps).

    The step runtime keeps times in whole steps (int64), the asynchronous one in µs (float64).
    """

    V: np.ndarray
    t_last: np.ndarray
    stamp: np.ndarray
    touched: np.ndarray
    carry: np.ndarray

    @classmethod
    def allocate(cls, layer: Layer, dtype, time_dtype) -> "LayerState":
        return cls(
            V=np.zeros(layer.size, dtype=dtype),
            t_last=np.zeros(layer.units, dtype=time_dtype),
            stamp=np.full(layer.units, -1, dtype=np.int64),
            touched=np.zeros(layer.units + 1, dtype=np.int64),  # + slack for kernels._list
            carry=np.zeros(layer.units + 1, dtype=np.int64),
        )

    def reset(self) -> None:
        self.V.fill(0)
        self.t_last.fill(0)
        self.stamp.fill(-1)
        self.carry[0] = 0
