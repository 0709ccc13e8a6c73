"""Event-driven vs dense simulation of the same network on the same input spike trains.

:func:`benchmark` runs, in one process, evsim's step mode, evsim's asynchronous mode, and the
trainer's dense PyTorch simulator at batch 1 and at batch 64 (same T, same threads, inference
mode), and the *dense floor* (:func:`dense_floor`: the same convolutions and linear layers with
no neuron recurrence, at its best batch), interleaved round by round so that machine noise hits all alike. Compile time is measured
apart (the first engine call), and a bare Numba scatter-add kernel gives the machine's ceiling
for synaptic operations per second. Ratios are taken within this one run, never against figures
from elsewhere.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit

from evsim.runtime.inputs import sample_inputs
from evsim.engine import kernels
from evsim.errors import InputError

# Numba's default OpenMP threading layer fought torch's threads in one process: dense batch 1 ran
# at 10-11/s by default and 41-45/s with the work-queue layer (issue 27). A user's choice stands.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


@njit(cache=True, nogil=True)
def _ceiling_kernel(V, W, bases, woffs, run):
    adds = 0
    for e in range(bases.shape[0]):
        v = V[bases[e] : bases[e] + run]
        w = W[woffs[e] : woffs[e] + run]
        for i in range(run):
            v[i] += w[i]
        adds += run
    return adds


def ceiling_synops_per_s(run: int, state_size: int = 23_120, events: int = 200_000, repeats: int = 3, seed: int = 0) -> float:
    """Accumulates per second of a bare scatter-add: contiguous runs of ``run`` weights added at
    random places of a float32 membrane of ``state_size``, on one core. The engine's ceiling."""
    rng = np.random.default_rng(seed)
    V = np.zeros(state_size + run, dtype=np.float32)
    W = rng.standard_normal(65_536 + run).astype(np.float32)
    bases = rng.integers(0, state_size, events)
    woffs = rng.integers(0, 65_536, events)
    _ceiling_kernel(V, W, bases[:10], woffs[:10], run)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        adds = _ceiling_kernel(V, W, bases, woffs, run)
        best = max(best, adds / (time.perf_counter() - start))
    return best


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class BenchInputs:
    """The same inputs in each simulator's own form: dense frames ``[T, N, C, H, W]`` for torch;
    per-sample inputs as a user hands them to the engine (raw events for recordings, the same
    spike trains for images), and those binned into the step engine's per-step event lists
    (:class:`~evsim.events.SpikeEvents`), the frames' events exactly."""

    frames: np.ndarray
    engine_inputs: list
    step_events: list
    labels: np.ndarray


def prepare_inputs(samples, network, seed: int = 0) -> BenchInputs:
    engine_inputs = list(sample_inputs(samples, network, seed))
    if samples.recordings is not None:
        frames = samples.inputs(np.arange(len(samples)), network.timesteps, np.random.default_rng(seed))
    else:
        frames = np.stack(engine_inputs, axis=1)
    step_events = [network.encode(x) for x in engine_inputs]
    return BenchInputs(frames.astype(np.float32), engine_inputs, step_events, np.asarray(samples.labels))


def dense_floor(graph, weights: dict):
    """The network's convolutions, pooling and linear layers alone, on every time step at once
    (no neuron recurrence, so the steps fold into the batch): what any dense simulation of it pays
    at least. A callable on frames ``[T, B, C, H, W]`` (a torch tensor)."""
    import torch

    from evsim.training.network import dense_projection

    params = {name: torch.as_tensor(np.asarray(w), dtype=torch.float32) for name, w in weights.items()}

    def forward(frames):
        values = {"input": frames.flatten(0, 1)}
        for pop in graph.populations:
            values[pop.name] = sum(dense_projection(proj, values[proj.source], params.get(proj.weight))
                                  for proj in pop.inputs)
        return values[graph.populations[-1].name]

    return forward


