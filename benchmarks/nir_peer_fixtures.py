"""Generate the NIR fixtures in tests/data/nir/ with the real peer simulators.

For each peer (snntorch, norse, sinabs, SpikingJelly) this builds two small networks with seeded
random weights, exports each with THAT PEER'S OWN NIR exporter, and records the peer's own forward
pass on binned real N-MNIST test recordings, so that evsim's NIR import can be checked against the
peers without installing them:

- ``lenet``: the paper's LeNet shape on 2x34x34 (conv 5x5 20 same-padding, pool 2, conv 5x5 50,
  pool 2, linear 200, linear 10; a spiking population after each conv and linear), no biases;
- ``sumpool``: a small net with a stride-2 first conv and sum pooling where the peer has it
  (conv 5x5 s2 p2 8, pool 2, conv 3x3 16, pool 2, linear 10), with biases;
- ``sumpool0`` (``--nets sumpool0``): the same with all biases 0, which evsim imports;
- ``lif`` (``--peers sinabs --nets lif``): the sumpool0 shape with sinabs's LIF neurons and an
  ExpLeak (NIR LI) readout after one more linear layer: every neuron type sinabs exports;
- ``depthwise`` (``--peers snntorch,sinabs --nets depthwise``): the sumpool0 shape with a depthwise
  second conv (8 -> 16 channels, groups 8), no biases;
- ``li`` (``--peers norse --nets li``): norse's sumpool0 net and a LIBoxCell (NIR LI) readout after
  one more linear layer.

Each ``tests/data/nir/<peer>_<net>/`` holds

- ``model.nir``: the peer's export (nir.write, gzip);
- ``inputs.npz``: ``x``, the exact float32 input, ``[N, T, 2, 34, 34]`` event counts (channel =
  polarity, 0 OFF / 1 ON; then y, x), T = 20 bins of 15 ms from each recording's first event
  (compressed: the same three recordings in every folder, 16 kB instead of 277 kB);
- ``outputs.npz``: ``out_spikes [N, T, 10]`` and ``out_v [N, T, 10]`` (the last population's spikes
  and, where the peer exposes it, its membrane after the step), ``layer_counts [L, N, T]`` (spikes
  per population per step, summed over neurons; sinabs counts multi-spikes), ``layer_names`` (the
  NIR node names of the populations, in order), ``files`` and ``t0_us`` (the recordings and their
  first timestamps);
- ``meta.json``: peer and versions, how the net was built (neuron, reset, leak, dt used by the
  exporter), and whatever workaround the exporter needed.

Weights are sparse integers times a power of two (``w = k * 2**-e``), so every weight, and with
integer event counts every IF membrane, is exactly representable in float32: an exact simulator
reproduces the peers' spike trains bit for bit, whatever its summation order, as long as no leak
factor is involved (leaks like 0.875 stay exact; exp(-1/tau) does not).

Re-run (about a minute on one core) with the peers' virtualenv, from the repository root::

    python3 -m venv /work/peers-venv
    /work/peers-venv/bin/pip install torch==2.13.0
    /work/peers-venv/bin/pip install nir==1.0.8 nirtorch==2.6 h5py numpy scipy matplotlib loguru tqdm packaging pbr
    /work/peers-venv/bin/pip install --no-deps snntorch==1.0.0 norse==1.1.0 sinabs==3.1.3 spikingjelly==2.0.0
    /work/peers-venv/bin/python benchmarks/nir_peer_fixtures.py [--out tests/data/nir] [--peers snntorch,norse,...]
    /work/peers-venv/bin/python benchmarks/nir_peer_fixtures.py --cross          # -> cross_import.json
    /work/peers-venv/bin/python benchmarks/nir_peer_fixtures.py --export-check   # SEMANTICS.md section 5

(sinabs 3.1.3 declares nir<=1.0.4 and samna; it imports and exports fine with nir 1.0.8 and without
samna, which only its Speck/DynapCNN backend needs; SpikingJelly 2.0.0 needs nir>=1.0.7.)

The files in the repository were made with torch 2.13.0+cpu, nir 1.0.8, nirtorch 2.6, snntorch 1.0.0,
norse 1.1.0, sinabs 3.1.3 and spikingjelly 2.0.0 (``meta.json`` records the versions of each run).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import warnings
from pathlib import Path

import nir
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "evsim" / "data" / "nmnist" / "Test"
RECORDINGS = ("0/00004.bin", "3/00019.bin", "7/00001.bin")  # first test file of three digits
T = 20
BIN_US = 15_000
SEED = 16
VERSIONS = ("torch", "nir", "nirtorch", "snntorch", "norse", "sinabs", "spikingjelly", "numpy", "h5py")


# ---------------------------------------------------------------- inputs

def read_nmnist(path: Path) -> np.ndarray:
    """N-MNIST .bin: 5 bytes per event (x, y, p<<7 | t>>16, t>>8, t); y == 240 marks overflow."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    ev = np.empty(len(raw), dtype=[("x", np.int16), ("y", np.int16), ("p", np.int8), ("t", np.int64)])
    ev["x"], ev["y"], ev["p"] = raw[:, 0], raw[:, 1], raw[:, 2] >> 7
    ev["t"] = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    return ev[ev["y"] != 240]


