"""``evsim train``: train one of the paper's networks with spike-based backpropagation.

torch is imported only when the command runs, so the engine works without it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from evsim.cli.common import (
    seed_argument,
    add_device_argument,
    add_force_argument,
    check_output_file,
    add_output_arguments,
    add_threads_argument,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    print_json,
    require_torch,
    sample_range,
    show_progress,
    torch_device,
)
from evsim.datasets.samples import DATASETS
from evsim.errors import InputError


def dropout_ratio(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def milestones(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"milestones are comma-separated epochs, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("milestone epochs must be positive")
    return values


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a spiking network (needs torch)",
        description="Train a network of the paper (tables 4, 5) with spike-based backpropagation and "
        "export it as an evsim model file. A checkpoint is written after every epoch.",
    )
    # checked when the command runs, against evsim.training.architectures (which needs torch)
    p.add_argument("--arch", required=True, metavar="ARCH",
                   help="network architecture of the paper (tables 4, 5): LeNet, VGG7/9 or ResNet7/9/11, "
                        "as lower-case names (lenet, vgg7, ...)")
    p.add_argument("--dataset", required=True, choices=DATASETS, help="dataset to train on")
    p.add_argument("--data", type=Path, help="dataset folder (default: $EVSIM_DATA/<dataset> or ../shared/data/<dataset>; "
                                             "for nmnist otherwise the bundled recordings)")
    p.add_argument("--epochs", type=positive_int, required=True, help="epochs to train")
    p.add_argument("--timesteps", "-T", type=positive_int, required=True, help="simulation steps per sample")
    p.add_argument("--out", type=Path, required=True, help="model file to write (.npz), e.g. runs/my-lenet.npz")
    add_force_argument(p, "model file or its checkpoint")
    p.add_argument("--batch-size", type=positive_int, default=32, help="samples per mini-batch (default 32)")
    p.add_argument("--lr", type=non_negative_float, help="learning rate (default: 0.01 for SGD, 0.001 for Adam)")
    p.add_argument("--milestones", type=milestones,
                   help="comma-separated epochs where the lr drops (default: 70,100,125 SGD; 40,80,120 Adam)")
    p.add_argument("--lr-decay", type=positive_float, default=0.2, help="lr factor at each milestone (default 0.2)")
    p.add_argument("--momentum", type=non_negative_float, default=0.0, help="SGD momentum (default 0, as the authors)")
    p.add_argument("--weight-decay", type=non_negative_float, default=5e-4, help="SGD weight decay (default 5e-4)")
    p.add_argument("--dropout", type=dropout_ratio, default=0.2, help="dropout ratio of LIF populations (default 0.2)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="default: adam for nmnist, sgd otherwise")
    seed_argument(p, "the initial weights, batches and input coding")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint (--out and the checkpoint may exist)")
    p.add_argument("--init", type=Path, help="start from this model file's weights (fine-tuning), not random ones")
    p.add_argument("--rule", choices=("paper", "bptt"), default="paper",
                   help="the gradient: the paper's spike-based rule (default), or surrogate-gradient BPTT as "
                        "snntorch's fast sigmoid (slope 25) through time, for comparison (evsim.training.bptt)")
    p.add_argument("--ann", action="store_true",
                   help="train the ANN of the architecture instead (ReLU, average pooling, dropout, no biases; "
                        "the baseline `evsim convert` turns into an SNN)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint file (default: <out>.checkpoint.pt)")
    p.add_argument("--limit", type=sample_range, help="train on a fixed random subset of N samples; START:STOP takes "
                   "positions START to STOP-1 of the same fixed order (the samples --limit START left out)")
    p.add_argument("--test-limit", type=positive_int, help="test on a fixed random subset of N samples")
    add_threads_argument(p, default=None, what="torch CPU threads")
    add_device_argument(p)
    p.add_argument("--distributed", action="store_true",
                   help="one process of a data-parallel run started by torchrun (DDP: gloo on CPU, NCCL on GPUs): "
                        "torchrun --nproc-per-node N -m evsim.cli train ... --distributed; --batch-size is the "
                        "whole mini-batch, split over the processes; rank 0 logs and writes the files")
    add_output_arguments(p)
    sparse = p.add_argument_group("sparse models", "activity penalties on the engine's cost of a sample, "
                                  "S = synaptic operations per sample as the engine counts them")
    sparse.add_argument("--synops-penalty", type=non_negative_float, default=0.0, metavar="COEF",
                        help="add COEF x S per sample to the loss (L1 on spikes weighted by fan-out)")
    sparse.add_argument("--synops-target", type=positive_float, metavar="S",
                        help="add W x ((S - S*) / S*)^2 per sample (Sorbaro et al. 2020); W is --target-weight")
    sparse.add_argument("--target-weight", type=non_negative_float, default=1.0, help="weight W of --synops-target (default 1)")
    sparse.add_argument("--spike-bound", action="append", default=[], metavar="LAYER=N",
                        help="add W x (max(0, n - N) / N)^2 per sample for the spikes n of LAYER (repeatable)")
    sparse.add_argument("--bound-weight", type=non_negative_float, default=1.0, help="weight W of --spike-bound (default 1)")
    sparse.add_argument("--spike-l1", type=non_negative_float, default=0.0, metavar="COEF",
                        help="add COEF x (all spikes) per sample to the loss")
    sparse.add_argument("--augment", action="store_true",
                        help="augment the training data: real N-MNIST recordings by translation, event dropout, time "
                             "jitter and stretch; MNIST digits by shifts of up to 2 pixels")
    sparse.add_argument("--augment-rotate", type=non_negative_float, default=0.0, metavar="DEG",
                        help="with --augment on N-MNIST: also rotate each recording by up to DEG degrees (default 0)")
    sparse.add_argument("--augment-scale", type=non_negative_float, default=0.0, metavar="FRAC",
                        help="with --augment on N-MNIST: also scale each recording by 1 +- up to FRAC (default 0)")
    sparse.add_argument("--mix-simulated", type=non_negative_int, default=0, metavar="N",
                        help="with --dataset nmnist: add N simulated recordings to each epoch's real ones, a fresh "
                             "draw each epoch (validation and test stay real)")
    sparse.add_argument("--simulated-data", type=Path, metavar="PATH",
                        help="the MNIST folder --mix-simulated simulates from (default: $EVSIM_DATA/mnist)")
    sparse.add_argument("--val", type=non_negative_int, default=0, metavar="N",
                        help="hold out N training samples, stratified by label (the same on every run), for validation")
    sparse.add_argument("--keep", choices=("last", "best-val"), default="last",
                        help="what --out holds: the last epoch (default) or the best by validation accuracy")
    sparse.add_argument("--synops-budget", type=positive_float, default=None, metavar="S",
                        help="with --keep best-val: choose only among epochs of at most S validation synops per "
                             "sample (the last epoch when none fits)")
    p.set_defaults(func=run)


def check_architecture(name: str) -> None:
    from evsim.training.architectures import ARCHITECTURES

    if name not in ARCHITECTURES:
        raise InputError(f"--arch {name!r} is not an architecture of the paper; choose one of {', '.join(ARCHITECTURES)}")


def check_outputs(args) -> None:
    """The model file and its checkpoint, before any work: neither is replaced by surprise."""
    keep = " or --resume to continue its training"
    check_output_file(args.out, ".npz", args.force or args.resume, keep=keep)
    checkpoint = args.checkpoint or Path(f"{args.out}.checkpoint.pt")
    if checkpoint.is_dir():
        raise InputError(f"--checkpoint {checkpoint} is a folder; give the file to write")
    if checkpoint.exists() and not (args.force or args.resume):
        raise InputError(f"the checkpoint {checkpoint} exists; pass --resume to continue its training "
                         "or --force to start again")


def run(args) -> int:
    require_torch("evsim train")
    from evsim.datasets.samples import default_root
    from evsim.training.regularizers import ActivityPenalty, parse_bound
    from evsim.training.trainer import TrainConfig, configure_torch, train

    if args.ann:
        if args.rule != "paper":
            raise InputError("--rule chooses the spiking network's gradient; the ANN (--ann) trains by plain backprop")
        from evsim.training.ann import train_ann as train

    check_architecture(args.arch)
    check_outputs(args)
    configure_torch(args.threads)
    device = torch_device(args.device, "evsim train")
    config = TrainConfig(
        arch=args.arch,
        dataset=args.dataset,
        data=args.data or default_root(args.dataset),
        out=args.out,
        epochs=args.epochs,
        timesteps=args.timesteps,
        batch_size=args.batch_size,
        lr=args.lr,
        milestones=args.milestones,
        lr_decay=args.lr_decay,
        weight_decay=args.weight_decay,
        momentum=args.momentum,
        dropout=args.dropout,
        optimizer=args.optimizer,
        seed=args.seed,
        limit=args.limit,
        test_limit=args.test_limit,
        device=device,
        checkpoint=args.checkpoint,
        resume=args.resume,
        init=args.init,
        penalty=ActivityPenalty(
            synops=args.synops_penalty, target=args.synops_target, target_weight=args.target_weight,
            bounds=tuple(parse_bound(text) for text in args.spike_bound), bound_weight=args.bound_weight,
            spike_l1=args.spike_l1,
        ),
        val=args.val,
        augment=args.augment,
        rotate=args.augment_rotate,
        scale=args.augment_scale,
        mix_simulated=args.mix_simulated,
        simulated_data=args.simulated_data,
        keep=args.keep,
        synops_budget=args.synops_budget,
        distributed=args.distributed,
        rule=args.rule,
    )
    # with --json the epoch lines go to stderr, so that stdout holds the one JSON object
    log_file = sys.stderr if args.json else sys.stdout
    history = train(config, log=lambda line: print(line, file=log_file, flush=True),
                    progress=show_progress(args))
    if args.distributed and int(os.environ["RANK"]) != 0:
        return 0  # rank 0 reports for all
    if args.json:
        print_json({"model": str(args.out), "arch": args.arch, "dataset": args.dataset, "data": str(config.data),
                    "timesteps": args.timesteps, "device": device, "batch": args.batch_size, "epochs": history})
        return 0
    if history and args.keep == "best-val":
        from evsim.training.trainer import best_by_validation

        best = best_by_validation(history, args.synops_budget)
        chosen = history[(best or history[-1]["epoch"]) - 1]
        print(f"wrote {args.out}: epoch {chosen['epoch']}, "
              + ("the best by validation" if best else "the last (none met the synops budget)") + ": val accuracy "
              f"{100 * chosen['val_accuracy']:.2f}%, "
              + ("" if args.ann else f"{chosen['val_synops'] / 1e6:.2f} M synops per sample; ") +
              f"test accuracy {100 * chosen['test_accuracy']:.2f}%")
    elif history:
        best = max(history, key=lambda h: h["test_accuracy"])
        print(f"wrote {args.out}: test accuracy {100 * history[-1]['test_accuracy']:.2f}% after "
              f"epoch {history[-1]['epoch']} (best {100 * best['test_accuracy']:.2f}% at epoch {best['epoch']})")
    return 0