def benchmark(network, samples, rounds: int = 3, threads: int = 2, seed: int = 0, progress=None) -> dict:
    """Time ``network`` (an evsim Network) in step and async mode against the dense PyTorch model
    of the same graph and weights, at batch 1 and 64, on the same ``samples``."""
    if rounds < 1 or threads < 1 or len(samples) < 1:
        raise InputError(f"need at least one round, thread and sample; got {rounds}, {threads}, {len(samples)}")
    import torch

    from evsim.training import SpikingNetwork
    from evsim.training.trainer import configure_torch

    configure_torch(threads)  # as train/eval do: else each >32 MB activation is mmapped and page-faulted afresh
    dense = SpikingNetwork(network.graph, init=False)
    dense.load_weights(network.weights)
    dense = dense.float().eval()
    inputs = prepare_inputs(samples, network, seed)
    n = len(inputs.labels)

    compile_start = time.perf_counter()
    network.run(inputs.step_events[0])
    list(network.run_many(inputs.step_events[:threads], workers=threads))  # and its batch workspace
    network.run(inputs.engine_inputs[0], mode="async")
    compile_s = time.perf_counter() - compile_start

    frames = torch.from_numpy(inputs.frames)
    floor = dense_floor(network.graph, network.weights)
    with torch.inference_mode():
        # warm-up at both batch shapes: allocator, thread pool, oneDNN primitives per shape
        for model in (dense, floor):
            model(frames[:, :1])
            model(frames[:, :64])
        timings, predictions, synops, rss = _timed_rounds(_contenders(network, dense, floor, inputs, frames, threads),
                                                          rounds, progress)
    async_synops = synops["async"]
    synops = synops["step"]
    rate = {k: rounds * n / sum(v) for k, v in timings.items()}
    # the spread across rounds shows how steady the machine was (a busy one varies by 10x)
    spread = {k: {"min": min(n / t for t in v), "max": max(n / t for t in v)} for k, v in timings.items()}
    ceiling = ceiling_synops_per_s(_typical_run(network))
    synops_per_s_1thread = rounds * synops / sum(timings["step_1thread"])
    best_dense = max(rate["dense_batch1"], rate["dense_batch64"])
    floor_key = max(("floor_batch1", "floor_batch64"), key=lambda k: rate[k])
    return {
        "model": network.name,
        "samples": n,
        "rounds": rounds,
        "threads": threads,
        "timesteps": network.timesteps,
        "compile_or_cache_load_s": compile_s,
        "event_samples_per_s": rate["step"],
        "event_from_raw_samples_per_s": rate["step_raw"],
        "event_1thread_samples_per_s": rate["step_1thread"],
        "async_samples_per_s": rate["async"],
        "dense_batch1_samples_per_s": rate["dense_batch1"],
        "dense_batch64_samples_per_s": rate["dense_batch64"],
        "dense_batch64_actual_batch": min(64, n),
        "dense_floor_samples_per_s": rate[floor_key],
        "dense_floor_batch": 1 if floor_key == "floor_batch1" else min(64, n),
        "spread_samples_per_s": {name: spread[key] for name, key in (
            ("event_samples_per_s", "step"), ("event_from_raw_samples_per_s", "step_raw"),
            ("event_1thread_samples_per_s", "step_1thread"),
            ("async_samples_per_s", "async"), ("dense_batch1_samples_per_s", "dense_batch1"),
            ("dense_batch64_samples_per_s", "dense_batch64"), ("dense_floor_samples_per_s", floor_key))},
        "speedup_vs_dense_batch1": rate["step"] / rate["dense_batch1"],
        "speedup_vs_dense_batch64": rate["step"] / rate["dense_batch64"],
        "speedup_vs_best_dense": rate["step"] / best_dense,
        "speedup_vs_best_dense_from_raw": rate["step_raw"] / best_dense,
        "speedup_vs_dense_floor": rate["step"] / rate[floor_key],
        "synops_per_sample": synops / n,
        "async_synops_per_sample": async_synops / n,
        "synops_per_s": rounds * synops / sum(timings["step"]),
        "synops_per_s_per_core": synops_per_s_1thread,
        "ceiling_synops_per_s": ceiling,
        "fraction_of_ceiling": synops_per_s_1thread / ceiling,
        "peak_rss_mb_after": rss,
        "accuracy": {k: float(np.mean(v == inputs.labels)) for k, v in predictions.items()},
        "step_equals_dense_predictions": float(np.mean(
            (predictions["step"] == predictions["dense_batch64"]) & (predictions["step_raw"] == predictions["step"]))),
    }


def _contenders(network, dense, floor, inputs, frames, threads: int) -> dict:
    """What bench times, in the order it runs them each round: name -> (run every sample once,
    whether its predictions and synops are kept, whether the peak RSS is read after it). Step
    mode and torch both start from binned inputs (SpikeEvents, frames), made outside the timing;
    "step_raw" also times step mode from the raw events, binning included."""
    n = len(inputs.labels)
    engine = network.run_many
    return {
        "step": (lambda: list(engine(inputs.step_events, workers=threads)), True, True),
        "step_raw": (lambda: list(engine(inputs.engine_inputs, workers=threads)), True, False),
        "step_1thread": (lambda: list(engine(inputs.step_events, workers=1)), False, False),
        "async": (lambda: list(engine(inputs.engine_inputs, workers=threads, mode="async")), True, True),
        "dense_batch1": (lambda: [dense(frames[:, i : i + 1]) for i in range(n)], True, True),
        "dense_batch64": (lambda: [dense(frames[:, i : i + 64]) for i in range(0, n, 64)], True, True),
        # the floor: the same convolutions, pooling and linears with no recurrence; its best batch is reported
        "floor_batch1": (lambda: [floor(frames[:, i : i + 1]) for i in range(n)], False, False),
        "floor_batch64": (lambda: [floor(frames[:, i : i + 64]) for i in range(0, n, 64)], False, False),
    }


def _timed_rounds(contenders: dict, rounds: int, progress) -> tuple[dict, dict, dict, dict]:
    """Every contender once per round, in turn: wall times per round, and the last round's
    predictions, synops (engine runs) and peak RSS."""
    timings = {name: [] for name in contenders}
    predictions, synops, rss = {}, {}, {}
    for _ in range(rounds):
        for name, (run, keep, read_rss) in contenders.items():
            start = time.perf_counter()
            outputs = run()
            timings[name].append(time.perf_counter() - start)
            if keep and name.startswith("dense"):
                predictions[name] = np.concatenate([out.argmax(1).numpy() for out in outputs])
            elif keep:
                predictions[name] = np.array([r.prediction for r in outputs])
                synops[name] = sum(r.synops for r in outputs)
            if read_rss:
                rss[name] = peak_rss_mb()
        if progress:
            progress()
    return timings, predictions, synops, rss


def _typical_run(network) -> int:
    """The run length of the engine's busiest projection: K * C_out for a stride-1 conv."""
    runs = []
    for layer in network.layers:
        for row in layer.projections:
            if row[kernels.P_OP] == kernels.OP_CONV and row[kernels.P_STRIDE] == 1:
                runs.append(int(row[kernels.P_KERNEL] * row[kernels.P_DST_C]))
            elif row[kernels.P_OP] in (kernels.OP_CONV, kernels.OP_LINEAR):
                runs.append(int(row[kernels.P_DST_C]))
    return max(runs) if runs else 64
