"""The dense trainer's gradients: one neuron in closed form, the authors' formulation re-expressed
with autograd, and a tiny network against a hand-written numpy reference, on both paths of the
paper's rule (the ``recurrence`` fixture of conftest.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evsim.model.graph import Graph, Population, Projection  # noqa: E402
from evsim.training.network import SpikingNetwork  # noqa: E402
from evsim.training.neurons import (  # noqa: E402
    FiringRecurrence,
    LeakAsIdentity,
    OutputIntegrator,
    leak_correction,
)


# ------------------------------------------------------------------ one neuron, exact numbers


def test_lif_backward_single_neuron_exact(recurrence):
    # threshold 1, leak 0.9, currents 0.6, 0.6, 1.2, 0.3:
    #   t0: V = 0.6 -> no spike, V = 0.54;  t1: V = 1.14 -> spike;  t2: V = 1.2 -> spike;
    #   t3: V = 0.3 -> no spike.  f: 0, 1, 1.9, 1.71 after each step; gamma = 2.
    current = torch.tensor([0.6, 0.6, 1.2, 0.3], dtype=torch.float64).reshape(4, 1, 1).requires_grad_()
    spikes = FiringRecurrence.apply(current, 1.0, 0.9, 1.0, True)
    assert spikes.flatten().tolist() == [0.0, 1.0, 1.0, 0.0]
    spikes.backward(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).reshape(4, 1, 1))
    factor = 1 + math.log(0.9) * 1.71 / 2
    # g_U[3] = 0 (no spike, nothing later); g_U[2] = 3F; g_U[1] = 2F; g_U[0] = g_U[1] (no spike)
    expected = [2 * factor, 2 * factor, 3 * factor, 0.0]
    assert current.grad.flatten().tolist() == pytest.approx(expected, rel=1e-14, abs=0)


def one_neuron_graph(kind: str, threshold: float, leak: float, timesteps: int) -> Graph:
    """input (1 pixel) -> one neuron of ``kind`` -> one output integrator (leak 1)."""
    return Graph(
        input_shape=(1, 1, 1),
        populations=(
            Population("a", kind, (1,), (Projection("input", "linear", "w1"),), threshold=threshold, leak=leak),
            Population("out", "output", (1,), (Projection("a", "linear", "w2"),), leak=1.0),
        ),
        timesteps=timesteps,
    )


def one_neuron_gradients(kind, threshold, leak, timesteps, w1, w2=0.7):
    """d output / d (w1, w2) through SpikingNetwork for an input spike at every step."""
    network = SpikingNetwork(one_neuron_graph(kind, threshold, leak, timesteps), init=False).double().eval()
    network.load_weights({"w1": np.full((1, 1), w1), "w2": np.full((1, 1), w2)})
    record = {}
    network(torch.ones(timesteps, 1, 1, 1, 1, dtype=torch.float64), record=record).sum().backward()
    return float(network.weight("w1").grad), float(network.weight("w2").grad), record["a"].flatten()


@pytest.mark.parametrize("leak", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("timesteps", [1, 4, 25])
@pytest.mark.parametrize("threshold", [0.5, 1.0, 1.6])
def test_gradient_of_a_neuron_firing_every_step_is_the_closed_form(threshold, timesteps, leak, recurrence):
    """Eq. 22 in closed form. With an input above threshold at every step the neuron fires every
    step, so f = sum_t leak^(T-1-t) = (1 - leak^T) / (1 - leak) and gamma = T; the reset cuts the
    path through the membrane, so d output / d w1 = w2 / T * sum_t (1 / threshold) * factor with
    factor = 1 + ln(leak) (1 - leak^T) / ((1 - leak) T); and d output / d w2 = (spikes / T) = 1."""
    w2 = 0.7
    g1, g2, spikes = one_neuron_gradients("lif", threshold, leak, timesteps, w1=threshold + 0.3, w2=w2)
    assert spikes.tolist() == [1.0] * timesteps
    factor = 1 + math.log(leak) * (1 - leak**timesteps) / ((1 - leak) * timesteps)
    assert g1 == pytest.approx(w2 * factor / threshold, rel=1e-12)
    assert g2 == pytest.approx(1.0, rel=1e-12)
    if timesteps > 1:
        assert factor < 1  # the correction really changes the gradient here


@pytest.mark.parametrize("threshold", [0.5, 1.0, 1.6])
def test_no_leak_means_no_correction(threshold, recurrence):
    """leak 1: ln(leak) = 0, so the factor is 1 for any firing pattern (here every other step)."""
    g1, _, spikes = one_neuron_gradients("lif", threshold, 1.0, 8, w1=0.6 * threshold, w2=0.7)
    assert spikes.tolist() == [0.0, 1.0] * 4
    # fired at odd steps: g_U[t] = 0.7 / 8 / threshold at every step up to the last spike (t = 7)
    assert g1 == pytest.approx(8 * 0.7 / 8 / threshold, rel=1e-12)


@pytest.mark.parametrize("leak", [1.0, 0.8])
def test_pool_neurons_have_slope_one_and_no_correction(leak, recurrence):
    g1, _, spikes = one_neuron_gradients("pool", 0.75, leak, 6, w1=1.0, w2=0.7)
    assert spikes.tolist() == [1.0] * 6
    assert g1 == pytest.approx(0.7, rel=1e-12)  # whatever the leak and threshold


def test_leak_correction_closed_form_per_neuron():
    steps, leak = 9, 0.9
    trains = torch.zeros(steps, 3, dtype=torch.float64)
    trains[:, 0] = 1.0  # every step
    trains[steps - 1, 1] = 1.0  # once, at the last step: f = 1, gamma = 1
    factor = leak_correction(trains, leak)  # neuron 2 never fires
    expected = [1 + math.log(leak) * (1 - leak**steps) / ((1 - leak) * steps), 1 + math.log(leak), 0.0]
    assert factor.tolist() == pytest.approx(expected, rel=1e-14)


def test_smooth_parts_pass_gradcheck():
    """Where the paper's gradient is the true gradient (no spike, no leak in the path) it must
    agree with finite differences: the output integrator without leak, and the output layer's
    weights on fixed hidden spikes."""
    current = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: OutputIntegrator.apply(x, 1.0), (current,))
    assert torch.autograd.gradcheck(lambda x: LeakAsIdentity.apply(x, 1.0), (current,))
    hidden = FiringRecurrence.apply(torch.rand(6, 2, 5, dtype=torch.float64) * 1.5, 1.0, 0.9, 1.0, True)
    assert 0 < hidden.sum() < hidden.numel()
    w_out = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w: OutputIntegrator.apply(hidden @ w.T, 1.0), (w_out,))


# ----------------------------------------- the authors' formulation, re-expressed with autograd


def authors_formulation_gradients(graph, weights, inputs, labels):
    """The gradient as the authors' published code obtains it (chan8972/Enabling_Spikebased_Backpropagation,
    src/cifar10_ResNet11.py: LIF_sNeuron, LF_Unit, grad_cal and the hooks in train()), written
    here from its mechanism: plain autograd through a hard threshold whose straight-through
    gradient passes where the neuron fired, the reset as a subtraction of the part above
    threshold, the leak with a detached-identity gradient, the 1/threshold slope by the same
    detach trick, and each step's spikes scaled by a hook with (f > 0) + ln(leak) * f / gamma.
    An MLP of LIF layers only; no evsim code is involved."""

    class Heaviside(torch.autograd.Function):
        @staticmethod
        def forward(ctx, above):
            ctx.save_for_backward(above)
            return (above > 0).to(above.dtype)

        @staticmethod
        def backward(ctx, grad):
            (above,) = ctx.saved_tensors
            return grad * (above > 0)

    w = {name: torch.tensor(v, dtype=torch.float64, requires_grad=True) for name, v in weights.items()}
    steps, batch = inputs.shape[:2]
    hidden = graph.populations[:-1]
    out_pop = graph.populations[-1]
    mem = {p.name: torch.zeros(batch, *p.shape, dtype=torch.float64) for p in graph.populations}
    low_pass = {p.name: torch.zeros(batch, *p.shape, dtype=torch.float64) for p in hidden}
    total = {p.name: torch.zeros(batch, *p.shape, dtype=torch.float64) for p in hidden}
    per_step = {p.name: [] for p in hidden}
    for t in range(steps):
        x = torch.as_tensor(inputs[t], dtype=torch.float64).flatten(1)
        for pop in hidden:
            m = mem[pop.name] + x @ w[pop.inputs[0].weight].T
            above = torch.nn.functional.threshold(m, pop.threshold, 0.0)  # m where m > threshold, else 0
            m = m - above
            spike = Heaviside.apply(above)
            mem[pop.name] = pop.leak * m.detach() + m - m.detach()
            spike = spike.detach() + spike / pop.threshold - (spike / pop.threshold).detach()
            low_pass[pop.name] = pop.leak * low_pass[pop.name] + spike.detach()
            total[pop.name] = total[pop.name] + spike.detach()
            per_step[pop.name].append(spike)
            x = spike
        m = mem[out_pop.name] + x @ w[out_pop.inputs[0].weight].T
        mem[out_pop.name] = out_pop.leak * m.detach() + m - m.detach()
    output = mem[out_pop.name] / steps
    for pop in hidden:
        f, gamma = low_pass[pop.name], total[pop.name]
        scale = (f > 0).to(f.dtype) + math.log(pop.leak) * f / (gamma + (gamma == 0).to(f.dtype))
        for spike in per_step[pop.name]:
            spike.register_hook(lambda grad, scale=scale: grad * scale)
    target = torch.nn.functional.one_hot(torch.as_tensor(labels), out_pop.shape[0]).to(torch.float64)
    (0.5 * (output - target).pow(2).sum()).backward()
    trains = {p.name: torch.stack([s.detach() for s in per_step[p.name]]) for p in hidden}
    return output.detach(), {name: t.grad.numpy() for name, t in w.items()}, trains


def test_gradients_equal_the_authors_formulation(recurrence):
    rng = np.random.default_rng(5)
    graph = Graph(
        input_shape=(1, 3, 4),
        populations=(
            Population("h1", "lif", (9,), (Projection("input", "linear", "w1"),), threshold=0.8, leak=0.9),
            Population("h2", "lif", (7,), (Projection("h1", "linear", "w2"),), threshold=1.3, leak=0.95),
            Population("out", "output", (3,), (Projection("h2", "linear", "w3"),), leak=0.97),
        ),
        timesteps=12,
    )
    weights = {"w1": rng.normal(0.25, 0.5, (9, 12)), "w2": rng.normal(0.05, 0.6, (7, 9)), "w3": rng.normal(0, 1, (3, 7))}
    inputs = (rng.random((12, 4, 1, 3, 4)) < 0.5).astype(np.float64)
    labels = np.array([0, 2, 1, 2])
    ref_out, ref_grads, ref_trains = authors_formulation_gradients(graph, weights, inputs, labels)
    for name, train in ref_trains.items():  # spikes and silence, and neurons that fire several times
        counts = train.sum(0)
        assert counts.max() >= 3 and counts.min() == 0, name
    network = SpikingNetwork(graph, init=False).double().eval()
    network.load_weights(weights)
    record = {}
    output = network(torch.from_numpy(inputs), record=record)
    (0.5 * (output - torch.nn.functional.one_hot(torch.from_numpy(labels), 3)).pow(2).sum()).backward()
    torch.testing.assert_close(output.detach(), ref_out, rtol=1e-13, atol=1e-15)
    for name, train in ref_trains.items():
        assert torch.equal(record[name], train), name
    for name, grad in ref_grads.items():
        assert np.abs(grad).max() > 0, name
        np.testing.assert_allclose(network.weight(name).grad.numpy(), grad, rtol=1e-10, atol=1e-13)


def test_never_firing_neuron_gets_no_gradient_and_output_gradient_is_one_over_T(recurrence):
    current = torch.full((5, 1, 3), 0.1, dtype=torch.float64, requires_grad=True)
    FiringRecurrence.apply(current, 1.0, 0.99, 1.0, True).sum().backward()
    assert torch.count_nonzero(current.grad) == 0
    current = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    out = OutputIntegrator.apply(current, 0.9)
    expected = torch.zeros(2, 3, dtype=torch.float64)
    for t in range(5):
        expected = 0.9 * (expected + current[t].detach())
    assert torch.equal(out.detach(), expected / 5)
    out.sum().backward()
    assert torch.all(current.grad == 1 / 5)


# ------------------------------------------------------- a tiny network against a numpy reference


def tiny_graph() -> Graph:
    return Graph(
        input_shape=(1, 4, 4),
        populations=(
            Population("c1", "lif", (2, 4, 4), (Projection("input", "conv", "w1", 3, 1, 1),), threshold=0.8, leak=0.9),
            Population("p1", "pool", (2, 2, 2), (Projection("c1", "avgpool", None, 2, 2),), threshold=0.75, leak=1.0),
            Population("f1", "lif", (3,), (Projection("p1", "linear", "w2"),), threshold=1.0, leak=0.95),
            Population("out", "output", (2,), (Projection("f1", "linear", "w3"),), threshold=1.0, leak=0.9),
        ),
        timesteps=6,
    )


def _conv(x, w):  # x [C, H, W], w [O, C, 3, 3], stride 1, padding 1
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((w.shape[0], x.shape[1], x.shape[2]))
    for o in range(w.shape[0]):
        for i in range(x.shape[1]):
            for j in range(x.shape[2]):
                out[o, i, j] = np.sum(w[o] * xp[:, i : i + 3, j : j + 3])
    return out


def _conv_weight_grad(x, g):  # d sum(g * conv(x, w)) / dw
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    gw = np.zeros((g.shape[0], x.shape[0], 3, 3))
    for o in range(g.shape[0]):
        for i in range(g.shape[1]):
            for j in range(g.shape[2]):
                gw[o] += g[o, i, j] * xp[:, i : i + 3, j : j + 3]
    return gw


def _pool(x):
    c, h, w = x.shape
    return x.reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4))


def _pool_backward(g):
    return np.repeat(np.repeat(g, 2, axis=1), 2, axis=2) / 4


def _fire(currents, threshold, leak):
    """The forward recurrence, step by step, for one sample: spikes [T, ...]."""
    v = np.zeros(currents.shape[1:])
    spikes = np.zeros_like(currents)
    for t, i in enumerate(currents):
        v = v + i
        spikes[t] = v > threshold
        v[spikes[t] > 0] = 0
        v = v * leak
    return spikes


def _back(g_spikes, spikes, scale):
    """g_U[t] = g_s[t] * scale * fired[t] + g_U[t+1] * (1 - fired[t])."""
    g_u = np.zeros_like(g_spikes)
    later = np.zeros(g_spikes.shape[1:])
    for t in range(len(g_spikes) - 1, -1, -1):
        g_u[t] = g_spikes[t] * scale * spikes[t] + later * (1 - spikes[t])
        later = g_u[t]
    return g_u


def _correction(spikes, leak):
    f = np.zeros(spikes.shape[1:])
    for s in spikes:
        f = leak * f + s
    gamma = spikes.sum(0)
    return np.where(gamma > 0, 1 + math.log(leak) * f / np.maximum(gamma, 1), 0.0)


def reference_gradients(graph, weights, inputs, labels):
    """The paper's forward and backward written out per sample in numpy (float64)."""
    c1, p1, f1, out = graph.populations
    w1, w2, w3 = weights["w1"], weights["w2"], weights["w3"]
    steps = inputs.shape[0]
    grads = {k: np.zeros_like(v) for k, v in weights.items()}
    outputs, trains = [], {"c1": [], "p1": [], "f1": []}
    for b in range(inputs.shape[1]):
        x = inputs[:, b]
        s1 = _fire(np.stack([_conv(x[t], w1) for t in range(steps)]), c1.threshold, c1.leak)
        sp = _fire(np.stack([_pool(s1[t]) for t in range(steps)]), p1.threshold, p1.leak)
        sf = _fire(np.stack([w2 @ sp[t].ravel() for t in range(steps)]), f1.threshold, f1.leak)
        v = np.zeros(2)
        for t in range(steps):
            v = out.leak * (v + w3 @ sf[t])
        output = v / steps
        outputs.append(output)
        for name, s in (("c1", s1), ("p1", sp), ("f1", sf)):
            trains[name].append(s)
        g_out = output - np.eye(2)[labels[b]]  # d(0.5 * sum (o - y)^2) / do
        g_i_out = np.repeat((g_out / steps)[None], steps, axis=0)
        grads["w3"] += sum(np.outer(g_i_out[t], sf[t]) for t in range(steps))
        g_sf = np.stack([w3.T @ g_i_out[t] for t in range(steps)])
        g_if = _back(g_sf, sf, _correction(sf, f1.leak) / f1.threshold)
        grads["w2"] += sum(np.outer(g_if[t], sp[t].ravel()) for t in range(steps))
        g_sp = np.stack([(w2.T @ g_if[t]).reshape(p1.shape) for t in range(steps)])
        g_ip = _back(g_sp, sp, 1.0)  # pool: slope 1, no leak correction
        g_s1 = np.stack([_pool_backward(g_ip[t]) for t in range(steps)])
        g_i1 = _back(g_s1, s1, _correction(s1, c1.leak) / c1.threshold)
        grads["w1"] += sum(_conv_weight_grad(x[t], g_i1[t]) for t in range(steps))
    return np.stack(outputs), grads, {k: np.stack(v, axis=1) for k, v in trains.items()}