def bin_counts(ev: np.ndarray) -> tuple[np.ndarray, int]:
    """Event counts ``[T, 2, 34, 34]`` in bins of BIN_US from the first event, and that event's time."""
    t0 = int(ev["t"][0])
    step = (ev["t"] - t0) // BIN_US
    keep = step < T
    frames = np.zeros((T, 2, 34, 34), dtype=np.float32)
    np.add.at(frames, (step[keep], ev["p"][keep], ev["y"][keep], ev["x"][keep]), 1)
    return frames, t0


def load_inputs() -> tuple[np.ndarray, list[str], list[int]]:
    frames, t0s = zip(*(bin_counts(read_nmnist(DATA / f)) for f in RECORDINGS))
    return np.stack(frames), [f"Test/{f}" for f in RECORDINGS], list(t0s)


# ---------------------------------------------------------------- weights

def dyadic(rng: np.random.Generator, shape, density: float, exp: int, spread: float = 3.0) -> np.ndarray:
    """Sparse integer weights times 2**-exp: exact in float32, so sums are order-independent."""
    k = np.rint(rng.normal(0.0, spread, size=shape)) * (rng.random(shape) < density)
    return (k * 2.0 ** -exp).astype(np.float32)


def lenet_weights(gain_exp: dict[str, int]) -> dict[str, np.ndarray]:
    """One weight set shared by all peers (same seed); ``gain_exp`` shifts each layer by 2**-e."""
    rng = np.random.default_rng(SEED)
    w = {
        "conv1": dyadic(rng, (20, 2, 5, 5), 0.5, 0),
        "conv2": dyadic(rng, (50, 20, 5, 5), 0.25, 0),
        "fc1": dyadic(rng, (200, 1800), 0.1, 0),
        "fc2": dyadic(rng, (10, 200), 0.5, 0),
    }
    return {k: v * np.float32(2.0 ** -gain_exp[k]) for k, v in w.items()}


def sumpool_weights(gain_exp: dict[str, int], bias: bool = True) -> dict[str, np.ndarray]:
    """``bias=False`` (net ``sumpool0``): the same weights with every bias 0, which evsim imports
    (it refuses nonzero biases)."""
    rng = np.random.default_rng(SEED + 1)
    w = {
        "conv1": dyadic(rng, (8, 2, 5, 5), 0.5, 0),
        "conv1.bias": dyadic(rng, (8,), 1.0, 0, 1.0),
        "conv2": dyadic(rng, (16, 8, 3, 3), 0.5, 0),
        "conv2.bias": dyadic(rng, (16,), 1.0, 0, 1.0),
        "fc": dyadic(rng, (10, 144), 0.5, 0),
        "fc.bias": dyadic(rng, (10,), 1.0, 0, 1.0),
    }
    if not bias:
        w = {k: v * 0 if k.endswith(".bias") else v for k, v in w.items()}
    return {k: v * np.float32(2.0 ** -gain_exp[k.split(".")[0]]) for k, v in w.items()}


def depthwise_modules(gain_exp: dict[str, int]) -> dict[str, torch.nn.Module]:
    """Net ``depthwise``: the sumpool0 shape with a depthwise second conv (8 -> 16, groups 8: two
    3x3 filters per channel, weight [16, 1, 3, 3]), no biases, weights shifted by 2**-gain_exp."""
    N = torch.nn
    rng = np.random.default_rng(SEED + 3)
    w = {
        "conv1": dyadic(rng, (8, 2, 5, 5), 0.5, 0),
        "conv2": dyadic(rng, (16, 1, 3, 3), 1.0, 0),
        "fc": dyadic(rng, (10, 144), 0.5, 0),
    }
    m = {"conv1": N.Conv2d(2, 8, 5, stride=2, padding=2, bias=False),
         "conv2": N.Conv2d(8, 16, 3, groups=8, bias=False), "fc": N.Linear(144, 10, bias=False)}
    set_params(m, {k: v * np.float32(2.0 ** -gain_exp[k]) for k, v in w.items()})
    return m


DEPTHWISE_GAIN = {"conv1": 2, "conv2": 1, "fc": 2}


