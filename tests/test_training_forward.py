"""The trainer's two forwards (layer-major and step by step) against each other, and the trained
model's export: the file, ``load_trained`` and the float64 ``dense_forward``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evsim.model.file import load_model  # noqa: E402
from evsim.model.graph import Graph, Population, Projection  # noqa: E402
from evsim.training.network import SpikingNetwork, dense_forward, load_trained, save_trained  # noqa: E402


# ------------------------------------------------------------- layer-major == step by step


def residual_graph(timesteps=12) -> Graph:
    return Graph(
        input_shape=(2, 10, 10),
        populations=(
            Population("c1", "lif", (6, 10, 10), (Projection("input", "conv", "w1", 3, 1, 1),)),
            Population("p1", "pool", (6, 5, 5), (Projection("c1", "avgpool", None, 2, 2),), threshold=0.75, leak=1.0),
            Population("c2", "lif", (8, 3, 3), (Projection("p1", "conv", "w2", 3, 2, 1),)),
            Population("r1", "lif", (8, 3, 3), (Projection("c2", "conv", "w3", 3, 1, 1), Projection("c2", "identity"))),
            Population("r2", "lif", (4, 2, 2), (Projection("r1", "conv", "w4", 3, 2, 1), Projection("c2", "conv", "w5", 1, 2, 0))),
            Population("f1", "lif", (12,), (Projection("r2", "linear", "w6"),)),
            Population("out", "output", (5,), (Projection("f1", "linear", "w7"),)),
        ),
        timesteps=timesteps,
    )


def first_flip_margin(network, inputs, records_a, records_b) -> float | None:
    """Where two runs' spike records first differ, how far the membrane was from threshold.

    Takes the first population (in graph order) whose records differ and the first step where
    they do; its sources' records are still equal there, so its membrane up to that step is
    recomputed in float64 from them, and the largest ``|V - threshold|`` over the neurons that
    differ at that step is returned (None when the records are equal). A float32 flip is
    legitimate only if that margin is below 1e-5 (the summation order decided a near tie).
    """
    graph = network.graph
    for pop in graph.populations:
        if not pop.fires or torch.equal(records_a[pop.name], records_b[pop.name]):
            continue
        differs = records_a[pop.name] != records_b[pop.name]
        first = int(differs.flatten(1).any(1).nonzero()[0])
        sources = {"input": inputs.double(), **{k: v.double() for k, v in records_a.items()}}
        v = torch.zeros(inputs.shape[1], *pop.shape, dtype=torch.float64)
        for t in range(first + 1):
            current = 0
            for proj in pop.inputs:
                x = sources[proj.source][t]
                w = network.weight(proj.weight).detach().double() if proj.weight else None
                if proj.op == "conv":
                    current = current + torch.nn.functional.conv2d(x, w, stride=proj.stride, padding=proj.padding)
                elif proj.op == "linear":
                    current = current + x.flatten(1) @ w.T
                elif proj.op == "avgpool":
                    current = current + torch.nn.functional.avg_pool2d(x, proj.kernel, proj.stride)
                else:
                    current = current + x
            v = v + current.reshape(v.shape)
            if t < first:
                v = torch.where(v > pop.threshold, 0.0, v) * pop.leak
        return float((v[differs[first]] - pop.threshold).abs().max())
    return None


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layer_major_equals_stepwise(dtype, recurrence):
    graph = residual_graph()
    torch.manual_seed(1)
    network = SpikingNetwork(graph, dropout=0.25).to(dtype).train()
    with torch.no_grad():
        for w in network.weights:
            w.mul_(2.5)  # livelier than the initialisation, so that deep layers fire
    inputs = (torch.rand(graph.timesteps, 3, *graph.input_shape) < 0.4).to(dtype)
    masks = network.dropout_masks(3)
    grads, outputs, records = [], [], []
    for forward in (network.forward, network.forward_stepwise):
        network.zero_grad()
        record = {}
        output = forward(inputs, masks=masks, record=record)
        output.pow(2).sum().backward()
        outputs.append(output.detach())
        records.append(record)
        grads.append([w.grad.clone() for w in network.weights])
    assert set(records[0]) == {"c1", "p1", "c2", "r1", "r2", "f1"}
    for name in records[0]:
        assert records[0][name].sum() > 0, name
    if dtype == torch.float64:  # exact: the same sums in the same order
        for name in records[0]:
            assert torch.equal(records[0][name], records[1][name]), name
        assert torch.equal(outputs[0], outputs[1])
    else:
        # float32 convolutions may sum in another order for another batch layout: a spike may flip
        # where the membrane ties the threshold to float32 rounding, and nowhere else
        margin = first_flip_margin(network, inputs, records[0], records[1])
        if margin is not None:
            assert margin < 1e-5, f"spikes differ where the membrane was {margin} from threshold"
            return  # the runs have legitimately diverged; nothing further is comparable
        torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-6, atol=1e-6)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(*grads):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance * float(a.abs().max()))


def test_flip_margin_finds_a_forced_flip():
    """first_flip_margin is not vacuous: flipping one spike by hand gives a margin it measures."""
    graph = residual_graph()
    torch.manual_seed(1)
    network = SpikingNetwork(graph, dropout=0.0).double().eval()
    with torch.no_grad():
        for w in network.weights:
            w.mul_(2.5)
    inputs = (torch.rand(graph.timesteps, 3, *graph.input_shape) < 0.4).double()
    record = {}
    network(inputs, record=record)
    assert first_flip_margin(network, inputs, record, record) is None
    flipped = {k: v.clone() for k, v in record.items()}
    where = record["c2"][4].nonzero()[0]
    flipped["c2"][(4, *where)] = 0.0  # a spike that fired with a real margin
    margin = first_flip_margin(network, inputs, record, flipped)
    assert margin is not None and margin > 1e-5


# ------------------------------------------------------------------- export and dense_forward


def test_save_load_round_trip_and_dense_forward(tmp_path):
    graph = residual_graph(timesteps=10)
    torch.manual_seed(2)
    network = SpikingNetwork(graph).eval()
    with torch.no_grad():
        for w in network.weights:
            w.mul_(2.5)
    path = save_trained(tmp_path / "m.npz", network, arch="test", dataset="none", epochs=0, accuracy=0.5)
    model = load_model(path)
    assert model.graph.meta == {"arch": "test", "dataset": "none", "epochs": 0, "accuracy": 0.5}
    assert all(w.dtype == np.float32 for w in model.weights.values())
    loaded = load_trained(path)
    inputs = (torch.rand(10, 4, *graph.input_shape) < 0.4).float()
    with torch.no_grad():
        assert torch.equal(network(inputs), loaded(inputs))
    output, counts = dense_forward(model.graph, model.weights, inputs.numpy())
    assert output.dtype == np.float64 and output.shape == (4, 5)
    record = {}
    with torch.no_grad():
        expected = loaded.double()(inputs.double(), record=record)
    np.testing.assert_array_equal(output, expected.numpy())
    assert set(counts) == {"c1", "p1", "c2", "r1", "r2", "f1"}
    for name, count in counts.items():
        assert count.shape == (4, *graph.population(name).shape) and count.dtype == np.int64
        np.testing.assert_array_equal(count, record[name].sum(0).numpy())
    assert counts["f1"].sum() > 0
