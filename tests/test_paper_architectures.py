"""The paper's networks as the trainer builds them: the weight counts of tables 4 and 5, a forward
and backward pass of every architecture, the initialisation scale, and dropout's mask."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evsim.model.graph import Graph, Population, Projection  # noqa: E402
from evsim.training.architectures import ARCHITECTURES  # noqa: E402
from evsim.training.network import SpikingNetwork, parameter_count  # noqa: E402


# -------------------------------------------------------------------------------- dropout


def always_firing_graph() -> Graph:
    return Graph(
        input_shape=(1, 4, 4),
        populations=(
            Population("a", "lif", (16, 4, 4), (Projection("input", "conv", "w1", 1, 1, 0),)),
            Population("out", "output", (2,), (Projection("a", "linear", "w2"),)),
        ),
        timesteps=8,
    )


def test_dropout_mask_is_held_for_the_window_and_redrawn_per_batch():
    graph = always_firing_graph()
    network = SpikingNetwork(graph, dropout=0.5, init=False)
    network.load_weights({"w1": np.full((16, 1, 1, 1), 5.0, np.float32), "w2": np.ones((2, 256), np.float32)})
    inputs = torch.ones(8, 4, 1, 4, 4)  # every neuron of "a" fires at every step
    torch.manual_seed(0)
    first, second = {}, {}
    network.train()
    network(inputs, record=first)
    network(inputs, record=second)
    for record in (first, second):
        train = record["a"]
        assert set(torch.unique(train).tolist()) == {0.0, 2.0}  # kept spikes scaled by 1 / (1 - p)
        assert torch.equal(train, train[:1].expand_as(train))  # the same mask at every step
        assert 0.35 < float((train[0] == 0).float().mean()) < 0.65
    assert not torch.equal(first["a"][0], second["a"][0])  # a new mask for the next mini-batch
    network.eval()
    evaluation = {}
    network(inputs, record=evaluation)
    assert torch.all(evaluation["a"] == 1.0)


# -------------------------------------------------------------------------- architectures

# Weight counts from tables 4 and 5, layer by layer (kernel maps x in maps x k x k, FC in x out).
TABLE_PARAMETERS = {
    ("lenet", (1, 28, 28)): 1 * 20 * 25 + 20 * 50 * 25 + 50 * 7 * 7 * 200 + 200 * 10,  # 517,500
    ("lenet", (2, 34, 34)): 2 * 20 * 25 + 20 * 50 * 25 + 50 * 8 * 8 * 200 + 200 * 10,  # 668,000
    ("vgg7", (3, 32, 32)): (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 128) * 9 + 128 * 1024 + 10240,
    ("resnet7", (3, 32, 32)): (3 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 256 * 256) * 9
    + 64 * 128 + 128 * 256 + 256 * 4 * 4 * 1024 + 10240,
    ("vgg9", (3, 32, 32)): (3 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 2 * 256 * 256) * 9
    + 256 * 4 * 4 * 1024 + 10240,
    ("resnet9", (3, 32, 32)): (3 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 512 * 512) * 9
    + 64 * 128 + 128 * 256 + 256 * 512 + 512 * 4 * 4 * 1024 + 10240,
    ("resnet11", (3, 32, 32)): (3 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 256 * 256 + 256 * 512 + 3 * 512 * 512) * 9
    + 64 * 128 + 128 * 256 + 256 * 512 + 512 * 512 + 512 * 4 * 4 * 1024 + 10240,
}


def test_parameter_counts_match_the_tables():
    assert TABLE_PARAMETERS[("lenet", (1, 28, 28))] == 517_500
    assert TABLE_PARAMETERS[("resnet11", (3, 32, 32))] == 18_198_208
    for (arch, shape), expected in TABLE_PARAMETERS.items():
        assert parameter_count(ARCHITECTURES[arch](shape)) == expected, arch


@pytest.mark.parametrize("arch, shape", list(TABLE_PARAMETERS), ids=[f"{a}-{s[0]}ch" for a, s in TABLE_PARAMETERS])
def test_architecture_runs_forward_and_backward(arch, shape):
    graph = ARCHITECTURES[arch](shape, timesteps=2)
    kinds = [p.kind for p in graph.populations]
    assert kinds[-1] == "output" and kinds.count("output") == 1
    for pop in graph.populations:
        expected = {"lif": (1.0, 0.99), "pool": (0.75, 1.0), "output": (1.0, 0.99)}[pop.kind]
        assert (pop.threshold, pop.leak) == expected
    network = SpikingNetwork(graph, dropout=0.2).train()
    assert network.parameter_count == TABLE_PARAMETERS[(arch, shape)]
    with torch.no_grad():
        for w in network.weights:
            w.mul_(4.0)  # two steps from the initialisation rarely reach the last layer
    torch.manual_seed(0)
    inputs = (torch.rand(2, 1, *shape) < 0.5).float()
    record = {}
    output = network(inputs, record=record)
    assert output.shape == (1, 10)
    output.sum().backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in network.weights)
    # d sum(output) / d W_out[j, i] = sum_t s_i[t] / T (eq. 23: the output's leak is noise), the same for every j
    out_pop = graph.populations[-1]
    (proj,) = out_pop.inputs
    last = record[proj.source].flatten(2).sum(0)[0] / 2
    expected = last.expand(10, -1)
    torch.testing.assert_close(network.weight(proj.weight).grad, expected, rtol=1e-5, atol=1e-7)
    assert float(network.weight(proj.weight).grad.abs().max()) > 0, "the last hidden layer is silent: nothing checked"
    first = network.weight(graph.populations[0].inputs[0].weight).grad
    assert float(first.abs().max()) > 0, "no gradient reaches the first layer"


def test_initialisation_scale_follows_kappa():
    torch.manual_seed(0)
    plain = SpikingNetwork(ARCHITECTURES["lenet"]((1, 28, 28)))
    residual = SpikingNetwork(ARCHITECTURES["resnet7"]((3, 32, 32)))
    fc = plain.weight("fc1")
    assert float(fc.detach().std()) == pytest.approx(math.sqrt(2 / 2450), rel=0.02)
    big = residual.weight("fc1")
    assert float(big.detach().std()) == pytest.approx(math.sqrt(1 / 4096), rel=0.02)
