"""Activity regularisers that price a sample by what it will cost in the event engine.

The cost of a sample is its synaptic-operation count ``S``: every spike of a source (the input
events included) costs its neuron's *fan-out*, the number of weights the engine adds for it
(evsim.engine.kernels counts one synop per weight added)::

    S = sum over sources  sum over neurons  fan_out[neuron] * spikes[neuron]

A convolution's fan-out depends on the position (``C_out`` times the output pixels whose window
covers the neuron: fewer at the borders, with padding and with strides), a pooling neuron reaches
one target per window covering it (one for tiled windows, none in the rows and columns the
windows cut off), a linear one ``N_out``. :func:`fan_outs` reads them from the op table
(evsim.model.ops.fan_out), the facts the engine's counters follow, for every op.

The penalty forms (:class:`ActivityPenalty`), all per sample and summed over the mini-batch like
the task loss:

- ``synops``: ``coef * S``, an L1 penalty on spike counts weighted by fan-out;
- ``target``: ``weight * ((S - S*) / S*)**2`` (Sorbaro et al. 2020, "Optimizing the energy
  consumption of spiking neural networks for neuromorphic applications");
- ``bounds``: ``weight * (max(0, n - N) / N)**2`` for a population's spike count ``n`` over its
  upper bound ``N``;
- ``spike_l1``: ``coef * (all spikes)``, the plain L1 on spike counts.

Spike counts are the neurons' own (before dropout masks): what the deployed network emits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from evsim.errors import InputError
from evsim.model.graph import INPUT, Graph
from evsim.model.ops import fan_out


@dataclass(frozen=True)
class ActivityPenalty:
    """Weights of the activity terms added to the loss (all off by default)."""

    synops: float = 0.0  # per synaptic operation
    target: float | None = None  # S*, synops per sample
    target_weight: float = 1.0
    bounds: tuple[tuple[str, float], ...] = ()  # (population, upper bound on its spikes per sample)
    bound_weight: float = 1.0
    spike_l1: float = 0.0  # per spike

    @property
    def active(self) -> bool:
        return bool(self.synops or self.target is not None or self.bounds or self.spike_l1)

    def check(self, graph: Graph) -> "ActivityPenalty":
        """The penalty, after checking it against ``graph``; an InputError names what is wrong."""
        for name in ("synops", "target_weight", "bound_weight", "spike_l1"):
            if getattr(self, name) < 0:
                raise InputError(f"the {name.replace('_', '-')} weight must not be negative, got {getattr(self, name)}")
        if self.target is not None and self.target <= 0:
            raise InputError(f"--synops-target must be positive, got {self.target}")
        firing = [pop.name for pop in graph.populations if pop.fires]
        for name, bound in self.bounds:
            if name not in firing:
                raise InputError(f"--spike-bound names {name!r}, not a spiking population; choose from {', '.join(firing)}")
            if bound <= 0:
                raise InputError(f"the spike bound of {name} must be positive, got {bound}")
        return self


def parse_bound(text: str) -> tuple[str, float]:
    """``LAYER=N`` -> ``(LAYER, N)``."""
    name, sep, value = text.partition("=")
    try:
        bound = float(value)
    except ValueError:
        bound = None
    if not sep or not name or bound is None:
        raise InputError(f"a spike bound is LAYER=N (e.g. conv1=20000), got {text!r}")
    return name, bound


def fan_outs(graph: Graph, dtype: torch.dtype = torch.float64, device=None) -> dict[str, torch.Tensor]:
    """Synaptic operations one spike of each neuron costs, per source (``INPUT`` included): ``[*shape]``.

    Only sources that feed something appear; the output population feeds nothing.
    """
    result: dict[str, torch.Tensor] = {}
    for pop in graph.populations:
        for proj in pop.inputs:
            fan = torch.as_tensor(fan_out(proj, graph.shape_of(proj.source), pop.shape), dtype=dtype, device=device)
            result[proj.source] = result[proj.source] + fan if proj.source in result else fan
    return result


def synops_per_sample(inputs: torch.Tensor, activity: dict[str, torch.Tensor],
                      fans: dict[str, torch.Tensor]) -> torch.Tensor:
    """``S`` of each sample ``[B]`` from input frames ``[T, B, ...]`` (each unit of ``|count|`` is
    one input event) and spike counts per population ``[B, *shape]`` (``activity``)."""
    total = (inputs.abs().sum(dim=0) * fans[INPUT]).flatten(1).sum(dim=1)
    for name, counts in activity.items():
        if name in fans:
            total = total + (counts * fans[name]).flatten(1).sum(dim=1)
    return total


def penalty_sum(penalty: ActivityPenalty, synops: torch.Tensor, activity: dict[str, torch.Tensor]) -> torch.Tensor:
    """The penalty terms summed over the mini-batch (``synops`` is :func:`synops_per_sample`)."""
    total = synops.new_zeros(())
    if penalty.synops:
        total = total + penalty.synops * synops.sum()
    if penalty.target is not None:
        total = total + penalty.target_weight * ((synops - penalty.target) / penalty.target).pow(2).sum()
    for name, bound in penalty.bounds:
        spikes = activity[name].flatten(1).sum(dim=1)
        total = total + penalty.bound_weight * (torch.relu(spikes - bound) / bound).pow(2).sum()
    if penalty.spike_l1:
        total = total + penalty.spike_l1 * sum(counts.sum() for counts in activity.values())
    return total
