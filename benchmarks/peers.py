"""Every simulator side by side: the same networks, the same real N-MNIST recordings, one command.

Networks: ``lenet-nmnist`` (bundled; written by ``evsim export`` to NIR) and the sinabs CNN trained on
N-MNIST (``tests/data/nir/sinabs_nmnist/model.nir``, sinabs's own export). Simulators: evsim step
mode, evsim asynchronous mode and evsim's dense PyTorch (this process), and snntorch, norse, sinabs
and SpikingJelly, each through its own NIR importer, in one more process run with the peers'
virtualenv (``benchmarks/nir_peer_fixtures.py`` says how to build it)::

    python benchmarks/peers.py [--samples 8] [--rounds 2] [--threads 1] [--peers-python /work/peers-venv/bin/python]

Every simulator gets the same input: the recordings binned the way evsim's model reads them
(``evsim.analysis.bench.prepare_inputs``: frames for the dense simulators, the same events for
evsim's engine). Rates are samples per second of CPU time (``time.process_time``, best round), so
that other jobs on a shared machine do not count; wall-clock rates are in ``--json``. Predictions
are compared with evsim's step mode; a peer's graph output is read out as evsim reads its own
(``evsim_readout`` in the exported file's metadata; spike counts for a graph that ends in spiking
neurons). Counters: evsim's exact synaptic operations and spikes, against sinabs's ``SNNAnalyzer``
and SpikingJelly's ``SynOpCounter`` where the peer runs the network (snntorch and norse have none).

The peer side (``--worker DIR``) imports neither evsim nor anything beyond numpy, torch, nir and
the peers, so it runs in the peers' own virtualenv.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # numba beside torch: one pool each, no oversubscription

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SINABS_NIR = ROOT / "tests" / "data" / "nir" / "sinabs_nmnist" / "model.nir"
PEERS = ("snntorch", "norse", "sinabs", "spikingjelly")
DEFAULT_PEERS_PYTHON = Path(os.environ.get("EVSIM_PEERS_PYTHON", "/work/peers-venv/bin/python"))
# where a peer's reading of NIR differs from evsim's (tests/data/nir/SEMANTICS.md, README "Semantics")
SEMANTICS = {
    "snntorch": "reads LIF with dt 1e-4 s as evsim exports it; an IF node as Leaky(beta 0.9) with subtraction",
    "norse": "its own dt of 1e-3 s (leak 1 - 1e-3/tau, gain dt/tau, r ignored); one spike per step, reset to 0",
    "sinabs": "tau in steps (leak exp(-1/tau)); several spikes per step, reset by subtraction; no conv LIF",
    "spikingjelly": "v >= threshold, one spike per step; IF needs r = 1/dt",
    "evsim async": "continuous time: each event at its own time, not binned (other counts by design)",
}


# ================================================================ the peers' side (peers' virtualenv)


def _stepwise(module, x):
    """Drive a nirtorch-built module (returns (output, state)) one step at a time: [B, T, ...] -> [B, T, n]."""
    import torch

    state, outs = None, []
    for t in range(x.shape[1]):
        o, state = module(x[:, t], state)
        outs.append(o.reshape(x.shape[0], -1))
    return torch.stack(outs, 1)


def _builder(peer: str, graph):
    """``(build, module)``: ``build(batch) -> run(x [B, T, ...]) -> [B, T, n]`` with the peer's own
    NIR importer (each run starts from a fresh state), and the batch-1 module, for the counters."""
    if peer == "sinabs":
        from sinabs.nir import from_nir

        modules = {}

        def build(batch):
            module = modules.setdefault(batch, from_nir(graph, batch_size=batch))

            def run(x):
                _reset(module)
                o = module(x.reshape(-1, *x.shape[2:]))
                return (o[0] if isinstance(o, tuple) else o).reshape(x.shape[0], x.shape[1], -1)
            return run
        return build, modules.setdefault(1, from_nir(graph, batch_size=1))
    if peer == "snntorch":
        from snntorch.import_nir import import_from_nir

        with contextlib.redirect_stdout(io.StringIO()):  # it prints whole arrays
            module = import_from_nir(graph)
    elif peer == "norse":
        from norse.torch import from_nir

        module = from_nir(graph)
    else:
        from spikingjelly.activation_based.nir_exchange import import_from_nir

        module = import_from_nir(graph, dt=1e-4)

    def run(x):
        _reset(module)
        return _stepwise(module, x)
    return (lambda batch: run), module


def _reset(module) -> None:
    """sinabs, snntorch and SpikingJelly keep neuron state inside their modules between calls,
    even where the graph passes a state along: every sample starts from rest."""
    for m in module.modules():
        if hasattr(m, "reset_states"):  # sinabs
            m.reset_states()
        elif hasattr(m, "reset_mem"):  # snntorch
            m.reset_mem()
    if "spikingjelly" in sys.modules:
        from spikingjelly.activation_based import functional

        functional.reset_net(module)


def _run_all(build, x, batch: int):
    import torch

    run = build(batch)
    with torch.no_grad():
        return torch.cat([run(x[i : i + batch]) for i in range(0, len(x), batch)]).numpy()


def _timed(fn, rounds: int) -> tuple[float, float, object]:
    """Best CPU seconds and best wall seconds over ``rounds`` calls, and the last result."""
    cpu, wall, out = [], [], None
    for _ in range(rounds):
        c, w = time.process_time(), time.perf_counter()
        out = fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return min(cpu), min(wall), out


def _failure(e: Exception) -> str:
    import traceback

    tb = traceback.extract_tb(e.__traceback__)[-1]
    where = tb.filename.split("site-packages/")[-1]
    return f"{type(e).__name__}: {str(e).splitlines()[0][:140] if str(e) else ''} ({where}:{tb.lineno})"


def _counters(peer: str, build, module, x) -> dict | None:
    """The peer's own counters over one batch-1 pass: sinabs's SNNAnalyzer (synops, spikes),
    SpikingJelly's SynOpCounter (synops) and its neurons' outputs (spikes). None where the peer has none."""
    import torch

    if peer == "sinabs":
        from sinabs import SNNAnalyzer

        synops = spikes = 0.0
        analyzer = SNNAnalyzer(module)
        for i in range(len(x)):  # average=False: the statistics of the last forward pass, one sample
            _reset(module)
            with torch.no_grad():
                module(x[i : i + 1].reshape(-1, *x.shape[2:]))
            synops += float(analyzer.get_model_statistics(average=False)["synops"])
            spikes += sum(float(s["output"].sum()) for s in analyzer.get_layer_statistics()["spiking"].values())
        return {"synops": synops / len(x), "spikes": spikes / len(x), "counter": "sinabs.SNNAnalyzer"}
    if peer == "spikingjelly":
        from spikingjelly.activation_based import neuron
        from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

        # spikes: a hook on each neuron's wrapper (the imported graph calls the neuron's
        # functional_forward, past hooks and monitor.OutputMonitor; that module also needs tensorboard)
        spikes = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: spikes.append(float(o[0].sum())))
                 for m in module.modules() if isinstance(getattr(m, "module", None), neuron.BaseNode)]
        counter = SynOpCounter()
        with DispatchCounterMode([counter]):
            _run_all(build, x, 1)
        for h in hooks:
            h.remove()
        return {"synops": float(counter.get_total()) / len(x), "spikes": sum(spikes) / len(x),
                "counter": "spikingjelly op_counter.SynOpCounter; spikes: its neurons' outputs"}
    return None


def _peer_on(peer: str, nir_path: Path, x, batches: list[int], rounds: int) -> dict:
    """One peer on one network: does its importer load the file, its outputs at batch 1, its rate
    at batch 1 and each larger batch (a batch whose outputs differ from batch 1's is reported, not
    timed as a success), its counters."""
    import nir

    try:
        build, module = _builder(peer, nir.read(nir_path))
        _run_all(build, x[:1], 1)  # warm-up
        cpu, wall, out = _timed(lambda: _run_all(build, x, 1), rounds)
    except Exception as e:  # the point is to record how each importer fails
        return {"ok": False, "error": _failure(e)}
    result = {"ok": True, "outputs": out, "batch": {1: {"cpu_s": cpu, "wall_s": wall}}}
    for b in batches:
        try:
            cpu, wall, got = _timed(lambda: _run_all(build, x, b), rounds)
            same = bool(np.allclose(got, out, rtol=1e-5, atol=1e-6))
            result["batch"][b] = {"cpu_s": cpu, "wall_s": wall} if same else {"error": "outputs differ from batch 1"}
        except Exception as e:
            result["batch"][b] = {"error": _failure(e)}
    try:
        result["counters"] = _counters(peer, build, module, x)
    except Exception as e:
        result["counters"] = {"error": _failure(e)}
    return result


def worker(folder: Path) -> None:
    """Run every peer on every network of ``folder/job.json``; write ``folder/peers.npz`` + ``peers.json``."""
    import logging
    import warnings
    from importlib.metadata import PackageNotFoundError, version

    import torch

    job = json.loads((folder / "job.json").read_text())
    torch.set_num_threads(job["threads"])
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:  # its row then says how its import fails
            return None

    report, arrays = {"versions": {p: installed(p) for p in ("torch", "nir", "nirtorch", *PEERS)}}, {}
    for net in job["networks"]:
        x = torch.from_numpy(np.load(folder / f"{net}.npz")["x"])
        for peer in job["peers"]:
            r = _peer_on(peer, folder / f"{net}.nir", x, [b for b in job["batches"] if b > 1], job["rounds"])
            if r.get("ok"):
                arrays[f"{net}/{peer}"] = r.pop("outputs")
            report[f"{net}/{peer}"] = r
            print(f"  {peer} on {net}: {'runs' if r['ok'] else 'fails: ' + r['error']}", file=sys.stderr, flush=True)
    np.savez(folder / "peers.npz", **arrays)
    (folder / "peers.json").write_text(json.dumps(report, default=str))


# ================================================================ evsim's side (this process)


def _networks(n: int, data: Path, folder: Path) -> dict:
    """name -> (evsim Network, BenchInputs, readout weights over steps), the NIR file of each
    written into ``folder`` and the peers' input ``x [N, T, C, H, W]`` beside it."""
    import evsim
    from evsim.analysis.bench import prepare_inputs
    from evsim.datasets.samples import load_samples
    from evsim.interop.nir import export_nir, read_nir
    from evsim.model.file import load_model

    export_nir(load_model("lenet-nmnist"), folder / "lenet-nmnist.nir")
    (folder / "sinabs-nmnist.nir").write_bytes(SINABS_NIR.read_bytes())
    networks = {"lenet-nmnist": evsim.load("lenet-nmnist"),
                "sinabs-nmnist": evsim.load(SINABS_NIR, dt_us=15_000, timesteps=20, semantics="sinabs")}
    out, files = {}, {}
    for name, network in networks.items():
        samples = load_samples("nmnist", data, "test", limit=n, encoding=network.encoding)
        files[name] = [str(samples.recordings.files[i]) for i in samples.indices]
        inputs = prepare_inputs(samples, network)
        T = network.timesteps
        meta = read_nir(folder / f"{name}.nir").metadata
        if "evsim_readout_leak" in meta:  # evsim's readout of its exported graph (the file's metadata)
            readout = float(meta["evsim_readout_leak"]) ** (T - np.arange(T)) / T
        else:  # a graph that ends in spiking neurons: their spike counts / T
            readout = np.full(T, 1.0 / T)
        np.savez(folder / f"{name}.npz", x=np.ascontiguousarray(inputs.frames.transpose(1, 0, 2, 3, 4)))
        out[name] = (network, inputs, readout)
    assert files["lenet-nmnist"] == files["sinabs-nmnist"], "both networks must see the same recordings"
    return out


