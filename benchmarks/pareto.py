"""Accuracy against cost of N-MNIST models: the Pareto study of issue 12.

    python benchmarks/pareto.py MODEL [MODEL ...] [--label NAME ...] [--bench BENCH.json ...]
        [--out benchmarks/results/pareto.json] [--figure benchmarks/figures/pareto.png]

For each model (a path or a bundled name), on the real recordings of the shared data folder
(``$EVSIM_DATA/nmnist``):

- the validation split that ``evsim train --val 160`` holds out of the 800 training recordings
  (stratified by digit, the same on every run) and the 28 test recordings;
- accuracy of the dense float32 forward and of the engine in step mode, on both splits, from the
  same input frames;
- the engine's synaptic operations per sample, spikes per sample and conv1 spikes per input event,
  over validation + test (188 recordings).

``--bench`` adds the step-mode and async speedups of an ``evsim bench --json`` report per model
(same order). The JSON keeps every model's figures; the figure plots validation accuracy against
synops per sample (log scale), one point per model, and with ``--trajectory CHECKPOINT`` the
per-epoch validation figures the trainer logged in a run's checkpoint (dense forward), as a line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import evsim
from evsim.datasets import data_root
from evsim.datasets.samples import load_samples, split_validation
from evsim.model.file import load_model, model_path
from evsim.training.network import SpikingNetwork
from evsim.training.trainer import configure_torch

VALIDATION = 160


def splits(model) -> dict:
    root = data_root() / "nmnist"
    train = load_samples("nmnist", root, "train", encoding=model.graph.encoding)
    _, validation = split_validation(train, VALIDATION)
    return {"val": validation, "test": load_samples("nmnist", root, "test", encoding=model.graph.encoding)}


def measure(path: str) -> dict:
    model = load_model(path)
    timesteps = model.graph.timesteps
    dense = SpikingNetwork(model.graph, init=False)
    dense.load_weights(model.weights)
    dense.eval()
    engine = evsim.Network(model.graph, model.weights, name=model_path(path).stem)
    result = {"model": str(path), "timesteps": timesteps, "meta": {k: v for k, v in model.graph.meta.items()
                                                                      if isinstance(v, (int, float, str))}}
    synops = spikes = events = conv1 = samples = 0
    per_layer: dict[str, int] = {}
    for name, data in splits(model).items():
        frames = data.inputs(np.arange(len(data)), timesteps, np.random.default_rng(0))
        with torch.no_grad():
            dense_pred = dense(torch.from_numpy(frames)).argmax(1).numpy()
        engine_pred = []
        for b in range(len(data)):
            run = engine.run(frames[:, b])
            engine_pred.append(run.prediction)
            synops += run.synops
            spikes += run.spikes
            events += run.input_events
            for layer in run.layers:
                per_layer[layer.name] = per_layer.get(layer.name, 0) + layer.synops
            conv1 += next(layer.spikes for layer in run.layers if layer.name == "conv1")
        samples += len(data)
        result[f"{name}_samples"] = len(data)
        result[f"{name}_accuracy_dense"] = float(np.mean(dense_pred == data.labels))
        result[f"{name}_accuracy_engine"] = float(np.mean(np.array(engine_pred) == data.labels))
        result[f"{name}_agreement"] = float(np.mean(dense_pred == np.array(engine_pred)))
    result.update(
        synops_per_sample=synops / samples,
        spikes_per_sample=spikes / samples,
        input_events_per_sample=events / samples,
        conv1_spikes_per_input_event=conv1 / events,
        layer_synops_per_sample={k: v / samples for k, v in per_layer.items()},
    )
    held_out = result["val_samples"] + result["test_samples"]
    result["held_out_accuracy_engine"] = (result["val_accuracy_engine"] * result["val_samples"]
                                          + result["test_accuracy_engine"] * result["test_samples"]) / held_out
    return result


def add_bench(result: dict, path: Path) -> None:
    report = json.loads(Path(path).read_text())
    result["bench"] = {
        "file": str(path),
        "step_speedup_vs_best_dense": report["speedup_vs_best_dense"],
        "async_speedup_vs_dense_batch1": report["async_samples_per_s"] / report["dense_batch1_samples_per_s"],
        "event_samples_per_s": report["event_samples_per_s"],
        "threads": report["threads"],
    }


def trajectory(checkpoint: Path) -> dict:
    """A run's per-epoch validation accuracy and synops, from its checkpoint's history."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    history = state["history"]
    penalty = state["config"].get("penalty", {})
    return {"checkpoint": str(checkpoint), "synops_penalty": penalty.get("synops"),
            "epochs": [h["epoch"] for h in history],
            "val_accuracy": [h["val_accuracy"] for h in history],
            "val_synops": [h["val_synops"] for h in history]}


