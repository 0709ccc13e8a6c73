"""NIR import and export: a NIR graph as an evsim Graph with weights, and back.

NIR (the ``nir`` package's HDF5 format, 1.0) stores neurons as continuous-time equations without a
time step; every simulator reads them with its own step and its own spike rule. So an import names
whose reading to follow (``semantics``), and the result is an ordinary evsim model: populations
with evsim.model.neuron dynamics, projections, and the input encoding (event counts in bins of
``dt_us`` over ``timesteps`` steps, the sensor taken from the Input node).

Reading is h5py only: datasets and strings, never pickles or code (``nir.read`` is not used).

Per step, for ``LIF(tau, r, v_leak, v_threshold, v_reset)`` and ``IF(r, v_threshold, v_reset)``
(``tests/data/nir/SEMANTICS.md`` gives each peer's source lines)::

    semantics     dt              LIF leak          LIF gain g     IF gain g    fire    spikes   reset
    nir           neuron_dt_s     1 - dt/tau        r*dt/tau       r*dt         v > th  1        to 0
    snntorch      1e-4 s          f32(1 - dt/tau)   r*dt/tau       IF -> Leaky(beta 0.9, th*r, subtract)
    norse         1e-3 s          1 - dt/tau        dt/tau         1            v > th  1        to 0
    sinabs        1 step          exp(-1/tau)       1              1            v >= th floor(v/th), subtract
                                                                                (IF: membrane floor -th)
    spikingjelly  1e-4 s          1 - dt/tau        dt/tau (r=1)   1 (r=1/dt)   v >= th 1        to v_reset
                                                    or 1 (r=tau/dt)

A gain g on the input current is applied as the threshold ``th / g`` (the membrane scaled by
``1 / g``; exact because the reset is to 0 and v_leak is 0, which is also how snntorch's importer
does it). Derived factors within 1e-9 of 1 are 1 (``r * dt / tau`` with ``r = tau / dt`` rounds).
What evsim refuses rather than simulate differently: nonzero biases and v_leak (a constant input at
every step, dense work: evsim.model.graph.refuse_bias), a reset to anything but 0, per-neuron time
constants, dilated or grouped or asymmetric convolutions, padded pooling, and any node type but
Input, Output, Conv2d, AvgPool2d, SumPool2d, Flatten, Linear, Affine, Scale (folded into weights),
IF, LIF, and LI or I as the readout.

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
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evsim.errors import ModelError, require
from evsim.model.file import ModelFile
from evsim.model.graph import INPUT, Graph, Population, Projection, conv_output_size, refuse_bias

SEMANTICS = ("nir", "snntorch", "norse", "sinabs", "spikingjelly")
PEER_DT_S = {"snntorch": 1e-4, "norse": 1e-3, "spikingjelly": 1e-4}
"""The time step each peer's importer hard-codes (sinabs reads tau in steps)."""
DEFAULT_NEURON_DT_S = 1e-4
"""``--semantics nir``'s neuron time step: NIR stores none; 1e-4 s is what the two peers that
integrate the spec's equations (snntorch, SpikingJelly) assume. The input bin width is a separate
thing (``dt_us``): a peer's tau against a 15 ms bin would give an unstable Euler step."""
EXPORT_DT_S = 1e-4
IF_TAU_S = 1e12
"""An IF written as a LIF: 1 - 1e-4/1e12 is 1.0 in float32, so both importers read no leak."""
UNITY = 1e-9

WEIGHT_TYPES = ("Conv2d", "Affine", "Linear")
POOL_TYPES = ("AvgPool2d", "SumPool2d")
SPIKING_TYPES = ("IF", "LIF")
READOUT_TYPES = ("LI", "I")
NODE_TYPES = ("Input", "Output", "Flatten", "Scale", *WEIGHT_TYPES, *POOL_TYPES, *SPIKING_TYPES, *READOUT_TYPES)
METADATA_PREFIX = "evsim_"


# ------------------------------------------------------------------------------- the NIR graph


