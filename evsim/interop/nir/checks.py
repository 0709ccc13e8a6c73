"""The checks of a NIR graph before anything is built from it: node types, finite numeric
parameters, one Input and one Output, edges between existing nodes, a feed-forward order, every
node on an Input-to-Output path, and every node's output shape."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from evsim.errors import ModelError
from evsim.interop.nir.conv import conv_output_shape
from evsim.interop.nir.nodes import (
    MAX_EDGES, MAX_NODES, NODE_TYPES, POOL_TYPES, NirGraph, NirNode, _ints, _pair, _param,
)
from evsim.model.graph import conv_output_size


def check_graph(graph: NirGraph) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """The nodes in topological order and every node's output shape; ModelError naming the node
    on an unknown type, a missing or extra Input/Output, a dangling edge, a cycle, an unreachable
    node, a node that leads nowhere, no Input-to-Output path, more than MAX_NODES nodes or
    MAX_EDGES edges, non-finite parameters or shapes that do not fit. Every walk is iterative."""
    nodes = graph.nodes
    if len(nodes) > MAX_NODES or len(graph.edges) > MAX_EDGES:
        raise ModelError(f"the graph has {len(nodes)} nodes and {len(graph.edges)} edges; evsim imports at most "
                         f"{MAX_NODES} nodes and {MAX_EDGES} edges")
    for node in nodes.values():
        if node.type not in NODE_TYPES:
            raise ModelError(f"node {node.name!r} has type {node.type}, which evsim does not import "
                             f"(supported: {', '.join(NODE_TYPES)})")
        for key, value in node.params.items():
            if isinstance(value, np.ndarray) and value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
                raise ModelError(f"node {node.name!r} ({node.type}): {key} contains NaN or infinite values")
            if isinstance(value, np.ndarray) and value.dtype.kind not in "fciub":
                raise ModelError(f"node {node.name!r} ({node.type}): {key} is not numeric")
    inputs = [n for n in nodes.values() if n.type == "Input"]
    outputs = [n for n in nodes.values() if n.type == "Output"]
    if len(inputs) != 1:
        raise ModelError(f"the graph needs exactly one Input node, it has {len(inputs)}")
    if len(outputs) != 1:
        raise ModelError(f"the graph needs exactly one Output node, it has {len(outputs)}")
    preds = {name: [] for name in nodes}
    succs = {name: [] for name in nodes}
    for a, b in graph.edges:
        for end in (a, b):
            if end not in nodes:
                raise ModelError(f"dangling edge: {a!r} -> {b!r} names a node {end!r} that the graph does not have")
        succs[a].append(b)
        preds[b].append(a)
    source, sink = inputs[0].name, outputs[0].name
    if preds[source]:
        raise ModelError(f"Input node {source!r} has incoming edges")
    order = _topological_order(nodes, preds, succs)
    _check_paths(order, nodes, _reach(source, succs), _reach(sink, preds), source, sink)
    shapes = {}
    for name in order:
        node = nodes[name]
        if node.type == "Input":
            shapes[name] = _input_shape(node)
            continue
        into = {shapes[p] for p in preds[name]}
        if len(into) != 1:
            raise ModelError(f"node {name!r} ({node.type}): its inputs have different shapes "
                             f"{sorted(into)}; edges into one node are summed")
        shapes[name] = _output_shape(node, into.pop())
    return order, shapes


def _topological_order(nodes, preds, succs) -> list[str]:
    """Kahn's algorithm (iterative: a chain of any length); ModelError naming a cycle's nodes."""
    indegree = {name: len(preds[name]) for name in nodes}
    ready = deque(name for name in nodes if indegree[name] == 0)
    order = []
    while ready:
        name = ready.popleft()
        order.append(name)
        for nxt in succs[name]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    if len(order) != len(nodes):
        stuck = sorted(name for name in nodes if indegree[name] > 0)
        raise ModelError(f"the graph has a cycle (through {', '.join(repr(s) for s in stuck[:4])}); "
                         "evsim imports feed-forward graphs (DAGs) only")
    return order


def _check_paths(order, nodes, from_input: set, to_output: set, source: str, sink: str) -> None:
    """Every node on an Input-to-Output path, with one message for each way of missing it."""
    if sink not in from_input:
        raise ModelError(f"the graph has no path from its Input {source!r} to its Output {sink!r}")
    for name in order:
        if name not in from_input:
            raise ModelError(f"node {name!r} ({nodes[name].type}) is unreachable: no path from the Input "
                             f"{source!r} leads to it")
        if name not in to_output:
            raise ModelError(f"node {name!r} ({nodes[name].type}) leads nowhere: no path from it reaches the "
                             f"Output {sink!r}")


def _reach(start: str, links) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in links[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _input_shape(node: NirNode) -> tuple[int, ...]:
    shape = _ints(node, "shape")
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]  # the batch dimension snntorch and norse keep without ignore_dims
    if len(shape) != 3 or min(shape) < 1:
        raise ModelError(f"Input node {node.name!r} has shape {list(shape)}; evsim needs (channels, height, width)")
    return shape


def _output_shape(node: NirNode, src: tuple[int, ...]) -> tuple[int, ...]:
    where = f"node {node.name!r} ({node.type})"
    t = node.type
    if t == "Output":
        declared = node.params.get("shape")
        if declared is not None and tuple(_ints(node, "shape")) not in (src, (1, *src)):
            raise ModelError(f"{where}: declares shape {list(_ints(node, 'shape'))}, its input has {list(src)}")
        return src
    if t == "Flatten":
        start = _ints(node, "start_dim", 0)[0]
        end = _ints(node, "end_dim", -1)[0]
        if (start % len(src), end % len(src)) != (0, len(src) - 1):
            raise ModelError(f"{where}: flattens dimensions {start}..{end} of {list(src)}; evsim flattens whole samples only")
        if "input_type" in node.params and tuple(_ints(node, "input_type")) not in (src, (1, *src)):
            raise ModelError(f"{where}: declares input {list(_ints(node, 'input_type'))}, gets {list(src)}")
        return (math.prod(src),)
    if t == "Scale":
        scale = _param(node, "scale")
        _broadcast(scale, src, where)
        return src
    if t in ("Affine", "Linear"):
        weight = _param(node, "weight")
        if weight.ndim != 2 or weight.shape[1] != math.prod(src):
            raise ModelError(f"{where}: weight {list(weight.shape)} does not take an input of shape {list(src)}")
        if t == "Affine" and _param(node, "bias").shape not in ((weight.shape[0],), ()):
            raise ModelError(f"{where}: bias {list(_param(node, 'bias').shape)} does not fit {weight.shape[0]} outputs")
        return (weight.shape[0],)
    if t == "Conv2d":
        return conv_output_shape(node, src, where)
    if t in POOL_TYPES:
        if len(src) != 3:
            raise ModelError(f"{where}: pools a (channels, height, width) input, gets {list(src)}")
        k = _pair(node, "kernel_size")
        stride = _pair(node, "stride", k)
        if _pair(node, "padding", 0) != 0:
            raise ModelError(f"{where}: padded pooling; evsim pools without padding")
        oh, ow = conv_output_size(src[1], k, stride, 0), conv_output_size(src[2], k, stride, 0)
        if k < 1 or stride < 1 or oh < 1 or ow < 1:
            raise ModelError(f"{where}: kernel {k}, stride {stride} do not fit a {src[1]}x{src[2]} input")
        return (src[0], oh, ow)
    # neurons keep their input's shape; their parameters must fit it
    for key, value in node.params.items():
        if isinstance(value, np.ndarray):
            _broadcast(value, src, f"{where}: {key}")
    return src


def _broadcast(value: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    try:
        return np.broadcast_to(value, shape)
    except ValueError:
        raise ModelError(f"{where}: shape {list(value.shape)} does not fit the population's {list(shape)}") from None
