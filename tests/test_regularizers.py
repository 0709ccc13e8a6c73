"""The activity regularisers: the trainer's synops count equals the engine's, and the penalty forms."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import evsim  # noqa: E402
from evsim.datasets.samples import load_samples  # noqa: E402
from evsim.errors import InputError  # noqa: E402
from evsim.model.file import load_model  # noqa: E402
from evsim.model.graph import INPUT  # noqa: E402
from evsim.training.architectures import build  # noqa: E402
from evsim.training.network import SpikingNetwork  # noqa: E402
from evsim.training.regularizers import (  # noqa: E402
    ActivityPenalty,
    fan_outs,
    parse_bound,
    penalty_sum,
    synops_per_sample,
)
from random_model import random_nmnist_graph, random_nmnist_weights  # noqa: E402


def trainer_synops(graph, weights, frames: np.ndarray) -> np.ndarray:
    """S per sample from the dense float64 forward, frames ``[T, B, C, H, W]``."""
    network = SpikingNetwork(graph, init=False).to(torch.float64)
    network.load_weights(weights)
    network.eval()
    inputs = torch.from_numpy(frames).to(torch.float64)
    activity = {}
    with torch.no_grad():
        network(inputs, activity=activity)
    return synops_per_sample(inputs, activity, fan_outs(graph)).numpy()


@pytest.mark.parametrize("model", [pytest.param("lenet-nmnist", marks=pytest.mark.slow), "random-tiny"])
def test_trainer_synops_equal_the_engine_count(model, nmnist_root):
    """Padding, borders, a stride-2 convolution and the pooling windows' cut-off rows included."""
    if model == "lenet-nmnist":
        bundled = load_model("lenet-nmnist")
        graph, weights = bundled.graph, bundled.weights
    else:
        graph, weights = random_nmnist_graph(), random_nmnist_weights(0)
    samples = load_samples("nmnist", nmnist_root, "test", 2, encoding=graph.encoding)
    frames = samples.inputs(np.arange(len(samples)), graph.timesteps, np.random.default_rng(0))
    expected = trainer_synops(graph, weights, frames)
    engine = evsim.Network(graph, weights, dtype=np.float64)
    results = [engine.run(frames[:, b]) for b in range(len(samples))]
    assert all(layer.synops > 0 for r in results for layer in r.layers)  # every layer is busy: not vacuous
    counted = np.array([r.synops for r in results])
    np.testing.assert_array_equal(expected, counted)


def test_fan_outs_at_the_borders():
    graph = build("lenet", (2, 34, 34), 10)
    fans = fan_outs(graph)
    # conv1: 5x5, padding 2, 20 maps; a corner pixel reaches 3x3 output pixels, an inner one 5x5
    assert fans[INPUT][0, 0, 0] == 20 * 9 and fans[INPUT][1, 17, 17] == 20 * 25 and fans[INPUT][0, 0, 17] == 20 * 15
    # pool1 34 -> 17 reaches one target everywhere; pool2 on 17x17 windows cut off row and column 16
    assert torch.all(fans["conv1"] == 1)
    assert fans["conv2"][0, 15, 15] == 1 and fans["conv2"][0, 16, 3] == 0 and fans["conv2"][0, 3, 16] == 0
    assert torch.all(fans["pool2"] == 200) and torch.all(fans["fc1"] == 10)
    assert "out" not in fans


def test_penalty_forms():
    synops = torch.tensor([2e6, 4e6], dtype=torch.float64)
    activity = {"conv1": torch.tensor([[3.0, 4.0], [10.0, 2.0]], dtype=torch.float64)}
    assert float(penalty_sum(ActivityPenalty(synops=1e-6), synops, activity)) == pytest.approx(6.0)
    # Sorbaro et al.: zero at the target, the squared relative distance elsewhere
    assert float(penalty_sum(ActivityPenalty(target=2e6, target_weight=2.0), synops, activity)) == pytest.approx(2.0)
    # an upper bound of 8 spikes: only the second sample (12 spikes) pays, ((12 - 8) / 8)^2
    bound = ActivityPenalty(bounds=(("conv1", 8.0),), bound_weight=3.0)
    assert float(penalty_sum(bound, synops, activity)) == pytest.approx(3 * 0.25)
    assert float(penalty_sum(ActivityPenalty(spike_l1=0.5), synops, activity)) == pytest.approx(9.5)
    assert not ActivityPenalty().active and ActivityPenalty(spike_l1=1e-3).active


@pytest.mark.slow
def test_synops_penalty_gradient_lowers_activity(nmnist_root):
    """One Adam step on the penalty alone lowers S: the surrogate gradient reaches the weights."""
    bundled = load_model("lenet-nmnist")
    graph = build("lenet", (2, 34, 34), 20)
    samples = load_samples("nmnist", nmnist_root, "test", 2, encoding=bundled.graph.encoding)
    inputs = torch.from_numpy(samples.inputs(np.arange(2), 20, np.random.default_rng(0)))
    network = SpikingNetwork(graph, init=False)
    network.load_weights(bundled.weights)
    fans = fan_outs(graph, torch.float32)
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)

    def cost():
        activity = {}
        network(inputs, activity=activity)
        synops = synops_per_sample(inputs, activity, fans)
        return penalty_sum(ActivityPenalty(synops=1e-6), synops, activity), synops

    before, synops_before = cost()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        _, synops_after = cost()
    assert float(synops_after.sum()) < 0.99 * float(synops_before.detach().sum())  # about -2 %


def test_bad_penalties_are_input_errors():
    graph = build("lenet", (2, 34, 34), 10)
    assert parse_bound("conv1=2000") == ("conv1", 2000.0)
    for text in ("conv1", "conv1=many", "=3"):
        with pytest.raises(InputError, match="LAYER=N"):
            parse_bound(text)
    with pytest.raises(InputError, match="not a spiking population"):
        ActivityPenalty(bounds=(("out", 10.0),)).check(graph)
    with pytest.raises(InputError, match="positive"):
        ActivityPenalty(bounds=(("conv1", 0.0),)).check(graph)
    with pytest.raises(InputError, match="must not be negative"):
        ActivityPenalty(synops=-1.0).check(graph)
    with pytest.raises(InputError, match="synops-target"):
        ActivityPenalty(target=0.0).check(graph)