@dataclass(frozen=True)
class NirNode:
    name: str
    type: str
    params: dict  # field name -> numpy array or str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NirGraph:
    nodes: dict  # name -> NirNode
    edges: tuple  # (source, target) names
    metadata: dict = field(default_factory=dict)
    version: str = ""


def read_nir(path) -> NirGraph:
    """Read a NIR file's graph with h5py (datasets and strings only); ModelError if unreadable."""
    h5py = require("h5py", "nir", "reading NIR files")
    path = Path(path)
    if not path.is_file():
        raise ModelError("no such NIR file", path)
    try:
        with h5py.File(path, "r") as f:
            version = _text(f["version"][()]) if "version" in f else ""
            if "node" not in f or not isinstance(f["node"], h5py.Group):
                raise ModelError("not a NIR file (no 'node' group)", path)
            root = f["node"]
            if _text(_dataset(root, "type", h5py)) != "NIRGraph":
                raise ModelError("not a NIR graph (the root node is not a NIRGraph)", path)
            nodes = {}
            for name, group in root["nodes"].items():
                if not isinstance(group, h5py.Group) or "type" not in group:
                    raise ModelError(f"node {name!r} has no type", path)
                nodes[name] = _read_node(name, group, h5py)
            raw = root["edges"][()] if "edges" in root else np.zeros((0, 2), dtype=object)
            raw = np.asarray(raw)
            if raw.size and (raw.ndim != 2 or raw.shape[1] != 2):
                raise ModelError(f"edges must be pairs of node names, got shape {raw.shape}", path)
            edges = tuple((_text(a), _text(b)) for a, b in raw.reshape(-1, 2))
            metadata = _read_metadata(root, h5py)
    except ModelError as exc:
        raise ModelError(exc.reason, path) from None
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError, AttributeError) as exc:
        raise ModelError(f"not a readable NIR file ({type(exc).__name__}: {exc})", path) from None
    return NirGraph(nodes, edges, metadata, version)


def _read_node(name: str, group, h5py) -> NirNode:
    type_ = _text(_dataset(group, "type", h5py))
    if type_ == "NIRGraph":
        raise ModelError(f"node {name!r} is a nested NIRGraph; evsim reads flat graphs only")
    params = {}
    for key, item in group.items():
        if key in ("type", "metadata"):
            continue
        if not isinstance(item, h5py.Dataset):
            raise ModelError(f"node {name!r} ({type_}): field {key!r} is not a dataset")
        value = item[()]
        params[key] = _text(value) if isinstance(value, (bytes, str)) else np.asarray(value)
    return NirNode(name, type_, params, _read_metadata(group, h5py))


def _read_metadata(group, h5py) -> dict:
    if "metadata" not in group or not isinstance(group["metadata"], h5py.Group):
        return {}
    out = {}
    for key, item in group["metadata"].items():
        if isinstance(item, h5py.Dataset):
            value = item[()]
            out[key] = _text(value) if isinstance(value, (bytes, str)) else np.asarray(value)
    return out


def _dataset(group, key, h5py):
    item = group[key]
    if not isinstance(item, h5py.Dataset):
        raise ModelError(f"{key!r} is not a dataset")
    return item[()]


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    if isinstance(value, str):
        return value
    raise ModelError(f"expected a string, got {type(value).__name__}")


def write_nir(path, graph: NirGraph) -> Path:
    """Write ``graph`` in NIR's HDF5 layout (as nir.write does: gzip arrays, strings as text)."""
    h5py = require("h5py", "nir", "writing NIR files")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def put(group, key, value):
        if isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        elif isinstance(value, np.ndarray) and value.ndim > 0:
            group.create_dataset(key, data=value, dtype=value.dtype, compression="gzip")
        else:
            group.create_dataset(key, data=value)

    def put_metadata(group, metadata):
        if metadata:
            meta = group.create_group("metadata")
            for key, value in metadata.items():
                put(meta, key, value)

    with h5py.File(path, "w") as f:
        put(f, "version", graph.version or "1.0.8")
        root = f.create_group("node")
        put(root, "type", "NIRGraph")
        nodes = root.create_group("nodes")
        for node in graph.nodes.values():
            group = nodes.create_group(node.name)
            put(group, "type", node.type)
            for key, value in node.params.items():
                put(group, key, value)
            put_metadata(group, node.metadata)
        root.create_dataset("edges", data=np.array(graph.edges, dtype=object).reshape(-1, 2),
                            dtype=h5py.string_dtype())
        put_metadata(root, graph.metadata)
    return path


