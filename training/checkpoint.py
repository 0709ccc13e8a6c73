"""What outlives a training run: its checkpoint (saved after every epoch, resumed with ``--resume``),
the model it starts from (``--init``), and what an interruption leaves."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from evsim.errors import ModelError
from evsim.model.file import load_model
from evsim.model.graph import Graph

class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; its message says what was kept and how to go on."""


def kept_after_interruption(config) -> str:
    """Where the epochs that ended before an interruption of the run ``config`` (a TrainConfig) are,
    and how to continue them."""
    try:
        epoch = torch.load(config.checkpoint, map_location="cpu", weights_only=True)["epoch"]
    except Exception:  # none written yet, or unreadable: nothing to continue from
        return "no epoch had ended, so nothing was saved"
    return (f"the checkpoint {config.checkpoint} holds {epoch} of {config.epochs} epochs (and {config.out} the model "
            "so far): run the same command with --resume to continue")


def same_populations(a: Graph, b: Graph) -> bool:
    """Whether two graphs have the same populations and projections, so the same weights fit both."""
    return a.to_dict()["populations"] == b.to_dict()["populations"]


def initial_weights(path, graph: Graph):
    """The model file ``path``, checked to be of the same network as ``graph`` (its weights seed a fine-tuning)."""
    model = load_model(path)
    if not same_populations(model.graph, graph):
        raise ModelError("--init must be a model of the same architecture and input as the one trained", path)
    return model


def save_checkpoint(path: Path, network, optimizer, schedule, epoch: int, history: list, config) -> None:
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