def set_params(modules: dict[str, torch.nn.Module], weights: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name, value in weights.items():
            layer, _, part = name.partition(".")
            getattr(modules[layer], part or "weight").copy_(torch.from_numpy(value))


# Gains (powers of two) chosen so that every population fires a few percent per step on these
# recordings; the peers that scale their input (norse's LIF by dt/tau, SpikingJelly's LIF by 1/tau)
# or pool by sum instead of average get the compensating shift.
LENET_GAIN = {"conv1": 2, "conv2": 3, "fc1": 2, "fc2": 3}
SUMPOOL_GAIN = {"conv1": 2, "conv2": 3, "fc": 3}
SINABS_TAU = 7.5
"""sinabs's LIF and ExpLeak time constant in steps (net ``lif``): leak exp(-1/7.5) = 0.8752, where
an Euler step would give 1 - 1/7.5 = 0.8667."""


# ---------------------------------------------------------------- peers

def build_snntorch(net: str):
    """snntorch Leaky, beta = 0.875, reset to zero, threshold 1.

    Two things are needed for snntorch's exporter to work at all: beta and threshold as tensors of
    the population's shape (a scalar beta exports LIF parameters of shape (), which
    NIRGraph.infer_types rejects against the conv output), and ``ignore_dims=[0]`` (otherwise the
    batch dimension stays in the Input type and the conv shape inference indexes past its padding).
    Reset to zero because the exporter writes v_reset = 0 whatever the reset mechanism is. Pools
    are built with tuple sizes: AvgPool2d(2) exports kernel_size as a 0-d integer, which snntorch's
    own importer then cannot read back (``tuple(node.kernel_size)``, import_nir.py:220).
    """
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    N = torch.nn

    def pool():
        return N.AvgPool2d((2, 2), stride=(2, 2))

    def leaky(shape, **kw):
        return snn.Leaky(beta=torch.full(shape, 0.875), threshold=torch.ones(shape), init_hidden=True,
                         reset_mechanism="zero", **kw)

    if net == "lenet":
        m = {"conv1": N.Conv2d(2, 20, 5, padding=2, bias=False), "conv2": N.Conv2d(20, 50, 5, bias=False),
             "fc1": N.Linear(1800, 200, bias=False), "fc2": N.Linear(200, 10, bias=False)}
        set_params(m, lenet_weights(LENET_GAIN))
        seq = N.Sequential(m["conv1"], leaky((20, 34, 34)), pool(), m["conv2"], leaky((50, 13, 13)),
                           pool(), N.Flatten(), m["fc1"], leaky((200,)), m["fc2"], leaky((10,), output=True))
    elif net == "depthwise":
        m = depthwise_modules(DEPTHWISE_GAIN)
        seq = N.Sequential(m["conv1"], leaky((8, 17, 17)), pool(), m["conv2"], leaky((16, 6, 6)),
                           pool(), N.Flatten(), m["fc"], leaky((10,), output=True))
    else:
        m = {"conv1": N.Conv2d(2, 8, 5, stride=2, padding=2), "conv2": N.Conv2d(8, 16, 3), "fc": N.Linear(144, 10)}
        set_params(m, sumpool_weights(SUMPOOL_GAIN, bias=net == "sumpool"))
        # snntorch's exporter has no sum pooling; AvgPool2d is what it offers
        seq = N.Sequential(m["conv1"], leaky((8, 17, 17)), pool(), m["conv2"], leaky((16, 6, 6)),
                           pool(), N.Flatten(), m["fc"], leaky((10,), output=True))
    graph = export_to_nir(seq, torch.zeros(1, 2, 34, 34), ignore_dims=[0])
    neurons = [i for i, mod in enumerate(seq) if isinstance(mod, snn.Leaky)]

    def run(x):  # x [N, T, 2, 34, 34]
        for i in neurons:
            seq[i].reset_mem()
        return step_loop(seq, neurons, x, lambda out: out, last_v=lambda: seq[neurons[-1]].mem)

    meta = {"neuron": "snn.Leaky(beta=0.875 per neuron, threshold=1 per neuron, reset_mechanism='zero', "
                      "reset_delay=True)", "exporter": "snntorch.export_nir.export_to_nir(net, "
                      "torch.zeros(1,2,34,34), ignore_dims=[0])", "exporter_dt_s": 1e-4}
    return graph, [str(i) for i in neurons], run, meta


def step_loop(seq, neurons, x, first, last_v=None):
    """Run a stateful step-by-step net over T, recording every population's spikes per step."""
    counts, out, outv = [], [], []
    rec: dict[int, torch.Tensor] = {}
    hooks = [seq[i].register_forward_hook(lambda mod, inp, o, i=i: rec.__setitem__(i, first(o))) for i in neurons]
    try:
        with torch.no_grad():
            for t in range(x.shape[1]):
                seq(x[:, t])
                s = [rec[i][0] if isinstance(rec[i], tuple) else rec[i] for i in neurons]
                counts.append([si.reshape(len(x), -1).sum(1).numpy() for si in s])
                out.append(s[-1].numpy())
                outv.append(last_v().numpy() if last_v else np.full_like(out[-1], np.nan))
    finally:
        for h in hooks:
            h.remove()
    return np.stack(out, 1), np.stack(outv, 1), np.transpose(np.array(counts), (1, 2, 0))


def build_norse(net: str):
    """norse IAFCell (lenet) and LIFBoxCell (sumpool; tau_mem = 8 ms, so dt/tau = 1/8 at norse's dt).

    norse's exporter (norse.torch.utils.export_nir) maps only Conv2d (and only with a bias: it calls
    module.bias.detach()), Linear, LIFCell, LIFBoxCell, LIBoxCell and IAFCell; every other module,
    AvgPool2d, LPPool2d and Flatten included, becomes a None node, which nir.write cannot store.
    So the LeNet gets zero biases, and the export runs norse's own module map with a fallback for
    the two node kinds it lacks (pooling, Flatten) - the extract_nir_graph call norse's to_nir
    makes, plus ``ignore_dims=[0]`` and ``graph.infer_types()``: without them Conv2d.input_shape
    stays None and the Input keeps the batch dimension, and nir.write fails. Neuron parameters are
    tensors of the population's shape: scalar ones export as 0-d datasets, which nir.write's gzip
    rejects ("Scalar datasets don't support chunk/filter options") and infer_types rejects too.
    """
    import norse.torch as norse
    from nirtorch import extract_nir_graph
    from norse.torch.utils.export_nir import _extract_norse_module

    N = torch.nn
    if net == "lenet":
        m = {"conv1": N.Conv2d(2, 20, 5, padding=2), "conv2": N.Conv2d(20, 50, 5),
             "fc1": N.Linear(1800, 200, bias=False), "fc2": N.Linear(200, 10, bias=False)}
        for c in ("conv1", "conv2"):
            torch.nn.init.zeros_(m[c].bias)
        set_params(m, lenet_weights(LENET_GAIN))

        def cell(shape):
            return norse.IAFCell(norse.IAFParameters(v_th=torch.ones(shape)))

        seq = norse.SequentialState(m["conv1"], cell((20, 34, 34)), N.AvgPool2d(2), m["conv2"], cell((50, 13, 13)),
                                    N.AvgPool2d(2), N.Flatten(), m["fc1"], cell((200,)), m["fc2"], cell((10,)))
        neuron_desc = "norse.IAFCell(v_th=1, v_reset=0)"
    else:
        m = {"conv1": N.Conv2d(2, 8, 5, stride=2, padding=2), "conv2": N.Conv2d(8, 16, 3), "fc": N.Linear(144, 10)}
        # LIFBox integrates dt/tau = 1/8 of its input: 8x the weights (and biases)
        set_params(m, sumpool_weights({k: v - 3 for k, v in SUMPOOL_GAIN.items()}, bias=net == "sumpool"))

        def cell(shape):
            return norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.full(shape, 125.0),
                                                           v_th=torch.ones(shape), v_leak=torch.zeros(shape)))

        layers = [m["conv1"], cell((8, 17, 17)), N.LPPool2d(1, 2), m["conv2"], cell((16, 6, 6)),
                  N.LPPool2d(1, 2), N.Flatten(), m["fc"], cell((10,))]
        neuron_desc = "norse.LIFBoxCell(tau_mem_inv=125/s, v_th=1, v_leak=0, v_reset=0, reset_value)"
        if net == "li":  # the sumpool0 net and a LIBoxCell readout (NIR LI) after one more linear layer
            m["readout"] = N.Linear(10, 10, bias=False)
            set_params({"readout": m["readout"]}, {"readout": dyadic(np.random.default_rng(SEED + 2), (10, 10), 0.5, 0)})
            layers += [m["readout"], norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=torch.full((10,), 125.0),
                                                                           v_leak=torch.zeros(10)))]
            neuron_desc += "; readout norse.LIBoxCell(tau_mem_inv=125/s, v_leak=0)"
        seq = norse.SequentialState(*layers)

    def fallback(module):
        node = _extract_norse_module(module, dt=0.001)
        if node is not None:
            return node
        if isinstance(module, N.AvgPool2d):
            return nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
        if isinstance(module, N.LPPool2d) and module.norm_type == 1:
            return nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
        if isinstance(module, N.Flatten):
            return nir.Flatten(input_type=None, start_dim=module.start_dim - 1, end_dim=module.end_dim)
        return None

    graph = extract_nir_graph(seq, fallback, torch.zeros(1, 2, 34, 34), model_name="norse", ignore_dims=[0])
    graph.infer_types()
    neurons = [i for i, mod in enumerate(seq) if isinstance(mod, (norse.IAFCell, norse.LIFBoxCell))]
    stateful = [i for i, mod in enumerate(seq) if isinstance(mod, (norse.IAFCell, norse.LIFBoxCell, norse.LIBoxCell))]

    def run(x):  # out: the last spiking population's spikes; outv: the last cell's membrane (the LI's, in net li)
        counts, out, outv = [], [], []
        state = None
        with torch.no_grad():
            for t in range(x.shape[1]):
                h, states = x[:, t], []
                for i, mod in enumerate(seq):
                    if i in stateful:
                        h, s = mod(h, None if state is None else state[len(states)])
                        states.append(s)
                    else:
                        h = mod(h)
                    if i in neurons:
                        counts.append(h.reshape(len(x), -1).sum(1).numpy())
                    if i == neurons[-1]:
                        out.append(h.numpy())
                state = states
                outv.append(states[-1].v.numpy())
        c = np.array(counts).reshape(x.shape[1], len(neurons), len(x))
        return np.stack(out, 1), np.stack(outv, 1), np.transpose(c, (1, 2, 0))

    meta = {"neuron": neuron_desc, "exporter": "nirtorch.extract_nir_graph(net, norse "
            "_extract_norse_module(dt=0.001) + fallback for AvgPool2d/LPPool2d(1)/Flatten)",
            "exporter_dt_s": 1e-3}
    return graph, [str(i) for i in neurons], run, meta