def content_digest(path) -> str:
    """SHA-256 of every dataset of an HDF5 file (path, dtype, shape, values), in path order: equal
    for two files with the same content whatever their timestamps or compression (a recorded peer
    run of an exported file is checked against the export of today with it)."""
    import hashlib

    h5py = require("h5py", "nir", "reading NIR files")
    digest = hashlib.sha256()
    with h5py.File(path, "r") as f:
        items = []
        f.visititems(lambda name, obj: items.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in sorted(items):
            value = f[name][()]
            arr = np.asarray(value)
            data = repr(arr.tolist()).encode() if arr.dtype.kind == "O" or isinstance(value, bytes) else arr.tobytes()
            digest.update(f"{name}|{arr.dtype.str if arr.dtype.kind != 'O' else 'O'}|{arr.shape}|".encode() + data)
    return digest.hexdigest()


# ------------------------------------------------------------------------------- validation


def check_graph(graph: NirGraph) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """The nodes in topological order and every node's output shape; ModelError naming the node
    on an unknown type, a missing or extra Input/Output, a dangling edge, a cycle, a node off the
    Input-to-Output paths, non-finite parameters or shapes that do not fit."""
    nodes = graph.nodes
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
                raise ModelError(f"edge {a!r} -> {b!r} names a node {end!r} that the graph does not have")
        succs[a].append(b)
        preds[b].append(a)
    if preds[inputs[0].name]:
        raise ModelError(f"Input node {inputs[0].name!r} has incoming edges")
    order = _topological_order(nodes, preds, succs)
    reachable = _reach(inputs[0].name, succs)
    feeds_output = _reach(outputs[0].name, preds)
    for name in order:
        if name not in reachable or name not in feeds_output:
            raise ModelError(f"node {name!r} ({nodes[name].type}) is not on a path from Input to Output")
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
    indegree = {name: len(preds[name]) for name in nodes}
    ready = [name for name in nodes if indegree[name] == 0]
    order = []
    while ready:
        name = ready.pop(0)
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


def _reach(start: str, links) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in links[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _ints(node: NirNode, key: str, default=None) -> tuple[int, ...]:
    value = node.params.get(key, default)
    if value is None:
        raise ModelError(f"node {node.name!r} ({node.type}) has no {key}")
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(arr == np.round(arr))):
        raise ModelError(f"node {node.name!r} ({node.type}): {key} must be whole numbers, got {arr.tolist()}")
    return tuple(int(v) for v in arr.reshape(-1))


def _pair(node: NirNode, key: str, default=None) -> int:
    """A square kernel, stride or padding: one number, or two equal ones."""
    values = _ints(node, key, default)
    if len(values) not in (1, 2) or len(set(values)) != 1:
        raise ModelError(f"node {node.name!r} ({node.type}): {key} {list(values)} is not square; "
                         "evsim needs equal height and width")
    return values[0]


def _input_shape(node: NirNode) -> tuple[int, ...]:
    shape = _ints(node, "shape")
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]  # the batch dimension snntorch and norse keep without ignore_dims
    if len(shape) != 3 or min(shape) < 1:
        raise ModelError(f"Input node {node.name!r} has shape {list(shape)}; evsim needs (channels, height, width)")
    return shape


def _param(node: NirNode, key: str) -> np.ndarray:
    if key not in node.params or isinstance(node.params[key], str):
        raise ModelError(f"node {node.name!r} ({node.type}) has no numeric {key}")
    return np.asarray(node.params[key])


