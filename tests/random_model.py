"""A tiny random-weight N-MNIST-shaped model file, so that streaming tests need no trained model.

LeNet-like: conv 3x3 (2 -> 4) on 34x34, 2x2 spiking average pool, conv 3x3 stride 2 (4 -> 8),
a 32-neuron fully connected layer and 10 outputs. Input (2, 34, 34), the N-MNIST event encoding
(300 ms window, T = 100). The weights have a positive mean, scaled so that every layer spikes on
real N-MNIST recordings (about 3 c1 spikes per input event with seed 0) without saturating.
Also used by benchmarks/stream_memory.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evsim.model.graph import Graph, Population, Projection
from evsim.model.file import save_model

ENCODING = {"kind": "events", "window_us": 300_000, "sensor_size": [34, 34, 2]}


def random_nmnist_graph() -> Graph:
    return Graph(
        (2, 34, 34),
        (
            Population("c1", "lif", (4, 34, 34), (Projection("input", "conv", "w1", 3, 1, 1),)),
            Population("p1", "pool", (4, 17, 17), (Projection("c1", "avgpool", kernel=2, stride=2),),
                       threshold=0.75, leak=1.0),
            Population("c2", "lif", (8, 9, 9), (Projection("p1", "conv", "w2", 3, 2, 1),)),
            Population("f1", "lif", (32,), (Projection("c2", "linear", "w3"),)),
            Population("out", "output", (10,), (Projection("f1", "linear", "w4"),)),
        ),
        timesteps=100,
        encoding=dict(ENCODING),
        meta={"dataset": "nmnist", "arch": "random-tiny-lenet"},
    )


def random_nmnist_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.normal(0.10, 0.10, (4, 2, 3, 3)),
        "w2": rng.normal(0.20, 0.20, (8, 4, 3, 3)),
        "w3": rng.normal(0.02, 0.04, (32, 648)),
        "w4": rng.normal(0.0, 0.5, (10, 32)),
    }
    return {name: w.astype(np.float32) for name, w in weights.items()}


def save_random_nmnist_model(path, seed: int = 0) -> Path:
    return save_model(path, random_nmnist_graph(), random_nmnist_weights(seed))
