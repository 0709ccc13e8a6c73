"""The oracle's two references, shared by the engine and neuron-variant tests: the trainer's
dense float64 forward, and synaptic operations recomputed per projection from spike counts."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from evsim.model.graph import Graph, Population
from evsim.training import dense_forward


def dense_reference(graph, weights, train):
    """The dense model's output and per-neuron spike counts for one spike train, in float64."""
    output, counts = dense_forward(graph, weights, train[:, None].astype(np.float64), dtype=torch.float64)
    return np.asarray(output)[0], {name: np.asarray(c)[0] for name, c in counts.items()}


def expected_synops(graph: Graph, pop: Population, counts: dict[str, np.ndarray]) -> int:
    """Synaptic operations of ``pop`` from its sources' per-neuron event counts, per projection kind.

    One operation is one weight (or pooling share) added to one neuron, times the spikes an event
    carries. ``counts[source]`` holds the spikes each source neuron sent (signed for signed input
    events), in the graph's ``(C, H, W)`` or ``(N,)`` layout: conv, ``conv2d(counts,
    ones(C_out, C_in / groups, k, k), groups)``; pooling, one share for every window covering the neuron (windows do
    not mix channels); linear, ``N_out`` per spike; identity, one per spike.
    """
    total = 0.0
    for proj in pop.inputs:
        src = torch.as_tensor(np.abs(counts[proj.source]), dtype=torch.float64)
        if proj.op == "conv":  # every weight of the layer, once per spike of the inputs it reads
            ones = torch.ones((pop.shape[0], src.shape[0] // proj.groups, proj.kernel, proj.kernel), dtype=torch.float64)
            total += F.conv2d(src[None], ones, stride=proj.stride, padding=proj.padding, groups=proj.groups).sum().item()
        elif proj.op in ("avgpool", "sumpool"):
            total += F.avg_pool2d(src[None], proj.kernel, proj.stride, divisor_override=1).sum().item()
        elif proj.op == "linear":
            total += pop.shape[0] * src.sum().item()
        else:
            assert proj.op == "identity"
            total += src.sum().item()
    return int(round(total))


def assert_batch_equals_run(network, inputs, workers: int = 2) -> None:
    """``Network.run_batch`` (every input through every layer in one compiled call per worker,
    workspaces reused from input to input) gives each input exactly ``Network.run``'s result."""
    for x, batched in zip(inputs, network.run_batch(inputs, workers=workers), strict=True):
        alone = network.run(x)
        np.testing.assert_array_equal(batched.output, alone.output)
        assert [layer.to_dict() for layer in batched.layers] == [layer.to_dict() for layer in alone.layers]
        assert batched.input_events == alone.input_events
