"""The correctness oracle: the event engine in step mode reproduces the trainer's dense forward.

Random small networks of every layer kind (conv with stride and padding, spiking average pooling,
linear, residual blocks with identity and 1x1 skips), random signed input spike trains, several
seeds: in float64 the engine's per-neuron spike counts equal the dense PyTorch model's exactly and
its output agrees to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evsim.model.graph import Graph, Population, Projection, conv_output_size
from evsim.engine.network import Network

torch = pytest.importorskip("torch")
from evsim.training import dense_forward  # noqa: E402


@st.composite
def random_networks(draw):
    """A random valid graph, its float64 weights and a signed input spike train."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    channels = draw(st.integers(1, 3))
    size = draw(st.integers(5, 11))
    shape = (channels, size, size)
    pops: list[Population] = []
    weights: dict[str, np.ndarray] = {}
    source = "input"

    def weight(name, shape_, fan_in):
        gain = draw(st.sampled_from([1.5, 2.5, 4.0]))
        weights[name] = rng.normal(0.0, gain / np.sqrt(fan_in), shape_)
        return name

    def lif(name, shape_, inputs):
        pops.append(Population(name, "lif", shape_, tuple(inputs), threshold=1.0, leak=draw(st.sampled_from([0.99, 0.9, 1.0]))))
        return name

    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["conv", "pool", "residual"]))
        c, h, w = shape
        if kind == "pool" and h >= 3:
            # mostly the paper's tiled 2x2 pooling; sometimes overlapping or untiled windows
            k, stride = draw(st.sampled_from([(2, 2), (2, 2), (3, 2), (2, 1), (3, 3)]))
            out = (c, conv_output_size(h, k, stride, 0), conv_output_size(w, k, stride, 0))
            pops.append(Population(f"pool{i}", "pool", out, (Projection(source, "avgpool", kernel=k, stride=stride),), threshold=0.75, leak=1.0))
            source, shape = f"pool{i}", out
        elif kind == "residual":
            mid = draw(st.integers(1, 4))
            stride = draw(st.sampled_from([1, 2])) if h >= 4 else 1
            oh = conv_output_size(h, 3, stride, 1)
            a = lif(f"res{i}a", (mid, oh, oh), [Projection(source, "conv", weight(f"res{i}a.w", (mid, c, 3, 3), 9 * c), 3, stride, 1)])
            cout = c if (stride == 1 and draw(st.booleans())) else draw(st.integers(1, 4))
            skip = (
                Projection(source, "identity")
                if (cout == c and stride == 1)
                else Projection(source, "conv", weight(f"res{i}s.w", (cout, c, 1, 1), c), 1, stride, 0)
            )
            main = Projection(a, "conv", weight(f"res{i}b.w", (cout, mid, 3, 3), 9 * mid), 3, 1, 1)
            source = lif(f"res{i}b", (cout, oh, oh), [main, skip])
            shape = (cout, oh, oh)
        else:
            k = draw(st.sampled_from([1, 2, 3, 5]))
            stride = draw(st.sampled_from([1, 1, 2]))
            pad = draw(st.integers(0, k // 2))
            if conv_output_size(h, k, stride, pad) < 1:
                k, pad = 1, 0
            oh = conv_output_size(h, k, stride, pad)
            cout = draw(st.integers(1, 5))
            source = lif(f"conv{i}", (cout, oh, oh), [Projection(source, "conv", weight(f"conv{i}.w", (cout, c, k, k), c * k * k), k, stride, pad)])
            shape = (cout, oh, oh)
    n_in = int(np.prod(shape))
    if draw(st.booleans()):
        hidden = draw(st.integers(2, 12))
        source = lif("fc", (hidden,), [Projection(source, "linear", weight("fc.w", (hidden, n_in), n_in))])
        n_in = hidden
    n_out = draw(st.integers(2, 6))
    pops.append(Population("out", "output", (n_out,), (Projection(source, "linear", weight("out.w", (n_out, n_in), n_in)),), leak=0.99))

    timesteps = draw(st.integers(2, 12))
    graph = Graph((channels, size, size), tuple(pops), timesteps)
    density = draw(st.sampled_from([0.1, 0.3, 0.6]))
    spikes = rng.random((timesteps, *graph.input_shape)) < density
    signs = rng.choice(np.array([-1, 1], dtype=np.int8), size=spikes.shape) if draw(st.booleans()) else 1
    train = (spikes * signs).astype(np.int8)
    return graph, weights, train


def dense_reference(graph, weights, train):
    output, counts = dense_forward(graph, weights, train[:, None].astype(np.float64), dtype=torch.float64)
    return np.asarray(output)[0], {name: np.asarray(c)[0] for name, c in counts.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_networks())
def test_step_mode_equals_dense_forward_in_float64(case):
    graph, weights, train = case
    graph.validate()
    result = Network(graph, weights, dtype=np.float64).run(train, record_spikes=True)
    output, counts = dense_reference(graph, weights, train)
    for pop in graph.populations[:-1]:
        np.testing.assert_array_equal(result.spike_counts[pop.name], counts[pop.name], err_msg=pop.name)
    np.testing.assert_allclose(result.output, output, rtol=1e-9, atol=1e-12)


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
    result = Network(graph, weights, dtype=np.float64).run(train, record_spikes=True)
    output, counts = dense_reference(graph, weights, train)
    for pop in graph.populations[:-1]:
        assert counts[pop.name].sum() > 0, pop.name
        np.testing.assert_array_equal(result.spike_counts[pop.name], counts[pop.name], err_msg=pop.name)
    np.testing.assert_allclose(result.output, output, rtol=1e-9, atol=1e-12)
    synops = {layer.name: layer.synops for layer in result.layers}
    # one accumulate per weight added: a linear layer adds a full row per input spike
    assert synops["f1"] == counts["r2"].sum() * 10
    assert synops["out"] == counts["f1"].sum() * 4
    # pooling adds one share per input spike (2x2 windows, stride 2, no overlap)
    assert synops["p1"] == counts["c1"][:, :12, :12].sum()
