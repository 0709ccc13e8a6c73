"""The paper's firing recurrence (evsim.training.neurons) as Numba kernels for CPU training.

Training is memory-bound outside the convolutions: conv1's currents for a mini-batch are
``[T=100, B=32, 20, 34, 34]``, 300 MB in float32, and the torch recurrence passes over them about
ten times (add, compare, reset, leak, the float spikes, the leak-correction trace and the spike
count in forward; the scale product and the per-step selects in backward). These kernels make one
pass in forward and one in backward, with the very float operations and rounding order of the
torch code, so both give identical bits (``tests/test_training_recurrence.py``). Only the paper's
firing rule runs here; the other rules, and tensors off the CPU, take the torch path.

Arrays are ``[T, N]`` views of the tensors' storage (any dense layout, the same for all of them),
so channels-last tensors need no copy; the neurons are split into chunks run in parallel. The
same passes apply the trainer's dropout mask and count the spikes (what ``spikes * mask`` and
``spikes.sum(0)`` did in torch), and the ``fire_pool_*`` pair pools the spikes straight into the
next average pool's currents (``[T, B, H, W, C]`` arrays, bands of rows in parallel), so the
window's float spikes and their gradient, ``T`` times a layer's neurons, never go through memory.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

CHUNK = 4096  # neurons per parallel task: a chunk's membranes stay in L1 over the T steps


@numba.njit(parallel=True, nogil=True, cache=True)
def fire_forward(current, threshold, leak, log_leak, surrogate, corrected, mask, fired, spikes, count, scale):
    """Currents ``[T, N]`` -> ``fired [T, N]`` (bool), ``spikes [T, N]`` (the float spikes times the
    dropout ``mask [N]``; an empty mask: none), the spike count ``[N]`` (before the mask) and the
    backward scale ``[N]``: eq. 22's ``factor * surrogate`` when ``corrected``, else ``surrogate``.
    Scalars come in the arrays' dtype. The mask's product and the count are torch's ``spikes * mask``
    and ``spikes.sum(0)`` (a sum of 0/1 values is exact in any order), done in the same pass."""
    steps, n = current.shape
    zero = current.dtype.type(0.0)
    one = current.dtype.type(1.0)
    leaky = leak != one
    masked = mask.shape[0] > 0
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        hi = min(lo + CHUNK, n)
        membrane = np.zeros(hi - lo, current.dtype)
        trace = np.zeros(hi - lo, current.dtype)
        count[lo:hi] = zero
        for t in range(steps):
            for i in range(lo, hi):
                v = membrane[i - lo] + current[t, i]
                spike = v > threshold
                fired[t, i] = spike
                s = one if spike else zero
                spikes[t, i] = s * mask[i] if masked else s
                if spike:
                    v = zero
                if leaky:
                    v = v * leak
                membrane[i - lo] = v
                count[i] = count[i] + s
                if corrected:
                    trace[i - lo] = trace[i - lo] * leak + s
        for i in range(lo, hi):
            if not corrected:
                scale[i] = surrogate
            elif count[i] == zero:
                scale[i] = zero
            else:
                scale[i] = (trace[i - lo] * log_leak / count[i] + one) * surrogate


@numba.njit(parallel=True, nogil=True, cache=True)
def fire_backward(grad_spikes, mask, grad_count, fired, scale, grad):
    """``grad[t] = g_s[t] * scale`` where the neuron fired at ``t``, else ``grad[t + 1]`` (0 after the last step).

    ``g_s[t]`` is what autograd would hand the unmasked spikes: ``grad_spikes[t] * mask + grad_count``
    (the gradients of ``spikes * mask`` and of ``spikes.sum(0)``; empty arrays: no mask, no count gradient)."""
    steps, n = grad_spikes.shape
    zero = grad.dtype.type(0.0)
    masked = mask.shape[0] > 0
    counted = grad_count.shape[0] > 0
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        lo = chunk * CHUNK
        hi = min(lo + CHUNK, n)
        for t in range(steps - 1, -1, -1):
            for i in range(lo, hi):
                g = grad_spikes[t, i] * mask[i] if masked else grad_spikes[t, i]
                if counted:
                    g = g + grad_count[i]
                if t == steps - 1:
                    g = g * scale[i]
                    grad[t, i] = g if fired[t, i] else g * zero
                else:
                    grad[t, i] = g * scale[i] if fired[t, i] else grad[t + 1, i]


@numba.njit(parallel=True, nogil=True, cache=True)
def fire_pool_forward(current, threshold, leak, log_leak, surrogate, corrected, mask, kernel, channels, fired, count,
                      scale, pooled):
    """:func:`fire_forward` on channels-last currents ``[T, B, H, W * C]`` whose spikes (times ``mask
    [B, H, W * C]``; empty: none) only feed a ``kernel x kernel`` average pool of stride ``kernel``:
    writes the pool's currents ``pooled [T, B, H // kernel, (W // kernel) * C]`` instead of the
    spikes, summed over each window in row-major order from zero and divided by ``kernel**2``, as
    torch's ``avg_pool2d`` does (so the same bits). Rows are taken ``kernel`` at a time, one band
    per task; a step's spikes of the band wait in a small buffer until the band is pooled."""
    steps, batch, height, row = current.shape
    out_h, out_w = pooled.shape[2], pooled.shape[3] // channels
    zero = current.dtype.type(0.0)
    one = current.dtype.type(1.0)
    divisor = current.dtype.type(kernel * kernel)
    leaky = leak != one
    masked = mask.shape[0] > 0
    bands = (height + kernel - 1) // kernel
    for task in prange(batch * bands):
        b = task // bands
        band = task % bands
        y0 = band * kernel
        rows = min(kernel, height - y0)
        membrane = np.zeros((rows, row), current.dtype)
        trace = np.zeros((rows, row), current.dtype)
        spikes = np.zeros((rows, row), current.dtype)
        count[b, y0 : y0 + rows] = zero
        for t in range(steps):
            for dy in range(rows):
                y = y0 + dy
                for i in range(row):
                    v = membrane[dy, i] + current[t, b, y, i]
                    spike = v > threshold
                    fired[t, b, y, i] = spike
                    s = one if spike else zero
                    spikes[dy, i] = s * mask[b, y, i] if masked else s
                    if spike:
                        v = zero
                    if leaky:
                        v = v * leak
                    membrane[dy, i] = v
                    count[b, y, i] = count[b, y, i] + s
                    if corrected:
                        trace[dy, i] = trace[dy, i] * leak + s
            if band < out_h:  # rows below the last whole window feed no pool neuron
                for px in range(out_w):
                    for c in range(channels):
                        total = zero
                        for dy in range(kernel):
                            for dx in range(kernel):
                                total += spikes[dy, (px * kernel + dx) * channels + c]
                        pooled[t, b, band, px * channels + c] = total / divisor
        for dy in range(rows):
            for i in range(row):
                n = count[b, y0 + dy, i]
                if not corrected:
                    scale[b, y0 + dy, i] = surrogate
                elif n == zero:
                    scale[b, y0 + dy, i] = zero
                else:
                    scale[b, y0 + dy, i] = (trace[dy, i] * log_leak / n + one) * surrogate