def _evsim_contenders(network, inputs, batches: list[int]):
    """name -> {batch: run every sample once -> (predictions, synops per sample or None, spikes or None)}."""
    import torch

    from evsim.training import SpikingNetwork

    dense = SpikingNetwork(network.graph, init=False)
    dense.load_weights(network.weights)
    dense = dense.float().eval()
    frames = torch.from_numpy(inputs.frames)

    # the spiking neurons, what the peers count: not the read-out, nor a pooling population that
    # passes each window's spike count on (sinabs's SumPool2d; an average pool with a threshold spikes)
    from evsim.interop.nir import is_passthrough_pool

    neurons = {p.name for p in network.graph.populations if p.kind != "output" and not is_passthrough_pool(p)}

    def engine(events, mode):
        results = [network.run(x, mode=mode) for x in events]
        spikes = [sum(l.spikes for l in r.layers if l.name in neurons) for r in results]
        return np.array([r.prediction for r in results]), [r.synops for r in results], spikes

    def dense_at(b):
        def run():
            with torch.inference_mode():
                outs = [dense(frames[:, i : i + b]) for i in range(0, frames.shape[1], b)]
            return np.concatenate([o.argmax(1).numpy() for o in outs]), None, None
        return run

    return {
        "evsim step": {1: lambda: engine(inputs.step_events, "step")},
        "evsim async": {1: lambda: engine(inputs.engine_inputs, "async")},
        "evsim dense PyTorch": {b: dense_at(b) for b in [1, *batches]},
    }


