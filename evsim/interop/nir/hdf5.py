"""NIR's HDF5 layout, read and written with h5py alone: datasets and strings, never pickles or
code (``nir.read`` is not used)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from evsim.errors import ModelError, require
from evsim.interop.nir.h5access import H5Access
from evsim.interop.nir.nodes import MAX_EDGES, MAX_FIELDS, MAX_NODES, NirGraph, NirNode, _text
from evsim.model.file import MAX_MODEL_BYTES


def read_nir(path) -> NirGraph:
    """Read a NIR file's graph with h5py (datasets and strings only); ModelError if unreadable.

    Every link and dataset is checked before it is followed or read (evsim.interop.nir.h5access):
    nothing outside the file, at most MAX_NODES nodes and MAX_EDGES edges, and at most
    MAX_MODEL_BYTES declared in all."""
    h5py = require("h5py", "nir", "reading NIR files")
    path = Path(path)
    if not path.is_file():
        raise ModelError("no such NIR file", path)
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ModelError(f"the file has {size} bytes; evsim reads model files of at most {MAX_MODEL_BYTES} bytes "
                         "(MAX_MODEL_BYTES)", path)
    try:
        with h5py.File(path, "r") as f:
            access = H5Access(h5py)
            version = access.child(f, "version")
            version = access.read(version, text=True) if version is not None else ""
            if not isinstance(access.child(f, "node"), h5py.Group):
                raise ModelError("not a NIR file (no 'node' group)", path)
            root = access.group(f, "node")
            if access.read(access.dataset(root, "type"), text=True) != "NIRGraph":
                raise ModelError("not a NIR graph (the root node is not a NIRGraph)", path)
            group = access.group(root, "nodes")
            nodes = {name: _read_node(name, access.child(group, name), access)
                     for name in access.names(group, MAX_NODES, "nodes")}
            edges = _read_edges(root, access)
            metadata = _read_metadata(root, access)
    except ModelError as exc:
        raise ModelError(exc.reason, path) from None
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError, AttributeError, RuntimeError) as exc:
        raise ModelError(f"not a readable NIR file ({type(exc).__name__}: {exc})", path) from None
    return NirGraph(nodes, edges, metadata, version)


def _read_node(name: str, group, access: H5Access) -> NirNode:
    if not isinstance(group, access.h5py.Group) or access.child(group, "type") is None:
        raise ModelError(f"node {name!r} has no type")
    type_ = access.read(access.dataset(group, "type"), text=True)
    if type_ == "NIRGraph":
        raise ModelError(f"node {name!r} is a nested NIRGraph; evsim reads flat graphs only")
    params = {}
    for key in access.names(group, MAX_FIELDS, "fields"):
        if key in ("type", "metadata"):
            continue
        item = access.child(group, key)
        if not isinstance(item, access.h5py.Dataset):
            raise ModelError(f"node {name!r} ({type_}): field {key!r} is not a dataset")
        params[key] = access.read(item)
    return NirNode(name, type_, params, _read_metadata(group, access))


def _read_edges(root, access: H5Access) -> tuple:
    edges = access.child(root, "edges")
    if edges is None:
        return ()
    if not isinstance(edges, access.h5py.Dataset):
        raise ModelError("'edges' is not a dataset")
    shape = edges.shape or ()
    if math.prod(shape) and (len(shape) != 2 or shape[1] != 2):
        raise ModelError(f"edges must be pairs of node names, got shape {shape}")
    if math.prod(shape) > 2 * MAX_EDGES:
        raise ModelError(f"the graph has {shape[0]} edges; evsim reads at most {MAX_EDGES}")
    if not access.check(edges):
        raise ModelError("edges must be pairs of node names, got numbers")
    raw = np.asarray(edges[()])
    return tuple((_text(a), _text(b)) for a, b in raw.reshape(-1, 2))


def _read_metadata(group, access: H5Access) -> dict:
    meta = access.child(group, "metadata")
    if not isinstance(meta, access.h5py.Group):
        return {}
    out = {}
    for key in access.names(meta, MAX_FIELDS, "metadata fields"):
        item = access.child(meta, key)
        if isinstance(item, access.h5py.Dataset):
            out[key] = access.read(item)
    return out


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
