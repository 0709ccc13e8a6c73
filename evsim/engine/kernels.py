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
- a grouped conv's weights ``[C_in, K, K, C_out / groups]``, ``kx`` reversed: an event reaches the
  ``C_out / groups`` channels of its group at each pixel, a run of adds per pixel.
- linear weights ``[N_in, N_out]``, rows in the source's channels-last order.
- tiled pooling (stride = kernel) routes each source neuron through a lookup table
  (``routes``) to its one target neuron, instead of decoding its coordinates.

Projection table rows (int64): see the ``P_*`` column indices below.

Events carry a multiplier (``ev_sign``): +1 or -1 for input events, and the spike count ``n`` of
a multi-spike neuron (evsim.model.neuron), which emits one event per step however many spikes it
fires. Its weights are added once, scaled by ``n``; its synaptic operations count ``|n|`` per
weight reached (the spikes delivered, as sinabs and the dense model count them).

The firing rule of a population other than the paper's (reset by subtraction, several spikes per
step, ``>=``, a lower bound, per-neuron thresholds) is a float64 row ``rule`` (``R_*`` columns
below) and a ``thresholds`` array (empty: one threshold for the population); the rule itself is
specified in evsim.model.neuron. Populations with the paper's rule take the branch-free fast path.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import leading_zeros, trailing_zeros

OP_CONV, OP_LINEAR, OP_AVGPOOL, OP_IDENTITY, OP_SUMPOOL = 0, 1, 2, 3, 4

P_OP, P_SRC_C, P_SRC_H, P_SRC_W, P_DST_C, P_DST_H, P_DST_W = 0, 1, 2, 3, 4, 5, 6
P_KERNEL, P_STRIDE, P_PADDING, P_WEIGHT_OFFSET, P_ROUTE_OFFSET = 7, 8, 9, 10, 11
P_GROUPS = 12  # a conv's channel groups (1: ungrouped; _drain_grouped)
PROJECTION_COLUMNS = 13

# counters[...] layout, one row per population run
C_INPUT_EVENTS, C_SYNOPS, C_NEURON_UPDATES, C_SPIKES = 0, 1, 2, 3
COUNTER_COLUMNS = 4

# rule[...] layout: the firing rule (evsim.model.neuron) as numbers
R_DEFAULT, R_INCLUSIVE, R_MAX_SPIKES, R_SUBTRACT, R_HAS_FLOOR, R_FLOOR = 0, 1, 2, 3, 4, 5
RULE_COLUMNS = 6
"""R_DEFAULT 1: the paper's rule (fast path); R_INCLUSIVE 1: ``>=``; R_MAX_SPIKES: spikes per
step (0: unbounded); R_SUBTRACT 1: reset by subtraction; R_HAS_FLOOR 1: clamp at R_FLOOR."""


@njit(cache=True, nogil=True, inline="always")
def _count(counters, events, synops, updates, spikes):
    """Add a population run's figures to its ``counters`` row (``C_*`` columns)."""
    counters[C_INPUT_EVENTS] += events
    counters[C_SYNOPS] += synops
    counters[C_NEURON_UPDATES] += updates
    counters[C_SPIKES] += spikes


@njit(cache=True, nogil=True, inline="always")
def _touch(V, C, pix, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak):
    """First add to a pixel under ``tag``: apply its pending leak and list it as touched.

    Callers test ``stamp[pix] != tag`` inline and call this only on a first touch: the call is
    the rare path. The leak over ``gap = now - t_last`` is ``leak_table[gap]`` for a whole
    ``gap`` the table covers (step mode: every gap, in whole steps; asynchronous mode: gaps of
    whole microseconds, :func:`exp_table`), else ``exp(log_leak * gap)``; a leak of 1 costs nothing.
    """
    stamp[pix] = tag
    touched_list[n_touched] = pix
    _leak_unit(V, C, pix, t_last, now, leak_table, log_leak)
    return n_touched + 1


@njit(cache=True, nogil=True, inline="always")
def _leak_unit(V, unit, u, t_last, now, leak_table, log_leak):
    """Bring unit ``u`` (neurons ``u * unit ...``) from its last update up to ``now``."""
    gap = now - t_last[u]
    t_last[u] = now
    if gap > 0 and log_leak != 0.0:
        factor = _leak_factor(gap, leak_table, log_leak)
        v = V[u * unit : (u + 1) * unit]
        for co in range(unit):
            v[co] *= factor


@njit(cache=True, nogil=True, inline="always")
def _leak_factor(gap, leak_table, log_leak):
    """The leak over ``gap > 0`` (see :func:`_touch`)."""
    if gap < leak_table.shape[0] and gap == math.floor(gap):
        return leak_table[int(gap)]
    return math.exp(log_leak * gap)


@njit(cache=True, nogil=True)
def exp_table(log_leak, size):
    """``exp(log_leak * g)`` for ``g = 0 .. size - 1``, the very values :func:`_touch` would
    compute for whole gaps (the same ``math.exp``), so that looking them up changes no result:
    an exponential per touched unit is a quarter of the asynchronous mode's time on N-MNIST."""
    table = np.empty(size, dtype=np.float64)
    for g in range(size):
        table[g] = math.exp(log_leak * float(g))
    return table


@njit(cache=True, nogil=True, inline="always")
def _strict_bound(V, threshold):
    """The largest value of ``V``'s precision not above ``threshold``: for ``v`` of that
    precision ``v > threshold`` exactly when ``v > bound``, and the test then runs on float32
    lanes (twice as many per vector) instead of converting every membrane to float64."""
    bound = V.dtype.type(threshold)
    if bound > threshold:
        bound = np.nextafter(bound, V.dtype.type(-np.inf))
    return bound


@njit(cache=True, nogil=True, inline="always")
def _any_above(v, threshold):
    # an integer OR of the comparisons vectorizes; a float max does not (LLVM will not reorder
    # a float reduction without fast-math), and spikes are rare, so most pixels leave here
    above = 0
    for i in range(v.shape[0]):
        above |= v[i] > threshold
    return above != 0


@njit(cache=True, nogil=True, inline="always")
def _clamp_refractory(v, refractory_end, now, threshold):
    """Zero the neurons of ``v`` still refractory at ``now``; whether any other is above threshold.

    Branch-free selects, so it vectorizes like :func:`_any_above`.
    """
    above = 0
    for i in range(v.shape[0]):
        value = 0.0 if now < refractory_end[i] else v[i]
        v[i] = value
        above |= value > threshold
    return above != 0


@njit(cache=True, nogil=True, inline="always")
def _discard_refractory(v, refractory_end, now):
    """Zero the neurons of ``v`` still refractory at ``now`` (the charge reaching them is lost)."""
    for i in range(v.shape[0]):
        if now < refractory_end[i]:
            v[i] = 0.0


@njit(cache=True, nogil=True, inline="always")
def _spike_count(x, thr, inclusive, cap):
    """How many spikes a membrane ``x`` fires against threshold ``thr`` (evsim.model.neuron, step 3)."""
    if cap == 1:
        if inclusive:
            return 1.0 if x >= thr else 0.0
        return 1.0 if x > thr else 0.0
    q = x / thr
    n = math.floor(q) if inclusive else math.ceil(q) - 1.0
    if n < 0.0:
        return 0.0
    if cap > 0 and n > cap:
        return float(cap)
    return n