def _run_evsim(network, inputs, batches: list[int], rounds: int) -> dict:
    """evsim's three simulators, rates at each batch (the engine runs one sample at a time: it has no batch)."""
    network.run(inputs.step_events[0])  # compile or load the kernels outside the timing
    network.run(inputs.engine_inputs[0], mode="async")
    report = {}
    for name, runs in _evsim_contenders(network, inputs, batches).items():
        runs[1]()  # warm-up
        rows = {}
        for b, fn in runs.items():
            cpu, wall, (pred, synops, spikes) = _timed(fn, rounds)
            rows[b] = {"cpu_s": cpu, "wall_s": wall}
            if b == 1:
                entry = {"ok": True, "predictions": pred, "batch": rows}
                if synops is not None:
                    entry["counters"] = {"synops": float(np.mean(synops)), "spikes": float(np.mean(spikes)),
                                         "counter": "evsim (exact)"}
        report[name] = entry
    return report


def _run_peers(python: Path, folder: Path, nets: list[str], args) -> dict:
    job = {"networks": nets, "peers": args.peers, "batches": args.batches, "rounds": args.rounds, "threads": args.threads}
    (folder / "job.json").write_text(json.dumps(job))
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    if not python.exists():
        sys.exit(f"peers.py: no python at {python} (--peers-python: the peers' virtualenv, see nir_peer_fixtures.py)")
    if subprocess.run([str(python), __file__, "--worker", str(folder)], env=env).returncode:
        sys.exit(f"peers.py: the peers' process ({python}) failed; its error is above")
    report = json.loads((folder / "peers.json").read_text())
    arrays = np.load(folder / "peers.npz")
    for key, r in report.items():
        if key in arrays.files:
            r["outputs"] = arrays[key]
        if isinstance(r, dict) and "batch" in r:
            r["batch"] = {int(b): v for b, v in r["batch"].items()}
    return report


