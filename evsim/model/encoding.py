"""A model's input encoding: how a sample becomes the network's input, as the model file records it.

- ``kind``: ``events`` (a recording binned into ``T`` steps over ``window_us``) or ``poisson``
  (an image coded as signed Poisson spike trains, ``scale`` the peak firing probability per step,
  ``normalisation`` the colour statistics of the training images, when it has them);
- ``window_us``: the input window of a model of events, from the sample's first event (evsim.events
  .window_events); ``T`` bins of ``window_us / T`` each;
- ``sensor_size``: ``(width, height, polarities)`` of the recordings it was trained on.

Every field may be absent (None): files written before a field existed, and models of images, which
have no window. :attr:`Encoding.window` is the one default for a model of events that recorded
none (:data:`DEFAULT_WINDOW_US`, N-MNIST's 300 ms).

The record reads as a mapping of its JSON form too (``encoding["window_us"]``, ``dict(encoding)``,
``encoding == {...}``), which is the model file's form; unknown keys are kept as they were read, so
a file round-trips unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from evsim.errors import InputError, ModelError
from evsim.model.names import Name

DEFAULT_WINDOW_US = 300_000
"""The input window of a model of events that recorded none (N-MNIST's 300 ms saccades)."""


class EncodingKind(Name):
    EVENTS = "events"
    POISSON = "poisson"


_FIELDS = ("kind", "window_us", "sensor_size", "scale", "normalisation")


@dataclass(frozen=True, eq=False)
class Encoding(Mapping):
    kind: EncodingKind | str | None = None
    window_us: int | None = None
    sensor_size: tuple[int, int, int] | None = None
    scale: float | None = None
    normalisation: dict | None = None
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept for the file

    def __post_init__(self):
        if isinstance(self.kind, str) and self.kind in EncodingKind._value2member_map_:
            object.__setattr__(self, "kind", EncodingKind(self.kind))
        if self.sensor_size is not None:
            object.__setattr__(self, "sensor_size", tuple(int(s) for s in self.sensor_size))
        if self.window_us is not None:
            object.__setattr__(self, "window_us", int(self.window_us))

    @classmethod
    def of(cls, value) -> "Encoding":
        """``value`` as an Encoding: an Encoding, or its JSON form (a dict; None: nothing recorded)."""
        if isinstance(value, Encoding):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise ModelError(f"an input encoding is a mapping of its fields, not {type(value).__name__}")
        known = {key: value[key] for key in _FIELDS if key in value}
        extra = {key: val for key, val in value.items() if key not in _FIELDS}
        return cls(**known, extra=extra)

    @property
    def window(self) -> int:
        """The input window (µs): the recorded one, else :data:`DEFAULT_WINDOW_US`."""
        return self.window_us if self.window_us else DEFAULT_WINDOW_US

    def step_us(self, timesteps: int) -> float | None:
        """The width of one time step (µs) of a model of events; None when no window is recorded."""
        return self.window_us / timesteps if self.window_us else None

    def for_timesteps(self, timesteps: int, trained: int, asked: str) -> "Encoding":
        """The encoding of the same steps run ``timesteps`` long instead of ``trained``: a recorded
        window becomes ``window_us * timesteps / trained``; an InputError beginning with ``asked``
        when that is not a whole number of µs."""
        if not self.window_us:
            return self
        scaled = self.window_us * timesteps
        if scaled % trained:
            raise InputError(f"{asked}: the model's steps are {self.window_us} µs / {trained}, not a whole number of "
                             f"µs over {timesteps} steps; choose T so that {self.window_us} * T / {trained} is whole")
        return Encoding.of({**self.to_dict(), "window_us": scaled // trained})

    def to_dict(self) -> dict:
        """The JSON form: the fields that are set (a sensor size as a list), then the unknown keys."""
        data = {}
        for key in _FIELDS:
            value = getattr(self, key)
            if value is not None:
                data[key] = list(value) if key == "sensor_size" else str(value) if key == "kind" else value
        return {**data, **self.extra}

    # the mapping view of the JSON form
    def __getitem__(self, key):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        return f"Encoding({self.to_dict()})"
