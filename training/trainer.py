"""Mini-batch spike-based backpropagation (section 3, table 2), checkpoints and evaluation.

Loss: ``E = 0.5 * sum over the batch and the classes of (output - onehot)**2`` (eq. 9), summed
over the mini-batch as in the authors' code, so the paper's learning rates apply unscaled;
reported losses are per sample. Static datasets train with SGD (weight decay 5e-4), N-MNIST with
Adam; the learning rate drops by ``lr_decay`` at each milestone epoch.

Options for sparse, accurate models: an activity penalty on the engine's cost of each sample
(evsim.training.regularizers, added to the loss), augmentation of real event recordings
(evsim.datasets.augment), and a validation split held out of the training data (stratified by
label, the same on every run) on which every epoch is measured and the exported model chosen.
"""

from __future__ import annotations

import ctypes
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evsim.errors import DataError, InputError
from evsim.training.architectures import build
from evsim.training.bptt import FastSigmoid
from evsim.training.checkpoint import Interrupted, initial_weights, kept_after_interruption, load_checkpoint, save_checkpoint
from evsim.training.distributed import Distributed, join
from evsim.datasets.augment import EventAugment
from evsim.datasets.samples import (
    AUGMENT_ON_REQUEST,
    MNIST_SHIFT,
    SIMULATED,
    SampleMix,
    SampleSet,
    coded_inputs,
    default_root,
    epoch_draw,
    load_samples,
    load_training_samples,
    split_validation,
)
from evsim.training.network import SpikingNetwork, save_trained
from evsim.training.prefetch import prefetched
from evsim.training.regularizers import ActivityPenalty, fan_outs, penalty_sum, synops_per_sample

DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}
DEFAULT_MILESTONES = {"sgd": (70, 100, 125), "adam": (40, 80, 120)}
TEST_SEED = 1 << 20  # the test set's Poisson spikes are the same at every epoch
KEEP = ("last", "best-val")
RULES = ("paper", "bptt")


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
    limit: int | tuple[int, int] | None = None  # datasets.samples.subset
    test_limit: int | None = None
    device: str | None = None  # None: cuda when available
    checkpoint: Path | None = None  # None: <out>.checkpoint.pt
    resume: bool = False
    init: Path | None = None  # a model file to start from (fine-tuning) instead of random weights
    penalty: ActivityPenalty = ActivityPenalty()
    val: int = 0  # training samples held out for validation (stratified by label)
    augment: bool = False  # datasets.samples.load_training_samples: real N-MNIST events, MNIST shifts
    rotate: float = 0.0  # with augment on N-MNIST: rotations up to this many degrees (EventAugment.rotate)
    scale: float = 0.0  # with augment on N-MNIST: sizes within 1 +- scale (EventAugment.scale)
    keep: str = "last"  # the exported model: the last epoch's, or the best by validation accuracy
    synops_budget: float | None = None  # with keep="best-val": only epochs whose validation synops per sample fit
    mix_simulated: int = 0  # simulated N-MNIST recordings added to each epoch of real ones, a fresh draw each epoch
    simulated_data: Path | None = None  # the MNIST folder they are simulated from; None: default_root("nmnist-sim")
    distributed: bool = False  # one rank of a DDP process group started by torchrun (evsim.training.distributed)
    rule: str = "paper"  # the gradient: the paper's rule, or "bptt", surrogate-gradient BPTT (evsim.training.bptt)

    def event_augment(self) -> EventAugment:
        """The ranges real N-MNIST recordings are augmented from (with ``augment``)."""
        return EventAugment(rotate=self.rotate, scale=self.scale)

    def resolved(self) -> "TrainConfig":
        optimizer = self.optimizer or ("adam" if SIMULATED.get(self.dataset, self.dataset) == "nmnist" else "sgd")
        if optimizer not in DEFAULT_LR:
            raise InputError(f"unknown optimizer {optimizer!r}; use sgd or adam")
        if self.keep not in KEEP:
            raise InputError(f"unknown --keep {self.keep!r}; choose from {', '.join(KEEP)}")
        if self.keep == "best-val" and not self.val:
            raise InputError("--keep best-val needs a validation split (--val N)")
        if self.synops_budget is not None and (self.keep != "best-val" or self.synops_budget <= 0):
            raise InputError("--synops-budget must be positive and goes with --keep best-val")
        if self.augment and self.dataset not in AUGMENT_ON_REQUEST:
            raise InputError("--augment applies to real N-MNIST recordings and to MNIST (colour images are always "
                             "cropped and flipped)")
        if (self.rotate or self.scale) and not (self.augment and self.dataset == "nmnist"):
            raise InputError("--augment-rotate and --augment-scale widen the augmentation of real N-MNIST "
                             "recordings: use them with --dataset nmnist --augment")
        if self.augment and self.dataset == "nmnist":
            self.event_augment()  # its ranges are checked there
        if self.rule not in RULES:
            raise InputError(f"unknown --rule {self.rule!r}; choose from {', '.join(RULES)}")
        if self.mix_simulated < 0:
            raise InputError(f"--mix-simulated must not be negative, got {self.mix_simulated}")
        if self.simulated_data is not None and not self.mix_simulated:
            raise InputError("--simulated-data names where --mix-simulated N draws from; pass --mix-simulated too")
        if self.mix_simulated and self.dataset != "nmnist":
            raise InputError("--mix-simulated adds simulated recordings to real N-MNIST ones (--dataset nmnist)")
        if self.val < 0:
            raise InputError(f"--val must not be negative, got {self.val}")
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
            simulated_data=(Path(self.simulated_data or default_root("nmnist-sim")) if self.mix_simulated else None),
        )