# ================================================================ the table


def _rate(n: int, row: dict) -> float | None:
    return n / row["cpu_s"] if "cpu_s" in row else None


def _row(name: str, r: dict, n: int, truth: np.ndarray, step_out: np.ndarray, readout: np.ndarray) -> dict:
    """One simulator on one network: rates, agreement with evsim's step mode, counters, a note."""
    if not r.get("ok"):
        return {"simulator": name, "error": r["error"]}
    rates = {b: _rate(n, v) for b, v in r["batch"].items()}
    best = max((b for b in rates if rates[b] is not None), key=lambda b: rates[b])
    row = {"simulator": name, "batch1": rates[1], "best_batch": best, "best": rates[best],
           "batch_errors": {b: v["error"] for b, v in r["batch"].items() if "error" in v},
           "counters": r.get("counters"), "wall_batch1": n / r["batch"][1]["wall_s"]}
    if "outputs" in r:  # a peer: its graph's output at every step, read out as evsim reads its own
        out = np.einsum("btn,t->bn", r["outputs"].astype(np.float64), readout)
        row["predictions"] = out.argmax(1)
        row["same_outputs"] = bool(np.allclose(out, step_out, rtol=1e-5, atol=1e-6))
    else:
        row["predictions"] = r["predictions"]
    row["agreement"] = float(np.mean(row["predictions"] == truth))
    return row


def _fmt(v, spec=",.1f") -> str:
    return "-" if v is None else format(v, spec)


