"""The model file: one ``.npz`` holding the graph as JSON and the weights as plain arrays.

It is written by the trainer and read by the engine, with numpy alone: ``np.load`` runs with
``allow_pickle=False``, so an untrusted file cannot execute code. The JSON carries a format name
and version; the loader rejects unknown versions, missing or extra weights, wrong shapes, and
non-finite values before anything else sees them.
"""

from __future__ import annotations

import json
import zipfile
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
    """Read and validate a model file (a path, or a bundled model's name); raise ModelError on anything malformed."""
    path = model_path(path_or_name)
    if path.is_dir():
        raise ModelError("is a folder, not a model file (.npz)", path)
    if not path.is_file():
        raise ModelError("no such model file", path)
    if not zipfile.is_zipfile(path):  # else numpy answers a text file with advice to unpickle it
        raise ModelError("not an evsim model file: a model is the .npz archive `evsim train` writes", path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ModelError(f"not a readable evsim model file ({exc})", path) from None
    blob = arrays.pop(GRAPH_KEY, None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise ModelError("model file has no graph description", path)
    try:
        header = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"graph description is not valid JSON ({exc})", path) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelError("not an evsim model file (format name missing)", path)
    if header.get("version") not in READABLE_VERSIONS:
        raise ModelError(
            f"model format version {header.get('version')!r} is not supported "
            f"(this evsim reads versions {', '.join(map(str, READABLE_VERSIONS))})",
            path,
        )
    try:
        graph = Graph.from_dict(header["graph"])
    except ModelError as exc:
        raise ModelError(exc.reason, path) from None
    except (KeyError, TypeError) as exc:
        raise ModelError(f"malformed graph description ({exc!r})", path) from None
    check_weights(graph, arrays, path)
    return ModelFile(graph=graph, weights=arrays)


def check_weights(graph: Graph, weights: dict[str, np.ndarray], path=None) -> None:
    expected = graph.weight_shapes()
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing:
        raise ModelError(f"missing weights: {', '.join(missing)}", path)
    if extra:
        raise ModelError(f"weights not used by the graph: {', '.join(extra)}", path)
    for name, shape in expected.items():
        w = np.asarray(weights[name])
        if w.dtype not in (np.float32, np.float64):
            raise ModelError(f"weight {name} has dtype {w.dtype}, expected float32 or float64", path)
        if tuple(w.shape) != tuple(shape):
            raise ModelError(f"weight {name} has shape {tuple(w.shape)}, graph needs {tuple(shape)}", path)
        if not np.all(np.isfinite(w)):
            raise ModelError(f"weight {name} contains NaN or infinite values", path)