def conv_padding(node: NirNode, kernel: int, stride: int) -> int:
    pad = node.params.get("padding", 0)
    if isinstance(pad, str):
        if pad == "valid":
            return 0
        if pad == "same" and stride == 1 and kernel % 2 == 1:
            return (kernel - 1) // 2
        raise ModelError(f"node {node.name!r} (Conv2d): padding {pad!r} with kernel {kernel} and stride "
                         f"{stride} is not a symmetric padding")
    return _pair(node, "padding")


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
        weight = _param(node, "weight")
        if weight.ndim != 4:
            raise ModelError(f"{where}: weight must be (out, in, height, width), got {list(weight.shape)}")
        if len(src) != 3 or weight.shape[1] != src[0]:
            raise ModelError(f"{where}: weight {list(weight.shape)} does not take an input of shape {list(src)}")
        if weight.shape[2] != weight.shape[3]:
            raise ModelError(f"{where}: kernel {weight.shape[2]}x{weight.shape[3]} is not square")
        if set(_ints(node, "dilation", 1)) != {1}:
            raise ModelError(f"{where}: dilation {list(_ints(node, 'dilation'))}; evsim has no dilated convolutions")
        if _ints(node, "groups", 1) != (1,):
            raise ModelError(f"{where}: groups {_ints(node, 'groups')[0]}; evsim has no grouped convolutions")
        if "input_shape" in node.params and tuple(_ints(node, "input_shape")) not in (src[1:], src):
            raise ModelError(f"{where}: declares input {list(_ints(node, 'input_shape'))}, gets {list(src)}")
        if "bias" in node.params and _param(node, "bias").shape not in ((weight.shape[0],), ()):
            raise ModelError(f"{where}: bias {list(_param(node, 'bias').shape)} does not fit {weight.shape[0]} channels")
        k = weight.shape[2]
        stride = _pair(node, "stride", 1)
        pad = conv_padding(node, k, stride)
        oh, ow = conv_output_size(src[1], k, stride, pad), conv_output_size(src[2], k, stride, pad)
        if oh < 1 or ow < 1:
            raise ModelError(f"{where}: kernel {k} does not fit a {src[1]}x{src[2]} input")
        return (weight.shape[0], oh, ow)
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


# ------------------------------------------------------------------------------- neurons


@dataclass(frozen=True)
class NeuronReading:
    """One neuron node read under a semantics: evsim neuron fields, and the input gain g, which
    a spiking population takes as threshold / g and a readout folds into its weights."""

    fields: dict
    gain: np.ndarray


def _uniform(node: NirNode, key: str, shape, default=None) -> float:
    values = _neuron_param(node, key, shape, default)
    first = float(values.reshape(-1)[0])
    if not np.all(values == first):
        raise ModelError(f"node {node.name!r} ({node.type}): {key} differs between neurons; evsim has one "
                         f"{'time constant' if key == 'tau' else key} per population")
    return first


def _neuron_param(node: NirNode, key: str, shape, default=None) -> np.ndarray:
    if key not in node.params:
        if default is None:
            raise ModelError(f"node {node.name!r} ({node.type}) has no {key}")
        return np.full(shape, float(default))
    return np.broadcast_to(np.asarray(node.params[key], dtype=np.float64), shape)


def _unity(x):
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x - 1.0) <= UNITY, 1.0, x)


def _require_zero(node: NirNode, key: str, shape, why: str) -> None:
    values = _neuron_param(node, key, shape, 0.0)
    if np.any(values != 0):
        raise ModelError(f"node {node.name!r} ({node.type}): nonzero {key}; {why}")


