"""Labelled samples of a dataset split, encoded the same way for the trainer and the engine: frames ``[T, B, C, H, W]``.

Static images become signed Poisson spike trains (evsim.datasets.encoding.poisson_spikes) drawn
fresh for every mini-batch; N-MNIST recordings, real or simulated from MNIST
(``nmnist-sim``, evsim.datasets.saccades), become event-count frames
(evsim.events.to_frames), the same binning the engine uses. The ``encoding`` (evsim.model.encoding.Encoding) of a
:class:`SampleSet` is what the model file records, so the engine can encode its inputs the same way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evsim.datasets import ColourNormalisation, data_root
from evsim.datasets.augment import EventAugment, augment as augment_events
from evsim.datasets.encoding import COLOUR_SCALE, MNIST_SCALE, poisson_spikes
from evsim.events import bin_events, to_frames
from evsim.model.encoding import DEFAULT_WINDOW_US, Encoding
from evsim.errors import DataError, InputError
from evsim.paths import BUNDLED_DATA

INPUT_SHAPES = {
    "mnist": (1, 28, 28),
    "nmnist": (2, 34, 34),
    "nmnist-sim": (2, 34, 34),
    "cifar10": (3, 32, 32),
    "svhn": (3, 32, 32),
}
DATASETS = tuple(INPUT_SHAPES)
SIMULATED = {"nmnist-sim": "nmnist"}
"""Simulated datasets and the real ones they imitate: a model of one runs on the other's inputs."""
DATA_FOLDERS = {"nmnist-sim": "mnist"}  # nmnist-sim is simulated from the MNIST images
SUBSET_SEED = 0  # --limit picks the same samples on every run
VALIDATION_SEED = 1  # --val holds out the same samples on every run, whatever the run's seed
CROP_PADDING = 4
IMAGE_DATASETS = ("mnist", "cifar10", "svhn")  # load_samples(augment=True) applies to these
ALWAYS_AUGMENTED = ("cifar10", "svhn")  # training images always cropped and flipped (the paper's section 4.1.4)
AUGMENT_ON_REQUEST = ("mnist", "nmnist")  # load_training_samples(augment=True), `evsim train --augment`
MNIST_SHIFT = 2  # --augment on MNIST: shifts of up to 2 pixels, no flips (a flipped digit is another glyph)


def default_root(dataset: str) -> Path:
    """``datasets.data_root()/<dataset>`` when that folder exists; else, for nmnist, the real
    recordings bundled with evsim (so that the bundled model runs from any folder); else a
    DataError saying how to point evsim at the data."""
    root = data_root()
    folder = None if root is None else root / DATA_FOLDERS.get(dataset, dataset)
    if folder is not None and folder.is_dir():
        return folder
    if dataset == "nmnist" and root is not None and root.is_dir():
        # a data folder that exists but lacks nmnist/ is a mistake to name, not to fall back from
        inside = "; it looks like the N-MNIST folder itself: set $EVSIM_DATA to the folder above it" if any(
            (root / split).is_dir() for split in ("Train", "Test", "NMNIST")) else ""
        raise DataError(f"the data folder {root} has no nmnist/ folder{inside} (or pass --data; without a "
                        "data folder evsim uses its bundled N-MNIST recordings)")
    if dataset == "nmnist":
        return BUNDLED_DATA / "nmnist"
    where = "no data folder" if root is None else f"no {folder}"
    raise DataError(f"{where}: pass --data, or set $EVSIM_DATA to the folder holding {DATA_FOLDERS.get(dataset, dataset)}/", None)


def coded_inputs(samples, batch: np.ndarray, timesteps: int, seed: int, positions=None) -> np.ndarray:
    """Frames ``[T, B, C, H, W]`` of ``samples``' samples at ``batch``, each coded by a generator
    of its own, seeded ``(seed, position)`` (``positions``: in the split; default ``batch``), so
    that a sample's spikes do not depend on its batch, thread or machine: evsim run and evsim eval
    draw the same spikes, and step mode equals the dense model on them."""
    positions = batch if positions is None else positions
    return np.concatenate([samples.inputs(np.array([b]), timesteps, np.random.default_rng([seed, int(p)]))
                           for b, p in zip(batch, positions)], axis=1)


