"""The Numba kernels of the firing recurrence give the torch loop's results to the last bit."""

from __future__ import annotations

import contextlib

import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from evsim.training.neurons import FiringRecurrence, torch_recurrence  # noqa: E402
from evsim.training.recurrence import CHUNK  # noqa: E402

LAYOUTS = ("contiguous", "channels_last", "time_inner")


def currents(seed: int, shape: tuple[int, ...], dtype, layout: str, scale: float) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=dtype) * scale
    x[x.abs() < 0.3] = 0.0  # silent inputs, as many neurons get
    if layout == "channels_last":  # what conv2d gives once [T*B, C, H, W] is viewed as [T, B, C, H, W]
        steps, batch = shape[:2]
        return x.reshape(steps * batch, *shape[2:]).contiguous(memory_format=torch.channels_last).reshape(shape)
    if layout == "time_inner":  # no layout the trainer makes, but a caller may pass one
        return x.movedim(0, -1).contiguous().movedim(-1, 0)
    return x


def both(x: torch.Tensor, threshold, leak, surrogate, corrected, grad_seed: int):
    """Spikes and input gradients of the kernels and of the torch loop on the same currents."""
    results = []
    for kernels in (True, False):
        current = x.clone().requires_grad_()
        with torch_recurrence() if not kernels else contextlib.nullcontext():
            spikes = FiringRecurrence.apply(current, threshold, leak, surrogate, corrected)
        gradient = torch.randn(spikes.shape, generator=torch.Generator().manual_seed(grad_seed), dtype=x.dtype)
        spikes.backward(gradient)
        results.append((spikes, current.grad))
    return results


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    steps=st.integers(1, 12),
    batch=st.integers(1, 3),
    channels=st.integers(1, 5),
    side=st.integers(1, 6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    layout=st.sampled_from(LAYOUTS),
    threshold=st.sampled_from([0.25, 1.0, 1.7]),
    leak=st.sampled_from([1.0, 0.99, 0.7]),
    corrected=st.booleans(),
    scale=st.sampled_from([0.5, 1.5]),
)
def test_kernels_equal_the_torch_loop(seed, steps, batch, channels, side, dtype, layout, threshold, leak, corrected,
                                      scale):
    x = currents(seed, (steps, batch, channels, side, side), dtype, layout, scale)
    surrogate = 1.0 / threshold
    (spikes, grad), (ref_spikes, ref_grad) = both(x, threshold, leak, surrogate, corrected, seed + 1)
    assert torch.equal(spikes, ref_spikes) and torch.equal(grad, ref_grad)
    if layout != "time_inner":  # the kernels keep the trainer's layouts (time is always outermost in theirs)
        assert spikes.stride() == ref_spikes.stride()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernels_equal_the_torch_loop_across_chunks(dtype):
    """More neurons than one parallel chunk holds, in conv1's layout, with eq. 22's correction."""
    x = currents(7, (20, 2, 4, 34, 34), dtype, "channels_last", 0.8)
    assert x[0].numel() > 2 * CHUNK
    (spikes, grad), (ref_spikes, ref_grad) = both(x, 1.0, 0.99, 1.0, True, 8)
    assert spikes.sum() > 0 and torch.equal(spikes, ref_spikes) and torch.equal(grad, ref_grad)


def test_the_kernels_really_run():
    """A guard for the test above: the kernels are what runs outside torch_recurrence()."""
    from evsim.training import neurons

    x = currents(3, (4, 1, 2, 3, 3), torch.float32, "contiguous", 1.0)
    assert neurons._fused(x)
    with torch_recurrence():
        assert not neurons._fused(x)
    assert neurons._fused(x)


def _training_step(network, inputs, labels, masks, recorded: bool):
    """What run_epoch does with one mini-batch, the synops penalty included, up to the gradients
    (``recorded``: with every population's spikes recorded, which keeps the pools out of the kernels)."""
    from evsim.training.regularizers import ActivityPenalty, fan_outs, penalty_sum, synops_per_sample
    from evsim.training.trainer import loss_sum

    network.zero_grad(set_to_none=True)
    activity: dict = {}
    record: dict | None = {} if recorded else None
    output = network(inputs, masks=masks, activity=activity, record=record)
    synops = synops_per_sample(inputs, activity, fan_outs(network.graph, inputs.dtype))
    (loss_sum(output, labels) + penalty_sum(ActivityPenalty(synops=1e-4), synops, activity)).backward()
    return output.detach(), {k: v.detach() for k, v in activity.items()}, record, [p.grad for p in network.weights]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dropout", [0.0, 0.2, 0.3])
def test_dropout_counts_and_pools_in_the_kernels_keep_every_gradient(dtype, dropout):
    """A LeNet training step (dropout, the synops penalty on the counts) gives the same output,
    counts, spikes (values and layout) and weight gradients, to the last bit, with the mask, the
    counts and the average pools folded into the kernels as with FiringRecurrence followed by
    torch's ``* mask``, ``sum(0)`` and ``avg_pool2d`` (a dropout of 0.3 scales spikes by 1 / 0.7,
    whose window sums round: summed another way than torch's, they could differ)."""
    from evsim.training import network as network_module
    from evsim.training.architectures import lenet

    graph = lenet((2, 17, 17), 12)  # 17: pool1 cuts off a row and a column
    torch.manual_seed(5)
    network = network_module.SpikingNetwork(graph, dropout=dropout).to(dtype).train()
    assert set(network._only_pool) == {"conv1", "conv2"}
    conv1 = torch.zeros((36, 20, 17, 17), dtype=dtype).contiguous(memory_format=torch.channels_last)
    assert network_module.pools_in_kernels(conv1.reshape(12, 3, 20, 17, 17))  # conv1's currents: its pool runs in the kernels
    generator = torch.Generator().manual_seed(6)
    inputs = (torch.rand((12, 3, 2, 17, 17), generator=generator) < 0.3).to(dtype)
    labels = torch.tensor([1, 4, 7])
    masks = network.dropout_masks(3)
    new = [_training_step(network, inputs, labels, masks, recorded) for recorded in (False, True)]
    with network_module.unfused():
        old = [_training_step(network, inputs, labels, masks, recorded) for recorded in (False, True)]
    for got, want in zip(new, old):
        assert torch.equal(got[0], want[0])
        assert got[1].keys() == want[1].keys() and all(torch.equal(got[1][k], want[1][k]) for k in want[1])
        for a, b in zip(got[3], want[3]):
            assert b.abs().sum() > 0 and torch.equal(a, b)
    for name, spikes in old[1][2].items():
        assert spikes.sum() > 0, name  # every population fires, so every gradient path is exercised
        assert torch.equal(new[1][2][name], spikes) and new[1][2][name].stride() == spikes.stride()
