"""The network graph shared by the trainer and the event engine.

A network is a list of neuron *populations* in topological order. Each population receives
current from one or more *projections* (synapses from an earlier population, or from the input),
and the currents of all its projections sum into one membrane, which is how a residual block's two
paths meet in its second LIF. A population's dynamics are its :class:`~evsim.model.neuron.Neuron`
(``population.neuron``; kinds ``lif``, ``pool``, ``output``, and the firing variants, all defined
in evsim.model.neuron; a population holds one Neuron, whose fields read through it and are
the population's keys in the model file).

Projection ops: ``conv`` (weight ``[C_out, C_in, K, K]``, stride, padding), ``linear`` (weight
``[N_out, N_in]`` over the source flattened in ``C, H, W`` order), ``avgpool`` (a fixed
``kernel x kernel`` window of weight ``1 / kernel**2``), ``sumpool`` (the same window, weight 1)
and ``identity`` (weight 1, same shape); what each computes and costs is evsim.model.ops.

No projection has a bias. A bias is input to every neuron at every step, which an event-driven
engine can only pay for at dense cost; evsim refuses one (:func:`refuse_bias`, for importers)
rather than simulate it at a cost its counters would hide.

The graph is plain data (JSON in the model file); weights live beside it, keyed by name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from evsim.errors import InputError, ModelError
from evsim.model.encoding import Encoding
from evsim.model.neuron import NEURON_FIELDS, Neuron
from evsim.model.ops import Projection, conv_output_size, output_shape, weight_shape

__all__ = ["INPUT", "Graph", "Population", "Projection", "conv_output_size", "refuse_bias"]

INPUT = "input"


@dataclass(frozen=True, init=False)
class Population:
    """Neurons of one shape, their dynamics (``neuron``) and their input projections.

    ``Population(name, kind, shape, inputs, threshold=..., ...)`` builds the Neuron from its
    fields (positional after ``inputs`` in the Neuron's order); ``Population(name, shape=...,
    inputs=..., neuron=Neuron(...))`` takes one. The neuron's fields read through
    (``population.threshold`` is ``population.neuron.threshold``); they are not stored twice.
    """

    name: str
    shape: tuple[int, ...]
    inputs: tuple[Projection, ...]
    neuron: Neuron

    def __init__(self, name: str, kind: str | None = None, shape: tuple[int, ...] = (),
                 inputs: tuple[Projection, ...] = (), *neuron_args, neuron: Neuron | None = None, **neuron_fields):
        if neuron is None:
            neuron = Neuron(kind or "lif", *neuron_args, **neuron_fields)
        elif neuron_args:
            raise TypeError("give a Population either a Neuron or the neuron's fields in order, not both")
        elif kind is not None or neuron_fields:  # dataclasses.replace(population, threshold=...)
            neuron = dataclasses.replace(neuron, **({"kind": kind} if kind is not None else {}), **neuron_fields)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "inputs", tuple(inputs))
        object.__setattr__(self, "neuron", neuron)

    def __getattr__(self, name: str):
        if name in NEURON_FIELDS:  # only called for what the instance does not hold
            return getattr(self.neuron, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def fires(self) -> bool:
        return self.neuron.fires

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            **self.neuron.to_dict(),
            "shape": list(self.shape),
            "inputs": [p.to_dict() for p in self.inputs],
        }


@dataclass(frozen=True)
class Graph:
    """A network: input shape ``(C, H, W)``, populations in topological order (last = output)."""

    input_shape: tuple[int, int, int]
    populations: tuple[Population, ...]
    timesteps: int
    encoding: Encoding = field(default_factory=Encoding)  # its JSON form (a dict) is taken too
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "encoding", Encoding.of(self.encoding))

    def shape_of(self, name: str) -> tuple[int, ...]:
        if name == INPUT:
            return self.input_shape
        return self.population(name).shape

    def population(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise ModelError(f"no population named {name!r}")

    @property
    def output(self) -> Population:
        return self.populations[-1]

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape each named weight must have, derived from the graph."""
        shapes = {}
        for pop in self.populations:
            for proj in pop.inputs:
                shape = weight_shape(proj, self.shape_of(proj.source), pop.shape)
                if shape is not None:
                    shapes[proj.weight] = shape
        return shapes

    def with_timesteps(self, timesteps: int, asked: str) -> "Graph":
        """The same network run for ``timesteps`` steps of the same width (a recorded window
        scales with them: evsim.model.encoding.Encoding.for_timesteps; ``asked`` starts its error)."""
        if timesteps < 1:
            raise InputError(f"time steps must be positive, got {timesteps}")
        encoding = self.encoding.for_timesteps(timesteps, self.timesteps, asked)
        return dataclasses.replace(self, timesteps=timesteps, encoding=encoding)

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "timesteps": self.timesteps,
            "encoding": self.encoding.to_dict(),
            "meta": dict(self.meta),
            "populations": [p.to_dict() for p in self.populations],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Graph":
        try:
            pops = tuple(
                Population(
                    name=str(p["name"]),
                    shape=tuple(int(s) for s in p["shape"]),
                    neuron=_neuron(p),
                    inputs=tuple(
                        Projection.from_dict(q)
                        for q in p["inputs"]
                    ),
                )
                for p in data["populations"]
            )
            graph = cls(
                input_shape=tuple(int(s) for s in data["input_shape"]),
                populations=pops,
                timesteps=int(data["timesteps"]),
                encoding=Encoding.of(data.get("encoding", {})),
                meta=dict(data.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"malformed graph description: {exc!r}") from None
        graph.validate()
        return graph

    def validate(self) -> None:
        """Check that every shape follows from its inputs; raise ModelError otherwise."""
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ModelError(f"input shape must be (C, H, W) of positive sizes, got {self.input_shape}")
        if self.timesteps < 1:
            raise ModelError(f"timesteps must be positive, got {self.timesteps}")
        if not self.populations:
            raise ModelError("the graph has no populations")
        seen = {INPUT}
        for i, pop in enumerate(self.populations):
            if pop.name in seen:
                raise ModelError(f"duplicate population name {pop.name!r}")
            pop.neuron.validate(pop.name, pop.size)
            if (pop.kind == "output") != (i == len(self.populations) - 1):
                raise ModelError("exactly the last population must be the output integrator")
            if not pop.inputs:
                raise ModelError(f"{pop.name}: a population needs at least one input projection")
            if len(pop.shape) not in (1, 3) or min(pop.shape) < 1:
                raise ModelError(f"{pop.name}: shape must be (N,) or (C, H, W), got {pop.shape}")
            for proj in pop.inputs:
                if proj.source not in seen:
                    raise ModelError(f"{pop.name}: input {proj.source!r} is not an earlier population")
                expected = output_shape(proj, self.shape_of(proj.source), pop.shape, pop.name)
                if expected != pop.shape:
                    raise ModelError(
                        f"{pop.name}: projection {proj.op} from {proj.source} gives shape "
                        f"{expected}, population has {pop.shape}"
                    )
            seen.add(pop.name)


def _neuron(data: dict) -> Neuron:
    """A population's neuron from its JSON: kind, threshold and leak are in every file; the
    variants' keys are absent from files written before them and take their defaults."""
    missing = [key for key in ("kind", "threshold", "leak") if key not in data]
    if missing:
        raise KeyError(missing[0])
    return Neuron.from_dict(data)


def refuse_bias(where: str, bias) -> None:
    """Raise ModelError naming ``where`` if ``bias`` (array-like or None) has a nonzero entry.

    evsim's projections have no bias: a bias is input to every neuron at every step, dense work
    that event-driven simulation exists to avoid, so a model that needs one is refused rather
    than run at a cost the counters would not show. All-zero biases (what some exporters write
    for a layer without one) are accepted.
    """
    if bias is None:
        return
    values = np.asarray(bias, dtype=np.float64)
    if values.size and np.any(values != 0):
        raise ModelError(
            f"{where}: has a nonzero bias; evsim does not simulate biases (a bias is input to every "
            "neuron at every step, which costs dense work event by event): fold it away or retrain without one"
        )