def build_sinabs(net: str):
    """sinabs IAFSqueeze: multi-spike (floor(V/theta) spikes per step), subtractive reset, threshold 1,
    min_v_mem = -1 (what sinabs's own importer builds from an IF node).

    sinabs's exporter has no AvgPool2d (sinabs/nir.py raises NotImplementedError for it), so its
    LeNet pools with sl.SumPool2d and the layer after each pool gets weights / 4 (same sums as an
    average pool: both are exact powers of two).
    """
    import sinabs.layers as sl
    import sinabs.nir as snir

    N = torch.nn
    n = 3  # batch size the Squeeze layers unfold (N*T, ...) with

    def iaf():
        return sl.IAFSqueeze(batch_size=n, spike_threshold=1.0, min_v_mem=-1.0)

    if net == "lenet":
        m = {"conv1": N.Conv2d(2, 20, 5, padding=2, bias=False), "conv2": N.Conv2d(20, 50, 5, bias=False),
             "fc1": N.Linear(1800, 200, bias=False), "fc2": N.Linear(200, 10, bias=False)}
        # sum instead of average pooling: the next layer's weights / 4; and multi-spike with
        # subtractive reset fires more from the same drive: / 2 to / 4 more
        gain = {"conv1": LENET_GAIN["conv1"] + 2, "conv2": LENET_GAIN["conv2"] + 4, "fc1": LENET_GAIN["fc1"] + 3,
                "fc2": LENET_GAIN["fc2"] + 1}
        set_params(m, lenet_weights(gain))
        seq = N.Sequential(m["conv1"], iaf(), sl.SumPool2d(2), m["conv2"], iaf(), sl.SumPool2d(2), N.Flatten(),
                           m["fc1"], iaf(), m["fc2"], iaf())
    elif net == "lif":
        # every other neuron sinabs exports: LIF (tau_mem in steps, leak exp(-1/tau)) and an ExpLeak
        # readout (NIR LI), both with norm_input=False, as sinabs's own importer builds them
        # tau and threshold per neuron (all equal): from scalars, nir cannot tell the node's shape
        def lif(*shape):
            return sl.LIFSqueeze(tau_mem=torch.full(shape, SINABS_TAU), batch_size=n, spike_threshold=torch.ones(shape),
                                 norm_input=False)

        m = {"conv1": N.Conv2d(2, 8, 5, stride=2, padding=2, bias=False), "conv2": N.Conv2d(8, 16, 3, bias=False),
             "fc": N.Linear(144, 10, bias=False), "readout": N.Linear(10, 10, bias=False)}
        weights = sumpool_weights({k: v + 2 for k, v in SUMPOOL_GAIN.items()}, bias=False)
        weights = {k: v for k, v in weights.items() if not k.endswith(".bias")}
        weights["readout"] = dyadic(np.random.default_rng(SEED + 2), (10, 10), 0.5, 2)
        set_params(m, weights)
        seq = N.Sequential(m["conv1"], lif(8, 17, 17), sl.SumPool2d(2), m["conv2"], lif(16, 6, 6), sl.SumPool2d(2),
                           N.Flatten(), m["fc"], lif(10), m["readout"],
                           sl.ExpLeakSqueeze(tau_mem=torch.full((10,), SINABS_TAU), batch_size=n, norm_input=False))
    elif net == "depthwise":
        m = depthwise_modules({k: v + 2 for k, v in DEPTHWISE_GAIN.items()})
        seq = N.Sequential(m["conv1"], iaf(), sl.SumPool2d(2), m["conv2"], iaf(), sl.SumPool2d(2), N.Flatten(),
                           m["fc"], iaf())
    else:
        m = {"conv1": N.Conv2d(2, 8, 5, stride=2, padding=2), "conv2": N.Conv2d(8, 16, 3), "fc": N.Linear(144, 10)}
        set_params(m, sumpool_weights({k: v + 2 for k, v in SUMPOOL_GAIN.items()}, bias=net == "sumpool"))
        seq = N.Sequential(m["conv1"], iaf(), sl.SumPool2d(2), m["conv2"], iaf(), sl.SumPool2d(2), N.Flatten(),
                           m["fc"], iaf())
    graph = snir.to_nir(seq, torch.zeros(n, 2, 34, 34))
    graph.infer_types()  # sinabs leaves Conv2d.input_shape None, which nir.write cannot store
    neurons = [i for i, mod in enumerate(seq) if isinstance(mod, (sl.IAFSqueeze, sl.LIFSqueeze))]
    readout = len(seq) - 1 if isinstance(seq[-1], sl.ExpLeakSqueeze) else None

    def run(x):  # sinabs runs all T steps in one call on (N*T, ...) input
        for i in neurons:
            seq[i].reset_states()
        if readout is not None:
            seq[readout].reset_states()
        rec = {}
        hooks = [seq[i].register_forward_hook(lambda mod, inp, o, i=i: rec.__setitem__(i, o)) for i in neurons]
        try:
            with torch.no_grad():
                final = seq(x.reshape(-1, *x.shape[2:])).reshape(len(x), x.shape[1], -1).numpy()
        finally:
            for h in hooks:
                h.remove()
        counts = np.stack([rec[i].reshape(len(x), x.shape[1], -1).sum(2).numpy() for i in neurons])
        out = rec[neurons[-1]].reshape(len(x), x.shape[1], -1).numpy()
        # out_v: the ExpLeak readout's membrane after each step, where the net has one
        return out, final if readout is not None else np.full_like(out, np.nan), counts

    neuron = ("sl.IAFSqueeze(spike_threshold=1, min_v_mem=-1, spike_fn=MultiSpike, reset_fn=MembraneSubtract)"
              if net != "lif" else f"sl.LIFSqueeze(tau_mem={SINABS_TAU} per neuron, spike_threshold=1, norm_input=False, "
              f"spike_fn=MultiSpike, reset_fn=MembraneSubtract); readout sl.ExpLeakSqueeze(tau_mem={SINABS_TAU}, "
              "norm_input=False)")
    meta = {"neuron": neuron, "exporter": "sinabs.nir.to_nir(net, torch.zeros(3,2,34,34))", "exporter_dt_s": None}
    return graph, [str(i) for i in neurons], run, meta


