"""The neuron dynamics of evsim.model.graph as torch autograd Functions, with the paper's gradients.

Forward (per population, per time step ``t = 0 .. T-1``; ``I[t]`` is the summed current of all the
population's projections applied to their sources' spikes at step ``t``)::

    firing populations (lif, pool)        output population
        V    += I[t]                          V = leak * (V + I[t])
        s[t]  = V > threshold   (strict)      output = V(T) / T
        V[s[t]] = 0
        V    *= leak

The network is feed-forward, so a population's currents for all ``T`` steps can be computed
before its recurrence runs ("layer-major"); the Functions here take the currents of the whole
window ``I [T, B, ...]`` and run the recurrence in one fused loop over time. On the CPU the
paper's rule runs as the Numba kernels of evsim.training.recurrence (one pass over memory instead
of about ten; the same bits), elsewhere, and for the other rules, as the torch loop below. In
training the kernels also apply the dropout mask and count the spikes (:class:`DroppedFiring`),
and pool them into the next average pool's currents where nothing else reads them
(:class:`FiringIntoPool`), forward and backward, with the bits of the separate torch ops.

Backward (paper eq. 22-24 and the authors' code). For a firing population, with ``fired[t]`` the
forward spikes and ``g_s[t]`` the gradient arriving at the spikes::

    g_U[T]  = 0
    g_U[t]  = g_s[t] * factor * surrogate * fired[t]  +  g_U[t+1] * (1 - fired[t])
    g_I[t]  = g_U[t]

- The leak is treated as identity in backward; the reset cuts the path through the membrane at
  the steps where the neuron fired.
- ``surrogate`` is the straight-through slope of the spike function: ``1 / threshold`` for LIF
  neurons (eq. 13); ``1`` for the spiking average-pool neurons (the authors' Pooling_sNeuron).
- ``factor`` is the leak correction of eq. 22, for LIF neurons only (1 for pool neurons)::

      f     = sum_t leak**(T-1-t) * s[t]     (f <- leak * f + s[t], the low-pass filtered train)
      gamma = sum_t s[t]                     (the neuron's spike count over the window)
      factor = 1 + ln(leak) * f / gamma      (and 0 where gamma = 0)

  It is one number per neuron and input, the same at every step.

For the output integrator the membrane leak is likewise treated as noise (section 3.1.2), so
``d output / d I[t] = 1 / T`` for every step.

The neuron variants (evsim.model.neuron: reset by subtraction, several spikes per step, ``>=``,
a lower bound, per-neuron thresholds) run the spec's dynamics in the same fused loop; ``s[t]``
is then the spike count. Their gradient is the paper's where it applies: the same surrogate
(``1 / threshold`` per neuron, leak-corrected with the counts), applied at the steps where the
neuron fired. What changes is the path through the membrane::

    g_U[t] = g_s[t] * factor * surrogate * fired[t]  +  g_U[t+1] * keep[t]

    keep[t] = 1 - fired[t]   reset to zero (the paper: the reset cuts the path)
    keep[t] = 1              reset by subtraction (V - n * theta, the count treated as a constant)
    keep[t] = 0              where the lower bound clamped the membrane (it no longer depends on V)
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import torch

from evsim.model.neuron import Reset
from evsim.training.recurrence import (
    dtype_scalars,
    fire_backward,
    fire_forward,
    fire_pool_backward,
    fire_pool_forward,
    use_threads,
)


def leak_correction(spikes: torch.Tensor, leak: float) -> torch.Tensor:
    """Eq. 22's factor ``1 + ln(leak) * f / gamma`` per neuron from ``spikes [T, ...]`` (0/1 floats).

    Neurons that never fired get 0; their gradient is cut by the spikes anyway.
    """
    trace = torch.zeros_like(spikes[0])
    for step in spikes:
        trace.mul_(leak).add_(step)
    count = spikes.sum(dim=0)
    factor = trace.mul_(math.log(leak)).div_(count.clamp(min=1.0)).add_(1.0)
    return factor.masked_fill_(count == 0, 0.0)


def spike_count(membrane: torch.Tensor, threshold, rule) -> torch.Tensor:
    """Step 3 of evsim.model.neuron for a multi-spike rule: the spike count of every neuron."""
    q = membrane / threshold
    n = torch.floor(q) if rule.fire_test == ">=" else torch.ceil(q).sub_(1.0)
    return n.clamp_(min=0.0, max=rule.spikes_per_step)


def reset_membrane(membrane: torch.Tensor, counts: torch.Tensor, fired: torch.Tensor, threshold, rule) -> torch.Tensor:
    """Step 4 of evsim.model.neuron: the membrane after the reset of the neurons that fired
    (``counts`` spikes each; ``fired``: bool). Out of place, so that autograd may follow it."""
    if rule.reset == Reset.SUBTRACT:
        return membrane - counts * threshold
    return membrane.masked_fill(fired, 0.0)


def reset_keeps(fired: torch.Tensor, rule):
    """Where the gradient keeps its path through the membrane across the reset: cut for the
    neurons a reset to zero wiped, kept everywhere by subtraction (the count a constant)."""
    return ~fired if rule.reset == Reset.ZERO else True


def fire_test(membrane: torch.Tensor, threshold, rule, out=None) -> torch.Tensor:
    """Step 3 for a one-spike rule: which neurons fire (bool)."""
    if rule is not None and rule.fire_test == ">=":
        return torch.ge(membrane, threshold, out=out)
    return torch.gt(membrane, threshold, out=out)


_TORCH_LOOP = contextvars.ContextVar("torch_recurrence", default=False)


@contextlib.contextmanager
def torch_recurrence():
    """Within this block the paper's rule runs as the torch loop, not the Numba kernels (for
    comparing the two: identical results, different speed)."""
    token = _TORCH_LOOP.set(True)
    try:
        yield
    finally:
        _TORCH_LOOP.reset(token)


def _fused(current: torch.Tensor) -> bool:
    """Whether evsim.training.recurrence's kernels run the paper's rule for these currents."""
    return (not _TORCH_LOOP.get() and current.device.type == "cpu"
            and current.dtype in (torch.float32, torch.float64) and current.dim() >= 2)


def _layout(tensor: torch.Tensor) -> tuple[int, ...]:
    """The order of dimensions in which ``tensor`` is stored, time first (channels-last: T, B, H, W, C),
    so that ``permute(order).contiguous()`` is free for the layouts convolutions give."""
    rest = sorted(range(1, tensor.dim()), key=lambda d: (-tensor.stride(d), d))
    return (0, *rest)


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sorted(range(len(order)), key=order.__getitem__))


class FiringRecurrence(torch.autograd.Function):
    """Currents ``[T, B, ...]`` -> spikes ``[T, B, ...]`` of a firing population (see module doc).

    ``surrogate`` is the straight-through slope; ``corrected`` switches on the leak correction.
    ``rule`` is the population's evsim.model.neuron.Neuron when its firing rule is not the
    paper's (None: the paper's); ``threshold`` and ``surrogate`` may then be tensors of the
    population's shape (per-neuron thresholds).
    """

    @staticmethod
    def forward(ctx, current, threshold, leak: float, surrogate, corrected: bool, rule=None):
        if rule is not None:
            return FiringRecurrence._forward_rule(ctx, current, threshold, leak, surrogate, corrected, rule)
        if _fused(current) and not torch.is_tensor(threshold) and not torch.is_tensor(surrogate):
            return FiringRecurrence._forward_fused(ctx, current, threshold, leak, surrogate, corrected)
        fired = torch.empty_like(current, dtype=torch.bool)  # keeps a channels-last layout
        membrane = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            membrane.add_(current[t])
            torch.gt(membrane, threshold, out=fired[t])
            membrane.masked_fill_(fired[t], 0.0)
            if leak != 1.0:
                membrane.mul_(leak)
        spikes = fired.to(current.dtype)
        if ctx.needs_input_grad[0]:
            if corrected:
                scale = leak_correction(spikes, leak).mul_(surrogate)
            else:
                scale = torch.full_like(current[0], surrogate)
            ctx.save_for_backward(fired, scale)
            ctx.keep = None
        return spikes

    @staticmethod
    def _forward_fused(ctx, current, threshold, leak, surrogate, corrected):
        """The loop above in one pass of evsim.training.recurrence's kernel (identical results)."""
        return _kernel_forward(ctx, current, None, threshold, leak, surrogate, corrected)[0]

    @staticmethod
    def _forward_rule(ctx, current, threshold, leak, surrogate, corrected, rule):
        """The spec's steps 2-5 (and 1, at the end of each step) for any firing rule."""
        fired = torch.empty_like(current, dtype=torch.bool)
        counts = torch.empty_like(current)
        keep = torch.empty_like(current, dtype=torch.bool) if ctx.needs_input_grad[0] else None
        membrane = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            membrane.add_(current[t])
            if rule.single_spike:
                fire_test(membrane, threshold, rule, out=fired[t])
                counts[t] = fired[t]
            else:
                counts[t] = spike_count(membrane, threshold, rule)
                torch.gt(counts[t], 0.0, out=fired[t])
            membrane = reset_membrane(membrane, counts[t], fired[t], threshold, rule)
            if keep is not None:
                keep[t] = reset_keeps(fired[t], rule)
            if rule.lower_bound is not None:
                if keep is not None:
                    keep[t] &= membrane >= rule.lower_bound
                membrane.clamp_(min=rule.lower_bound)
            if leak != 1.0:
                membrane.mul_(leak)
        if ctx.needs_input_grad[0]:
            if corrected:
                scale = leak_correction(counts, leak).mul_(surrogate)
            else:
                scale = torch.ones_like(current[0]).mul_(surrogate)
            ctx.save_for_backward(fired, scale)
            ctx.keep = keep
        return counts

    @staticmethod
    def backward(ctx, grad_spikes):
        fired, scale = ctx.saved_tensors[:2]
        if getattr(ctx, "order", None) is not None:  # the fused forward: fired and scale are in its layout
            return _kernel_backward(ctx, grad_spikes, None), None, None, None, None, None
        grad = grad_spikes * scale  # g_s[t] * factor * surrogate, for every t at once
        last = grad.shape[0] - 1
        grad[last].mul_(fired[last])
        if ctx.keep is None:
            for t in range(last - 1, -1, -1):
                # where the neuron fired the reset cuts the path to later steps; elsewhere it passes
                torch.where(fired[t], grad[t], grad[t + 1], out=grad[t])
        else:
            keep = ctx.keep
            for t in range(last - 1, -1, -1):
                grad[t].mul_(fired[t]).add_(grad[t + 1] * keep[t])
        return grad, None, None, None, None, None


