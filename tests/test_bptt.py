"""Surrogate-gradient BPTT (evsim.training.bptt): snntorch's fast-sigmoid gradient through time,
the model's forward unchanged, and a gradient other than the paper's."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from evsim.errors import InputError  # noqa: E402
from evsim.model.graph import Graph, Population, Projection  # noqa: E402
from evsim.training.bptt import FastSigmoid, LeakyIntegrator, SurrogateRecurrence  # noqa: E402
from evsim.training.network import SpikingNetwork  # noqa: E402
from evsim.training.neurons import FiringRecurrence, OutputIntegrator  # noqa: E402

SLOPE = 25.0


class _FastSigmoidSpike(torch.autograd.Function):
    """snntorch.surrogate.FastSigmoid as its source defines it: ``(U - theta) > 0`` forward,
    ``grad / (slope * |U - theta| + 1)**2`` backward."""

    @staticmethod
    def forward(ctx, shifted):
        ctx.save_for_backward(shifted)
        return (shifted > 0).to(shifted.dtype)

    @staticmethod
    def backward(ctx, grad):
        (shifted,) = ctx.saved_tensors
        return grad / (SLOPE * shifted.abs() + 1.0) ** 2


def snntorch_style_loop(current, threshold, leak):
    """snntorch's Leaky (reset to zero, detached reset) step by step, differentiated by autograd:
    ``U = leak * (1 - reset) * U + I[t]``, ``s = H(U - theta)``, ``reset = s.detach()``."""
    membrane = torch.zeros_like(current[0])
    reset = torch.zeros_like(current[0])
    spikes = []
    for t in range(current.shape[0]):
        membrane = leak * (1.0 - reset) * membrane + current[t]
        spike = _FastSigmoidSpike.apply(membrane - threshold)
        reset = spike.detach()
        spikes.append(spike)
    return torch.stack(spikes)


def test_two_steps_by_hand():
    """theta 1, leak 0.5, I = [0.8, 0.9]: U = 0.8 (silent), then 0.4 + 0.9 = 1.3 (fires)."""
    current = torch.tensor([[0.8], [0.9]], dtype=torch.float64, requires_grad=True)
    spikes = SurrogateRecurrence.apply(current, 1.0, 0.5, FastSigmoid(SLOPE))
    assert spikes.flatten().tolist() == [0.0, 1.0]
    spikes.sum().backward()
    g1 = 1.0 / (25 * 0.3 + 1) ** 2  # d s[1] / d U[1]
    g0 = 1.0 / (25 * 0.2 + 1) ** 2 + 0.5 * g1  # s[0]'s own slope, and U[1] = 0.5 * U[0] + I[1]
    assert current.grad.flatten().tolist() == pytest.approx([g0, g1], rel=1e-12)
    # the paper's rule on the same currents: 1 / theta, leak-corrected (eq. 22), only where it fired,
    # carried unchanged to the silent step before
    paper = current.detach().clone().requires_grad_()
    FiringRecurrence.apply(paper, 1.0, 0.5, 1.0, True).sum().backward()
    factor = 1.0 + math.log(0.5)
    assert paper.grad.flatten().tolist() == pytest.approx([factor, factor], rel=1e-12)


def test_the_reset_cuts_the_path_and_the_leak_scales_it():
    """Three steps, fired at step 1: step 2's gradient reaches step 1 but not step 0."""
    current = torch.tensor([[0.5], [0.8], [0.3]], dtype=torch.float64, requires_grad=True)
    spikes = SurrogateRecurrence.apply(current, 1.0, 0.9, FastSigmoid(SLOPE))
    assert spikes.flatten().tolist() == [0.0, 1.0, 0.0]  # U = 0.5, 0.45 + 0.8, 0 + 0.3
    spikes.backward(torch.tensor([[0.0], [0.0], [1.0]], dtype=torch.float64))
    assert current.grad.flatten().tolist() == pytest.approx([0.0, 0.0, 1.0 / (25 * 0.7 + 1) ** 2], rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 15), width=st.integers(1, 20),
       threshold=st.sampled_from([0.75, 1.0]), leak=st.sampled_from([1.0, 0.99, 0.6]))