@numba.njit(parallel=True, nogil=True, cache=True)
def fire_pool_backward(grad_pooled, kernel, mask, grad_count, fired, scale, grad):
    """:func:`fire_backward` for :func:`fire_pool_forward`: the spikes' gradient is what torch's
    ``avg_pool2d`` backward gives from the pool's ``grad_pooled [T, B, H // kernel, W // kernel, C]``
    (``0 + g / kernel**2`` inside whole windows, 0 elsewhere); the arrays are ``[T, B, H, W, C]``."""
    steps, batch, height, width, channels = grad.shape
    out_h, out_w = grad_pooled.shape[2], grad_pooled.shape[3]
    zero = grad.dtype.type(0.0)
    divisor = grad.dtype.type(kernel * kernel)
    masked = mask.shape[0] > 0
    counted = grad_count.shape[0] > 0
    for task in prange(batch * height):
        b = task // height
        y = task % height
        py = y // kernel
        for t in range(steps - 1, -1, -1):
            for x in range(width):
                px = x // kernel
                for c in range(channels):
                    g = zero + grad_pooled[t, b, py, px, c] / divisor if py < out_h and px < out_w else zero
                    if masked:
                        g = g * mask[b, y, x, c]
                    if counted:
                        g = g + grad_count[b, y, x, c]
                    if t == steps - 1:
                        g = g * scale[b, y, x, c]
                        grad[t, b, y, x, c] = g if fired[t, b, y, x, c] else g * zero
                    else:
                        grad[t, b, y, x, c] = g * scale[b, y, x, c] if fired[t, b, y, x, c] else grad[t + 1, b, y, x, c]


def dtype_scalars(dtype: np.dtype, threshold: float, leak: float, surrogate: float) -> tuple:
    """The scalars as torch applies them to a tensor of ``dtype``: rounded to it (and ln(leak) too)."""
    cast = np.dtype(dtype).type
    return cast(threshold), cast(leak), cast(math.log(leak)), cast(surrogate)


def use_threads(count: int) -> None:
    """Run the kernels on ``count`` threads (torch's count for the convolutions), at most Numba's pool."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
