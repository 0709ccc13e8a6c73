"""The inputs and weights of benchmarks/nir_peer_fixtures.py: three real N-MNIST test recordings
binned into exact float32 event counts, and seeded sparse dyadic weights (``k * 2**-e``, exact in
float32) for each fixture net. Its docstring says what the fixtures are and how to re-run them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "evsim" / "data" / "nmnist" / "Test"
RECORDINGS = ("0/00004.bin", "3/00019.bin", "7/00001.bin")  # first test file of three digits
T = 20
BIN_US = 15_000
SEED = 16


def read_nmnist(path: Path) -> np.ndarray:
    """N-MNIST .bin: 5 bytes per event (x, y, p<<7 | t>>16, t>>8, t); y == 240 marks overflow."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    ev = np.empty(len(raw), dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    ev["x"], ev["y"], ev["p"] = raw[:, 0], raw[:, 1], raw[:, 2] >> 7
    ev["t"] = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return ev[ev["y"] != 240]


def bin_counts(ev: np.ndarray) -> tuple[np.ndarray, int]:
    """Event counts ``[T, 2, 34, 34]`` in bins of BIN_US from the first event, and that event's time."""
    t0 = int(ev["t"][0])
    step = (ev["t"] - t0) // BIN_US
    keep = step < T
    frames = np.zeros((T, 2, 34, 34), dtype=np.float32)
    np.add.at(frames, (step[keep], ev["p"][keep], ev["y"][keep], ev["x"][keep]), 1)
    return frames, t0


def load_inputs() -> tuple[np.ndarray, list[str], list[int]]:
    frames, t0s = zip(*(bin_counts(read_nmnist(DATA / f)) for f in RECORDINGS))
    return np.stack(frames), [f"Test/{f}" for f in RECORDINGS], list(t0s)


# ---------------------------------------------------------------- weights

def dyadic(rng: np.random.Generator, shape, density: float, exp: int, spread: float = 3.0) -> np.ndarray:
    """Sparse integer weights times 2**-exp: exact in float32, so sums are order-independent."""
    k = np.rint(rng.normal(0.0, spread, size=shape)) * (rng.random(shape) < density)
    return (k * 2.0 ** -exp).astype(np.float32)


def lenet_weights(gain_exp: dict[str, int]) -> dict[str, np.ndarray]:
    """One weight set shared by all peers (same seed); ``gain_exp`` shifts each layer by 2**-e."""
    rng = np.random.default_rng(SEED)
    w = {
        "conv1": dyadic(rng, (20, 2, 5, 5), 0.5, 0),
        "conv2": dyadic(rng, (50, 20, 5, 5), 0.25, 0),
        "fc1": dyadic(rng, (200, 1800), 0.1, 0),
        "fc2": dyadic(rng, (10, 200), 0.5, 0),
    }
    return {k: v * np.float32(2.0 ** -gain_exp[k]) for k, v in w.items()}


def sumpool_weights(gain_exp: dict[str, int], bias: bool = True) -> dict[str, np.ndarray]:
    """``bias=False`` (net ``sumpool0``): the same weights with every bias 0, which evsim imports
    (it refuses nonzero biases)."""
    rng = np.random.default_rng(SEED + 1)
    w = {
        "conv1": dyadic(rng, (8, 2, 5, 5), 0.5, 0),
        "conv1.bias": dyadic(rng, (8,), 1.0, 0, 1.0),
        "conv2": dyadic(rng, (16, 8, 3, 3), 0.5, 0),
        "conv2.bias": dyadic(rng, (16,), 1.0, 0, 1.0),
        "fc": dyadic(rng, (10, 144), 0.5, 0),
        "fc.bias": dyadic(rng, (10,), 1.0, 0, 1.0),
    }
    if not bias:
        w = {k: v * 0 if k.endswith(".bias") else v for k, v in w.items()}
    return {k: v * np.float32(2.0 ** -gain_exp[k.split(".")[0]]) for k, v in w.items()}


def depthwise_modules(gain_exp: dict[str, int]) -> dict[str, torch.nn.Module]:
    """Net ``depthwise``: the sumpool0 shape with a depthwise second conv (8 -> 16, groups 8: two
    3x3 filters per channel, weight [16, 1, 3, 3]), no biases, weights shifted by 2**-gain_exp."""
    N = torch.nn
    rng = np.random.default_rng(SEED + 3)
    w = {
        "conv1": dyadic(rng, (8, 2, 5, 5), 0.5, 0),
        "conv2": dyadic(rng, (16, 1, 3, 3), 1.0, 0),
        "fc": dyadic(rng, (10, 144), 0.5, 0),
    }
    m = {"conv1": N.Conv2d(2, 8, 5, stride=2, padding=2, bias=False),
         "conv2": N.Conv2d(8, 16, 3, groups=8, bias=False), "fc": N.Linear(144, 10, bias=False)}
    set_params(m, {k: v * np.float32(2.0 ** -gain_exp[k]) for k, v in w.items()})
    return m


DEPTHWISE_GAIN = {"conv1": 2, "conv2": 1, "fc": 2}


def set_params(modules: dict[str, torch.nn.Module], weights: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name, value in weights.items():
            layer, _, part = name.partition(".")
            getattr(modules[layer], part or "weight").copy_(torch.from_numpy(value))


# Gains (powers of two) chosen so that every population fires a few percent per step on these
# recordings; the peers that scale their input (norse's LIF by dt/tau, SpikingJelly's LIF by 1/tau)
# or pool by sum instead of average get the compensating shift.
LENET_GAIN = {"conv1": 2, "conv2": 3, "fc1": 2, "fc2": 3}
SUMPOOL_GAIN = {"conv1": 2, "conv2": 3, "fc": 3}
SINABS_TAU = 7.5
"""sinabs's LIF and ExpLeak time constant in steps (net ``lif``): leak exp(-1/7.5) = 0.8752, where
an Euler step would give 1 - 1/7.5 = 0.8667."""
