"""How each peer simulator reads a NIR neuron node: the evsim neuron fields and input gain of an
IF, LIF, LI or I node under ``--semantics nir|snntorch|norse|sinabs|spikingjelly``.

Per step, for ``LIF(tau, r, v_leak, v_threshold, v_reset)`` and ``IF(r, v_threshold, v_reset)``
(``tests/data/nir/SEMANTICS.md`` gives each peer's source lines)::

    semantics     dt              LIF leak          LIF gain g     IF gain g    fire    spikes   reset
    nir           neuron_dt_s     1 - dt/tau        r*dt/tau       r*dt         v > th  1        to 0
    snntorch      1e-4 s          f32(1 - dt/tau)   r*dt/tau       IF -> Leaky(beta 0.9, th*r, subtract)
    norse         1e-3 s          1 - dt/tau        dt/tau         1            v > th  1        to 0
    sinabs        1 step          exp(-1/tau)       1              1            v >= th floor(v/th), subtract
                                                                                (IF: membrane floor -th)
    spikingjelly  1e-4 s          1 - dt/tau        dt/tau (r=1)   1 (r=1/dt)   v >= th 1        to v_reset
                                                    or 1 (r=tau/dt)

A gain g on the input current is applied as the threshold ``th / g`` (the membrane scaled by
``1 / g``; exact because the reset is to 0 and v_leak is 0, which is also how snntorch's importer
does it). Derived factors within 1e-9 of 1 are 1 (``r * dt / tau`` with ``r = tau / dt`` rounds).
What evsim refuses rather than simulate differently: nonzero biases and v_leak (a constant input at
every step, dense work: evsim.model.graph.refuse_bias), a reset to anything but 0, per-neuron time
constants, dilated or asymmetric convolutions, padded pooling, and any node type but
Input, Output, Conv2d, AvgPool2d, SumPool2d, Flatten, Linear, Affine, Scale (folded into weights),
IF, LIF, and LI or I as the readout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evsim.errors import ModelError
from evsim.interop.nir.nodes import READOUT_TYPES, SPIKING_TYPES, NirNode

SEMANTICS = ("nir", "snntorch", "norse", "sinabs", "spikingjelly")
PEER_DT_S = {"snntorch": 1e-4, "norse": 1e-3, "spikingjelly": 1e-4}
"""The time step each peer's importer hard-codes (sinabs reads tau in steps)."""
DEFAULT_NEURON_DT_S = 1e-4
"""``--semantics nir``'s neuron time step: NIR stores none; 1e-4 s is what the two peers that
integrate the spec's equations (snntorch, SpikingJelly) assume. The input bin width is a separate
thing (``dt_us``): a peer's tau against a 15 ms bin would give an unstable Euler step."""

UNITY = 1e-9



@dataclass(frozen=True)
class NeuronReading:
    """One neuron node read under a semantics: evsim neuron fields, and the input gain g, which
    a spiking population takes as threshold / g and a readout folds into its weights."""

    fields: dict
    gain: np.ndarray


def _uniform(node: NirNode, key: str, shape, default=None) -> float:
    values = _neuron_param(node, key, shape, default)
    first = float(values.reshape(-1)[0])
    if not np.all(values == first):
        raise ModelError(f"node {node.name!r} ({node.type}): {key} differs between neurons; evsim has one "
                         f"{'time constant' if key == 'tau' else key} per population")
    return first


def _neuron_param(node: NirNode, key: str, shape, default=None) -> np.ndarray:
    if key not in node.params:
        if default is None:
            raise ModelError(f"node {node.name!r} ({node.type}) has no {key}")
        return np.full(shape, float(default))
    return np.broadcast_to(np.asarray(node.params[key], dtype=np.float64), shape)


def _unity(x):
    x = np.asarray(x, dtype=np.float64)
    return np.where(np.abs(x - 1.0) <= UNITY, 1.0, x)


def _require_zero(node: NirNode, key: str, shape, why: str) -> None:
    values = _neuron_param(node, key, shape, 0.0)
    if np.any(values != 0):
        raise ModelError(f"node {node.name!r} ({node.type}): nonzero {key}; {why}")


V_LEAK_WHY = "a resting potential other than 0 is a constant input at every step, which evsim refuses as it refuses biases"


def read_neuron(node: NirNode, shape, semantics: str, dt: float, evsim_leak=None) -> NeuronReading:
    """The evsim dynamics of IF/LIF/LI/I node ``node`` under ``semantics`` (module docstring)."""
    where = f"node {node.name!r} ({node.type})"
    t = node.type
    _refuse_node_the_peer_cannot_read(where, t, semantics)
    if t in ("LIF", "LI"):
        tau = _uniform(node, "tau", shape)
        if tau <= 0:
            raise ModelError(f"{where}: tau must be positive, got {tau}")
        if semantics != "spikingjelly":
            _require_zero(node, "v_leak", shape, V_LEAK_WHY)
        r = _neuron_param(node, "r", shape, 1.0)
        if semantics == "sinabs":  # tau in steps, the exact exponential leak
            leak = math.exp(-1.0 / tau)
            gain = np.ones(shape)
        else:
            leak, gain = _euler_leak_and_gain(node, shape, semantics, dt, tau, r, where, evsim_leak)
    else:  # IF and I
        r = _neuron_param(node, "r", shape, 1.0)
        leak, gain = 1.0, _integrator_gain(shape, semantics, dt, r, where)
    if semantics in ("nir", "spikingjelly") and t in SPIKING_TYPES:
        _require_zero(node, "v_reset", shape, "evsim resets a neuron that fired to 0 (or subtracts its threshold)")
    if np.any(gain <= 0):
        raise ModelError(f"{where}: the input gain (r and tau under --semantics {semantics}) must be positive")
    fields = {"kind": "lif", "reset": "zero", "spikes_per_step": 1, "lower_bound": None, "fire_test": ">"}
    if t in READOUT_TYPES:
        return NeuronReading({**fields, "kind": "output", "threshold": 1.0, "leak": leak}, np.asarray(gain))
    return _spiking_reading(node, shape, semantics, fields, leak, gain, r, where)


