"""The checked NIR graph as evsim populations, projections and weights.

How the graph maps: every IF/LIF node is a population (kind ``lif``, IF = leak 1); the weight
nodes on the edges into it (Conv2d, Linear/Affine, with Flatten and foldable Scale) are its
projections, and the edges into one node sum. Pooling straight into a neuron is a pooling
projection. Pooling that feeds a weight node becomes a population of its own that passes spike
counts on unchanged (threshold 1, ``>=``, unbounded spikes per step, subtraction: the count of
each window, evsim.model.neuron), with average pooling's ``1/k**2`` folded into the next weights;
its synaptic operations are one per arriving spike, and the next layer's count ``n x fan-out`` per
multi-spike event, as a chip that pools in a layer of its own would spend. The readout is an LI or
I node feeding Output (the output integrator), or else the Output's own inputs accumulated over
the window: a spiking population's spike counts (how the peers read their graphs), or an
Affine's summed currents.
"""

from __future__ import annotations

import math

import numpy as np

from evsim.errors import ModelError
from evsim.interop.nir.conv import conv_projection, fold_input_scale
from evsim.interop.nir.exporter import nudged
from evsim.interop.nir.nodes import (
    METADATA_PREFIX,
    POOL_TYPES,
    READOUT_TYPES,
    SPIKING_TYPES,
    WEIGHT_TYPES,
    NirGraph,
    NirNode,
    _meta_num,
    _meta_str,
    _pair,
    _text_or,
)
from evsim.interop.nir.semantics import _neuron_param, _threshold, read_neuron
from evsim.model.graph import INPUT, Population, Projection, refuse_bias

MAX_WALK = 100_000
"""The most steps of the walk back from one population through its non-neuron nodes (diamonds of
Scale nodes multiply the paths)."""


