"""NIR's Conv2d node and evsim's conv projection, both ways: the node's checks and output shape,
the projection and weight it imports as, and the node a projection exports as."""

from __future__ import annotations

import numpy as np

from evsim.errors import ModelError
from evsim.interop.nir.nodes import METADATA_PREFIX, NirNode, _ints, _pair, _param
from evsim.model.ops import Op, Projection, conv_output_size


def conv_padding(node: NirNode, kernel: int, stride: int) -> int:
    pad = node.params.get("padding", 0)
    if isinstance(pad, str):
        if pad == "valid":
            return 0
        if pad == "same" and stride == 1 and kernel % 2 == 1:
            return (kernel - 1) // 2
        raise ModelError(f"node {node.name!r} (Conv2d): padding {pad!r} with kernel {kernel} and stride "
                         f"{stride} is not a symmetric padding")
    return _pair(node, "padding")


def conv_groups(node: NirNode) -> int:
    """A Conv2d node's channel groups (1 when absent; depthwise when it equals the input channels)."""
    groups = _ints(node, "groups", 1)
    if len(groups) != 1 or groups[0] < 1:
        raise ModelError(f"node {node.name!r} (Conv2d): groups {list(groups)} is not one positive number")
    return groups[0]


def conv_output_shape(node: NirNode, src: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The output shape of a Conv2d node on an input of shape ``src``; ModelError for what evsim
    cannot run (dilation, a non-square kernel, a weight or bias that does not fit)."""
    weight = _param(node, "weight")
    if weight.ndim != 4:
        raise ModelError(f"{where}: weight must be (out, in, height, width), got {list(weight.shape)}")
    groups = conv_groups(node)
    if len(src) != 3 or weight.shape[1] * groups != src[0] or weight.shape[0] % groups:
        raise ModelError(f"{where}: weight {list(weight.shape)} in {groups} group{'s' if groups > 1 else ''} "
                         f"does not take an input of shape {list(src)}")
    if weight.shape[2] != weight.shape[3]:
        raise ModelError(f"{where}: kernel {weight.shape[2]}x{weight.shape[3]} is not square")
    if set(_ints(node, "dilation", 1)) != {1}:
        raise ModelError(f"{where}: dilation {list(_ints(node, 'dilation'))}; evsim has no dilated convolutions")
    if "input_shape" in node.params and tuple(_ints(node, "input_shape")) not in (src[1:], src):
        raise ModelError(f"{where}: declares input {list(_ints(node, 'input_shape'))}, gets {list(src)}")
    if "bias" in node.params and _param(node, "bias").shape not in ((weight.shape[0],), ()):
        raise ModelError(f"{where}: bias {list(_param(node, 'bias').shape)} does not fit {weight.shape[0]} channels")
    k = weight.shape[2]
    stride = _pair(node, "stride", 1)
    pad = conv_padding(node, k, stride)
    oh, ow = conv_output_size(src[1], k, stride, pad), conv_output_size(src[2], k, stride, pad)
    if oh < 1 or ow < 1:
        raise ModelError(f"{where}: kernel {k} does not fit a {src[1]}x{src[2]} input")
    return (weight.shape[0], oh, ow)


def fold_input_scale(weight: np.ndarray, channel_in: np.ndarray | None) -> np.ndarray:
    """A Conv2d weight with a per-input-channel Scale before it folded in (output channel ``o``
    of ``groups`` reads the input channels of its group, ``o // (C_out / groups)``; the groups
    are the input channels over the weight's, as :func:`conv_output_shape` checked)."""
    if channel_in is None:
        return weight
    groups = channel_in.size // weight.shape[1]
    per_output = np.repeat(channel_in.reshape(groups, -1), weight.shape[0] // groups, axis=0)
    return weight * per_output[:, :, None, None].astype(weight.dtype)


def conv_projection(node: NirNode, source: str, weight_name: str, weight: np.ndarray) -> Projection:
    """The conv projection a Conv2d node imports as (its weight under ``weight_name``)."""
    k = weight.shape[2]
    stride = _pair(node, "stride", 1)
    return Projection(source=source, op=Op.CONV, weight=weight_name, kernel=k, stride=stride,
                      padding=conv_padding(node, k, stride), groups=conv_groups(node))


def conv_node(name: str, proj: Projection, weight: np.ndarray, src_shape: tuple[int, ...]) -> NirNode:
    """The Conv2d node a conv projection exports as (a zero bias: NIR's Conv2d has one)."""
    return NirNode(name, "Conv2d", {
        "weight": weight, "bias": np.zeros(weight.shape[0], dtype=weight.dtype),
        "stride": np.array([proj.stride] * 2, dtype=np.int64),
        "padding": np.array([proj.padding] * 2, dtype=np.int64),
        "dilation": np.array([1, 1], dtype=np.int64), "groups": np.int64(proj.groups),
        "input_shape": np.array(src_shape[1:], dtype=np.int64)},
        {METADATA_PREFIX + "weight": proj.weight})
