"""The exactness oracle for the neuron variants (evsim.model.neuron): reset by subtraction, leak
per population (1: IF), thresholds per population or per neuron, a lower bound on the membrane,
several spikes per step, ``>=`` or ``>``, and sum pooling.

- Step mode: on random networks (hypothesis) whose populations draw their variants independently,
  the engine's per-neuron spike counts in float64 equal the dense PyTorch forward's exactly, its
  output agrees to rounding, and every layer's synaptic operations equal an independent count
  (fan-out x spikes per projection kind, computed with torch from the dense spike counts).
  Half the cases use dyadic weights, thresholds, leaks and pooling shares, so that membranes land
  exactly on thresholds and multiples of them (computed without rounding by both sides): that is
  where ``>`` and ``>=``, floor and ceil differ.
- Asynchronous mode: the engine equals a naive continuous-time reference that leaks every neuron
  to each arrival, adds the arrival's dense contribution and applies the rule to the neurons the
  arrival reaches.
- The trainer: the layer-major forward and the step-by-step reference give the same spikes and
  gradients for every variant, and the gradient follows the closed forms of the module docstring
  of evsim.training.neurons on hand-made cases.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evsim.engine.asynchronous import Stream, step_width_us
from evsim.engine.network import Network
from evsim.errors import ModelError
from evsim.model.file import load_model, save_model
from evsim.model.graph import Graph, Population, Projection, conv_output_size, refuse_bias
from evsim.model.neuron import Neuron

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from oracle import assert_batch_equals_run, dense_reference, expected_synops  # noqa: E402

from evsim.training.network import SpikingNetwork  # noqa: E402
from evsim.training.neurons import FiringRecurrence  # noqa: E402

DYADIC_THRESHOLDS = [0.5, 0.75, 1.0, 1.5, 2.0]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The references run thousands of tiny convolutions: on a shared machine torch's thread pool
    makes each one ~1000x slower than a single thread does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------ networks


def draw_neuron(draw, rng, size: int, dyadic: bool) -> dict:
    """A random neuron variant (the population fields of evsim.model.neuron)."""
    if draw(st.booleans()):
        threshold = tuple(float(v) for v in (rng.choice(DYADIC_THRESHOLDS, size) if dyadic else rng.uniform(0.4, 2.0, size)))
    else:
        threshold = draw(st.sampled_from(DYADIC_THRESHOLDS if dyadic else [0.6, 1.0, 1.3]))
    return {
        "threshold": threshold,
        "leak": draw(st.sampled_from([1.0, 0.5] if dyadic else [1.0, 0.99, 0.9, 0.7])),
        "reset": draw(st.sampled_from(["zero", "subtract"])),
        "spikes_per_step": draw(st.sampled_from([1, 1, 2, 3, None])),
        "lower_bound": draw(st.sampled_from([None, 0.0, -0.5, -1.0])),
        "fire_test": draw(st.sampled_from([">", ">="])),
    }


@st.composite
def variant_networks(draw):
    """A random valid graph of variant neurons, its float64 weights and a signed input train."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dyadic = draw(st.booleans())
    channels = draw(st.integers(1, 3))
    height, width = draw(st.integers(5, 10)), draw(st.integers(5, 10))
    shape = (channels, height, width)
    pops: list[Population] = []
    weights: dict[str, np.ndarray] = {}
    source = "input"

    def weight(name, shape_, fan_in):
        gain = draw(st.sampled_from([1.5, 2.5, 4.0]))
        w = rng.normal(0.0, gain / np.sqrt(fan_in), shape_)
        weights[name] = np.round(w * 4) / 4 if dyadic else w
        return name

    def population(name, shape_, inputs, kind="lif"):
        pops.append(Population(name, kind, shape_, tuple(inputs), **draw_neuron(draw, rng, math.prod(shape_), dyadic)))
        return name

    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "pool", "residual"]))
        c, h, w = shape
        if kind == "pool" and min(h, w) >= 3:
            k, stride = draw(st.sampled_from([(2, 2), (2, 2), (3, 2), (2, 1), (3, 3)]))
            # avgpool with k = 3 in dyadic cases too: a window's sum over 9 lands on a dyadic
            # threshold (9 / 9 = 1) that nine adds of 1 / 9 overshot; the engine adds the sum over 9
            op = draw(st.sampled_from(["avgpool", "sumpool"]))
            out = (c, conv_output_size(h, k, stride, 0), conv_output_size(w, k, stride, 0))
            source = population(f"pool{i}", out, [Projection(source, op, kernel=k, stride=stride)], kind="pool")
            shape = out
        elif kind == "residual":
            mid = draw(st.integers(1, 3))
            oh, ow = h, w
            a = population(f"res{i}a", (mid, oh, ow), [Projection(source, "conv", weight(f"res{i}a.w", (mid, c, 3, 3), 9 * c), 3, 1, 1)])
            cout = c if draw(st.booleans()) else draw(st.integers(1, 3))
            skip = (Projection(source, "identity") if cout == c
                    else Projection(source, "conv", weight(f"res{i}s.w", (cout, c, 1, 1), c), 1, 1, 0))
            main = Projection(a, "conv", weight(f"res{i}b.w", (cout, mid, 3, 3), 9 * mid), 3, 1, 1)
            source = population(f"res{i}b", (cout, oh, ow), [main, skip])
            shape = (cout, oh, ow)
        else:
            k = draw(st.sampled_from([1, 2, 3]))
            stride = draw(st.sampled_from([1, 1, 2]))
            pad = draw(st.integers(0, k // 2))
            if min(conv_output_size(h, k, stride, pad), conv_output_size(w, k, stride, pad)) < 1:
                k, pad = 1, 0  # the kernel does not fit what pooling left
            oh, ow = conv_output_size(h, k, stride, pad), conv_output_size(w, k, stride, pad)
            cout = draw(st.integers(1, 4))
            source = population(f"conv{i}", (cout, oh, ow), [Projection(source, "conv", weight(f"conv{i}.w", (cout, c, k, k), c * k * k), k, stride, pad)])
            shape = (cout, oh, ow)
    n_in = math.prod(shape)
    if draw(st.booleans()):
        hidden = draw(st.integers(2, 10))
        source = population("fc", (hidden,), [Projection(source, "linear", weight("fc.w", (hidden, n_in), n_in))])
        n_in = hidden
    n_out = draw(st.integers(2, 5))
    pops.append(Population("out", "output", (n_out,), (Projection(source, "linear", weight("out.w", (n_out, n_in), n_in)),),
                           leak=draw(st.sampled_from([1.0, 0.99]))))
    timesteps = draw(st.integers(2, 10))
    graph = Graph(shape_in := (channels, height, width), tuple(pops), timesteps)
    density = draw(st.sampled_from([0.1, 0.3, 0.6]))
    spikes = rng.random((timesteps, *shape_in)) < density
    signs = rng.choice(np.array([-1, 1], dtype=np.int8), size=spikes.shape) if draw(st.booleans()) else 1
    counts = rng.integers(1, 3, size=spikes.shape) if draw(st.booleans()) else 1  # several events per bin
    train = (spikes * signs * counts).astype(np.int8)
    return graph, weights, train


# ------------------------------------------------------------------------------ step == dense


def check_step_mode(graph, weights, train):
    graph.validate()
    network = Network(graph, weights, dtype=np.float64)
    result = network.run(train, record_spikes=True)
    assert_batch_equals_run(network, [train, train[::-1]])
    output, counts = dense_reference(graph, weights, train)
    for pop in graph.populations[:-1]:
        np.testing.assert_array_equal(result.spike_counts[pop.name], counts[pop.name], err_msg=pop.name)
    np.testing.assert_allclose(result.output, output, rtol=1e-9, atol=1e-12)
    counts["input"] = np.abs(train).sum(axis=0)
    for pop, layer in zip(graph.populations, result.layers):
        assert layer.synops == expected_synops(graph, pop, counts), pop.name
        if pop.fires:
            assert layer.spikes == counts[pop.name].sum(), pop.name
    return result, counts


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant_networks())
def test_step_mode_equals_dense_forward_for_every_variant(case):
    check_step_mode(*case)


def chain(neuron: dict, pool_op: str = "avgpool", timesteps: int = 12) -> Graph:
    """conv -> pool -> conv -> linear -> output, every firing population with ``neuron``."""
    return Graph(
        (2, 8, 8),
        (
            Population("c1", "lif", (4, 8, 8), (Projection("input", "conv", "w1", 3, 1, 1),), **neuron),
            Population("p1", "pool", (4, 4, 4), (Projection("c1", pool_op, kernel=2, stride=2),), **neuron),
            Population("c2", "lif", (4, 2, 2), (Projection("p1", "conv", "w2", 3, 2, 1),), **neuron),
            Population("f1", "lif", (6,), (Projection("c2", "linear", "w3"),), **neuron),
            Population("out", "output", (3,), (Projection("f1", "linear", "w4"),)),
        ),
        timesteps=timesteps,
        encoding={"kind": "events", "window_us": 24_000, "sensor_size": [8, 8, 2]},
    )


def chain_weights(seed: int, dyadic: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    w = {"w1": rng.normal(0.3, 0.8, (4, 2, 3, 3)), "w2": rng.normal(0.2, 0.7, (4, 4, 3, 3)),
         "w3": rng.normal(0.2, 0.8, (6, 16)), "w4": rng.normal(0, 0.8, (3, 6))}
    return {k: np.round(v * 4) / 4 for k, v in w.items()} if dyadic else w


def chain_train(seed: int, timesteps: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((timesteps, 2, 8, 8)) < 0.4).astype(np.int8) * rng.integers(1, 3, (timesteps, 2, 8, 8)).astype(np.int8)


SINABS_IAF = dict(threshold=1.0, leak=1.0, reset="subtract", spikes_per_step=None, fire_test=">=", lower_bound=-1.0)
VARIANTS = {
    "paper": {},
    "subtract": dict(reset="subtract"),
    "if": dict(leak=1.0, threshold=0.75),
    "inclusive": dict(fire_test=">=", threshold=0.75),
    "lower-bound": dict(lower_bound=-0.5, leak=0.9),
    "two-spikes": dict(spikes_per_step=2, reset="subtract"),
    "multi-zero": dict(spikes_per_step=None, reset="zero", threshold=0.5),
    "sinabs-iaf": SINABS_IAF,
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("pool_op", ["avgpool", "sumpool"])
def test_each_variant_fires_in_every_layer_and_matches(name, pool_op):
    """Guard against a vacuous oracle: each variant really spikes, layer after layer, and matches."""
    for dyadic in (False, True):
        graph = chain(VARIANTS[name], pool_op)
        _, counts = check_step_mode(graph, chain_weights(3, dyadic), chain_train(3))
        for pop in graph.populations[:-1]:
            assert counts[pop.name].sum() > 0, (name, pop.name)


def test_per_neuron_thresholds_follow_the_population_order():
    """A per-neuron threshold is in the population's (C, H, W) order: raising one neuron's
    threshold silences exactly that neuron."""
    graph = chain({"leak": 1.0})
    weights, train = chain_weights(4), chain_train(4)
    _, counts = check_step_mode(graph, weights, train)
    c, y, x = np.argwhere(counts["c1"] > 0)[-1]
    th = np.ones((4, 8, 8))
    th[c, y, x] = 1e9
    pops = (dataclasses.replace(graph.populations[0], threshold=tuple(th.ravel())), *graph.populations[1:])
    _, silenced = check_step_mode(dataclasses.replace(graph, populations=pops), weights, train)
    # c1's neurons depend on the input alone: exactly the one neuron changes
    expected = counts["c1"].copy()
    expected[c, y, x] = 0
    np.testing.assert_array_equal(silenced["c1"], expected)


def test_multi_spike_events_carry_their_count():
    """A multi-spike neuron emits floor(V / theta) spikes in one event; synops count fan-out x spikes."""
    graph = Graph((1, 1, 1), (
        Population("a", "lif", (1,), (Projection("input", "linear", "w1"),), threshold=1.0, leak=1.0,
                   reset="subtract", spikes_per_step=None, fire_test=">="),
        Population("out", "output", (3,), (Projection("a", "linear", "w2"),), leak=1.0),
    ), timesteps=3)
    weights = {"w1": np.array([[3.5]]), "w2": np.array([[1.0], [2.0], [-1.0]])}
    train = np.array([1, 0, 1], dtype=np.int8).reshape(3, 1, 1, 1)
    result = Network(graph, weights, dtype=np.float64).run(train, record_spikes=True)
    # step 0: V = 3.5 -> 3 spikes, V = 0.5; step 1: nothing; step 2: V = 4.0 -> 4 spikes, V = 0
    assert result.spike_counts["a"].tolist() == [7]
    a, out = result.layers
    assert (a.spikes, a.synops, out.synops) == (7, 2, 7 * 3)
    np.testing.assert_allclose(result.output, np.array([7.0, 14.0, -7.0]) / 3)


def test_a_subtracting_neuron_fires_again_without_input():
    """After its reset a subtracting neuron still above threshold fires at the next step with no
    event reaching it, as the dense model does: the engine visits it (kernels' carry list)."""
    graph = Graph((1, 1, 1), (
        Population("a", "lif", (1,), (Projection("input", "linear", "w1"),), threshold=1.0, leak=1.0, reset="subtract"),
        Population("out", "output", (1,), (Projection("a", "linear", "w2"),), leak=1.0),
    ), timesteps=6)
    weights = {"w1": np.array([[3.5]]), "w2": np.array([[1.0]])}
    train = np.zeros((6, 1, 1, 1), dtype=np.int8)
    train[0] = 1
    result, counts = check_step_mode(graph, weights, train)
    # 3.5 > 1 at steps 0, 1, 2 (3.5, 2.5, 1.5), then 0.5: three spikes from one input event
    assert counts["a"].tolist() == [3]
    assert result.layers[0].neuron_updates == 3  # step 0 (the input), then two carried visits


def test_existing_models_load_and_run_as_before(tmp_path):
    """The defaults are the paper's neuron: a version-1 file (no variant keys) loads, and the
    bundled model's populations use the fast path."""
    from evsim.model import file as model_file

    graph = chain({})
    path = save_model(tmp_path / "m.npz", graph, {k: v.astype(np.float32) for k, v in chain_weights(0).items()})
    with np.load(path) as npz:
        arrays = dict(npz)
    import json

    header = json.loads(arrays.pop(model_file.GRAPH_KEY).tobytes())
    header["version"] = 1
    for pop in header["graph"]["populations"]:
        for key in ("reset", "spikes_per_step", "lower_bound", "fire_test"):
            del pop[key]
    arrays[model_file.GRAPH_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(tmp_path / "v1.npz", "wb") as fh:
        np.savez(fh, **arrays)
    assert load_model(tmp_path / "v1.npz").graph == graph
    bundled = Network.from_file("lenet-nmnist")
    assert all(layer.neuron.is_default_rule for layer in bundled.layers)


def test_variants_round_trip_through_the_model_file(tmp_path):
    neuron = dict(SINABS_IAF, threshold=tuple(np.linspace(0.5, 2.0, 256)))
    graph = chain({})
    pops = (dataclasses.replace(graph.populations[0], **neuron), *graph.populations[1:])
    graph = dataclasses.replace(graph, populations=pops)
    path = save_model(tmp_path / "v.npz", graph, chain_weights(0))
    loaded = load_model(path).graph
    assert loaded == graph
    assert loaded.populations[0].neuron == Neuron(kind="lif", **neuron)


@pytest.mark.parametrize("changes, message", [
    ({"reset": "exponential"}, "unknown reset rule 'exponential'"),
    ({"fire_test": "<"}, "unknown fire test '<'"),
    ({"spikes_per_step": 0}, "spikes_per_step must be a positive integer or None"),
    ({"spikes_per_step": 2.0}, "spikes_per_step must be a positive integer or None"),
    ({"lower_bound": 0.5}, "lower bound must be finite and <= 0"),
    ({"lower_bound": float("-inf")}, "lower bound must be finite and <= 0"),
    ({"threshold": (1.0, -1.0)}, "positive threshold"),
    ({"threshold": (1.0,) * 5}, "5 per-neuron thresholds for 4 neurons"),
])
def test_variants_the_engine_does_not_implement_are_refused(changes, message):
    with pytest.raises(ModelError, match=message):
        dataclasses.replace(Neuron(), **changes).validate("c1", size=4)


def test_the_output_integrator_has_no_firing_rule():
    with pytest.raises(ModelError, match="out: the output integrator never fires"):
        Neuron("output", reset="subtract").validate("out")


def test_biases_are_refused_with_the_node_name():
    refuse_bias("conv1", np.zeros(4))
    refuse_bias("conv1", None)
    with pytest.raises(ModelError, match="conv1: has a nonzero bias"):
        refuse_bias("conv1", np.array([0.0, 0.1]))


# ------------------------------------------------------------------------------ asynchronous


def naive_async(graph: Graph, weights: dict, network: Network, events: np.ndarray, refractory_us: float):
    """An independent continuous-time reference: at every arrival (the events of one timestamp)
    every neuron of a layer leaks to its time and receives the dense contribution of every
    projection; the neurons the arrival reaches (whole pixels where the engine's unit is a pixel)
    are refractory-cleared, fired, reset and clamped under evsim.model.neuron's rule."""
    step_us = step_width_us(network)
    window_us = step_us * graph.timesteps
    arrivals = {"input": {}}
    for e in events:
        arrivals["input"].setdefault(float(e["t"]), []).append(((int(e["p"]), int(e["y"]), int(e["x"])), 1.0))
    spikes, synops, totals, final = {}, {}, {"input": np.zeros(graph.input_shape)}, None
    for e in events:
        totals["input"][int(e["p"]), int(e["y"]), int(e["x"])] += 1
    for pop, layer in zip(graph.populations, network.layers):
        neuron = pop.neuron
        V = torch.zeros((1, *pop.shape), dtype=torch.float64)
        theta = torch.as_tensor(neuron.thresholds(pop.size).reshape(pop.shape))
        refractory_end = torch.full(pop.shape, -math.inf, dtype=torch.float64)
        refractory = refractory_us if neuron.async_refractory else 0.0
        log_leak = math.log(pop.leak) / step_us
        t_prev, out = 0.0, {}
        times = sorted({t for proj in pop.inputs for t in arrivals[proj.source]})
        for t in times:
            V *= math.exp(log_leak * (t - t_prev))
            t_prev = t
            reached = torch.zeros(pop.shape, dtype=torch.bool)
            for proj in pop.inputs:
                dense = torch.zeros((1, *graph.shape_of(proj.source)), dtype=torch.float64)
                for where, count in arrivals[proj.source].get(t, []):
                    dense[(0, *where)] += count
                current, reach = project(proj, dense, weights)
                V += current.reshape(V.shape)
                reached |= reach.reshape(pop.shape)
            if not pop.fires:
                continue
            if layer.unit > 1:  # the engine tests whole pixels (all channels) or the whole 1-D layer
                reached = reached.reshape(pop.shape[0], -1).any(dim=0).expand(pop.shape[0], -1).reshape(pop.shape)
            v = V[0]
            v[reached & (t < refractory_end)] = 0.0
            if neuron.single_spike:
                n = ((v >= theta) if neuron.fire_test == ">=" else (v > theta)).to(torch.float64)
            else:
                q = v / theta
                n = (torch.floor(q) if neuron.fire_test == ">=" else torch.ceil(q) - 1).clamp(min=0, max=neuron.spikes_per_step)
            n = torch.where(reached, n, torch.zeros_like(n))
            fired = n > 0
            new = v - n * theta if neuron.reset == "subtract" else torch.where(fired, torch.zeros_like(v), v)
            if neuron.lower_bound is not None:
                new = torch.where(reached, new.clamp(min=neuron.lower_bound), new)
            V[0] = new
            refractory_end[fired] = t + refractory
            for pos in np.argwhere(fired.numpy()):
                out.setdefault(t, []).append((tuple(int(p) for p in pos), float(n[tuple(pos)])))
        arrivals[pop.name] = out
        totals[pop.name] = np.zeros(pop.shape)
        for items in out.values():
            for where, count in items:
                totals[pop.name][where] += count
        spikes[pop.name] = int(totals[pop.name].sum())
        synops[pop.name] = expected_synops(graph, pop, totals)
        if not pop.fires:
            V *= math.exp(log_leak * (window_us - t_prev))
            final = V[0].numpy() / graph.timesteps
    return final, spikes, synops


def project(proj: Projection, dense: torch.Tensor, weights: dict):
    """A projection's current from a dense source tensor, and which target neurons it reaches."""
    hit = (dense != 0).to(torch.float64)
    if proj.op == "conv":
        w = torch.as_tensor(weights[proj.weight])
        current = F.conv2d(dense, w, stride=proj.stride, padding=proj.padding)
        reach = F.conv2d(hit, torch.ones(w.shape, dtype=torch.float64), stride=proj.stride, padding=proj.padding) > 0
    elif proj.op in ("avgpool", "sumpool"):
        divisor = None if proj.op == "avgpool" else 1
        current = F.avg_pool2d(dense, proj.kernel, proj.stride, divisor_override=divisor)
        reach = F.avg_pool2d(hit, proj.kernel, proj.stride, divisor_override=1) > 0
    elif proj.op == "linear":
        w = torch.as_tensor(weights[proj.weight])
        current = dense.flatten(1) @ w.T
        reach = torch.full(current.shape, bool(hit.any()))
    else:
        current, reach = dense, hit > 0
    return current, reach


def random_events(seed: int, n: int, window_us: int, size: int = 8):
    from evsim.events import make_events

    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, window_us // 100, size=n)) * 100  # a coarse clock: simultaneous events
    return make_events(rng.integers(0, size, n), rng.integers(0, size, n), t, rng.integers(0, 2, n).astype(bool))


ASYNC_CASES = [(name, 0.0) for name in sorted(VARIANTS)] + [
    # the refractory period applies to reset-to-zero, one-spike neurons only (the others ignore it)
    (name, 700.0) for name in sorted(VARIANTS) if Neuron(**VARIANTS[name]).async_refractory
]


@pytest.mark.parametrize("name, refractory_us", ASYNC_CASES)
def test_async_equals_naive_reference_for_every_variant(name, refractory_us):
    neuron = dict(VARIANTS[name])
    graph = chain(neuron, "sumpool" if name in ("sinabs-iaf", "multi-zero") else "avgpool")
    weights = chain_weights(5)
    network = Network(graph, weights, dtype=np.float64)
    events = random_events(5, 350, 24_000)
    stream = Stream(network, refractory_us=refractory_us)
    stream.feed(events)
    result = stream.result(at_us=24_000)
    output, spikes, synops = naive_async(graph, weights, network, events, refractory_us)
    assert spikes["c1"] > 0 and spikes["f1"] > 0
    for pop, layer in zip(graph.populations, result.layers):
        if pop.fires:
            assert layer.spikes == spikes[pop.name], pop.name
        assert layer.synops == synops[pop.name], pop.name
    np.testing.assert_allclose(result.output, output, rtol=1e-9, atol=1e-12)


def test_async_with_per_neuron_thresholds_and_residual_blocks():
    rng = np.random.default_rng(6)
    th = tuple(rng.uniform(0.5, 1.5, 4 * 8 * 8))
    graph = Graph((2, 8, 8), (
        Population("a", "lif", (4, 8, 8), (Projection("input", "conv", "w1", 3, 1, 1),), threshold=th, leak=0.9,
                   reset="subtract", fire_test=">="),
        Population("b", "lif", (4, 8, 8), (Projection("a", "conv", "w2", 3, 1, 1), Projection("a", "identity")),
                   leak=1.0, spikes_per_step=3, reset="subtract", lower_bound=-1.0),
        Population("out", "output", (3,), (Projection("b", "linear", "w3"),)),
    ), timesteps=12, encoding={"kind": "events", "window_us": 24_000, "sensor_size": [8, 8, 2]})
    weights = {"w1": rng.normal(0.3, 0.8, (4, 2, 3, 3)), "w2": rng.normal(0.0, 0.6, (4, 4, 3, 3)), "w3": rng.normal(0, 0.5, (3, 256))}
    network = Network(graph, weights, dtype=np.float64)
    events = random_events(6, 400, 24_000)
    stream = Stream(network)
    stream.feed(events)
    result = stream.result(at_us=24_000)
    output, spikes, synops = naive_async(graph, weights, network, events, stream.refractory_us)
    assert spikes["a"] > 0 and spikes["b"] > 0
    assert [l.spikes for l in result.layers[:-1]] == [spikes["a"], spikes["b"]]
    assert [l.synops for l in result.layers] == [synops[p.name] for p in graph.populations]
    np.testing.assert_allclose(result.output, output, rtol=1e-9, atol=1e-12)


def test_async_refractory_period_only_for_reset_to_zero_single_spike_neurons():
    assert Neuron().async_refractory
    assert not Neuron(reset="subtract").async_refractory
    assert not Neuron(spikes_per_step=None).async_refractory


@pytest.mark.parametrize("chunk", [1, 13, 1000])
def test_variant_streams_do_not_depend_on_chunk_size(chunk):
    graph = chain(SINABS_IAF, "sumpool")
    network = Network(graph, chain_weights(7), dtype=np.float32)
    events = random_events(7, 600, 24_000)
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


# ---------------------------------------------------------------------------------- trainer


def dense_net(graph: Graph, weights: dict) -> SpikingNetwork:
    net = SpikingNetwork(graph, init=False).double()
    net.load_weights(weights)
    return net.eval()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_layer_major_forward_equals_stepwise_reference_with_gradients(name):
    graph = chain(VARIANTS[name], "sumpool")
    c1 = graph.populations[0]
    scale = np.random.default_rng(8).uniform(0.7, 1.3, c1.size)
    per_neuron = dataclasses.replace(c1, threshold=tuple(float(c1.threshold) * scale))  # per-neuron surrogate too
    graph = dataclasses.replace(graph, populations=(per_neuron, *graph.populations[1:]))
    net = dense_net(graph, chain_weights(8))
    x = torch.as_tensor(chain_train(8)[:, None], dtype=torch.float64).repeat(1, 2, 1, 1, 1)
    x[:, 1] = torch.flip(x[:, 1], dims=[-1])
    rec_a, rec_b = {}, {}
    out_a = net(x, record=rec_a)
    grads_a = torch.autograd.grad(out_a.square().sum(), list(net.weights))
    out_b = net.forward_stepwise(x, record=rec_b)
    grads_b = torch.autograd.grad(out_b.square().sum(), list(net.weights))
    for key in rec_a:
        torch.testing.assert_close(rec_a[key], rec_b[key], rtol=0, atol=0)
    torch.testing.assert_close(out_a, out_b, rtol=1e-12, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in grads_a)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


def run_recurrence(current, neuron: Neuron):
    current = torch.tensor(current, dtype=torch.float64).reshape(-1, 1).requires_grad_(True)
    surrogate, corrected = neuron.surrogate()
    spikes = FiringRecurrence.apply(current, neuron.threshold, neuron.leak, surrogate, corrected, neuron)
    return current, spikes


def test_subtractive_reset_passes_the_membrane_gradient():
    """Reset by subtraction keeps V's dependence on earlier inputs: g_U[t] = g_s[t] s'[t] + g_U[t+1]."""
    neuron = Neuron("pool", threshold=1.0, leak=1.0, reset="subtract")
    current, spikes = run_recurrence([1.5, 0.2, 0.0, 0.9], neuron)
    assert spikes.squeeze(1).tolist() == [1.0, 0.0, 0.0, 1.0]  # V: 1.5 -> 0.5, 0.7, 0.7, 1.6 -> 0.6
    g = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).reshape(-1, 1)
    spikes.backward(g)
    # surrogate 1 where fired; every step passes the later steps' gradient on
    assert current.grad.squeeze(1).tolist() == [1 + 4, 4, 4, 4]
    zero = Neuron("pool", threshold=1.0, leak=1.0)
    current, spikes = run_recurrence([1.5, 0.2, 0.0, 0.9], zero)
    spikes.backward(g)
    assert current.grad.squeeze(1).tolist() == [1, 4, 4, 4]  # the reset to zero cuts it at step 0 (the paper)


def test_lower_bound_cuts_the_gradient_where_it_clamps():
    neuron = Neuron("pool", threshold=1.0, leak=1.0, reset="subtract", lower_bound=-0.5)
    current, spikes = run_recurrence([-2.0, 0.3, 1.4], neuron)  # V: -2 -> clamped -0.5, -0.2, 1.2 fires
    assert spikes.squeeze(1).tolist() == [0.0, 0.0, 1.0]
    spikes.backward(torch.ones(3, 1, dtype=torch.float64))
    assert current.grad.squeeze(1).tolist() == [0.0, 1.0, 1.0]


def test_multi_spike_counts_and_the_leak_corrected_surrogate():
    """floor(V / theta) spikes; the LIF surrogate 1 / theta scaled by eq. 22's factor, with the
    counts as the spike train: factor = 1 + ln(leak) * f / gamma."""
    neuron = Neuron("lif", threshold=0.5, leak=0.9, reset="subtract", spikes_per_step=None, fire_test=">=")
    current, spikes = run_recurrence([1.25, 0.0, 0.6], neuron)
    # V: 1.25 -> 2 spikes, 0.25; leak 0.225; +0 -> 0; 0.2025 + 0.6 = 0.8025 -> 1 spike
    assert spikes.squeeze(1).tolist() == [2.0, 0.0, 1.0]
    trace = 0.9**2 * 2 + 1
    factor = 1 + math.log(0.9) * trace / 3
    spikes.backward(torch.tensor([[1.0], [1.0], [1.0]], dtype=torch.float64))
    expected = [factor * 2 * (1 + 1), factor * 2, factor * 2]  # subtract passes g_U[t+1] on
    np.testing.assert_allclose(current.grad.squeeze(1).numpy(), expected, rtol=1e-12)


def test_inclusive_fire_test_and_strict_multi_spike_count():
    ge = Neuron("pool", threshold=1.0, leak=1.0, fire_test=">=")
    _, spikes = run_recurrence([1.0, 0.5], ge)
    assert spikes.squeeze(1).tolist() == [1.0, 0.0]
    gt = Neuron("pool", threshold=1.0, leak=1.0)
    _, spikes = run_recurrence([1.0, 0.5], gt)
    assert spikes.squeeze(1).tolist() == [0.0, 1.0]
    strict_multi = Neuron("pool", threshold=1.0, leak=1.0, reset="subtract", spikes_per_step=None)
    _, spikes = run_recurrence([3.0, 0.0, 0.5], strict_multi)  # V > n: n = 2, residual 1.0; then 1.5 -> 1
    assert spikes.squeeze(1).tolist() == [2.0, 0.0, 1.0]
    capped = Neuron("pool", threshold=1.0, leak=1.0, reset="subtract", spikes_per_step=2, fire_test=">=")
    _, spikes = run_recurrence([5.0, 0.0, 0.0], capped)
    assert spikes.squeeze(1).tolist() == [2.0, 2.0, 1.0]


def test_default_neurons_take_the_papers_code_path():
    """The trainer's forward for default neurons is the pre-variant code (bit-identical results
    for running trainings): the general path, given the default rule, agrees with it exactly."""
    rng = np.random.default_rng(9)
    current = torch.as_tensor(rng.normal(0.3, 0.8, (10, 3, 5)), dtype=torch.float32).requires_grad_(True)
    neuron = Neuron()
    a = FiringRecurrence.apply(current, 1.0, 0.99, 1.0, True)
    b = FiringRecurrence.apply(current, 1.0, 0.99, 1.0, True, neuron)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    ga, = torch.autograd.grad(a.sum(), current)
    gb, = torch.autograd.grad(b.sum(), current)
    torch.testing.assert_close(ga, gb, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["subtract", "sinabs-iaf", "two-spikes"])
@pytest.mark.parametrize("chunk", [7, 10_000])
def test_step_streaming_of_variants_equals_run(name, chunk):
    """StepStream (step mode, fed as events arrive) carries the variants' state across chunks and
    batches of steps (a subtracting neuron's carried visit, multi-spike counts) exactly."""
    from evsim.engine.step import StepStream

    graph = chain(VARIANTS[name], "sumpool")
    network = Network(graph, chain_weights(10), dtype=np.float64)
    events = random_events(10, 600, 24_000)
    stream = StepStream(network)
    for start in range(0, len(events), chunk):
        stream.feed(events[start : start + chunk])
    stream.flush()
    expected = network.run(events, mode="step")
    window = stream.window_result()
    assert expected.layers[0].spikes > 0
    assert [l.to_dict() for l in window.layers] == [l.to_dict() for l in expected.layers]
    np.testing.assert_array_equal(window.output, expected.output)
