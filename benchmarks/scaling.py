"""How the event engine's cost and the dense simulator's cost scale: with input events, with T, with depth.

Inference time per sample of evsim's step mode and of the trainer's dense PyTorch forward
(evsim.training.SpikingNetwork, inference mode) on the same inputs, one process, same threads:

(a) input events: real N-MNIST test recordings thinned to 1/k of their events (every k-th event,
    k = 1, 2, 4, 8, 16) on one model, T fixed. The engine's cost should follow the events (and the
    spikes and synaptic operations they cause); the dense cost should not move.
(b) time steps: the same recordings re-binned into T = 25, 50, 100, 200 steps of the same 300 ms
    window, same weights. The dense cost should grow with T; the engine's far less (same events).
(c) depth: LeNet, VGG9 and ResNet11 (evsim.training.architectures) on CIFAR-shaped (3, 32, 32)
    Poisson inputs of random smooth images. Random weights do not fire realistically, so each
    network's weights are *calibrated*: going layer by layer, the weights into each LIF population
    are multiplied by the one factor (found by bisection on a calibration batch) that brings its
    firing rate to a target that falls geometrically with depth, from ``--rates`` first (default
    8 % of neurons per step) to last (2 %); the spiking pools follow from their inputs. (A trained
    N-MNIST LeNet fires 4-9 % per layer per step.) The achieved per-layer rates, measured by the
    engine on the timed inputs, are in the JSON.

The model for (a) and (b) is ``--model`` (an N-MNIST model file), else the bundled ``lenet-nmnist``
when there is one, else the paper's N-MNIST LeNet with weights calibrated as in (c) on the same
recordings.

Fairness: both simulators get ``--threads`` threads (default 1: per-core cost) and their warm-up
runs (Numba compile or cache load, oneDNN primitive creation) outside the timing; each figure is
the best of ``--repeats``. Dense batch 1 is the per-sample latency, comparable to the engine,
which runs one sample at a time. Dense batch 64 is dense throughput: the trainer's layer-major
forward already runs the T steps of a sample as one batch of T images per convolution, so batch
64 mainly amortises per-call overhead. (c) runs dense at batch 1 only: VGG9/ResNet11 activations
at batch 64 x T = 100 need tens of GB.

    python benchmarks/scaling.py                 # a few minutes on one core
    python benchmarks/scaling.py --quick         # seconds: tiny settings, for the tests

Prints one table per part and writes ``--json`` (default benchmarks/results/scaling.json) and one
figure ``--figure`` (default benchmarks/figures/scaling.png).
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # before numba starts: OpenMP fights torch

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
NMNIST_WINDOW_US = 300_000
NMNIST_ENCODING = {"kind": "events", "window_us": NMNIST_WINDOW_US, "sensor_size": [34, 34, 2]}
CIFAR_SHAPE = (3, 32, 32)
IMAGE_BOUND = 2.5  # z-scored images divided by this span about [-1, 1], like normalised CIFAR-10


@dataclasses.dataclass
class Settings:
    samples: int = 16
    thinning: tuple[int, ...] = (1, 2, 4, 8, 16)
    timesteps: tuple[int, ...] = (25, 50, 100, 200)
    model_timesteps: int = 100
    archs: tuple[str, ...] = ("lenet", "vgg9", "resnet11")
    depth_timesteps: int = 100
    depth_samples: int = 2
    calibration_samples: int = 2
    rates: tuple[float, float] = (0.08, 0.02)
    dense_batch: int = 64
    threads: int = 1
    repeats: int = 3
    seed: int = 0


QUICK = dict(samples=2, thinning=(1, 4), timesteps=(5, 10), model_timesteps=10, archs=("lenet", "resnet11"),
             depth_timesteps=3, depth_samples=1, calibration_samples=1, dense_batch=4, repeats=1)


# ------------------------------------------------------------------------------------- inputs


def nmnist_root(given: Path | None) -> Path:
    from evsim.datasets import data_root
    from evsim.paths import BUNDLED_DATA

    if given is not None:
        return given
    root = data_root()
    if root is not None and any((root / "nmnist").glob("Test/[0-9]/*.bin")):
        return root / "nmnist"
    return BUNDLED_DATA / "nmnist"


def nmnist_recordings(root: Path, count: int) -> list[np.ndarray]:
    """``count`` test recordings (a fixed random subset), raw events."""
    from evsim.datasets.samples import load_samples

    samples = load_samples("nmnist", root, "test", limit=count)
    return [samples.events(i) for i in range(len(samples))]


def event_frames(recordings: list[np.ndarray], timesteps: int, window_us: int) -> np.ndarray:
    """Dense event-count frames ``[T, N, 2, 34, 34]``, the engine's own binning."""
    from evsim.events import bin_events, to_frames

    sensor = tuple(NMNIST_ENCODING["sensor_size"])
    return np.stack([to_frames(bin_events(r, sensor, timesteps, window_us)) for r in recordings], axis=1)