def _format_table(net: str, rows: list[dict], step_counts: dict, layers: dict) -> list[str]:
    lines = [f"\n{net}",
             "| simulator | samples/s, batch 1 | best batch: samples/s | predictions = evsim step | synops/sample (own counter) | spikes/sample (own counter) | note |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        sim = row["simulator"]
        if "error" in row:
            lines.append(f"| {sim} | - | - | - | - | - | import fails: {row['error']} |")
            continue
        c = row["counters"] or {}
        if "error" in c:
            c = {"note": f"counter fails: {c['error']}"}
        differs = not row.get("same_outputs", True) or row["agreement"] < 1 or sim == "evsim async"
        note = [SEMANTICS[sim]] if differs and sim in SEMANTICS else []
        if row.get("same_outputs"):
            note.append("same outputs as evsim step (1e-5)")
        if row["batch_errors"]:  # the same failure at every larger batch, as a rule: say it once
            (b, e), *more = row["batch_errors"].items()
            note.append(f"batch {', '.join(str(k) for k in [b, *dict(more)])} fails: {e}")
        note += [c["note"]] if "note" in c else []
        agree = f"{row['agreement']:.0%}"
        lines.append(f"| {sim} | {row['batch1']:.2f} | {row['best_batch']}: {row['best']:.2f} | {agree} | "
                     f"{_fmt(c.get('synops'))} | {_fmt(c.get('spikes'))} | {'; '.join(note)} |")
    lines.append(f"(evsim's exact counts, step mode: {step_counts['synops']:,.1f} synops, "
                 f"{step_counts['spikes']:,.1f} spikes of its spiking neurons per sample; by population, "
                 "synops/spikes: " + ", ".join(f"{n} ({k}) {a:,.1f}/{b:,.1f}" for n, (k, a, b) in layers.items()) + ")")
    return lines


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def _peer_list(text: str) -> list[str]:
    peers = [p for p in text.split(",") if p]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer {', '.join(unknown)}; the peers are {', '.join(PEERS)}")
    return peers


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--samples", type=int, default=8, help="N-MNIST test recordings (default 8)")
    ap.add_argument("--data", type=Path, default=ROOT / "evsim" / "data" / "nmnist",
                    help="N-MNIST folder with Test/ (default: the bundled recordings; or $EVSIM_DATA/nmnist)")
    ap.add_argument("--rounds", type=int, default=2, help="timing rounds; the best counts (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch and numba threads, every simulator (default 1)")
    ap.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[8],
                    help="batch sizes tried beside 1 (default 8)")
    ap.add_argument("--peers", type=_peer_list, default=list(PEERS), help=f"comma-separated, of {','.join(PEERS)}")
    ap.add_argument("--peers-python", type=Path, default=None,
                    help=f"the peers' virtualenv python (default $EVSIM_PEERS_PYTHON or {DEFAULT_PEERS_PYTHON} if there, else this one)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = _args(argv)
    if args.worker:
        return worker(args.worker)
    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    args.batches = sorted({b for b in args.batches if 1 < b <= args.samples})
    python = args.peers_python or (DEFAULT_PEERS_PYTHON if DEFAULT_PEERS_PYTHON.exists() else Path(sys.executable))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        nets = _networks(args.samples, args.data, folder)
        peers = _run_peers(python, folder, list(nets), args) if args.peers else {}
    print(f"{args.samples} N-MNIST test recordings from {args.data}, {args.rounds} rounds (best), "
          f"{args.threads} thread(s) each; samples/s of CPU time; {cpu_model()}")
    report = {"versions": peers.get("versions"), "cpu": cpu_model(), "args": {k: str(v) for k, v in vars(args).items()}}
    for net, (network, inputs, readout) in nets.items():
        ours = _run_evsim(network, inputs, args.batches, args.rounds)
        step = [network.run(x) for x in inputs.step_events]
        step_out = np.stack([r.output for r in step])
        layers = {l.name: (l.neuron.kind, np.mean([r.per_layer[l.name]["synops"] for r in step]),
                           np.mean([r.per_layer[l.name]["spikes"] for r in step])) for l in step[0].layers}
        truth = ours["evsim step"]["predictions"]
        runs = {**ours, **{p: peers[f"{net}/{p}"] for p in args.peers}}
        rows = [_row(name, r, len(truth), truth, step_out, readout) for name, r in runs.items()]
        accuracy = float(np.mean(truth == inputs.labels))
        print("\n".join(_format_table(f"{net} (T = {network.timesteps}; evsim step mode accuracy {accuracy:.0%})",
                                      rows, ours["evsim step"]["counters"], layers)))
        report[f"{net}/evsim_layers"] = {k: list(v) for k, v in layers.items()}
        report[net] = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in row.items()} for row in rows]
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
