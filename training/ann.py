"""The ANN baseline of the paper's section 5: the same architectures as analog networks.

An :class:`AnalogNetwork` is built from the same :class:`~evsim.model.graph.Graph` as the SNN
(evsim.training.architectures) and holds the same weights under the same names, so that it
converts to an SNN weight for weight (evsim.training.convert). Each firing population becomes
``ReLU(current)``: convolutions and fully connected layers with dropout in training, the pooling
populations average pooling (their ``avgpool`` projection; the ReLU after it is the identity on
non-negative activations), the output population the linear read-out.

No biases, like the SNN graph: a converted bias is a constant current into every neuron at every
step, which the event engine could only pay for at dense cost (evsim.model.graph), and Sengupta
et al. 2019 ("Going deeper in spiking neural networks", Front. Neurosci. 13:95) train the ANNs
they convert without biases for the same reason.

The ANN sees the *expected per-step input* of the SNN's input coding (:func:`analog_inputs`):
for Poisson-coded images the per-step spike probability ``scale * pixel`` (signed), for event
recordings the event counts of the model's window divided by its ``T`` (counts per step of the
model's bin width). A converted SNN then receives, step by step, inputs whose mean is exactly
what the ANN was trained on, which is what rate-based conversion assumes.

Training uses softmax cross-entropy (the usual ANN objective, and that of the ANNs Sengupta et al.
and Rueckauer et al. 2017 convert); the SNN trainer's mean-squared loss, optimisers, schedule and
validation split are otherwise shared (evsim.training.trainer). The exported model file is an
ordinary evsim model whose ``meta["ann"]`` is true: ``evsim eval`` reads it as an ANN, and the
event engine refuses it until it is converted (``evsim convert``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evsim.datasets.samples import SampleSet, augment_images, load_samples, load_training_samples, split_validation
from evsim.errors import DataError, InputError, ModelError
from evsim.model.file import load_model, save_model
from evsim.model.graph import INPUT, Graph
from evsim.training.architectures import build
from evsim.training.network import SpikingNetwork
from evsim.training.checkpoint import initial_weights
from evsim.training.trainer import TEST_SEED, EpochResult, TrainConfig, progress_bar, best_by_validation, make_optimizer

ANN_META = {"ann": True, "activation": "relu", "pooling": "average", "loss": "cross-entropy",
            "input": "expected per-step input of the encoding"}
"""What the model file's meta says of an ANN (``meta["ann"]`` marks it)."""
ANN_OPTIMIZER = "adam"  # default when --optimizer is not given: a few epochs reach the ANN's accuracy


def is_ann(graph: Graph) -> bool:
    """Whether a model file holds an ANN (evsim convert makes an SNN of it)."""
    return bool(graph.meta.get("ann"))


class AnalogNetwork(SpikingNetwork):
    """The graph as a ReLU network: ``forward(x [B, C, H, W]) -> [B, classes]``.

    It shares SpikingNetwork's weights, projections, loading and export; only the forward differs.
    """

    def forward(self, inputs: torch.Tensor, record: dict | None = None) -> torch.Tensor:
        """The output of analog inputs ``[B, C, H, W]``; ``record`` (a dict) receives every
        firing population's activations ``[B, *shape]`` (after dropout, detached)."""
        if inputs.dim() != 4 or tuple(inputs.shape[1:]) != tuple(self.graph.input_shape):
            raise InputError(f"ANN inputs must be [B, {', '.join(map(str, self.graph.input_shape))}], got {list(inputs.shape)}")
        batch = inputs.shape[0]
        activations = {INPUT: inputs}
        for pop in self.graph.populations:
            current = self._current(pop, activations, batch)
            if not pop.fires:
                return current
            value = F.relu(current)
            if self.training and self.dropout and pop.neuron.trained_with_dropout:
                value = F.dropout(value, self.dropout, training=True)
            if record is not None:
                record[pop.name] = value.detach()
            activations[pop.name] = value
        raise ModelError("the graph has no output population")


def analog_inputs(samples: SampleSet, batch: np.ndarray, timesteps: int, rng: np.random.Generator) -> np.ndarray:
    """The ANN's inputs ``[B, C, H, W]`` (float32) for the samples at positions ``batch``: the
    expected per-step input of the SNN's coding of them (module docstring)."""
    if samples.images is not None:
        images = samples.images[batch]
        if samples.augment:
            images = augment_images(samples.dataset, images, rng)
        return images * np.float32(samples.encoding.scale)
    return samples.inputs(batch, timesteps, rng).mean(axis=0, dtype=np.float32)


def load_ann(path, device: str | torch.device = "cpu") -> AnalogNetwork:
    """An ANN model file as an AnalogNetwork in evaluation mode; ModelError if it is not an ANN."""
    model = load_model(path)
    if not is_ann(model.graph):
        raise ModelError("is a spiking network, not an ANN (its meta has no 'ann'; `evsim train --ann` writes ANNs)", path)
    network = AnalogNetwork(model.graph, init=False)
    network.load_weights(model.weights)
    return network.to(device).eval()


