"""A projection's facts, in one place: what each op computes and what it costs.

A :class:`Projection` carries current from a source population of shape
``src`` to a target of shape ``dst`` by one of the ops of :class:`Op`. Everything that depends on
the op alone is derived here, and every consumer reads it from here: the graph's shape checks and
weight shapes (evsim.model.graph), the engine's counters and weight layout (evsim.engine.counting,
evsim.engine.layers), the trainer's activity regulariser (evsim.training.regularizers) and
``evsim info`` (evsim.model.summary). The test oracle (tests/oracle.py) keeps an independent
formula and is compared against these.

- :func:`output_shape`: the target shape the op gives (the graph checks the population's).
- :func:`weight_shape`: the trained weight's shape (None: the op has no weight).
- :func:`dense_macs`: multiply-accumulates of one dense pass (one clock-driven step).
- :func:`fan_out`: synaptic operations one spike of each source neuron costs in the engine (one
  per weight added; every target a neuron reaches gets one weight from it: a grouped conv's
  neuron reaches the ``C_out / groups`` channels of its group), as an array of the
  source's shape; :func:`coverage` is the same along one axis (how many windows reach a position).
- :func:`engine_weight`: a trained weight in the engine kernels' layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evsim.errors import ModelError
from evsim.model.names import Name


class Op(Name):
    CONV = "conv"  # weight [C_out, C_in / groups, K, K], stride, padding, groups
    LINEAR = "linear"  # weight [N_out, N_in] over the source flattened in (C, H, W) order
    AVGPOOL = "avgpool"  # a K x K window of weight 1 / K**2, per channel
    SUMPOOL = "sumpool"  # the same window, weight 1
    IDENTITY = "identity"  # weight 1, same shape


@dataclass(frozen=True)
class Projection:
    """Synapses from population ``source`` (or the input) into a population, by ``op``.

    A conv with ``groups`` g splits the channels into g groups, each output channel fed by the
    ``C_in / g`` input channels of its group (NIR's and torch's ``groups``); depthwise is
    ``groups == C_in``, with ``C_out`` a multiple of it."""

    source: str
    op: Op | str  # an Op; a name that is none stays a str, for Graph.validate to refuse
    weight: str | None = None
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    groups: int = 1  # conv only: input and output channels split into this many groups

    def __post_init__(self):
        if self.op in Op._value2member_map_:
            object.__setattr__(self, "op", Op(self.op))

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "op": str(self.op),  # a plain str: the JSON form holds no enum
            "weight": self.weight,
            "kernel": self.kernel,
            "stride": self.stride,
            "padding": self.padding,
            **({"groups": self.groups} if self.groups != 1 else {}),  # files of ungrouped models stay as they were
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Projection":
        """The projection of a model file's JSON (KeyError, TypeError or ValueError if malformed;
        the keys after ``op`` are absent from files that do not need them)."""
        return cls(
            source=str(data["source"]),
            op=str(data["op"]),
            weight=None if data.get("weight") is None else str(data["weight"]),
            kernel=int(data.get("kernel", 1)),
            stride=int(data.get("stride", 1)),
            padding=int(data.get("padding", 0)),
            groups=int(data.get("groups", 1)),
        )


POOLING = frozenset({Op.AVGPOOL, Op.SUMPOOL})
WINDOWED = frozenset({Op.CONV, Op.AVGPOOL, Op.SUMPOOL})
"""Ops over K x K windows of a (C, H, W) source (kernel, stride; padding for conv only)."""


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output rows (or columns) of a convolution or pooling window over ``size`` inputs."""
    return (size + 2 * padding - kernel) // stride + 1


def padding_of(proj) -> int:
    """The zero padding the op applies (pooling windows are never padded)."""
    return proj.padding if proj.op == Op.CONV else 0


