"""Augmentation of real event recordings: translation, rotation and scaling, event dropout, time
jitter and stretch.

Small functions over tonic's structured events (x, y, t, p), each taking its random draws from a
``numpy.random.Generator`` so that a training run is reproducible from its seed. tonic has event
dropout (``DropEvent``), time jitter (``TimeJitter``) and stretch (``TimeSkew``), but they draw from
NumPy's global random state, which cannot be seeded per sample; tonic has no translation within the
sensor. There are no flips: a mirrored digit is another symbol (or none), and the saccades of
N-MNIST have a fixed direction pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evsim.errors import InputError


@dataclass(frozen=True)
class EventAugment:
    """The ranges the per-sample draws come from."""

    shift: int = 3  # pixels, each axis: dx, dy uniform in [-shift, shift]
    drop: float = 0.2  # fraction of events dropped: uniform in [0, drop]
    jitter_us: float = 1000.0  # std of the Gaussian added to every timestamp
    stretch: float = 0.1  # time scale uniform in [1 - stretch, 1 + stretch]
    rotate: float = 0.0  # degrees: uniform in [-rotate, rotate] about the sensor's centre (0: off)
    scale: float = 0.0  # size uniform in [1 - scale, 1 + scale] about the sensor's centre (0: off)

    def __post_init__(self):
        if (self.shift < 0 or not 0.0 <= self.drop < 1.0 or self.jitter_us < 0 or not 0.0 <= self.stretch < 1.0
                or not 0.0 <= self.rotate <= 45.0 or not 0.0 <= self.scale < 0.5):
            raise InputError(f"augmentation ranges out of bounds: {self}")


def translate(events: np.ndarray, dx: int, dy: int, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """Events moved by ``(dx, dy)`` pixels; those that leave the sensor ``(W, H, P)`` are dropped."""
    width, height = sensor_size[0], sensor_size[1]
    x = events["x"].astype(np.int64) + dx
    y = events["y"].astype(np.int64) + dy
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    out = events[keep].copy()
    out["x"], out["y"] = x[keep], y[keep]
    return out


def rotate_and_scale(events: np.ndarray, degrees: float, scale: float, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """Events rotated by ``degrees`` (counter-clockwise as seen with y down) and scaled by
    ``scale`` about the centre of the sensor ``(W, H, P)``, each to its nearest pixel; those that
    leave the sensor are dropped."""
    width, height = sensor_size[0], sensor_size[1]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    angle = np.deg2rad(degrees)
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    u = events["x"].astype(np.float64) - cx
    v = events["y"].astype(np.float64) - cy
    x = np.rint(cx + cos * u - sin * v).astype(np.int64)
    y = np.rint(cy + sin * u + cos * v).astype(np.int64)
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    out = events[keep].copy()
    out["x"], out["y"] = x[keep], y[keep]
    return out


def drop_events(events: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Each event kept with probability ``1 - fraction``."""
    return events[rng.random(len(events)) >= fraction]


def jitter_time(events: np.ndarray, std_us: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise on every timestamp (rounded to whole microseconds); events pushed before 0 are
    dropped and the rest re-sorted by time."""
    t = events["t"] + np.rint(rng.normal(0.0, std_us, len(events))).astype(np.int64)
    keep = t >= 0
    out = events[keep].copy()
    out["t"] = t[keep]
    return out[np.argsort(out["t"], kind="stable")]


def stretch_time(events: np.ndarray, factor: float) -> np.ndarray:
    """Timestamps scaled by ``factor`` (a faster or slower saccade); order is kept."""
    out = events.copy()
    out["t"] = np.rint(events["t"] * factor).astype(np.int64)
    return out


def augment(events: np.ndarray, config: EventAugment, rng: np.random.Generator,
            sensor_size: tuple[int, int, int]) -> np.ndarray:
    """One random draw of every augmentation in ``config``."""
    dx, dy = rng.integers(-config.shift, config.shift + 1, 2)
    events = translate(events, int(dx), int(dy), sensor_size)
    if config.rotate > 0 or config.scale > 0:  # no draws when off: earlier runs stay reproducible
        degrees = rng.uniform(-config.rotate, config.rotate)
        events = rotate_and_scale(events, degrees, rng.uniform(1.0 - config.scale, 1.0 + config.scale), sensor_size)
    events = drop_events(events, rng.uniform(0.0, config.drop), rng)
    events = stretch_time(events, rng.uniform(1.0 - config.stretch, 1.0 + config.stretch))
    if config.jitter_us > 0:
        events = jitter_time(events, config.jitter_us, rng)
    return events