@dataclass
class EpochResult:
    loss: float  # per sample, the task loss only
    accuracy: float  # fraction correct
    samples: int
    seconds: float
    synops: float = 0.0  # per sample, as the engine counts them (evsim.training.regularizers)
    penalty: float = 0.0  # per sample, the activity penalty's terms
    spikes: dict = dataclasses.field(default_factory=dict)  # per population, per sample
    input_events: float = 0.0  # per sample

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
    penalty: ActivityPenalty = ActivityPenalty(),
    distributed: Distributed | None = None,
    seed: int | None = None,
) -> EpochResult:
    """One pass over ``samples``: training when ``optimizer`` is given (shuffled), else evaluation.

    With ``seed`` every sample is coded by a generator of its own (samples.coded_inputs), the spikes
    evsim run draws for it with the same seed; else the batches draw from ``rng``.

    The loss adds ``penalty``'s terms; the result counts every sample's synops and spikes either way.
    With ``distributed`` this process runs its rank's share of every mini-batch, and the result
    is the whole pass's (evsim.training.distributed).
    """
    training = optimizer is not None
    network.train(training)
    param = network.weights[0]
    order = rng.permutation(len(samples)) if training else np.arange(len(samples))
    forward, rng = _epoch_forward(network, rng, training, stepwise, penalty, distributed)
    fans = fan_outs(network.graph, param.dtype, param.device)
    total_loss, total_penalty, total_synops, total_events, correct, seen = 0.0, 0.0, 0.0, 0.0, 0, 0
    total_spikes: dict[str, float] = {}
    start = time.perf_counter()
    bar = progress_bar(len(samples), description, progress)
    batches = [order[first : first + batch_size] for first in range(0, len(order), batch_size)]
    if distributed is not None:
        batches = [distributed.batch(batch) for batch in batches]
    loaded = prefetched(lambda batch: _batch_frames(samples, batch, timesteps, rng, seed), batches)
    for first, batch, frames in zip(range(0, len(order), batch_size), batches, loaded):
        inputs = torch.from_numpy(frames).to(device=param.device, dtype=param.dtype)
        labels = torch.from_numpy(samples.labels[batch]).to(param.device)
        activity: dict[str, torch.Tensor] = {}
        with torch.set_grad_enabled(training):
            output = forward(inputs, activity=activity) if not stepwise else forward(inputs)
            loss = loss_sum(output, labels)
            synops = synops_per_sample(inputs, activity, fans) if activity else None
            extra = penalty_sum(penalty, synops, activity) if penalty.active else None
        if training:
            optimizer.zero_grad(set_to_none=True)
            objective = loss if extra is None else loss + extra
            if distributed is not None:
                objective = objective * distributed.world  # DDP averages over ranks; the loss is a sum
            objective.backward()
            optimizer.step()
        total_loss += float(loss.detach())
        if extra is not None:
            total_penalty += float(extra.detach())
        if synops is not None:
            total_synops += float(synops.detach().sum())
            total_events += float(inputs.abs().sum())
            for name, counts in activity.items():
                total_spikes[name] = total_spikes.get(name, 0.0) + float(counts.detach().sum())
        correct += int((output.argmax(1) == labels).sum())
        seen += len(batch)
        if bar is not None:
            bar.update(min(batch_size, len(order) - first))
            bar.set_postfix(loss=f"{total_loss / max(seen, 1):.4f}", acc=f"{100 * correct / max(seen, 1):.2f}%", refresh=False)
    if bar is not None:
        bar.close()
    totals = [total_loss, total_penalty, total_synops, total_events, correct, seen]
    if distributed is not None:
        totals, total_spikes = _summed_over_ranks(distributed, totals, total_spikes)
    total_loss, total_penalty, total_synops, total_events, correct, seen = totals
    n = max(seen, 1)
    return EpochResult(total_loss / n, correct / n, seen, time.perf_counter() - start, total_synops / n,
                       total_penalty / n, {name: value / n for name, value in total_spikes.items()}, total_events / n)


