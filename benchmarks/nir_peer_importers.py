"""The peers' own NIR importers, for benchmarks/nir_peer_fixtures.py (``--cross``,
``--export-check``) and benchmarks/nir_export_check.py: each drives the module a peer builds from
a NIR graph over ``x [N, T, ...]`` and returns its output at every step. Runs in the peers'
virtualenv (nir_peer_fixtures.py says how to make it)."""

from __future__ import annotations

import contextlib
import io
import logging
import traceback
from pathlib import Path

import nir
import numpy as np
import torch


def _stepwise(module, x):
    """Drive a nirtorch-built module (returns (output, state)) one step at a time."""
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            o, state = module(x[:, t], state)
            outs.append(o.reshape(x.shape[0], -1))
    return torch.stack(outs, 1)


def import_snntorch(graph, x):
    from snntorch.import_nir import import_from_nir
    return _stepwise(import_from_nir(graph), x)


def import_norse(graph, x):
    from norse.torch import from_nir
    return _stepwise(from_nir(graph), x)


def import_sinabs(graph, x):
    from sinabs.nir import from_nir
    with torch.no_grad():
        o = from_nir(graph, batch_size=x.shape[0])(x.reshape(-1, *x.shape[2:]))
    return (o[0] if isinstance(o, tuple) else o).reshape(x.shape[0], x.shape[1], -1)


def import_spikingjelly(graph, x):
    from spikingjelly.activation_based.nir_exchange import import_from_nir
    return _stepwise(import_from_nir(graph, dt=1e-4), x)


IMPORTERS = {"snntorch": import_snntorch, "norse": import_norse, "sinabs": import_sinabs,
             "spikingjelly": import_spikingjelly}


def cross_import(out: Path) -> dict:
    """Each peer's importer on each fixture, as a batch of 3 and one sample at a time: does it load
    and run, and does it reproduce the exporting peer's own output spikes?"""
    logging.disable(logging.WARNING)
    table = {}
    for folder in sorted(p for p in out.iterdir() if (p / "model.nir").exists()):
        ref = np.load(folder / "outputs.npz")["out_spikes"]
        x = torch.from_numpy(np.load(folder / "inputs.npz")["x"])
        for name, fn in IMPORTERS.items():
            for batch in (True, False):
                key = f"{folder.name} -> {name} ({'batch of 3' if batch else 'one sample at a time'})"
                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # snntorch prints whole arrays
                        if batch:
                            got = fn(nir.read(folder / "model.nir"), x).numpy()
                        else:
                            got = np.concatenate([fn(nir.read(folder / "model.nir"), x[i:i + 1]).numpy()
                                                  for i in range(len(x))])
                    got = got.reshape(ref.shape)
                    table[key] = (f"runs; output spikes {got.sum():.0f} vs the exporter's {ref.sum():.0f}; "
                                  f"identical: {bool(np.array_equal(got, ref))}")
                except Exception as e:  # the point is to record how each importer fails
                    tb = traceback.extract_tb(e.__traceback__)[-1]
                    where = tb.filename.split("site-packages/")[-1]
                    table[key] = f"fails: {type(e).__name__}: {str(e).splitlines()[0][:160]} ({where}:{tb.lineno})"
    return table


def as_evsim_export(graph: nir.NIRGraph, leak: float, dt: float = 1e-4, tau_if: float = 1e12) -> nir.NIRGraph:
    """The graph with every IF/LIF written the way SEMANTICS.md section 5 proposes evsim exports a
    population of leak ``leak``: LIF(tau = dt/(1 - leak), r = tau/dt, v_leak = 0, v_reset = 0), and
    for leak 1 a LIF with a huge tau; pools with two-element kernel and stride."""
    nodes = {}
    for key, node in graph.nodes.items():
        if isinstance(node, (nir.IF, nir.LIF)):
            shape = node.v_threshold.shape
            tau = tau_if if leak == 1 else dt / (1 - leak)
            nodes[key] = nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / dt), v_leak=np.zeros(shape),
                                 v_threshold=node.v_threshold.astype(np.float64), v_reset=np.zeros(shape))
        elif isinstance(node, nir.AvgPool2d):
            nodes[key] = nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
        else:
            nodes[key] = node
    return nir.NIRGraph(nodes, graph.edges, type_check=False)


def nudged(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Thresholds one float32 ulp up: turns SpikingJelly's v >= theta into v > theta for theta = 1."""
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            node.v_threshold = np.full_like(node.v_threshold, np.nextafter(np.float32(1), np.float32(2)))
    return graph


def export_mapping_check(out: Path) -> dict:
    """Do snntorch and SpikingJelly read the proposed evsim export mapping as evsim means it?"""
    logging.disable(logging.WARNING)

    def snntorch_one_by_one(graph_fn, x):  # snntorch's importer cannot run a batch (Flatten)
        with contextlib.redirect_stdout(io.StringIO()):
            return np.concatenate([import_snntorch(graph_fn(), x[i:i + 1]).numpy() for i in range(len(x))])

    res = {}
    sj = out / "spikingjelly_lenet"
    x = torch.from_numpy(np.load(sj / "inputs.npz")["x"])
    ref = np.load(sj / "outputs.npz")["out_spikes"].reshape(3, 20, -1)
    got_sj = import_spikingjelly(as_evsim_export(nir.read(sj / "model.nir"), 1.0), x).numpy()
    got_snn = snntorch_one_by_one(lambda: as_evsim_export(nir.read(sj / "model.nir"), 1.0), x)
    got_sj_gt = import_spikingjelly(nudged(as_evsim_export(nir.read(sj / "model.nir"), 1.0)), x).numpy()
    res["IF as huge-tau LIF -> SpikingJelly, equals its own IF run"] = bool(np.array_equal(got_sj, ref))
    res["IF as huge-tau LIF -> snntorch, output spikes (SpikingJelly's own IF: %d)" % ref.sum()] = int(got_snn.sum())
    res["IF as huge-tau LIF: SpikingJelly with theta + 1 ulp equals snntorch"] = bool(np.array_equal(got_sj_gt, got_snn))
    st = out / "snntorch_lenet"
    ref = np.load(st / "outputs.npz")["out_spikes"].reshape(3, 20, -1)
    got = import_spikingjelly(nudged(as_evsim_export(nir.read(st / "model.nir"), 0.875)), x).numpy()
    res["leak 0.875 as LIF -> SpikingJelly with theta + 1 ulp equals snntorch's own run"] = bool(np.array_equal(got, ref))
    return res
