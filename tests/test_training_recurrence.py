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
