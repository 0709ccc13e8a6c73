"""A dataset split as the engine takes it, one input per sample."""

from __future__ import annotations

import numpy as np


def sample_inputs(samples, network, seed: int = 0):
    """One input per sample, as the engine takes it: raw events for recordings, Poisson trains
    for images (a generator per sample, seeded by ``(seed, position)``, so that results do not
    depend on the order in which worker threads take samples)."""
    for position in range(len(samples)):
        if samples.recordings is not None:
            yield samples.events(position)
        else:
            rng = np.random.default_rng([seed, position])
            yield samples.inputs(np.array([position]), network.timesteps, rng)[:, 0]