def build_spikingjelly(net: str):
    """SpikingJelly IFNode (lenet) and LIFNode(tau=2, decay_input=True) (sumpool), hard reset to 0,
    threshold 1, single-step mode; its exporter has no sum pooling, so sumpool uses AvgPool2d."""
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir

    N = torch.nn
    if net == "lenet":
        m = {"conv1": layer.Conv2d(2, 20, 5, padding="same", bias=False), "conv2": layer.Conv2d(20, 50, 5, bias=False),
             "fc1": layer.Linear(1800, 200, bias=False), "fc2": layer.Linear(200, 10, bias=False)}
        set_params(m, lenet_weights(LENET_GAIN))
        cell = neuron.IFNode
        seq = N.Sequential(m["conv1"], cell(), layer.AvgPool2d(2), m["conv2"], cell(), layer.AvgPool2d(2),
                           layer.Flatten(), m["fc1"], cell(), m["fc2"], cell())
        neuron_desc = "neuron.IFNode(v_threshold=1, v_reset=0)"
    else:
        m = {"conv1": layer.Conv2d(2, 8, 5, stride=2, padding=2), "conv2": layer.Conv2d(8, 16, 3),
             "fc": layer.Linear(144, 10)}
        # LIF with decay_input integrates x / tau = x / 2: twice the weights
        set_params(m, sumpool_weights({k: v - 1 for k, v in SUMPOOL_GAIN.items()}, bias=net == "sumpool"))

        def cell():
            return neuron.LIFNode(tau=2.0, decay_input=True)

        seq = N.Sequential(m["conv1"], cell(), layer.AvgPool2d(2), m["conv2"], cell(), layer.AvgPool2d(2),
                           layer.Flatten(), m["fc"], cell())
        neuron_desc = "neuron.LIFNode(tau=2, decay_input=True, v_threshold=1, v_reset=0)"
    graph = export_to_nir(seq, torch.zeros(1, 2, 34, 34))
    neurons = [i for i, mod in enumerate(seq) if isinstance(mod, neuron.BaseNode)]
    names = [k for k, v in graph.nodes.items() if isinstance(v, (nir.IF, nir.LIF))]

    def run(x):
        functional.reset_net(seq)
        return step_loop(seq, neurons, x, lambda out: out, last_v=lambda: seq[neurons[-1]].v)

    meta = {"neuron": neuron_desc, "exporter": "spikingjelly.activation_based.nir_exchange.export_to_nir("
            "net, torch.zeros(1,2,34,34))", "exporter_dt_s": 1e-4}
    return graph, names, run, meta


