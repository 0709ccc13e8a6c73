"""CIFAR-10, binary version only (``cifar-10-batches-bin``; the Python version is pickles).

Each batch file is a flat sequence of 3073-byte records: one label byte (0..9), then the
32x32 image as three 1024-byte planes (red, green, blue), each row-major.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from evsim.datasets import resolve_split
from evsim.errors import DataError

RECORD_BYTES = 1 + 3 * 32 * 32
FOLDER = "cifar-10-batches-bin"
SPLIT_FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"


def read_cifar_batch(path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file: images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]``."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 batch: {exc.strerror or exc}", path) from exc
    if raw.size == 0:
        raise DataError("CIFAR-10 batch file is empty", path)
    partial = raw.size % RECORD_BYTES
    if partial:
        raise DataError(
            f"size {raw.size} is not a whole number of {RECORD_BYTES}-byte CIFAR-10 records "
            f"(the last {partial} bytes start a partial record)",
            path,
            raw.size - partial,
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = labels > 9
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"record {i} has label {labels[i]}, not a class 0..9", path, i * RECORD_BYTES)
    images = records[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def load_cifar10(root, split: str | None = None, download: bool = False,
                 train: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` (or tonic's ``train=True|False``): images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]``.

    ``root`` holds ``cifar-10-batches-bin/`` or is that folder. The training split is
    ``data_batch_1..5.bin`` in order, the test split ``test_batch.bin``. ``download=True`` first
    fetches and unpacks the official binary archive (162 MB) into ``root`` when it is missing.
    """
    split = resolve_split(split, train, default="train", what="CIFAR-10", root=root)
    if split not in SPLIT_FILES:
        raise DataError(f"unknown CIFAR-10 split {split!r}; use 'train' or 'test'", root)
    root = Path(root)
    if download and _find_folder(root, split) is None:
        _download(root)
    folder = _find_folder(root, split)
    if folder is None:
        raise DataError(
            f"no CIFAR-10 binary {split} batches here: expected {FOLDER}/ holding "
            f"{', '.join(SPLIT_FILES[split])} (the binary version, not the Python pickles)",
            root,
        )
    batches = [read_cifar_batch(folder / name) for name in SPLIT_FILES[split]]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _find_folder(root: Path, split: str) -> Path | None:
    for folder in (root / FOLDER, root):
        if all((folder / name).is_file() for name in SPLIT_FILES[split]):
            return folder
    return None


def _download(root: Path) -> None:
    from evsim.datasets.download import fetch

    archive = fetch([ARCHIVE_URL], root / "cifar-10-binary.tar.gz", ARCHIVE_MD5)
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
