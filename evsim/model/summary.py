"""A model at a glance: one line per population with its shape, inputs and neuron rule."""

from __future__ import annotations

import math

from evsim.model.graph import Graph, Population
from evsim.model.neuron import Neuron
from evsim.model import ops


def neuron_rule(neuron: Neuron) -> str:
    """The per-step rule of a population in a few words (evsim.model.neuron's fields)."""
    leak = "no leak (IF)" if neuron.leak == 1 else f"leak {neuron.leak:.6g}"
    if not neuron.fires:
        return f"integrates, never fires; {leak}"
    if neuron.per_neuron_threshold:
        values = neuron.threshold
        theta = f"per-neuron thresholds {min(values):.6g}..{max(values):.6g}"
    else:
        theta = f"threshold {neuron.threshold:.6g}"
    if neuron.single_spike:
        spikes = f"one spike if v {neuron.fire_test} th"
    else:
        cap = "" if neuron.spikes_per_step is None else f" (at most {neuron.spikes_per_step})"
        spikes = f"{'floor(v/th)' if neuron.fire_test == '>=' else 'ceil(v/th)-1'} spikes{cap}"
    parts = [f"{theta}, {spikes}", neuron.reset.text, leak]
    if neuron.lower_bound is not None:
        parts.append(f"membrane >= {neuron.lower_bound:.6g}")
    return "; ".join(parts)


def projection_text(pop: Population) -> str:
    return " + ".join(ops.describe(proj) for proj in pop.inputs)


def analog_rule(pop: Population) -> str:
    """What a population of an ANN (``meta["ann"]``, written by ``evsim train --ann``) computes:
    its neuron fields are placeholders the ANN never uses."""
    if not pop.neuron.fires:
        return "linear read-out (ANN)"
    if all(proj.op in ops.POOLING for proj in pop.inputs):
        return "pooling, no activation (ANN)"
    return "ReLU (ANN)"


def describe(graph: Graph) -> list[str]:
    """The model's input, encoding and one line per population (name, kind, shape, inputs, rule)."""
    window = graph.encoding.window_us
    binning = f", bins of {window // graph.timesteps} µs" if window else ""
    ann = bool(graph.meta.get("ann"))
    if ann:
        lines = [f"ANN on input {list(graph.input_shape)} (the expected input of {graph.timesteps} steps{binning}); "
                 "not spiking: `evsim convert` makes an SNN of it"]
    else:
        lines = [f"input {list(graph.input_shape)}, {graph.timesteps} steps{binning}"]
    width = max(len(p.name) for p in graph.populations)
    for pop in graph.populations:
        rule = analog_rule(pop) if ann else neuron_rule(pop.neuron)
        kind = ("relu" if pop.kind == "lif" else pop.kind) if ann else pop.kind  # an ANN's units do not spike
        lines.append(f"{pop.name:<{width}}  {kind:<6} {str(list(pop.shape)):<14} {projection_text(pop)}; {rule}")
    return lines


def neuron_count(graph: Graph) -> int:
    return sum(math.prod(p.shape) for p in graph.populations)