def read_neuron(node: NirNode, shape, semantics: str, dt: float, evsim_leak=None) -> NeuronReading:
    """The evsim dynamics of IF/LIF/LI/I node ``node`` under ``semantics`` (module docstring)."""
    where = f"node {node.name!r} ({node.type})"
    t = node.type
    v_leak_why = "a resting potential other than 0 is a constant input at every step, which evsim refuses as it refuses biases"
    if semantics in ("snntorch", "spikingjelly") and t in READOUT_TYPES:
        raise ModelError(f"{where}: {semantics}'s importer has no {t} node; read this file with --semantics nir")
    if semantics in ("norse", "sinabs") and t == "I":
        raise ModelError(f"{where}: {semantics}'s importer has no I node; read this file with --semantics nir")
    leaky = t in ("LIF", "LI")
    if leaky:
        tau = _uniform(node, "tau", shape)
        if tau <= 0:
            raise ModelError(f"{where}: tau must be positive, got {tau}")
        if semantics != "spikingjelly":
            _require_zero(node, "v_leak", shape, v_leak_why)
    r = _neuron_param(node, "r", shape, 1.0)
    fields = {"kind": "lif", "reset": "zero", "spikes_per_step": 1, "lower_bound": None, "fire_test": ">"}
    if semantics in ("nir", "norse", "snntorch", "spikingjelly") and leaky:
        ratio = dt / tau
        if semantics == "spikingjelly" and not tau / dt > 1:
            raise ModelError(f"{where}: tau/dt = {tau / dt:g} with SpikingJelly's dt = {dt:g} s; it needs more than 1")
        if not 0 < ratio < 1:
            raise ModelError(f"{where}: dt/tau = {ratio:g} (dt = {dt:g} s, tau = {tau:g} s) gives a leak "
                             f"1 - dt/tau outside (0, 1]: the Euler step of this time constant is unstable at "
                             f"this dt" + (" (norse's exporter writes tau*dt instead of tau)" if semantics == "norse" else "")
                             + "; pick the semantics of the simulator that wrote the file, or a smaller --neuron-dt")
        leak = float(_unity(1.0 - ratio))
        if evsim_leak is not None and abs(evsim_leak - leak) <= UNITY:
            leak = evsim_leak  # evsim's own export: its exact leak, which 1 - dt/tau reproduces only to rounding
        if semantics == "snntorch":
            leak = float(np.float32(leak))
        if semantics in ("nir", "snntorch"):
            gain = _unity(r * ratio)
        elif semantics == "norse":
            gain = np.full(shape, ratio)
        else:  # spikingjelly: decay_input (r = 1) scales the input by 1/tau_s; r = tau_s does not
            tau_s = tau / dt
            if np.all(_unity(r) == 1):
                gain = np.full(shape, 1.0 / tau_s)
            elif np.all(_unity(r / tau_s) == 1):
                gain = np.ones(shape)
            else:
                raise ModelError(f"{where}: SpikingJelly reads an LIF's r only as 1 or tau/dt")
            v_leak = _neuron_param(node, "v_leak", shape, 0.0)
            v_reset = _neuron_param(node, "v_reset", shape, 0.0)
            if np.any(v_leak != v_reset):
                raise ModelError(f"{where}: SpikingJelly needs v_leak equal to v_reset")
            if np.any(v_leak != 0):
                raise ModelError(f"{where}: nonzero v_leak; {v_leak_why}")
    elif semantics == "sinabs" and leaky:
        leak = math.exp(-1.0 / tau)
        gain = np.ones(shape)
    else:  # IF and I
        leak = 1.0
        if semantics == "nir":
            gain = _unity(r * dt)
        elif semantics == "spikingjelly":
            if not np.all(_unity(r * dt) == 1):
                raise ModelError(f"{where}: SpikingJelly reads IF only with r = 1/dt ({1 / dt:g}); "
                                 "read this file with the semantics of the simulator that wrote it")
            gain = np.ones(shape)
        else:
            gain = np.ones(shape)
    if semantics in ("nir", "spikingjelly") and t in SPIKING_TYPES:
        _require_zero(node, "v_reset", shape, "evsim resets a neuron that fired to 0 (or subtracts its threshold)")
    if np.any(gain <= 0):
        raise ModelError(f"{where}: the input gain (r and tau under --semantics {semantics}) must be positive")
    if t in READOUT_TYPES:
        return NeuronReading({**fields, "kind": "output", "threshold": 1.0, "leak": leak}, np.asarray(gain))
    theta = _neuron_param(node, "v_threshold", shape)
    if np.any(theta <= 0):
        raise ModelError(f"{where}: v_threshold must be positive")
    effective = theta / gain
    if semantics == "snntorch":
        effective = effective.astype(np.float32).astype(np.float64)
        if t == "IF":  # snntorch's importer builds Leaky(beta=0.9, threshold=theta*r), reset by subtraction
            leak = float(np.float32(0.9))
            effective = (theta * r).astype(np.float32).astype(np.float64)
            fields["reset"] = "subtract"
    if semantics in ("sinabs", "spikingjelly"):
        fields["fire_test"] = ">="
    if semantics == "sinabs":
        fields.update(reset="subtract", spikes_per_step=None)
        if t == "IF":
            floor = _uniform(node, "v_threshold", shape)
            fields["lower_bound"] = -floor
    return NeuronReading({**fields, "threshold": _threshold(effective), "leak": float(leak)}, np.asarray(gain))


