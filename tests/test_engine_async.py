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


def residual_network(seed: int, dtype=np.float64) -> Network:
    """Populations fed by two projections (identity and strided 1x1 skips), on a non-square sensor."""
    graph = Graph(
        (2, 6, 8),
        (
            Population("c1", "lif", (3, 6, 8), (Projection("input", "conv", "w1", 3, 1, 1),), threshold=0.8, leak=0.9),
            Population("r1", "lif", (3, 6, 8), (Projection("c1", "conv", "w2", 3, 1, 1), Projection("c1", "identity")), leak=0.95),
            Population("r2", "lif", (4, 3, 4), (Projection("r1", "conv", "w3", 3, 2, 1), Projection("c1", "conv", "w4", 1, 2, 0)),
                       threshold=0.7, leak=0.9),
            Population("p1", "pool", (4, 2, 3), (Projection("r2", "avgpool", kernel=2, stride=1),), threshold=0.5, leak=1.0),
            Population("out", "output", (3,), (Projection("p1", "linear", "w5"), Projection("r2", "linear", "w6")), leak=0.99),
        ),
        timesteps=TIMESTEPS,
        encoding={"kind": "events", "window_us": WINDOW_US, "sensor_size": [8, 6, 2]},
    )
    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.normal(0.1, 0.7, (3, 2, 3, 3)), "w2": rng.normal(0.05, 0.5, (3, 3, 3, 3)),
        "w3": rng.normal(0.1, 0.6, (4, 3, 3, 3)), "w4": rng.normal(0.2, 0.8, (4, 3, 1, 1)),
        "w5": rng.normal(0, 0.8, (3, 24)), "w6": rng.normal(0, 0.3, (3, 48)),
    }
    return Network(graph, weights, dtype=dtype)


def random_events(seed: int, n: int = 400, width: int = 8, height: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, WINDOW_US // 50, size=n)) * 50  # coarse clock: many simultaneous events
    return make_events(rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n).astype(bool))


def dense_operator(graph, weights, proj) -> np.ndarray:
    """Projection ``proj`` as a dense matrix ``[source neurons, target neurons]`` (``(C, H, W)``
    order): torch's conv / average pool / linear applied to every one-hot source at once."""
    src = graph.shape_of(proj.source)
    basis = torch.eye(int(np.prod(src)), dtype=torch.float64).reshape(-1, *src)
    if proj.op == "conv":
        out = F.conv2d(basis, torch.as_tensor(weights[proj.weight], dtype=torch.float64), stride=proj.stride, padding=proj.padding)
    elif proj.op == "avgpool":
        out = F.avg_pool2d(basis, proj.kernel, proj.stride)
    elif proj.op == "identity":
        out = basis
    else:
        out = basis.flatten(1) @ torch.as_tensor(weights[proj.weight], dtype=torch.float64).T
    return out.flatten(1).numpy()


def naive_async(network: Network, events: np.ndarray, refractory_us: float = 0.0, delays_us: dict | None = None):
    """An independent reference: every arrival (the events of one timestamp, from any source)
    leaks *every* neuron of a layer to its time, adds the dense contribution of *every* projection
    (the arriving spikes as a dense vector times the projection's dense matrix), then tests
    *every* neuron. A spike leaves at its arrival's time plus the population's delay."""
    step_us = step_width_us(network)
    graph = network.graph
    delays_us = delays_us or {}
    c, h, w = graph.input_shape
    flat_input = (events["p"].astype(np.int64) * h + events["y"]) * w + events["x"]
    spikes_at = {"input": (events["t"].astype(np.float64), flat_input)}  # (times, (C, H, W)-flat neuron)
    counts = {}
    final = None
    for pop in graph.populations:
        size = int(np.prod(pop.shape))
        operators = [dense_operator(graph, network.weights, proj) for proj in pop.inputs]
        V = np.zeros(size)
        refractory_end = np.full(size, -math.inf)
        tau = -step_us / math.log(pop.leak) if pop.leak < 1 else math.inf
        times = np.unique(np.concatenate([spikes_at[proj.source][0] for proj in pop.inputs]))
        out_t, out_i = [], []
        t_prev = 0.0
        for t in times:
            V *= math.exp(-(t - t_prev) / tau)
            t_prev = t
            for proj, op in zip(pop.inputs, operators):
                src_t, src_i = spikes_at[proj.source]
                arriving = np.bincount(src_i[src_t == t], minlength=op.shape[0]).astype(np.float64)
                V += arriving @ op
            if pop.fires:
                V[t < refractory_end] = 0.0  # charge reaching a refractory neuron is discarded
                fired = np.flatnonzero(V > pop.threshold)
                out_t.extend([t + delays_us.get(pop.name, 0.0)] * len(fired))
                out_i.extend(fired.tolist())
                V[fired] = 0.0
                refractory_end[fired] = t + refractory_us
        spikes_at[pop.name] = (np.array(out_t, dtype=np.float64), np.array(out_i, dtype=np.int64))
        counts[pop.name] = len(out_i)
        if not pop.fires:
            V *= math.exp(-max(WINDOW_US - t_prev, 0.0) / tau)
            final = V / graph.timesteps
    return final, counts


