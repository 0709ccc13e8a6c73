"""NIR -> evsim: :func:`import_nir` reads a NIR file as an evsim model (graph and weights)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from evsim.errors import ModelError
from evsim.interop.nir.builder import _Builder
from evsim.interop.nir.checks import check_graph
from evsim.interop.nir.hdf5 import read_nir
from evsim.interop.nir.nodes import NirGraph, _meta_num, _meta_str
from evsim.interop.nir.semantics import DEFAULT_NEURON_DT_S, PEER_DT_S, SEMANTICS
from evsim.model.file import ModelFile
from evsim.model.graph import Graph


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
