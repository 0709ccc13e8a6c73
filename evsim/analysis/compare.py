"""The paper's section-5 comparison: several models side by side on the same inputs.

Spiking models (direct-trained, converted) are measured with the event engine in step mode by
:func:`evsim.analysis.report.analyse`, each at the same latencies ``T'`` (the first ``T'`` steps of
the same inputs: the same Poisson trains for images, seeded per sample; the same bins for
recordings). An ANN (``evsim train --ann``) has one accuracy and the MACs of one pass; it is
evaluated with torch (evsim.training.ann), imported only when an ANN is among the models.

What is compared, per the paper:

- accuracy vs time steps (fig. 7b and 10), every spiking model at every ``T'``;
- spikes per image at iso-accuracy and at maximum accuracy (table 8), and the time steps to
  reach each (table 9). Iso-accuracy is the first ``T'`` at which a model reaches the reference
  accuracy: by default the highest accuracy of the first spiking model given (the paper's
  reference is its direct-trained SNN), or ``iso_accuracy`` when given. Spikes per image count the
  input spikes too, as the paper's table 8 does;
- operations and the energy estimate against the ANN's MACs (fig. 11), each spiking model at the
  ``T'`` of its maximum accuracy;
- spikes per layer (fig. 9), each spiking model at its own ``T``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evsim.analysis.report import analyse, format_number, format_percent, pyplot, save_figure, write_report_files
from evsim.engine.counting import ENERGY_PJ, energy_estimates
from evsim.engine.layers import compile_layer
from evsim.engine.network import Network
from evsim.errors import InputError
from evsim.model.file import load_model, model_path

FIGURES = {
    "accuracy": "compare_accuracy.png",
    "spikes": "compare_spikes.png",
    "activity": "compare_activity.png",
    "compute": "compare_compute.png",
}


def model_kind(graph) -> str:
    """``ann``, ``converted`` or ``snn`` (trained directly), from the model file's meta."""
    if graph.meta.get("ann"):
        return "ann"
    return "converted" if graph.meta.get("conversion") else "snn"


def ann_macs(graph, weights) -> int:
    """MACs of one analog pass of the graph's architecture (the same count as the engine's
    dense-equivalent MACs per step)."""
    return int(sum(compile_layer(graph, pop, weights, np.float32).dense_macs_per_step for pop in graph.populations))


def compare(models: list[str], load_samples, latencies=None, workers: int = 2, seed: int = 0, progress=None,
            iso_accuracy: float | None = None) -> dict:
    """Measure every model in ``models`` (paths or bundled names) on the same samples.

    ``load_samples(name, graph)`` returns the split encoded as model ``name``'s graph says (the CLI passes
    one that checks the dataset); ``latencies`` are the ``T'`` every spiking model runs (each also
    runs its own ``T``). Returns a JSON-able dict (module docstring).
    """
    if len(models) < 2:
        raise InputError("--compare needs at least two models")
    entries, dataset = [], None
    for name in models:
        path = model_path(name)
        model = load_model(path)
        samples = load_samples(name, model.graph)
        if dataset is not None and (samples.dataset, samples.split, len(samples)) != dataset:
            raise InputError(f"{name} runs on {samples.dataset} {samples.split}, the others on {dataset[0]} {dataset[1]}")
        dataset = (samples.dataset, samples.split, len(samples))
        kind = model_kind(model.graph)
        entry = {"model": str(name), "kind": kind, "arch": model.graph.meta.get("arch"),
                 "trained_on": model.graph.meta.get("dataset"), "ann_macs": ann_macs(model.graph, model.weights)}
        if kind == "ann":
            entry["accuracy"] = _ann_accuracy(path, samples, model.graph.timesteps, seed)
        else:
            network = Network(model.graph, model.weights, name=path.stem)
            steps = sorted(set(latencies or ()) | {model.graph.timesteps})
            analysis = analyse(network, samples, steps, workers=workers, seed=seed, progress=progress)
            entry.update(timesteps=model.graph.timesteps, threshold_rule=_rule(model.graph), analysis=analysis)
        entries.append(entry)
    spiking = [e for e in entries if e["kind"] != "ann"]
    if not spiking:
        raise InputError("--compare needs at least one spiking model (an ANN alone has no time steps)")
    reference = spiking[0]
    target = iso_accuracy if iso_accuracy is not None else max(r["accuracy"] for r in reference["analysis"]["latency"])
    for entry in spiking:
        entry["summary"] = _summary(entry, target)
    return {
        "data": {"dataset": dataset[0], "split": dataset[1], "samples": dataset[2], "seed": seed,
                 "mode": "step", "latencies": sorted({r["timesteps"] for e in spiking for r in e["analysis"]["latency"]})},
        "iso_accuracy": {"target": target, "reference": reference["model"] if iso_accuracy is None else None},
        "models": entries,
    }


