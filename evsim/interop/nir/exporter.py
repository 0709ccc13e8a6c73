"""evsim -> NIR: :func:`export_nir` writes an evsim model as a NIR file.

Export writes every evsim population as a NIR node chosen so that snntorch and SpikingJelly
import it exactly (SEMANTICS.md section 5): leak lambda < 1 as ``LIF(tau = dt/(1-lambda),
r = 1/(1-lambda), v_leak = 0, v_reset = 0)`` with ``dt = 1e-4``; lambda = 1 as an LIF with
``tau = 1e12`` (both peers read it as an exact IF; snntorch cannot run an IF node); the
threshold as the next float32 above it (:func:`nudged`: snntorch's ``>`` and SpikingJelly's
``>=`` then both fire on ``v > theta``), with the exact value in the node's metadata; pooling as
AvgPool2d/SumPool2d with two-element kernel and stride; the output integrator as its weight
nodes feeding Output directly, with the readout (``sum_t lambda**(T-t) y_t / T``, lambda in the
metadata) applied to the per-step outputs. The graph's metadata carries the bin width, the step
count, the readout and evsim's exact leaks, so evsim -> NIR -> evsim is identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from evsim.errors import ModelError
from evsim.interop.nir.conv import conv_node
from evsim.interop.nir.hdf5 import write_nir
from evsim.interop.nir.nodes import METADATA_PREFIX, NirGraph, NirNode
from evsim.model.file import ModelFile
from evsim.model.graph import INPUT, Graph, Population

EXPORT_DT_S = 1e-4
IF_TAU_S = 1e12
"""An IF written as a LIF: 1 - 1e-4/1e12 is 1.0 in float32, so both importers read no leak."""


def model_to_nir(graph: Graph, weights: dict[str, np.ndarray]) -> NirGraph:
    """evsim's populations and projections as NIR nodes (module docstring); ModelError for a
    variant NIR cannot express (subtractive reset, several spikes per step, a membrane floor,
    the ``>=`` test)."""
    export = _Export(graph, weights)
    for pop in graph.populations:
        export.add_population(pop)
    return NirGraph(export.nodes, tuple(export.edges), _export_metadata(graph), "1.0.8")


class _Export:
    """The NIR nodes and edges of a graph, built population by population, with unique node names."""

    def __init__(self, graph: Graph, weights: dict[str, np.ndarray]):
        self.graph = graph
        self.weights = weights
        self.nodes: dict[str, NirNode] = {"input": NirNode("input", "Input", {"shape": np.array(graph.input_shape, dtype=np.int64)})}
        self.edges: list[tuple[str, str]] = []
        self.node_of = {INPUT: "input"}  # population -> the node that emits its output
        self.taken = {"input", "output"}

    def fresh(self, name: str) -> str:
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name

    def add(self, node: NirNode, source: str) -> str:
        self.nodes[node.name] = node
        self.edges.append((source, node.name))
        return node.name

    def add_population(self, pop: Population) -> None:
        if is_passthrough_pool(pop):
            # a pooling layer of its own (how evsim imports pooling that feeds weights): the
            # pooling node alone, exactly what the next weights receive
            proj = pop.inputs[0]
            self.node_of[pop.name] = self.add(_pool_node(self.fresh(pop.name), "sumpool", proj), self.node_of[proj.source])
            return
        if pop.kind != "output":
            _check_exportable(pop)
            target = self.fresh(pop.name)
        else:
            target = "output"
        for i, proj in enumerate(pop.inputs):
            tag = f"{pop.name}_{proj.op}" + (f"{i}" if len(pop.inputs) > 1 else "")
            self.add_projection(proj, tag, target)
        if pop.kind == "output":
            self.nodes["output"] = NirNode("output", "Output", {"shape": np.array(pop.shape, dtype=np.int64)})
        else:
            self.nodes[target] = _lif_node(target, pop)
            self.node_of[pop.name] = target

    def add_projection(self, proj, tag: str, target: str) -> None:
        """The nodes of one projection, from its source's node to ``target``."""
        source = self.node_of[proj.source]
        src_shape = self.graph.shape_of(proj.source)
        if proj.op == "identity":
            self.edges.append((source, target))
            return
        if proj.op == "conv":
            op_node = conv_node(self.fresh(tag), proj, np.asarray(self.weights[proj.weight]), src_shape)
        elif proj.op == "linear":
            if len(src_shape) == 3:
                source = self.add(NirNode(self.fresh(f"{tag}_flatten"), "Flatten", {
                    "start_dim": np.int64(0), "end_dim": np.int64(-1),
                    "input_type": np.array(src_shape, dtype=np.int64)}), source)
            op_node = NirNode(self.fresh(tag), "Linear", {"weight": np.asarray(self.weights[proj.weight])},
                              {METADATA_PREFIX + "weight": proj.weight})
        else:
            op_node = _pool_node(self.fresh(tag), proj.op, proj)
        self.edges.append((self.add(op_node, source), target))