def kernels_run(current: torch.Tensor, rule=None) -> bool:
    """Whether the paper's rule runs as evsim.training.recurrence's kernels (:class:`DroppedFiring`)."""
    return rule is None and _fused(current)


def _in_layout(tensor: torch.Tensor | None, order: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """``tensor [B, ...]`` (None: an empty one) as a flat array in the layout ``order`` of a window's step."""
    if tensor is None:
        return like.new_empty(0)
    return tensor.to(like.dtype).permute([d - 1 for d in order[1:]]).contiguous().reshape(-1)


def _kernel_forward(ctx, current, mask, threshold, leak, surrogate, corrected):
    """Spikes ``[T, B, ...]`` (times ``mask [B, ...]``, None: none) and spike counts ``[B, ...]`` of
    the paper's rule from evsim.training.recurrence's forward kernel, in the currents' layout; ``ctx``
    keeps what :func:`_kernel_backward` needs."""
    order = _layout(current)
    flat = current.detach().permute(order).contiguous()
    steps = flat.shape[0]
    fired = torch.empty_like(flat, dtype=torch.bool)
    spikes = torch.empty_like(flat)
    count = torch.empty_like(flat[0])
    scale = torch.empty_like(flat[0])
    currents = flat.numpy().reshape(steps, -1)
    flat_mask = _in_layout(mask, order, flat)
    use_threads(torch.get_num_threads())
    # without a backward (evaluation) eq. 22's trace would be computed for nothing
    fire_forward(currents, *dtype_scalars(currents.dtype, threshold, leak, surrogate),
                 corrected and ctx.needs_input_grad[0], flat_mask.numpy(), fired.numpy().reshape(currents.shape),
                 spikes.numpy().reshape(currents.shape), count.numpy().reshape(-1), scale.numpy().reshape(-1))
    if ctx.needs_input_grad[0]:
        ctx.save_for_backward(fired, scale, flat_mask)
        ctx.keep = None
        ctx.order = order
    back = _inverse(order)
    return spikes.permute(back), count.permute([d - 1 for d in back[1:]])


def _kernel_backward(ctx, grad_spikes, grad_count) -> torch.Tensor:
    """The currents' gradient from :func:`_kernel_forward`'s saved state, the spikes' gradient and the
    counts' (None: the counts fed no loss)."""
    fired, scale, flat_mask = ctx.saved_tensors
    order = ctx.order
    steps = fired.shape[0]
    flat = (torch.zeros_like(fired, dtype=scale.dtype) if grad_spikes is None
            else grad_spikes.permute(order).contiguous())
    grad = torch.empty_like(flat)
    use_threads(torch.get_num_threads())
    fire_backward(flat.numpy().reshape(steps, -1), flat_mask.numpy(), _in_layout(grad_count, order, flat).numpy(),
                  fired.numpy().reshape(steps, -1), scale.numpy().reshape(-1), grad.numpy().reshape(steps, -1))
    return grad.permute(_inverse(order))


class DroppedFiring(torch.autograd.Function):
    """The paper's rule as the kernels, with what the trainer does next folded in: currents
    ``[T, B, ...]`` -> (spikes times the dropout ``mask [B, ...]`` (None: no dropout), the spike
    counts ``[B, ...]`` before the mask). The same bits, forward and backward, as
    ``s = FiringRecurrence.apply(...)``, ``s * mask`` and ``s.sum(0)`` (tests/test_training_recurrence.py);
    one pass over the window each way instead of four."""

    @staticmethod
    def forward(ctx, current, mask, threshold: float, leak: float, surrogate: float, corrected: bool):
        ctx.set_materialize_grads(False)
        return _kernel_forward(ctx, current, mask, threshold, leak, surrogate, corrected)

    @staticmethod
    def backward(ctx, grad_spikes, grad_count):
        return _kernel_backward(ctx, grad_spikes, grad_count), None, None, None, None, None


CHANNELS_LAST = (0, 1, 3, 4, 2)  # [T, B, C, H, W] stored as [T, B, H, W, C]: what convolutions give


def pools_in_kernels(current: torch.Tensor) -> bool:
    """Whether :class:`FiringIntoPool` can run for these currents (the kernels' rule, channels-last)."""
    return _fused(current) and current.dim() == 5 and _layout(current) == CHANNELS_LAST


def _channels_last(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """``tensor [B, C, H, W]`` as a contiguous ``[B, H, W, C]`` array (None: an empty one)."""
    if tensor is None:
        return like.new_empty((0, 1, 1, 1))
    return tensor.to(like.dtype).permute(0, 2, 3, 1).contiguous()


class FiringIntoPool(torch.autograd.Function):
    """:class:`DroppedFiring` for a population whose spikes only feed a ``kernel x kernel`` average
    pool of stride ``kernel``: currents ``[T, B, C, H, W]`` (channels-last) -> (the pool's currents
    ``[T, B, C, H // kernel, W // kernel]``, the spike counts ``[B, C, H, W]``). The same bits as
    DroppedFiring followed by ``avg_pool2d``, forward and backward, without the window's float
    spikes and their gradient ever in memory."""

    @staticmethod
    def forward(ctx, current, mask, threshold: float, leak: float, surrogate: float, corrected: bool, kernel: int):
        ctx.set_materialize_grads(False)
        flat = current.detach().permute(CHANNELS_LAST).contiguous()
        steps, batch, height, width, channels = flat.shape
        fired = torch.empty_like(flat, dtype=torch.bool)
        count = torch.empty_like(flat[0])
        scale = torch.empty_like(flat[0])
        pooled = flat.new_empty((steps, batch, height // kernel, width // kernel, channels))
        flat_mask = _channels_last(mask, flat)
        use_threads(torch.get_num_threads())
        def rows(tensor):  # each image row's W x C neurons as one contiguous run
            return tensor.numpy().reshape(*tensor.shape[:-2], tensor.shape[-2] * tensor.shape[-1])

        fire_pool_forward(rows(flat), *dtype_scalars(flat.numpy().dtype, threshold, leak, surrogate),
                          corrected and ctx.needs_input_grad[0], rows(flat_mask), kernel, channels, rows(fired),
                          rows(count), rows(scale), rows(pooled))
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(fired, scale, flat_mask)
            ctx.kernel = kernel
        back = _inverse(CHANNELS_LAST)
        return pooled.permute(back), count.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_pooled, grad_count):
        fired, scale, flat_mask = ctx.saved_tensors
        grad = torch.empty_like(fired, dtype=scale.dtype)
        flat_pooled = (grad.new_zeros((*fired.shape[:2], fired.shape[2] // ctx.kernel, fired.shape[3] // ctx.kernel,
                                       fired.shape[4])) if grad_pooled is None
                       else grad_pooled.permute(CHANNELS_LAST).contiguous())
        use_threads(torch.get_num_threads())
        fire_pool_backward(flat_pooled.numpy(), ctx.kernel, flat_mask.numpy(),
                           _channels_last(grad_count, grad).numpy(), fired.numpy(), scale.numpy(), grad.numpy())
        return grad.permute(_inverse(CHANNELS_LAST)), None, None, None, None, None, None


class OutputIntegrator(torch.autograd.Function):
    """Currents ``[T, B, N]`` -> ``V(T) / T`` of the leaky, never-firing output population."""

    @staticmethod
    def forward(ctx, current, leak: float):
        membrane = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            membrane.add_(current[t]).mul_(leak)
        ctx.steps = current.shape[0]
        return membrane / ctx.steps

    @staticmethod
    def backward(ctx, grad_output):
        grad = (grad_output / ctx.steps).unsqueeze(0).expand(ctx.steps, *grad_output.shape)
        return grad.contiguous(), None


class StepSpike(torch.autograd.Function):
    """One step of a firing population, for the step-by-step reference forward.

    Returns the spikes (counts, for a multi-spike ``rule``) of the pre-reset membrane ``V``. The leak correction depends on the whole
    window, which is known only after the last step; ``window`` is a small record whose
    ``scale`` (factor x surrogate) the reference forward fills in once the loop is over, before
    any backward can run.
    """

    @staticmethod
    def forward(ctx, membrane, threshold, window, rule=None):
        if rule is None or rule.single_spike:
            fired = fire_test(membrane, threshold, rule)
            counts = fired.to(membrane.dtype)
        else:
            counts = spike_count(membrane, threshold, rule)
            fired = counts > 0
        ctx.save_for_backward(fired)
        ctx.window = window
        return counts

    @staticmethod
    def backward(ctx, grad_spikes):
        (fired,) = ctx.saved_tensors
        return grad_spikes * ctx.window.scale * fired, None, None, None


class LeakAsIdentity(torch.autograd.Function):
    """``leak * x`` forward, identity backward (the leak is noise for the gradient)."""

    @staticmethod
    def forward(ctx, x, leak: float):
        return x * leak

    @staticmethod
    def backward(ctx, grad):
        return grad, None
