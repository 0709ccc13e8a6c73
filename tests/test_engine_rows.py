"""Layers whose steps run by row masks (``kernels._by_rows``: the paper's rule, convolutions at
most 64 pixels wide) give exactly what the per-pixel path gives: the same membranes, counts and
spikes, and the spikes of a step in the same order (first-touch order, which fixes the float32
rounding of the next layer's adds), with and without the fused pooling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evsim.datasets.formats import read_events
from evsim.engine import kernels
from evsim.engine.layers import LayerState
from evsim.engine.network import Network
from evsim.engine.step import Workspace, gather, pool_share_of, run_layers
from evsim.events import SpikeEvents
from evsim.model.graph import INPUT, Graph, Population, Projection
from evsim.runtime.load import load

FILES = ["Test/0/00004.bin", "Test/3/00031.bin", "Test/7/00001.bin"]


def queues_of(network, x):
    """Every layer's input events for input ``x``: the queues of a step-mode run (copies)."""
    ws = Workspace.allocate(network.layers, network.timesteps, network.dtype)
    queues = {INPUT: network.encode(x)}
    counters = [np.zeros(kernels.COUNTER_COLUMNS, dtype=np.int64) for _ in network.layers]
    run_layers(network.layers, network._leak_tables, ws, queues, counters, network.timesteps)
    return {name: (ev.step_offsets.copy(), ev.index.copy(), ev.sign.copy()) for name, ev in queues.items()}


def run_alone(network, i, queues, by_rows):
    """Layer ``i`` over its sources' queues through run_population_steps; ``by_rows=False`` states
    the paper's rule as a general rule, which takes the per-pixel path with the same semantics."""
    layer = network.layers[i]
    rule = layer.rule.copy()
    if not by_rows:
        rule[kernels.R_DEFAULT] = 0.0
    assert kernels._by_rows(layer.projections, layer.unit, rule[kernels.R_DEFAULT] != 0.0) == by_rows
    state = LayerState.allocate(layer, network.dtype, np.int64)
    ev_offsets, ev_index, ev_sign = gather(_events(queues), layer.sources)
    T = network.timesteps
    out_index = np.zeros(T * layer.size + layer.unit, np.int32)
    out_count = np.zeros(T * layer.size + layer.unit, network.dtype)
    out_offsets = np.zeros(T + 1, np.int64)
    counters = np.zeros(kernels.COUNTER_COLUMNS, np.int64)
    n = kernels.run_population_steps(
        state.V, layer.unit, state.t_last, state.stamp, state.touched, state.carry, 0, network._leak_tables[i],
        math.log(layer.neuron.leak), layer.neuron.threshold, layer.thresholds, rule, layer.neuron.fires, layer.projections,
        layer.weights, layer.routes, ev_offsets, ev_index, ev_sign, out_index, out_count, out_offsets, counters,
    )
    return state.V, state.t_last, out_index[:n], out_count[:n], out_offsets, counters


def _events(queues):
    return {name: SpikeEvents(*q) for name, q in queues.items()}


def assert_same(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)  # the bits, and the order of the spikes


def check_network(network, inputs):
    layers = [i for i, layer in enumerate(network.layers)
              if layer.neuron.fires and kernels._by_rows(layer.projections, layer.unit, True)]
    assert layers
    for x in inputs:
        queues = queues_of(network, x)
        for i in layers:
            assert_same(run_alone(network, i, queues, True), run_alone(network, i, queues, False))
    return layers


def test_lenet_nmnist_convolutions_on_real_recordings(nmnist_root):
    network = load("lenet-nmnist")
    inputs = []
    for name in FILES:
        events = read_events(nmnist_root / name)[0].copy()
        events["t"] -= events["t"][0]
        inputs.append(events)
    assert check_network(network, inputs) == [0]  # conv2 has 50 channels: per pixel (kernels.ROW_CHANNELS)