def test_equals_autograd_through_snntorchs_step_loop(seed, steps, width, threshold, leak):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((steps, 2, width), generator=generator, dtype=torch.float64)
    upstream = torch.randn((steps, 2, width), generator=generator, dtype=torch.float64)
    fused, loop = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = SurrogateRecurrence.apply(fused, threshold, leak, FastSigmoid(SLOPE))
    reference = snntorch_style_loop(loop, threshold, leak)
    assert torch.equal(ours, reference)
    ours.backward(upstream)
    reference.backward(upstream)
    torch.testing.assert_close(fused.grad, loop.grad, rtol=1e-12, atol=1e-14)


def test_output_integrator_passes_the_leak_back():
    x = torch.randn((6, 3, 4), dtype=torch.float64)
    ours, loop = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = LeakyIntegrator.apply(ours, 0.9)
    membrane = torch.zeros_like(loop[0])
    for t in range(6):
        membrane = 0.9 * (membrane + loop[t])
    torch.testing.assert_close(out, membrane / 6, rtol=1e-14, atol=0)
    torch.testing.assert_close(out, OutputIntegrator.apply(x, 0.9), rtol=0, atol=0)  # the model's forward
    upstream = torch.randn((3, 4), dtype=torch.float64)
    out.backward(upstream)
    (membrane / 6).backward(upstream)
    torch.testing.assert_close(ours.grad, loop.grad, rtol=1e-12, atol=1e-15)


def _tiny_graph() -> Graph:
    return Graph((1, 6, 6), (
        Population("c1", "lif", (3, 6, 6), (Projection("input", "conv", "w1", 3, 1, 1),)),
        Population("p1", "pool", (3, 3, 3), (Projection("c1", "avgpool", kernel=2, stride=2),),
                   threshold=0.75, leak=1.0),
        Population("f1", "lif", (8,), (Projection("p1", "linear", "w2"),)),
        Population("out", "output", (4,), (Projection("f1", "linear", "w3"),)),
    ), timesteps=12)


def _weight_grads(network, inputs, labels):
    network.zero_grad()
    output = network(inputs)
    loss = 0.5 * (output - torch.nn.functional.one_hot(labels, 4).to(output)).pow(2).sum()
    loss.backward()
    return output.detach(), {name: w.grad.clone() for name, w in network.named_weights().items()}


def _snntorch_style_network(network, inputs):
    """The tiny graph written out as a peer would: per step, conv/pool/linear then the Leaky loop,
    all by autograd."""
    weights = network.named_weights()
    steps = inputs.shape[0]
    c1 = snntorch_style_loop(torch.nn.functional.conv2d(inputs.flatten(0, 1), weights["w1"], padding=1)
                             .unflatten(0, inputs.shape[:2]), 1.0, 0.99)
    p1 = snntorch_style_loop(torch.nn.functional.avg_pool2d(c1.flatten(0, 1), 2).unflatten(0, inputs.shape[:2]),
                             0.75, 1.0)
    f1 = snntorch_style_loop(torch.nn.functional.linear(p1.flatten(2), weights["w2"]), 1.0, 0.99)
    membrane = torch.zeros(inputs.shape[1], 4, dtype=inputs.dtype)
    for t in range(steps):
        membrane = 0.99 * (membrane + torch.nn.functional.linear(f1[t], weights["w3"]))
    return membrane / steps


