"""Writing IDX files (the MNIST format) for tests that need a dataset of their own."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, magic: int, compress: bool = False) -> bytes:
    """Write ``array`` (uint8) as an IDX file with ``magic``; return the uncompressed bytes."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    content = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(content) if compress else content)
    return content
