"""The paper's firing recurrence (evsim.training.neurons) as Numba kernels for CPU training.

Training is memory-bound outside the convolutions: conv1's currents for a mini-batch are
``[T=100, B=32, 20, 34, 34]``, 300 MB in float32, and the torch recurrence passes over them about
ten times (add, compare, reset, leak, the float spikes, the leak-correction trace and the spike
count in forward; the scale product and the per-step selects in backward). These kernels make one
pass in forward and one in backward, with the very float operations and rounding order of the
torch code, so both give identical bits (``tests/test_training_recurrence.py``). Only the paper's
firing rule runs here; the other rules, and tensors off the CPU, take the torch path.

Arrays are ``[T, N]`` views of the tensors' storage (any dense layout, the same for all of them),
so channels-last tensors need no copy; the neurons are split into chunks run in parallel.
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


def dtype_scalars(dtype: np.dtype, threshold: float, leak: float, surrogate: float) -> tuple:
    """The scalars as torch applies them to a tensor of ``dtype``: rounded to it (and ln(leak) too)."""
    cast = np.dtype(dtype).type
    return cast(threshold), cast(leak), cast(math.log(leak)), cast(surrogate)


def use_threads(count: int) -> None:
    """Run the kernels on ``count`` threads (torch's count for the convolutions), at most Numba's pool."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
