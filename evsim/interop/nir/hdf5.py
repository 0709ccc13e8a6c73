"""NIR's HDF5 layout, read and written with h5py alone: datasets and strings, never pickles or
code (``nir.read`` is not used)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evsim.errors import ModelError, require
from evsim.interop.nir.nodes import NirGraph, NirNode, _text


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
