"""A dense torch model built from an evsim.model.graph.Graph, and the exact dense reference forward.

:class:`SpikingNetwork` runs any Graph clock-driven on dense tensors. Inputs are spike (or event
count) frames ``[T, B, C, H, W]``. :meth:`SpikingNetwork.forward` is layer-major: each
population's currents for all ``T`` steps come from one conv/linear call on a ``[T*B, ...]``
batch, then its membrane recurrence runs in a fused loop (evsim.training.neurons).
:meth:`SpikingNetwork.forward_stepwise` is the straightforward loop over time steps, population by
population; both give the same spikes and the same gradients.

Dropout (Algorithm 1): in training, each LIF population draws one mask per mini-batch, kept for
all ``T`` steps and scaled by ``1 / (1 - p)``, and multiplies its output spikes by it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from evsim.errors import InputError, ModelError
from evsim.model.graph import INPUT, Graph, Population, Projection
from evsim.model.file import check_weights, load_model, save_model
from evsim.training.bptt import FastSigmoid, fire_through_time, integrate_through_time
from evsim.training.neurons import (
    DroppedFiring,
    FiringIntoPool,
    FiringRecurrence,
    LeakAsIdentity,
    OutputIntegrator,
    StepSpike,
    kernels_run,
    leak_correction,
    pools_in_kernels,
    reset_membrane,
)


def dense_projection(proj: Projection, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """What ``proj`` (evsim.model.ops) computes on a batch ``[N, *source_shape]``, densely, with
    its weight ``weight`` (None for the ops without one): the trainer's forward and the bench's
    dense floor (evsim.analysis.bench)."""
    if proj.op == "conv":
        return F.conv2d(x, weight, stride=proj.stride, padding=proj.padding, groups=proj.groups)
    if proj.op == "linear":
        return F.linear(x.flatten(1), weight)
    if proj.op == "avgpool":
        return F.avg_pool2d(x, proj.kernel, proj.stride)
    if proj.op == "sumpool":
        # divisor 1: the window's exact sum, not an average scaled back up
        return F.avg_pool2d(x, proj.kernel, proj.stride, divisor_override=1)
    return x  # identity


def is_residual(graph: Graph) -> bool:
    return any(len(pop.inputs) > 1 for pop in graph.populations)


def init_std(graph: Graph, name: str, shape: tuple[int, ...]) -> float:
    """``sqrt(kappa / fan_in)`` with kappa 2 for plain networks and 1 for residual ones."""
    kappa = 1.0 if is_residual(graph) else 2.0
    return math.sqrt(kappa / math.prod(shape[1:]))


def parameter_count(graph: Graph) -> int:
    return sum(math.prod(shape) for shape in graph.weight_shapes().values())


class SpikingNetwork(nn.Module):
    """The graph's populations as a torch module; weights are ``self.weight(name)``.

    ``bptt``: train with surrogate-gradient BPTT (evsim.training.bptt) instead of the paper's rule;
    the forward is the same.
    """

    def __init__(self, graph: Graph, dropout: float = 0.0, init: bool = True, bptt: FastSigmoid | None = None):
        super().__init__()
        graph.validate()
        if not 0.0 <= dropout < 1.0:
            raise ModelError(f"dropout must lie in [0, 1), got {dropout}")
        self.graph = graph
        self.dropout = dropout
        self.bptt = bptt
        shapes = graph.weight_shapes()
        self.weight_names = tuple(shapes)
        self._index = {name: i for i, name in enumerate(self.weight_names)}
        self._only_pool = only_pools(graph)
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(shapes[n])) for n in self.weight_names)
        if init:
            for name, param in zip(self.weight_names, self.weights):
                nn.init.normal_(param, 0.0, init_std(graph, name, tuple(param.shape)))

    def weight(self, name: str) -> torch.Tensor:
        return self.weights[self._index[name]]

    def named_weights(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.weight_names, self.weights))

    def load_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Copy numpy weights (keyed by the graph's weight names) into the parameters."""
        check_weights(self.graph, weights)
        with torch.no_grad():
            for name, param in zip(self.weight_names, self.weights):
                param.copy_(torch.as_tensor(np.asarray(weights[name])))

    def export_weights(self) -> dict[str, np.ndarray]:
        return {name: p.detach().cpu().numpy().astype(np.float32) for name, p in self.named_weights().items()}

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.weights)

    # ----------------------------------------------------------------------------------- dropout

    def dropout_masks(self, batch: int) -> dict[str, torch.Tensor]:
        """One fresh mask ``[B, *shape]`` per LIF population (empty when dropout is off)."""
        if not self.training or self.dropout == 0.0:
            return {}
        keep = 1.0 - self.dropout
        param = self.weights[0]
        return {
            pop.name: torch.bernoulli(torch.full((batch, *pop.shape), keep, dtype=param.dtype, device=param.device))
            .div_(keep)
            for pop in self.graph.populations
            if pop.neuron.trained_with_dropout
        }

    # ----------------------------------------------------------------------------------- forward

    def _check_inputs(self, inputs: torch.Tensor) -> None:
        if inputs.dim() != 5 or tuple(inputs.shape[2:]) != tuple(self.graph.input_shape):
            raise InputError(
                f"inputs must be [T, B, {', '.join(map(str, self.graph.input_shape))}], got {list(inputs.shape)}"
            )

    def _project(self, proj: Projection, spikes: torch.Tensor) -> torch.Tensor:
        """One projection applied to a batch of source spikes ``[N, *source_shape]``."""
        return dense_projection(proj, spikes, None if proj.weight is None else self.weight(proj.weight))

    def _current(self, pop: Population, spikes: dict[str, torch.Tensor], lead: int) -> torch.Tensor:
        """The summed current of ``pop``'s projections; ``spikes`` values are ``[lead, ...]``."""
        total = None
        for proj in pop.inputs:
            part = self._project(proj, spikes[proj.source])
            total = part if total is None else total + part
        return total.reshape(lead, *pop.shape)

    def forward(self, inputs: torch.Tensor, masks: dict | None = None, record: dict | None = None,
                activity: dict | None = None) -> torch.Tensor:
        """Layer-major forward of inputs ``[T, B, C, H, W]`` -> output ``V_out(T) / T`` ``[B, N]``.

        ``masks`` overrides the dropout masks (else fresh ones are drawn in training); when
        ``record`` is a dict it receives every firing population's spikes ``[T, B, *shape]``; when
        ``activity`` is a dict it receives every firing population's spike counts ``[B, *shape]``
        before dropout, differentiable (for the activity regularisers, evsim.training.regularizers).
        """
        self._check_inputs(inputs)
        steps, batch = inputs.shape[:2]
        masks = self.dropout_masks(batch) if masks is None else masks
        # channels-last convolutions run about 1.7x faster on CPU (oneDNN)
        flat = {INPUT: inputs.reshape(steps * batch, *inputs.shape[2:]).contiguous(memory_format=torch.channels_last)}
        pooled: dict[str, torch.Tensor] = {}  # currents of pools their source's kernels computed
        for pop in self.graph.populations:
            current = pooled.pop(pop.name, None)
            if current is None:
                current = self._current(pop, flat, steps * batch).reshape(steps, batch, *pop.shape)
            if not pop.fires:
                return integrate_through_time(pop, current) if self.bptt else OutputIntegrator.apply(current, pop.leak)
            pool = self._only_pool.get(pop.name) if record is None and not self.bptt and not _UNFUSED.get() else None
            if pool is not None and pools_in_kernels(current):
                surrogate, corrected = surrogate_of(pop)
                pooled[pool.name], counts = FiringIntoPool.apply(current, masks.get(pop.name), pop.threshold, pop.leak,
                                                                 surrogate, corrected, pool.inputs[0].kernel)
                if activity is not None:
                    activity[pop.name] = counts
                continue
            if self.bptt:
                spikes, counts = dropped_and_counted(fire_through_time(pop, current, self.bptt), masks.get(pop.name),
                                                     activity is not None)
            else:
                spikes, counts = fire(pop, current, masks.get(pop.name), activity is not None)
            if activity is not None:
                activity[pop.name] = counts
            if record is not None:
                record[pop.name] = spikes.detach()
            flat[pop.name] = spikes.reshape(steps * batch, *pop.shape)
        raise ModelError("the graph has no output population")

    def forward_stepwise(
        self, inputs: torch.Tensor, masks: dict | None = None, record: dict | None = None
    ) -> torch.Tensor:
        """The same network, one time step at a time (the reference for :meth:`forward`)."""
        if self.bptt:
            raise InputError("the step-by-step forward has the paper's gradient only; BPTT runs the layer-major one")
        self._check_inputs(inputs)
        steps, batch = inputs.shape[:2]
        masks = self.dropout_masks(batch) if masks is None else masks
        pops = self.graph.populations
        membranes = {pop.name: inputs.new_zeros((batch, *pop.shape)) for pop in pops}
        windows = {pop.name: _Window() for pop in pops if pop.fires}
        trains: dict[str, list] = {pop.name: [] for pop in pops if pop.fires}
        for t in range(steps):
            now = {INPUT: inputs[t]}
            for pop in pops:
                v = membranes[pop.name] + self._current(pop, now, batch)
                if not pop.fires:
                    membranes[pop.name] = LeakAsIdentity.apply(v, pop.leak)
                    continue
                neuron = pop.neuron
                if neuron.is_default_rule:
                    spikes = StepSpike.apply(v, pop.threshold, windows[pop.name])
                    fired = spikes.detach()
                    v = v * (1.0 - fired)
                else:
                    threshold = threshold_tensor(pop, v)
                    spikes = StepSpike.apply(v, threshold, windows[pop.name], neuron)
                    fired = spikes.detach()
                    v = reset_membrane(v, fired, fired != 0, threshold, neuron)
                    if neuron.lower_bound is not None:
                        v = torch.clamp(v, min=neuron.lower_bound)
                trains[pop.name].append(fired)
                membranes[pop.name] = LeakAsIdentity.apply(v, pop.leak)
                if pop.name in masks:
                    spikes = spikes * masks[pop.name]
                now[pop.name] = spikes
        for pop in pops:
            if pop.fires:
                train = torch.stack(trains[pop.name])
                windows[pop.name].scale = window_scale(pop, train)
                if record is not None:
                    record[pop.name] = train * masks[pop.name] if pop.name in masks else train
        return membranes[pops[-1].name] / steps


