"""The dense trainer: its gradients against a hand-written reference, its two forwards against each
other, dropout, the paper's architectures, a real (small) training run, and model export."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evsim.model.graph import Graph, Population, Projection  # noqa: E402
from evsim.model.file import load_model  # noqa: E402
from evsim.training.architectures import ARCHITECTURES  # noqa: E402
from evsim.training.network import (  # noqa: E402
    SpikingNetwork,
    dense_forward,
    load_trained,
    parameter_count,
    save_trained,
)
from evsim.training.neurons import (  # noqa: E402
    FiringRecurrence,
    LeakAsIdentity,
    OutputIntegrator,
    leak_correction,
    torch_recurrence,
)


@pytest.fixture(params=["kernels", "torch_loop"])
def recurrence(request):
    """The gradient tests run on both paths of the paper's rule: the Numba kernels (CPU) and the
    torch loop (GPUs; the reference the kernels are checked against bit for bit)."""
    with torch_recurrence() if request.param == "torch_loop" else contextlib.nullcontext():
        yield request.param


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


def test_prefetched_loads_in_order_with_the_plain_loops_draws():
    """The loader thread of run_epoch: each batch's data in order, drawn from a shared generator
    exactly as a plain loop draws them, and a loader's error reaches the caller."""
    from evsim.training.prefetch import prefetched

    def draw(rng):
        return lambda n: rng.integers(0, 1000, n)

    items = [3, 1, 4, 1, 5]
    shared = draw(np.random.default_rng(9))  # one generator for the whole loop
    plain = [shared(n) for n in items]
    rng = np.random.default_rng(9)
    got = list(prefetched(draw(rng), items))
    assert len(got) == len(plain) and all(np.array_equal(a, b) for a, b in zip(got, plain))

    def broken(n):
        if n == 4:
            raise ValueError("bad recording")
        return n

    with pytest.raises(ValueError, match="bad recording"):
        list(prefetched(broken, items))
