"""evsim: event-driven simulation of deep spiking neural networks.

``evsim.load(path_or_name)`` gives a :class:`~evsim.network.Network`; ``network.run(inputs)`` runs
one input (tonic events, binned events or a spike train ``[T, C, H, W]``) in step or async mode
and returns a :class:`~evsim.counting.RunResult` with ``prediction``, ``output`` and per-layer
counters. The trainer lives in :mod:`evsim.training` (needs torch), the data layer in
:mod:`evsim.datasets`.
"""

from evsim.errors import DataError, EvsimError, InputError, ModelError
from evsim.network import Network, load
from evsim.stream import Stream

__all__ = ["DataError", "EvsimError", "InputError", "ModelError", "Network", "Stream", "load"]
__version__ = "0.1.0"
