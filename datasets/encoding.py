"""Poisson rate coding of static images, as in the paper (section 4.1.4) and the authors' code.

At every time step each pixel spikes where ``scale * |intensity|`` exceeds a fresh uniform random
number in ``[0, 1)``, with the sign of the intensity: unipolar for images in ``[0, 1]``, bipolar
for normalised colour images in ``[-1, 1]``. The authors' LeNet script compares ``|pixel| / 2``
(``scale = 0.5``) for MNIST; their CIFAR-10 scripts use ``scale = 1``.

The random numbers come from a numpy ``Generator``, so one seed gives one spike train whether the
trainer or the engine consumes it.
"""

from __future__ import annotations

import numpy as np

MNIST_SCALE = 0.5
COLOUR_SCALE = 1.0


def poisson_spikes(
    images: np.ndarray,
    timesteps: int,
    rng: np.random.Generator | int | None = None,
    scale: float = MNIST_SCALE,
) -> np.ndarray:
    """Spike trains ``[T, *images.shape]`` of int8 in {-1, 0, +1} for images in ``[-1, 1]``."""
    rng = np.random.default_rng(rng)
    images = np.asarray(images, dtype=np.float32)
    magnitude = np.abs(images) * np.float32(scale)
    sign = np.sign(images).astype(np.int8)
    spikes = np.empty((timesteps, *images.shape), dtype=np.int8)
    for step in range(timesteps):
        fired = magnitude > rng.random(images.shape, dtype=np.float32)
        np.multiply(fired, sign, out=spikes[step], casting="unsafe")
    return spikes
