"""The project's exceptions: every user error ends in one of these, never a traceback or a crash."""

from __future__ import annotations


class EvsimError(Exception):
    """Base class of every error evsim raises for bad input."""


class DataError(EvsimError):
    """A data file or folder that cannot be read as claimed.

    Carries the reason, the file and, where it applies, the byte offset of the problem (the
    arguments in ModelError's order: reason first).
    """

    def __init__(self, reason: str, path=None, offset: int | None = None):
        self.path = str(path) if path is not None else None
        self.reason = reason
        self.offset = offset
        where = f" at byte {offset}" if offset is not None else ""
        prefix = f"{self.path}{where}: " if self.path else ""
        super().__init__(f"{prefix}{reason}")


class ModelError(EvsimError):
    """A model file or graph that is malformed, inconsistent or of an unknown format version."""

    def __init__(self, reason: str, path=None):
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class InputError(EvsimError):
    """Input spikes or events that do not fit the network they are fed to."""


class ClusterError(EvsimError):
    """A Ray cluster that cannot be reached, or that lost a task more often than it retries."""


class MissingExtra(EvsimError):
    """An optional dependency that a reader or option needs is not installed."""


def require(module: str, extra: str, purpose: str):
    """Import ``module``, or raise MissingExtra naming the extra that installs it.

    The engine needs only numpy, numba and tqdm; tonic, aedat and scipy serve single readers
    and options, so they are extras and imported only where used.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{purpose} needs {module.split('.')[0]}: pip install 'evsim[{extra}]'") from None