def _rule(graph) -> str:
    pop = graph.populations[0]
    return f"leak {pop.leak:g}, reset {pop.reset}"


def _ann_accuracy(path, samples, timesteps: int, seed: int) -> float:
    from evsim.training.ann import evaluate_ann, load_ann

    return evaluate_ann(load_ann(path), samples, timesteps, seed=seed).accuracy


def _summary(entry: dict, target: float) -> dict:
    """Table 8 and 9 for one spiking model: where it first reaches ``target`` and its maximum."""
    rows = entry["analysis"]["latency"]
    best = max(r["accuracy"] for r in rows)
    at_best = next(r for r in rows if r["accuracy"] == best)
    at_iso = next((r for r in rows if r["accuracy"] >= target), None)
    compute = _compute_at(entry, at_best)
    return {
        "max_accuracy": best,
        "max_accuracy_timesteps": at_best["timesteps"],
        "max_accuracy_spikes": at_best["spikes_per_inference"],
        "iso_accuracy_timesteps": at_iso["timesteps"] if at_iso else None,
        "iso_accuracy_spikes": at_iso["spikes_per_inference"] if at_iso else None,
        "iso_accuracy_accuracy": at_iso["accuracy"] if at_iso else None,
        "compute_at_max": compute,
    }


def _compute_at(entry: dict, row: dict) -> dict:
    """Fig. 11 at one latency: the engine's synaptic operations vs the ANN's MACs, and energy."""
    macs = entry["ann_macs"]
    clock = macs * row["timesteps"]
    return {"timesteps": row["timesteps"], "synops": row["synops"], "ann_macs": macs, "clock_driven_ops": clock,
            "synops_over_ann_macs": row["synops"] / macs if macs else None,
            "energy": energy_estimates(row["synops"], macs, clock)}


# ---------------------------------------------------------------------------------- the report


def write_comparison(result: dict, out_dir, command: str) -> dict[str, Path]:
    """``report.md``, ``report.json`` and the comparison's figures under ``out_dir``."""
    return write_report_files(result, out_dir, command, FIGURES, plot_comparison, comparison_markdown)


def _label(entry: dict) -> str:
    return f"{Path(entry['model']).stem} ({entry['kind']})"