class _Window:
    """The per-neuron gradient scale of one population over the window, set after the last step."""

    scale: torch.Tensor | float = 0.0


def window_scale(pop: Population, spikes: torch.Tensor) -> torch.Tensor | float:
    """``factor * surrogate`` per neuron from the window's spikes ``[T, B, ...]`` (counts)."""
    surrogate, corrected = surrogate_of(pop)
    surrogate = _per_neuron(surrogate, pop, spikes)
    return leak_correction(spikes, pop.leak).mul_(surrogate) if corrected else surrogate


def surrogate_of(pop: Population) -> tuple[float | np.ndarray, bool]:
    """The straight-through slope and whether the leak correction applies (evsim.model.neuron)."""
    return pop.neuron.surrogate()


def threshold_tensor(pop: Population, like: torch.Tensor) -> torch.Tensor | float:
    """The population's threshold: a float, or a tensor of its shape (per-neuron thresholds)
    in ``like``'s dtype and device, as the engine holds them in its precision."""
    return _per_neuron(pop.threshold if not pop.neuron.per_neuron_threshold else np.asarray(pop.threshold), pop, like)


def _per_neuron(value, pop: Population, like: torch.Tensor):
    if isinstance(value, np.ndarray):
        return torch.as_tensor(value.reshape(pop.shape), dtype=like.dtype, device=like.device)
    return value


