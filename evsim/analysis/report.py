"""The paper's analyses (section 5.2-5.4) for one trained model, measured with the event engine.

- Spike activity per layer (fig. 9): each layer's spikes per inference, normalised to the input
  layer's (the input events), from the engine's counters at the model's own ``T``.
- Accuracy vs latency vs spikes per inference (fig. 10, tables 8 and 9): the same network run for
  only the first ``T'`` steps of the same inputs (:func:`truncated_graph`).
- Compute (fig. 11, section 5.4): the synaptic operations the event-driven SNN performed (one
  accumulate each), beside the MACs of the ANN of the same architecture (one pass) and of a
  clock-driven SNN (every synapse, every step), per layer and in total, with the energy *estimate*
  of evsim.engine.counting.energy_estimates.

:func:`analyse` measures and returns plain data (JSON-able); :func:`write_report` turns it into
``report.md``, ``report.json`` and PNG figures (matplotlib, imported only there).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from evsim.runtime.inputs import sample_inputs
from evsim.engine.counting import ENERGY_PJ, Summary, energy_estimates
from evsim.engine.network import Network
from evsim.errors import EvsimError, InputError
from evsim.model.graph import Graph

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
FIGURES = {
    "activity": "spike_activity.png",
    "latency": "accuracy_latency.png",
    "compute": "compute.png",
}


def truncated_graph(graph: Graph, timesteps: int) -> Graph:
    """The same network run for ``timesteps`` steps of its input: an inference latency of T' steps.

    The steps keep their width: a recording's window shrinks to ``window_us * T' / T``, so the
    engine bins the first ``T'`` bins of the model's own binning (and drops the rest); Poisson
    trains are simply ``T'`` steps long, and as the coder draws step after step from one seeded
    generator, they are the first ``T'`` steps of the full-length trains. ``T' > T`` runs longer.
    The output becomes ``V(T') / T'`` (the divisor leaves the argmax alone).
    """
    return graph.with_timesteps(timesteps, f"T'={timesteps}")


def default_timesteps(graph: Graph) -> list[int]:
    """Fractions of the model's ``T`` (10 % ... 100 %) whose windows are whole microseconds."""
    chosen = []
    for fraction in DEFAULT_FRACTIONS:
        steps = max(1, round(graph.timesteps * fraction))
        try:
            truncated_graph(graph, steps)
        except InputError:
            continue
        chosen.append(steps)
    return sorted(set(chosen) | {graph.timesteps})


def analyse(model, samples, timesteps=None, workers: int = 2, seed: int = 0, progress=None) -> dict:
    """Run ``samples`` through ``model`` (a loaded Network) at each latency in ``timesteps`` (plus
    the model's own T), with the same weights cut to each window (:func:`truncated_graph`).

    Returns a JSON-able dict: ``data`` (what was measured on), ``activity`` (fig. 9, at the
    model's T), ``latency`` (fig. 10, one row per T'), ``compute`` (fig. 11 and the energy
    estimate, at the model's T). ``progress`` is called once per sample run.
    """
    graph = model.graph
    steps_list = sorted(set(timesteps or default_timesteps(graph)) | {graph.timesteps})
    labels = np.asarray(samples.labels)
    latency = []
    full = None
    for steps in steps_list:
        network = Network(truncated_graph(graph, steps), model.weights, dtype=model.dtype, name=model.name)
        network.run(next(sample_inputs(samples, network, seed)))  # compile or cache load, kept out of the timing
        summary = Summary()
        started = time.perf_counter()
        results = network.run_many(sample_inputs(samples, network, seed), workers=workers, progress=progress)
        for result, label in zip(results, labels):
            summary.add(result, int(label))
        seconds = time.perf_counter() - started
        latency.append(_latency_row(network, summary, seconds))
        if steps == graph.timesteps:
            full = (network, summary)
    network, summary = full
    return {
        "data": {
            "model": model.name,
            "arch": graph.meta.get("arch"),
            "trained_on": graph.meta.get("dataset"),
            "dataset": samples.dataset,
            "split": samples.split,
            "samples": len(samples),
            "model_timesteps": graph.timesteps,
            "encoding": graph.encoding.to_dict(),
            "seed": seed,
            "mode": "step",
            "dtype": str(network.dtype),
        },
        "activity": _activity(network, summary),
        "latency": latency,
        "compute": _compute(network, summary),
    }


def _latency_row(network, summary: Summary, seconds: float) -> dict:
    n = summary.samples
    accuracy = summary.accuracy
    window = network.encoding.window_us
    return {
        "timesteps": network.timesteps,
        "window_us": int(window) if window else None,
        "accuracy": accuracy,
        "accuracy_stderr": float(np.sqrt(accuracy * (1 - accuracy) / n)) if accuracy is not None else None,
        "input_events": summary.per_sample(summary.input_events),
        "hidden_spikes": summary.per_sample(summary.spikes),
        # the paper's '#spikes per image inference' counts the input spikes too (section 5.2.2)
        "spikes_per_inference": summary.per_sample(summary.input_events + summary.spikes),
        "synops": summary.per_sample(summary.synops),
        "engine_seconds_per_sample": seconds / n,
    }


def _activity(network, summary: Summary) -> dict:
    """Fig. 9: spikes per inference of each firing layer, relative to the input layer's."""
    steps = network.timesteps
    input_events = summary.per_sample(summary.input_events)
    input_neurons = int(np.prod(network.input_shape))
    input_rate = input_events / (input_neurons * steps)
    layers = [{
        "name": "input",
        "kind": "input",
        "neurons": input_neurons,
        "spikes": input_events,
        "relative_to_input": 1.0,
        "rate": input_rate,
        "relative_rate": 1.0,
    }]
    for layer in network.layers:
        if not layer.neuron.fires:
            continue
        spikes = summary.per_sample(summary.layer_spikes[layer.name])
        rate = spikes / (layer.size * steps)
        layers.append({
            "name": layer.name,
            "kind": layer.neuron.kind,
            "neurons": layer.size,
            "spikes": spikes,
            "relative_to_input": spikes / input_events if input_events else None,
            "rate": rate,
            "relative_rate": rate / input_rate if input_rate else None,
        })
    return {"timesteps": steps, "layers": layers}


def _compute(network, summary: Summary) -> dict:
    """Fig. 11 / section 5.4: operations per inference, per layer and in total, and their energy."""
    layers = []
    for layer in network.layers:
        synops = summary.per_sample(summary.layer_synops[layer.name])
        ann = layer.dense_macs_per_step
        clock = layer.dense_macs_per_step * network.timesteps
        layers.append({
            "name": layer.name,
            "kind": layer.neuron.kind,
            "synops": synops,
            "ann_macs": ann,
            "clock_driven_ops": clock,
            "synops_over_ann_macs": synops / ann if ann else None,
            "energy": energy_estimates(synops, ann, clock),
        })
    synops = sum(l["synops"] for l in layers)
    ann = sum(l["ann_macs"] for l in layers)
    clock = sum(l["clock_driven_ops"] for l in layers)
    return {
        "timesteps": network.timesteps,
        "layers": layers,
        "total": {
            "synops": synops,
            "ann_macs": ann,
            "clock_driven_ops": clock,
            "synops_over_ann_macs": synops / ann if ann else None,
            "clock_driven_over_ann_macs": clock / ann if ann else None,
        },
        "energy": energy_estimates(synops, ann, clock),
    }


# ---------------------------------------------------------------------------------- the report


def write_report(analysis: dict, out_dir, command: str) -> dict[str, Path]:
    """``report.md``, ``report.json`` and the figures under ``out_dir``; returns their paths."""
    return write_report_files(analysis, out_dir, command, FIGURES, plot_figures, markdown)


def write_report_files(content: dict, out_dir, command: str, figures: dict, plot, render) -> dict[str, Path]:
    """The files every evsim report writes under ``out_dir``: its ``figures`` (drawn by
    ``plot(content, paths)``), ``report.json`` and ``report.md`` (``render(content, file names)``),
    with the command that made them recorded in both; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    content = {**content, "command": command}
    paths = {name: out / filename for name, filename in figures.items()}
    plot(content, paths)
    paths["json"] = out / "report.json"
    paths["json"].write_text(json.dumps(_finite(content), indent=2, allow_nan=False) + "\n")
    paths["markdown"] = out / "report.md"
    paths["markdown"].write_text(render(content, {k: p.name for k, p in paths.items()}))
    return paths


def measured_on(analysis: dict, timesteps: str | None = None) -> str:
    """What a section was measured on and the command that measured it, so that it stands alone."""
    data = analysis["data"]
    steps = f"T = {data['model_timesteps']}" if timesteps is None else f"T' = {timesteps}"
    return (f"{data['dataset']} {data['split']} split, {data['samples']} samples, "
            f"{steps}, step mode ({data['dtype']}), by `{analysis['command']}`")


def markdown(a: dict, files: dict[str, str]) -> str:
    d = a["data"]
    window = d["encoding"].get("window_us")
    bin_note = (f"recordings binned into {d['model_timesteps']} steps of {window / d['model_timesteps'] / 1000:g} ms "
                f"({window / 1000:g} ms window)" if window else
                f"Poisson-coded images (seed {d['seed']}), {d['model_timesteps']} steps")
    lines = [
        f"# evsim report: {Path(d['model']).name}",
        "",
        f"Produced by `{a['command']}`.",
        "",
        f"Measured on: **{d['dataset']} {d['split']} split, {d['samples']} samples** "
        f"(`--limit N` takes a fixed random subset), event engine in step mode ({d['dtype']}), "
        f"{bin_note}. Model: {d['arch'] or 'unknown architecture'}, trained on {d['trained_on'] or 'unknown data'}. "
        "Every figure below is a mean per inference over these samples.",
        "",
    ]
    lines += _activity_section(a, files)
    lines += _latency_section(a, files)
    lines += _compute_section(a, files)
    lines += _energy_section(a)
    return "\n".join(lines) + "\n"


def _activity_section(a: dict, files: dict) -> list[str]:
    d = a["data"]
    rows = a["activity"]["layers"]
    out = [
        "## Spike activity per layer (paper: fig. 9)",
        "",
        f"Data: {measured_on(a)}. Spikes per inference of each firing layer, relative to the input layer's "
        "spikes (input events); 'rate' is spikes per neuron per step, and its ratio to the input rate. "
        "Means are ratios of totals over the samples.",
        "",
        "| layer | kind | neurons | spikes / inference | relative to input | spikes / neuron / step | rate relative to input |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(f"| {r['name']} | {r['kind']} | {r['neurons']:,} | {r['spikes']:,.1f} | {format_number(r['relative_to_input'], '.4f')} "
                   f"| {r['rate']:.5f} | {format_number(r['relative_rate'], '.4f')} |")
    out += ["", f"![spike activity per layer]({files['activity']})", ""]
    return out


def _latency_section(a: dict, files: dict) -> list[str]:
    d = a["data"]
    rows = a["latency"]
    window = d["encoding"].get("window_us")
    out = [
        "## Accuracy vs latency vs spikes per inference (paper: fig. 10, tables 8 and 9)",
        "",
        f"Data: {measured_on(a, ', '.join(str(r['timesteps']) for r in rows))}. Each row runs the same network on the "
        "first T' steps of the same inputs ("
        + ("the first T' bins of each recording, same bin width" if window else "the first T' steps of the same Poisson trains")
        + "); the prediction is the argmax of V(T'). Spikes per inference count the input spikes too, as in the "
        "paper's table 8. Engine time is wall time per sample on this machine, for scale only.",
        "",
        "| T' | latency | accuracy | ± s.e. | input events | hidden spikes | spikes / inference | synops | engine ms / sample |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        latency = f"{r['window_us'] / 1000:g} ms" if r["window_us"] else f"{r['timesteps']} steps"
        out.append(f"| {r['timesteps']} | {latency} | {format_percent(r['accuracy'])} | {format_percent(r['accuracy_stderr'])} "
                   f"| {r['input_events']:,.0f} | {r['hidden_spikes']:,.0f} | {r['spikes_per_inference']:,.0f} "
                   f"| {r['synops']:,.0f} | {1000 * r['engine_seconds_per_sample']:.2f} |")
    accuracies = [r["accuracy"] for r in rows if r["accuracy"] is not None]
    if accuracies:
        best = max(accuracies)
        first_best = next(r for r in rows if r["accuracy"] == best)
        out += ["", f"Highest accuracy {format_percent(best)} first reached at T' = {first_best['timesteps']} "
                    f"({first_best['spikes_per_inference']:,.0f} spikes per inference), on {d['samples']} "
                    f"{d['dataset']} {d['split']} samples."]
    out += ["", f"![accuracy vs latency]({files['latency']})", ""]
    return out


def _compute_section(a: dict, files: dict) -> list[str]:
    d = a["data"]
    c = a["compute"]
    out = [
        "## Compute: event-driven SNN vs ANN vs clock-driven SNN (paper: fig. 11, section 5.4)",
        "",
        f"Data: {measured_on(a)}. Event-driven SNN: synaptic operations the engine performed (one accumulate, AC, "
        "per weight added; measured). ANN: multiply-accumulates (MACs) of one pass of the same architecture. "
        "Clock-driven SNN: every synapse every step (MACs per step x T). The last two follow from the architecture; "
        "pooling and skip projections count like the others.",
        "",
        "| layer | kind | ANN MACs | clock-driven SNN ops | event-driven SNN ACs | ACs / ANN MACs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in c["layers"]:
        out.append(f"| {r['name']} | {r['kind']} | {r['ann_macs']:,} | {r['clock_driven_ops']:,} | {r['synops']:,.0f} "
                   f"| {format_number(r['synops_over_ann_macs'], '.3f')} |")
    t = c["total"]
    out.append(f"| **total** | | {t['ann_macs']:,} | {t['clock_driven_ops']:,} | {t['synops']:,.0f} "
               f"| {format_number(t['synops_over_ann_macs'], '.3f')} |")
    out += ["", f"Ratio clock-driven SNN : event-driven SNN : ANN = {format_number(t['clock_driven_over_ann_macs'], '.2f')} : "
                f"{format_number(t['synops_over_ann_macs'], '.2f')} : 1 ({d['dataset']} {d['split']}, {d['samples']} samples).",
            "", f"![compute per layer]({files['compute']})", ""]
    return out


def _energy_section(a: dict) -> list[str]:
    d = a["data"]
    c = a["compute"]
    out = [
        "## Energy: an ESTIMATE (paper: section 5.4)",
        "",
        f"Data: {measured_on(a)}. **Not a measurement**: operation counts above times the 45 nm per-operation "
        "energies the paper quotes (Horowitz 2014): fp32 MAC 4.6 pJ, AC 0.9 pJ; int32 MAC 3.2 pJ, AC 0.1 pJ. "
        "The clock-driven SNN is priced at AC energy per synapse per step (binary spikes need no multiply). "
        "Memory access, neuron updates and data movement are not included.",
        "",
        "| precision | ANN (µJ) | event-driven SNN (µJ) | clock-driven SNN (µJ) | ANN / event-driven SNN |",
        "|---|---:|---:|---:|---:|",
    ]
    for p in ENERGY_PJ:
        e = c["energy"][p]
        out.append(f"| {p} | {e['ann_pj'] / 1e6:.4f} | {e['snn_event_driven_pj'] / 1e6:.4f} "
                   f"| {e['snn_clock_driven_pj'] / 1e6:.4f} | {e['ann_over_snn']:.2f}x |")
    out += ["", "Per layer (estimate, µJ per inference):", "",
            "| layer | ANN fp32 | SNN fp32 | ANN int32 | SNN int32 |", "|---|---:|---:|---:|---:|"]
    for r in c["layers"]:
        f, i = r["energy"]["fp32"], r["energy"]["int32"]
        out.append(f"| {r['name']} | {f['ann_pj'] / 1e6:.4f} | {f['snn_event_driven_pj'] / 1e6:.4f} "
                   f"| {i['ann_pj'] / 1e6:.4f} | {i['snn_event_driven_pj'] / 1e6:.4f} |")
    out.append("")
    return out


def _finite(value):
    """``value`` with infinities and NaNs as None (null), so that report.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def format_number(value, spec: str) -> str:
    return "n/a" if value is None or not np.isfinite(value) else format(value, spec)


def format_percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


# ---------------------------------------------------------------------------------- figures


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only), or a clear error without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise EvsimError("drawing figures needs matplotlib: pip install 'evsim[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_figures(a: dict, paths: dict[str, Path]) -> None:
    plt = pyplot()
    d = a["data"]
    caption = f"{Path(d['model']).name}: {d['dataset']} {d['split']}, {d['samples']} samples"

    rows = a["activity"]["layers"]
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(rows) + 2), 4))
    names = [r["name"] for r in rows]
    ax.bar(names, [r["relative_to_input"] or 0 for r in rows], color="tab:blue", label="spikes / input spikes")
    ax.plot(names, [r["relative_rate"] or 0 for r in rows], "o-", color="tab:orange", label="rate per neuron / input rate")
    ax.set_yscale("log")
    ax.set_ylabel("activity relative to the input layer")
    ax.set_title(f"Spike activity per layer (T = {a['activity']['timesteps']})\n{caption}", fontsize=9)
    ax.tick_params(axis="x", rotation=45)
    ax.legend(fontsize=8)
    save_figure(fig, paths["activity"])

    lat = a["latency"]
    steps = [r["timesteps"] for r in lat]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(steps, [100 * (r["accuracy"] or 0) for r in lat], "o-", color="tab:blue")
    ax.set_xlabel("time steps T' (latency)" + (f", {lat[0]['window_us'] / lat[0]['timesteps'] / 1000:g} ms each"
                                                if lat[0]["window_us"] else ""))
    ax.set_ylabel("accuracy (%)", color="tab:blue")
    twin = ax.twinx()
    twin.plot(steps, [r["spikes_per_inference"] for r in lat], "s--", color="tab:red")
    twin.set_ylabel("spikes per inference (incl. input)", color="tab:red")
    ax.set_title(f"Accuracy vs latency vs spikes per inference\n{caption}", fontsize=9)
    save_figure(fig, paths["latency"])

    c = a["compute"]
    layers = c["layers"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 0.9 * len(layers) + 5), 4),
                                      gridspec_kw={"width_ratios": [max(2, len(layers)), 2]})
    x = np.arange(len(layers))
    width = 0.27
    for k, (key, label) in enumerate((("ann_macs", "ANN MACs"), ("clock_driven_ops", "clock-driven SNN"),
                                      ("synops", "event-driven SNN ACs"))):
        left.bar(x + (k - 1) * width, [max(r[key], 0.5) for r in layers], width, label=label)
    left.set_xticks(x, [r["name"] for r in layers], rotation=45)
    left.set_yscale("log")
    left.set_ylabel("operations per inference")
    left.legend(fontsize=8)
    left.set_title("per layer", fontsize=9)
    energy = c["energy"]
    labels = ["ANN", "SNN (event)", "SNN (clock)"]
    keys = ["ann_pj", "snn_event_driven_pj", "snn_clock_driven_pj"]
    for k, p in enumerate(ENERGY_PJ):
        right.bar(np.arange(3) + (k - 0.5) * 0.4, [energy[p][key] / 1e6 for key in keys], 0.4, label=p)
    right.set_xticks(np.arange(3), labels, rotation=20)
    right.set_yscale("log")
    right.set_ylabel("µJ per inference (estimate)")
    right.legend(fontsize=8)
    right.set_title("energy ESTIMATE, 45 nm (Horowitz 2014)", fontsize=9)
    fig.suptitle(f"Compute per inference (T = {c['timesteps']}); {caption}", fontsize=9)
    save_figure(fig, paths["compute"])


def save_figure(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
