"""The correctness oracle: the event engine in step mode reproduces the trainer's dense forward,
and both engine modes count the synaptic operations an independent formula gives.

Random small networks of every layer kind (conv with stride and padding, grouped and depthwise
conv, spiking average pooling tiled or overlapping, 2x2 or 3x3, at thresholds a window's average
can land on exactly, linear, residual blocks with identity and 1x1 skips), non-square inputs,
thresholds and leaks other than the paper's, random signed input spike trains: in float64 the
engine's per-neuron spike counts equal the dense PyTorch model's exactly and its output agrees to
rounding. Only networks whose last hidden layer fires are kept, so the output check never compares
silence with silence. Synaptic operations are recomputed per projection from the source's
per-neuron event counts (conv: ``conv2d(counts, ones(C_out, C_in / groups, k, k), groups).sum()``; pooling:
the windows covering each neuron; identity: one per event; linear: ``N_out`` per event).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings, target
from hypothesis import strategies as st

from evsim.engine.asynchronous import Stream
from evsim.engine.network import Network
from evsim.engine.step import layer_passes
from evsim.events import timed_spike_train
from evsim.model.graph import Graph, Population, Projection, conv_output_size
from evsim.model.ops import fan_out
from evsim.training import dense_forward

torch = pytest.importorskip("torch")  # tests/conftest.py makes a missing torch an error under CI
from oracle import assert_batch_equals_run, dense_reference, expected_synops  # noqa: E402

LIF_THRESHOLDS = [0.6, 1.0, 1.7]
LIF_LEAKS = [0.8, 0.95, 1.0]


@st.composite
def random_networks(draw):
    """A random valid graph, its float64 weights and a signed input spike train."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    channels = draw(st.integers(1, 3))
    shape = (channels, draw(st.integers(5, 11)), draw(st.integers(5, 11)))
    input_shape = shape
    pops: list[Population] = []
    weights: dict[str, np.ndarray] = {}
    source = "input"

    def weight(name, shape_, fan_in):
        gain = draw(st.sampled_from([2.0, 3.0, 4.5]))
        weights[name] = rng.normal(0.3 / np.sqrt(fan_in), gain / np.sqrt(fan_in), shape_)
        return name

    def lif(name, shape_, inputs):
        pops.append(Population(name, "lif", shape_, tuple(inputs), threshold=draw(st.sampled_from(LIF_THRESHOLDS)),
                               leak=draw(st.sampled_from(LIF_LEAKS))))
        return name

    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "pool", "residual", "grouped"]))
        c, h, w = shape
        if kind == "pool" and min(h, w) >= 3:
            # mostly the paper's tiled 2x2 pooling; sometimes overlapping or untiled windows
            k, stride = draw(st.sampled_from([(2, 2), (2, 2), (3, 2), (2, 1), (3, 3)]))
            out = (c, conv_output_size(h, k, stride, 0), conv_output_size(w, k, stride, 0))
            # 1 and 2/3: where a full 3x3 window (or six spikes in it) lands exactly, as its sum over 9
            threshold = draw(st.sampled_from([0.5, 0.75, 1.0, 2 / 3]))
            pops.append(Population(f"pool{i}", "pool", out, (Projection(source, "avgpool", kernel=k, stride=stride),),
                                   threshold=threshold, leak=draw(st.sampled_from([1.0, 0.9]))))
            source, shape = f"pool{i}", out
        elif kind == "residual":
            mid = draw(st.integers(1, 4))
            stride = draw(st.sampled_from([1, 2])) if min(h, w) >= 4 else 1
            oh, ow = conv_output_size(h, 3, stride, 1), conv_output_size(w, 3, stride, 1)
            a = lif(f"res{i}a", (mid, oh, ow), [Projection(source, "conv", weight(f"res{i}a.w", (mid, c, 3, 3), 9 * c), 3, stride, 1)])
            cout = c if (stride == 1 and draw(st.booleans())) else draw(st.integers(1, 4))
            skip = (
                Projection(source, "identity")
                if (cout == c and stride == 1)
                else Projection(source, "conv", weight(f"res{i}s.w", (cout, c, 1, 1), c), 1, stride, 0)
            )
            main = Projection(a, "conv", weight(f"res{i}b.w", (cout, mid, 3, 3), 9 * mid), 3, 1, 1)
            source = lif(f"res{i}b", (cout, oh, ow), [main, skip])
            shape = (cout, oh, ow)
        else:
            k = draw(st.sampled_from([1, 2, 3, 5]))
            stride = draw(st.sampled_from([1, 1, 2]))
            pad = draw(st.integers(0, k // 2))
            if min(conv_output_size(h, k, stride, pad), conv_output_size(w, k, stride, pad)) < 1:
                k, pad = 1, 0
            oh, ow = conv_output_size(h, k, stride, pad), conv_output_size(w, k, stride, pad)
            # grouped: mostly depthwise (a group per input channel), C_out a multiple of the groups
            groups = draw(st.sampled_from([c, c] + [g for g in range(1, c) if c % g == 0])) if kind == "grouped" else 1
            cout = groups * draw(st.integers(1, 2)) if kind == "grouped" else draw(st.integers(1, 5))
            fan_in = c // groups * k * k
            conv = Projection(source, "conv", weight(f"conv{i}.w", (cout, c // groups, k, k), fan_in), k, stride, pad, groups)
            source = lif(f"conv{i}", (cout, oh, ow), [conv])
            shape = (cout, oh, ow)
    n_in = int(np.prod(shape))
    if draw(st.booleans()):
        hidden = draw(st.integers(2, 12))
        source = lif("fc", (hidden,), [Projection(source, "linear", weight("fc.w", (hidden, n_in), n_in))])
        n_in = hidden
    n_out = draw(st.integers(2, 6))
    pops.append(Population("out", "output", (n_out,), (Projection(source, "linear", weight("out.w", (n_out, n_in), n_in)),),
                           leak=draw(st.sampled_from([0.99, 0.9]))))

    timesteps = draw(st.integers(2, 12))
    graph = Graph(input_shape, tuple(pops), timesteps)
    density = draw(st.sampled_from([0.2, 0.4, 0.6, "bursts"]))
    if density == "bursts":  # busy steps between quiet ones: units idle for several steps
        density = rng.choice([0.0, 0.03, 0.6], size=(timesteps, 1, 1, 1))
    spikes = rng.random((timesteps, *graph.input_shape)) < density
    signs = rng.choice(np.array([-1, 1], dtype=np.int8), size=spikes.shape) if draw(st.booleans()) else 1
    train = (spikes * signs).astype(np.int8)
    return graph, weights, train


def pinned_case(kind: str):
    """Hand-built cases every run checks: non-square inputs, thresholds != 1, every projection kind."""
    rng = np.random.default_rng({"overlap": 11, "residual": 12, "stride": 13, "grouped": 14}[kind])
    if kind == "overlap":  # tall input, overlapping pooling, a padded stride-2 conv
        pops = (
            Population("c1", "lif", (3, 9, 5), (Projection("input", "conv", "w1", 3, 1, 1),), threshold=0.6, leak=0.95),
            Population("p1", "pool", (3, 4, 2), (Projection("c1", "avgpool", kernel=3, stride=2),), threshold=0.5, leak=1.0),
            Population("c2", "lif", (4, 2, 1), (Projection("p1", "conv", "w2", 3, 2, 1),), threshold=0.6, leak=0.8),
            Population("out", "output", (3,), (Projection("c2", "linear", "w3"),), leak=0.9),
        )
        graph = Graph((2, 9, 5), pops, timesteps=8)
        shapes = {"w1": (3, 2, 3, 3), "w2": (4, 3, 3, 3), "w3": (3, 8)}
    elif kind == "residual":  # wide input, identity skip and a strided 1x1 skip
        pops = (
            Population("c1", "lif", (2, 5, 10), (Projection("input", "conv", "w1", 3, 1, 1),), threshold=1.7, leak=1.0),
            Population("r1", "lif", (2, 5, 10), (Projection("c1", "conv", "w2", 3, 1, 1), Projection("c1", "identity")), threshold=0.6),
            Population("r2", "lif", (3, 3, 5), (Projection("r1", "conv", "w3", 3, 2, 1), Projection("c1", "conv", "w4", 1, 2, 0)), threshold=1.0),
            Population("f1", "lif", (6,), (Projection("r2", "linear", "w5"),), threshold=0.6, leak=0.8),
            Population("out", "output", (2,), (Projection("f1", "linear", "w6"),)),
        )
        graph = Graph((1, 5, 10), pops, timesteps=10)
        shapes = {"w1": (2, 1, 3, 3), "w2": (2, 2, 3, 3), "w3": (3, 2, 3, 3), "w4": (3, 2, 1, 1), "w5": (6, 45), "w6": (2, 6)}
    elif kind == "grouped":  # depthwise (two filters per channel), then 2 groups strided beside a 1x1 skip
        pops = (
            Population("d1", "lif", (8, 7, 6), (Projection("input", "conv", "w1", 3, 1, 1, groups=4),), threshold=0.6, leak=0.95),
            Population("g2", "lif", (4, 4, 3), (Projection("d1", "conv", "w2", 3, 2, 1, groups=2),
                                                Projection("input", "conv", "w3", 1, 2, 0, groups=4)), threshold=0.7, leak=0.9),
            Population("out", "output", (3,), (Projection("g2", "linear", "w4"),), leak=0.9),
        )
        graph = Graph((4, 7, 6), pops, timesteps=8)
        shapes = {"w1": (8, 1, 3, 3), "w2": (4, 4, 3, 3), "w3": (4, 1, 1, 1), "w4": (3, 48)}
    else:  # stride-2 convs with a 5x5 kernel on a non-square input, then tiled pooling
        pops = (
            Population("c1", "lif", (4, 4, 6), (Projection("input", "conv", "w1", 5, 2, 2),), threshold=0.6, leak=0.95),
            Population("p1", "pool", (4, 2, 3), (Projection("c1", "avgpool", kernel=2, stride=2),), threshold=0.75, leak=1.0),
            Population("out", "output", (4,), (Projection("p1", "linear", "w2"),)),
        )
        graph = Graph((2, 7, 11), pops, timesteps=9)
        shapes = {"w1": (4, 2, 5, 5), "w2": (4, 24)}
    weights = {name: rng.normal(0.4 / np.sqrt(np.prod(s[1:])), 2.5 / np.sqrt(np.prod(s[1:])), s) for name, s in shapes.items()}
    spikes = rng.random((graph.timesteps, *graph.input_shape)) < 0.5
    train = (spikes * rng.choice(np.array([-1, 1], dtype=np.int8), size=spikes.shape)).astype(np.int8)
    return graph, weights, train


class RecordingStream(Stream):
    """The asynchronous runtime, also keeping every population's emitted spikes (per neuron)."""

    def __init__(self, network, **kwargs):
        super().__init__(network, **kwargs)
        self.emitted = {layer.name: [] for layer in network.layers}

    def _run_layer(self, i, layer, sources):
        out = super()._run_layer(i, layer, sources)
        self.emitted[layer.name].append(np.asarray(out.index))
        return out

    def counts(self, layer) -> np.ndarray:
        c, h, w = layer.chw
        index = np.concatenate(self.emitted[layer.name]) if self.emitted[layer.name] else np.zeros(0, np.int64)
        return np.bincount(index, minlength=layer.size).reshape(h, w, c).transpose(2, 0, 1).reshape(layer.shape)


def op_table_synops(graph, pop, counts) -> int:
    """Synaptic operations of ``pop`` by evsim.model.ops' fan-out (what the regulariser reads)."""
    return sum(int((fan_out(p, graph.shape_of(p.source), pop.shape) * np.abs(counts[p.source])).sum()) for p in pop.inputs)


def check_case(graph, weights, train, *, drawn=True):
    """Every check of the oracle on one case; ``drawn``: called by hypothesis (targets, assumes)."""
    graph.validate()
    if drawn:
        assume(train.any())  # an input with no spike at all is refused (InputError), not run
    network = Network(graph, weights, dtype=np.float64)
    result = network.run(train, record_spikes=True)
    output, counts = dense_reference(graph, weights, train)
    hidden = graph.populations[:-1]
    firing = sum(int(counts[pop.name].sum() > 0) for pop in hidden)
    if drawn:
        event(f"{firing} of {len(hidden)} hidden layers fire")
        target(firing / len(hidden), label="fraction of hidden layers that fire")
        assume(counts[hidden[-1].name].sum() > 0)  # else the output check compares silence with silence
    else:
        assert firing == len(hidden)
    for pop in hidden:
        np.testing.assert_array_equal(result.spike_counts[pop.name], counts[pop.name], err_msg=pop.name)
    np.testing.assert_allclose(result.output, output, rtol=1e-9, atol=1e-12)
    assert_batch_equals_run(network, [train, train[::-1], -train])

    # synaptic operations, step mode: from the dense model's spike counts (equal to the engine's)
    events = {"input": np.abs(train.astype(np.int64)).sum(axis=0), **counts}
    assert result.input_events == int(events["input"].sum())
    for pop, layer in zip(graph.populations, result.layers):
        assert layer.synops == expected_synops(graph, pop, events), f"step synops of {pop.name}"
        assert layer.synops == op_table_synops(graph, pop, events), f"evsim.model.ops' fan-out of {pop.name}"
        assert layer.input_events == sum(int(events[p.source].sum()) for p in pop.inputs), pop.name
        if pop.fires:
            assert layer.spikes == int(counts[pop.name].sum()), pop.name

    # synaptic operations, asynchronous mode: its own spikes, same formula
    stream = RecordingStream(network)
    stream.feed(timed_spike_train(train, stream.step_us, network.dtype))
    async_result = stream.result()
    async_events = {"input": events["input"]}
    for layer in network.layers:
        async_events[layer.name] = stream.counts(layer)
    for pop, layer in zip(graph.populations, async_result.layers):
        assert layer.synops == expected_synops(graph, pop, async_events), f"async synops of {pop.name}"
        if pop.fires:
            assert layer.spikes == int(async_events[pop.name].sum()), pop.name


@pytest.mark.slow  # 60 drawn networks, both modes, dense reference: about half a minute
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_networks())
@example(pinned_case("overlap"))
@example(pinned_case("residual"))
@example(pinned_case("stride"))
@example(pinned_case("grouped"))
def test_step_mode_equals_dense_forward_in_float64(case):
    check_case(*case)


@pytest.mark.parametrize("kind", ["overlap", "residual", "stride", "grouped"])
def test_pinned_cases_fire_in_every_layer(kind):
    """The pinned examples are not vacuous: every hidden layer spikes, and the output is not zero."""
    graph, weights, train = pinned_case(kind)
    assert any(pop.threshold != 1.0 for pop in graph.populations[:-1])
    assert graph.input_shape[1] != graph.input_shape[2]
    check_case(graph, weights, train, drawn=False)


def test_an_idle_unit_leaks_by_its_whole_gap():
    """A unit charged at step 0, idle through three quiet steps, then reached at a busy step must
    be leaked by 0.8^4 before that step's input (0.3 * 0.41 + 0.3 < 0.5: silent), not by one
    step's 0.8 (0.54: a spike the dense model never fires)."""
    graph = Graph((1, 4, 4), (
        Population("c1", "lif", (2, 4, 4), (Projection("input", "conv", "w1", 1, 1, 0),), threshold=0.5, leak=0.8),
        Population("out", "output", (2,), (Projection("c1", "linear", "w2"),)),
    ), timesteps=7)
    weights = {"w1": np.full((2, 1, 1, 1), 0.3), "w2": np.eye(2, 32)}
    train = np.zeros((7, 1, 4, 4), dtype=np.int8)
    train[0, 0, 0, 0] = 1
    for t in (1, 2, 3):
        train[t, 0, 3, t] = 1  # quiet steps elsewhere
    train[4:6] = 1  # two busy steps: every pixel
    check_case(graph, weights, train, drawn=False)
    _, counts = dense_reference(graph, weights, train)
    assert counts["c1"][:, 0, 0].tolist() == [1, 1]  # fires at step 5 only, both channels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_active_networks_fire_in_every_layer(seed):
    """Guard against a vacuous oracle: the checked networks really spike, layer after layer."""
    rng = np.random.default_rng(seed)
    graph = Graph(
        (2, 12, 12),
        (
            Population("c1", "lif", (4, 12, 12), (Projection("input", "conv", "w1", 3, 1, 1),)),
            Population("p1", "pool", (4, 6, 6), (Projection("c1", "avgpool", kernel=2, stride=2),), threshold=0.75, leak=1.0),
            Population("r1", "lif", (4, 3, 3), (Projection("p1", "conv", "w2", 3, 2, 1),)),
            Population("r2", "lif", (6, 3, 3), (Projection("r1", "conv", "w3", 3, 1, 1), Projection("p1", "conv", "w4", 1, 2, 0))),
            Population("f1", "lif", (10,), (Projection("r2", "linear", "w5"),)),
            Population("out", "output", (4,), (Projection("f1", "linear", "w6"),)),
        ),
        timesteps=16,
    )
    weights = {
        "w1": rng.normal(0, 0.9, (4, 2, 3, 3)),
        "w2": rng.normal(0, 0.9, (4, 4, 3, 3)),
        "w3": rng.normal(0, 0.6, (6, 4, 3, 3)),
        "w4": rng.normal(0, 1.0, (6, 4, 1, 1)),
        "w5": rng.normal(0, 0.6, (10, 54)),
        "w6": rng.normal(0, 0.6, (4, 10)),
    }
    train = ((rng.random((16, 2, 12, 12)) < 0.4) * rng.choice([-1, 1], size=(16, 2, 12, 12))).astype(np.int8)
    _, counts = dense_reference(graph, weights, train)
    check_case(graph, weights, train, drawn=False)


@pytest.mark.parametrize("mode", ["step", "async"])
def test_a_float32_membrane_is_compared_with_the_float64_threshold(mode):
    """The float32 engine tests ``v > threshold`` as float64 does, though it compares float32 lanes
    (kernels._strict_bound): a membrane at float32(0.6), which is above 0.6, fires; one at
    float32(0.7), below 0.7, does not; in float64 neither membrane is above its threshold."""
    for threshold, fires32 in ((0.6, True), (0.7, False)):
        graph = Graph((1, 1, 2), (
            Population("c1", "lif", (1, 1, 2), (Projection("input", "conv", "w1", 1, 1, 0),), threshold=threshold, leak=1.0),
            Population("out", "output", (2,), (Projection("c1", "linear", "w2"),)),
        ), timesteps=3, encoding={"kind": "events", "window_us": 3000, "sensor_size": [2, 1, 1]})
        weights = {"w1": np.full((1, 1, 1, 1), threshold), "w2": np.eye(2)}
        train = np.zeros((3, 1, 1, 2), dtype=np.int8)
        train[0, 0, 0, 0] = 1
        for dtype, fires in ((np.float32, fires32), (np.float64, False)):
            assert (float(dtype(threshold)) > threshold) == fires
            network = Network(graph, weights, dtype=dtype)
            result = network.run(train, mode=mode)
            assert result.per_layer["c1"]["spikes"] == int(fires), (threshold, dtype)


def test_units_wider_than_a_machine_word():
    """kernels._fire tests 64 neurons per bit mask: a pixel of 70 channels needs two masks, and
    the spikes of the second must keep their channel (and the dense model's counts)."""
    rng = np.random.default_rng(21)
    graph = Graph((1, 5, 4), (
        Population("c1", "lif", (70, 5, 4), (Projection("input", "conv", "w1", 3, 1, 1),), threshold=0.6, leak=0.9),
        Population("out", "output", (3,), (Projection("c1", "linear", "w2"),)),
    ), timesteps=6)
    weights = {"w1": rng.normal(0.15, 0.4, (70, 1, 3, 3)), "w2": rng.normal(0, 0.1, (3, 70 * 20))}
    train = (rng.random((6, 1, 5, 4)) < 0.5).astype(np.int8)
    check_case(graph, weights, train, drawn=False)
    _, counts = dense_reference(graph, weights, train)
    assert counts["c1"][:64].sum() > 0 and counts["c1"][64:].sum() > 0


def test_a_layer_fed_by_the_input_and_a_layer():
    """A residual block on the input itself: its layer gathers the input's events (as many as the
    busiest input brings, in a batch) beside a layer's queue."""
    rng = np.random.default_rng(22)
    graph = Graph((2, 6, 5), (
        Population("c1", "lif", (2, 6, 5), (Projection("input", "conv", "w1", 3, 1, 1),), threshold=0.6, leak=0.9),
        Population("r1", "lif", (2, 6, 5), (Projection("c1", "conv", "w2", 3, 1, 1), Projection("input", "identity")),
                   threshold=1.0, leak=0.95),
        Population("out", "output", (3,), (Projection("r1", "linear", "w3"),)),
    ), timesteps=7)
    weights = {"w1": rng.normal(0.2, 0.5, (2, 2, 3, 3)), "w2": rng.normal(0.1, 0.5, (2, 2, 3, 3)),
               "w3": rng.normal(0, 0.3, (3, 60))}
    train = (rng.random((7, 2, 6, 5)) < 0.6).astype(np.int8)
    check_case(graph, weights, train, drawn=False)



def full_windows_case(path: str, k: int, full_steps: int):
    """Average pooling over two ``k x k`` windows that every neuron of feeds a spike for
    ``full_steps`` steps, threshold ``full_steps`` (leak 1): the dense model's membrane gains
    ``k*k / k**2 = 1`` per step and ends exactly at the threshold, so it stays silent, where
    ``k*k`` adds of ``1 / k**2`` overshoot (RESULTS, "average pooling over windows that are not a
    power of two"). The second window gets one spike more at the last step, above threshold, so
    the pool does fire there and the case is not vacuous.

    ``path`` picks the engine's way to the pool: ``input`` (tiled pooling of the input's events,
    kernels._add_pooled), ``conv`` (a one-channel layer, then its pooling), ``rows`` (two channels:
    the layer steps by row masks), ``overlap`` (stride 1: untiled windows sharing ``k - 1``
    columns). A layer and its pooling of a 2 x 2 window would run in one pass
    (kernels.run_population_steps_pooled, adding 1/4 per spike, which is exact there); these
    windows must not (evsim.engine.step.pools_into_next)."""
    channels = 2 if path == "rows" else 1
    stride = 1 if path == "overlap" else k
    width = k + 1 if path == "overlap" else 2 * k
    out = (channels, 1, conv_output_size(width, k, stride, 0))
    source, pops, weights = "input", [], {}
    if path in ("conv", "rows"):  # a 1x1 conv that passes every input spike on at once
        pops.append(Population("c1", "lif", (channels, k, width), (Projection("input", "conv", "w1", 1, 1, 0),),
                               threshold=0.5))
        weights["w1"] = np.ones((channels, 1, 1, 1))
        source = "c1"
    pops.append(Population("p1", "pool", out, (Projection(source, "avgpool", kernel=k, stride=stride),),
                           threshold=float(full_steps), leak=1.0))
    pops.append(Population("out", "output", (2,), (Projection("p1", "linear", "w2"),)))
    weights["w2"] = np.ones((2, int(np.prod(out))))
    graph = Graph((1, k, width), tuple(pops), timesteps=full_steps + 1)
    train = np.zeros((full_steps + 1, 1, k, width), dtype=np.int8)
    train[:full_steps] = 1
    train[full_steps, 0, 0, width - 1] = 1  # in the second window only
    return graph, weights, train


@pytest.mark.parametrize("leak", [1.0, 0.875])
def test_only_pools_whose_per_spike_adds_are_exact_run_in_one_pass_with_their_source(leak):
    """A 2 x 2 pool of the paper's neuron (leak 1) runs in its source's pass, adding 1/4 per spike;
    a leaky one (its membrane is no multiple of 1/4) and a 3 x 3 one add their window sums in a
    pass of their own; each as the dense model, in float64."""
    import dataclasses

    for k in (2, 3):
        graph, weights, train = full_windows_case("rows", k, 2)
        pool = dataclasses.replace(graph.population("p1"), leak=leak)
        graph = dataclasses.replace(graph, populations=tuple(pool if p.name == "p1" else p for p in graph.populations))
        network = Network(graph, weights, dtype=np.float64)
        assert [pooled for _, pooled in layer_passes(network.layers)][0] == (k == 2 and leak == 1.0)
        _, counts = dense_forward(graph, weights, train[:, None].astype(np.float64), dtype=torch.float64)
        np.testing.assert_array_equal(network.run(train, record_spikes=True).spike_counts["p1"], counts["p1"][0])


@pytest.mark.parametrize("path", ["input", "conv", "rows", "overlap"])
@pytest.mark.parametrize(("k", "full_steps"), [(3, 1), (3, 2), (5, 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_full_window_averages_to_exactly_its_threshold(path, k, full_steps, dtype):
    """Nine spikes in a 3x3 window (25 in a 5x5 one) add the window's average, 9 / 9 = 1.0, as
    avg_pool2d does, not nine times 1 / 9 (1.0000000000000002 in float64, which fired at threshold
    1.0; in float32 nine adds happen to round to 1.0, but 18 give 2.0000005 and 25 of 1 / 25
    1.0000002): the engine fires exactly the dense model's spikes in the dense model's precision,
    through ``Network.run``, ``run_batch``, ``run_many``, and in the asynchronous mode (all of a
    step's events at one time, so one add per window there too)."""
    graph, weights, train = full_windows_case(path, k, full_steps)
    torch_dtype = torch.float64 if dtype is np.float64 else torch.float32
    _, counts = dense_forward(graph, weights, train[:, None].astype(dtype), dtype=torch_dtype)
    expected = counts["p1"][0]
    assert expected[:, 0, 0].sum() == 0 and expected.sum() == expected.shape[0]  # the full window never fires
    network = Network(graph, weights, dtype=dtype)
    assert not any(pooled for _, pooled in layer_passes(network.layers))  # 1/9 per spike is not exact
    np.testing.assert_array_equal(network.run(train, record_spikes=True).spike_counts["p1"], expected)
    for result in (*network.run_batch([train, train]), *network.run_many([train], workers=1),
                   network.run(train, mode="async")):
        assert result.per_layer["p1"]["spikes"] == expected.sum()