def same_inputs(dataset: str, other: str) -> bool:
    """Whether models of ``dataset`` take ``other``'s inputs (a simulation and its real data do)."""
    return SIMULATED.get(dataset, dataset) == SIMULATED.get(other, other)


@dataclass
class SampleSet:
    """One split of a dataset: labels, and images (static data) or recordings (N-MNIST)."""

    dataset: str
    split: str
    labels: np.ndarray  # int64 [N]
    encoding: Encoding
    images: np.ndarray | None = None  # float32 [N, C, H, W] in [-1, 1]
    recordings: object | None = None  # evsim.datasets.nmnist.NMNIST
    indices: np.ndarray | None = None  # recordings' file indices of these samples
    augment: bool = False  # random crops (augment_images: + horizontal flips for colour data)
    event_augment: EventAugment | None = None  # random draws per recording (real event training data)
    _events: dict = field(default_factory=dict, repr=False)  # decoded recordings by file index

    def take(self, positions: np.ndarray) -> "SampleSet":
        """The samples at ``positions``, sharing this set's data and decoded recordings."""
        positions = np.asarray(positions, dtype=np.int64)
        return dataclasses.replace(
            self,
            labels=self.labels[positions],
            images=None if self.images is None else self.images[positions],
            indices=None if self.indices is None else self.indices[positions],
            _events=self._events,
        )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def _simulated(self) -> bool:
        """Recordings simulated on demand (they prefetch whole batches and keep their events)."""
        return hasattr(self.recordings, "prefetch")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return INPUT_SHAPES[self.dataset]

    def inputs(self, batch: np.ndarray, timesteps: int, rng: np.random.Generator) -> np.ndarray:
        """Input frames ``[T, B, C, H, W]`` of the samples at positions ``batch``."""
        if self.images is not None:
            images = self.images[batch]
            if self.augment:
                images = augment_images(self.dataset, images, rng)
            return poisson_spikes(images, timesteps, rng, scale=self.encoding.scale)
        if self._simulated:  # one vectorised simulation call per batch
            self.recordings.prefetch(self.indices[batch])
        if self.event_augment is None:
            frames = [self._frames(self.events(int(i)), timesteps) for i in batch]
        else:  # one generator per recording, seeded from the epoch's generator
            seeds = rng.integers(0, 2**63, len(batch))
            sensor = self.encoding.sensor_size
            frames = [self._frames(augment_events(self.events(int(i)), self.event_augment, np.random.default_rng(seed), sensor), timesteps)
                      for i, seed in zip(batch, seeds)]
        return np.stack(frames, axis=1)

    def events(self, position: int) -> np.ndarray:
        """The raw events of the recording at ``position`` (decoded once, then kept)."""
        index = int(self.indices[position])
        events = self._events.get(index)
        if events is None:
            events, _ = self.recordings[index]
            if not self._simulated:  # recordings are small: decode each file once (a simulation keeps its own)
                self._events[index] = events
        return events

    def _frames(self, events: np.ndarray, timesteps: int) -> np.ndarray:
        binned = bin_events(events, self.encoding.sensor_size, timesteps, self.encoding.window)
        return to_frames(binned, dtype=np.float32)