def smooth_images(count: int, rng: np.random.Generator) -> np.ndarray:
    """Random images ``[N, 3, 32, 32]`` in [-1, 1] with image-like spatial correlation."""
    from scipy.ndimage import gaussian_filter

    noise = rng.standard_normal((count, *CIFAR_SHAPE))
    smooth = gaussian_filter(noise, sigma=(0, 0, 2, 2))
    z = (smooth - smooth.mean(axis=(2, 3), keepdims=True)) / smooth.std(axis=(2, 3), keepdims=True)
    return np.clip(z / IMAGE_BOUND, -1, 1).astype(np.float32)


# ------------------------------------------------------------------------------------- weights


def target_rates(count: int, first: float, last: float) -> list[float]:
    if count == 1:
        return [first]
    return [first * (last / first) ** (i / (count - 1)) for i in range(count)]


def calibrated_weights(graph, frames: np.ndarray, rates: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    """Random weights (the trainer's init), scaled layer by layer so that each LIF population fires
    at its target rate (spikes per neuron per step) on ``frames`` ``[T, B, C, H, W]``."""
    import torch

    from evsim.model.graph import INPUT
    from evsim.training.network import SpikingNetwork, fire

    torch.manual_seed(seed)
    net = SpikingNetwork(graph).float().eval()
    lif = [pop for pop in graph.populations if pop.kind == "lif"]
    targets = dict(zip((pop.name for pop in lif), target_rates(len(lif), *rates)))
    steps, batch = frames.shape[:2]
    flat = {INPUT: torch.from_numpy(frames.reshape(steps * batch, *frames.shape[2:]))}
    with torch.no_grad():
        for pop in graph.populations[:-1]:
            scaled = sum(net._project(p, flat[p.source]) for p in pop.inputs if p.weight is not None)
            fixed = sum(net._project(p, flat[p.source]) for p in pop.inputs if p.weight is None)
            if pop.name in targets:
                shape = (steps, batch, *pop.shape)
                scaled, fixed = scaled.reshape(shape), (fixed.reshape(shape) if torch.is_tensor(fixed) else 0.0)
                factor = _bisect_factor(lambda s: fire(pop, s * scaled + fixed)[0].mean().item(), targets[pop.name])
                for p in pop.inputs:
                    if p.weight is not None:
                        net.weight(p.weight).mul_(factor)
                current = factor * scaled + fixed
            else:
                current = (scaled + fixed).reshape(steps, batch, *pop.shape)
            flat[pop.name] = fire(pop, current)[0].reshape(steps * batch, *pop.shape)
    return net.export_weights()


def _bisect_factor(rate_of, target: float, low: float = 1e-4, high: float = 1e4, iterations: int = 40) -> float:
    """The weight factor whose firing rate is ``target`` (to 3 %), by bisection on its logarithm."""
    lo, hi = np.log(low), np.log(high)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        rate = rate_of(float(np.exp(mid)))
        if abs(rate / target - 1) < 0.03:
            break
        lo, hi = (mid, hi) if rate < target else (lo, mid)
    return float(np.exp(mid))


def nmnist_model(args, settings: Settings, recordings: list[np.ndarray]):
    """(graph, weights, description) of the N-MNIST model for parts (a) and (b)."""
    from evsim.model.file import load_model, model_path
    from evsim.paths import BUNDLED_MODELS
    from evsim.training.architectures import lenet

    given = args.model or (BUNDLED_MODELS / "lenet-nmnist.npz" if (BUNDLED_MODELS / "lenet-nmnist.npz").exists() else None)
    if given is not None:
        path = model_path(given)
        model = load_model(path)
        if model.graph.encoding.get("kind") != "events" or tuple(model.graph.input_shape) != (2, 34, 34):
            raise SystemExit(f"{path}: parts (a) and (b) need an N-MNIST (events, 2x34x34) model")
        return model.graph, model.weights, f"{path.name} (T={model.graph.timesteps})"
    graph = dataclasses.replace(lenet((2, 34, 34), settings.model_timesteps), encoding=dict(NMNIST_ENCODING),
                                meta={"dataset": "nmnist", "arch": "lenet"})
    frames = event_frames(recordings[: settings.calibration_samples], graph.timesteps, NMNIST_WINDOW_US)
    weights = calibrated_weights(graph, frames, settings.rates, settings.seed)
    return graph, weights, f"paper LeNet, random weights calibrated to {settings.rates[0]:.0%}->{settings.rates[1]:.0%} (T={graph.timesteps})"


# ------------------------------------------------------------------------------------- timing


def time_engine(network, inputs: list, settings: Settings) -> dict:
    """Seconds per sample (best of repeats) and the mean counters of the engine on ``inputs``."""
    network.run(inputs[0])  # compile or cache load; this thread's workspace
    best = np.inf
    for _ in range(settings.repeats):
        start = time.perf_counter()
        results = list(network.run_many(inputs, workers=settings.threads))
        best = min(best, time.perf_counter() - start)
    n = len(inputs)
    rates = {}
    for layer, counts in zip(network.layers, zip(*(r.layers for r in results))):
        if layer.neuron.fires:
            rates[layer.name] = sum(c.spikes for c in counts) / (n * layer.size * network.timesteps)
    return {
        "engine_s": best / n,
        "input_events": sum(r.input_events for r in results) / n,
        "synops": sum(r.synops for r in results) / n,
        "spikes": sum(r.spikes for r in results) / n,
        "dense_macs": results[0].dense_macs,
        "rates": rates,
    }


def time_dense(graph, weights, frames: np.ndarray, settings: Settings, batches=(1, None)) -> dict:
    """Seconds per sample of the dense forward at batch 1 and at ``settings.dense_batch`` (best of repeats)."""
    import torch

    from evsim.training.network import SpikingNetwork

    net = SpikingNetwork(graph, init=False)
    net.load_weights(weights)
    net = net.float().eval()
    n = frames.shape[1]
    out = {}
    with torch.inference_mode():
        for batch in batches:
            size = batch or settings.dense_batch
            if size == 1:
                parts = [torch.from_numpy(np.ascontiguousarray(frames[:, i : i + 1])) for i in range(n)]
            else:  # the samples repeated up to one full batch: dense cost does not depend on the values
                parts = [torch.from_numpy(np.ascontiguousarray(frames[:, np.arange(size) % n]))]
            net(parts[0])  # warm-up at this shape
            best = np.inf
            for _ in range(settings.repeats):
                start = time.perf_counter()
                for x in parts:
                    net(x)
                best = min(best, time.perf_counter() - start)
            out["dense_b1_s" if size == 1 else "dense_large_batch_s"] = best / (len(parts) * size)
    return out


# ------------------------------------------------------------------------------------- parts


def part_events(graph, weights, recordings, settings: Settings) -> list[dict]:
    from evsim.engine.network import Network

    network = Network(graph, weights)
    window = int(graph.encoding["window_us"])
    rows = []
    for k in settings.thinning:
        thinned = [r[::k] for r in recordings]
        row = {"thinning": k, **time_engine(network, thinned, settings)}
        row.update(time_dense(graph, weights, event_frames(thinned, graph.timesteps, window), settings))
        rows.append(row)
    return rows


def part_timesteps(graph, weights, recordings, settings: Settings) -> list[dict]:
    from evsim.engine.network import Network

    window = int(graph.encoding["window_us"])
    rows = []
    for steps in settings.timesteps:
        rebinned = dataclasses.replace(graph, timesteps=steps)
        row = {"timesteps": steps, **time_engine(Network(rebinned, weights), recordings, settings)}
        row.update(time_dense(rebinned, weights, event_frames(recordings, steps, window), settings))
        rows.append(row)
    return rows


def part_depth(settings: Settings) -> list[dict]:
    from evsim.datasets.encoding import COLOUR_SCALE, poisson_spikes
    from evsim.engine.network import Network
    from evsim.training.architectures import build
    from evsim.training.network import parameter_count

    rng = np.random.default_rng(settings.seed)
    steps = settings.depth_timesteps
    calibration = poisson_spikes(smooth_images(settings.calibration_samples, rng), steps, rng, COLOUR_SCALE)
    timed = poisson_spikes(smooth_images(settings.depth_samples, rng), steps, rng, COLOUR_SCALE)
    rows = []
    for arch in settings.archs:
        graph = build(arch, CIFAR_SHAPE, steps)
        weights = calibrated_weights(graph, calibration.astype(np.float32), settings.rates, settings.seed)
        network = Network(graph, weights)
        row = {"arch": arch, "timesteps": steps, "parameters": parameter_count(graph),
               **time_engine(network, [timed[:, i] for i in range(timed.shape[1])], settings)}
        row.update(time_dense(graph, weights, timed.astype(np.float32), settings, batches=(1,)))
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------- output


def print_table(title: str, key: str, rows: list[dict]) -> None:
    print(title)
    header = f"{key:>10} {'in events':>10} {'synops':>12} {'dense MACs':>12} {'engine ms':>10} {'dense b1 ms':>12} {'dense bN ms':>12} {'b1/engine':>10}"
    print(header)
    for r in rows:
        large = r.get("dense_large_batch_s")
        print(f"{r[key]!s:>10} {r['input_events']:>10,.0f} {r['synops']:>12,.0f} {r['dense_macs']:>12,.0f} "
              f"{1e3 * r['engine_s']:>10.2f} {1e3 * r['dense_b1_s']:>12.2f} "
              f"{'-' if large is None else format(1e3 * large, '.2f'):>12} {r['dense_b1_s'] / r['engine_s']:>10.2f}")
    print()


def plain_ticks(ax) -> None:
    """Log axes labelled 2, 5, 100 rather than 2x10^0."""
    from matplotlib.ticker import FuncFormatter

    def minor(v, _):
        return f"{v:g}" if v > 0 and round(v / 10 ** np.floor(np.log10(v))) in (2, 5) else ""

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(FuncFormatter(minor))


def plot(report: dict, path: Path) -> None:
    from evsim.analysis.report import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.5))
    (a, b), (c, d) = axes
    batch = report["settings"]["dense_batch"]

    def series(ax, rows, x, xlabel):
        xs = [r[x] for r in rows]
        ax.plot(xs, [1e3 * r["engine_s"] for r in rows], "o-", color="tab:blue", label="evsim (event-driven)")
        ax.plot(xs, [1e3 * r["dense_b1_s"] for r in rows], "s--", color="tab:red", label="dense torch, batch 1")
        if "dense_large_batch_s" in rows[0]:
            ax.plot(xs, [1e3 * r["dense_large_batch_s"] for r in rows], "^:", color="tab:orange",
                    label=f"dense torch, batch {batch} (per sample)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_ticks(ax)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ms per sample")
        ax.legend(fontsize=7)

    events = report["events"]
    series(a, events["rows"], "input_events", "input events per sample (recordings thinned 1/1 ... 1/16)")
    a.set_title(f"(a) input events: {events['model']}", fontsize=8)
    steps = report["timesteps"]
    series(b, steps["rows"], "timesteps", "time steps T (same 300 ms window)")
    b.set_title(f"(b) time steps: {steps['model']}", fontsize=8)

    depth = report["depth"]["rows"]
    x = np.arange(len(depth))
    c.bar(x - 0.2, [1e3 * r["engine_s"] for r in depth], 0.4, color="tab:blue", label="evsim")
    c.bar(x + 0.2, [1e3 * r["dense_b1_s"] for r in depth], 0.4, color="tab:red", label="dense torch, batch 1")
    c.set_xticks(x, [r["arch"] for r in depth])
    c.set_yscale("log")
    plain_ticks(c)
    c.set_ylabel("ms per sample")
    rates = report["settings"]["rates"]
    c.set_title(f"(c) depth: (3,32,32) Poisson inputs, T={depth[0]['timesteps']}, "
                f"rates calibrated {rates[0]:.0%}->{rates[1]:.0%}", fontsize=8)
    c.legend(fontsize=7)

    every = [(part, r) for part in ("events", "timesteps") for r in report[part]["rows"]] + [("depth", r) for r in depth]
    markers = {"events": "o", "timesteps": "s", "depth": "D"}
    for part, r in every:
        d.scatter(r["synops"], 1e3 * r["engine_s"], marker=markers[part], color="tab:blue", s=18)
        d.scatter(r["dense_macs"], 1e3 * r["dense_b1_s"], marker=markers[part], color="tab:red", s=18)
    for part, marker in markers.items():
        d.scatter([], [], marker=marker, color="grey", label=f"part {part}")
    d.scatter([], [], color="tab:blue", label="evsim vs synaptic operations")
    d.scatter([], [], color="tab:red", label="dense b1 vs MACs (size x T)")
    d.set_xscale("log")
    d.set_yscale("log")
    d.set_xlabel("work per sample: synops (evsim) or dense MACs (torch)")
    d.set_ylabel("ms per sample")
    d.set_title("(d) every run: cost against each simulator's own work measure", fontsize=8)
    d.legend(fontsize=7)
    fig.suptitle(f"evsim vs dense PyTorch inference, {report['settings']['threads']} thread(s), best of "
                 f"{report['settings']['repeats']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--model", help="N-MNIST model file for (a) and (b) (default: bundled lenet-nmnist, else calibrated LeNet)")
    parser.add_argument("--data", type=Path, help="N-MNIST folder (default: $EVSIM_DATA/nmnist, else tests/data/nmnist)")
    parser.add_argument("--samples", type=int, help="N-MNIST recordings for (a) and (b) (default 16)")
    parser.add_argument("--threads", type=int, help="threads for both simulators (default 1)")
    parser.add_argument("--repeats", type=int, help="timed repeats, best kept (default 3)")
    parser.add_argument("--archs", help="networks for (c), comma-separated (default lenet,vgg9,resnet11)")
    parser.add_argument("--quick", action="store_true", help="tiny settings that run in seconds (for tests)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "scaling.json")
    parser.add_argument("--figure", type=Path, default=REPO / "benchmarks" / "figures" / "scaling.png")
    args = parser.parse_args(argv)

    import torch

    from evsim.training.trainer import configure_torch

    settings = Settings(**(QUICK if args.quick else {}))
    for name in ("samples", "threads", "repeats"):
        if getattr(args, name) is not None:
            setattr(settings, name, getattr(args, name))
    if args.archs:
        settings.archs = tuple(args.archs.split(","))
    configure_torch(settings.threads)  # as the trainer does: large activations stay mapped between calls

    root = nmnist_root(args.data)
    recordings = nmnist_recordings(root, settings.samples)
    graph, weights, description = nmnist_model(args, settings, recordings)
    started = time.perf_counter()
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
                    "torch_threads": torch.get_num_threads()},
        "settings": {**dataclasses.asdict(settings), "quick": args.quick, "data": str(root),
                     "recordings": len(recordings)},
        "events": {"model": description, "rows": part_events(graph, weights, recordings, settings)},
        "timesteps": {"model": description, "rows": part_timesteps(graph, weights, recordings, settings)},
        "depth": {"rows": part_depth(settings)},
    }
    report["seconds"] = time.perf_counter() - started

    print(f"{len(recordings)} N-MNIST test recordings from {root}; {settings.threads} thread(s); best of {settings.repeats}")
    print(f"dense bN = batch {settings.dense_batch}, per sample\n")
    print_table(f"(a) thinned recordings, {description}", "thinning", report["events"]["rows"])
    print_table(f"(b) re-binned recordings, {description}", "timesteps", report["timesteps"]["rows"])
    print_table(f"(c) depth, (3,32,32) Poisson inputs of random images, T={settings.depth_timesteps}, "
                f"{settings.depth_samples} samples", "arch", report["depth"]["rows"])
    for r in report["depth"]["rows"]:
        print(f"  {r['arch']} firing rates (spikes/neuron/step): " + ", ".join(f"{k} {v:.3f}" for k, v in r["rates"].items()))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.figure)
    print(f"\nwrote {args.json} and {args.figure}")
    return report


if __name__ == "__main__":
    main()
