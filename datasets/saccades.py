"""Simulated N-MNIST: DVS events from static MNIST digits moved along N-MNIST's three saccades.

N-MNIST was recorded by an ATIS camera on a pan-tilt unit that made three saccades in front of
an LCD showing each MNIST digit (Orchard et al., Front. Neurosci. 9:437, 2015). This module does
the same in software, so that a network can be pretrained on all of MNIST when only a few real
recordings exist:

1. **Optics and motion.** The digit (28x28, intensities in [0, 1]) is blurred by a Gaussian of
   ``blur_px`` (lens and display), placed on a display whose black is ``dark_level`` of its
   white, and shifted with sub-pixel (bilinear) accuracy along the saccade path onto the 34x34
   sensor, every ``step_us`` µs. :data:`NMNIST_PATH` is the path the real recordings show.
2. **Pixels.** Each pixel keeps a reference log intensity. When the log intensity moves more than
   the pixel's contrast threshold away from it, the pixel emits one event (up or down) and
   moves its reference one threshold towards the new value. Thresholds vary from pixel to pixel
   (``threshold_mismatch``, relative standard deviation). After an event a pixel is blind for
   ``refractory_us``; a large change is thus spread over several events in time, as on a real
   sensor. An event's timestamp falls uniformly inside the step in which the crossing happened.
3. **Noise.** Background-activity events, Poisson in time at ``noise_hz`` per pixel, random
   polarity.
4. **Polarity bit.** The real N-MNIST files set the polarity bit (``p = 1``) where this model
   sees the bright digit's edges *darken* (:data:`DARKENING_BIT`): the simulated and real event
   frames of the same digit correlate at 0.45 with that labelling and at -0.03 with the other
   (``benchmarks/simulator_validation.py``). Whether the display showed the digit dark on light
   or the sensor labels darkening as 1 cannot be told apart from the events; the labelling is
   what a network trained on simulated recordings must see to run on real ones.

Every draw comes from ``numpy.random.default_rng([seed, mnist_index])``, so one digit always
gives the same recording, whichever batch or order it is simulated in.

:class:`SimulatedNMNIST` serves a split as ``(events, label)`` pairs, like
:class:`evsim.datasets.nmnist.NMNIST`. By default it leaves out the MNIST digits that real
N-MNIST recordings of this project show (training images 1-1000, test images 1-100), so no real
recording's digit is ever seen in simulation. ``benchmarks/simulator_validation.py`` compares the
simulation with the real recordings of the same digits (event counts, rate profile over the three
saccades, ON/OFF balance, event centroid path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from evsim.events import EVENT_DTYPE, make_events
from evsim.datasets.nmnist import SENSOR_SIZE
from evsim.errors import InputError, require

IMAGE_SIDE = 28
SENSOR_SIDE = SENSOR_SIZE[0]
DARKENING_BIT = 1
"""The polarity bit of an event where the log intensity fell (see the module notes, point 4)."""
RECORDED_DIGITS = {"train": 1000, "test": 100}
"""MNIST images whose real N-MNIST recordings exist here (the first N of each split)."""


@dataclass(frozen=True)
class AxisMove:
    """One smooth move of the image along one sensor axis: from ``start`` to ``end`` pixels of
    offset between ``t0_us`` and ``t1_us``, with a raised-cosine velocity profile."""

    t0_us: float
    t1_us: float
    start: float
    end: float


@dataclass(frozen=True)
class SaccadePath:
    """Where the image's top-left corner lies on the sensor over time: per-axis moves, in order.

    Between and after moves an axis rests where its last move ended; before the first it rests
    at that move's start.
    """

    x: tuple[AxisMove, ...]
    y: tuple[AxisMove, ...]

    def offsets(self, t_us: np.ndarray) -> np.ndarray:
        """``[len(t_us), 2]`` offsets ``(dx, dy)`` in pixels at the times ``t_us``."""
        return np.stack([self._axis(self.x, t_us), self._axis(self.y, t_us)], axis=1)

    def _axis(self, moves: tuple[AxisMove, ...], t_us: np.ndarray) -> np.ndarray:
        position = np.full(len(t_us), moves[0].start, dtype=np.float64)
        for move in moves:
            u = np.clip((t_us - move.t0_us) / (move.t1_us - move.t0_us), 0.0, 1.0)
            inside = t_us >= move.t0_us
            position[inside] = move.start + (move.end - move.start) * 0.5 * (1.0 - np.cos(np.pi * u[inside]))
        return position


NMNIST_PATH = SaccadePath(
    x=(AxisMove(35_000, 85_000, 0.3, 2.7), AxisMove(105_000, 185_000, 2.7, 6.0),
       AxisMove(220_000, 288_000, 6.0, 1.4)),
    y=(AxisMove(5_000, 75_000, 2.0, 6.2), AxisMove(115_000, 180_000, 6.2, 1.3)),
)
"""The three saccades as the real recordings show them: the median path of the event centroid
relative to the digit's intensity centroid over the real training recordings, and the timing of
their three event-rate bursts (both drawn, real against simulated, by
``python benchmarks/simulator_validation.py``). Saccade 1 (about 5-85 ms) moves down then right,
saccade 2 (105-185 ms) right and up, saccade 3 (220-290 ms) left; the pan and tilt axes do not
move in step."""


@dataclass(frozen=True)
class DvsParams:
    """Sensor and display parameters of the simulation (defaults fitted to real N-MNIST)."""

    contrast_threshold: float = 0.45  # log-intensity change per event
    threshold_mismatch: float = 0.1  # relative standard deviation across pixels
    refractory_us: float = 1_000.0
    noise_hz: float = 1.0  # background events per pixel per second
    dark_level: float = 0.05  # display black, as a fraction of its white
    blur_px: float = 0.6  # Gaussian optics blur (standard deviation, pixels)
    step_us: float = 500.0  # rendering step
    start_us: float = 2_000.0  # the real recordings start a few ms after 0
    duration_us: float = 300_000.0
    path: SaccadePath = field(default=NMNIST_PATH)

    def __post_init__(self):
        positive = ("contrast_threshold", "step_us", "duration_us", "dark_level")
        for name in positive:
            if not getattr(self, name) > 0:
                raise InputError(f"DvsParams.{name} must be positive, got {getattr(self, name)}")
        for name in ("threshold_mismatch", "refractory_us", "noise_hz", "blur_px", "start_us"):
            if getattr(self, name) < 0:
                raise InputError(f"DvsParams.{name} must not be negative, got {getattr(self, name)}")


PAD = 8  # display border around the digit, in pixels; wide enough for any offset in [-1, 7]


def simulate_saccades(images: np.ndarray, indices, params: DvsParams = DvsParams(), seed: int = 0) -> list[np.ndarray]:
    """The simulated recordings of ``images`` (``[B, 28, 28]``, uint8 or floats in [0, 1]).

    ``indices`` are the images' MNIST indices (0-based): with ``seed`` they seed each image's
    draws, so a digit's recording does not depend on the batch it is simulated in. Returns one
    time-sorted event array (``EVENT_DTYPE``, 34x34x2) per image.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise InputError(f"simulate_saccades takes [B, 28, 28] images, got shape {images.shape}")
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if len(indices) != len(images):
        raise InputError(f"{len(images)} images but {len(indices)} indices")
    pixels = images.astype(np.float64) / 255.0 if images.dtype == np.uint8 else images.astype(np.float64)
    if pixels.size and (pixels.min() < 0 or pixels.max() > 1):
        raise InputError("float images must lie in [0, 1]")
    times = np.arange(params.start_us, params.start_us + params.duration_us + params.step_us / 2, params.step_us)
    offsets = params.path.offsets(times - params.start_us)
    if offsets.min() < 1 - PAD or offsets.max() > 2 * PAD + IMAGE_SIDE - SENSOR_SIDE - 2:
        raise InputError(f"the saccade path leaves the display ({offsets.min():.1f}..{offsets.max():.1f} px)")

    rngs = [np.random.default_rng([seed, int(i)]) for i in indices]
    display = np.pad(pixels, ((0, 0), (PAD, PAD), (PAD, PAD)))
    if params.blur_px > 0:
        ndimage = require("scipy.ndimage", "data", "the saccade simulator")
        display = ndimage.gaussian_filter(display, sigma=(0, params.blur_px, params.blur_px), mode="constant")
    light = params.dark_level + display  # the log is taken after interpolation: the sensor integrates light
    shape = (len(images), SENSOR_SIDE, SENSOR_SIDE)
    scale = np.stack([np.maximum(1.0 + params.threshold_mismatch * rng.standard_normal((2, *shape[1:])), 0.25)
                      for rng in rngs]) if len(rngs) else np.zeros((0, 2, *shape[1:]))
    on_threshold = params.contrast_threshold * scale[:, 0]
    off_threshold = params.contrast_threshold * scale[:, 1]

    reference = np.log(_render(light, offsets[0]))
    last_event = np.full(shape, -np.inf)
    fired_steps, fired_flat, fired_brighter = [], [], []
    for step in range(1, len(times)):
        level = np.log(_render(light, offsets[step]))
        ready = times[step] - last_event >= params.refractory_us
        change = level - reference
        on = ready & (change >= on_threshold)
        off = ready & (change <= -off_threshold)
        reference += np.where(on, on_threshold, 0.0) - np.where(off, off_threshold, 0.0)
        fired = on | off
        last_event[fired] = times[step]
        flat = np.flatnonzero(fired)
        fired_steps.append(np.full(len(flat), step, dtype=np.int32))
        fired_flat.append(flat)
        fired_brighter.append(on.reshape(-1)[flat])

    steps = np.concatenate(fired_steps) if fired_steps else np.zeros(0, np.int32)
    flat = np.concatenate(fired_flat) if fired_flat else np.zeros(0, np.int64)
    brightening = np.concatenate(fired_brighter) if fired_brighter else np.zeros(0, bool)
    polarity = brightening != bool(DARKENING_BIT)
    image_of, pixel = np.divmod(flat, SENSOR_SIDE * SENSOR_SIDE)
    order = np.argsort(image_of, kind="stable")
    bounds = np.searchsorted(image_of[order], np.arange(len(images) + 1))
    recordings = []
    for b, rng in enumerate(rngs):
        mine = order[bounds[b] : bounds[b + 1]]
        y, x = np.divmod(pixel[mine], SENSOR_SIDE)
        t = times[steps[mine]] - rng.random(len(mine)) * params.step_us
        noise = rng.poisson(params.noise_hz * SENSOR_SIDE * SENSOR_SIDE * params.duration_us * 1e-6)
        x = np.concatenate([x, rng.integers(0, SENSOR_SIDE, noise)])
        y = np.concatenate([y, rng.integers(0, SENSOR_SIDE, noise)])
        t = np.concatenate([t, params.start_us + rng.random(noise) * params.duration_us])
        p = np.concatenate([polarity[mine], rng.random(noise) < 0.5])
        t = np.floor(t).astype(np.int64)
        by_time = np.argsort(t, kind="stable")
        recordings.append(make_events(x[by_time], y[by_time], t[by_time], p[by_time]))
    return recordings