def test_the_fused_pooling_by_rows_as_the_two_layers_apart(nmnist_root):
    """run_population_steps_pooled on a layer that runs by rows: its spikes, and the pooling's,
    in the order of the per-pixel layer followed by the pooling's own pass."""
    network = load("lenet-nmnist")
    events = read_events(nmnist_root / FILES[1])[0].copy()
    events["t"] -= events["t"][0]
    queues = queues_of(network, events)
    for i in (0, 2):
        layer, pool = network.layers[i], network.layers[i + 1]
        T = network.timesteps
        states = [LayerState.allocate(l, network.dtype, np.int64) for l in (layer, pool)]
        outs = [(np.zeros(T * l.size + l.unit, np.int32), np.zeros(T * l.size + l.unit, network.dtype),
                 np.zeros(T + 1, np.int64), np.zeros(kernels.COUNTER_COLUMNS, np.int64)) for l in (layer, pool)]
        ev_offsets, ev_index, ev_sign = gather(_events(queues), layer.sources)
        n, n_pool = kernels.run_population_steps_pooled(
            states[0].V, layer.unit, states[0].t_last, states[0].stamp, states[0].touched, 0,
            network._leak_tables[i], math.log(layer.neuron.leak), layer.neuron.threshold, layer.projections, layer.weights,
            layer.routes, ev_offsets, ev_index, ev_sign, *outs[0],
            states[1].V, states[1].t_last, states[1].stamp, states[1].touched, network._leak_tables[i + 1],
            math.log(pool.neuron.leak), pool.neuron.threshold, pool.routes, pool_share_of(pool), *outs[1],
        )
        apart = run_alone(network, i, queues, False)
        assert_same((states[0].V, states[0].t_last, outs[0][0][:n], outs[0][1][:n], outs[0][2], outs[0][3]), apart)
        spikes = dict(queues, **{layer.name: (apart[4], apart[2], apart[3])})
        pooled = run_alone(network, i + 1, spikes, False)
        assert_same((states[1].V, outs[1][0][:n_pool], outs[1][2], outs[1][3]),
                    (pooled[0], pooled[2], pooled[4], pooled[5]))


@pytest.mark.parametrize("width", [9, 64, 65])
def test_strided_and_multi_source_convolutions(width):
    """Stride 2 with padding (the new pixels of a row listed high to low), two convolutions into
    one layer (the second's first touches after the first's), rows of exactly 64 pixels (a full
    mask) and of 65 (the first layer then takes the per-pixel path)."""
    rng = np.random.default_rng(width)
    graph = Graph((2, 7, width), (
        Population("c1", "lif", (6, 7, width), (Projection("input", "conv", "w1", 3, 1, 1),), threshold=0.5,
                   leak=0.9),
        Population("c2", "lif", (5, 4, (width + 1) // 2), (Projection("c1", "conv", "w2", 3, 2, 1),
                                                             Projection("input", "conv", "w3", 3, 2, 1)),
                   threshold=0.8, leak=0.95),
        Population("out", "output", (3,), (Projection("c2", "linear", "w4"),)),
    ), timesteps=8)
    weights = {"w1": rng.normal(0.2, 0.5, (6, 2, 3, 3)), "w2": rng.normal(0.1, 0.4, (5, 6, 3, 3)),
               "w3": rng.normal(0.1, 0.4, (5, 2, 3, 3)), "w4": rng.normal(0, 0.3, (3, 5 * 4 * ((width + 1) // 2)))}
    network = Network(graph, weights, dtype=np.float32)
    inputs = [(rng.random((8, 2, 7, width)) < 0.3).astype(np.int8) for _ in range(2)]
    rows = [i for i, layer in enumerate(network.layers) if kernels._by_rows(layer.projections, layer.unit, True)]
    assert rows == ([1] if width > 64 else [0, 1])  # c2 is (width + 1) // 2 wide
    check_network(network, inputs)
    spikes = [network.run(x).spikes for x in inputs]
    assert all(s > 0 for s in spikes)
