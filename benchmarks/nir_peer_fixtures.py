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

from nir_peer_importers import cross_import, export_mapping_check
from nir_peer_inputs import (BIN_US, DEPTHWISE_GAIN, LENET_GAIN, SEED, SINABS_TAU, SUMPOOL_GAIN, T, depthwise_modules, dyadic,
                             lenet_weights, load_inputs, set_params, sumpool_weights)

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("torch", "nir", "nirtorch", "snntorch", "norse", "sinabs", "spikingjelly", "numpy", "h5py")


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
