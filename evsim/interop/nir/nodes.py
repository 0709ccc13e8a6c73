"""A NIR graph as plain records: nodes with their parameters (numpy arrays or strings), edges
between node names, and the graph's metadata; the node types evsim imports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from evsim.errors import ModelError

WEIGHT_TYPES = ("Conv2d", "Affine", "Linear")
POOL_TYPES = ("AvgPool2d", "SumPool2d")
SPIKING_TYPES = ("IF", "LIF")
READOUT_TYPES = ("LI", "I")
NODE_TYPES = ("Input", "Output", "Flatten", "Scale", *WEIGHT_TYPES, *POOL_TYPES, *SPIKING_TYPES, *READOUT_TYPES)
METADATA_PREFIX = "evsim_"
MAX_NODES = 10_000
"""The most nodes evsim reads from one NIR graph (a large CNN has a few dozen; a long chain of
Scale or Flatten nodes still imports), checked before a node is read."""
MAX_EDGES = 20_000
"""The most edges of one NIR graph, checked before the edge list is read."""
MAX_FIELDS = 64
"""The most datasets in one node or metadata group (a NIR node has at most a dozen)."""


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


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    if isinstance(value, str):
        return value
    raise ModelError(f"expected a string, got {type(value).__name__}")


def _text_or(value) -> str:
    return value if isinstance(value, str) else ""


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


def _param(node: NirNode, key: str) -> np.ndarray:
    if key not in node.params or isinstance(node.params[key], str):
        raise ModelError(f"node {node.name!r} ({node.type}) has no numeric {key}")
    return np.asarray(node.params[key])