def _threshold(values: np.ndarray):
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.all(flat == flat[0]):
        return float(flat[0])
    return tuple(float(v) for v in flat)


# ------------------------------------------------------------------------------- import


def import_nir(path, dt_us: int | None = None, timesteps: int | None = None, semantics: str = "nir",
               neuron_dt_s: float | None = None) -> ModelFile:
    """Read a NIR file as an evsim model (graph and weights), following ``semantics``.

    ``dt_us`` and ``timesteps`` set the input encoding (event counts in bins of ``dt_us`` µs over
    ``timesteps`` steps); a file evsim exported carries both, and they default to its values.
    ``neuron_dt_s`` is ``--semantics nir``'s neuron time step (default 1e-4 s, or the one an
    evsim export recorded); the peers' semantics use their own.
    """
    graph = read_nir(path)
    try:
        return nir_to_model(graph, dt_us, timesteps, semantics, neuron_dt_s, source=Path(path).name)
    except ModelError as exc:
        raise ModelError(exc.reason, path) from None


def nir_to_model(graph: NirGraph, dt_us=None, timesteps=None, semantics="nir", neuron_dt_s=None,
                 source: str = "") -> ModelFile:
    if semantics not in SEMANTICS:
        raise ModelError(f"unknown semantics {semantics!r}; choose one of {', '.join(SEMANTICS)}")
    meta = graph.metadata
    exported = _meta_str(meta, "format") == "evsim"
    if dt_us is None and exported:
        dt_us = int(_meta_num(meta, "dt_us"))
    if timesteps is None and exported:
        timesteps = int(_meta_num(meta, "timesteps"))
    if dt_us is None or timesteps is None:
        raise ModelError("NIR stores no time step: give the input bin width (dt_us, --dt-us) and the number "
                         "of steps (timesteps, --timesteps)")
    if isinstance(dt_us, bool) or int(dt_us) != dt_us or dt_us < 1:
        raise ModelError(f"dt_us must be a positive whole number of microseconds, got {dt_us!r}")
    if isinstance(timesteps, bool) or int(timesteps) != timesteps or timesteps < 1:
        raise ModelError(f"timesteps must be a positive whole number, got {timesteps!r}")
    if neuron_dt_s is not None and semantics != "nir":
        raise ModelError(f"the neuron time step is --semantics nir's; {semantics} uses its own")
    if neuron_dt_s is None:
        neuron_dt_s = _meta_num(meta, "neuron_dt_s") if exported else DEFAULT_NEURON_DT_S
    if not (math.isfinite(neuron_dt_s) and neuron_dt_s > 0):
        raise ModelError(f"the neuron time step must be a positive number of seconds, got {neuron_dt_s!r}")
    dt = PEER_DT_S.get(semantics, neuron_dt_s)
    order, shapes = check_graph(graph)
    builder = _Builder(graph, shapes, semantics, dt, exported and semantics == "nir")
    builder.build(order)
    c, h, w = shapes[next(n for n in order if graph.nodes[n].type == "Input")]
    encoding = {"kind": "events", "window_us": int(dt_us) * int(timesteps), "sensor_size": [w, h, c]}
    if exported and semantics == "nir" and _meta_str(meta, "meta"):
        model_meta = json.loads(_meta_str(meta, "meta"))
    else:
        model_meta = {"imported_from": source, "format": f"NIR {graph.version}".strip(), "semantics": semantics,
                      "neuron_dt_s": dt if semantics != "sinabs" else None}
    evsim_graph = Graph(input_shape=(c, h, w), populations=tuple(builder.populations), timesteps=int(timesteps),
                        encoding=encoding, meta=model_meta)
    evsim_graph.validate()
    return ModelFile(graph=evsim_graph, weights=builder.weights)


