"""A dataset split as the engine takes it, one input per sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evsim.datasets.samples import coded_inputs


def sample_inputs(samples, network, seed: int = 0):
    """One input per sample, as the engine takes it: raw events for recordings, Poisson trains
    for images (a generator per sample, seeded by ``(seed, position)``, so that results do not
    depend on the order in which worker threads take samples)."""
    for position in range(len(samples)):
        yield sample_input(samples, position, network.timesteps, seed, position)


def sample_input(samples, local: int, timesteps: int, seed: int, position: int):
    """The input of ``samples``' sample ``local``, which is sample ``position`` of its split (the
    position seeds its Poisson coding, so that a sample is coded the same wherever it runs)."""
    if samples.recordings is not None:
        return samples.events(local)
    return coded_inputs(samples, np.array([local]), timesteps, seed, positions=[position])[:, 0]


@dataclass
class InputChunk:
    """Samples of a split as self-contained data, to run in another process or on another
    machine (it pickles, and needs no data folder there): its inputs are exactly what
    :func:`sample_inputs` gives for the same positions here.

    Recordings travel decoded; static images travel as images and are Poisson-coded where they
    run, with the same per-position generators.
    """

    positions: np.ndarray  # in the split
    seed: int
    events: list[np.ndarray] | None = None  # recordings
    images: object | None = None  # static images: a SampleSet of these samples alone

    @classmethod
    def of(cls, samples, positions, seed: int = 0) -> "InputChunk":
        positions = np.asarray(positions, dtype=np.int64)
        if samples.recordings is not None:
            return cls(positions, seed, events=[samples.events(int(p)) for p in positions])
        return cls(positions, seed, images=samples.take(positions))

    def __len__(self) -> int:
        return len(self.positions)

    def inputs(self, timesteps: int):
        if self.events is not None:
            yield from self.events
            return
        for local, position in enumerate(self.positions):
            yield sample_input(self.images, local, timesteps, self.seed, int(position))
