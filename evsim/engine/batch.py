"""Step mode for a whole batch of inputs in one compiled call: no Python per input or per layer.

:func:`run_batch` hands every input's events, every layer's tables and one workspace per worker
to :func:`run_recordings`, one call per worker thread for the whole batch (nogil); each input
runs through all layers exactly as :func:`evsim.engine.step.run_layers` runs it (the same kernel
calls in the same order), so results are identical to ``Network.run``. Python's share of a sparse
sample (gathering queues, building records per layer) and the GIL that capped ``run_many``'s
threads are gone from the loop.

Everything a kernel call needs is a slice of a few flat arrays: a :class:`BatchPlan` says where
each layer's piece lies (``M_*`` columns), built once per network; a :class:`BatchWorkspace` holds
the state and queues of ``workers`` inputs at a time, reused across calls.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit

from evsim.engine import kernels
from evsim.engine.counting import LayerCounts, RunResult
from evsim.engine.layers import Layer
from evsim.engine.step import layer_passes, pool_share_of
from evsim.events import SpikeEvents

# meta[layer, ...]: where each layer's pieces lie in the flat arrays
(M_SIZE, M_UNIT, M_UNITS, M_FIRES, M_PASS, M_V, M_U, M_T, M_OUT, M_CAP, M_PROJ_LO, M_PROJ_HI,
 M_W_LO, M_W_HI, M_R_LO, M_R_HI, M_TH_LO, M_TH_HI) = range(18)
META_COLUMNS = 18
PASS_ALONE, PASS_POOLED, PASS_IN_PREVIOUS = 0, 1, 2
INPUT_SOURCE = -1


@dataclass
class BatchPlan:
    """A network's layers as flat arrays (see the ``M_*`` columns) and the sizes of one worker's
    workspace; ``output_layer`` is the read-out (the last layer that does not fire)."""

    meta: np.ndarray  # int64 [L, META_COLUMNS]
    projections: np.ndarray  # every layer's projection table, stacked
    sources: np.ndarray  # int64: each projection's source layer, or INPUT_SOURCE
    weights: np.ndarray
    routes: np.ndarray
    thresholds: np.ndarray  # per-neuron thresholds, stacked
    threshold: np.ndarray  # float64 [L]: the kernels' threshold argument
    log_leak: np.ndarray  # float64 [L]
    rules: np.ndarray  # float64 [L, RULE_COLUMNS]
    tables: np.ndarray  # [L, T + 1] leak tables
    pool_share: np.ndarray  # float64 [L]: what a spike adds to a pooling layer fused with its source
    output_layer: int
    sizes: tuple[int, int, int, int, int]  # V, units, touched/carry, queue, max projections per layer
    gathers: tuple[tuple[int, int], ...]  # layers of several sources: their layer sources' queue sizes, input sources

    def gather_size(self, input_events: int) -> int:
        """Room to gather the sources of any layer of several, with at most ``input_events`` per input."""
        return max((queues + inputs * input_events for queues, inputs in self.gathers), default=0)

    @classmethod
    def build(cls, layers: list[Layer], tables: list[np.ndarray], timesteps: int, dtype) -> "BatchPlan":
        meta = np.zeros((len(layers), META_COLUMNS), dtype=np.int64)
        for i, pooled in layer_passes(layers):
            meta[i, M_PASS] = PASS_POOLED if pooled else PASS_ALONE
            if pooled:
                meta[i + 1, M_PASS] = PASS_IN_PREVIOUS
        names = {layer.name: i for i, layer in enumerate(layers)}
        caps = [timesteps * layer.size + layer.unit if layer.neuron.fires else 1 + layer.unit for layer in layers]
        offsets = {key: 0 for key in ("v", "u", "t", "out", "proj", "w", "r", "th")}
        gathers = []
        for i, layer in enumerate(layers):
            row = meta[i]
            row[M_SIZE], row[M_UNIT], row[M_UNITS], row[M_FIRES] = layer.size, layer.unit, layer.units, layer.neuron.fires
            row[M_CAP] = caps[i]
            for column, key, length in ((M_V, "v", layer.size), (M_U, "u", layer.units), (M_T, "t", layer.units + 1),
                                        (M_OUT, "out", caps[i])):
                row[column] = offsets[key]
                offsets[key] += _aligned(length)
            for lo, key, length in ((M_PROJ_LO, "proj", len(layer.projections)), (M_W_LO, "w", layer.weights.size),
                                    (M_R_LO, "r", layer.routes.size), (M_TH_LO, "th", layer.thresholds.size)):
                row[lo] = offsets[key]
                row[lo + 1] = offsets[key] + length
                offsets[key] += length if key == "proj" else _aligned(length)
            if len(layer.sources) > 1:
                gathers.append((sum(caps[names[s]] for s in layer.sources if s in names),
                                sum(s not in names for s in layer.sources)))
        outputs = [i for i, layer in enumerate(layers) if not layer.neuron.fires]
        return cls(
            meta=meta,
            projections=np.concatenate([layer.projections for layer in layers]),
            sources=np.array([names.get(s, INPUT_SOURCE) for layer in layers for s in layer.sources], dtype=np.int64),
            weights=_stack([layer.weights for layer in layers]),
            routes=_stack([layer.routes for layer in layers]),
            thresholds=_stack([layer.thresholds for layer in layers]),
            threshold=np.array([layer.firing[0] for layer in layers], dtype=np.float64),
            log_leak=np.array([math.log(layer.neuron.leak) for layer in layers], dtype=np.float64),
            rules=np.stack([layer.rule for layer in layers]),
            tables=np.stack([t[: timesteps + 1] for t in tables]),
            pool_share=np.array([pool_share_of(l) if l.unit == 1 and l.projections[0, kernels.P_OP] in
                                 (kernels.OP_AVGPOOL, kernels.OP_SUMPOOL) else 1.0 for l in layers]),
            output_layer=outputs[-1] if outputs else -1,
            gathers=tuple(gathers),
            sizes=(offsets["v"], offsets["u"], offsets["t"], offsets["out"],
                   max(len(layer.projections) for layer in layers)),
        )


ALIGN = 16  # elements: every layer's piece starts on a 64-byte line, as a fresh array of its own
# would (unaligned vectors measured 5-7 % slower than Network.run on the same kernels)


def _aligned(length: int) -> int:
    return -(-length // ALIGN) * ALIGN


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays end to end, each padded to :func:`_aligned` length."""
    out = np.zeros(sum(_aligned(a.size) for a in arrays), dtype=arrays[0].dtype)
    at = 0
    for a in arrays:
        out[at : at + a.size] = a
        at += _aligned(a.size)
    return out