def output_shape(proj, src: tuple[int, ...], dst: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The output shape of ``proj`` applied to a source of shape ``src`` (``dst``: the target
    population's shape, whose channel or unit count a weighted op takes); ModelError if the
    projection cannot apply."""
    if proj.op not in Op._value2member_map_:
        raise ModelError(f"{where}: unknown projection op {proj.op!r}")
    if proj.op == Op.LINEAR:
        if proj.weight is None:
            raise ModelError(f"{where}: linear projection without a weight")
        return (dst[0],) if len(dst) == 1 else (-1,)
    if proj.op == Op.IDENTITY:
        return tuple(src)
    if proj.groups != 1 and proj.op != Op.CONV:
        raise ModelError(f"{where}: only a conv has groups, {proj.op} has {proj.groups}")
    if len(src) != 3:
        raise ModelError(f"{where}: {proj.op} needs a (C, H, W) source, got {src}")
    if proj.kernel < 1 or proj.stride < 1 or proj.padding < 0:
        raise ModelError(f"{where}: kernel and stride must be positive and padding non-negative")
    c, h, w = src
    oh = conv_output_size(h, proj.kernel, proj.stride, padding_of(proj))
    ow = conv_output_size(w, proj.kernel, proj.stride, padding_of(proj))
    if oh < 1 or ow < 1:
        raise ModelError(f"{where}: kernel {proj.kernel} does not fit a {h}x{w} input")
    if proj.op == Op.CONV:
        if proj.weight is None:
            raise ModelError(f"{where}: conv projection without a weight")
        _check_groups(proj.groups, c, dst[0] if len(dst) == 3 else proj.groups, where)
        return (dst[0] if len(dst) == 3 else -1, oh, ow)
    return (c, oh, ow)


def _check_groups(groups: int, c_in: int, c_out: int, where: str) -> None:
    if groups < 1 or c_in % groups or c_out % groups:
        raise ModelError(f"{where}: groups {groups} must be positive and divide the {c_in} input and "
                         f"{c_out} output channels")


def weight_shape(proj, src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[int, ...] | None:
    """The shape of the trained weight ``proj.weight`` (None for the ops without one)."""
    if proj.op == Op.CONV:
        return (dst[0], src[0] // proj.groups, proj.kernel, proj.kernel)
    if proj.op == Op.LINEAR:
        return (dst[0], math.prod(src))
    return None


def dense_macs(proj, src: tuple[int, ...], dst: tuple[int, ...]) -> int:
    """Multiply-accumulates of one dense pass of ``proj`` (one per weight per output it feeds)."""
    if proj.op == Op.LINEAR:
        return math.prod(src) * dst[0]
    if proj.op == Op.IDENTITY:
        return math.prod(src)
    out = output_shape(proj, src, dst, "projection")
    per_output = proj.kernel * proj.kernel * (src[0] // proj.groups if proj.op == Op.CONV else 1)
    return math.prod(dst[:1] + out[1:]) * per_output


def coverage(size: int, kernel: int, stride: int, padding: int) -> np.ndarray:
    """For each of ``size`` positions along one axis, how many of the op's windows reach it (its
    reach along that axis: fewer at the borders, none where the windows cut the axis off)."""
    counts = np.zeros(size, dtype=np.int64)
    for start in range(-padding, -padding + conv_output_size(size, kernel, stride, padding) * stride, stride):
        counts[max(start, 0) : max(start + kernel, 0)] += 1
    return counts


def fan_out(proj, src: tuple[int, ...], dst: tuple[int, ...]) -> np.ndarray:
    """Synaptic operations one spike of each source neuron costs (int64, the source's shape):
    the number of weights the engine adds for it, one per target neuron it reaches."""
    if proj.op == Op.LINEAR:
        return np.full(src, dst[0], dtype=np.int64)
    if proj.op == Op.IDENTITY:
        return np.ones(src, dtype=np.int64)
    c, h, w = src
    rows = coverage(h, proj.kernel, proj.stride, padding_of(proj))
    cols = coverage(w, proj.kernel, proj.stride, padding_of(proj))
    per_pixel = rows[:, None] * cols[None, :] * (dst[0] // proj.groups if proj.op == Op.CONV else 1)
    return np.broadcast_to(per_pixel, (c, h, w)).copy()


def engine_weight(proj, weight: np.ndarray, source_shape: tuple[int, ...]) -> np.ndarray:
    """A trained weight in the engine kernels' layout (evsim.engine.kernels)."""
    if proj.op == Op.CONV:
        # [C_out, C_in / g, K, K] -> [C_in, K, K (reversed), C_out / g]: input channel c's row
        # holds the weights to the C_out / g output channels of its group, c // (C_in / g)
        out_channels, in_per_group, k, _ = weight.shape
        per_group = weight.reshape(proj.groups, out_channels // proj.groups, in_per_group, k, k)
        by_input = per_group.transpose(0, 2, 3, 4, 1).reshape(proj.groups * in_per_group, k, k, -1)
        return np.ascontiguousarray(by_input[:, :, ::-1, :])
    # linear: torch flattens the source in (C, H, W) order; the engine's neurons are channels-last
    c, h, w = tuple(source_shape) if len(source_shape) == 3 else (source_shape[0], 1, 1)
    n_out = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(n_out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, n_out))


def describe(proj) -> str:
    """The projection in a few words (``evsim info``)."""
    if proj.op == Op.CONV:
        groups = f" groups {proj.groups}" if proj.groups != 1 else ""
        return f"conv {proj.kernel}x{proj.kernel}/{proj.stride} pad {proj.padding}{groups} from {proj.source}"
    if proj.op in POOLING:
        return f"{proj.op} {proj.kernel}x{proj.kernel}/{proj.stride} from {proj.source}"
    return f"{proj.op} from {proj.source}"