def _refuse_node_the_peer_cannot_read(where: str, node_type: str, semantics: str) -> None:
    if semantics in ("snntorch", "spikingjelly") and node_type in READOUT_TYPES:
        raise ModelError(f"{where}: {semantics}'s importer has no {node_type} node; read this file with --semantics nir")
    if semantics in ("norse", "sinabs") and node_type == "I":
        raise ModelError(f"{where}: {semantics}'s importer has no I node; read this file with --semantics nir")


def _euler_leak_and_gain(node: NirNode, shape, semantics: str, dt: float, tau: float, r, where: str, evsim_leak):
    """A leaky node's leak ``1 - dt/tau`` and input gain as NIR, norse, snntorch and SpikingJelly
    integrate it (one Euler step of ``dt``)."""
    ratio = dt / tau
    if semantics == "spikingjelly" and not tau / dt > 1:
        raise ModelError(f"{where}: tau/dt = {tau / dt:g} with SpikingJelly's dt = {dt:g} s; it needs more than 1")
    if not 0 < ratio < 1:
        raise ModelError(f"{where}: dt/tau = {ratio:g} (dt = {dt:g} s, tau = {tau:g} s) gives a leak "
                         f"1 - dt/tau outside (0, 1]: the Euler step of this time constant is unstable at "
                         f"this dt" + (" (norse's exporter writes tau*dt instead of tau)" if semantics == "norse" else "")
                         + "; pick the semantics of the simulator that wrote the file, or a smaller --neuron-dt")
    leak = float(_unity(1.0 - ratio))
    if evsim_leak is not None and abs(evsim_leak - leak) <= UNITY:
        leak = evsim_leak  # evsim's own export: its exact leak, which 1 - dt/tau reproduces only to rounding
    if semantics == "snntorch":
        leak = float(np.float32(leak))
    if semantics in ("nir", "snntorch"):
        return leak, _unity(r * ratio)
    if semantics == "norse":
        return leak, np.full(shape, ratio)
    return leak, _spikingjelly_lif_gain(node, shape, tau / dt, r, where)


def _spikingjelly_lif_gain(node: NirNode, shape, tau_steps: float, r, where: str) -> np.ndarray:
    """SpikingJelly's LIF: decay_input (r = 1) scales the input by 1/tau_steps; r = tau_steps does not."""
    if np.all(_unity(r) == 1):
        gain = np.full(shape, 1.0 / tau_steps)
    elif np.all(_unity(r / tau_steps) == 1):
        gain = np.ones(shape)
    else:
        raise ModelError(f"{where}: SpikingJelly reads an LIF's r only as 1 or tau/dt")
    v_leak = _neuron_param(node, "v_leak", shape, 0.0)
    v_reset = _neuron_param(node, "v_reset", shape, 0.0)
    if np.any(v_leak != v_reset):
        raise ModelError(f"{where}: SpikingJelly needs v_leak equal to v_reset")
    if np.any(v_leak != 0):
        raise ModelError(f"{where}: nonzero v_leak; {V_LEAK_WHY}")
    return gain


def _integrator_gain(shape, semantics: str, dt: float, r, where: str) -> np.ndarray:
    """The input gain of an IF or I node (no leak)."""
    if semantics == "nir":
        return _unity(r * dt)
    if semantics == "spikingjelly" and not np.all(_unity(r * dt) == 1):
        raise ModelError(f"{where}: SpikingJelly reads IF only with r = 1/dt ({1 / dt:g}); "
                         "read this file with the semantics of the simulator that wrote it")
    return np.ones(shape)


def _spiking_reading(node: NirNode, shape, semantics: str, fields: dict, leak: float, gain, r, where: str) -> NeuronReading:
    """An IF or LIF node's reading: its threshold over the input gain, and each peer's firing rule."""
    t = node.type
    theta = _neuron_param(node, "v_threshold", shape)
    if np.any(theta <= 0):
        raise ModelError(f"{where}: v_threshold must be positive")
    effective = theta / gain
    if semantics == "snntorch":
        effective = effective.astype(np.float32).astype(np.float64)
        if t == "IF":  # snntorch's importer builds Leaky(beta=0.9, threshold=theta*r), reset by subtraction
            leak = float(np.float32(0.9))
            effective = (theta * r).astype(np.float32).astype(np.float64)
            fields["reset"] = "subtract"
    if semantics in ("sinabs", "spikingjelly"):
        fields["fire_test"] = ">="
    if semantics == "sinabs":
        fields.update(reset="subtract", spikes_per_step=None)
        if t == "IF":
            floor = _uniform(node, "v_threshold", shape)
            fields["lower_bound"] = -floor
    return NeuronReading({**fields, "threshold": _threshold(effective), "leak": float(leak)}, np.asarray(gain))


def _threshold(values: np.ndarray):
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.all(flat == flat[0]):
        return float(flat[0])
    return tuple(float(v) for v in flat)