def run_ann_epoch(network: AnalogNetwork, samples: SampleSet, timesteps: int, batch_size: int,
                  rng: np.random.Generator, optimizer=None, progress: bool = False, description: str = "") -> EpochResult:
    """One pass over ``samples``: training (shuffled) when ``optimizer`` is given, else evaluation.
    The loss is the mean cross-entropy per sample."""
    training = optimizer is not None
    network.train(training)
    param = network.weights[0]
    order = rng.permutation(len(samples)) if training else np.arange(len(samples))
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    bar = progress_bar(len(samples), description, progress)
    for first in range(0, len(order), batch_size):
        batch = order[first : first + batch_size]
        inputs = torch.from_numpy(analog_inputs(samples, batch, timesteps, rng)).to(device=param.device, dtype=param.dtype)
        labels = torch.from_numpy(samples.labels[batch]).to(param.device)
        with torch.set_grad_enabled(training):
            output = network(inputs)
            loss = F.cross_entropy(output, labels, reduction="sum")
        if training:
            optimizer.zero_grad(set_to_none=True)
            (loss / len(batch)).backward()
            optimizer.step()
        total_loss += float(loss.detach())
        correct += int((output.argmax(1) == labels).sum())
        seen += len(batch)
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{100 * correct / seen:.2f}%", refresh=False)
    if bar is not None:
        bar.close()
    n = max(seen, 1)
    return EpochResult(total_loss / n, correct / n, seen, time.perf_counter() - start)


def evaluate_ann(network: AnalogNetwork, samples: SampleSet, timesteps: int, batch_size: int = 256,
                 seed: int = 0, progress: bool = False) -> EpochResult:
    """Accuracy and cross-entropy of the ANN on ``samples``."""
    with torch.no_grad():
        return run_ann_epoch(network, samples, timesteps, batch_size, np.random.default_rng([seed, TEST_SEED]),
                             progress=progress, description=samples.split)


def train_ann(config: TrainConfig, log=print, progress: bool = True) -> list[dict]:
    """Train the ANN of ``config.arch`` on ``config.dataset`` and export ``config.out`` (an evsim
    model file marked as an ANN) after every epoch, or at the best validation epoch with
    ``keep="best-val"``. Returns the per-epoch history."""
    if config.resume:
        raise InputError("--resume is for spiking training; an ANN trains in minutes: start again")
    if config.penalty.active or config.synops_budget is not None or config.mix_simulated:
        raise InputError("the activity penalties, --synops-budget and --mix-simulated apply to spiking training, "
                         "not to --ann")
    config = dataclasses.replace(config, optimizer=config.optimizer or ANN_OPTIMIZER).resolved()
    train_set = load_training_samples(config.dataset, config.data, config.limit, config.augment)
    test_set = load_samples(config.dataset, config.data, "test", config.test_limit, encoding=train_set.encoding)
    val_set = None
    if config.val:
        train_set, val_set = split_validation(train_set, config.val)
    for samples in (train_set, test_set):
        if len(samples) == 0:
            raise DataError(f"the {config.dataset} {samples.split} split here has no samples", config.data)
    graph = build(config.arch, train_set.input_shape, config.timesteps)
    graph = dataclasses.replace(graph, encoding=train_set.encoding,
                                meta={"arch": config.arch, "dataset": config.dataset, **ANN_META})
    torch.manual_seed(config.seed)
    network = AnalogNetwork(graph, dropout=config.dropout).to(config.device)
    if config.init is not None:
        network.load_weights(initial_weights(config.init, graph).weights)
    optimizer, schedule = make_optimizer(network, config)
    log(f"ANN {config.arch} on {config.dataset}: {network.parameter_count:,} weights, no biases, ReLU, average pooling, "
        f"{len(train_set)} train / {len(val_set) if val_set else 0} validation / {len(test_set)} test samples, "
        f"{config.optimizer} lr={config.lr} milestones={list(config.milestones)}, batch {config.batch_size}, "
        f"dropout {config.dropout}, device {config.device}, {torch.get_num_threads()} threads")
    history: list[dict] = []
    for epoch in range(config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout
        fit = run_ann_epoch(network, train_set, config.timesteps, config.batch_size,
                            np.random.default_rng([config.seed, epoch]), optimizer, progress,
                            f"epoch {epoch + 1}/{config.epochs}")
        schedule.step()
        val = evaluate_ann(network, val_set, config.timesteps, seed=config.seed) if val_set else None
        test = evaluate_ann(network, test_set, config.timesteps, seed=config.seed)
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": fit.loss, "train_accuracy": fit.accuracy,
                  "test_loss": test.loss, "test_accuracy": test.accuracy,
                  "train_seconds": fit.seconds, "test_seconds": test.seconds}
        if val is not None:
            record.update(val_loss=val.loss, val_accuracy=val.accuracy, val_synops=0.0)
        history.append(record)
        validation = f"| val loss {val.loss:.4f} acc {100 * val.accuracy:.2f}% " if val is not None else ""
        log(f"epoch {epoch + 1}/{config.epochs} lr {lr:.3g}: train loss {fit.loss:.4f} acc {100 * fit.accuracy:.2f}% "
            f"{validation}| test loss {test.loss:.4f} acc {100 * test.accuracy:.2f}% | {fit.seconds:.0f} s train")
        if config.keep == "last" or best_by_validation(history) == epoch + 1:
            meta = {"val_accuracy": val.accuracy, "val_samples": len(val_set)} if val is not None else {}
            save_ann(config.out, network, epochs=epoch + 1, accuracy=test.accuracy, test_samples=len(test_set),
                     train_samples=len(train_set), dropout=config.dropout, **meta)
    return history


def save_ann(path, network: AnalogNetwork, **meta) -> Path:
    """Export the ANN as an evsim model file (meta marks it as an ANN)."""
    graph = dataclasses.replace(network.graph, meta={**network.graph.meta, **ANN_META, **meta})
    return save_model(path, graph, network.export_weights())

