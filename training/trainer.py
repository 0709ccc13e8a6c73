"""Mini-batch spike-based backpropagation (section 3, table 2), checkpoints and evaluation.

Loss: ``E = 0.5 * sum over the batch and the classes of (output - onehot)**2`` (eq. 9), summed
over the mini-batch as in the authors' code, so the paper's learning rates apply unscaled;
reported losses are per sample. Static datasets train with SGD (weight decay 5e-4), N-MNIST with
Adam; the learning rate drops by ``lr_decay`` at each milestone epoch.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evsim.errors import DataError, InputError, ModelError
from evsim.model.graph import Graph
from evsim.model.file import load_model
from evsim.training.architectures import build
from evsim.datasets.samples import SIMULATED, SampleSet, load_samples
from evsim.training.network import SpikingNetwork, save_trained

DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}
DEFAULT_MILESTONES = {"sgd": (70, 100, 125), "adam": (40, 80, 120)}
TEST_SEED = 1 << 20  # the test set's Poisson spikes are the same at every epoch


@dataclass
class TrainConfig:
    arch: str
    dataset: str
    data: Path
    out: Path
    epochs: int
    timesteps: int
    batch_size: int = 32
    lr: float | None = None  # None: DEFAULT_LR of the optimizer
    milestones: tuple[int, ...] | None = None  # None: DEFAULT_MILESTONES of the optimizer
    lr_decay: float = 0.2
    weight_decay: float = 5e-4
    momentum: float = 0.0
    dropout: float = 0.2
    optimizer: str | None = None  # None: adam for N-MNIST, sgd otherwise
    seed: int = 0
    limit: int | None = None
    test_limit: int | None = None
    device: str | None = None  # None: cuda when available
    checkpoint: Path | None = None  # None: <out>.checkpoint.pt
    resume: bool = False
    init: Path | None = None  # a model file to start from (fine-tuning) instead of random weights

    def resolved(self) -> "TrainConfig":
        optimizer = self.optimizer or ("adam" if SIMULATED.get(self.dataset, self.dataset) == "nmnist" else "sgd")
        if optimizer not in DEFAULT_LR:
            raise InputError(f"unknown optimizer {optimizer!r}; use sgd or adam")
        for name in ("epochs", "timesteps", "batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        return dataclasses.replace(
            self,
            optimizer=optimizer,
            lr=DEFAULT_LR[optimizer] if self.lr is None else self.lr,
            milestones=tuple(DEFAULT_MILESTONES[optimizer] if self.milestones is None else self.milestones),
            device=self.device or ("cuda" if torch.cuda.is_available() else "cpu"),
            checkpoint=Path(self.checkpoint or f"{self.out}.checkpoint.pt"),
        )


@dataclass
class EpochResult:
    loss: float  # per sample
    accuracy: float  # fraction correct
    samples: int
    seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else math.inf


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process instead of handing it back to the OS.

    Layer-major training allocates tensors of 100 MB and more per mini-batch. glibc serves
    anything above 32 MB with a fresh mmap and unmaps it on free, so every mini-batch page-faults
    its working set in again: on one CPU thread that costs more time than the convolutions
    (LeNet, T=50: 2.3 s -> 1.4 s per batch of 32 with this). The process keeps its peak memory.
    Only the train and eval commands call this; it is a no-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def configure_torch(threads: int | None) -> None:
    """How every command that runs the dense model sets torch up: freed memory retained (see
    :func:`retain_freed_memory`) and, when given, ``threads`` CPU threads."""
    retain_freed_memory()
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)


def loss_sum(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum((output - onehot)**2)`` over the batch and the classes."""
    target = torch.nn.functional.one_hot(labels, output.shape[1]).to(output.dtype)
    return 0.5 * (output - target).pow(2).sum()


def run_epoch(
    network: SpikingNetwork,
    samples: SampleSet,
    timesteps: int,
    batch_size: int,
    rng: np.random.Generator,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = False,
    description: str = "",
    stepwise: bool = False,
) -> EpochResult:
    """One pass over ``samples``: training when ``optimizer`` is given (shuffled), else evaluation."""
    training = optimizer is not None
    network.train(training)
    param = network.weights[0]
    order = rng.permutation(len(samples)) if training else np.arange(len(samples))
    forward = network.forward_stepwise if stepwise else network.forward
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    bar = _progress_bar(len(samples), description, progress)
    for first in range(0, len(order), batch_size):
        batch = order[first : first + batch_size]
        frames = torch.from_numpy(samples.inputs(batch, timesteps, rng))
        inputs = frames.to(device=param.device, dtype=param.dtype)
        labels = torch.from_numpy(samples.labels[batch]).to(param.device)
        with torch.set_grad_enabled(training):
            output = forward(inputs)
            loss = loss_sum(output, labels)
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        total_loss += float(loss.detach())
        correct += int((output.argmax(1) == labels).sum())
        seen += len(batch)
        if bar is not None:
            bar.update(len(batch))
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{100 * correct / seen:.2f}%", refresh=False)
    if bar is not None:
        bar.close()
    return EpochResult(total_loss / max(seen, 1), correct / max(seen, 1), seen, time.perf_counter() - start)


def _progress_bar(total: int, description: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=description, unit="sample", leave=False, dynamic_ncols=True,
                mininterval=0.5 if interactive else 60.0)


def make_optimizer(network: SpikingNetwork, config: TrainConfig):
    params = list(network.weights)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=config.lr)
    else:
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                                    weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones),
                                                    gamma=config.lr_decay)
    return optimizer, schedule


