"""The neuron specification (evsim.model.neuron): what it accepts, and that every consumer reads it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from evsim.engine.network import Network
from evsim.errors import ModelError
from evsim.model.graph import Graph
from evsim.model.neuron import NEURON_KINDS, Neuron
from random_model import random_nmnist_graph, random_nmnist_weights


def test_kinds_and_their_rules():
    assert NEURON_KINDS == ("lif", "pool", "output")
    lif, pool, out = Neuron("lif", 0.5, 0.99), Neuron("pool", 0.75, 1.0), Neuron("output", 1.0, 0.99)
    assert (lif.fires, pool.fires, out.fires) == (True, True, False)
    assert (lif.trained_with_dropout, pool.trained_with_dropout, out.trained_with_dropout) == (True, False, False)
    assert lif.surrogate() == (2.0, True) and pool.surrogate() == (1.0, False)
    assert (lif.reset, lif.spikes_per_step, lif.lower_bound) == ("zero", 1, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lif.threshold = 2.0


@pytest.mark.parametrize("changes, message", [
    ({"kind": "izhikevich"}, "unknown population kind 'izhikevich'"),
    ({"leak": 0.0}, "need 0 < leak <= 1"),
    ({"leak": 1.5}, "need 0 < leak <= 1"),
    ({"threshold": -1.0}, "positive threshold"),
    ({"threshold": float("inf")}, "positive threshold"),
    ({"reset": "exponential"}, "unknown reset rule 'exponential'"),
    ({"spikes_per_step": 0}, "spikes_per_step must be a positive integer"),
    ({"lower_bound": 1.0}, "lower bound must be finite and <= 0"),
])
def test_dynamics_the_engine_does_not_implement_are_refused(changes, message):
    with pytest.raises(ModelError, match=message):
        dataclasses.replace(Neuron(), **changes).validate("c1")
    Neuron().validate()  # the defaults are the trained LIF


def test_a_graph_with_an_unknown_kind_does_not_load():
    data = random_nmnist_graph().to_dict()
    data["populations"][0]["kind"] = "adex"
    with pytest.raises(ModelError, match="c1: unknown population kind 'adex'"):
        Graph.from_dict(data)


def test_populations_and_compiled_layers_carry_the_same_neuron():
    graph = random_nmnist_graph()
    network = Network(graph, random_nmnist_weights())
    for pop, layer in zip(graph.populations, network.layers):
        assert pop.neuron == Neuron(pop.kind, pop.threshold, pop.leak)
        assert layer.neuron == pop.neuron
        # the layer and its counters read the one Neuron: none of its fields is copied beside it
        assert not any(hasattr(layer, name) for name in ("kind", "threshold", "leak", "fires"))
    assert [layer.neuron.fires for layer in network.layers] == [True, True, True, True, False]


def test_the_trainer_reads_the_neuron():
    torch = pytest.importorskip("torch")
    from evsim.training.network import SpikingNetwork, surrogate_of

    graph = random_nmnist_graph()
    for pop in graph.populations[:-1]:
        assert surrogate_of(pop) == pop.neuron.surrogate()
    network = SpikingNetwork(graph, dropout=0.5).train()
    masks = network.dropout_masks(batch=2)
    assert sorted(masks) == sorted(p.name for p in graph.populations if p.neuron.trained_with_dropout)
    assert sorted(masks) == ["c1", "c2", "f1"]
    assert np.isfinite(network(torch.zeros(3, 1, 2, 34, 34)).detach().numpy()).all()