@dataclass
class SampleMix:
    """Several sample sets of the same inputs trained on as one (the real N-MNIST recordings and a
    draw of simulated ones): positions run through ``parts`` in order."""

    parts: tuple[SampleSet, ...]

    def __post_init__(self):
        shapes = {part.input_shape for part in self.parts}
        if len(shapes) != 1:
            raise InputError(f"a mix needs one input shape, got {sorted(shapes)}")
        self._starts = np.cumsum([0] + [len(part) for part in self.parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def labels(self) -> np.ndarray:
        return np.concatenate([part.labels for part in self.parts])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.parts[0].input_shape

    def inputs(self, batch: np.ndarray, timesteps: int, rng: np.random.Generator) -> np.ndarray:
        """Input frames ``[T, B, C, H, W]`` of the samples at positions ``batch``, in that order."""
        batch = np.asarray(batch, dtype=np.int64)
        owner = np.searchsorted(self._starts, batch, side="right") - 1
        frames = None
        for index, part in enumerate(self.parts):
            mine = np.flatnonzero(owner == index)
            if len(mine) == 0:
                continue
            part_frames = part.inputs(batch[mine] - self._starts[index], timesteps, rng)
            if frames is None:
                frames = np.zeros((part_frames.shape[0], len(batch), *part_frames.shape[2:]), part_frames.dtype)
            frames[:, mine] = part_frames
        return frames


def epoch_draw(count: int, per_epoch: int, epoch: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """Positions of the ``per_epoch`` samples of a pool of ``count`` that epoch ``epoch`` (from 0)
    trains on: consecutive windows of one fixed random order, so no sample repeats until the pool
    is used up, and a resumed run draws what an unbroken one would."""
    if not 0 < per_epoch <= count:
        raise InputError(f"a draw of {per_epoch} per epoch needs 1 to {count} (the pool's samples)")
    order = np.random.default_rng(seed).permutation(count)
    start = (epoch * per_epoch) % count
    return np.sort(np.take(order, np.arange(start, start + per_epoch), mode="wrap"))


def crop_and_flip(images: np.ndarray, rng: np.random.Generator, padding: int = CROP_PADDING,
                  flip: bool = True) -> np.ndarray:
    """Random ``padding``-pixel-padded crops and (with ``flip``) random horizontal flips
    (section 4.1.4), per image."""
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.empty_like(images)
    dy = rng.integers(0, 2 * padding + 1, n)
    dx = rng.integers(0, 2 * padding + 1, n)
    flips = flip & (rng.random(n) < 0.5)
    for i in range(n):
        crop = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out


def augment_images(dataset: str, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A training batch of ``dataset``'s images, augmented: MNIST digits shifted by up to
    :data:`MNIST_SHIFT` pixels, colour images cropped and flipped as the paper does."""
    if dataset == "mnist":
        return crop_and_flip(images, rng, padding=MNIST_SHIFT, flip=False)
    return crop_and_flip(images, rng)


def stratified_holdout(labels: np.ndarray, count: int, seed: int = VALIDATION_SEED) -> np.ndarray:
    """Sorted positions of ``count`` samples drawn at random per label, in proportion to the labels'
    shares (largest remainders round), so a validation split has every class as the data has."""
    if not 0 < count < len(labels):
        raise InputError(f"--val must lie between 1 and {len(labels) - 1} (the training samples), got {count}")
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / len(labels)
    quota = np.floor(exact).astype(np.int64)
    quota[np.argsort(-(exact - quota), kind="stable")[: count - quota.sum()]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen))


def split_validation(samples: SampleSet, count: int) -> tuple[SampleSet, SampleSet]:
    """``(rest, validation)``: ``count`` samples held out of ``samples``, stratified by label, the
    same ones on every run (:data:`VALIDATION_SEED`)."""
    held = stratified_holdout(samples.labels, count)
    rest = np.setdiff1d(np.arange(len(samples)), held)
    validation = dataclasses.replace(samples.take(held), split=f"{samples.split}-val", augment=False, event_augment=None)
    return samples.take(rest), validation


def subset(count: int, limit: int | tuple[int, int] | None) -> np.ndarray:
    """The positions ``--limit`` keeps: a fixed random subset (N-MNIST files are sorted by digit).

    ``limit`` is N, the first N samples of one fixed random order of the split, or ``(start,
    stop)``, its positions start to stop - 1: the samples a run with ``--limit start`` left out.
    """
    start, stop = limit if isinstance(limit, tuple) else (0, limit)
    if stop is None or (start == 0 and stop >= count):
        return np.arange(count)
    if not 0 <= start < stop:
        raise InputError(f"--limit must be N >= 1 or START:STOP with 0 <= START < STOP, got {start}:{stop}")
    if start >= count:
        raise InputError(f"--limit {start}:{stop} starts past the {count} samples of the split")
    return np.sort(np.random.default_rng(SUBSET_SEED).permutation(count)[start:stop])


def load_samples(
    dataset: str,
    root,
    split: str,
    limit: int | tuple[int, int] | None = None,
    encoding: Encoding | dict | None = None,
    window_us: int = DEFAULT_WINDOW_US,
    augment: bool = False,
) -> SampleSet:
    """One split of ``dataset`` under ``root``.

    ``encoding`` is a model's recorded encoding, reused as is (the colour normalisation of its
    training data, the event window); without it the encoding is derived here. ``augment``
    switches on :func:`augment_images` (training images only).
    """
    if dataset not in INPUT_SHAPES:
        raise InputError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    root = Path(root)
    if augment and dataset not in IMAGE_DATASETS:
        raise InputError(f"augment shifts and crops images; {dataset} recordings are augmented by EventAugment "
                         "(load_training_samples)")
    if dataset in ("nmnist", "nmnist-sim"):
        from evsim.datasets.nmnist import NMNIST, SENSOR_SIZE
        from evsim.datasets.saccades import SimulatedNMNIST

        recordings = NMNIST(root, split) if dataset == "nmnist" else SimulatedNMNIST(root, split)
        keep = subset(len(recordings), limit)
        encoding = Encoding.of(encoding or {"kind": "events", "window_us": int(window_us), "sensor_size": list(SENSOR_SIZE)})
        return SampleSet(dataset, split, recordings.labels[keep], encoding, recordings=recordings, indices=keep)
    if dataset == "mnist":
        from evsim.datasets.mnist import load_mnist

        images, labels = load_mnist(root, split)
        keep = subset(len(labels), limit)
        pixels = images[keep, None].astype(np.float32) / 255.0
        encoding = Encoding.of(encoding or {"kind": "poisson", "scale": MNIST_SCALE})
        return SampleSet(dataset, split, labels[keep], encoding, images=pixels, augment=augment)
    loader = _colour_loader(dataset)
    images, labels = loader(root, split)
    keep = subset(len(labels), limit)
    if encoding is None:
        statistics = ColourNormalisation.fit(images if split == "train" else loader(root, "train")[0])
        encoding = {
            "kind": "poisson",
            "scale": COLOUR_SCALE,
            "normalisation": {
                "mean": statistics.mean.tolist(),
                "std": statistics.std.tolist(),
                "bound": statistics.bound,
            },
        }
    encoding = Encoding.of(encoding)
    norm = encoding.normalisation
    if norm is None:
        raise InputError(f"a {dataset} model must record its colour normalisation in its encoding")
    statistics = ColourNormalisation(np.asarray(norm["mean"]), np.asarray(norm["std"]), float(norm["bound"]))
    return SampleSet(dataset, split, labels[keep], encoding, images=statistics(images[keep]), augment=augment)


def load_training_samples(dataset: str, root, limit: int | tuple[int, int] | None = None,
                          augment: bool = False, event_augment: EventAugment | None = None) -> SampleSet:
    """The training split as the trainers draw from it: colour images always cropped and flipped
    (the paper's section 4.1.4); with ``augment``, MNIST digits shifted and real N-MNIST
    recordings augmented event by event (``event_augment``'s ranges, default :class:`EventAugment`)."""
    images = dataset in ALWAYS_AUGMENTED or (augment and dataset == "mnist")
    samples = load_samples(dataset, root, "train", limit, augment=images)
    if augment and dataset == "nmnist":
        samples = dataclasses.replace(samples, event_augment=event_augment or EventAugment())
    return samples


def _colour_loader(dataset: str):
    if dataset == "cifar10":
        from evsim.datasets.cifar10 import load_cifar10

        return load_cifar10
    from evsim.datasets.svhn import load_svhn

    return load_svhn
