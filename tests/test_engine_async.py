"""Asynchronous mode: continuous-time leak, per-event threshold tests, chunked streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evsim.events import make_events
from evsim.errors import InputError
from evsim.model.graph import Graph, Population, Projection
from evsim.engine.network import Network
from evsim.engine.asynchronous import Stream, step_width_us

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

WINDOW_US = 20_000
TIMESTEPS = 10


def small_network(seed: int, dtype=np.float64) -> Network:
    graph = Graph(
        (2, 8, 8),
        (
            Population("c1", "lif", (3, 8, 8), (Projection("input", "conv", "w1", 3, 1, 1),), leak=0.9),
            Population("p1", "pool", (3, 4, 4), (Projection("c1", "avgpool", kernel=2, stride=2),), threshold=0.75, leak=1.0),
            Population("f1", "lif", (6,), (Projection("p1", "linear", "w2"),), leak=0.95),
            Population("out", "output", (3,), (Projection("f1", "linear", "w3"),), leak=0.99),
        ),
        timesteps=TIMESTEPS,
        encoding={"kind": "events", "window_us": WINDOW_US, "sensor_size": [8, 8, 2]},
    )
    return Network(graph, network_weights(seed), dtype=dtype)


def network_weights(seed):
    rng = np.random.default_rng(seed)
    return {"w1": rng.normal(0, 0.7, (3, 2, 3, 3)), "w2": rng.normal(0, 0.9, (6, 48)), "w3": rng.normal(0, 0.8, (3, 6))}


def random_events(seed: int, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, WINDOW_US // 50, size=n)) * 50  # coarse clock: many simultaneous events
    return make_events(rng.integers(0, 8, n), rng.integers(0, 8, n), t, rng.integers(0, 2, n).astype(bool))


def naive_async(network: Network, weights: dict, events: np.ndarray, refractory_us: float = 0.0):
    """An independent reference: every arrival (the events of one timestamp) leaks *every* neuron
    of a layer to its time, adds its dense contribution (a conv/linear of the arriving spikes as
    a dense tensor), then tests *every* neuron."""
    step_us = step_width_us(network)
    graph = network.graph
    queue = [(float(e["t"]), ("input", (int(e["p"]), int(e["y"]), int(e["x"])))) for e in events]
    spikes_in = {"input": queue}
    counts = {}
    final = None
    for pop, layer in zip(graph.populations, network.layers):
        proj = pop.inputs[0]
        src_shape = graph.shape_of(proj.source)
        V = torch.zeros((1, *pop.shape), dtype=torch.float64)
        refractory_end = torch.full(pop.shape, -math.inf, dtype=torch.float64)
        t_prev = 0.0
        out = []
        tau = -step_us / math.log(pop.leak) if pop.leak < 1 else math.inf
        arrivals: dict[float, list] = {}
        for t, (_, where) in spikes_in[proj.source]:
            arrivals.setdefault(t, []).append(where)
        for t in sorted(arrivals):
            V *= math.exp(-(t - t_prev) / tau) if tau != math.inf else 1.0
            t_prev = t
            dense_in = torch.zeros((1, *src_shape), dtype=torch.float64)
            for where in arrivals[t]:
                dense_in[(0, *where)] += 1.0
            if proj.op == "conv":
                V += F.conv2d(dense_in, torch.as_tensor(weights[proj.weight]), stride=proj.stride, padding=proj.padding)
            elif proj.op == "avgpool":
                V += F.avg_pool2d(dense_in, proj.kernel, proj.stride)
            else:
                V += dense_in.flatten(1) @ torch.as_tensor(weights[proj.weight]).T
            if pop.fires:
                refractory = t < refractory_end
                V[0][refractory] = 0.0  # charge reaching a refractory neuron is discarded
                fired = V[0] > pop.threshold
                for pos in np.argwhere(fired.numpy()):
                    out.append((t, (pop.name, tuple(int(v) for v in pos))))
                V[0][fired] = 0.0
                refractory_end[fired] = t + refractory_us
        spikes_in[pop.name] = out
        counts[pop.name] = len(out)
        if not pop.fires:
            V *= math.exp(-(WINDOW_US - t_prev) / tau)
            final = V[0].numpy() / graph.timesteps
    return final, counts


@pytest.mark.parametrize("seed, refractory_us", [(0, 0.0), (1, 0.0), (2, 1000.0), (3, 1000.0), (4, 350.0)])
def test_async_equals_naive_continuous_time_reference(seed, refractory_us):
    network = small_network(seed)
    events = random_events(seed)
    stream = Stream(network, refractory_us=refractory_us)
    stream.feed(events)
    result = stream.result(at_us=WINDOW_US)
    output, counts = naive_async(network, network_weights(seed), events, refractory_us)
    assert counts["c1"] > 0 and counts["f1"] > 0
    for layer in result.layers[:-1]:
        assert layer.spikes == counts[layer.name], layer.name
    np.testing.assert_allclose(result.output, output, rtol=1e-9, atol=1e-12)



@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_stream_result_does_not_depend_on_chunk_size(chunk):
    network = small_network(5, dtype=np.float32)
    events = random_events(5, n=600)
    whole = Stream(network)
    whole.feed(events)
    chunked = Stream(network)
    for start in range(0, len(events), chunk):
        chunked.feed(events[start : start + chunk])
    a, b = whole.result(), chunked.result()
    assert a.layers[0].spikes > 0
    assert [l.spikes for l in a.layers] == [l.spikes for l in b.layers]
    assert [l.synops for l in a.layers] == [l.synops for l in b.layers]
    np.testing.assert_array_equal(a.output, b.output)


def test_default_refractory_period_is_half_a_trained_step():
    network = small_network(0)
    assert Stream(network).refractory_us == WINDOW_US / TIMESTEPS / 2
    events = random_events(0)
    default = network.run(events, mode="async")
    free = Stream(network, refractory_us=0.0)
    free.feed(events)
    # without a refractory period neurons fire on every crossing: strictly more spikes here
    assert free.result().layers[0].spikes > default.layers[0].spikes > 0


def test_tau_reproduces_the_trained_per_step_leak():
    network = small_network(0)
    stream = Stream(network)
    dt = step_width_us(network)
    assert dt == WINDOW_US / TIMESTEPS
    for layer, log_leak in zip(network.layers, stream.log_leak_per_us):
        assert math.exp(log_leak * dt) == pytest.approx(layer.leak, rel=1e-12)


def test_stream_rejects_time_going_backwards_across_chunks():
    network = small_network(0)
    events = random_events(0)
    stream = Stream(network)
    stream.feed(events[200:])
    with pytest.raises(InputError, match="must not decrease"):
        stream.feed(events[:200])


def test_async_rejects_events_outside_the_input():
    network = small_network(0)
    events = make_events([3, 8], [1, 1], [10, 20], [True, False])
    with pytest.raises(InputError, match="outside the input"):
        network.run(events, mode="async")