def _epoch_forward(network: SpikingNetwork, rng, training: bool, stepwise: bool, penalty: ActivityPenalty,
                   distributed: Distributed | None):
    """The forward an epoch calls (layer-major, step-major, or DDP's) and the generator its ranks
    code their samples with; InputError for the combinations that cannot run."""
    if stepwise and penalty.active:
        raise InputError("the activity penalty needs the layer-major forward")
    forward = network.forward_stepwise if stepwise else network.forward
    if distributed is not None:
        if stepwise:
            raise InputError("distributed training runs the layer-major forward")
        rng = distributed.generator(rng)  # after the shared shuffle: each rank codes its own samples
        if training:
            forward = distributed.model  # DDP's forward arranges the gradients' all-reduce
    return forward, rng


def _batch_frames(samples: SampleSet, batch: np.ndarray, timesteps: int, rng, seed: int | None) -> np.ndarray:
    """A mini-batch's input frames ``[T, B, ...]`` (coded per sample with ``seed``, else from ``rng``)."""
    if len(batch) == 0:  # a last mini-batch smaller than the ranks: this one still joins the all-reduce
        return np.zeros((timesteps, 0, *samples.input_shape), np.float32)
    return (samples.inputs(batch, timesteps, rng) if seed is None
            else coded_inputs(samples, batch, timesteps, seed))


def _summed_over_ranks(distributed: Distributed, totals: list, spikes: dict[str, float]):
    """An epoch's totals (loss, penalty, synops, events, correct, seen) and spikes per layer,
    summed over every rank's share."""
    names = sorted(spikes)
    summed = distributed.sum([*totals, *(spikes[name] for name in names)])
    return [*summed[:4], int(summed[4]), int(summed[5])], dict(zip(names, summed[6:]))


def progress_bar(total: int, description: str, enabled: bool):
    """A bar over ``total`` samples on stderr when ``enabled`` and stderr is a terminal (a log file
    or a pipe gets the epoch lines alone), else None."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="sample", leave=False, dynamic_ncols=True, mininterval=0.5)


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

    Returns the per-epoch history (dicts of losses, accuracies, synops, times). With ``keep``
    "best-val" the exported model is the epoch of the best validation accuracy (fewer validation
    synops break ties); the checkpoint always holds the last epoch.
    """
    config = config.resolved()
    distributed = None
    if config.distributed:
        distributed = join(config.device)
        config = dataclasses.replace(config, device=distributed.device)
        if not distributed.main:  # rank 0 speaks and writes for all
            log, progress = (lambda line: None), False
    finished = False
    try:
        history = _train(config, log, progress, distributed)
        finished = True
        return history
    except KeyboardInterrupt:
        raise Interrupted(kept_after_interruption(config)) from None
    finally:
        if distributed is not None:
            distributed.close(finished)


