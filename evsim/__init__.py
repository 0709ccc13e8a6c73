"""evsim: event-driven simulation of deep spiking neural networks.

``evsim.load(path_or_name)`` gives a :class:`~evsim.engine.network.Network`; ``network.run(inputs)``
runs one input (an event file path, tonic events, binned events, or a spike train ``[T, C, H, W]``
as a numpy array or torch tensor; ``[T, B, C, H, W]`` gives a list of results) in step or async
mode and returns a :class:`~evsim.engine.counting.RunResult` with ``prediction``, ``output``,
``per_layer`` counters and what the input window read, used and dropped. The layers, bottom up:
:mod:`evsim.model`, :mod:`evsim.events`, the data readers :mod:`evsim.datasets`, the engine
:mod:`evsim.engine` and the trainer :mod:`evsim.training` (needs torch), the runtime
:mod:`evsim.runtime` (``load``, streaming, cluster runs), :mod:`evsim.analysis`, and the command
line :mod:`evsim.cli`. ``load`` gives a Network that reads event files; one built directly
(``evsim.Network``) takes events.
"""

from evsim.errors import DataError, EvsimError, InputError, ModelError

# The engine loads numba; the names below are resolved on first use, so that importing a lower
# layer (evsim.model, evsim.events, evsim.datasets) does not pay for it.
_LAZY = {"Network": "evsim.engine.network", "load": "evsim.runtime.load", "Stream": "evsim.engine.asynchronous"}

__all__ = ["DataError", "EvsimError", "InputError", "ModelError", "Network", "Stream", "load"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evsim' has no attribute {name!r}")
