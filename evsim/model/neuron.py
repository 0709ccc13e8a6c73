"""The neuron specification: the one place where a population's dynamics are defined.

Every consumer reads a :class:`Neuron` instead of switching on a kind string: the step engine and
the asynchronous engine (evsim.engine.kernels), and the trainer (evsim.training.neurons: the
forward, its surrogate gradient, whether dropout applies).

Fields (stable names; they are also the population's keys in the model file's JSON)::

    kind             "lif" | "pool" | "output"
    threshold        theta > 0: one number for the population, or one per neuron (a tuple in
                     the population's (C, H, W) order, flattened)
    leak             lambda, 0 < lambda <= 1 (lambda = 1: integrate-and-fire, no leak)
    reset            "zero" (V <- 0) | "subtract" (V <- V - n * theta)
    spikes_per_step  1: at most one spike per step | m >= 2: up to m | None: unbounded
    lower_bound      None | b <= 0: the membrane never goes below b
    fire_test        ">" (strict, NIR's rule) | ">=" (sinabs, SpikingJelly)

The dynamics, exactly, per time step ``t = 0 .. T-1`` of every neuron (``V = 0`` before step 0,
``I[t]`` the summed current of all the population's projections at step ``t``), in this order::

    1. leak        V <- lambda * V
    2. integrate   V <- V + I[t]
    3. fire        n = the number of spikes the neuron emits at step t:
                     spikes_per_step == 1:   n = 1 if V > theta (">"; V >= theta for ">=") else 0
                     otherwise:              q = V / theta
                                             n = floor(q)      (">=")
                                             n = ceil(q) - 1   (">"; the most n with V > n * theta)
                                             n = min(max(n, 0), spikes_per_step)   (no upper cap: None)
    4. reset       if n > 0:   "zero": V <- 0      "subtract": V <- V - n * theta
    5. clamp       V <- max(V, lower_bound)        (when a lower bound is set)

The output population (kind ``output``) leaks and integrates only (steps 1-2) and never fires;
the network's output is ``lambda * V(T-1) / T``, its membrane leaked to the end of the window.
The defaults (reset to zero, one spike per step, ``>``, no lower bound) are the paper's neuron:
every model written before these variants existed loads and runs exactly as before.

- ``lif``: leaky integrate-and-fire, trained with dropout and the leak-corrected surrogate
  ``1 / threshold`` (per neuron when the threshold is).
- ``pool``: the spiking pooling neuron: the same dynamics (the paper uses threshold 0.75, leak 1)
  with a plain straight-through surrogate of slope 1, and no dropout.
- ``output``: integrates with its leak and never fires.

How the variants map to the peers: sinabs's ``IAF`` is leak 1, reset "subtract",
spikes_per_step None, fire_test ">=", lower bound ``-theta``; snntorch's ``Leaky`` with
``reset_mechanism="subtract"`` is reset "subtract", one spike per step, ``>``.
``sumpool`` projections feeding a ``pool`` population with threshold 1, leak 1, reset "subtract",
``spikes_per_step=None`` and ``>=`` pass every window's (non-negative) spike count on unchanged,
which is how a non-spiking sum-pooling layer is represented.

Why the restrictions: a lower bound above 0 would lift neurons that no event reaches, which an
event-driven engine never visits, so it is refused; the output integrator has no firing rule.

Multi-spike neurons (``n > 1``) emit one event carrying the count ``n`` (the engine's per-event
multiplier, evsim.engine.kernels); its synaptic operations count ``n`` per weight reached, as a
machine delivering ``n`` spikes would perform. Adding a variant is a change here (a field, its
check in :meth:`Neuron.validate`, its rule in the docstring) plus the engine's and trainer's code
that reads it, and its tests; a model that asks for anything this does not accept is refused when
it is loaded, never simulated with other dynamics. A new reset rule is a member of :class:`Reset`
(its code is its position, which the engine's rule row carries: evsim.engine.layers.firing_rule),
its branch in the engine's kernels (evsim.engine.kernels) and in the trainer
(evsim.training.neurons.reset_membrane and reset_keeps): three source files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from evsim.errors import ModelError
from evsim.model.names import Name


class Kind(Name):
    LIF = "lif"
    POOL = "pool"
    OUTPUT = "output"


class Reset(Name):
    """What a neuron that fired does to its membrane."""

    ZERO = "zero"  # V <- 0
    SUBTRACT = "subtract"  # V <- V - n * theta

    @property
    def code(self) -> int:
        """The rule's number in the engine's rule row: its position here (zero 0, subtract 1)."""
        return list(Reset).index(self)

    @property
    def text(self) -> str:
        """The rule in a few words (``evsim info``)."""
        return {Reset.ZERO: "reset to 0", Reset.SUBTRACT: "reset by subtraction"}[self]


class FireTest(Name):
    STRICT = ">"  # NIR, the paper
    INCLUSIVE = ">="  # sinabs, SpikingJelly


NEURON_KINDS = tuple(Kind)
RESET_RULES = tuple(Reset)
FIRE_TESTS = tuple(FireTest)
_NAMED = {"kind": Kind, "reset": Reset, "fire_test": FireTest}


@dataclass(frozen=True)
class Neuron:
    """One population's neuron model: typed parameters in the spirit of norse's LIFParameters."""

    kind: Kind = Kind.LIF
    threshold: float | tuple[float, ...] = 1.0
    leak: float = 0.99
    reset: Reset = Reset.ZERO
    spikes_per_step: int | None = 1
    lower_bound: float | None = None
    fire_test: FireTest = FireTest.STRICT

    def __post_init__(self):
        # a known name becomes its member; an unknown one stays as given, for validate() to refuse
        for key, names in _NAMED.items():
            value = getattr(self, key)
            if isinstance(value, str) and value in names._value2member_map_:
                object.__setattr__(self, key, names(value))

    @property
    def fires(self) -> bool:
        """Whether the population emits spikes (the output integrator only accumulates)."""
        return self.kind != Kind.OUTPUT

    @property
    def trained_with_dropout(self) -> bool:
        """Whether the trainer applies its per-batch dropout mask to this population's spikes."""
        return self.kind == Kind.LIF

    @property
    def per_neuron_threshold(self) -> bool:
        return isinstance(self.threshold, tuple)

    @property
    def single_spike(self) -> bool:
        """At most one spike per step, decided by comparison (the paper's neuron)."""
        return self.spikes_per_step == 1

    @property
    def is_default_rule(self) -> bool:
        """The paper's firing rule with one threshold for the population: the engines' fast path."""
        return (self.reset == Reset.ZERO and self.single_spike and self.lower_bound is None
                and self.fire_test == FireTest.STRICT and not self.per_neuron_threshold)

    @property
    def async_refractory(self) -> bool:
        """Whether the asynchronous engine gives a neuron that fired a refractory period.

        It stands in for the charge a reset-to-zero, one-spike-per-step neuron loses in the rest
        of the step after it fired (evsim.engine.asynchronous). A subtracting or multi-spike
        neuron keeps that charge in step mode, so it gets none.
        """
        return self.reset == Reset.ZERO and self.single_spike

    def thresholds(self, size: int) -> np.ndarray:
        """The threshold of every neuron (float64, ``size`` of them, the population's (C, H, W) order)."""
        if self.per_neuron_threshold:
            return np.asarray(self.threshold, dtype=np.float64)
        return np.full(size, float(self.threshold))

    def surrogate(self) -> tuple[float | np.ndarray, bool]:
        """The trainer's straight-through slope (per neuron with per-neuron thresholds), and
        whether the leak correction scales it."""
        if self.kind == Kind.LIF:
            if self.per_neuron_threshold:
                return 1.0 / np.asarray(self.threshold, dtype=np.float64), True
            return 1.0 / self.threshold, True
        return 1.0, False

    def validate(self, where: str = "neuron", size: int | None = None) -> None:
        """Raise ModelError unless the engine and the trainer implement these dynamics
        (``size``: the population's neuron count, which a per-neuron threshold must match)."""
        if self.kind not in NEURON_KINDS:
            raise ModelError(f"{where}: unknown population kind {str(self.kind)!r}")
        thresholds = self.threshold if self.per_neuron_threshold else (self.threshold,)
        if not (0.0 < self.leak <= 1.0) or not all(_positive(th) for th in thresholds) or not thresholds:
            raise ModelError(f"{where}: need 0 < leak <= 1 and a positive threshold (a number, or a tuple of one per neuron)")
        if self.per_neuron_threshold and size is not None and len(self.threshold) != size:
            raise ModelError(f"{where}: {len(self.threshold)} per-neuron thresholds for {size} neurons")
        if self.reset not in RESET_RULES:
            raise ModelError(f"{where}: unknown reset rule {str(self.reset)!r} (known: {', '.join(RESET_RULES)})")
        if self.fire_test not in FIRE_TESTS:
            raise ModelError(f"{where}: unknown fire test {str(self.fire_test)!r} (known: {', '.join(FIRE_TESTS)})")
        cap = self.spikes_per_step
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise ModelError(f"{where}: spikes_per_step must be a positive integer or None (unbounded), got {cap!r}")
        if self.lower_bound is not None and not (math.isfinite(self.lower_bound) and self.lower_bound <= 0):
            raise ModelError(f"{where}: the membrane lower bound must be finite and <= 0, got {self.lower_bound!r}")
        if not self.fires and (self.reset, cap, self.lower_bound, self.fire_test) != ("zero", 1, None, ">"):
            raise ModelError(f"{where}: the output integrator never fires; reset, spikes_per_step, "
                             "lower_bound and fire_test do not apply to it")

    # ------------------------------------------------------------------------- model file form

    def to_dict(self) -> dict:
        """The fields as JSON values (a per-neuron threshold as a list)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update({key: str(data[key]) for key in _NAMED})  # plain strs: the JSON form holds no enum
        if self.per_neuron_threshold:
            data["threshold"] = list(self.threshold)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Neuron":
        """A Neuron from a population's JSON keys; a missing key takes its default (files
        written before a variant existed)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if "threshold" in values:
            th = values["threshold"]
            values["threshold"] = tuple(float(v) for v in th) if isinstance(th, (list, tuple)) else float(th)
        if "leak" in values:
            values["leak"] = float(values["leak"])
        if values.get("lower_bound") is not None:
            values["lower_bound"] = float(values["lower_bound"])
        for key in ("kind", "reset", "fire_test"):
            if key in values:
                values[key] = str(values[key])
        return cls(**values)


NEURON_FIELDS = tuple(f.name for f in fields(Neuron))
"""The population keys that belong to its neuron (the rest: name, shape, inputs)."""


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
