"""Surrogate-gradient backpropagation through time (BPTT): the rule peers train with, for comparison.

The forward is the model's, bit for bit (evsim.training.neurons: ``V += I[t]``, ``s[t] = V > theta``,
reset to zero, ``V *= leak``; the output integrator ``V = leak * (V + I[t])``, output ``V(T) / T``).
Only the gradient differs from the paper's rule. It is snntorch's ``Leaky`` neuron with
``reset_mechanism="zero"`` and ``spike_grad=surrogate.fast_sigmoid(slope=25)``: the spike's
derivative is the fast sigmoid's (Zenke & Ganguli 2018, SuperSpike),

    d s[t] / d U[t] = 1 / (slope * |U[t] - theta| + 1)**2     (snntorch.surrogate.FastSigmoid)

where ``U[t]`` is the membrane before the reset, and the gradient flows back through the membrane
across steps, through the leak, cut where the neuron fired (snntorch detaches its reset signal, so
``U[t+1] = leak * (1 - s[t]) * U[t] + I[t+1]`` with ``s[t]`` a constant there)::

    g_U[T]  = 0
    g_U[t]  = g_s[t] * sigma'(U[t] - theta)  +  leak * (1 - s[t]) * g_U[t+1]
    g_I[t]  = g_U[t]

Against the paper's rule (evsim.training.neurons): the surrogate is evaluated on the membrane at
every step, not ``1 / theta`` at the steps where the neuron fired with eq. 22's leak correction;
the leak is part of the gradient, not noise; and the output integrator passes
``leak**(T - t) / T`` to step ``t`` instead of ``1 / T``. Backward needs a float per neuron and step
(the surrogate's value) where the paper's rule keeps one per neuron. The torch loops here are
checked against autograd through an explicit snntorch-style step loop (tests/test_bptt.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evsim.errors import ModelError
from evsim.model.graph import Population


@dataclass(frozen=True)
class FastSigmoid:
    """snntorch's ``surrogate.fast_sigmoid(slope)``: ``d s / d U = 1 / (slope * |U - theta| + 1)**2``."""

    slope: float = 25.0

    def derivative(self, shifted: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative at ``shifted = U - theta``."""
        return shifted.abs().mul_(self.slope).add_(1.0).pow_(-2)


class SurrogateRecurrence(torch.autograd.Function):
    """Currents ``[T, B, ...]`` -> spikes ``[T, B, ...]`` of a firing population, with the
    surrogate's gradient through time (see module doc)."""

    @staticmethod
    def forward(ctx, current, threshold: float, leak: float, surrogate: FastSigmoid):
        fired = torch.empty_like(current, dtype=torch.bool)
        slope = torch.empty_like(current) if ctx.needs_input_grad[0] else None
        membrane = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            membrane.add_(current[t])
            torch.gt(membrane, threshold, out=fired[t])
            if slope is not None:
                slope[t] = surrogate.derivative(membrane - threshold)
            membrane.masked_fill_(fired[t], 0.0)
            if leak != 1.0:
                membrane.mul_(leak)
        if slope is not None:
            ctx.save_for_backward(fired, slope)
            ctx.leak = leak
        return fired.to(current.dtype)

    @staticmethod
    def backward(ctx, grad_spikes):
        fired, slope = ctx.saved_tensors
        grad = grad_spikes * slope  # g_s[t] * sigma'(U[t] - theta), every step at once
        for t in range(grad.shape[0] - 2, -1, -1):
            # the membrane carries g_U[t+1] back through the leak, except where the reset cut it
            grad[t].add_(grad[t + 1].masked_fill(fired[t], 0.0), alpha=ctx.leak)
        return grad, None, None, None


class LeakyIntegrator(torch.autograd.Function):
    """Currents ``[T, B, N]`` -> ``V(T) / T`` of the output population, the leak included in the
    gradient: ``d output / d I[t] = leak**(T - t) / T`` (t = 0 .. T-1)."""

    @staticmethod
    def forward(ctx, current, leak: float):
        membrane = torch.zeros_like(current[0])
        for t in range(current.shape[0]):
            membrane.add_(current[t]).mul_(leak)
        ctx.steps, ctx.leak = current.shape[0], leak
        return membrane / ctx.steps

    @staticmethod
    def backward(ctx, grad_output):
        steps = ctx.steps
        powers = torch.arange(steps, 0, -1, dtype=torch.float64)  # T - t for t = 0 .. T-1
        weights = (ctx.leak ** powers / steps).to(grad_output)
        shape = (steps,) + (1,) * grad_output.dim()
        return weights.reshape(shape) * grad_output.unsqueeze(0), None


def fire_through_time(pop: Population, current: torch.Tensor, surrogate: FastSigmoid) -> torch.Tensor:
    """A firing population's spikes ``[T, B, ...]`` with the surrogate-gradient BPTT."""
    if not pop.neuron.is_default_rule:
        raise ModelError(f"surrogate-gradient BPTT covers the paper's neuron only; {pop.name} has another firing rule")
    return SurrogateRecurrence.apply(current, pop.threshold, pop.leak, surrogate)


def integrate_through_time(pop: Population, current: torch.Tensor) -> torch.Tensor:
    """The output population's ``V(T) / T`` with the leak in the gradient."""
    return LeakyIntegrator.apply(current, pop.leak)