class _Builder:
    """Turns the checked NIR graph into evsim populations (topological order) and weights."""

    def __init__(self, graph: NirGraph, shapes, semantics: str, dt: float, evsim_export: bool):
        self.graph, self.shapes, self.semantics, self.dt = graph, shapes, semantics, dt
        self.evsim_export = evsim_export
        self.preds = {name: [] for name in graph.nodes}
        for a, b in graph.edges:
            self.preds[b].append(a)
        self.populations: list[Population] = []
        self.weights: dict[str, np.ndarray] = {}
        self.pop_of: dict[str, str] = {}  # NIR node name -> evsim population name
        self.passthrough: dict[tuple, str] = {}

    def node(self, name: str) -> NirNode:
        return self.graph.nodes[name]

    def build(self, order: list[str]) -> None:
        output = next(n for n in order if self.node(n).type == "Output")
        readouts = [n for n in order if self.node(n).type in READOUT_TYPES]
        for name in readouts:
            if self.preds[output] != [name] or any(name in self.preds[n] for n in self.graph.nodes if n != output):
                raise ModelError(f"node {name!r} ({self.node(name).type}): LI and I are read as the network's "
                                 "output only, so one must be the only node feeding Output")
        for name in order:
            node = self.node(name)
            if node.type == "Input":
                self.pop_of[name] = INPUT
            elif node.type in SPIKING_TYPES:
                self.add_population(name, node)
        if readouts:
            self.add_population(readouts[0], self.node(readouts[0]))
        else:
            self.add_readout(output)

    def evsim_name(self, name: str) -> str:
        """A population's name: evsim's own in an evsim export, else the NIR node's."""
        if self.evsim_export and name in self.graph.nodes:
            recorded = _text_or(self.node(name).metadata.get(METADATA_PREFIX + "name"))
            if recorded:
                return recorded
        return name if name != INPUT else f"{name}_"

    def node_leak(self, node: NirNode):
        if not self.evsim_export:
            return None
        value = node.metadata.get(METADATA_PREFIX + "leak")
        return None if value is None else float(np.asarray(value).reshape(-1)[0])

    def add_population(self, name: str, node: NirNode) -> None:
        shape = self.shapes[name]
        reading = read_neuron(node, shape, self.semantics, self.dt, self.node_leak(node))
        fields = dict(reading.fields)
        if self.evsim_export and _text_or(node.metadata.get(METADATA_PREFIX + "kind")) == "pool":
            fields["kind"] = "pool"
        recorded = node.metadata.get(METADATA_PREFIX + "threshold") if self.evsim_export else None
        if recorded is not None and fields["kind"] != "output":
            exact = np.broadcast_to(np.asarray(recorded, dtype=np.float64).reshape(-1), (math.prod(shape),))
            if np.array_equal(nudged(exact), _neuron_param(node, "v_threshold", shape).reshape(-1)):
                fields["threshold"] = _threshold(exact)  # evsim's own, which the file holds nudged
        gain = reading.gain if fields["kind"] == "output" else None
        projections = self.projections_into(name, gain)
        pop_name = self.evsim_name(name)
        self.populations.append(Population(name=pop_name, shape=shape, inputs=tuple(projections), **fields))
        self.pop_of[name] = pop_name

    def add_readout(self, output: str) -> None:
        """The output integrator of a graph that ends without LI/I: the Output's inputs summed over
        the window (spike counts of a spiking population), with the leak an evsim export recorded."""
        meta = self.graph.metadata
        leak = _meta_num(meta, "readout_leak") if self.evsim_export else 1.0
        name = _meta_str(meta, "readout_name") if self.evsim_export else ""
        name = name or self.evsim_name(output)
        projections = self.projections_into(output, None)
        shape = self.shapes[output]
        self.populations.append(Population(name=name, kind="output", shape=shape, inputs=tuple(projections),
                                           threshold=1.0, leak=leak))

    # -- paths from a population (or the input) through weight, pooling, Flatten and Scale nodes

    def paths_into(self, name: str) -> list[tuple[str, list[str]]]:
        """Every path into ``name`` from a population or the Input, with the weight, pooling,
        Flatten and Scale nodes along it, depth first (iterative, at most MAX_WALK steps)."""
        paths = []
        stack = [(p, None) for p in reversed(self.preds[name])]  # (node, the linked nodes after it)
        for _ in range(MAX_WALK):
            if not stack:
                return paths
            p, after = stack.pop()
            t = self.node(p).type
            if t == "Input" or t in SPIKING_TYPES:
                paths.append((p, _unlink(after)))
            elif t in READOUT_TYPES:
                raise ModelError(f"node {p!r} ({t}) feeds {after[0] if after else name!r}; LI and I are read as "
                                 "the output only")
            else:
                stack.extend((q, (p, after)) for q in reversed(self.preds[p]))
        raise ModelError(f"node {name!r}: the paths into it through weight, pooling, Flatten and Scale nodes "
                         f"branch into more than {MAX_WALK} steps")

    def projections_into(self, target: str, gain) -> list[Projection]:
        projections = []
        paths = self.paths_into(target)
        for k, (src, ops) in enumerate(paths):
            projections.append(self.lower(self.pop_of[src], ops, target, gain, suffix="" if len(paths) == 1 else f"_{k}"))
        return projections

    def lower(self, source: str, ops: list[str], target: str, gain, suffix: str) -> Projection:
        """One path as one projection, adding pass-through pooling populations where pooling feeds
        a weight node; Scale and average pooling's 1/k**2 fold into the weights."""
        scale_in = None  # per-element factor on the current tensor
        shape = self.shapes[source] if source != INPUT else self.input_shape()
        for i, op_name in enumerate(ops):
            node = self.node(op_name)
            t = node.type
            rest = ops[i + 1:]
            if t == "Flatten":
                if any(self.node(n).type in ("Conv2d", *POOL_TYPES) for n in rest):
                    raise ModelError(f"node {op_name!r} (Flatten) feeds a convolution or pooling")
                shape = self.shapes[op_name]
                if scale_in is not None:
                    scale_in = scale_in.reshape(-1)
                continue
            if t == "Scale":
                s = np.broadcast_to(np.asarray(node.params["scale"], dtype=np.float64), self.shapes[op_name])
                scale_in = s.copy() if scale_in is None else scale_in * s
                continue
            if t in POOL_TYPES:
                if not any(self.node(n).type in (*WEIGHT_TYPES, *POOL_TYPES) for n in rest):
                    return self.pooling_projection(source, op_name, rest, scale_in, gain)
                source, shape, scale_in = self.pool_before_weights(source, op_name, scale_in)
                continue
            return self.weight_projection(source, op_name, rest, scale_in, target, gain, suffix)
        if scale_in is not None and not np.all(scale_in == 1):
            raise ModelError(f"a Scale on the path into {target!r} has no weights to fold into")
        if self.gain_folds(gain) is False:
            raise ModelError(f"node {target!r}: its input gain {float(np.asarray(gain).reshape(-1)[0]):g} has no "
                             "weights to fold into")
        return Projection(source=source, op="identity")

    def pooling_projection(self, source: str, op_name: str, rest: list[str], scale_in, gain) -> Projection:
        """Pooling straight into a neuron (no weights after it on the path): a pooling projection,
        which can carry a Scale only as average or sum pooling."""
        node = self.node(op_name)
        k = _pair(node, "kernel_size")
        stride = _pair(node, "stride", k)
        per_window = 1.0 / (k * k) if node.type == "AvgPool2d" else 1.0
        channel = _per_channel(scale_in, op_name)
        if any(self.node(n).type == "Scale" for n in rest):
            raise ModelError(f"node {op_name!r} ({node.type}): a Scale after pooling with no weights to fold it into")
        if channel is not None and not np.all(channel == channel[0]):
            raise ModelError(f"node {op_name!r} ({node.type}): a per-channel Scale with no weights to fold it into")
        factor = per_window * (1.0 if channel is None else float(channel[0]))
        op = {1.0 / (k * k): "avgpool", 1.0: "sumpool"}.get(factor)
        if op is None or self.gain_folds(gain) is False:
            raise ModelError(f"node {op_name!r} ({node.type}): pooling scaled by {factor:g} cannot be "
                             "represented without weights to fold the scale into")
        return Projection(source=source, op=op, kernel=k, stride=stride)

    def pool_before_weights(self, source: str, op_name: str, scale_in):
        """Pooling that feeds weights: a pass-through pooling population, with average pooling's
        1/k**2 (and any Scale before it) carried on as the factor to fold into the weights.
        The new source, its shape and the factor."""
        node = self.node(op_name)
        k = _pair(node, "kernel_size")
        stride = _pair(node, "stride", k)
        per_window = 1.0 / (k * k) if node.type == "AvgPool2d" else 1.0
        channel = _per_channel(scale_in, op_name)
        source = self.passthrough_pool(source, op_name, k, stride)
        shape = self.shapes[op_name]
        factor = np.full(shape[0], per_window) if channel is None else channel * per_window
        return source, shape, np.broadcast_to(factor[:, None, None], shape).copy()

    def weight_projection(self, source: str, op_name: str, rest: list[str], scale_in, target: str, gain,
                          suffix: str) -> Projection:
        """A Conv2d, Linear or Affine node (every later op of the path a Flatten or Scale) as a conv
        or linear projection, the Scales around it and the target's input gain folded into its weight."""
        node = self.node(op_name)
        t = node.type
        for n in rest:
            if self.node(n).type not in ("Flatten", "Scale"):
                raise ModelError(f"nodes {op_name!r} ({t}) and {n!r} ({self.node(n).type}) follow each other "
                                 "without a neuron between; evsim needs a neuron population after each "
                                 "weight layer")
        scale_out = None
        for n in rest:
            if self.node(n).type == "Scale":
                s = np.broadcast_to(np.asarray(self.node(n).params["scale"], dtype=np.float64), self.shapes[n])
                scale_out = s.copy() if scale_out is None else scale_out * s
        refuse_bias(f"node {op_name!r} ({t})", node.params.get("bias"))
        weight = np.array(node.params["weight"])
        if weight.dtype not in (np.float32, np.float64):
            weight = weight.astype(np.float64)
        weight_name = self.weight_name(node, op_name + suffix, target)
        if t == "Conv2d":
            weight = fold_input_scale(weight, _per_channel(scale_in, op_name))
            channel_out = _per_channel(scale_out, op_name)
            factor = _combine(channel_out, gain, op_name, per_channel=True, shape=self.shapes[target])
            if factor is not None:
                weight = weight * factor[:, None, None, None].astype(weight.dtype)
            projection = conv_projection(node, source, weight_name, weight)
        else:
            if scale_in is not None:
                weight = weight * scale_in.reshape(-1)[None, :].astype(weight.dtype)
            factor = _combine(None if scale_out is None else scale_out.reshape(-1), gain, op_name,
                              per_channel=False, shape=self.shapes[target])
            if factor is not None:
                weight = weight * factor[:, None].astype(weight.dtype)
            projection = Projection(source=source, op="linear", weight=weight_name)
        self.weights[weight_name] = np.ascontiguousarray(weight)
        return projection

    def weight_name(self, node: NirNode, default: str, target: str) -> str:
        """The name a weight node's weight is stored under: evsim's own export's, else the node's
        (with the path's suffix), made unique by the target's name."""
        name = (_text_or(node.metadata.get(METADATA_PREFIX + "weight")) if self.evsim_export else "") or default
        return f"{name}_{target}" if name in self.weights else name

    @staticmethod
    def gain_folds(gain) -> bool:
        """Whether a readout's input gain is 1 (no weights needed to fold it into)."""
        return gain is None or bool(np.all(np.asarray(gain) == 1))

    def input_shape(self):
        return self.shapes[next(n for n in self.graph.nodes if self.graph.nodes[n].type == "Input")]

    def passthrough_pool(self, source: str, op_name: str, k: int, stride: int) -> str:
        key = (source, op_name)
        if key not in self.passthrough:
            taken = {p.name for p in self.populations} | {INPUT}
            name = op_name if op_name not in taken else f"{op_name}_{source}"
            self.populations.append(Population(
                name=name, kind="pool", shape=self.shapes[op_name],
                inputs=(Projection(source=source, op="sumpool", kernel=k, stride=stride),),
                threshold=1.0, leak=1.0, reset="subtract", spikes_per_step=None, fire_test=">="))
            self.passthrough[key] = name
        return self.passthrough[key]


def _unlink(linked) -> list[str]:
    out = []
    while linked is not None:
        out.append(linked[0])
        linked = linked[1]
    return out


def _per_channel(scale, where: str):
    """A (C, H, W) scale as one factor per channel; ModelError if it varies within a channel."""
    if scale is None:
        return None
    scale = np.asarray(scale)
    if scale.ndim == 1:
        return scale
    flat = scale.reshape(scale.shape[0], -1)
    if not np.all(flat == flat[:, :1]):
        raise ModelError(f"node {where!r}: a Scale that varies within a channel cannot fold into a convolution")
    return flat[:, 0].copy()


def _combine(scale_out, gain, where: str, per_channel: bool, shape):
    factor = None if scale_out is None else np.asarray(scale_out, dtype=np.float64)
    if gain is not None:
        g = np.asarray(gain, dtype=np.float64)
        g = _per_channel(np.broadcast_to(g, shape), where) if per_channel else np.broadcast_to(g, shape).reshape(-1)
        factor = g if factor is None else factor * g
    if factor is not None and np.all(factor == 1):
        return None
    return factor