def _render(display: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The sensor's view ``[B, 34, 34]`` of the padded display with the digit's top-left corner
    at ``offset = (dx, dy)`` on the sensor (bilinear interpolation)."""
    ax, ay = PAD - offset[0], PAD - offset[1]  # display coordinate seen by sensor pixel 0
    ix, iy = int(np.floor(ax)), int(np.floor(ay))
    fx, fy = ax - ix, ay - iy
    n = SENSOR_SIDE

    def window(dy, dx):
        return display[:, iy + dy : iy + dy + n, ix + dx : ix + dx + n]

    return ((1 - fy) * ((1 - fx) * window(0, 0) + fx * window(0, 1))
            + fy * ((1 - fx) * window(1, 0) + fx * window(1, 1)))


class SimulatedNMNIST:
    """Simulated N-MNIST recordings of the MNIST images of one split, as ``(events, label)``.

    ``root`` is the MNIST folder. ``exclude_recorded`` (default) leaves out the digits that real
    recordings show (:data:`RECORDED_DIGITS`). Recordings are simulated on first access (a whole
    mini-batch at once through :meth:`prefetch`) and kept in memory packed into 4 bytes per event
    (about 1 GB for all 59,000 training digits).
    """

    sensor_size = SENSOR_SIZE

    def __init__(self, root, split: str | None = None, params: DvsParams = DvsParams(), seed: int = 0,
                 exclude_recorded: bool = True, train: bool | None = None):
        from evsim.datasets import resolve_split
        from evsim.datasets.mnist import load_mnist

        split = resolve_split(split, train, default="train", what="simulated N-MNIST", root=root)

        images, labels = load_mnist(root, split)
        first = RECORDED_DIGITS[split] if exclude_recorded else 0
        self.split = split
        self.params = params
        self.seed = seed
        self.images = images[first:]
        self.mnist_indices = np.arange(first, len(images))
        self.labels = labels[first:].astype(np.int64)
        self._packed: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"recording {index} of {len(self)}")
        self.prefetch([index])
        return _unpack(self._packed[index]), int(self.labels[index])

    def prefetch(self, indices) -> None:
        """Simulate the recordings at ``indices`` not simulated yet, in one vectorised batch."""
        missing = sorted({int(i) for i in indices} - self._packed.keys())
        if missing:
            simulated = simulate_saccades(self.images[missing], self.mnist_indices[missing], self.params, self.seed)
            self._packed.update(zip(missing, map(_pack, simulated)))

    def __repr__(self) -> str:
        return f"SimulatedNMNIST({self.split!r}, {len(self)} digits, seed={self.seed})"


# x, y < 64 (6 bits each), p (1 bit), t < 2**19 µs: one uint32 per event
def _pack(events: np.ndarray) -> np.ndarray:
    t = events["t"].astype(np.uint32)
    if len(t) and int(t.max()) >= 1 << 19:
        raise InputError("simulated recordings must end before 524 ms to be packed")
    return (t << 13) | (events["p"].astype(np.uint32) << 12) | (events["y"].astype(np.uint32) << 6) | events["x"].astype(np.uint32)


def _unpack(packed: np.ndarray) -> np.ndarray:
    events = np.empty(len(packed), dtype=EVENT_DTYPE)
    events["x"] = packed & 63
    events["y"] = (packed >> 6) & 63
    events["p"] = (packed >> 12) & 1
    events["t"] = packed >> 13
    return events
