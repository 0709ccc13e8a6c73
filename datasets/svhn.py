"""SVHN, cropped-digits format (``train_32x32.mat``, ``test_32x32.mat``, ``extra_32x32.mat``).

Each file is a MATLAB v5 file with ``X``, uint8 ``[32, 32, 3, N]`` (row, column, channel,
sample), and ``y``, ``[N, 1]`` labels 1..10 where 10 stands for the digit 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evsim.datasets import resolve_split
from evsim.errors import DataError, require

SPLIT_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat", "extra": "extra_32x32.mat"}
BASE_URL = "http://ufldl.stanford.edu/housenumbers/"
DOWNLOAD_MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    "extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
}


def read_svhn_mat(path) -> tuple[np.ndarray, np.ndarray]:
    """One cropped-digits file: images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]`` in 0..9."""
    scipy_io = require("scipy.io", "data", "reading SVHN .mat files")
    path = Path(path)
    try:
        contents = scipy_io.loadmat(path, variable_names=("X", "y"))
    except NotImplementedError as exc:  # scipy's answer to a MATLAB v7.3 (HDF5) file
        raise DataError(f"not a MATLAB v5 file as SVHN publishes: {exc}", path) from exc
    except (ValueError, TypeError, OSError, EOFError, scipy_io.matlab.MatReadError) as exc:
        raise DataError(f"cannot read as a MATLAB file: {exc}", path) from exc
    missing = [name for name in ("X", "y") if name not in contents]
    if missing:
        raise DataError(f"SVHN file lacks the variable(s) {', '.join(missing)}", path)
    x, y = contents["X"], contents["y"]
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.dtype != np.uint8:
        raise DataError(
            f"SVHN X must be uint8 [32, 32, 3, N], found {x.dtype} {list(x.shape)}", path
        )
    labels = np.asarray(y).reshape(-1)
    if labels.size != x.shape[3]:
        raise DataError(f"{labels.size} labels for {x.shape[3]} images", path)
    valid = (labels >= 1) & (labels <= 10) & (labels == np.round(labels))
    if not valid.all():
        i = int(np.argmin(valid))
        raise DataError(f"label {labels[i]} of image {i} is not one of SVHN's 1..10", path)
    labels = labels.astype(np.int64) % 10  # SVHN's label 10 is the digit 0
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))
    return images, labels


def load_svhn(root, split: str | None = None, download: bool = False,
              train: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SVHN ``split`` (``train``, ``test`` or ``extra``): images ``[N, 3, 32, 32]``, labels ``[N]``.

    ``root`` holds the ``.mat`` files directly or in ``svhn/``. ``download=True`` first fetches
    the split's file from the dataset's site into ``root`` when it is missing.
    """
    split = resolve_split(split, train, default="train", what="SVHN", root=root, splits=("train", "test", "extra"))
    if split not in SPLIT_FILES:
        raise DataError(f"unknown SVHN split {split!r}; use 'train', 'test' or 'extra'", root)
    root = Path(root)
    name = SPLIT_FILES[split]
    path = next((p for p in (root / name, root / "svhn" / name) if p.is_file()), None)
    if path is None and download:
        from evsim.datasets.download import fetch

        path = fetch([BASE_URL + name], root / name, DOWNLOAD_MD5[name])
    if path is None:
        raise DataError(f"no SVHN {split} file here: expected {name} (cropped digits)", root)
    return read_svhn_mat(path)