PEERS = {"snntorch": build_snntorch, "norse": build_norse, "sinabs": build_sinabs,
         "spikingjelly": build_spikingjelly}


def versions() -> dict[str, str]:
    out = {}
    for name in VERSIONS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def numpy_params(graph: nir.NIRGraph) -> nir.NIRGraph:
    """norse and sinabs put torch tensors into the nodes; nir.write stores those without its gzip
    (it compresses only np.ndarray), which makes a LeNet file 5x larger. Same values, as numpy."""
    for node in graph.nodes.values():
        for key, value in vars(node).items():
            if isinstance(value, torch.Tensor):
                setattr(node, key, value.detach().numpy())
        if isinstance(node, nir.NIRGraph):
            numpy_params(node)
    return graph


def make(peer: str, net: str, inputs: np.ndarray, files: list[str], t0: list[int], out: Path) -> str:
    torch.manual_seed(SEED)  # the modules' own init, overwritten by set_params, stays reproducible
    graph, names, run, meta = PEERS[peer](net)
    out_spikes, out_v, counts = run(torch.from_numpy(inputs))
    folder = out / f"{peer}_{net}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    nir.write(folder / "model.nir", numpy_params(graph))
    np.savez_compressed(folder / "inputs.npz", x=inputs)
    np.savez_compressed(folder / "outputs.npz", out_spikes=out_spikes.astype(np.float32),
                        out_v=out_v.astype(np.float32), layer_counts=counts.astype(np.float32),
                        layer_names=np.array(names), files=np.array(files), t0_us=np.array(t0))
    sizes = {k: list(np.atleast_1d(v.output_type["output"]).tolist()) if getattr(v, "output_type", None)
             and v.output_type.get("output") is not None else None for k, v in graph.nodes.items()}
    meta.update(peer=peer, net=net, versions=versions(), timesteps=T, bin_us=BIN_US, seed=SEED,
                nodes={k: type(v).__name__ for k, v in graph.nodes.items()}, edges=sorted(graph.edges),
                output_types=sizes)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    n_neurons = counts.shape[0]
    rates = counts.sum(2).mean(1)
    return f"{peer}_{net}: {n_neurons} populations, spikes per sample per population {np.round(rates, 1).tolist()}"