def assert_equals_reference(result, output, counts):
    for layer in result.layers[:-1]:
        assert counts[layer.name] > 0, f"{layer.name} is silent: the case checks nothing there"
        assert layer.spikes == counts[layer.name], layer.name
    assert np.abs(output).max() > 0
    np.testing.assert_allclose(result.output, output, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed, refractory_us", [(0, 0.0), (1, 0.0), (2, 1000.0), (3, 1000.0), (4, 350.0)])
def test_async_equals_naive_continuous_time_reference(seed, refractory_us):
    network = small_network(seed)
    events = random_events(seed)
    stream = Stream(network, refractory_us=refractory_us)
    stream.feed(events)
    output, counts = naive_async(network, events, refractory_us)
    assert_equals_reference(stream.result(at_us=WINDOW_US), output, counts)


@pytest.mark.parametrize("seed, refractory_us", [(0, 0.0), (1, 1000.0), (2, 350.0)])
def test_async_residual_network_sums_every_projection(seed, refractory_us):
    network = residual_network(seed)
    events = random_events(seed, n=500, width=8, height=6)
    stream = Stream(network, refractory_us=refractory_us)
    stream.feed(events)
    output, counts = naive_async(network, events, refractory_us)
    assert_equals_reference(stream.result(at_us=WINDOW_US), output, counts)


def delayed_run(network, events, delays, chunk):
    stream = Stream(network, delays_us=delays, refractory_us=350.0)
    for start in range(0, len(events), chunk):
        stream.feed(events[start : start + chunk])
    return stream.result(at_us=WINDOW_US)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk", [37, 100_000])
def test_async_delays_shift_spikes(seed, chunk):
    """Per-population delays (equal along every path into a population) against the reference
    that delays every spike the same way, whole and in chunks."""
    network = residual_network(seed)
    events = random_events(seed, n=500, width=8, height=6)
    delays = {"c1": 300.0, "r2": 1000.0}  # every path into the output is 1.3 ms late
    delayed = delayed_run(network, events, delays, chunk)
    output, counts = naive_async(network, events, 350.0, delays)
    assert_equals_reference(delayed, output, counts)
    undelayed = delayed_run(network, events, {}, chunk)
    assert [l.spikes for l in undelayed.layers] == [l.spikes for l in delayed.layers]  # the same spikes, later
    assert not np.allclose(undelayed.output, delayed.output, rtol=1e-6, atol=0)  # so they leak less by the window's end


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk", [1, 7, 64, 100_000])
def test_async_unequal_path_delays_merge_in_time_order(seed, chunk):
    """Paths of unequal delay into one population: a later chunk brings spikes older than ones
    already delivered by the other path; they still merge in time order, whatever the chunks."""
    network = residual_network(seed)
    events = random_events(seed, n=500, width=8, height=6)
    delays = {"c1": 150.0, "r1": 475.0, "r2": 1000.0, "p1": 50.0}  # r2 hears c1 at +150 and r1 at +625
    output, counts = naive_async(network, events, 350.0, delays)
    assert_equals_reference(delayed_run(network, events, delays, chunk), output, counts)


@pytest.mark.parametrize("seed", [5, 6, 7])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_stream_result_does_not_depend_on_chunk_size(seed, chunk):
    network = residual_network(seed, dtype=np.float32)
    events = random_events(seed, n=600, width=8, height=6)
    whole = Stream(network)
    whole.feed(events)
    chunked = Stream(network)
    for start in range(0, len(events), chunk):
        chunked.feed(events[start : start + chunk])
    a, b = whole.result(), chunked.result()
    assert all(layer.spikes > 0 for layer in a.layers[:-1])
    assert [l.spikes for l in a.layers] == [l.spikes for l in b.layers]
    assert [l.synops for l in a.layers] == [l.synops for l in b.layers]
    np.testing.assert_array_equal(a.output, b.output)


@pytest.mark.parametrize("chunk", [7, 100_000])
def test_feeding_with_flush_runs_everything_as_a_flush_would(chunk):
    """``feed(..., flush=True)`` (what Network.run does at the end, and evsim stream at each
    read-out, in one pass) equals feed then flush, with unequal delays holding events back."""
    network = residual_network(3)
    events = random_events(3, n=500, width=8, height=6)
    delays = {"c1": 150.0, "r1": 475.0, "r2": 1000.0, "p1": 50.0}
    expected = delayed_run(network, events, delays, chunk)
    stream = Stream(network, delays_us=delays, refractory_us=350.0)
    starts = list(range(0, len(events), chunk))
    for start in starts:
        stream.feed(events[start : start + chunk], flush=start == starts[-1])
    assert stream._pending is None and not any(len(held) for layer in stream._held for held in layer)
    got = stream.result(at_us=WINDOW_US)
    assert [l.spikes for l in got.layers] == [l.spikes for l in expected.layers]
    assert [l.synops for l in got.layers] == [l.synops for l in expected.layers]
    np.testing.assert_array_equal(got.output, expected.output)


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
        assert math.exp(log_leak * dt) == pytest.approx(layer.neuron.leak, rel=1e-12)


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


def test_leak_table_gives_exactly_the_exponential(nmnist_root):
    """Gaps of whole microseconds take their leak from a table (asynchronous.leak_table_us) instead
    of an exponential per touched unit; the shipped model on real recordings must not see it:
    the same spikes, synaptic operations and output to the last bit as with no table."""
    from evsim.datasets.formats import read_events
    from evsim.runtime.load import load

    network = load("lenet-nmnist")
    files = sorted(nmnist_root.glob("Test/*/*.bin"))[:4]
    assert files
    for path in files:
        events, _ = read_events(path)
        runs = []
        for table in (True, False):
            stream = Stream(network)
            if not table:
                stream.leak_tables = [np.zeros(0) for _ in stream.leak_tables]
            stream.feed(events)
            runs.append(stream.result())
        with_table, without = runs
        assert with_table.synops > 0
        assert [(l.spikes, l.synops) for l in with_table.layers] == [(l.spikes, l.synops) for l in without.layers]
        np.testing.assert_array_equal(with_table.output, without.output)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_a_lone_conv_event_drains_as_the_general_path_does(dtype, seed):
    """kernels._drain_one_conv (one pass per reached pixel: leak, then add) against kernels._drain
    (leaks of a row, then its run of adds) on the same state: the same bits, touches and synops,
    for every input pixel, on the sensor's edges too, with whole and fractional gaps."""
    from evsim.engine import kernels
    from evsim.engine.asynchronous import leak_table_us

    rng = np.random.default_rng(seed)
    src_c, h, w, c_out, k = int(rng.integers(1, 3)), int(rng.integers(4, 9)), int(rng.integers(4, 9)), int(rng.integers(1, 6)), int(rng.choice([1, 3, 5]))
    pad = int(rng.integers(0, k // 2 + 1))
    dst_h, dst_w = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    graph = Graph((src_c, h, w), (Population("c", "lif", (c_out, dst_h, dst_w),
                                             (Projection("input", "conv", "w", k, 1, pad),), leak=0.97),),
                  timesteps=TIMESTEPS, encoding={"kind": "events", "window_us": WINDOW_US, "sensor_size": [w, h, src_c]})
    layer = Network(graph, {"w": rng.normal(0, 1, (c_out, src_c, k, k))}, dtype=dtype).layers[0]
    geometry = kernels._geometry(layer.projections[0])
    log_leak = math.log(0.97) / 300.0
    table = leak_table_us(log_leak)
    for j in range(src_c * h * w):
        V = rng.normal(0, 1, layer.size + layer.unit).astype(dtype)
        t_last = rng.choice([0.0, 17.0, 230.5, 900.0], layer.units)  # whole and fractional gaps, and none
        now, tag, sign = 900.0, 7, dtype(rng.choice([1.0, -1.0, 3.0]))
        states = []
        for drain in ("general", "one"):
            v, last = V.copy(), t_last.copy()
            stamp, touched = np.full(layer.units, -1, np.int64), np.zeros(layer.units + 1, np.int64)
            if drain == "general":
                synops, n = kernels._drain(v, geometry, layer.unit, layer.weights, layer.routes, np.array([j], np.int32),
                                           np.array([sign]), 0, 1, last, stamp, touched, 0, now, tag, table, log_leak,
                                           v[:0])  # a conv: no window sums
            else:
                synops, n = kernels._drain_one_conv(v, geometry, layer.weights, j, sign, last, stamp, touched, 0,
                                                    now, tag, table, log_leak)
            states.append((v, last, stamp, touched[:n], synops))
        (v1, l1, s1, t1, n1), (v2, l2, s2, t2, n2) = states
        np.testing.assert_array_equal(v1.view(np.uint8), v2.view(np.uint8))
        np.testing.assert_array_equal(l1, l2)
        np.testing.assert_array_equal(s1, s2)
        np.testing.assert_array_equal(t1, t2)
        assert n1 == n2 > 0 or n1 == n2 == 0