def _pool_node(name: str, op: str, proj) -> NirNode:
    return NirNode(name, "AvgPool2d" if op == "avgpool" else "SumPool2d", {
        "kernel_size": np.array([proj.kernel] * 2, dtype=np.int64),
        "stride": np.array([proj.stride] * 2, dtype=np.int64),
        "padding": np.array([0, 0], dtype=np.int64)})


def _export_metadata(graph: Graph) -> dict:
    """The graph's metadata: the bin width and steps, the neuron step, how the readout reads."""
    window = int(graph.encoding.get("window_us", 0)) if graph.encoding else 0
    metadata = {
        METADATA_PREFIX + "format": "evsim",
        METADATA_PREFIX + "dt_us": int(window // graph.timesteps) if window else 0,
        METADATA_PREFIX + "timesteps": int(graph.timesteps),
        METADATA_PREFIX + "neuron_dt_s": EXPORT_DT_S,
        METADATA_PREFIX + "readout": "output = sum over steps t < T of readout_leak**(T - t) * y_t / T, y_t the "
                                     "Output node's value at step t (the spike counts or currents it receives)",
        METADATA_PREFIX + "readout_leak": float(graph.output.leak),
        METADATA_PREFIX + "readout_name": graph.output.name,
        METADATA_PREFIX + "input": "event counts per (polarity, y, x) in bins of dt_us over timesteps steps",
        METADATA_PREFIX + "meta": json.dumps(graph.meta),
    }
    if not window:
        raise ModelError("the model has no input window (encoding.window_us), so the bin width is unknown")
    if window % graph.timesteps:
        raise ModelError(f"the model's window {window} µs is not a whole number of {graph.timesteps} bins")
    return metadata


def is_passthrough_pool(pop: Population) -> bool:
    """A population that passes each sum-pooling window's spike count on unchanged."""
    n = pop.neuron
    return (pop.kind == "pool" and len(pop.inputs) == 1 and pop.inputs[0].op == "sumpool"
            and (n.threshold, n.leak, n.reset, n.spikes_per_step, n.lower_bound, n.fire_test)
            == (1.0, 1.0, "subtract", None, None, ">="))


def _check_exportable(pop: Population) -> None:
    n = pop.neuron
    refused = []
    if n.reset != "zero":
        refused.append(f"reset {n.reset!r} (NIR resets to v_reset)")
    if n.spikes_per_step != 1:
        refused.append("several spikes per step (NIR emits one)")
    if n.lower_bound is not None:
        refused.append("a membrane lower bound (NIR has none)")
    if n.fire_test != ">":
        refused.append(f"the test v {n.fire_test} threshold (NIR fires on v > threshold)")
    if refused:
        raise ModelError(f"population {pop.name!r} cannot be written as NIR: {'; '.join(refused)}")


def _lif_node(name: str, pop: Population) -> NirNode:
    neuron = pop.neuron
    shape = pop.shape
    leak = float(neuron.leak)
    tau = EXPORT_DT_S / (1.0 - leak) if leak < 1 else IF_TAU_S
    r = tau / EXPORT_DT_S
    full = lambda value: np.full(shape, value, dtype=np.float64)  # noqa: E731
    theta = neuron.thresholds(pop.size).reshape(shape)
    meta_theta = np.asarray(neuron.threshold, dtype=np.float64) if neuron.per_neuron_threshold else float(neuron.threshold)
    return NirNode(name, "LIF", {
        "tau": full(tau), "r": full(r), "v_leak": full(0.0), "v_reset": full(0.0), "v_threshold": nudged(theta),
    }, {METADATA_PREFIX + "leak": leak, METADATA_PREFIX + "kind": pop.kind, METADATA_PREFIX + "name": pop.name,
        METADATA_PREFIX + "threshold": meta_theta})


def nudged(theta: np.ndarray) -> np.ndarray:
    """The next float32 above each threshold. snntorch fires on ``v > th`` and SpikingJelly on
    ``v >= th``, both in float32; against this value both fire exactly when ``v > theta``, as
    evsim does, for every float32 membrane but one exactly a float32 step above theta (ties
    ``v == theta`` are common: a pooling neuron of threshold 0.75 averages spikes in steps of 0.25)."""
    return np.nextafter(np.asarray(theta, dtype=np.float32), np.float32(np.inf)).astype(np.float64)


def export_nir(model: ModelFile, path) -> Path:
    """Write ``model`` (graph and weights) as a NIR file at ``path``."""
    return write_nir(path, model_to_nir(model.graph, model.weights))