def test_a_network_trained_with_bptt_has_the_same_forward_and_the_peer_gradient():
    torch.manual_seed(3)
    graph = _tiny_graph()
    paper = SpikingNetwork(graph).double()
    with torch.no_grad():
        for w in paper.weights:
            w.mul_(2.0).add_(0.15)  # every layer fires
    bptt = SpikingNetwork(graph, init=False, bptt=FastSigmoid(SLOPE)).double()
    bptt.load_state_dict(paper.state_dict())
    generator = torch.Generator().manual_seed(0)
    inputs = (torch.rand((12, 5, 1, 6, 6), generator=generator) < 0.4).double()
    labels = torch.tensor([0, 1, 2, 3, 0])
    record: dict = {}
    with torch.no_grad():
        bptt(inputs, record=record)
    assert all(train.sum() > 0 for train in record.values())
    out_paper, grads_paper = _weight_grads(paper, inputs, labels)
    out_bptt, grads_bptt = _weight_grads(bptt, inputs, labels)
    assert torch.equal(out_paper, out_bptt)
    bptt.zero_grad()
    reference = _snntorch_style_network(bptt, inputs)
    torch.testing.assert_close(reference, out_bptt, rtol=1e-12, atol=1e-14)
    (0.5 * (reference - torch.nn.functional.one_hot(labels, 4).to(reference)).pow(2).sum()).backward()
    for name, w in bptt.named_weights().items():
        torch.testing.assert_close(grads_bptt[name], w.grad, rtol=1e-10, atol=1e-13)
        assert not np.allclose(grads_bptt[name].numpy(), grads_paper[name].numpy(), rtol=0.05)


def test_the_step_loop_refuses_bptt():
    network = SpikingNetwork(_tiny_graph(), bptt=FastSigmoid())
    with pytest.raises(InputError, match="BPTT"):
        network.forward_stepwise(torch.zeros((12, 1, 1, 6, 6)))


MNIST_SAMPLE = __import__("pathlib").Path(__file__).parent / "data" / "mnist"
REPO = MNIST_SAMPLE.parent.parent.parent


def _train(tmp_path, rule: str):
    from evsim.cli.main import main

    out = tmp_path / f"{rule}.npz"
    code = main(["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(MNIST_SAMPLE), "--epochs", "1",
                 "--timesteps", "12", "--limit", "32", "--test-limit", "8", "--batch-size", "16", "--seed", "0",
                 "--rule", rule, "--out", str(out), "--no-progress", "--threads", "1"])
    assert code == 0
    return out


@pytest.mark.slow
def test_evsim_train_rule_bptt_trains_other_weights_from_the_same_start(tmp_path, capsys):
    from evsim.model.file import load_model

    paper, bptt = (load_model(_train(tmp_path, rule)).weights for rule in ("paper", "bptt"))
    assert all(paper[name].shape == bptt[name].shape for name in paper)
    assert all(not np.array_equal(paper[name], bptt[name]) for name in paper)
    state = torch.load(f"{tmp_path / 'bptt.npz'}.checkpoint.pt", weights_only=True)
    assert state["config"]["rule"] == "bptt"


def test_rule_errors_are_one_line(tmp_path, capsys):
    from evsim.cli.main import main

    base = ["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(MNIST_SAMPLE), "--epochs", "1",
            "--timesteps", "2", "--out", str(tmp_path / "m.npz")]
    assert main(base + ["--ann", "--rule", "bptt"]) == 2
    assert "--ann" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--rule", "stdp"])


@pytest.mark.slow
def test_train_compare_runs_both_rules_and_reports(tmp_path):
    import subprocess
    import sys

    script = REPO / "benchmarks" / "train_compare.py"
    out = tmp_path / "compare"
    subprocess.run([sys.executable, str(script), "run", "mnist", "--data", str(MNIST_SAMPLE), "--limit", "40",
                    "--val", "8", "--test-limit", "8", "--timesteps", "3", "--epochs", "1", "--seeds", "0",
                    "--out", str(out)], check=True, capture_output=True)
    records = [__import__("json").loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert sorted(r["rule"] for r in records) == ["bptt", "paper"]
    for r in records:
        assert r["epoch"] == 1 and r["epoch_samples"] == 32 and r["engine_val_synops"] > 0
        assert 0 <= r["engine_val_accuracy"] <= 1 and r["peak_rss_mib"] > 0 and r["train_seconds"] > 0
    figure = tmp_path / "compare.png"
    report = subprocess.run([sys.executable, str(script), "report", str(out), "--figure", str(figure)],
                            check=True, capture_output=True, text=True).stdout
    assert report.count("| mnist |") == 2 and figure.read_bytes()[:4] == b"\x89PNG"
