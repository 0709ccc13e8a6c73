"""The model file: one ``.npz`` holding the graph as JSON and the weights as plain arrays.

It is written by the trainer and read by the engine, with numpy alone: every array is read with
``allow_pickle=False``, so an untrusted file cannot execute code. The JSON carries a format name
and version; the loader rejects unknown versions, missing or extra weights, wrong shapes, and
non-finite values before anything else sees them. It checks every array's declared size (its
``.npy`` header, read alone) against the graph and MAX_MODEL_BYTES before decompressing it.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evsim.errors import ModelError
from evsim.model.graph import Graph
from evsim.paths import BUNDLED_MODELS

FORMAT_NAME = "evsim-model"
FORMAT_VERSION = 2
"""Version 2 adds the neuron variants' keys (evsim.model.neuron); a version 1 file has none and
reads as the default neuron, so both are read."""
READABLE_VERSIONS = (1, 2)
GRAPH_KEY = "__graph__"
MAX_MODEL_BYTES = 1 << 30
"""The most bytes a model's arrays may declare in total (the weights of a ``.npz``, every dataset
of a NIR file; 1 GiB, some 250 million float32 weights): a file that declares more is refused
before any array is read or decompressed."""
MAX_GRAPH_BYTES = 16 << 20
"""The most bytes of a model file's graph description (JSON; a bundled model's takes about 10 kB)."""
MAX_ARRAYS = 10_000


@dataclass(frozen=True)
class ModelFile:
    graph: Graph
    weights: dict[str, np.ndarray]


def save_model(path, graph: Graph, weights: dict[str, np.ndarray]) -> Path:
    """Write ``graph`` and ``weights`` (name -> array, float32 or float64) to ``path``."""
    path = Path(path)
    check_weights(graph, weights, path)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "graph": graph.to_dict()}
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    arrays = {GRAPH_KEY: blob, **{k: np.ascontiguousarray(v) for k, v in weights.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # a file handle keeps numpy from appending ".npz"
        np.savez(fh, **arrays)
    return path


def model_path(path_or_name) -> Path:
    """The file of a model given as a path, or as the name of a model bundled with evsim."""
    path = Path(path_or_name)
    bare = isinstance(path_or_name, str) and "/" not in path_or_name and not path.suffix
    if bare and path.exists() and (BUNDLED_MODELS / f"{path_or_name}.npz").exists():
        raise ModelError(f"{path_or_name!r} names both a bundled model and a file in this folder: write "
                         f"./{path_or_name} for the file, or rename it")
    if not path.exists():
        bundled = BUNDLED_MODELS / f"{path_or_name}.npz"
        if bundled.exists():
            return bundled
        if path.suffix or len(path.parts) > 1:
            raise ModelError("no such model file", path)
        names = sorted(p.stem for p in BUNDLED_MODELS.glob("*.npz"))
        raise ModelError(f"no model file or bundled model named {str(path_or_name)!r} (bundled: {', '.join(names) or 'none'})")
    return path


def load_model(path_or_name) -> ModelFile:
    """Read and validate a model file (a path, or a bundled model's name); raise ModelError on anything malformed.

    Sizes come before reads: the graph record's and every weight's ``.npy`` header is read alone
    and checked (dtype, shape against the graph, the total against MAX_MODEL_BYTES) before any
    array is decompressed, so no file makes this allocate more than the model it declares."""
    path = model_path(path_or_name)
    if path.is_dir():
        raise ModelError("is a folder, not a model file (.npz)", path)
    if not path.is_file():
        raise ModelError("no such model file", path)
    if not zipfile.is_zipfile(path):  # else numpy answers a text file with advice to unpickle it
        raise ModelError("not an evsim model file: a model is the .npz archive `evsim train` writes", path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = _array_members(archive)
            if GRAPH_KEY not in members:
                raise ModelError("model file has no graph description")
            graph = _read_graph(archive, members.pop(GRAPH_KEY))
            expected = graph.weight_shapes()
            check_weight_names(expected, members)
            _check_declared(expected, {name: _npy_header(archive, info, name) for name, info in members.items()})
            arrays = {name: _read_npy(archive, info) for name, info in members.items()}
    except ModelError as exc:
        raise ModelError(exc.reason, path) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, zlib.error, NotImplementedError) as exc:
        raise ModelError(f"not a readable evsim model file ({exc})", path) from None
    check_weights(graph, arrays, path)
    return ModelFile(graph=graph, weights=arrays)


def _array_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's ``.npy`` members by array name; ModelError for anything else in it."""
    infos = archive.infolist()
    if len(infos) > MAX_ARRAYS:
        raise ModelError(f"model file holds {len(infos)} members; a model has at most {MAX_ARRAYS} arrays")
    members = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ModelError(f"model file holds {info.filename!r}, which is not an array (.npy)")
        name = info.filename[: -len(".npy")]
        if name in members:
            raise ModelError(f"model file holds the array {name!r} twice")
        members[name] = info
    return members


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype a member's ``.npy`` header declares, read without its data."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ModelError(f"array {name!r} has .npy format {version}, which evsim does not read")
    if dtype.hasobject:
        raise ModelError(f"not a readable evsim model file (array {name!r} holds Python objects, which only "
                         "unpickling can read; evsim reads arrays with allow_pickle=False)")
    return tuple(shape), dtype


def _read_graph(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Graph:
    shape, dtype = _npy_header(archive, info, GRAPH_KEY)
    if dtype != np.uint8 or len(shape) != 1:
        raise ModelError("model file has no graph description")
    if shape[0] > MAX_GRAPH_BYTES:
        raise ModelError(f"the graph description declares {shape[0]} bytes; evsim reads at most {MAX_GRAPH_BYTES}")
    blob = _read_npy(archive, info)
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"graph description is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelError("not an evsim model file (format name missing)")
    if header.get("version") not in READABLE_VERSIONS:
        raise ModelError(f"model format version {header.get('version')!r} is not supported "
                         f"(this evsim reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    try:
        return Graph.from_dict(header["graph"])
    except (KeyError, TypeError, ValueError, RecursionError) as exc:
        raise ModelError(f"malformed graph description ({exc!r})") from None


def _check_declared(expected: dict[str, tuple[int, ...]], declared: dict) -> None:
    """Each weight's declared dtype and shape against the graph, and their total against MAX_MODEL_BYTES."""
    needed = sum(math.prod(shape) for shape in expected.values()) * np.dtype(np.float32).itemsize
    if needed > MAX_MODEL_BYTES:
        raise ModelError(f"the graph needs {needed} bytes of weights; evsim reads models of at most "
                         f"{MAX_MODEL_BYTES} bytes (MAX_MODEL_BYTES)")
    for name, (shape, dtype) in declared.items():
        _check_weight(name, dtype, shape, expected[name])
    total = sum(math.prod(shape) * dtype.itemsize for shape, dtype in declared.values())
    if total > MAX_MODEL_BYTES:
        raise ModelError(f"the weights declare {total} bytes; evsim reads models of at most {MAX_MODEL_BYTES} bytes")


def _read_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """A member's array, its header already checked: numpy reads it in bounded chunks."""
    with archive.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def check_weight_names(expected, weights, path=None) -> None:
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing:
        raise ModelError(f"missing weights: {', '.join(missing)}", path)
    if extra:
        raise ModelError(f"weights not used by the graph: {', '.join(extra)}", path)


def _check_weight(name: str, dtype, shape, needed, path=None) -> None:
    if dtype not in (np.float32, np.float64):
        raise ModelError(f"weight {name} has dtype {dtype}, expected float32 or float64", path)
    if tuple(shape) != tuple(needed):
        raise ModelError(f"weight {name} has shape {tuple(shape)}, graph needs {tuple(needed)}", path)


def check_weights(graph: Graph, weights: dict[str, np.ndarray], path=None) -> None:
    expected = graph.weight_shapes()
    check_weight_names(expected, weights, path)
    for name, shape in expected.items():
        w = np.asarray(weights[name])
        _check_weight(name, w.dtype, w.shape, shape, path)
        if not np.all(np.isfinite(w)):
            raise ModelError(f"weight {name} contains NaN or infinite values", path)
