"""Readers for the datasets evsim trains and simulates on, and where to find them.

Each dataset module is imported on its own (``evsim.datasets.nmnist``, ``.mnist``, ``.cifar10``,
``.svhn``, ``.formats``); this package only knows where the data lives and how colour images are
normalised, so importing it stays cheap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evsim.errors import DataError, InputError

DATA_ROOT_ENV = "EVSIM_DATA"
SPLITS = ("train", "test")


def resolve_split(split: str | None, train: bool | None, default: str, what: str, root=None,
                  splits: tuple[str, ...] = SPLITS) -> str:
    """The split of dataset ``what`` named by evsim's ``split="train"|"test"`` or by tonic's
    ``train=True|False``: either may be given (tonic code ports unchanged), not both in contradiction.
    """
    if train is not None:
        if not isinstance(train, bool):
            raise InputError(f"train must be True or False, got {train!r}")
        from_train = "train" if train else "test"
        if split is not None and split != from_train:
            raise InputError(f"split={split!r} and train={train} name different splits; pass one of them")
        split = from_train
    split = default if split is None else split
    if split not in splits:
        named = " or ".join(repr(name) for name in splits)
        raise DataError(f"unknown {what} split {split!r}; use {named} (or tonic's train=True/False)", root)
    return split


def data_root() -> Path | None:
    """The folder that holds the datasets, or None when there is none.

    ``$EVSIM_DATA`` when it is set; otherwise ``shared/data`` next to the repository (the layout
    of a development checkout) when that folder exists.
    """
    configured = os.environ.get(DATA_ROOT_ENV)
    if configured:
        return Path(configured).expanduser()
    repository = Path(__file__).resolve().parent.parent
    shared = repository.parent / "shared" / "data"
    return shared if shared.is_dir() else None


@dataclass(frozen=True)
class ColourNormalisation:
    """Per-channel statistics of a colour image set, fitted once and applied to every split.

    The paper (section 4.1.4) normalises CIFAR-10 and SVHN "to zero mean and unit standard
    deviation, then scaled to bound them in [-1, 1]". We take the channel-wise z-score and divide
    it by one scalar, ``bound``: the largest ``|z|`` over the fitted images. One scalar keeps the
    channels' relative contrast; the fitted images then span exactly [-1, 1]. Images of another
    split can reach slightly past the training extremes and are clipped to [-1, 1], the range the
    Poisson coder reads as a firing probability.
    """

    mean: np.ndarray  # [channels], in pixel units
    std: np.ndarray  # [channels], in pixel units
    bound: float  # max |(pixel - mean) / std| over the fitted images

    @classmethod
    def fit(cls, images: np.ndarray) -> ColourNormalisation:
        """Statistics of ``images`` ``[N, C, H, W]``, accumulated in float64 one channel at a time."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[0] == 0:
            raise InputError(f"expected a non-empty [N, C, H, W] image array, got {images.shape}")
        channels = images.shape[1]
        mean = np.empty(channels)
        std = np.empty(channels)
        bound = 0.0
        for c in range(channels):
            plane = images[:, c].astype(np.float64)
            mean[c] = plane.mean()
            std[c] = plane.std()
            if std[c] == 0:
                raise InputError(f"channel {c} is constant; it cannot be scaled to unit std")
            extreme = max(plane.max() - mean[c], mean[c] - plane.min()) / std[c]
            bound = max(bound, float(extreme))
        return cls(mean=mean, std=std, bound=bound)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``images`` ``[N, C, H, W]`` as float32 in [-1, 1]."""
        images = np.asarray(images)
        shape = (1, -1, 1, 1)
        mean = self.mean.reshape(shape).astype(np.float32)
        scale = (self.std * self.bound).reshape(shape).astype(np.float32)
        out = (images.astype(np.float32) - mean) / scale
        return np.clip(out, -1.0, 1.0, out=out)

