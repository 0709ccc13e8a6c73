"""What a run cost: per-layer counters, the dense-equivalent work, and an energy estimate.

The engine counts what it actually did: input events drained, synaptic operations (one accumulate
per weight added), neuron updates (neurons brought up to date and tested), spikes emitted. Beside
them stand the work of the same network run densely: the MACs of one clock-driven SNN step times
T, and the MACs of the ANN of the same architecture (one pass), as in the paper's section 5.4.

The energy figures are an *estimate*, with the 45 nm per-operation energies the paper quotes
(Horowitz 2014): 32-bit float MAC 4.6 pJ, AC 0.9 pJ; 32-bit integer MAC 3.2 pJ, AC 0.1 pJ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evsim.engine import kernels
from evsim.events import WindowCounts
from evsim.model.graph import Graph, Population
from evsim.model.neuron import Neuron
from evsim.model.ops import dense_macs

ENERGY_PJ = {
    "fp32": {"mac": 4.6, "ac": 0.9},
    "int32": {"mac": 3.2, "ac": 0.1},
}


def dense_macs_per_step(graph: Graph, population: Population) -> int:
    """Multiply-accumulates one dense step of ``population`` performs (all projections)."""
    return sum(dense_macs(proj, graph.shape_of(proj.source), population.shape) for proj in population.inputs)


@dataclass
class LayerCounts:
    """One layer's counters in a run; ``neuron`` is the layer's own (its kind: ``neuron.kind``)."""

    name: str
    neuron: Neuron
    input_events: int
    synops: int
    neuron_updates: int
    spikes: int
    neurons: int
    dense_macs: int  # clock-driven SNN: MACs per step x T
    ann_macs: int  # the ANN of the same architecture: one pass

    @classmethod
    def from_counters(cls, layer, counters: np.ndarray, timesteps: int) -> "LayerCounts":
        return cls(
            name=layer.name,
            neuron=layer.neuron,
            input_events=int(counters[kernels.C_INPUT_EVENTS]),
            synops=int(counters[kernels.C_SYNOPS]),
            neuron_updates=int(counters[kernels.C_NEURON_UPDATES]),
            spikes=int(counters[kernels.C_SPIKES]),
            neurons=layer.size,
            dense_macs=layer.dense_macs_per_step * timesteps,
            ann_macs=layer.dense_macs_per_step,
        )

    def to_dict(self) -> dict:
        """The counters by name, the neuron as its kind."""
        counts = {key: value for key, value in self.__dict__.items() if key not in ("name", "neuron")}
        return {"name": self.name, "kind": self.neuron.kind, **counts}


@dataclass(repr=False)
class RunResult:
    """One input through the network.

    ``window`` says what the input window read, used and dropped of the sample
    (evsim.events.WindowCounts); ``per_layer`` gives each layer's counters by name.
    """

    output: np.ndarray  # V_out(T) / T, float64
    layers: list[LayerCounts]
    spike_counts: dict[str, np.ndarray] = field(default_factory=dict)
    input_events: int = 0
    window: WindowCounts | None = None

    @property
    def prediction(self) -> int:
        return int(np.argmax(self.output))

    @property
    def per_layer(self) -> dict[str, dict]:
        """Layer name -> its counters (input_events, synops, neuron_updates, spikes, neurons, ...)."""
        return {layer.name: {k: v for k, v in layer.to_dict().items() if k != "name"} for layer in self.layers}

    def __repr__(self) -> str:
        window = ""
        if self.window is not None:
            dropped = ", ".join(f"{n:,} {reason}" for reason, n in self.window.dropped.items())
            window = f", events={self.window.read:,}" + (f" (dropped: {dropped})" if dropped else "")
        return (f"RunResult(prediction={self.prediction}, synops={self.synops:,}, spikes={self.spikes:,}, "
                f"input_events={self.input_events:,}{window}, layers=[{', '.join(l.name for l in self.layers)}])")

    @property
    def synops(self) -> int:
        return sum(layer.synops for layer in self.layers)

    @property
    def spikes(self) -> int:
        return sum(layer.spikes for layer in self.layers if layer.neuron.fires)

    @property
    def dense_macs(self) -> int:
        return sum(layer.dense_macs for layer in self.layers)

    @property
    def ann_macs(self) -> int:
        return sum(layer.ann_macs for layer in self.layers)


def energy_estimate(synops: float, ann_macs: float, dense_macs: float, precision: str = "fp32") -> dict:
    """Estimated energy (pJ) of the event-driven SNN (ACs), the ANN (MACs) and a clock-driven SNN."""
    e = ENERGY_PJ[precision]
    snn = synops * e["ac"]
    ann = ann_macs * e["mac"]
    return {
        "precision": precision,
        "snn_event_driven_pj": snn,
        "ann_pj": ann,
        "snn_clock_driven_pj": dense_macs * e["ac"],
        "ann_over_snn": ann / snn if snn else float("inf"),
        "note": "estimate from operation counts x 45 nm energies (Horowitz 2014), as in the paper's section 5.4",
    }


def energy_estimates(synops: float, ann_macs: float, dense_macs: float) -> dict:
    """:func:`energy_estimate` at every precision of :data:`ENERGY_PJ`, keyed by precision."""
    return {precision: energy_estimate(synops, ann_macs, dense_macs, precision) for precision in ENERGY_PJ}


@dataclass
class Summary:
    """Counters aggregated over many inputs (the figures `evsim run` reports)."""

    samples: int = 0
    correct: int = 0
    labelled: int = 0
    synops: int = 0
    spikes: int = 0
    input_events: int = 0
    dense_macs: int = 0
    ann_macs: int = 0
    layer_synops: dict = field(default_factory=dict)
    layer_spikes: dict = field(default_factory=dict)
    layer_neurons: dict = field(default_factory=dict)

    def add(self, result: RunResult, label: int | None = None) -> None:
        self.samples += 1
        if label is not None:
            self.labelled += 1
            self.correct += int(result.prediction == int(label))
        self.synops += result.synops
        self.spikes += result.spikes
        self.input_events += result.input_events
        self.dense_macs += result.dense_macs
        self.ann_macs += result.ann_macs
        for layer in result.layers:
            self.layer_synops[layer.name] = self.layer_synops.get(layer.name, 0) + layer.synops
            self.layer_spikes[layer.name] = self.layer_spikes.get(layer.name, 0) + layer.spikes
            self.layer_neurons[layer.name] = layer.neurons

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    def per_sample(self, value: float) -> float:
        return value / self.samples if self.samples else 0.0
