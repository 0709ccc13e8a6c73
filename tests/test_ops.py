"""evsim.model.ops, the one home of a projection's facts, against independent formulas: the
oracle's synaptic operations (tests/oracle.py), torch's layers (weight shapes, output shapes) and
autograd (fan-out as the gradient of the summed unit-weight projection)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from evsim.errors import ModelError  # noqa: E402
from evsim.model.graph import Graph, Population, Projection  # noqa: E402
from evsim.model.ops import Op, dense_macs, fan_out, output_shape, weight_shape  # noqa: E402
from evsim.training.regularizers import fan_outs, synops_per_sample  # noqa: E402
from oracle import expected_synops  # noqa: E402


def unit_projection(proj, source: torch.Tensor, dst) -> torch.Tensor:
    """``proj`` with every weight 1 (pooling undivided), in torch."""
    if proj.op == "conv":
        ones = source.new_ones((dst[0], source.shape[1] // proj.groups, proj.kernel, proj.kernel))
        return F.conv2d(source, ones, stride=proj.stride, padding=proj.padding, groups=proj.groups)
    if proj.op == "linear":
        return F.linear(source.flatten(1), source.new_ones((dst[0], source[0].numel())))
    if proj.op in ("avgpool", "sumpool"):
        return F.avg_pool2d(source, proj.kernel, proj.stride, divisor_override=1)
    return source


@st.composite
def projections(draw):
    op = draw(st.sampled_from(list(Op)))
    src = (draw(st.integers(1, 4)), draw(st.integers(3, 9)), draw(st.integers(3, 9)))
    kernel = draw(st.integers(1, 3)) if op != Op.LINEAR and op != Op.IDENTITY else 1
    stride = draw(st.integers(1, 3)) if kernel > 1 else 1
    padding = draw(st.integers(0, kernel // 2)) if op == Op.CONV else 0
    weight = "w" if op in (Op.CONV, Op.LINEAR) else None
    # a conv may be grouped (depthwise: a group per input channel), its outputs a multiple of the groups
    groups = draw(st.sampled_from([g for g in range(1, src[0] + 1) if src[0] % g == 0])) if op == Op.CONV else 1
    proj = Projection("input", op, weight, kernel, stride, padding, groups)
    out = tuple(unit_projection(proj, torch.zeros((1, *src), dtype=torch.float64),
                                (groups * draw(st.integers(1, 4)),)).shape[1:])
    return proj, src, out


@given(projections(), st.integers(0, 2**16))
def test_the_op_table_agrees_with_torch_autograd_and_the_oracle(case, seed):
    proj, src, dst = case
    assert output_shape(proj, src, dst, "p") == dst
    source = torch.zeros((1, *src), dtype=torch.float64, requires_grad=True)
    out = unit_projection(proj, source, dst)
    (grad,) = torch.autograd.grad(out.sum(), source)
    fans = fan_out(proj, src, dst)
    np.testing.assert_array_equal(fans, grad[0].numpy())
    if weight_shape(proj, src, dst) is not None:  # the weight torch's layer holds for this op
        layer = (torch.nn.Conv2d(src[0], dst[0], proj.kernel, groups=proj.groups) if proj.op == Op.CONV
                 else torch.nn.Linear(int(np.prod(src)), dst[0]))
        assert weight_shape(proj, src, dst) == tuple(layer.weight.shape)
    per_output = {Op.CONV: src[0] // proj.groups * proj.kernel ** 2, Op.LINEAR: int(np.prod(src)), Op.IDENTITY: 1}.get(proj.op, proj.kernel ** 2)
    assert dense_macs(proj, src, dst) == int(np.prod(dst)) * per_output
    # the oracle's independent count of synaptic operations, for random spike counts
    counts = np.random.default_rng(seed).integers(0, 4, src)
    graph = Graph(src, (Population("out", "output", dst, (proj,)),), timesteps=1)
    assert expected_synops(graph, graph.output, {"input": counts}) == int((fans * counts).sum())


def test_the_regulariser_prices_overlapping_sum_pooling():
    """Issue 29: the regulariser had no sumpool branch and priced every spike at 1, right only for
    tiled windows with no cut-off rows."""
    pool = Projection("input", "sumpool", kernel=3, stride=2)
    graph = Graph((1, 6, 6), (Population("p", "pool", (1, 2, 2), (pool,), threshold=1.0, leak=1.0,
                                         reset="subtract", spikes_per_step=None, fire_test=">="),
                              Population("out", "output", (2,), (Projection("p", "linear", "w"),))), timesteps=1)
    counts = np.arange(36).reshape(1, 6, 6) % 3
    inputs = torch.as_tensor(counts, dtype=torch.float64)[None, None]  # [T, B, C, H, W]
    fans = fan_outs(graph)
    assert fans["input"][0, 2, 2] == 4 and fans["input"][0, 5, 0] == 0  # two windows each way; cut off
    priced = synops_per_sample(inputs, {}, {"input": fans["input"]})
    assert int(priced[0]) == expected_synops(graph, graph.populations[0], {"input": counts})


def test_groups_that_do_not_divide_the_channels_are_refused():
    for groups, out in ((8, 8), (3, 6), (0, 4), (2, 3)):
        proj = Projection("input", "conv", "w", 3, 1, 1, groups)
        with pytest.raises(ModelError, match=rf"c1: groups {groups} must be positive and divide the 4 input and {out} output"):
            Graph((4, 5, 5), (Population("c1", "lif", (out, 5, 5), (proj,)),
                              Population("out", "output", (2,), (Projection("c1", "linear", "w2"),))), 2).validate()
    with pytest.raises(ModelError, match="only a conv has groups, avgpool has 2"):
        output_shape(Projection("input", "avgpool", kernel=2, stride=2, groups=2), (4, 4, 4), (4, 2, 2), "p")