def figure(results: list[dict], trajectories: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    for i, run in enumerate(trajectories):
        ax.plot(np.array(run["val_synops"]) / 1e6, 100 * np.array(run["val_accuracy"]), "-", marker=".",
                color=f"C{i + 2}", alpha=0.6, lw=1, label=f"epochs 1-{run['epochs'][-1]}, penalty {run['synops_penalty']:g}/synop")
    for r in results:
        x = r["synops_per_sample"] / 1e6
        ax.scatter([x], [100 * r["val_accuracy_engine"]], color="C0")
        ax.scatter([x], [100 * r["test_accuracy_engine"]], color="C1", marker="x")
        ax.annotate(r.get("figure_label", r["label"]), (x, 100 * r["val_accuracy_engine"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.scatter([], [], color="C0", label="validation (160 recordings)")
    ax.scatter([], [], color="C1", marker="x", label="test (28 recordings)")
    ax.axvline(5.0, color="grey", ls=":", lw=1)
    ax.axhline(98.0, color="grey", ls=":", lw=1)
    ax.set_ylim(80, 101.5)  # the first epochs of a run from scratch lie below: off the plot
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks([4, 5, 7, 10, 15, 20, 30, 50, 70])
    ax.set_xlabel("synaptic operations per sample (M, engine count)")
    ax.set_ylabel("accuracy (%), engine step mode")
    ax.set_title("LeNet on real N-MNIST: accuracy against cost")
    ax.legend(loc="lower left", fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def markdown(results: list[dict]) -> str:
    """The Pareto table as RESULTS.md shows it."""
    lines = ["| model | val dense / engine | test dense / engine | synops per sample | spikes per sample | conv1 spikes per input event | bench step / async |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        bench = r.get("bench")
        speed = f"{bench['step_speedup_vs_best_dense']:.1f}x / {bench['async_speedup_vs_dense_batch1']:.1f}x" if bench else "-"
        lines.append(f"| {r['label']} | {100 * r['val_accuracy_dense']:.2f} / {100 * r['val_accuracy_engine']:.2f} % "
                     f"| {100 * r['test_accuracy_dense']:.2f} / {100 * r['test_accuracy_engine']:.2f} % "
                     f"| {r['synops_per_sample'] / 1e6:.2f} M | {r['spikes_per_sample'] / 1e3:.1f} k "
                     f"| {r['conv1_spikes_per_input_event']:.2f} | {speed} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("models", nargs="*")
    parser.add_argument("--replot", action="store_true", help="draw --figure from the --out JSON, measuring nothing")
    parser.add_argument("--label", action="append", help="a name per model (default: the file's stem)")
    parser.add_argument("--bench", action="append", type=Path, help="an `evsim bench --json` report per model")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/pareto.json"))
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--trajectory", action="append", type=Path, default=[],
                        help="a training checkpoint whose per-epoch validation figures to draw")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--append", action="store_true",
                        help="add the models (and trajectories) measured now to those already in --out")
    args = parser.parse_args()
    if args.replot:
        saved = json.loads(args.out.read_text())
        figure(saved["models"], saved["trajectories"], args.figure)
        print(markdown(saved["models"]))
        return
    configure_torch(args.threads)
    labels = args.label or [model_path(m).stem for m in args.models]
    if len(labels) != len(args.models) or (args.bench and len(args.bench) != len(args.models)):
        parser.error("give one --label (and one --bench) per model")
    saved = json.loads(args.out.read_text()) if args.append and args.out.exists() else {"models": [], "trajectories": []}
    results = []
    for i, (path, label) in enumerate(zip(args.models, labels)):
        result = {"label": label, **measure(path)}
        if args.bench:
            add_bench(result, args.bench[i])
        results.append(result)
        print(f"{label}: val {100 * result['val_accuracy_dense']:.2f}% dense / {100 * result['val_accuracy_engine']:.2f}% engine, "
              f"test {100 * result['test_accuracy_dense']:.2f}% / {100 * result['test_accuracy_engine']:.2f}%, "
              f"{result['synops_per_sample'] / 1e6:.2f} M synops, {result['spikes_per_sample'] / 1e3:.1f} k spikes, "
              f"conv1 {result['conv1_spikes_per_input_event']:.2f} spikes per input event", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    trajectories = saved["trajectories"] + [trajectory(path) for path in args.trajectory]
    results = saved["models"] + results
    args.out.write_text(json.dumps({"models": results, "trajectories": trajectories}, indent=1) + "\n")
    if args.figure:
        figure(results, trajectories, args.figure)
    print(markdown(results))


if __name__ == "__main__":
    main()