@dataclass
class BatchWorkspace:
    """The state and queues of ``workers`` inputs in flight, each worker's in its own stretch."""

    workers: int
    V: np.ndarray
    t_last: np.ndarray
    stamp: np.ndarray
    touched: np.ndarray
    carry: np.ndarray
    out_index: np.ndarray
    out_count: np.ndarray
    out_offsets: np.ndarray
    gather_offsets: np.ndarray
    gather_index: np.ndarray
    gather_sign: np.ndarray

    @classmethod
    def allocate(cls, plan: BatchPlan, workers: int, timesteps: int, dtype) -> "BatchWorkspace":
        v, u, t, out, q = plan.sizes
        layers = plan.meta.shape[0]
        return cls(
            workers=workers,
            V=np.zeros(workers * v, dtype=dtype),
            t_last=np.zeros(workers * u, dtype=np.int64),
            stamp=np.zeros(workers * u, dtype=np.int64),
            touched=np.zeros(workers * t, dtype=np.int64),
            carry=np.zeros(workers * t, dtype=np.int64),
            out_index=np.zeros(workers * out, dtype=np.int32),
            out_count=np.zeros(workers * out, dtype=dtype),
            out_offsets=np.zeros(workers * layers * (timesteps + 1), dtype=np.int64),
            gather_offsets=np.zeros(workers * q * (timesteps + 1), dtype=np.int64),
            gather_index=np.zeros(workers, dtype=np.int32),
            gather_sign=np.zeros(workers, dtype=dtype),
        )

    def gather_room(self, size: int) -> int:
        """Make room for ``size`` gathered events per worker; the room each worker has."""
        if self.gather_index.size < self.workers * size:
            self.gather_index = np.zeros(self.workers * size, dtype=self.gather_index.dtype)
            self.gather_sign = np.zeros(self.workers * size, dtype=self.gather_sign.dtype)
        return self.gather_index.size // self.workers

    def arrays(self) -> tuple:
        return (self.V, self.t_last, self.stamp, self.touched, self.carry, self.out_index, self.out_count,
                self.out_offsets, self.gather_offsets, self.gather_index, self.gather_sign)