def _splits(config: TrainConfig):
    """The training, validation (None without ``--val``) and test sets, and the simulated
    recordings mixed into training (None without ``--mix-simulated``)."""
    train_set = load_training_samples(config.dataset, config.data, config.limit, config.augment,
                                      config.event_augment())
    test_set = load_samples(config.dataset, config.data, "test", config.test_limit, encoding=train_set.encoding)
    val_set = None
    if config.val:
        train_set, val_set = split_validation(train_set, config.val)
    for samples in (train_set, test_set):
        if len(samples) == 0:
            hint = " (nmnist-sim leaves out MNIST training digits 1-1000 and test digits 1-100: real recordings show them)" if config.dataset == "nmnist-sim" else ""
            raise DataError(f"the {config.dataset} {samples.split} split here has no samples{hint}", config.data)
    simulated = None
    if config.mix_simulated:  # validation and test stay real recordings only
        simulated = load_samples("nmnist-sim", config.simulated_data, "train", encoding=train_set.encoding)
        if config.mix_simulated > len(simulated):
            raise InputError(f"--mix-simulated {config.mix_simulated} is more than the {len(simulated)} simulated "
                             f"recordings {config.simulated_data} offers")
    return train_set, val_set, test_set, simulated


def _train(config: TrainConfig, log, progress: bool, distributed) -> list[dict]:
    train_set, val_set, test_set, simulated = _splits(config)
    graph = build(config.arch, train_set.input_shape, config.timesteps)
    graph = dataclasses.replace(graph, encoding=train_set.encoding,
                                meta={"arch": config.arch, "dataset": config.dataset})
    penalty = config.penalty.check(graph)
    torch.manual_seed(config.seed)
    network = SpikingNetwork(graph, dropout=config.dropout, bptt=FastSigmoid() if config.rule == "bptt" else None)
    network = network.to(config.device)
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
        if start_epoch >= config.epochs:
            raise InputError(f"the checkpoint already holds {start_epoch} epochs; pass --epochs above {start_epoch} to continue")
        log(f"resumed from {config.checkpoint} after epoch {start_epoch}")
    if distributed is not None:
        distributed.wrap(network)
        log(f"distributed: {distributed.world} ranks ({distributed.backend}), {config.batch_size} samples per "
            f"mini-batch in all, about {config.batch_size // distributed.world} per rank")
    trained = f"{len(train_set)} train" + (f" + {config.mix_simulated} simulated per epoch" if simulated else "")
    split = f"{trained} / {len(val_set)} validation / {len(test_set)} test" if val_set else f"{trained} / {len(test_set)} test"
    log(f"{config.arch} on {config.dataset}: {network.parameter_count:,} weights, T={config.timesteps}, "
        f"{split} samples, {config.optimizer} lr={config.lr} "
        f"milestones={list(config.milestones)}, batch {config.batch_size}, dropout {config.dropout}, "
        f"device {config.device}, {torch.get_num_threads()} threads")
    if penalty.active or config.augment:
        augmentation = train_set.event_augment or (f"shifts of up to {MNIST_SHIFT} pixels" if config.augment else "off")
        log(f"activity penalty {penalty if penalty.active else 'off'}; augmentation {augmentation}")
    budget = f" among those of at most {config.synops_budget:,.0f} validation synops per sample" if config.synops_budget else ""
    log(f"{config.out} will hold the {'best epoch by validation accuracy' + budget if config.keep == 'best-val' else 'last epoch'}; "
        f"{config.checkpoint} the last epoch")
    for epoch in range(start_epoch, config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        rank = 0 if distributed is None else distributed.rank
        torch.manual_seed(config.seed * 1_000_003 + epoch + (rank << 40))  # dropout masks, each rank its own
        epoch_set = train_set if simulated is None else SampleMix(
            (train_set, simulated.take(epoch_draw(len(simulated), config.mix_simulated, epoch, config.seed))))
        fit = run_epoch(network, epoch_set, config.timesteps, config.batch_size,
                        np.random.default_rng([config.seed, epoch]), optimizer, progress,
                        f"epoch {epoch + 1}/{config.epochs}", penalty=penalty, distributed=distributed)
        schedule.step()
        val = evaluate(network, val_set, config.timesteps, config.batch_size, config.seed, progress, penalty, distributed) if val_set else None
        test = evaluate(network, test_set, config.timesteps, config.batch_size, config.seed, progress, penalty, distributed)
        record = {
            "epoch": epoch + 1, "lr": lr,
            # samples trained on this epoch, simulated ones included (the model file's train_samples
            # counts the training split alone)
            "epoch_samples": fit.samples, "train_loss": fit.loss, "train_accuracy": fit.accuracy,
            "train_penalty": fit.penalty, "train_synops": fit.synops,
            "test_loss": test.loss, "test_accuracy": test.accuracy, "test_synops": test.synops,
            "train_seconds": fit.seconds, "test_seconds": test.seconds,
        }
        if val is not None:
            record.update(val_loss=val.loss, val_accuracy=val.accuracy, val_penalty=val.penalty, val_synops=val.synops,
                          val_spikes=val.spikes, val_input_events=val.input_events)
        history.append(record)
        best = max(h["test_accuracy"] for h in history)
        validation = (f"| val loss {val.loss:.4f} acc {100 * val.accuracy:.2f}% synops {val.synops / 1e6:.2f} M "
                      f"penalty {val.penalty:.4f} " if val is not None else "")
        log(f"epoch {epoch + 1}/{config.epochs} lr {lr:.3g}: train loss {fit.loss:.4f} acc {100 * fit.accuracy:.2f}% "
            f"synops {fit.synops / 1e6:.2f} M penalty {fit.penalty:.4f} {validation}"
            f"| test loss {test.loss:.4f} acc {100 * test.accuracy:.2f}% (best {100 * best:.2f}%) "
            f"| {fit.seconds:.0f} s train ({fit.samples_per_second:.1f} samples/s), {test.seconds:.0f} s test")
        if distributed is not None and not distributed.main:
            continue  # rank 0 writes the model and the checkpoint
        _keep(config, network, history, (train_set, val_set, test_set, simulated), val, test, log)
        save_checkpoint(config.checkpoint, network, optimizer, schedule, epoch + 1, history, config)
    return history


def _keep(config: TrainConfig, network, history: list[dict], splits, val, test, log) -> None:
    """Write the model file if this epoch (the last of ``history``) is the one ``--keep`` keeps."""
    train_set, val_set, test_set, simulated = splits
    epoch = history[-1]["epoch"]
    best_epoch = best_by_validation(history, config.synops_budget) if config.keep == "best-val" else None
    none_fits = config.keep == "best-val" and best_epoch is None and epoch == config.epochs
    if config.keep == "last" or best_epoch == epoch or none_fits:
        meta = {"val_accuracy": val.accuracy, "val_samples": len(val_set), "val_synops": val.synops} if val is not None else {}
        if simulated is not None:
            meta["simulated_per_epoch"] = config.mix_simulated
        save_trained(config.out, network, epochs=epoch, accuracy=test.accuracy,
                     test_samples=len(test_set), train_samples=len(train_set), **meta)
        if none_fits:
            log(f"wrote {config.out}: the last epoch, since no epoch met the synops budget")
        elif config.keep == "best-val":
            log(f"wrote {config.out}: epoch {epoch} is the best by validation so far")


def best_by_validation(history: list[dict], synops_budget: float | None = None) -> int | None:
    """The epoch of the highest validation accuracy; of equals, the one with fewer validation synops.
    With a budget, only epochs of at most that many validation synops per sample count (None: none does)."""
    eligible = [h for h in history if synops_budget is None or h["val_synops"] <= synops_budget]
    return max(eligible, key=lambda h: (h["val_accuracy"], -h["val_synops"]))["epoch"] if eligible else None


def evaluate(network: SpikingNetwork, samples: SampleSet, timesteps: int, batch_size: int = 32,
             seed: int = 0, progress: bool = False, penalty: ActivityPenalty = ActivityPenalty(),
             distributed: Distributed | None = None) -> EpochResult:
    """Accuracy, loss, synops and ``penalty``'s terms on ``samples``, with fixed Poisson spikes so
    epochs compare fairly: each sample's own, as evsim run draws them with the same ``seed``
    (split over the ranks with ``distributed``)."""
    with torch.no_grad():
        return run_epoch(network, samples, timesteps, batch_size, np.random.default_rng([seed, TEST_SEED]),
                         progress=progress, description=samples.split, penalty=penalty, distributed=distributed,
                         seed=seed)