def comparison_markdown(r: dict, files: dict[str, str]) -> str:
    d = r["data"]
    spiking = [e for e in r["models"] if e["kind"] != "ann"]
    anns = [e for e in r["models"] if e["kind"] == "ann"]
    iso = r["iso_accuracy"]
    measured = (f"{d['dataset']} {d['split']} split, {d['samples']} samples, the same inputs for every model "
                f"(Poisson seed {d['seed']} per sample, or the same recordings), event engine in step mode, by `{r['command']}`")
    lines = [f"# evsim comparison: {', '.join(Path(e['model']).stem for e in r['models'])}", "",
             f"Measured on: {measured}.", "",
             "| model | kind | architecture | trained on | time steps | neuron |", "|---|---|---|---|---:|---|"]
    for e in r["models"]:
        lines.append(f"| {Path(e['model']).stem} | {e['kind']} | {e['arch'] or '?'} | {e['trained_on'] or '?'} "
                     f"| {e.get('timesteps', 'one pass')} | {e.get('threshold_rule', 'ReLU')} |")
    lines += ["", "## Accuracy vs time steps (paper: fig. 7b and 10)", "",
              "Each spiking model on the first T' steps of the same inputs; the prediction is the argmax of the "
              "output membrane after T' steps. An ANN has one accuracy.", ""]
    steps = d["latencies"]
    lines.append("| T' | " + " | ".join(_label(e) for e in spiking) + " |")
    lines.append("|---:|" + "---:|" * len(spiking))
    for t in steps:
        cells = []
        for e in spiking:
            row = next((x for x in e["analysis"]["latency"] if x["timesteps"] == t), None)
            cells.append(f"{format_percent(row['accuracy'])} / {row['spikes_per_inference']:,.0f}" if row else "")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: accuracy / spikes per image (input spikes included)."]
    for e in anns:
        lines.append(f"ANN {Path(e['model']).stem}: accuracy {format_percent(e['accuracy'])} (one pass, {e['ann_macs']:,} MACs).")
    lines += ["", f"![accuracy vs time steps]({files['accuracy']})", "", f"![spikes vs time steps]({files['spikes']})", ""]
    reference = f"the highest accuracy of {Path(iso['reference']).stem}" if iso["reference"] else "given with --iso-accuracy"
    lines += ["## Spikes and time steps at iso-accuracy and at maximum accuracy (paper: tables 8 and 9)", "",
              f"Iso-accuracy: the first T' at which a model reaches {format_percent(iso['target'])} ({reference}); maximum "
              "accuracy: the first T' at which a model reaches its highest accuracy over the T' run. Spikes per image "
              "include the input spikes.", "",
              "| model | iso-accuracy: time steps | spikes / image | max accuracy | time steps | spikes / image |",
              "|---|---:|---:|---:|---:|---:|"]
    for e in spiking:
        s = e["summary"]
        iso_steps = s["iso_accuracy_timesteps"] if s["iso_accuracy_timesteps"] is not None else "not reached"
        iso_spikes = f"{s['iso_accuracy_spikes']:,.0f}" if s["iso_accuracy_spikes"] is not None else "n/a"
        lines.append(f"| {_label(e)} | {iso_steps} | {iso_spikes} | {format_percent(s['max_accuracy'])} "
                     f"| {s['max_accuracy_timesteps']} | {s['max_accuracy_spikes']:,.0f} |")
    lines += ["", "## Operations and energy against the ANN (paper: fig. 11, section 5.4)", "",
              "Each spiking model at the T' of its maximum accuracy: synaptic operations the engine performed (one "
              "accumulate each) against the MACs of one ANN pass of the same architecture, and the 45 nm energy "
              "ESTIMATE of `evsim report` (fp32 MAC 4.6 pJ, AC 0.9 pJ; int32 MAC 3.2 pJ, AC 0.1 pJ; memory and neuron "
              "updates not included).", "",
              "| model | T' | ANN MACs | SNN ACs | ACs / ANN MACs | ANN / SNN energy fp32 | int32 |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for e in spiking:
        c = e["summary"]["compute_at_max"]
        lines.append(f"| {_label(e)} | {c['timesteps']} | {c['ann_macs']:,} | {c['synops']:,.0f} "
                     f"| {format_number(c['synops_over_ann_macs'], '.3f')} | {c['energy']['fp32']['ann_over_snn']:.2f}x "
                     f"| {c['energy']['int32']['ann_over_snn']:.2f}x |")
    lines += ["", f"![operations and energy]({files['compute']})", "",
              "## Spike activity per layer (paper: fig. 9)", "",
              "Spikes per image of each layer at each model's own T, and relative to the input layer's spikes.", ""]
    names = []
    for e in spiking:
        for layer in e["analysis"]["activity"]["layers"]:
            if layer["name"] not in names:
                names.append(layer["name"])
    lines.append("| layer | " + " | ".join(f"{_label(e)}, T={e['timesteps']}" for e in spiking) + " |")
    lines.append("|---|" + "---:|" * len(spiking))
    for name in names:
        cells = []
        for e in spiking:
            layer = next((x for x in e["analysis"]["activity"]["layers"] if x["name"] == name), None)
            cells.append(f"{layer['spikes']:,.0f} ({format_number(layer['relative_to_input'], '.3f')})" if layer else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"![spike activity per layer]({files['activity']})", ""]
    return "\n".join(lines) + "\n"


def plot_comparison(r: dict, paths: dict[str, Path]) -> None:
    for key, fig in comparison_figures(r).items():
        save_figure(fig, paths[key])


def comparison_figures(r: dict) -> dict:
    """The comparison's figures by name: accuracy and spikes vs time steps, spikes per layer,
    operations and energy against the ANN."""
    plt = pyplot()
    d = r["data"]
    caption = f"{d['dataset']} {d['split']}, {d['samples']} samples, the same inputs"
    spiking = [e for e in r["models"] if e["kind"] != "ann"]
    anns = [e for e in r["models"] if e["kind"] == "ann"]
    figures = {}
    for key, field, ylabel in (("accuracy", "accuracy", "accuracy (%)"),
                               ("spikes", "spikes_per_inference", "spikes per image (incl. input)")):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        steps = set()
        for e in spiking:
            rows = e["analysis"]["latency"]
            values = [(100 * x[field]) if field == "accuracy" else x[field] for x in rows]
            ax.plot([x["timesteps"] for x in rows], values, "o-", label=_label(e))
            steps.update(x["timesteps"] for x in rows)
        if field == "accuracy":
            for e in anns:
                ax.axhline(100 * e["accuracy"], ls="--", color="grey", label=f"{_label(e)}")
        time_step_axis(ax, sorted(steps))
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        ax.set_title(f"{ylabel} vs time steps\n{caption}", fontsize=9)
        figures[key] = fig
    figures["activity"] = _activity_figure(plt, spiking, caption)
    figures["compute"] = _compute_figure(plt, spiking, caption)
    return figures


def time_step_axis(ax, steps: list[int]) -> None:
    """A log axis of time steps labelled with the steps run, as plain numbers (not 6x10^0)."""
    from matplotlib.ticker import NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_xlabel("time steps T'")


def _activity_figure(plt, spiking: list[dict], caption: str):
    fig, ax = plt.subplots(figsize=(8, 4))
    names = []
    for e in spiking:
        for layer in e["analysis"]["activity"]["layers"]:
            if layer["name"] not in names:
                names.append(layer["name"])
    width = 0.8 / max(1, len(spiking))
    for k, e in enumerate(spiking):
        by_name = {x["name"]: x["spikes"] for x in e["analysis"]["activity"]["layers"]}
        ax.bar(np.arange(len(names)) + (k - (len(spiking) - 1) / 2) * width, [max(by_name.get(n, 0), 0.5) for n in names],
               width, label=f"{_label(e)}, T={e['timesteps']}")
    ax.set_xticks(np.arange(len(names)), names, rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("spikes per image")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never on one
    ax.set_title(f"Spike activity per layer\n{caption}", fontsize=9)
    return fig


def _compute_figure(plt, spiking: list[dict], caption: str):
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    labels = ["ANN MACs"] + [f"{_label(e)}\nT'={e['summary']['compute_at_max']['timesteps']}" for e in spiking]
    values = [spiking[0]["ann_macs"]] + [e["summary"]["compute_at_max"]["synops"] for e in spiking]
    bars = left.bar(np.arange(len(labels)), values, color=["grey"] + ["tab:blue"] * len(spiking))
    left.bar_label(bars, [f"{v / 1e6:.2f} M" for v in values], fontsize=8)
    left.set_xticks(np.arange(len(labels)), labels, fontsize=7, rotation=20 if len(labels) > 3 else 0, ha="center")
    left.set_yscale("log")
    # a log axis cut just below the smallest bar shows it as nothing: start a decade lower
    left.set_ylim(10 ** (np.floor(np.log10(max(min(values), 1))) - 1), 3 * max(values))
    left.set_ylabel("operations per image (log)")
    left.set_title("operations at max accuracy", fontsize=9)
    for k, p in enumerate(ENERGY_PJ):
        ratios = [e["summary"]["compute_at_max"]["energy"][p]["ann_over_snn"] for e in spiking]
        right.bar(np.arange(len(spiking)) + (k - 0.5) * 0.4, ratios, 0.4, label=p)
    right.axhline(1.0, color="grey", ls="--", label="break-even (ratio 1)")
    right.set_xticks(np.arange(len(spiking)), [_label(e) for e in spiking], fontsize=7)
    right.set_ylabel("ANN energy / SNN energy (estimate)")
    right.legend(fontsize=8)
    right.set_title("energy ESTIMATE, 45 nm (Horowitz 2014)", fontsize=9)
    fig.suptitle(caption, fontsize=9)
    return fig
