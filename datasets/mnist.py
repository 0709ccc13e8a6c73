"""MNIST in its published IDX format, gzipped or raw.

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, then
one uint32 per dimension) followed by the values. MNIST's images have the magic 2051 (uint8, 3
dimensions) and its labels 2049 (uint8, 1 dimension).
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from evsim.datasets import resolve_split
from evsim.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SHAPE = (28, 28)
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# MD5 of the published .gz files (torchvision checks the same ones).
DOWNLOAD_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
DEFLATE_MAX_RATIO = 1032
"""Deflate's ceiling: one compressed byte stands for at most 1032 bytes."""


def read_idx(path, expected_magic: int | None = None) -> np.ndarray:
    """The array in one IDX file (gzip-compressed or not, told apart by content, not name).

    With ``expected_magic`` the file must carry that magic number. A header that does not parse,
    and data shorter or longer than the header announces, are :class:`DataError`; the offset
    counts bytes of the decompressed content.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file: {exc.strerror or exc}", path) from exc
    if raw[:2] == _GZIP_MAGIC:
        raw = _gunzip(path, raw)
    if len(raw) < 4:
        raise DataError(f"IDX header needs 4 bytes, file has {len(raw)}", path, 0)
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"IDX magic number is {magic}, expected {expected_magic}", path, 0
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(f"not an IDX file (magic number {magic})", path, 0)
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header_bytes = 4 + 4 * ndim
    if len(raw) < header_bytes:
        raise DataError(
            f"IDX header of {ndim} dimensions is cut off at {len(raw)} bytes", path, len(raw)
        )
    shape = tuple(
        int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)
    )
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_bytes
    if found < expected:
        raise DataError(
            f"IDX data is truncated: shape {shape} needs {expected} bytes, "
            f"only {found} follow the header",
            path,
            len(raw),
        )
    if found > expected:
        raise DataError(
            f"{found - expected} unexpected bytes after the IDX data of shape {shape}",
            path,
            header_bytes + expected,
        )
    return np.frombuffer(raw, dtype=dtype, offset=header_bytes).reshape(shape)


def _gunzip(path: Path, raw: bytes) -> bytes:
    """The gzip stream's content, decompressed no further than its IDX header declares (and one
    byte more, to tell that more follows): a small file cannot expand to gigabytes."""
    out = bytearray()
    limit = DEFLATE_MAX_RATIO * len(raw)
    stream, data = zlib.decompressobj(wbits=31), raw
    try:
        while len(out) <= limit:
            piece = stream.decompress(data, min(1 << 20, limit + 1 - len(out)))
            out += piece
            data = stream.unconsumed_tail
            limit = min(limit, _declared_end(out, limit))
            if stream.eof:
                if not stream.unused_data:
                    break
                stream, data = zlib.decompressobj(wbits=31), stream.unused_data  # a further gzip member
            elif not piece and not data:
                raise DataError("damaged gzip stream: it ends before its end-of-stream marker", path)
    except zlib.error as exc:
        raise DataError(f"damaged gzip stream: {exc}", path) from exc
    return bytes(out)


def _declared_end(head: bytes, default: int) -> int:
    """Where the IDX data that ``head`` starts with ends, by its header; ``default`` until the
    header is complete or if it does not parse (read_idx then names the fault)."""
    if len(head) < 4 or head[2] not in _IDX_TYPES or len(head) < 4 + 4 * head[3]:
        return default
    ndim = head[3]
    shape = [int.from_bytes(head[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return 4 + 4 * ndim + math.prod(shape) * _IDX_TYPES[head[2]].itemsize


def mnist_files(root, split: str) -> tuple[Path, Path]:
    """The image and label files of ``split`` under ``root``.

    Looks in ``root``, ``root/mnist`` and ``root/MNIST/raw`` (torchvision's layout) for the
    standard names, gzipped or not, and for the ``train-images.idx3-ubyte`` spelling.
    """
    if split not in SPLIT_PREFIXES:
        raise DataError(f"unknown MNIST split {split!r}; use 'train' or 'test'", root)
    root = Path(root)
    prefix = SPLIT_PREFIXES[split]
    found = []
    for kind, idx in (("images", "idx3"), ("labels", "idx1")):
        names = [f"{prefix}-{kind}-{idx}-ubyte", f"{prefix}-{kind}.{idx}-ubyte"]
        candidates = [
            folder / (name + suffix)
            for folder in (root, root / "mnist", root / "MNIST" / "raw")
            for name in names
            for suffix in (".gz", "")
        ]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise DataError(
                f"no MNIST {split} {kind} here: expected {names[0]}.gz (or uncompressed) in "
                "this folder, in mnist/ or in MNIST/raw/",
                root,
            )
        found.append(path)
    return found[0], found[1]


def load_mnist(root, split: str | None = None, download: bool = False,
               train: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST ``split`` (or tonic's ``train=True|False``): images uint8 ``[N, 28, 28]`` and labels int64 ``[N]``.

    ``download=True`` first fetches the split's two missing files from the official mirrors
    into ``root``.
    """
    split = resolve_split(split, train, default="train", what="MNIST", root=root)
    if download:
        _download(Path(root), split)
    images_path, labels_path = mnist_files(root, split)
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"MNIST images are 28x28, these are {images.shape[1:]}", images_path)
    if len(images) != len(labels):
        raise DataError(
            f"{len(labels)} labels for the {len(images)} images of {images_path.name}", labels_path
        )
    if labels.size and labels.max() > 9:
        i = int(np.argmax(labels > 9))
        raise DataError(f"label {labels[i]} is not a digit", labels_path, 8 + i)
    return images, labels.astype(np.int64)


def _download(root: Path, split: str) -> None:
    from evsim.datasets.download import fetch

    try:
        mnist_files(root, split)
        return
    except DataError:
        pass
    prefix = SPLIT_PREFIXES.get(split)
    if prefix is None:
        raise DataError(f"unknown MNIST split {split!r}; use 'train' or 'test'", root)
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{prefix}-{kind}-ubyte.gz"
        fetch([mirror + name for mirror in MIRRORS], root / name, DOWNLOAD_MD5[name])