@njit(cache=True, nogil=True)
def _fire_rule(v, base, threshold, thresholds, rule, out_index, out_count, n_out):
    """Fire, reset and clamp the neurons of ``v`` (neurons ``base ...``) under a general ``rule``.

    Emits one event per neuron that fires, with its spike count in ``out_count``. Returns the
    new event count, the spikes emitted, and whether a neuron still passes the threshold test
    after its reset (a subtracting neuron can: it may fire again with no new input).
    """
    inclusive = rule[R_INCLUSIVE] != 0.0
    cap = int(rule[R_MAX_SPIKES])
    subtract = rule[R_SUBTRACT] != 0.0
    has_floor = rule[R_HAS_FLOOR] != 0.0
    floor_value = rule[R_FLOOR]
    per_neuron = thresholds.shape[0] > 0
    spikes = 0
    again = False
    for co in range(v.shape[0]):
        thr = thresholds[base + co] if per_neuron else threshold
        x = v[co]
        n = _spike_count(x, thr, inclusive, cap)
        if n > 0.0:
            out_index[n_out] = base + co
            out_count[n_out] = n
            n_out += 1
            spikes += int(n)
            if subtract:
                x = x - n * thr
                if _spike_count(x, thr, inclusive, cap) > 0.0:
                    again = True
            else:
                x = 0.0
        if has_floor and x < floor_value:
            x = floor_value
        v[co] = x
    return n_out, spikes, again


@njit(cache=True, nogil=True, inline="always")
def _fire(v, base, threshold, out_index, n_out):
    """Emit a spike for every neuron of ``v`` (neurons ``base ...``) above threshold and reset it.

    The test of up to 64 neurons at a time makes one bit mask (branch-free, vectorized); only
    its set bits are visited, in channel order. Spikes are rare, so a unit with none costs the
    test alone, and one with a few costs a step per spike, not per neuron.
    """
    for lo in range(0, v.shape[0], 64):
        w = v[lo : lo + 64]
        mask = np.uint64(0)
        for co in range(w.shape[0]):
            mask |= np.uint64(w[co] > threshold) << np.uint64(co)
        while mask != 0:
            co = trailing_zeros(mask)
            out_index[n_out] = base + lo + co
            n_out += 1
            w[co] = 0.0
            mask &= mask - np.uint64(1)
    return n_out


@njit(cache=True, nogil=True, inline="always")
def _fire_neurons(V, touched_list, n_touched, threshold, out_index, n_out):
    """:func:`_fire` for units of one neuron (layers fed by pooling only): the listed neurons,
    branch-free, with no slice per unit."""
    for i in range(n_touched):
        u = touched_list[i]
        value = V[u]
        fired = value > threshold
        out_index[n_out] = u
        n_out += fired
        V[u] = 0.0 if fired else value
    return n_out


@njit(cache=True, nogil=True, inline="always")
def _add_run(v, w, sign):
    # slices, not offsets into whole arrays: LLVM then vectorizes the loop
    for i in range(v.shape[0]):
        v[i] += sign * w[i]


@njit(cache=True, nogil=True, inline="always")
def _leak_add_run(v, factor, w, sign):
    """:func:`_touch`'s leak then :func:`_add_run`, in one pass: the same two roundings per
    neuron (the product rounded to ``v``'s precision, then the add), so the same bits."""
    for i in range(v.shape[0]):
        v[i] = v.dtype.type(v[i] * factor) + sign * w[i]


@njit(cache=True, nogil=True, inline="always")
def _drain_one_conv(V, geometry, weights, j, sign, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak):
    """:func:`_drain` of a single event of a stride-1 convolution, the asynchronous mode's usual
    arrival: each pixel it reaches is reached once, so its leak and its add go in one pass over
    the pixel instead of two (the leaks of a row first, then the row's run of adds, as ``_drain``
    must do when several events may reach a pixel). Same results and counts as ``_drain``."""
    op, src_c, src_w, C, dst_h, dst_w, woff, k, s, pad, roff = geometry
    c = j % src_c
    pix = j // src_c
    y = pix // src_w
    x = pix - y * src_w
    kx_lo = max(0, x + pad - dst_w + 1)
    kx_hi = min(k - 1, x + pad)
    if kx_lo > kx_hi:
        return 0, n_touched
    ox0 = x + pad - kx_hi
    reached = kx_hi - kx_lo + 1
    leaky = log_leak != 0.0
    synops = 0
    for ky in range(k):
        oy = y + pad - ky
        if oy < 0 or oy >= dst_h:
            continue
        wrow = woff + ((c * k + ky) * k + k - 1 - kx_hi) * C
        for q in range(reached):
            u = oy * dst_w + ox0 + q
            stamp[u] = tag
            touched_list[n_touched] = u
            n_touched += 1
            gap = now - t_last[u]
            t_last[u] = now
            factor = _leak_factor(gap, leak_table, log_leak) if leaky and gap > 0 else 1.0
            _leak_add_run(V[u * C : (u + 1) * C], factor, weights[wrow + q * C : wrow + (q + 1) * C], sign)
        synops += reached * C * int(abs(sign))
    return synops, n_touched


@njit(cache=True, nogil=True, inline="always")
def _geometry(proj):
    """A projection's table row as a tuple of scalars: kept in registers, never reloaded after
    a store to V (which, as far as the compiler knows, might alias the table)."""
    return (
        proj[P_OP], proj[P_SRC_C], proj[P_SRC_W], proj[P_DST_C], proj[P_DST_H], proj[P_DST_W],
        proj[P_WEIGHT_OFFSET], proj[P_KERNEL], proj[P_STRIDE], proj[P_PADDING], proj[P_ROUTE_OFFSET],
    )


@njit(cache=True, nogil=True, inline="always")
def _drain(V, geometry, unit, weights, routes, ev_index, ev_sign, lo, hi, t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak, window_sum):
    """Add the weights of events ``lo:hi`` (source neurons ``ev_index``) to the neurons they reach.

    Each *unit* reached is first brought up to time ``now`` (lazy leak) and listed as touched
    under ``tag``: a unit is a pixel (``unit == C``) or, in populations fed only by pooling,
    a single neuron (``unit == 1``), since a pooling event reaches one channel only. Three passes
    with no per-pixel branch (:func:`_mark`, :func:`_leak_new`, :func:`_add_events`): every
    reached unit is listed, first touches in order; the new ones are leaked; then every event's
    weights are added unchecked. Each neuron sees its leak, then its adds in event order, as a
    per-pixel "first touch?" test would give it, so the bits are the same (a pooling neuron sees
    one add, its window's spike sum divided, collected in the scratch ``window_sum``:
    :func:`_add_pooled`).
    Returns the number of synaptic operations performed (one per weight added and spike an event
    carries) and the new touched count.
    """
    first = n_touched
    n_touched = _mark(geometry, unit, routes, ev_index, lo, hi, stamp, touched_list, n_touched, tag)
    _leak_new(V, unit, touched_list, first, n_touched, t_last, now, leak_table, log_leak)
    return _add_events(V, geometry, unit, weights, routes, ev_index, ev_sign, lo, hi, window_sum, log_leak), n_touched


