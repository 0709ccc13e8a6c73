"""The neuron specification: the one place where a population's dynamics are defined.

Every consumer reads a :class:`Neuron` instead of switching on a kind string: the step engine and
the asynchronous engine (whether a layer fires, its threshold, leak and reset), and the trainer
(its surrogate gradient, whether dropout applies). Today's dynamics, per time step::

    V += I                              (the summed current of the population's projections)
    if fires and V > threshold:         (strict)
        emit spikes_per_step spikes;    V = reset(V)     ("zero": V = 0)
    V *= leak

- ``lif``: leaky integrate-and-fire, trained with dropout and the leak-corrected surrogate
  ``1 / threshold``.
- ``pool``: the spiking average-pooling neuron: the same dynamics (the paper uses threshold 0.75,
  leak 1) with a plain straight-through surrogate of slope 1, and no dropout.
- ``output``: integrates with its leak and never fires; the network output is ``V(T) / T``.

Adding a variant (a reset rule, a kind, a lower bound) is a change here plus its tests: the
:meth:`Neuron.validate` lists say what the engine and trainer implement, so a model that asks for
anything else is refused when it is loaded, never simulated with the wrong dynamics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evsim.errors import ModelError

NEURON_KINDS = ("lif", "pool", "output")
RESET_RULES = ("zero",)
"""Implemented reset rules; "zero" sets a neuron that fired to 0."""
SPIKES_PER_STEP = (1,)
"""Implemented spike counts per step: a neuron fires at most once per step."""


@dataclass(frozen=True)
class Neuron:
    """One population's neuron model: typed parameters in the spirit of norse's LIFParameters."""

    kind: str = "lif"
    threshold: float = 1.0
    leak: float = 0.99
    reset: str = "zero"
    spikes_per_step: int = 1
    lower_bound: float | None = None  # the membrane is never below this (None: unbounded)

    @property
    def fires(self) -> bool:
        """Whether the population emits spikes (the output integrator only accumulates)."""
        return self.kind != "output"

    @property
    def trained_with_dropout(self) -> bool:
        """Whether the trainer applies its per-batch dropout mask to this population's spikes."""
        return self.kind == "lif"

    def surrogate(self) -> tuple[float, bool]:
        """The trainer's straight-through slope, and whether the leak correction scales it."""
        if self.kind == "lif":
            return 1.0 / self.threshold, True
        return 1.0, False

    def validate(self, where: str = "neuron") -> None:
        """Raise ModelError unless the engine and the trainer implement these dynamics."""
        if self.kind not in NEURON_KINDS:
            raise ModelError(f"{where}: unknown population kind {self.kind!r}")
        if not (0.0 < self.leak <= 1.0) or not math.isfinite(self.threshold) or self.threshold <= 0:
            raise ModelError(f"{where}: need 0 < leak <= 1 and a positive threshold")
        if self.reset not in RESET_RULES:
            raise ModelError(f"{where}: unknown reset rule {self.reset!r} (known: {', '.join(RESET_RULES)})")
        if self.spikes_per_step not in SPIKES_PER_STEP:
            raise ModelError(f"{where}: {self.spikes_per_step} spikes per step is not supported")
        if self.lower_bound is not None:
            raise ModelError(f"{where}: a membrane lower bound is not supported yet")
