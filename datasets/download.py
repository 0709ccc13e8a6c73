"""Fetching a published dataset file once, checked against its known digest.

Only the explicit ``download=True`` of a dataset loader gets here; nothing in evsim downloads
on its own.
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from evsim.errors import DataError


def md5_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(urls: list[str], destination: Path, md5: str | None = None) -> Path:
    """Download ``destination`` from the first of ``urls`` that answers, unless it is already there.

    A download whose MD5 differs from ``md5`` is deleted and reported as a :class:`DataError`.
    """
    destination = Path(destination)
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    failures = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as exc:
            failures.append(f"{url}: {exc}")
            continue
        if md5 is not None and md5_of(partial) != md5:
            partial.unlink()
            raise DataError(f"download from {url} does not have the MD5 {md5}", destination)
        partial.replace(destination)
        return destination
    partial.unlink(missing_ok=True)
    raise DataError("download failed: " + "; ".join(failures), destination)