def run_batch(plan: BatchPlan, ws: BatchWorkspace, layers: list[Layer], events: list[SpikeEvents],
              timesteps: int) -> list[RunResult]:
    """Step mode for validated ``events`` (one SpikeEvents per input), ``ws.workers`` at a time on
    Numba's threads; the results ``Network.run`` gives, in input order."""
    n = len(events)
    if not n:
        return []
    in_offsets = np.concatenate([e.step_offsets for e in events]).astype(np.int64)
    in_bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(e.index) for e in events], out=in_bounds[1:])
    in_index = np.concatenate([e.index for e in events]).astype(np.int32, copy=False)
    in_sign = np.concatenate([e.sign for e in events]).astype(ws.V.dtype, copy=False)
    n_layers = len(layers)
    counters = np.zeros(n * n_layers * kernels.COUNTER_COLUMNS, dtype=np.int64)
    out_size = int(plan.meta[plan.output_layer, M_SIZE]) if plan.output_layer >= 0 else 0
    outputs = np.zeros(n * max(out_size, 1), dtype=np.float64)
    workers = min(ws.workers, n)
    room = ws.gather_room(plan.gather_size(int(np.diff(in_bounds).max())))
    v, u, t, out, q = plan.sizes
    sizes = np.array([v, u, t, out, room, q], dtype=np.int64)
    arguments = (workers, timesteps, plan.meta, plan.projections, plan.sources, plan.weights, plan.routes,
                 plan.thresholds, plan.threshold, plan.log_leak, plan.rules, plan.tables, plan.pool_share,
                 plan.output_layer, sizes, in_offsets, in_bounds, in_index, in_sign,
                 *ws.arrays(), counters, outputs)
    if workers == 1:
        run_recordings(0, *arguments)
    else:  # one call per worker for the whole batch: no Python per input, and no GIL held inside
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda w: run_recordings(w, *arguments), range(workers)))
    counters = counters.reshape(n, n_layers, kernels.COUNTER_COLUMNS)
    outputs = outputs.reshape(n, -1)
    results = []
    for b, ev in enumerate(events):
        counts = [LayerCounts.from_counters(layer, counters[b, i], timesteps) for i, layer in enumerate(layers)]
        output = outputs[b, :out_size].copy() if plan.output_layer >= 0 else None
        results.append(RunResult(output=output, layers=counts, input_events=len(ev), window=ev.window))
    return results


@njit(cache=True, nogil=True)
def run_recordings(w, workers, timesteps, meta, projections, sources, weights, routes, thresholds, threshold, log_leak,
                   rules, tables, pool_share, output_layer, sizes, in_offsets, in_bounds, in_index, in_sign,
                   V, t_last, stamp, touched, carry, out_index, out_count, out_offsets,
                   gather_offsets, gather_index, gather_sign, counters, outputs):
    """Worker ``w``'s inputs ``w, w + workers, ...`` through every layer, in its own stretch of the
    workspace arrays, without the GIL."""
    n = in_bounds.shape[0] - 1
    for b in range(w, n, workers):
        _run_one(w, b, timesteps, meta, projections, sources, weights, routes, thresholds, threshold, log_leak,
                 rules, tables, pool_share, output_layer, sizes, in_offsets, in_bounds, in_index, in_sign,
                 V, t_last, stamp, touched, carry, out_index, out_count, out_offsets,
                 gather_offsets, gather_index, gather_sign, counters, outputs)