def tiny_case(seed=0):
    rng = np.random.default_rng(seed)
    graph = tiny_graph()
    weights = {
        "w1": rng.normal(0.3, 0.5, (2, 1, 3, 3)),
        "w2": rng.normal(0.3, 0.8, (3, 8)),
        "w3": rng.normal(0.0, 1.0, (2, 3)),
    }
    inputs = (rng.random((graph.timesteps, 3, 1, 4, 4)) < 0.5).astype(np.float64)
    labels = np.array([0, 1, 1])
    return graph, weights, inputs, labels


@pytest.mark.parametrize("stepwise", [False, True], ids=["layer-major", "stepwise"])
def test_backward_matches_numpy_reference(stepwise, recurrence):
    graph, weights, inputs, labels = tiny_case()
    ref_out, ref_grads, ref_trains = reference_gradients(graph, weights, inputs, labels)
    for name in ("c1", "p1", "f1"):  # the case must exercise spikes and silence in every layer
        counts = ref_trains[name].sum(axis=0)
        assert counts.max() > 0 and counts.min() == 0, name
        if name != "p1":
            assert counts.max() >= 2  # so that the leak correction differs from 1
    network = SpikingNetwork(graph, init=False).double()
    network.load_weights(weights)
    record = {}
    forward = network.forward_stepwise if stepwise else network.forward
    output = forward(torch.from_numpy(inputs), record=record)
    loss = 0.5 * (output - torch.nn.functional.one_hot(torch.from_numpy(labels), 2)).pow(2).sum()
    loss.backward()
    np.testing.assert_allclose(output.detach().numpy(), ref_out, rtol=1e-13, atol=1e-15)
    for name, train in ref_trains.items():
        assert np.array_equal(record[name].numpy(), train), name
    for name, grad in ref_grads.items():
        assert np.abs(grad).max() > 0
        np.testing.assert_allclose(network.weight(name).grad.numpy(), grad, rtol=1e-10, atol=1e-13)
