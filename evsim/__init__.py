"""evsim: event-driven simulation of deep spiking neural networks."""

from evsim.errors import DataError, EvsimError, InputError, ModelError

__all__ = ["DataError", "EvsimError", "InputError", "ModelError"]
__version__ = "0.1.0"
