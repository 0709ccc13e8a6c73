"""Closed sets of names as str enums (evsim.model.names), and a Population that holds its Neuron."""

from __future__ import annotations

import dataclasses
import json

import pytest

from evsim.errors import InputError
from evsim.model.graph import Graph, Population, Projection
from evsim.model.names import Mode
from evsim.model.neuron import FireTest, Kind, Neuron, Reset
from evsim.model.ops import Op


def test_members_are_their_strings():
    assert Op.CONV == "conv" and f"{Reset.SUBTRACT}" == "subtract" and str(FireTest.INCLUSIVE) == ">="
    assert {"lif": 1}[Kind.LIF] == 1 and json.dumps([Mode.ASYNC]) == '["async"]'
    assert [reset.code for reset in Reset] == [0, 1]  # the engine's rule row: 0 zero, 1 subtract
    with pytest.raises(InputError, match="unknown mode 'fast'; choose step or async"):
        Mode.of("fast", "mode")


def test_a_population_holds_one_neuron():
    neuron = Neuron("pool", 0.75, 1.0)
    pop = Population("p", shape=(1, 2, 2), inputs=(Projection("input", "avgpool", kernel=2, stride=2),), neuron=neuron)
    assert pop.neuron is neuron and pop.neuron is pop.neuron  # not rebuilt per read
    assert pop.threshold == 0.75 and pop.kind is Kind.POOL  # its fields read through
    assert {f.name for f in dataclasses.fields(Population)} == {"name", "shape", "inputs", "neuron"}
    same = Population("p", "pool", (1, 2, 2), pop.inputs, 0.75, 1.0)  # the fields, in the Neuron's order
    assert same == pop
    changed = dataclasses.replace(pop, reset="subtract")
    assert changed.neuron == dataclasses.replace(neuron, reset=Reset.SUBTRACT) and changed.inputs == pop.inputs
    with pytest.raises(TypeError):
        Population("p", "pool", (1, 2, 2), pop.inputs, 0.75, neuron=neuron)


def test_the_model_file_form_holds_plain_strings():
    graph = Graph((1, 4, 4), (Population("out", "output", (2,), (Projection("input", "linear", "w"),)),), timesteps=2)
    data = graph.to_dict()
    pop = data["populations"][0]
    assert all(type(v) is str for v in (pop["kind"], pop["reset"], pop["fire_test"], pop["inputs"][0]["op"]))
    assert Graph.from_dict(json.loads(json.dumps(data))) == graph
