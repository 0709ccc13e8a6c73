"""Numba kernels of the event engine: plain arrays in, plain arrays out.

One call runs one population over a whole input window. Its input is the spike events of the
populations that project into it, each a bucket queue (CSR by time step, or time-sorted for the
asynchronous mode); its output is its own spike events in the same form, the next population's
queue. The network is feed-forward, so running population after population over the window gives
exactly what running step after step through all populations gives.

Layouts (chosen so that one event's fan-out is a few contiguous runs of adds):
- membrane ``V``: channels-last, neuron ``(y, x, c)`` of a ``C x H x W`` population at
  ``(y * W + x) * C + c``; a 1-D population of ``N`` neurons is ``N x 1 x 1``.
- a *pixel* is the ``C`` neurons at one ``(y, x)``. Every conv or linear event reaches all
  channels of the pixels it touches, so leak, touch-tracking and threshold tests work per pixel.
- conv weights ``[C_in, K, K, C_out]``; linear weights ``[N_in, N_out]`` with rows in the source's
  channels-last order.

Projection table rows (int64): see the ``P_*`` column indices below.
"""

from __future__ import annotations

import numpy as np
from numba import njit

OP_CONV, OP_LINEAR, OP_AVGPOOL, OP_IDENTITY = 0, 1, 2, 3

P_OP, P_SRC_C, P_SRC_H, P_SRC_W, P_DST_C, P_DST_H, P_DST_W = 0, 1, 2, 3, 4, 5, 6
P_KERNEL, P_STRIDE, P_PADDING, P_WEIGHT_OFFSET = 7, 8, 9, 10
PROJECTION_COLUMNS = 11

# counters[...] layout, one row per population run
C_INPUT_EVENTS, C_SYNOPS, C_NEURON_UPDATES, C_SPIKES = 0, 1, 2, 3
COUNTER_COLUMNS = 4