@njit(cache=True, nogil=True, inline="always")
def _decode(j, src_c, src_w):
    """Channel, row and column of channels-last source neuron ``j``."""
    pix = _quotient(j, src_c)
    y = _quotient(pix, src_w)
    return j - pix * src_c, y, pix - y * src_w


@njit(cache=True, nogil=True, inline="always")
def _quotient(a, b):
    # a float multiply-and-truncate instead of an integer division (tens of cycles each, several
    # per event); exact for a, b < 2**24, which covers every neuron index the engine allocates
    # below that; larger ones divide
    if a < 16_777_216:
        return int((a + 0.5) * (1.0 / b))
    return a // b


@njit(cache=True, nogil=True, inline="always")
def _reach(y, pad, k, s, size):
    """The first and last output row (or column) an input row ``y`` reaches: ``o`` with
    ``o * s + kk == y + pad`` for some ``kk < k``, within ``0 .. size - 1`` (empty: ``lo > hi``)."""
    if s == 1:
        return max(0, y + pad - k + 1), min(size - 1, y + pad)
    lo = (max(0, y + pad - k + 1) + s - 1) // s
    hi = min(size - 1, (y + pad) // s)
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _list(u, stamp, touched_list, n_touched, tag):
    # branch-free: written every time, counted only on the unit's first touch under ``tag``
    touched_list[n_touched] = u
    n_touched += stamp[u] != tag
    stamp[u] = tag
    return n_touched


@njit(cache=True, nogil=True, inline="always")
def _mark(geometry, unit, routes, ev_index, lo, hi, stamp, touched_list, n_touched, tag):
    """List every unit that events ``lo:hi`` reach and no earlier event under ``tag`` reached,
    in the order a per-event sweep first reaches them (rows by ``ky``, a stride-1 row left to
    right, strided columns by ``kx``: :func:`_add_events`' order). ``touched_list`` needs one
    slot of slack."""
    op, src_c, src_w, C, dst_h, dst_w, woff, k, s, pad, roff = geometry
    if op == OP_CONV:
        for e in range(lo, hi):
            c, y, x = _decode(ev_index[e], src_c, src_w)
            oy_lo, oy_hi = _reach(y, pad, k, s, dst_h)
            ox_lo, ox_hi = _reach(x, pad, k, s, dst_w)
            for oy in range(oy_hi, oy_lo - 1, -1):
                if s == 1:
                    for ox in range(ox_lo, ox_hi + 1):
                        n_touched = _list(oy * dst_w + ox, stamp, touched_list, n_touched, tag)
                else:
                    for ox in range(ox_hi, ox_lo - 1, -1):
                        n_touched = _list(oy * dst_w + ox, stamp, touched_list, n_touched, tag)
    elif (op == OP_AVGPOOL or op == OP_SUMPOOL) and roff >= 0:
        for e in range(lo, hi):
            neuron = routes[roff + ev_index[e]]
            if neuron >= 0:
                n_touched = _list(neuron // unit, stamp, touched_list, n_touched, tag)
    elif op == OP_AVGPOOL or op == OP_SUMPOOL:
        for e in range(lo, hi):
            c, oy_lo, oy_hi, ox_lo, ox_hi = _pool_window(geometry, ev_index[e])
            for oy in range(oy_lo, oy_hi + 1):
                for ox in range(ox_lo, ox_hi + 1):
                    n_touched = _list(((oy * dst_w + ox) * C + c) // unit, stamp, touched_list, n_touched, tag)
    elif op == OP_LINEAR:
        if hi > lo:
            n_touched = _list(0, stamp, touched_list, n_touched, tag)
    else:  # OP_IDENTITY
        for e in range(lo, hi):
            n_touched = _list(ev_index[e] // unit, stamp, touched_list, n_touched, tag)
    return n_touched


ROW_BITS = 64  # convolutions whose output rows are at most this wide run their steps by row masks
ROW_CHANNELS = 32
"""... and whose pixels have at most this many channels. The row steps save the per-pixel test of
pixels where no neuron fires; the more channels a pixel has, the likelier one of them fires and the
less that saves. Measured on ``lenet-nmnist`` (idle AMD EPYC, one thread, RESULTS issue 27): conv1
(20 channels, 0.15 spikes per touched pixel) gains 1.2x by rows, conv2 (50 channels, 3 spikes per
touched pixel) loses 5-7 %; the whole network 1.06x with conv1 alone by rows, 1.00x with both."""
ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True, nogil=True, inline="always")
def _span(lo, hi):
    """Bits ``lo .. hi`` of a row mask (``0 <= lo <= hi < 64``)."""
    return (ALL_BITS >> np.uint64(63 - (hi - lo))) << np.uint64(lo)


@njit(cache=True, nogil=True, inline="always")
def _first_run(m):
    """The lowest run of set bits of ``m != 0``: its first bit and its length."""
    a = np.int64(trailing_zeros(m))
    rest = ~(m >> np.uint64(a))
    return a, (64 - a if rest == 0 else np.int64(trailing_zeros(rest)))


@njit(cache=True, nogil=True, inline="always")
def _by_rows(projections, unit, fast):
    """Whether a layer's steps run by row masks (:func:`_step_rows`): it fires by the paper's
    rule, its pixels have at most ``ROW_CHANNELS`` channels, and every projection is an ungrouped
    convolution whose output rows fit a mask (the row steps add by :func:`_add_events`, which
    knows no groups)."""
    if unit <= 1 or unit > ROW_CHANNELS or not fast:
        return False
    for q in range(projections.shape[0]):
        if (projections[q, P_OP] != OP_CONV or projections[q, P_GROUPS] != 1
                or projections[q, P_DST_W] > ROW_BITS):
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _row_buffers(projections, units):
    """:func:`_step_rows`' masks: what the step reached and what fires, one word per output row,
    and the step's first touches (row, new bits), at most one per unit."""
    rows = projections[0, P_DST_H]
    return (np.zeros(rows, dtype=np.uint64), np.zeros(rows, dtype=np.uint64),
            np.empty(units + 1, dtype=np.int64), np.empty(units + 1, dtype=np.uint64))


@njit(cache=True, nogil=True, inline="always")
def _mark_rows(geometry, ev_index, lo, hi, reached, chunk_row, chunk_bits, n_chunks):
    """Mark what events ``lo:hi`` of a convolution reach in ``reached`` (one word per output row)
    and append each event's first touches per row (row, new bits) as a chunk: the chunks in order,
    bits low to high for stride 1 (high to low for strided ones), are :func:`_mark`'s first-touch
    order, at one AND per event and row instead of a test per pixel."""
    op, src_c, src_w, C, dst_h, dst_w, woff, k, s, pad, roff = geometry
    for e in range(lo, hi):
        c, y, x = _decode(ev_index[e], src_c, src_w)
        oy_lo, oy_hi = _reach(y, pad, k, s, dst_h)
        ox_lo, ox_hi = _reach(x, pad, k, s, dst_w)
        if ox_lo > ox_hi:
            continue
        span = _span(ox_lo, ox_hi)
        for oy in range(oy_hi, oy_lo - 1, -1):
            new = span & ~reached[oy]
            reached[oy] |= span
            # branch-free: written every time, kept when the row has new pixels
            chunk_row[n_chunks] = oy if s == 1 else -1 - oy
            chunk_bits[n_chunks] = new
            n_chunks += new != 0
    return n_chunks


@njit(cache=True, nogil=True, inline="always")
def _leak_chunks(V, C, dst_w, chunk_row, chunk_bits, first, n_chunks, t_last, now, leak_table, log_leak):
    """Bring the pixels of chunks ``first:n_chunks`` up to step ``now``, run by run: the lazy
    leak of :func:`_leak_unit`, whose table (step mode's, in whole steps) holds 1 at gap 0, so
    a pixel needs no test of its gap. Returns the number of pixels."""
    pixels = 0
    for i in range(first, n_chunks):
        m = chunk_bits[i]
        oy = chunk_row[i]
        base = (oy if oy >= 0 else -1 - oy) * dst_w
        while m != 0:
            a, length = _first_run(m)
            m &= ~_span(a, a + length - 1)
            pixels += length
            for u in range(base + a, base + a + length):
                gap = now - t_last[u]
                if gap >= leak_table.shape[0]:
                    _leak_unit(V, C, u, t_last, now, leak_table, log_leak)
                    continue
                t_last[u] = now
                if log_leak != 0.0:
                    factor = leak_table[gap]
                    v = V[u * C : (u + 1) * C]
                    for co in range(C):
                        v[co] *= factor
    return pixels


@njit(cache=True, nogil=True, inline="always")
def _test_rows(V, C, dst_w, reached, hot, bound):
    """Threshold-test the pixels the step reached, in raster runs (one vector pass per run of
    touched pixels), clear ``reached``, and set in ``hot`` the pixels with a neuron above
    ``bound``. Returns whether any is hot."""
    any_hot = False
    for oy in range(reached.shape[0]):
        m = reached[oy]
        if m == 0:
            continue
        reached[oy] = 0
        while m != 0:
            a, length = _first_run(m)
            m &= ~_span(a, a + length - 1)
            base = oy * dst_w + a
            if _any_above(V[base * C : (base + length) * C], bound):
                for u in range(base, base + length):
                    if _any_above(V[u * C : (u + 1) * C], bound):
                        hot[oy] |= np.uint64(1) << np.uint64(u - oy * dst_w)
                        any_hot = True
    return any_hot


@njit(cache=True, nogil=True, inline="always")
def _hot_in_chunk(chunk_row, chunk_bits, hot, i):
    """Chunk ``i``'s hot pixels (cleared in ``hot``): their bits, the row, and whether they fire
    lowest bit first (a stride-1 chunk; a strided one's row is stored as ``-1 - row``)."""
    oy = chunk_row[i]
    ascending = oy >= 0
    if not ascending:
        oy = -1 - oy
    f = chunk_bits[i] & hot[oy]
    hot[oy] &= ~f
    return f, oy, ascending


@njit(cache=True, nogil=True, inline="always")
def _pop_bit(f, ascending):
    """The lowest (or highest) set bit of ``f != 0``, and ``f`` without it."""
    b = np.int64(trailing_zeros(f)) if ascending else 63 - np.int64(leading_zeros(f))
    return b, f & ~(np.uint64(1) << np.uint64(b))


@njit(cache=True, nogil=True, inline="always")
def _fire_hot(V, C, dst_w, chunk_row, chunk_bits, n_chunks, hot, bound, out_index, n_out):
    """:func:`_fire` the hot pixels in first-touch order (the chunks in order)."""
    for i in range(n_chunks):
        f, oy, ascending = _hot_in_chunk(chunk_row, chunk_bits, hot, i)
        while f != 0:
            b, f = _pop_bit(f, ascending)
            base = (oy * dst_w + b) * C
            n_out = _fire(V[base : base + C], base, bound, out_index, n_out)
    return n_out


@njit(cache=True, nogil=True, inline="always")
def _step_rows(V, C, t_last, now, t, leak_table, log_leak, bound, projections, weights, routes, ev_offsets,
               ev_index, ev_sign, reached, hot, chunk_row, chunk_bits):
    """One step of a layer that runs by row masks (:func:`_by_rows`): every projection's events
    marked (:func:`_mark_rows`), the new pixels leaked, the weights added with no per-pixel test
    (:func:`_add_events`), then the reached pixels tested in raster runs (:func:`_test_rows`).
    Each neuron sees its leak then its adds in event order, as with :func:`_drain`. Returns the
    events that arrived, the synaptic operations, the pixels touched, the chunks, whether any
    pixel is hot (:func:`_fire_hot` fires them in first-touch order)."""
    arrived = 0
    synops = 0
    pixels = 0
    n_chunks = 0
    dst_w = projections[0, P_DST_W]
    for q in range(projections.shape[0]):
        lo = ev_offsets[q, t]
        hi = ev_offsets[q, t + 1]
        arrived += hi - lo
        geometry = _geometry(projections[q])
        first = n_chunks
        n_chunks = _mark_rows(geometry, ev_index, lo, hi, reached, chunk_row, chunk_bits, n_chunks)
        pixels += _leak_chunks(V, C, dst_w, chunk_row, chunk_bits, first, n_chunks, t_last, now, leak_table, log_leak)
        # convolutions only (_by_rows): no window sums, so an empty scratch
        # convolutions only (_by_rows): no window sums
        synops += _add_events(V, geometry, C, weights, routes, ev_index, ev_sign, lo, hi, V[:0], log_leak)
    return arrived, synops, pixels, n_chunks, _test_rows(V, C, dst_w, reached, hot, bound)


@njit(cache=True, nogil=True, inline="always")
def _pool_reach(y, k, s, size):
    """The output rows whose pooling window ``[o * s, o * s + k)`` holds input row ``y``."""
    return max(0, (y - k + s + s * k) // s - k), min(size - 1, y // s)


@njit(cache=True, nogil=True, inline="always")
def _pool_window(geometry, j):
    """The pooling outputs that source neuron ``j`` reaches (untiled pooling): channel ``c``
    (windows do not mix channels), rows ``oy_lo .. oy_hi``, columns ``ox_lo .. ox_hi``."""
    op, src_c, src_w, C, dst_h, dst_w, woff, k, s, pad, roff = geometry
    c = j % src_c
    pix = j // src_c
    y = pix // src_w
    x = pix - y * src_w
    oy_lo, oy_hi = _pool_reach(y, k, s, dst_h)
    ox_lo, ox_hi = _pool_reach(x, k, s, dst_w)
    return c, oy_lo, oy_hi, ox_lo, ox_hi


@njit(cache=True, nogil=True, inline="always")
def window_divisor(op, k):
    """What a pooling window's spike sum is divided by: ``k * k`` for average pooling (torch's
    ``avg_pool2d``, the dense model's, divides the window's sum so), 1 for sum pooling."""
    return float(k * k) if op == OP_AVGPOOL else 1.0


@njit(cache=True, nogil=True, inline="always")
def exact_shares(log_leak, divisor):
    """Whether a pooling neuron may add ``1 / divisor`` per spike instead of its window's sum over
    ``divisor`` once a step, with the same bits: it does not leak (so its membrane stays a whole
    multiple of the share: it starts and resets at 0) and the share is a power of two (so every
    such multiple below 2^24 shares is exact). The paper's pool neuron with a 2 x 2 or 4 x 4 window."""
    whole = int(divisor)
    return log_leak == 0.0 and whole == divisor and whole > 0 and (whole & (whole - 1)) == 0


@njit(cache=True, nogil=True, inline="always")
def _window_sums(V, projections, log_leak):
    """Zeros, one per neuron of ``V``, in which pooling projections collect a step's window sums
    (:func:`_add_pooled`); empty for a layer that no pooling feeds, or only tiled pooling whose
    per-spike adds are exact (:func:`exact_shares`), which needs none (the asynchronous mode
    runs a layer in many calls: zeroing a scratch in each cost it 10 %)."""
    for q in range(projections.shape[0]):
        op = projections[q, P_OP]
        if op == OP_AVGPOOL or op == OP_SUMPOOL:
            tiled = projections[q, P_ROUTE_OFFSET] >= 0
            if not (tiled and exact_shares(log_leak, window_divisor(op, projections[q, P_KERNEL]))):
                return np.zeros_like(V)
    return np.zeros_like(V[:0])


@njit(cache=True, nogil=True, inline="always")
def _add_window_sum(V, window_sum, neuron, divisor):
    """Add ``neuron``'s window sum divided by ``divisor`` (both in ``V``'s precision, the division
    rounded as the dense model rounds it), and clear the sum: a neuron listed again adds 0."""
    V[neuron] += window_sum[neuron] / divisor
    window_sum[neuron] = 0.0


@njit(cache=True, nogil=True, inline="always")
def _add_pooled(V, geometry, routes, ev_index, ev_sign, lo, hi, window_sum, log_leak):
    """The pooling adds of events ``lo:hi``: the spikes (signed, or a multi-spike neuron's count)
    reaching each neuron are summed in ``window_sum`` (zeros, and left so), then each neuron
    reached adds its sum divided by :func:`window_divisor` once, as the dense model adds
    ``avg_pool2d``'s average: ``1 / 9`` added nine times is 1.0000000000000002, nine spikes over
    9 are 1.0, and a leaky membrane plus four quarters one by one can differ from it plus 1.0 in
    the last bit. Where adding ``1 / divisor`` per spike gives the same bits (:func:`exact_shares`:
    the paper's pool neuron, 2 x 2 windows), each spike adds it at once, in one pass. The synaptic
    operations: one per spike delivered to a neuron."""
    op, src_c, src_w, C, dst_h, dst_w, woff, k, s, pad, roff = geometry
    divisor = V.dtype.type(window_divisor(op, k))
    synops = 0
    if roff >= 0 and exact_shares(log_leak, divisor):
        share = V.dtype.type(1.0) / divisor
        for e in range(lo, hi):
            neuron = routes[roff + ev_index[e]]
            if neuron >= 0:
                V[neuron] += ev_sign[e] * share
                synops += int(abs(ev_sign[e]))
        return synops
    if roff >= 0:
        # tiled pooling: each source neuron feeds one target, looked up in ``routes`` (-1: none)
        for e in range(lo, hi):
            neuron = routes[roff + ev_index[e]]
            if neuron >= 0:
                window_sum[neuron] += ev_sign[e]
                synops += int(abs(ev_sign[e]))
        for e in range(lo, hi):
            neuron = routes[roff + ev_index[e]]
            if neuron >= 0:
                _add_window_sum(V, window_sum, neuron, divisor)
        return synops
    for e in range(lo, hi):
        c, oy_lo, oy_hi, ox_lo, ox_hi = _pool_window(geometry, ev_index[e])
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                window_sum[(oy * dst_w + ox) * C + c] += ev_sign[e]
                synops += int(abs(ev_sign[e]))
    for e in range(lo, hi):
        c, oy_lo, oy_hi, ox_lo, ox_hi = _pool_window(geometry, ev_index[e])
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                _add_window_sum(V, window_sum, (oy * dst_w + ox) * C + c, divisor)
    return synops


@njit(cache=True, nogil=True, inline="always")
def _leak_new(V, unit, touched_list, first, n_touched, t_last, now, leak_table, log_leak):
    """Bring the units ``touched_list[first:n_touched]`` up to time ``now`` (the lazy leak of
    :func:`_touch`, a pass over the new units instead of a branch in the adds)."""
    for i in range(first, n_touched):
        _leak_unit(V, unit, touched_list[i], t_last, now, leak_table, log_leak)


@njit(cache=True, nogil=True, inline="always")
def _add_events(V, geometry, unit, weights, routes, ev_index, ev_sign, lo, hi, window_sum, log_leak):
    """Add the weights of events ``lo:hi`` to the neurons they reach, with no per-pixel test
    (:func:`_mark` and :func:`_leak_new` ran first; pooling: :func:`_add_pooled`, with the
    scratch ``window_sum`` and the neurons' ``log_leak``); the synaptic operations."""
    op, src_c, src_w, C, dst_h, dst_w, woff, k, s, pad, roff = geometry
    synops = 0
    if op == OP_CONV:
        for e in range(lo, hi):
            j = ev_index[e]
            sign = ev_sign[e]
            spikes = int(abs(sign))
            c, y, x = _decode(j, src_c, src_w)
            oy_lo, oy_hi = _reach(y, pad, k, s, dst_h)
            ox_lo, ox_hi = _reach(x, pad, k, s, dst_w)
            if ox_lo > ox_hi:
                continue
            for oy in range(oy_hi, oy_lo - 1, -1):
                row = woff + (c * k + y + pad - oy * s) * k * C  # ky = y + pad - oy * s
                if s == 1:
                    # kx = x + pad - ox: ox = ox_lo .. ox_hi is one run of consecutive pixels
                    n = (ox_hi - ox_lo + 1) * C
                    base = (oy * dst_w + ox_lo) * C
                    wrow = row + (k - 1 - (x + pad - ox_lo)) * C
                    _add_run(V[base : base + n], weights[wrow : wrow + n], sign)
                    synops += n * spikes
                else:
                    for ox in range(ox_hi, ox_lo - 1, -1):
                        opix = oy * dst_w + ox
                        wrow = row + (k - 1 - (x + pad - ox * s)) * C
                        _add_run(V[opix * C : (opix + 1) * C], weights[wrow : wrow + C], sign)
                        synops += C * spikes
    elif op == OP_AVGPOOL or op == OP_SUMPOOL:
        synops = _add_pooled(V, geometry, routes, ev_index, ev_sign, lo, hi, window_sum, log_leak)
    elif op == OP_LINEAR:
        spikes = 0
        for e in range(lo, hi):
            j = ev_index[e]
            _add_run(V[:C], weights[woff + j * C : woff + (j + 1) * C], ev_sign[e])
            spikes += int(abs(ev_sign[e]))
        synops += spikes * C
    else:  # OP_IDENTITY
        for e in range(lo, hi):
            V[ev_index[e]] += ev_sign[e]
            synops += int(abs(ev_sign[e]))
    return synops


@njit(cache=True, nogil=True)
def _drain_grouped(V, geometry, groups, weights, routes, ev_index, ev_sign, lo, hi, t_last, stamp, touched_list,
                   n_touched, now, tag, leak_table, log_leak):
    """:func:`_drain` for a convolution of ``groups`` channel groups: the same pixels are reached
    (:func:`_mark`, :func:`_leak_new`), but an event of input channel ``c`` adds to the
    ``C / groups`` channels of its group only, ``c // (C_in / groups)``: one run per pixel it
    reaches, from the weights ``[C_in, K, K (reversed), C / groups]``."""
    first = n_touched
    C = geometry[3]
    n_touched = _mark(geometry, C, routes, ev_index, lo, hi, stamp, touched_list, n_touched, tag)
    _leak_new(V, C, touched_list, first, n_touched, t_last, now, leak_table, log_leak)
    return _add_grouped(V, geometry, groups, weights, ev_index, ev_sign, lo, hi), n_touched


@njit(cache=True, nogil=True)
def _add_grouped(V, geometry, groups, weights, ev_index, ev_sign, lo, hi):
    """The adds of :func:`_drain_grouped`; the synaptic operations (one per weight added and spike)."""
    op, src_c, src_w, C, dst_h, dst_w, woff, k, s, pad, roff = geometry
    run = C // groups
    in_per_group = src_c // groups
    synops = 0
    for e in range(lo, hi):
        sign = ev_sign[e]
        c, y, x = _decode(ev_index[e], src_c, src_w)
        channel0 = (c // in_per_group) * run
        oy_lo, oy_hi = _reach(y, pad, k, s, dst_h)
        ox_lo, ox_hi = _reach(x, pad, k, s, dst_w)
        for oy in range(oy_hi, oy_lo - 1, -1):
            row = woff + (c * k + y + pad - oy * s) * k * run  # ky = y + pad - oy * s
            for ox in range(ox_lo, ox_hi + 1):
                base = (oy * dst_w + ox) * C + channel0
                wrow = row + (k - 1 - (x + pad - ox * s)) * run  # kx = x + pad - ox * s, reversed
                _add_run(V[base : base + run], weights[wrow : wrow + run], sign)
        synops += max(oy_hi - oy_lo + 1, 0) * max(ox_hi - ox_lo + 1, 0) * run * int(abs(sign))
    return synops


@njit(cache=True, nogil=True, inline="always")
def _drain_step(V, unit, weights, routes, projections, ev_offsets, ev_index, ev_sign, t, now,
                t_last, stamp, touched_list, n_touched, leak_table, log_leak, window_sum):
    """Step ``t``'s events of every projection (:func:`_drain` each, at time ``now``, touches
    tagged ``now``): the events that arrived, the synaptic operations, the new touched count."""
    arrived = 0
    synops = 0
    for q in range(projections.shape[0]):
        lo = ev_offsets[q, t]
        hi = ev_offsets[q, t + 1]
        arrived += hi - lo
        if projections[q, P_GROUPS] != 1:
            added, n_touched = _drain_grouped(
                V, _geometry(projections[q]), projections[q, P_GROUPS], weights, routes, ev_index, ev_sign, lo, hi,
                t_last, stamp, touched_list, n_touched, now, now, leak_table, log_leak,
            )
        else:
            added, n_touched = _drain(
                V, _geometry(projections[q]), unit, weights, routes, ev_index, ev_sign, lo, hi,
                t_last, stamp, touched_list, n_touched, now, now, leak_table, log_leak, window_sum,
            )
        synops += added
    return arrived, synops, n_touched


@njit(cache=True, nogil=True)
def run_population_steps(
    V, unit, t_last, stamp, touched_list, carry, t0, leak_table, log_leak, threshold, thresholds, rule, fires,
    projections, weights, routes, ev_offsets, ev_index, ev_sign,
    out_index, out_count, out_offsets, counters,
):
    """Run one population over the time steps ``t0 .. t0 + T - 1`` of ``ev_offsets`` (step mode).

    ``ev_offsets[q, t]:ev_offsets[q, t + 1]`` are the events that projection ``q`` delivers at
    step ``t`` (indices into ``ev_index``/``ev_sign``). All events of a step are accumulated
    before any threshold test, as in the dense model; only touched pixels are tested.
    Fills ``out_index`` (which needs ``unit`` elements of slack, see _fire_neurons) with spikes
    (channels-last neuron index), ``out_count`` with each event's spike count, and
    ``out_offsets[t + 1]`` with the running event count. ``V`` holds each neuron's potential
    after its last update (step ``t_last``), before the leak of the steps since; every ``stamp``
    must be below ``t0``, and the caller keeps every gap within ``leak_table``.
    ``carry[1 : 1 + carry[0]]`` lists the units that must be visited at the next step although
    no event may reach them: a subtracting neuron still above threshold after its reset fires
    again, as the dense model's does (empty for the paper's rule, kept across calls).
    """
    timesteps = ev_offsets.shape[1] - 1
    fast = rule[R_DEFAULT] != 0.0 and thresholds.shape[0] == 0
    bound = _strict_bound(V, threshold)
    if fires and _by_rows(projections, unit, fast):
        return _run_steps_by_rows(V, unit, t_last, t0, leak_table, log_leak, bound, projections, weights, routes,
                                  ev_offsets, ev_index, ev_sign, out_index, out_count, out_offsets, counters)
    window_sum = _window_sums(V, projections, log_leak)
    n_out = 0
    spikes = 0
    synops = 0
    n_in = 0
    updates = 0
    n_carry = carry[0]
    out_offsets[0] = 0
    for t in range(timesteps):
        now = t0 + t
        n_touched = 0
        for i in range(n_carry):
            u = carry[1 + i]
            if stamp[u] != now:
                n_touched = _touch(V, unit, u, t_last, stamp, touched_list, n_touched, now, now, leak_table, log_leak)
        n_carry = 0
        arrived, added, n_touched = _drain_step(
            V, unit, weights, routes, projections, ev_offsets, ev_index, ev_sign, t, now,
            t_last, stamp, touched_list, n_touched, leak_table, log_leak, window_sum,
        )
        n_in += arrived
        synops += added
        if fires and fast and unit == 1:
            n_out = _fire_neurons(V, touched_list, n_touched, bound, out_index, n_out)
        elif fires and fast:
            for i in range(n_touched):
                base = touched_list[i] * unit
                n_out = _fire(V[base : base + unit], base, bound, out_index, n_out)
        elif fires:
            for i in range(n_touched):
                base = touched_list[i] * unit
                n_out, fired, again = _fire_rule(
                    V[base : base + unit], base, threshold, thresholds, rule, out_index, out_count, n_out
                )
                spikes += fired
                if again:
                    carry[1 + n_carry] = touched_list[i]
                    n_carry += 1
        updates += n_touched * unit
        out_offsets[t + 1] = n_out
    carry[0] = n_carry
    if fast:
        out_count[:n_out] = 1.0
        spikes = n_out
    _count(counters, n_in, synops, updates, spikes)
    return n_out


@njit(cache=True, nogil=True)
def _run_steps_by_rows(V, C, t_last, t0, leak_table, log_leak, bound, projections, weights, routes,
                       ev_offsets, ev_index, ev_sign, out_index, out_count, out_offsets, counters):
    """:func:`run_population_steps` for a layer that runs by row masks (:func:`_by_rows`)."""
    reached, hot, chunk_row, chunk_bits = _row_buffers(projections, t_last.shape[0])
    dst_w = projections[0, P_DST_W]
    n_out = 0
    synops = 0
    n_in = 0
    updates = 0
    out_offsets[0] = 0
    for t in range(ev_offsets.shape[1] - 1):
        arrived, added, pixels, n_chunks, any_hot = _step_rows(
            V, C, t_last, t0 + t, t, leak_table, log_leak, bound, projections, weights, routes, ev_offsets,
            ev_index, ev_sign, reached, hot, chunk_row, chunk_bits,
        )
        n_in += arrived
        synops += added
        if any_hot:
            n_out = _fire_hot(V, C, dst_w, chunk_row, chunk_bits, n_chunks, hot, bound, out_index, n_out)
        updates += pixels * C
        out_offsets[t + 1] = n_out
    out_count[:n_out] = 1.0
    _count(counters, n_in, synops, updates, n_out)
    return n_out


@njit(cache=True, nogil=True)
def run_population_steps_pooled(
    V, unit, t_last, stamp, touched_list, t0, leak_table, log_leak, threshold,
    projections, weights, routes, ev_offsets, ev_index, ev_sign,
    out_index, out_count, out_offsets, counters,
    pool_V, pool_t_last, pool_stamp, pool_touched, pool_leak_table, pool_log_leak, pool_threshold,
    pool_routes, pool_share, pool_out_index, pool_out_count, pool_out_offsets, pool_counters,
):
    """:func:`run_population_steps` for a population and the tiled pooling fed by it alone, in
    one pass: each spike goes straight to its pooling target as it fires.

    Both populations fire by the paper's rule (the fast path), and the pooling neurons add
    ``pool_share`` per spike, which only pools whose per-spike adds are exact take
    (:func:`exact_shares`: no leak, a power-of-two window; evsim.engine.step.pools_into_next), so
    that the pooling population receives the bits of its window sums over k^2 added once a step
    (:func:`_add_pooled`) as when it drains the spike queue in a call of its own: the two give
    identical results and counts. The queue of its input spikes is still written (for the
    population's other readers) but never re-read. ``pool_routes`` is the pooling projection's
    lookup table. Other pools run in a call of their own: window sums in this loop cost the
    fused pass 7-9 % of the whole network's time (lenet-nmnist, one core), even where unused.
    """
    timesteps = ev_offsets.shape[1] - 1
    bound = _strict_bound(V, threshold)
    pool_bound = _strict_bound(pool_V, pool_threshold)
    if _by_rows(projections, unit, True):
        return _run_pooled_by_rows(
            V, unit, t_last, t0, leak_table, log_leak, bound, projections, weights, routes, ev_offsets, ev_index,
            ev_sign, out_index, out_count, out_offsets, counters, pool_V, pool_t_last, pool_stamp, pool_touched,
            pool_leak_table, pool_log_leak, pool_bound, pool_routes, pool_share, pool_out_index, pool_out_count,
            pool_out_offsets, pool_counters,
        )
    n_out = 0
    synops = 0
    n_in = 0
    updates = 0
    pool_out = 0
    pool_synops = 0
    pool_updates = 0
    out_offsets[0] = 0
    pool_out_offsets[0] = 0
    for t in range(timesteps):
        now = t0 + t
        n_touched = 0
        arrived, added, n_touched = _drain_step(
            V, unit, weights, routes, projections, ev_offsets, ev_index, ev_sign, t, now,
            t_last, stamp, touched_list, n_touched, leak_table, log_leak, V[:0],
        )
        n_in += arrived
        synops += added
        n_pool_touched = 0
        for i in range(n_touched):
            base = touched_list[i] * unit
            first = n_out
            n_out = _fire(V[base : base + unit], base, bound, out_index, n_out)
            for e in range(first, n_out):
                neuron = pool_routes[out_index[e]]
                if neuron < 0:
                    continue
                if pool_stamp[neuron] != now:
                    n_pool_touched = _touch(pool_V, 1, neuron, pool_t_last, pool_stamp, pool_touched,
                                            n_pool_touched, now, now, pool_leak_table, pool_log_leak)
                pool_V[neuron] += pool_share
                pool_synops += 1
        updates += n_touched * unit
        out_offsets[t + 1] = n_out
        pool_out = _fire_neurons(pool_V, pool_touched, n_pool_touched, pool_bound, pool_out_index, pool_out)
        pool_updates += n_pool_touched
        pool_out_offsets[t + 1] = pool_out
    out_count[:n_out] = 1.0
    pool_out_count[:pool_out] = 1.0
    _count(counters, n_in, synops, updates, n_out)
    _count(pool_counters, n_out, pool_synops, pool_updates, pool_out)
    return n_out, pool_out


@njit(cache=True, nogil=True)
def _run_pooled_by_rows(
    V, C, t_last, t0, leak_table, log_leak, bound, projections, weights, routes, ev_offsets, ev_index, ev_sign,
    out_index, out_count, out_offsets, counters, pool_V, pool_t_last, pool_stamp, pool_touched, pool_leak_table,
    pool_log_leak, pool_bound, pool_routes, pool_share, pool_out_index, pool_out_count, pool_out_offsets,
    pool_counters,
):
    """:func:`run_population_steps_pooled` for a layer that runs by row masks (:func:`_by_rows`):
    the hot pixels fire in first-touch order, each spike routed to its pooling neuron at once."""
    reached, hot, chunk_row, chunk_bits = _row_buffers(projections, t_last.shape[0])
    dst_w = projections[0, P_DST_W]
    n_out = 0
    synops = 0
    n_in = 0
    updates = 0
    pool_out = 0
    pool_synops = 0
    pool_updates = 0
    out_offsets[0] = 0
    pool_out_offsets[0] = 0
    for t in range(ev_offsets.shape[1] - 1):
        now = t0 + t
        arrived, added, pixels, n_chunks, any_hot = _step_rows(
            V, C, t_last, now, t, leak_table, log_leak, bound, projections, weights, routes, ev_offsets,
            ev_index, ev_sign, reached, hot, chunk_row, chunk_bits,
        )
        n_in += arrived
        synops += added
        updates += pixels * C
        n_pool_touched = 0
        for i in range(n_chunks if any_hot else 0):
            f, oy, ascending = _hot_in_chunk(chunk_row, chunk_bits, hot, i)
            while f != 0:
                b, f = _pop_bit(f, ascending)
                base = (oy * dst_w + b) * C
                first = n_out
                n_out = _fire(V[base : base + C], base, bound, out_index, n_out)
                for e in range(first, n_out):
                    neuron = pool_routes[out_index[e]]
                    if neuron < 0:
                        continue
                    if pool_stamp[neuron] != now:
                        n_pool_touched = _touch(pool_V, 1, neuron, pool_t_last, pool_stamp, pool_touched,
                                                n_pool_touched, now, now, pool_leak_table, pool_log_leak)
                    pool_V[neuron] += pool_share
                    pool_synops += 1
        out_offsets[t + 1] = n_out
        pool_out = _fire_neurons(pool_V, pool_touched, n_pool_touched, pool_bound, pool_out_index, pool_out)
        pool_updates += n_pool_touched
        pool_out_offsets[t + 1] = pool_out
    out_count[:n_out] = 1.0
    pool_out_count[:pool_out] = 1.0
    _count(counters, n_in, synops, updates, n_out)
    _count(pool_counters, n_out, pool_synops, pool_updates, pool_out)
    return n_out, pool_out


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
    V, unit, t_last, stamp, touched_list, tag, leak_table, log_leak_per_us, threshold, thresholds, rule, fires, delay_us,
    refractory_us, refractory_end, unit_refractory_end,
    projections, weights, routes, ev_bounds, heads, ev_time, ev_index, ev_sign,
    out_time, out_index, out_count, counters,
):
    """Run one population over time-sorted events in continuous time (asynchronous mode).

    Projection ``q`` delivers ``ev_*[heads[q]:ev_bounds[q, 1]]`` in time order; the sources are
    merged by time. Each arrival leaks the neurons it reaches from their last update
    (``exp(log_leak_per_us * dt)``, looked up in ``leak_table`` for whole microseconds, see
    :func:`exp_table`) and adds its weights (a pooling neuron: its window's spike sum at that
    time, divided once, as a step adds it: :func:`_add_pooled`); the reached neurons are tested at once,
    and a spike leaves at the arrival's time plus ``delay_us``. Events with the *same* timestamp
    arrive together: all are added before the test, so the result never depends on the order in
    which simultaneous spikes were emitted. A neuron that fired is refractory for
    ``refractory_us``: charge reaching it before ``refractory_end`` is discarded (its membrane
    stays at 0), so it fires at most once per refractory period, as a step-mode neuron fires at
    most once per step (``unit_refractory_end`` is the latest end in each unit, which lets
    units with no refractory neuron take the fast test; a ``refractory_us`` of 0 turns it off).
    A population with another firing rule than the paper's (``rule``, ``thresholds``) fires,
    resets and clamps its reached neurons under that rule at each arrival, one event per neuron
    with its spike count in ``out_count``; a subtracting neuron left above threshold fires again
    at the next arrival that reaches it. Stops early when ``out_*`` could overflow; ``heads``
    then says where to resume. Returns ``(events written, next tag)``; ``tag`` numbers arrivals
    across calls so that state carries over from one chunk of a stream to the next.
    """
    n_proj = projections.shape[0]
    fast = rule[R_DEFAULT] != 0.0 and thresholds.shape[0] == 0
    bound = _strict_bound(V, threshold)
    window_sum = _window_sums(V, projections, log_leak_per_us)
    n_out = 0
    spikes = 0
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
        if fires:  # a population that never fires writes nothing, whatever its capacity
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
            geometry = _geometry(projections[r])
            if projections[r, P_GROUPS] != 1:
                added, n_touched = _drain_grouped(
                    V, geometry, projections[r, P_GROUPS], weights, routes, ev_index, ev_sign, heads[r], e,
                    t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak_per_us,
                )
            elif (e == heads[r] + 1 and n_touched == 0 and projections[r, P_OP] == OP_CONV
                    and projections[r, P_STRIDE] == 1 and _alone(heads, ev_bounds, ev_time, now, r)):
                added, n_touched = _drain_one_conv(
                    V, geometry, weights, ev_index[heads[r]], ev_sign[heads[r]],
                    t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak_per_us,
                )
            else:
                added, n_touched = _drain(
                    V, geometry, unit, weights, routes, ev_index, ev_sign, heads[r], e,
                    t_last, stamp, touched_list, n_touched, now, tag, leak_table, log_leak_per_us, window_sum,
                )
            synops += added
            n_in += e - heads[r]
            heads[r] = e
        tag += 1
        if fires and not fast:
            for i in range(n_touched):
                u = touched_list[i]
                base = u * unit
                if now < unit_refractory_end[u]:
                    _discard_refractory(V[base : base + unit], refractory_end[base : base + unit], now)
                n_before = n_out
                n_out, fired, _ = _fire_rule(
                    V[base : base + unit], base, threshold, thresholds, rule, out_index, out_count, n_out
                )
                spikes += fired
                out_time[n_before:n_out] = now + delay_us
                if refractory_us > 0.0 and n_out > n_before:
                    for n in range(n_before, n_out):
                        refractory_end[out_index[n]] = now + refractory_us
                    unit_refractory_end[u] = now + refractory_us
        elif fires:
            for i in range(n_touched):
                u = touched_list[i]
                base = u * unit
                if now < unit_refractory_end[u]:
                    # some neuron of the unit is refractory: discard its charge, then test the rest
                    if _clamp_refractory(V[base : base + unit], refractory_end[base : base + unit], now, bound):
                        n_before = n_out
                        n_out = _fire(V[base : base + unit], base, bound, out_index, n_out)
                        out_time[n_before:n_out] = now + delay_us
                        for n in range(n_before, n_out):
                            refractory_end[out_index[n]] = now + refractory_us
                        unit_refractory_end[u] = now + refractory_us
                elif _any_above(V[base : base + unit], bound):
                    n_before = n_out
                    n_out = _fire(V[base : base + unit], base, bound, out_index, n_out)
                    out_time[n_before:n_out] = now + delay_us
                    if refractory_us > 0.0:
                        for n in range(n_before, n_out):
                            refractory_end[out_index[n]] = now + refractory_us
                        unit_refractory_end[u] = now + refractory_us
        updates += n_touched * unit
    if fast:
        out_count[:n_out] = 1.0
        spikes = n_out
    _count(counters, n_in, synops, updates, spikes)
    return n_out, tag


@njit(cache=True, nogil=True, inline="always")
def _alone(heads, ev_bounds, ev_time, now, r):
    """Whether no projection after ``r`` delivers an event at ``now`` (those before have been
    drained; the caller knows whether they brought any)."""
    for q in range(r + 1, heads.shape[0]):
        if heads[q] < ev_bounds[q, 1] and ev_time[heads[q]] == now:
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _max_reach(proj):
    """The most neurons one event of this projection can reach."""
    op = proj[P_OP]
    if op == OP_LINEAR:
        return proj[P_DST_C]
    if op == OP_CONV:
        return proj[P_KERNEL] * proj[P_KERNEL] * proj[P_DST_C]
    if op == OP_AVGPOOL or op == OP_SUMPOOL:
        return proj[P_KERNEL] * proj[P_KERNEL]
    return 1