@njit(cache=True, nogil=True)
def _run_one(w, b, timesteps, meta, projections, sources, weights, routes, thresholds, threshold, log_leak,
             rules, tables, pool_share, output_layer, sizes, in_offsets, in_bounds, in_index, in_sign,
             V, t_last, stamp, touched, carry, out_index, out_count, out_offsets,
             gather_offsets, gather_index, gather_sign, counters, outputs):
    """Input ``b`` through the layers on worker ``w``: :func:`evsim.engine.step.run_steps`."""
    steps = timesteps + 1
    n_layers = meta.shape[0]
    v_size, u_size, t_size, out_size, g_size, q_max = sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5]
    Vw = V[w * v_size : (w + 1) * v_size]
    Vw[:] = 0
    t_last[w * u_size : (w + 1) * u_size] = 0
    stamp[w * u_size : (w + 1) * u_size] = -1
    offsets_w = out_offsets[w * n_layers * steps : (w + 1) * n_layers * steps]
    g_offsets = gather_offsets[w * q_max * steps : (w + 1) * q_max * steps]
    g_index = gather_index[w * g_size : (w + 1) * g_size]
    g_sign = gather_sign[w * g_size : (w + 1) * g_size]
    n_events = np.zeros(n_layers, dtype=np.int64)
    for i in range(n_layers):
        row = meta[i]
        carry[w * t_size + row[M_T]] = 0
        pass_kind = row[M_PASS]
        if pass_kind == PASS_IN_PREVIOUS:
            continue
        # the layer's sources' queues, as evsim.engine.step.gather gives them
        q_lo, q_hi = row[M_PROJ_LO], row[M_PROJ_HI]
        if q_hi - q_lo == 1:
            src_offsets, ev_index, ev_sign = _queue(sources[q_lo], w, b, steps, meta, out_size, in_offsets, in_bounds,
                                                    in_index, in_sign, offsets_w, out_index, out_count, n_events)
            ev_offsets = src_offsets.reshape(1, steps)
        else:
            total = 0
            for q in range(q_lo, q_hi):
                src_offsets, src_index, src_sign = _queue(sources[q], w, b, steps, meta, out_size, in_offsets,
                                                          in_bounds, in_index, in_sign, offsets_w, out_index,
                                                          out_count, n_events)
                k = src_index.shape[0]
                g_offsets[(q - q_lo) * steps : (q - q_lo + 1) * steps] = src_offsets + total
                g_index[total : total + k] = src_index
                g_sign[total : total + k] = src_sign
                total += k
            ev_offsets = g_offsets[: (q_hi - q_lo) * steps].reshape(q_hi - q_lo, steps)
            ev_index = g_index[:total]
            ev_sign = g_sign[:total]
        n_events[i] = _run_pass(i, w, b, pass_kind, meta, projections, weights, routes, thresholds, threshold,
                                log_leak, rules, tables, pool_share, sizes, ev_offsets, ev_index, ev_sign,
                                V, t_last, stamp, touched, carry, out_index, out_count, offsets_w, counters, n_events)
    if output_layer >= 0:
        row = meta[output_layer]
        size, unit = row[M_SIZE], row[M_UNIT]
        v = Vw[row[M_V] : row[M_V] + size]
        kernels.leak_to(v, t_last[w * u_size + row[M_U] : w * u_size + row[M_U] + row[M_UNITS]], unit, timesteps,
                        log_leak[output_layer])
        for j in range(size):
            outputs[b * size + j] = np.float64(v[j]) / timesteps


@njit(cache=True, nogil=True, inline="always")
def _queue(s, w, b, steps, meta, out_size, in_offsets, in_bounds, in_index, in_sign, offsets_w, out_index, out_count,
           n_events):
    """The events of source ``s`` (a layer, or the input) for input ``b`` on worker ``w``: step
    offsets, neuron indices, signs or spike counts."""
    if s == INPUT_SOURCE:
        lo, hi = in_bounds[b], in_bounds[b + 1]
        return in_offsets[b * steps : (b + 1) * steps], in_index[lo:hi], in_sign[lo:hi]
    base = w * out_size + meta[s, M_OUT]
    return offsets_w[s * steps : (s + 1) * steps], out_index[base : base + n_events[s]], out_count[base : base + n_events[s]]


