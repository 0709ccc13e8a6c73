"""Numba kernels of the event engine: plain arrays in, plain arrays out.

One call runs one population over a whole input window. Its input is the spike events of the
populations that project into it, each a bucket queue (CSR by time step, or time-sorted for the
asynchronous mode); its output is its own spike events in the same form, the next population's
queue. The network is feed-forward, so running population after population over the window gives
exactly what running step after step through all populations gives.

Layouts (chosen so that one event's fan-out is a few contiguous runs of adds):
- membrane ``V``: channels-last, neuron ``(y, x, c)`` of a ``C x H x W`` population at
  ``(y * W + x) * C + c``; a 1-D population of ``N`` neurons is ``N x 1 x 1``.
- a *unit* is what leak, touch-tracking and threshold tests work on: a pixel (the ``C`` neurons
  at one ``(y, x)``, since every conv or linear event reaches all channels of the pixels it
  touches), or a single neuron in layers fed only by pooling (a pooling event reaches one channel).
- conv weights ``[C_in, K, K, C_out]`` with ``kx`` reversed, so that for stride 1 the ``kx``
  sweep of one event is a single run of ``K * C_out`` adds over consecutive pixels.
- linear weights ``[N_in, N_out]``, rows in the source's channels-last order.
- tiled pooling (stride = kernel) routes each source neuron through a lookup table
  (``routes``) to its one target neuron, instead of decoding its coordinates.

Projection table rows (int64): see the ``P_*`` column indices below.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

OP_CONV, OP_LINEAR, OP_AVGPOOL, OP_IDENTITY = 0, 1, 2, 3

P_OP, P_SRC_C, P_SRC_H, P_SRC_W, P_DST_C, P_DST_H, P_DST_W = 0, 1, 2, 3, 4, 5, 6
P_KERNEL, P_STRIDE, P_PADDING, P_WEIGHT_OFFSET, P_ROUTE_OFFSET = 7, 8, 9, 10, 11
PROJECTION_COLUMNS = 12

# counters[...] layout, one row per population run
C_INPUT_EVENTS, C_SYNOPS, C_NEURON_UPDATES, C_SPIKES = 0, 1, 2, 3
COUNTER_COLUMNS = 4


@njit(cache=True, nogil=True, inline="always")
def _touch(V, C, pix, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak):
    """First add to a pixel under ``tag``: apply its pending leak and list it as touched.

    Callers test ``stamp[pix] != tag`` inline and call this only on a first touch: the call is
    the rare path. The leak over ``gap = now - t_last`` is ``leak_table[gap]`` when a table is
    given (step mode, whole steps), else ``exp(log_leak * gap)``; a leak of 1 costs nothing.
    """
    stamp[pix] = tag
    touched_list[n_touched] = pix
    gap = now - t_last[pix]
    t_last[pix] = now
    if gap > 0 and log_leak != 0.0:
        if leak_table.shape[0] > 0:
            factor = leak_table[int(gap)]
        else:
            factor = math.exp(log_leak * gap)
        v = V[pix * C : (pix + 1) * C]
        for co in range(C):
            v[co] *= factor
    return n_touched + 1


@njit(cache=True, nogil=True, inline="always")
def _any_above(v, threshold):
    # a branch-free max vectorizes; spikes are rare, so most pixels leave here
    top = v[0]
    for i in range(1, v.shape[0]):
        top = max(top, v[i])
    return top > threshold


@njit(cache=True, nogil=True, inline="always")
def _clamp_refractory(v, refractory_end, now, threshold):
    """Zero the neurons of ``v`` still refractory at ``now``; whether any other is above threshold.

    Branch-free selects, so it vectorizes like :func:`_any_above`.
    """
    top = -math.inf
    for i in range(v.shape[0]):
        value = 0.0 if now < refractory_end[i] else v[i]
        v[i] = value
        top = max(top, value)
    return top > threshold


@njit(cache=True, nogil=True, inline="always")
def _fire(v, base, threshold, out_index, n_out):
    """Emit a spike for every neuron of ``v`` (neurons ``base ...``) above threshold and reset it.

    Branch-free: the index is written at ``n_out`` whether or not the neuron fires, and the
    count only moves when it does (the output buffer has one unit of slack for this), so
    unpredictable spikes cost no mispredicted branches.
    """
    for co in range(v.shape[0]):
        value = v[co]
        fired = value > threshold
        out_index[n_out] = base + co
        n_out += fired
        v[co] = 0.0 if fired else value
    return n_out


@njit(cache=True, nogil=True, inline="always")
def _add_run(v, w, sign):
    # slices, not offsets into whole arrays: LLVM then vectorizes the loop
    for i in range(v.shape[0]):
        v[i] += sign * w[i]


@njit(cache=True, nogil=True, inline="always")
def _geometry(proj):
    """A projection's table row as a tuple of scalars: kept in registers, never reloaded after
    a store to V (which, as far as the compiler knows, might alias the table)."""
    return (
        proj[P_OP], proj[P_SRC_C], proj[P_SRC_W], proj[P_DST_C], proj[P_DST_H], proj[P_DST_W],
        proj[P_WEIGHT_OFFSET], proj[P_KERNEL], proj[P_STRIDE], proj[P_PADDING], proj[P_ROUTE_OFFSET],
    )


@njit(cache=True, nogil=True, inline="always")
def _drain(V, geometry, unit, weights, routes, ev_index, ev_sign, lo, hi, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak):
    """Add the weights of events ``lo:hi`` (source neurons ``ev_index``) to the neurons they reach.

    Each *unit* reached is first brought up to time ``now`` (lazy leak) and listed as touched
    under ``tag``: a unit is a pixel (``unit == C``) or, in populations fed only by pooling,
    a single neuron (``unit == 1``), since a pooling event reaches one channel only. The projection kind is decided once, outside the per-event loops. Returns the
    number of synaptic operations performed (one per weight added) and the new touched count.
    """
    op, src_c, src_w, C, dst_h, dst_w, woff, k, s, pad, roff = geometry
    synops = 0
    if op == OP_CONV:
        for e in range(lo, hi):
            j = ev_index[e]
            sign = ev_sign[e]
            c = j % src_c
            pix = j // src_c
            y = pix // src_w
            x = pix - y * src_w
            for ky in range(k):
                oy_num = y + pad - ky
                if oy_num < 0 or oy_num % s != 0:
                    continue
                oy = oy_num // s
                if oy >= dst_h:
                    continue
                row = woff + (c * k + ky) * k * C
                if s == 1:
                    # kx = kx_hi .. kx_lo reach ox = x + pad - kx, consecutive pixels: one run
                    kx_lo = max(0, x + pad - dst_w + 1)
                    kx_hi = min(k - 1, x + pad)
                    if kx_lo > kx_hi:
                        continue
                    ox0 = x + pad - kx_hi
                    n = (kx_hi - kx_lo + 1) * C
                    for ox in range(ox0, ox0 + kx_hi - kx_lo + 1):
                        if stamp[oy * dst_w + ox] != tag:
                            n_touched = _touch(V, C, oy * dst_w + ox, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak)
                    base = (oy * dst_w + ox0) * C
                    wrow = row + (k - 1 - kx_hi) * C
                    _add_run(V[base : base + n], weights[wrow : wrow + n], sign)
                    synops += n
                else:
                    for kx in range(k):
                        ox_num = x + pad - kx
                        if ox_num < 0 or ox_num % s != 0:
                            continue
                        ox = ox_num // s
                        if ox >= dst_w:
                            continue
                        opix = oy * dst_w + ox
                        if stamp[opix] != tag:
                            n_touched = _touch(V, C, opix, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak)
                        wrow = row + (k - 1 - kx) * C
                        _add_run(V[opix * C : (opix + 1) * C], weights[wrow : wrow + C], sign)
                        synops += C
    elif op == OP_AVGPOOL and roff >= 0:
        # tiled pooling: each source neuron feeds one target, looked up in ``routes`` (-1: none)
        share = 1.0 / (k * k)
        for e in range(lo, hi):
            neuron = routes[roff + ev_index[e]]
            if neuron < 0:
                continue
            u = neuron if unit == 1 else neuron // unit
            if stamp[u] != tag:
                n_touched = _touch(V, unit, u, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak)
            V[neuron] += ev_sign[e] * share
            synops += 1
    elif op == OP_AVGPOOL:
        share = 1.0 / (k * k)
        for e in range(lo, hi):
            j = ev_index[e]
            c = j % src_c
            pix = j // src_c
            y = pix // src_w
            x = pix - y * src_w
            # output rows whose window [oy*s, oy*s + k) contains y
            oy_lo = max(0, (y - k + s + s * k) // s - k)
            oy_hi = min(dst_h - 1, y // s)
            ox_lo = max(0, (x - k + s + s * k) // s - k)
            ox_hi = min(dst_w - 1, x // s)
            for oy in range(oy_lo, oy_hi + 1):
                for ox in range(ox_lo, ox_hi + 1):
                    neuron = (oy * dst_w + ox) * C + c
                    u = neuron if unit == 1 else neuron // unit
                    if stamp[u] != tag:
                        n_touched = _touch(V, unit, u, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak)
                    V[neuron] += ev_sign[e] * share
                    synops += 1
    elif op == OP_LINEAR:
        for e in range(lo, hi):
            j = ev_index[e]
            if stamp[0] != tag:
                n_touched = _touch(V, C, 0, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak)
            _add_run(V[:C], weights[woff + j * C : woff + (j + 1) * C], ev_sign[e])
        synops += (hi - lo) * C
    else:  # OP_IDENTITY
        for e in range(lo, hi):
            j = ev_index[e]
            u = j // unit
            if stamp[u] != tag:
                n_touched = _touch(V, unit, u, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak)
            V[j] += ev_sign[e]
        synops += hi - lo
    return synops, n_touched


@njit(cache=True, nogil=True)
def run_population_steps(
    V, unit, t_last, stamp, touched_list, leak_table, log_leak, threshold, fires,
    projections, weights, routes, ev_offsets, ev_index, ev_sign,
    out_index, out_offsets, counters,
):
    """Run one population over all time steps of a window (step mode).

    ``ev_offsets[q, t]:ev_offsets[q, t + 1]`` are the events that projection ``q`` delivers at
    step ``t`` (indices into ``ev_index``/``ev_sign``). All events of a step are accumulated
    before any threshold test, as in the dense model; only touched pixels are tested.
    Fills ``out_index`` (which needs ``unit`` elements of slack, see _fire) with spikes (channels-last neuron index) and ``out_offsets[t + 1]`` with
    the running spike count. ``V`` holds each neuron's potential after its last update, before
    the leak of the steps since ``t_last``; ``stamp`` must start below 0.
    """
    n_proj = projections.shape[0]
    timesteps = ev_offsets.shape[1] - 1
    n_out = 0
    synops = 0
    n_in = 0
    updates = 0
    out_offsets[0] = 0
    for t in range(timesteps):
        n_touched = 0
        for q in range(n_proj):
            geometry = _geometry(projections[q])
            lo = ev_offsets[q, t]
            hi = ev_offsets[q, t + 1]
            n_in += hi - lo
            added, n_touched = _drain(
                V, geometry, unit, weights, routes, ev_index, ev_sign, lo, hi,
                t_last, stamp, touched_list, n_touched, t, t, leak_table, log_leak,
            )
            synops += added
        if fires:
            for i in range(n_touched):
                base = touched_list[i] * unit
                if _any_above(V[base : base + unit], threshold):
                    n_out = _fire(V[base : base + unit], base, threshold, out_index, n_out)
        updates += n_touched * unit
        out_offsets[t + 1] = n_out
    counters[C_INPUT_EVENTS] += n_in
    counters[C_SYNOPS] += synops
    counters[C_NEURON_UPDATES] += updates
    counters[C_SPIKES] += n_out
    return n_out


@njit(cache=True, nogil=True)
def leak_to(V, t_last, C, t_end, log_leak):
    """Apply the pending leak of every pixel up to ``t_end`` (used once, for the readout)."""
    for pix in range(t_last.shape[0]):
        gap = t_end - t_last[pix]
        if gap > 0:
            factor = math.exp(log_leak * gap)
            for co in range(C):
                V[pix * C + co] *= factor
            t_last[pix] = t_end



@njit(cache=True, nogil=True)
def run_population_async(
    V, unit, t_last, stamp, touched_list, tag, log_leak_per_us, threshold, fires, delay_us,
    refractory_us, refractory_end, unit_refractory_end,
    projections, weights, routes, ev_bounds, heads, ev_time, ev_index, ev_sign,
    out_time, out_index, counters,
):
    """Run one population over time-sorted events in continuous time (asynchronous mode).

    Projection ``q`` delivers ``ev_*[heads[q]:ev_bounds[q, 1]]`` in time order; the sources are
    merged by time. Each arrival leaks the neurons it reaches from their last update
    (``exp(log_leak_per_us * dt)``) and adds its weights; the reached neurons are tested at once,
    and a spike leaves at the arrival's time plus ``delay_us``. Events with the *same* timestamp
    arrive together: all are added before the test, so the result never depends on the order in
    which simultaneous spikes were emitted. A neuron that fired is refractory for
    ``refractory_us``: charge reaching it before ``refractory_end`` is discarded (its membrane
    stays at 0), so it fires at most once per refractory period, as a step-mode neuron fires at
    most once per step (``unit_refractory_end`` is the latest end in each unit, which lets
    units with no refractory neuron take the fast test). Stops early when ``out_*`` could overflow; ``heads``
    then says where to resume. Returns ``(spikes written, next tag)``; ``tag`` numbers arrivals
    across calls so that state carries over from one chunk of a stream to the next.
    """
    n_proj = projections.shape[0]
    empty_table = np.zeros(0, dtype=V.dtype)
    n_out = 0
    synops = 0
    n_in = 0
    updates = 0
    capacity = out_index.shape[0] - unit  # the rest is _fire's slack
    while True:
        now = math.inf
        for r in range(n_proj):
            if heads[r] < ev_bounds[r, 1]:
                now = min(now, ev_time[heads[r]])
        if now == math.inf:
            break
        # worst case, the arrival makes every neuron it reaches fire
        reach = 0
        for r in range(n_proj):
            e = heads[r]
            while e < ev_bounds[r, 1] and ev_time[e] == now:
                reach += _max_reach(projections[r])
                e += 1
        if n_out + min(reach, V.shape[0]) > capacity:
            break
        n_touched = 0
        for r in range(n_proj):
            e = heads[r]
            while e < ev_bounds[r, 1] and ev_time[e] == now:
                e += 1
            added, n_touched = _drain(
                V, _geometry(projections[r]), unit, weights, routes, ev_index, ev_sign, heads[r], e,
                t_last, stamp, touched_list, n_touched, now, tag, empty_table, log_leak_per_us,
            )
            synops += added
            n_in += e - heads[r]
            heads[r] = e
        tag += 1
        if fires:
            for i in range(n_touched):
                u = touched_list[i]
                base = u * unit
                if now < unit_refractory_end[u]:
                    # some neuron of the unit is refractory: discard its charge, then test the rest
                    if _clamp_refractory(V[base : base + unit], refractory_end[base : base + unit], now, threshold):
                        n_before = n_out
                        n_out = _fire(V[base : base + unit], base, threshold, out_index, n_out)
                        out_time[n_before:n_out] = now + delay_us
                        for n in range(n_before, n_out):
                            refractory_end[out_index[n]] = now + refractory_us
                        unit_refractory_end[u] = now + refractory_us
                elif _any_above(V[base : base + unit], threshold):
                    n_before = n_out
                    n_out = _fire(V[base : base + unit], base, threshold, out_index, n_out)
                    out_time[n_before:n_out] = now + delay_us
                    if refractory_us > 0.0:
                        for n in range(n_before, n_out):
                            refractory_end[out_index[n]] = now + refractory_us
                        unit_refractory_end[u] = now + refractory_us
        updates += n_touched * unit
    counters[C_INPUT_EVENTS] += n_in
    counters[C_SYNOPS] += synops
    counters[C_NEURON_UPDATES] += updates
    counters[C_SPIKES] += n_out
    return n_out, tag


@njit(cache=True, nogil=True, inline="always")
def _max_reach(proj):
    """The most neurons one event of this projection can reach."""
    op = proj[P_OP]
    if op == OP_LINEAR:
        return proj[P_DST_C]
    if op == OP_CONV:
        return proj[P_KERNEL] * proj[P_KERNEL] * proj[P_DST_C]
    if op == OP_AVGPOOL:
        return proj[P_KERNEL] * proj[P_KERNEL]
    return 1