# ---------------------------------------------------------------- the peers' importers, crosswise

def _stepwise(module, x):
    """Drive a nirtorch-built module (returns (output, state)) one step at a time."""
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[1]):
            o, state = module(x[:, t], state)
            outs.append(o.reshape(x.shape[0], -1))
    return torch.stack(outs, 1)


def import_snntorch(graph, x):
    from snntorch.import_nir import import_from_nir
    return _stepwise(import_from_nir(graph), x)


def import_norse(graph, x):
    from norse.torch import from_nir
    return _stepwise(from_nir(graph), x)


def import_sinabs(graph, x):
    from sinabs.nir import from_nir
    with torch.no_grad():
        o = from_nir(graph, batch_size=x.shape[0])(x.reshape(-1, *x.shape[2:]))
    return (o[0] if isinstance(o, tuple) else o).reshape(x.shape[0], x.shape[1], -1)


def import_spikingjelly(graph, x):
    from spikingjelly.activation_based.nir_exchange import import_from_nir
    return _stepwise(import_from_nir(graph, dt=1e-4), x)


IMPORTERS = {"snntorch": import_snntorch, "norse": import_norse, "sinabs": import_sinabs,
             "spikingjelly": import_spikingjelly}


def cross_import(out: Path) -> dict:
    """Each peer's importer on each fixture, as a batch of 3 and one sample at a time: does it load
    and run, and does it reproduce the exporting peer's own output spikes?"""
    import contextlib
    import io
    import logging
    import traceback

    logging.disable(logging.WARNING)
    table = {}
    for folder in sorted(p for p in out.iterdir() if (p / "model.nir").exists()):
        ref = np.load(folder / "outputs.npz")["out_spikes"]
        x = torch.from_numpy(np.load(folder / "inputs.npz")["x"])
        for name, fn in IMPORTERS.items():
            for batch in (True, False):
                key = f"{folder.name} -> {name} ({'batch of 3' if batch else 'one sample at a time'})"
                try:
                    with contextlib.redirect_stdout(io.StringIO()):  # snntorch prints whole arrays
                        if batch:
                            got = fn(nir.read(folder / "model.nir"), x).numpy()
                        else:
                            got = np.concatenate([fn(nir.read(folder / "model.nir"), x[i:i + 1]).numpy()
                                                  for i in range(len(x))])
                    got = got.reshape(ref.shape)
                    table[key] = (f"runs; output spikes {got.sum():.0f} vs the exporter's {ref.sum():.0f}; "
                                  f"identical: {bool(np.array_equal(got, ref))}")
                except Exception as e:  # the point is to record how each importer fails
                    tb = traceback.extract_tb(e.__traceback__)[-1]
                    where = tb.filename.split("site-packages/")[-1]
                    table[key] = f"fails: {type(e).__name__}: {str(e).splitlines()[0][:160]} ({where}:{tb.lineno})"
    return table