def _meta_str(meta: dict, key: str) -> str:
    value = meta.get(METADATA_PREFIX + key)
    return value if isinstance(value, str) else ""


def _meta_num(meta: dict, key: str) -> float:
    value = meta.get(METADATA_PREFIX + key)
    try:
        number = float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        raise ModelError(f"graph metadata {METADATA_PREFIX + key} is missing or not a number") from None
    if not math.isfinite(number):
        raise ModelError(f"graph metadata {METADATA_PREFIX + key} is not finite")
    return number


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
        paths = []
        for p in self.preds[name]:
            t = self.node(p).type
            if t == "Input" or t in SPIKING_TYPES:
                paths.append((p, []))
            elif t in READOUT_TYPES:
                raise ModelError(f"node {p!r} ({t}) feeds {name!r}; LI and I are read as the output only")
            else:
                paths.extend((src, ops + [p]) for src, ops in self.paths_into(p))
        return paths

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
                k = _pair(node, "kernel_size")
                stride = _pair(node, "stride", k)
                per_window = 1.0 / (k * k) if t == "AvgPool2d" else 1.0
                channel = _per_channel(scale_in, op_name)
                if not any(self.node(n).type in (*WEIGHT_TYPES, *POOL_TYPES) for n in rest):
                    if any(self.node(n).type == "Scale" for n in rest):
                        raise ModelError(f"node {op_name!r} ({t}): a Scale after pooling with no weights "
                                         "to fold it into")
                    if channel is not None and not np.all(channel == channel[0]):
                        raise ModelError(f"node {op_name!r} ({t}): a per-channel Scale with no weights to fold it into")
                    factor = per_window * (1.0 if channel is None else float(channel[0]))
                    op = {1.0 / (k * k): "avgpool", 1.0: "sumpool"}.get(factor)
                    if op is None or self.gain_folds(gain) is False:
                        raise ModelError(f"node {op_name!r} ({t}): pooling scaled by {factor:g} cannot be "
                                         "represented without weights to fold the scale into")
                    return Projection(source=source, op=op, kernel=k, stride=stride)
                source = self.passthrough_pool(source, op_name, k, stride)
                shape = self.shapes[op_name]
                factor = np.full(shape[0], per_window) if channel is None else channel * per_window
                scale_in = np.broadcast_to(factor[:, None, None], shape).copy()
                continue
            # a weight node: every other op of the path must be Flatten or Scale
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
            weight_name = _text_or(node.metadata.get(METADATA_PREFIX + "weight")) if self.evsim_export else ""
            weight_name = weight_name or op_name + suffix
            if weight_name in self.weights:
                weight_name = f"{weight_name}_{target}"
            if t == "Conv2d":
                channel_in = _per_channel(scale_in, op_name)
                if channel_in is not None:
                    weight = weight * channel_in[None, :, None, None].astype(weight.dtype)
                channel_out = _per_channel(scale_out, op_name)
                factor = _combine(channel_out, gain, op_name, per_channel=True, shape=self.shapes[target])
                if factor is not None:
                    weight = weight * factor[:, None, None, None].astype(weight.dtype)
                k = weight.shape[2]
                stride = _pair(node, "stride", 1)
                projection = Projection(source=source, op="conv", weight=weight_name, kernel=k, stride=stride,
                                        padding=conv_padding(node, k, stride))
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
        if scale_in is not None and not np.all(scale_in == 1):
            raise ModelError(f"a Scale on the path into {target!r} has no weights to fold into")
        if self.gain_folds(gain) is False:
            raise ModelError(f"node {target!r}: its input gain {float(np.asarray(gain).reshape(-1)[0]):g} has no "
                             "weights to fold into")
        return Projection(source=source, op="identity")

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


def _text_or(value) -> str:
    return value if isinstance(value, str) else ""


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


# ------------------------------------------------------------------------------- export