@njit(cache=True, nogil=True, inline="always")
def _scatter(V, proj, weights, j, sign, touch_pixel, touch_arg):
    """Add the weights of one event (source neuron ``j``) to the neurons it reaches.

    ``touch_pixel(pix, touch_arg)`` is called before the first add to a pixel; returns the
    number of synaptic operations performed.
    """
    op = proj[P_OP]
    src_c = proj[P_SRC_C]
    src_w = proj[P_SRC_W]
    dst_c = proj[P_DST_C]
    dst_h = proj[P_DST_H]
    dst_w = proj[P_DST_W]
    woff = proj[P_WEIGHT_OFFSET]
    synops = 0
    if op == OP_LINEAR:
        touch_pixel(0, touch_arg)
        row = woff + j * dst_c
        for co in range(dst_c):
            V[co] += sign * weights[row + co]
        synops += dst_c
    elif op == OP_CONV:
        c = j % src_c
        pix = j // src_c
        y = pix // src_w
        x = pix - y * src_w
        k = proj[P_KERNEL]
        s = proj[P_STRIDE]
        pad = proj[P_PADDING]
        for ky in range(k):
            oy_num = y + pad - ky
            if oy_num < 0 or oy_num % s != 0:
                continue
            oy = oy_num // s
            if oy >= dst_h:
                continue
            for kx in range(k):
                ox_num = x + pad - kx
                if ox_num < 0 or ox_num % s != 0:
                    continue
                ox = ox_num // s
                if ox >= dst_w:
                    continue
                opix = oy * dst_w + ox
                touch_pixel(opix, touch_arg)
                base = opix * dst_c
                wrow = woff + ((c * k + ky) * k + kx) * dst_c
                for co in range(dst_c):
                    V[base + co] += sign * weights[wrow + co]
                synops += dst_c
    elif op == OP_AVGPOOL:
        c = j % src_c
        pix = j // src_c
        y = pix // src_w
        x = pix - y * src_w
        k = proj[P_KERNEL]
        s = proj[P_STRIDE]
        share = sign / (k * k)
        # output rows whose window [oy*s, oy*s + k) contains y
        oy_lo = max(0, (y - k + s) // s)
        oy_hi = min(dst_h - 1, y // s)
        ox_lo = max(0, (x - k + s) // s)
        ox_hi = min(dst_w - 1, x // s)
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                opix = oy * dst_w + ox
                touch_pixel(opix, touch_arg)
                V[opix * dst_c + c] += share
                synops += 1
    else:  # OP_IDENTITY
        touch_pixel(j // dst_c, touch_arg)
        V[j] += sign
        synops += 1
    return synops


@njit(cache=True, nogil=True, inline="always")
def _touch_step(pix, st):
    """Step mode: bring a pixel up to step ``t`` (lazy leak) and list it for the threshold test."""
    V, t_last, touched_flag, touched_list, n_touched, leak_pow, C, t = st
    if touched_flag[pix] == 0:
        touched_flag[pix] = 1
        touched_list[n_touched[0]] = pix
        n_touched[0] += 1
        gap = t - t_last[pix]
        if gap > 0:
            factor = leak_pow[gap]
            base = pix * C
            for co in range(C):
                V[base + co] *= factor
            t_last[pix] = t


@njit(cache=True, nogil=True)
def run_population_steps(
    V, t_last, touched_flag, touched_list, leak_pow, threshold, fires,
    projections, weights, ev_offsets, ev_index, ev_sign,
    out_index, out_offsets, counters,
):
    """Run one population over all time steps of a window (step mode).

    ``ev_offsets[q, t]:ev_offsets[q, t + 1]`` are the events that projection ``q`` delivers at
    step ``t`` (indices into ``ev_index``/``ev_sign``). All events of a step are accumulated
    before any threshold test, as in the dense model; only touched pixels are tested.
    Fills ``out_index`` with spikes (channels-last neuron index) and ``out_offsets[t + 1]`` with
    the running spike count. ``V`` holds each neuron's potential after its last update, before
    the leak of the steps since ``t_last``.
    """
    n_proj = projections.shape[0]
    timesteps = ev_offsets.shape[1] - 1
    C = projections[0, P_DST_C]
    n_touched = np.zeros(1, dtype=np.int64)
    n_out = 0
    synops = 0
    n_in = 0
    updates = 0
    out_offsets[0] = 0
    for t in range(timesteps):
        n_touched[0] = 0
        state = (V, t_last, touched_flag, touched_list, n_touched, leak_pow, C, t)
        for q in range(n_proj):
            proj = projections[q]
            lo = ev_offsets[q, t]
            hi = ev_offsets[q, t + 1]
            n_in += hi - lo
            for e in range(lo, hi):
                synops += _scatter(V, proj, weights, ev_index[e], ev_sign[e], _touch_step, state)
        for i in range(n_touched[0]):
            pix = touched_list[i]
            touched_flag[pix] = 0
            if fires:
                base = pix * C
                for co in range(C):
                    if V[base + co] > threshold:
                        out_index[n_out] = base + co
                        n_out += 1
                        V[base + co] = 0.0
        updates += n_touched[0] * C
        out_offsets[t + 1] = n_out
    counters[C_INPUT_EVENTS] += n_in
    counters[C_SYNOPS] += synops
    counters[C_NEURON_UPDATES] += updates
    counters[C_SPIKES] += n_out
    return n_out


@njit(cache=True, nogil=True)
def leak_to(V, t_last, C, t_end, leak_pow):
    """Apply the pending leak of every pixel up to ``t_end`` (used once, for the readout)."""
    for pix in range(t_last.shape[0]):
        gap = t_end - t_last[pix]
        if gap > 0:
            factor = leak_pow[gap]
            for co in range(C):
                V[pix * C + co] *= factor
            t_last[pix] = t_end


def leak_powers(leak: float, timesteps: int, dtype) -> np.ndarray:
    """``leak ** k`` for ``k = 0 .. timesteps``."""
    return np.power(np.asarray(leak, dtype=np.float64), np.arange(timesteps + 1)).astype(dtype)