@njit(cache=True, nogil=True)
def _run_pass(i, w, b, pass_kind, meta, projections, weights, routes, thresholds, threshold, log_leak, rules, tables,
              pool_share, sizes, ev_offsets, ev_index, ev_sign, V, t_last, stamp, touched, carry, out_index,
              out_count, offsets_w, counters, n_events):
    """Layer ``i`` (and, for a pooled pass, layer ``i + 1``) of input ``b`` on worker ``w``: the
    kernel call of evsim.engine.step.run_layers; the layer's output events."""
    steps = ev_offsets.shape[1]
    v_size, u_size, t_size, out_size = sizes[0], sizes[1], sizes[2], sizes[3]
    n_layers = meta.shape[0]
    row = meta[i]
    st = _state(row, w, v_size, u_size, t_size, out_size, V, t_last, stamp, touched, carry, out_index, out_count)
    layer_counters = counters[(b * n_layers + i) * kernels.COUNTER_COLUMNS : (b * n_layers + i + 1) * kernels.COUNTER_COLUMNS]
    layer_offsets = offsets_w[i * steps : (i + 1) * steps]
    proj = projections[row[M_PROJ_LO] : row[M_PROJ_HI]]
    wts = weights[row[M_W_LO] : row[M_W_HI]]
    rts = routes[row[M_R_LO] : row[M_R_HI]]
    if pass_kind == PASS_POOLED:
        prow = meta[i + 1]
        pst = _state(prow, w, v_size, u_size, t_size, out_size, V, t_last, stamp, touched, carry, out_index, out_count)
        n_out, n_pool = kernels.run_population_steps_pooled(
            st[0], row[M_UNIT], st[1], st[2], st[3], 0, tables[i], log_leak[i], threshold[i],
            proj, wts, rts, ev_offsets, ev_index, ev_sign, st[5], st[6], layer_offsets, layer_counters,
            pst[0], pst[1], pst[2], pst[3], tables[i + 1], log_leak[i + 1], threshold[i + 1],
            routes[prow[M_R_LO] : prow[M_R_HI]], pool_share[i + 1], pst[5], pst[6],
            offsets_w[(i + 1) * steps : (i + 2) * steps],
            counters[(b * n_layers + i + 1) * kernels.COUNTER_COLUMNS : (b * n_layers + i + 2) * kernels.COUNTER_COLUMNS],
        )
        n_events[i + 1] = n_pool
        return n_out
    return kernels.run_population_steps(
        st[0], row[M_UNIT], st[1], st[2], st[3], st[4], 0, tables[i], log_leak[i], threshold[i],
        thresholds[row[M_TH_LO] : row[M_TH_HI]], rules[i], row[M_FIRES] != 0, proj, wts, rts,
        ev_offsets, ev_index, ev_sign, st[5], st[6], layer_offsets, layer_counters,
    )


@njit(cache=True, nogil=True, inline="always")
def _state(row, w, v_size, u_size, t_size, out_size, V, t_last, stamp, touched, carry, out_index, out_count):
    """A layer's state and queue on worker ``w``: the arrays of evsim.engine.layers.LayerState and
    of the step Workspace, as slices."""
    v0 = w * v_size + row[M_V]
    u0 = w * u_size + row[M_U]
    t0 = w * t_size + row[M_T]
    o0 = w * out_size + row[M_OUT]
    units = row[M_UNITS]
    return (V[v0 : v0 + row[M_SIZE]], t_last[u0 : u0 + units], stamp[u0 : u0 + units],
            touched[t0 : t0 + units + 1], carry[t0 : t0 + units + 1],
            out_index[o0 : o0 + row[M_CAP]], out_count[o0 : o0 + row[M_CAP]])