def model_to_nir(graph: Graph, weights: dict[str, np.ndarray]) -> NirGraph:
    """evsim's populations and projections as NIR nodes (module docstring); ModelError for a
    variant NIR cannot express (subtractive reset, several spikes per step, a membrane floor,
    the ``>=`` test)."""
    nodes: dict[str, NirNode] = {}
    edges: list[tuple[str, str]] = []
    nodes["input"] = NirNode("input", "Input", {"shape": np.array(graph.input_shape, dtype=np.int64)})
    node_of = {INPUT: "input"}
    taken = {"input", "output"}

    def fresh(name: str) -> str:
        while name in taken:
            name += "_"
        taken.add(name)
        return name

    for pop in graph.populations:
        if is_passthrough_pool(pop):
            # a pooling layer of its own (how evsim imports pooling that feeds weights): the
            # pooling node alone, exactly what the next weights receive
            proj = pop.inputs[0]
            pool = NirNode(fresh(pop.name), "SumPool2d", {
                "kernel_size": np.array([proj.kernel] * 2, dtype=np.int64),
                "stride": np.array([proj.stride] * 2, dtype=np.int64),
                "padding": np.array([0, 0], dtype=np.int64)})
            nodes[pool.name] = pool
            edges.append((node_of[proj.source], pool.name))
            node_of[pop.name] = pool.name
            continue
        if pop.kind != "output":
            _check_exportable(pop)
            target = fresh(pop.name)
        else:
            target = "output"
        for i, proj in enumerate(pop.inputs):
            tag = f"{pop.name}_{proj.op}" + (f"{i}" if len(pop.inputs) > 1 else "")
            source = node_of[proj.source]
            src_shape = graph.shape_of(proj.source)
            if proj.op == "identity":
                edges.append((source, target))
                continue
            if proj.op == "conv":
                w = np.asarray(weights[proj.weight])
                op_node = NirNode(fresh(tag), "Conv2d", {
                    "weight": w, "bias": np.zeros(w.shape[0], dtype=w.dtype),
                    "stride": np.array([proj.stride] * 2, dtype=np.int64),
                    "padding": np.array([proj.padding] * 2, dtype=np.int64),
                    "dilation": np.array([1, 1], dtype=np.int64), "groups": np.int64(1),
                    "input_shape": np.array(src_shape[1:], dtype=np.int64)},
                    {METADATA_PREFIX + "weight": proj.weight})
            elif proj.op == "linear":
                if len(src_shape) == 3:
                    flat = NirNode(fresh(f"{tag}_flatten"), "Flatten", {
                        "start_dim": np.int64(0), "end_dim": np.int64(-1),
                        "input_type": np.array(src_shape, dtype=np.int64)})
                    nodes[flat.name] = flat
                    edges.append((source, flat.name))
                    source = flat.name
                op_node = NirNode(fresh(tag), "Linear", {"weight": np.asarray(weights[proj.weight])},
                                  {METADATA_PREFIX + "weight": proj.weight})
            else:
                op_node = NirNode(fresh(tag), "AvgPool2d" if proj.op == "avgpool" else "SumPool2d", {
                    "kernel_size": np.array([proj.kernel] * 2, dtype=np.int64),
                    "stride": np.array([proj.stride] * 2, dtype=np.int64),
                    "padding": np.array([0, 0], dtype=np.int64)})
            nodes[op_node.name] = op_node
            edges.append((source, op_node.name))
            edges.append((op_node.name, target))
        if pop.kind == "output":
            nodes["output"] = NirNode("output", "Output", {"shape": np.array(pop.shape, dtype=np.int64)})
        else:
            nodes[target] = _lif_node(target, pop)
            node_of[pop.name] = target
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
        METADATA_PREFIX + "input": f"event counts per (polarity, y, x) in bins of dt_us over timesteps steps",
        METADATA_PREFIX + "meta": json.dumps(graph.meta),
    }
    if not window:
        raise ModelError("the model has no input window (encoding.window_us), so the bin width is unknown")
    if window % graph.timesteps:
        raise ModelError(f"the model's window {window} µs is not a whole number of {graph.timesteps} bins")
    return NirGraph(nodes, tuple(edges), metadata, "1.0.8")


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