_UNFUSED = contextvars.ContextVar("unfused", default=False)


@contextlib.contextmanager
def unfused():
    """Within this block the trainer fires with FiringRecurrence and then applies torch's separate
    ``* mask``, ``sum(0)`` and ``avg_pool2d``, as before DroppedFiring and FiringIntoPool folded them
    into the kernels: the same bits, slower (for comparing the two)."""
    token = _UNFUSED.set(True)
    try:
        yield
    finally:
        _UNFUSED.reset(token)


def only_pools(graph: Graph) -> dict[str, Population]:
    """The firing populations of the paper's rule whose spikes feed nothing but one firing average
    pool of stride equal to its kernel, each with that pool: their kernels can pool the spikes
    as they fire them (evsim.training.neurons.FiringIntoPool)."""
    readers: dict[str, list[Population]] = {}
    for pop in graph.populations:
        for proj in pop.inputs:
            readers.setdefault(proj.source, []).append(pop)
    result = {}
    for pop in graph.populations:
        pools = readers.get(pop.name, [])
        if not (pop.fires and pop.neuron.is_default_rule and len(pools) == 1):
            continue
        pool = pools[0]
        proj = pool.inputs[0]
        if pool.fires and len(pool.inputs) == 1 and proj.op == "avgpool" and proj.kernel == proj.stride:
            result[pop.name] = pool
    return result