def train(config: TrainConfig, log=print, progress: bool = True) -> list[dict]:
    """Train ``config.arch`` on ``config.dataset``; export ``config.out`` and checkpoint each epoch.

    Returns the per-epoch history (dicts of losses, accuracies, times).
    """
    config = config.resolved()
    train_set = load_samples(config.dataset, config.data, "train", config.limit, augment=config.dataset in ("cifar10", "svhn"))
    test_set = load_samples(config.dataset, config.data, "test", config.test_limit, encoding=train_set.encoding)
    for samples in (train_set, test_set):
        if len(samples) == 0:
            hint = " (nmnist-sim leaves out MNIST training digits 1-1000 and test digits 1-100: real recordings show them)" if config.dataset == "nmnist-sim" else ""
            raise DataError(config.data, f"the {config.dataset} {samples.split} split here has no samples{hint}")
    graph = build(config.arch, train_set.input_shape, config.timesteps)
    graph = dataclasses.replace(graph, encoding=train_set.encoding,
                                meta={"arch": config.arch, "dataset": config.dataset})
    torch.manual_seed(config.seed)
    network = SpikingNetwork(graph, dropout=config.dropout).to(config.device)
    if config.init is not None:
        start = initial_weights(config.init, graph)
        graph.meta.update(init=Path(config.init).name, pretrained_on=start.graph.meta.get("dataset"))
        if not config.resume:
            network.load_weights(start.weights)
            log(f"starting from the weights of {config.init} (trained on {start.graph.meta.get('dataset')})")
    optimizer, schedule = make_optimizer(network, config)
    history: list[dict] = []
    start_epoch = 0
    if config.resume:
        start_epoch, history = load_checkpoint(config.checkpoint, network, optimizer, schedule, graph)
        log(f"resumed from {config.checkpoint} after epoch {start_epoch}")
    log(f"{config.arch} on {config.dataset}: {network.parameter_count:,} weights, T={config.timesteps}, "
        f"{len(train_set)} train / {len(test_set)} test samples, {config.optimizer} lr={config.lr} "
        f"milestones={list(config.milestones)}, batch {config.batch_size}, dropout {config.dropout}, "
        f"device {config.device}, {torch.get_num_threads()} threads")
    for epoch in range(start_epoch, config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        torch.manual_seed(config.seed * 1_000_003 + epoch)  # dropout masks
        fit = run_epoch(network, train_set, config.timesteps, config.batch_size,
                        np.random.default_rng([config.seed, epoch]), optimizer, progress,
                        f"epoch {epoch + 1}/{config.epochs}")
        schedule.step()
        test = evaluate(network, test_set, config.timesteps, config.batch_size, config.seed, progress)
        record = {
            "epoch": epoch + 1, "lr": lr,
            "train_loss": fit.loss, "train_accuracy": fit.accuracy,
            "test_loss": test.loss, "test_accuracy": test.accuracy,
            "train_seconds": fit.seconds, "test_seconds": test.seconds,
        }
        history.append(record)
        best = max(h["test_accuracy"] for h in history)
        log(f"epoch {epoch + 1}/{config.epochs} lr {lr:.3g}: train loss {fit.loss:.4f} acc {100 * fit.accuracy:.2f}% "
            f"| test loss {test.loss:.4f} acc {100 * test.accuracy:.2f}% (best {100 * best:.2f}%) "
            f"| {fit.seconds:.0f} s train ({fit.samples_per_second:.1f} samples/s), {test.seconds:.0f} s test")
        save_trained(config.out, network, epochs=epoch + 1, accuracy=test.accuracy,
                     test_samples=len(test_set), train_samples=len(train_set))
        save_checkpoint(config.checkpoint, network, optimizer, schedule, epoch + 1, history, config)
    return history


def same_populations(a: Graph, b: Graph) -> bool:
    """Whether two graphs have the same populations and projections, so the same weights fit both."""
    return a.to_dict()["populations"] == b.to_dict()["populations"]


def initial_weights(path, graph: Graph):
    """The model file ``path``, checked to be of the same network as ``graph`` (its weights seed a fine-tuning)."""
    model = load_model(path)
    if not same_populations(model.graph, graph):
        raise ModelError("--init must be a model of the same architecture and input as the one trained", path)
    return model


def evaluate(network: SpikingNetwork, samples: SampleSet, timesteps: int, batch_size: int = 32,
             seed: int = 0, progress: bool = False) -> EpochResult:
    """Accuracy and loss on ``samples``, with a fixed Poisson seed so epochs compare fairly."""
    with torch.no_grad():
        return run_epoch(network, samples, timesteps, batch_size, np.random.default_rng([seed, TEST_SEED]),
                         progress=progress, description="test")


def save_checkpoint(path: Path, network, optimizer, schedule, epoch: int, history: list, config: TrainConfig) -> None:
    state = {
        "epoch": epoch,
        "graph": network.graph.to_dict(),
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "history": history,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # a crash mid-write never leaves a truncated checkpoint


def load_checkpoint(path: Path, network, optimizer, schedule, graph: Graph) -> tuple[int, list]:
    if not path.is_file():
        raise ModelError("no checkpoint to resume from", path)
    try:
        state = torch.load(path, map_location=network.weights[0].device, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise ModelError(f"not a readable checkpoint ({exc})", path) from None
    saved = Graph.from_dict(state["graph"])
    if not same_populations(saved, graph) or saved.timesteps != graph.timesteps:
        raise ModelError("the checkpoint is of another network or time-step count than these options", path)
    network.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(state["epoch"]), list(state["history"])