def as_evsim_export(graph: nir.NIRGraph, leak: float, dt: float = 1e-4, tau_if: float = 1e12) -> nir.NIRGraph:
    """The graph with every IF/LIF written the way SEMANTICS.md section 5 proposes evsim exports a
    population of leak ``leak``: LIF(tau = dt/(1 - leak), r = tau/dt, v_leak = 0, v_reset = 0), and
    for leak 1 a LIF with a huge tau; pools with two-element kernel and stride."""
    nodes = {}
    for key, node in graph.nodes.items():
        if isinstance(node, (nir.IF, nir.LIF)):
            shape = node.v_threshold.shape
            tau = tau_if if leak == 1 else dt / (1 - leak)
            nodes[key] = nir.LIF(tau=np.full(shape, tau), r=np.full(shape, tau / dt), v_leak=np.zeros(shape),
                                 v_threshold=node.v_threshold.astype(np.float64), v_reset=np.zeros(shape))
        elif isinstance(node, nir.AvgPool2d):
            nodes[key] = nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0]))
        else:
            nodes[key] = node
    return nir.NIRGraph(nodes, graph.edges, type_check=False)


def nudged(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Thresholds one float32 ulp up: turns SpikingJelly's v >= theta into v > theta for theta = 1."""
    for node in graph.nodes.values():
        if isinstance(node, nir.LIF):
            node.v_threshold = np.full_like(node.v_threshold, np.nextafter(np.float32(1), np.float32(2)))
    return graph


def export_mapping_check(out: Path) -> dict:
    """Do snntorch and SpikingJelly read the proposed evsim export mapping as evsim means it?"""
    import contextlib
    import io
    import logging

    logging.disable(logging.WARNING)

    def snntorch_one_by_one(graph_fn, x):  # snntorch's importer cannot run a batch (Flatten)
        with contextlib.redirect_stdout(io.StringIO()):
            return np.concatenate([import_snntorch(graph_fn(), x[i:i + 1]).numpy() for i in range(len(x))])

    res = {}
    sj = out / "spikingjelly_lenet"
    x = torch.from_numpy(np.load(sj / "inputs.npz")["x"])
    ref = np.load(sj / "outputs.npz")["out_spikes"].reshape(3, 20, -1)
    got_sj = import_spikingjelly(as_evsim_export(nir.read(sj / "model.nir"), 1.0), x).numpy()
    got_snn = snntorch_one_by_one(lambda: as_evsim_export(nir.read(sj / "model.nir"), 1.0), x)
    got_sj_gt = import_spikingjelly(nudged(as_evsim_export(nir.read(sj / "model.nir"), 1.0)), x).numpy()
    res["IF as huge-tau LIF -> SpikingJelly, equals its own IF run"] = bool(np.array_equal(got_sj, ref))
    res["IF as huge-tau LIF -> snntorch, output spikes (SpikingJelly's own IF: %d)" % ref.sum()] = int(got_snn.sum())
    res["IF as huge-tau LIF: SpikingJelly with theta + 1 ulp equals snntorch"] = bool(np.array_equal(got_sj_gt, got_snn))
    st = out / "snntorch_lenet"
    ref = np.load(st / "outputs.npz")["out_spikes"].reshape(3, 20, -1)
    got = import_spikingjelly(nudged(as_evsim_export(nir.read(st / "model.nir"), 0.875)), x).numpy()
    res["leak 0.875 as LIF -> SpikingJelly with theta + 1 ulp equals snntorch's own run"] = bool(np.array_equal(got, ref))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "nir")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--nets", default="lenet,sumpool")
    ap.add_argument("--cross", action="store_true",
                    help="only run every peer's importer on every fixture; writes cross_import.json")
    ap.add_argument("--export-check", action="store_true",
                    help="only check the proposed evsim export mapping against snntorch and SpikingJelly")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.export_check:
        for k, v in export_mapping_check(args.out).items():
            print(f"{k}: {v}")
        return
    if args.cross:
        table = cross_import(args.out)
        (args.out / "cross_import.json").write_text(json.dumps(table, indent=1) + "\n")
        print("\n".join(f"{k}: {v}" for k, v in table.items()))
        return
    inputs, files, t0 = load_inputs()
    for peer in args.peers.split(","):
        for net in args.nets.split(","):
            try:
                print(make(peer, net, inputs, files, t0, args.out))
            except Exception as e:  # one peer failing must not stop the others; the README records it
                print(f"{peer}_{net}: FAILED {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
