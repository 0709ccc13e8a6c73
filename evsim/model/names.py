"""Closed sets of names as string enums: a member is its name's string, so that comparisons with
plain strings, JSON model files and printed text all keep working (``Op.CONV == "conv"``,
``f"{Op.CONV}" == "conv"``). Each set lives beside its concept: projection ops in
evsim.model.ops, population kinds, reset rules and fire tests in evsim.model.neuron; the run mode,
which no model file holds, here.
"""

from __future__ import annotations

from enum import Enum

from evsim.errors import InputError


class Name(str, Enum):
    """A str enum whose text is its value (``enum.StrEnum`` from Python 3.11, here for 3.10 too)."""

    __str__ = str.__str__
    __format__ = str.__format__

    def __repr__(self) -> str:  # as the plain string shows: reprs of records read as before
        return repr(self.value)

    @classmethod
    def of(cls, value, what: str):
        """The member named ``value``; an InputError naming ``what`` and the choices otherwise."""
        if isinstance(value, str) and value in cls._value2member_map_:
            return cls(value)
        raise InputError(f"unknown {what} {value!r}; choose {cls.choices()}")

    @classmethod
    def choices(cls) -> str:
        """The values as a reader sees them: ``a, b or c``."""
        values = [member.value for member in cls]
        return values[0] if len(values) == 1 else f"{', '.join(values[:-1])} or {values[-1]}"


class Mode(Name):
    """How the engine runs a network: in the trained time steps, or in continuous time."""

    STEP = "step"
    ASYNC = "async"
