"""ANN-to-SNN conversion: an ANN of evsim.training.ann becomes an ordinary evsim SNN.

Method: Rueckauer et al. 2017, "Conversion of continuous-valued deep networks to efficient
event-driven networks" (Front. Neurosci. 11:682), section 2.3: integrate-and-fire neurons (leak 1)
with reset by subtraction, and *robust* data-based normalisation. For every firing population
``l`` the scale ``lambda_l`` is the ``p``-th percentile of its non-zero ANN activations on
training data (``p = 99.9`` by default, the SNN toolbox's default and the value the paper
recommends; ``p = 100`` is the layer-wise maximum of Diehl et al. 2015). Why this and not
Sengupta et al. 2019's spike-based balancing (the layer-wise maximum of the SNN's own input
current, found by simulating the converted layers one after another): reset by subtraction keeps
the charge above threshold, so a spike count tracks ``activation / lambda`` without Sengupta's
correction for the charge that reset-to-zero loses, and one ANN pass over the calibration data
finds every scale, where spike-based balancing simulates the SNN ``T`` steps once per layer. The
percentile rather than the maximum keeps a few outlier activations from setting thresholds so high
that most neurons fire rarely (Rueckauer et al., fig. 3): the price is that the top 0.1 % saturate
at one spike per step.

The scales enter as thresholds, the weights staying the ANN's where they can: a population whose
inputs come from a source of scale ``lambda_s`` gets threshold ``theta = lambda_l / lambda_s``,
so that its spike rate (spikes per step) approximates ``activation / lambda_l``. This is exactly
Rueckauer's weight normalisation ``W * lambda_s / lambda_l`` with threshold 1 (a spike test and a
subtraction scaled by the same factor). Where a population sums several projections whose
sources have different scales (a residual block's main path and skip), one threshold cannot serve
both: the threshold follows the weightless projection's source (identity, pooling), or the first
projection's, and each weighted projection's weights are scaled by ``lambda_s / lambda_ref``.

The input keeps its coding (Poisson rate coding of images, event counts of recordings): its scale
is 1, because the ANN was trained on the expected per-step input of that very coding
(evsim.training.ann.analog_inputs). The output population integrates with leak 1, and its argmax
at any step is the ANN's for large T.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from evsim.datasets.samples import SampleSet
from evsim.errors import InputError, ModelError
from evsim.model.graph import INPUT, Graph
from evsim.training.ann import AnalogNetwork, analog_inputs, is_ann

DEFAULT_PERCENTILE = 99.9
DEFAULT_CALIBRATION = 1000  # training samples whose activations set the scales
KEPT_VALUES = 4_000_000  # activations kept per population for the percentile (a uniform subsample)
METHOD = "rueckauer2017-robust-normalisation"


@dataclass(frozen=True)
class Conversion:
    """How an ANN is converted: the percentile of the normalisation, the converted model's time
    steps (None: the ANN's), and the calibration data's size, batch and seed."""

    percentile: float = DEFAULT_PERCENTILE
    timesteps: int | None = None
    calibration: int = DEFAULT_CALIBRATION
    batch_size: int = 256
    seed: int = 0

    def check(self) -> "Conversion":
        if not 0.0 < self.percentile <= 100.0:
            raise InputError(f"--percentile must lie in (0, 100], got {self.percentile}")
        if self.timesteps is not None and self.timesteps < 1:
            raise InputError(f"--timesteps must be positive, got {self.timesteps}")
        if self.calibration < 1 or self.batch_size < 1:
            raise InputError("the calibration samples and the batch size must be positive")
        return self


def activation_scales(network: AnalogNetwork, samples: SampleSet, percentile: float = DEFAULT_PERCENTILE,
                      batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """``lambda`` of every firing population: the ``percentile`` of its non-zero ANN activations
    on ``samples`` (the maximum for 100). A population that never activates gets 1."""
    network.eval()
    param = network.weights[0]
    rng = np.random.default_rng([seed, 7])
    batches = range(0, len(samples), batch_size)
    per_batch = max(1, KEPT_VALUES // max(1, len(batches)))
    kept: dict[str, list[np.ndarray]] = {}
    peaks: dict[str, float] = {}
    with torch.no_grad():
        for first in batches:
            batch = np.arange(first, min(first + batch_size, len(samples)))
            inputs = torch.from_numpy(analog_inputs(samples, batch, network.graph.timesteps, rng))
            record: dict[str, torch.Tensor] = {}
            network(inputs.to(device=param.device, dtype=param.dtype), record=record)
            for name, values in record.items():
                active = values[values > 0].double().cpu().numpy()
                peaks[name] = max(peaks.get(name, 0.0), float(active.max()) if active.size else 0.0)
                if active.size > per_batch:  # a uniform subsample keeps the percentile and bounds the memory
                    active = rng.choice(active, per_batch, replace=False)
                kept.setdefault(name, []).append(active)
    scales = {}
    for pop in network.graph.populations:
        if not pop.fires:
            continue
        values = np.concatenate(kept.get(pop.name, [np.empty(0)]))
        if not values.size:
            scales[pop.name] = 1.0
        elif percentile >= 100.0:
            scales[pop.name] = peaks[pop.name]
        else:
            scales[pop.name] = float(np.percentile(values, percentile))
    return scales


def converted(graph: Graph, weights: dict[str, np.ndarray], scales: dict[str, float],
              timesteps: int | None = None, meta: dict | None = None) -> tuple[Graph, dict[str, np.ndarray]]:
    """The SNN of an ANN ``graph`` and ``weights`` given the populations' ``scales`` (module
    docstring): IF neurons (leak 1), reset by subtraction, one spike per step, thresholds
    ``lambda_l / lambda_ref``; ``timesteps`` (None: the ANN's) with the ANN's step width."""
    lam = {INPUT: 1.0, **{k: float(v) for k, v in scales.items()}}
    out_weights = {name: np.asarray(w, dtype=np.float32).copy() for name, w in weights.items()}
    populations = []
    for pop in graph.populations:
        weightless = {lam[p.source] for p in pop.inputs if p.weight is None}
        if len(weightless) > 1:
            raise ModelError(f"{pop.name}: weightless projections from sources of different scales cannot share one threshold")
        reference = weightless.pop() if weightless else lam[pop.inputs[0].source]
        for proj in pop.inputs:
            if proj.weight is not None and lam[proj.source] != reference:
                out_weights[proj.weight] *= np.float32(lam[proj.source] / reference)
        if pop.fires:
            if not lam[pop.name] > 0:
                raise ModelError(f"{pop.name}: scale must be positive, got {lam[pop.name]}")
            pop = dataclasses.replace(pop, threshold=lam[pop.name] / reference, leak=1.0, reset="subtract",
                                      spikes_per_step=1, lower_bound=None, fire_test=">")
        else:
            pop = dataclasses.replace(pop, leak=1.0)
        populations.append(pop)
    snn = dataclasses.replace(graph, populations=tuple(populations),
                              meta={"arch": graph.meta.get("arch"), "dataset": graph.meta.get("dataset"), **(meta or {})})
    if timesteps is not None:
        snn = snn.with_timesteps(timesteps, f"--timesteps {timesteps}")
    snn.validate()
    return snn, out_weights


def convert(network: AnalogNetwork, calibration: SampleSet, conversion: Conversion = Conversion(),
            name: str = "") -> tuple[Graph, dict[str, np.ndarray], dict[str, float]]:
    """Convert a loaded ANN with scales from ``calibration`` (training samples); returns the SNN's
    graph and weights, and the scales."""
    conversion = conversion.check()
    graph = network.graph
    if not is_ann(graph):
        raise ModelError("is not an ANN (its meta has no 'ann'): `evsim train --ann` writes the ANNs that convert")
    if not len(calibration):
        raise InputError("no calibration samples")
    scales = activation_scales(network, calibration, conversion.percentile, conversion.batch_size, conversion.seed)
    meta = {
        "converted_from": name or None,
        "ann_accuracy": graph.meta.get("accuracy"),
        "conversion": {
            "method": METHOD,
            "percentile": conversion.percentile,
            "calibration_samples": len(calibration),
            "calibration_split": calibration.split,
            "scales": scales,
        },
    }
    snn, weights = converted(graph, network.export_weights(), scales, conversion.timesteps, meta)
    return snn, weights, scales
