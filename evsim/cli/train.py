"""``evsim train``: train one of the paper's networks with spike-based backpropagation.

torch is imported only when the command runs, so the engine works without it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from evsim.datasets.samples import DATASETS
from evsim.errors import InputError

ARCHS = ("lenet", "vgg7", "resnet7", "vgg9", "resnet9", "resnet11")


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
    p.add_argument("--arch", required=True, choices=ARCHS)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data", type=Path, help="dataset folder (default: the data root's <dataset>/)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--timesteps", "-T", type=int, required=True, help="simulation steps per sample")
    p.add_argument("--out", type=Path, required=True, help="model file to write (.npz)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, help="learning rate (default: 0.01 for SGD, 0.001 for Adam)")
    p.add_argument("--milestones", type=milestones,
                   help="comma-separated epochs where the lr drops (default: 70,100,125 SGD; 40,80,120 Adam)")
    p.add_argument("--lr-decay", type=float, default=0.2, help="lr factor at each milestone (default 0.2)")
    p.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0, as the authors)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="SGD weight decay (default 5e-4)")
    p.add_argument("--dropout", type=float, default=0.2, help="dropout ratio of LIF populations (default 0.2)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), help="default: adam for nmnist, sgd otherwise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument("--init", type=Path, help="start from this model file's weights (fine-tuning), not random ones")
    p.add_argument("--checkpoint", type=Path, help="checkpoint file (default: <out>.checkpoint.pt)")
    p.add_argument("--limit", type=int, help="train on a fixed random subset of N samples")
    p.add_argument("--test-limit", type=int, help="test on a fixed random subset of N samples")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from evsim.datasets.samples import default_root
    from evsim.training.trainer import TrainConfig, configure_torch, train

    configure_torch(args.threads)
    if not 0.0 <= args.dropout < 1.0:
        raise InputError(f"--dropout must lie in [0, 1), got {args.dropout}")
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
        device=args.device,
        checkpoint=args.checkpoint,
        resume=args.resume,
        init=args.init,
    )
    history = train(config, log=lambda line: print(line, flush=True), progress=not args.no_progress)
    if history:
        best = max(history, key=lambda h: h["test_accuracy"])
        print(f"wrote {args.out}: test accuracy {100 * history[-1]['test_accuracy']:.2f}% after "
              f"epoch {history[-1]['epoch']} (best {100 * best['test_accuracy']:.2f}% at epoch {best['epoch']})")
    return 0