def fire(pop: Population, current: torch.Tensor, mask: torch.Tensor | None = None,
         count: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A firing population's spikes ``[T, B, ...]`` (counts for multi-spike neurons) from its
    currents, times the dropout ``mask [B, ...]`` (None: none), and with ``count`` its spike counts
    ``[B, ...]`` before the mask (the kernels count anyway), with the paper's gradient
    (evsim.training.neurons)."""
    surrogate, corrected = surrogate_of(pop)
    if pop.neuron.is_default_rule and kernels_run(current) and not _UNFUSED.get():
        return DroppedFiring.apply(current, mask, pop.threshold, pop.leak, surrogate, corrected)
    if pop.neuron.is_default_rule:
        spikes = FiringRecurrence.apply(current, pop.threshold, pop.leak, surrogate, corrected)
    else:
        spikes = FiringRecurrence.apply(current, threshold_tensor(pop, current), pop.leak,
                                        _per_neuron(surrogate, pop, current), corrected, pop.neuron)
    return dropped_and_counted(spikes, mask, count)


def dropped_and_counted(spikes: torch.Tensor, mask: torch.Tensor | None,
                        count: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``spikes [T, B, ...]`` times the dropout ``mask`` (None: none), and with ``count`` their
    counts before it."""
    return (spikes if mask is None else spikes * mask), (spikes.sum(dim=0) if count else None)


def dense_forward(
    graph: Graph,
    weights: dict[str, np.ndarray],
    inputs: np.ndarray,
    dtype: torch.dtype = torch.float64,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The network's exact dense forward (no dropout) on inputs ``[T, B, C, H, W]``.

    Returns the output ``V_out(T) / T`` ``[B, n_out]`` and every firing population's spike count
    per neuron ``[B, *shape]`` (int64), for comparison with the event engine.
    """
    network = SpikingNetwork(graph, init=False).to(dtype)
    network.load_weights(weights)
    network.eval()
    record: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        output = network(torch.as_tensor(np.asarray(inputs)).to(dtype), record=record)
    counts = {name: train.sum(dim=0).round().to(torch.int64).numpy() for name, train in record.items()}
    return output.numpy(), counts


def save_trained(path, network: SpikingNetwork, **meta) -> Path:
    """Export ``network`` as an evsim model file: its graph (timesteps, encoding, meta updated
    with ``meta``) and float32 weights keyed by the graph's weight names."""
    graph = dataclasses.replace(network.graph, meta={**network.graph.meta, **meta})
    return save_model(path, graph, network.export_weights())


def load_trained(path, device: str | torch.device = "cpu") -> SpikingNetwork:
    """A model file as a SpikingNetwork in evaluation mode (float32 on ``device``)."""
    model = load_model(path)
    network = SpikingNetwork(model.graph, init=False)
    network.load_weights(model.weights)
    return network.to(device).eval()
