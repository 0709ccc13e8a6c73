"""The main job on the real recordings bundled with evsim: stream them, count, compare with dense.

:func:`run_demo` streams every recording of a split through a model (exactly what ``evsim stream``
does to a file) in both modes: step mode, the trained network's time steps (the same spikes as
``evsim run`` and the dense model), and asynchronous mode, continuous time. It sums what the
engine counted in the chosen mode (accuracy, synaptic operations, spikes per layer, the 45 nm
energy estimate against the ANN and the dense clock-driven SNN) and gives the other mode's
accuracy, synops and speed beside it, then measures on the same recordings, in the same process,
how fast evsim and dense PyTorch simulate them (:func:`evsim.analysis.bench.benchmark`).
:func:`plot_demo` draws the PNG.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from evsim.analysis.bench import benchmark
from evsim.runtime.streaming import MODES, stream_file, warm_up
from evsim.engine.asynchronous import input_window_us
from evsim.engine.counting import energy_estimates
from evsim.paths import DEMO_DATA
TIMELINE_EVERY_US = 5_000.0


MODE_NAMES = {"step": "step mode (the trained time steps)", "async": "async mode (event by event, continuous time)"}


def run_demo(network, data: Path = DEMO_DATA, split: str = "test", rounds: int = 3,
             threads: int = 2, compare_dense: bool = True, progress: bool = True, mode: str = "step") -> dict:
    """Stream the ``split`` recordings under ``data`` through ``network`` (a loaded Network) in
    both modes; the figures of ``mode`` as a dict, with both modes' summaries under ``modes``.

    Without torch (``compare_dense=False`` or not installed) the speed comparison is left out
    and its keys are None.
    """
    from tqdm import tqdm

    from evsim.datasets.nmnist import NMNIST

    recordings = NMNIST(data, split)
    labels = recordings.labels
    started = time.perf_counter()
    for m in MODES:  # a fresh install compiles the kernels here; the speeds below exclude it
        warm_up(network, m)
    compile_seconds = time.perf_counter() - started
    by_mode = {}
    for m in (mode, *(other for other in MODES if other != mode)):
        by_mode[m] = [stream_file(path, network, TIMELINE_EVERY_US, keep_timeline=m == mode, mode=m)
                      for path in tqdm(recordings.files, desc=f"streaming ({m} mode)", unit="recording",
                                       disable=not progress, leave=False)]
    reports = by_mode[mode]
    # the figures are the model's input window's, exactly what `evsim run` reports in that mode;
    # only the timeline and the streaming speed cover the whole recording
    windows = [r["window"] for r in reports]
    n = len(reports)
    predictions = np.array([-1 if w["prediction"] is None else w["prediction"] for w in windows])
    synops = sum(w["synops"] for w in windows)
    spikes = sum(w["spikes"] for w in windows)
    ann_macs = sum(layer.dense_macs_per_step for layer in network.layers)  # the ANN: one pass
    dense_macs = ann_macs * network.timesteps  # the clock-driven SNN: that pass at every step
    streaming_seconds = sum(r["wall_s"] for r in reports)
    counts = np.array([r["events"] for r in reports])
    shown = int(np.argmin(np.abs(counts - np.median(counts))))  # a typical recording for the figure
    result = {
        "model": network.name,
        "data": str(data),
        "split": split,
        "mode": mode,
        "window_us": input_window_us(network),
        "compile_or_cache_load_s": compile_seconds,
        "modes": {m: _summary(r, labels) for m, r in by_mode.items()},
        "samples": n,
        "accuracy": float(np.mean(predictions == labels)),
        "correct": int(np.sum(predictions == labels)),
        "events_per_sample": sum(r["events"] for r in reports) / n,
        "input_events_per_sample": sum(w["input_events"] for w in windows) / n,
        "synops_per_sample": synops / n,
        "spikes_per_sample": spikes / n,
        "dense_macs_per_sample": dense_macs,
        "ann_macs_per_sample": ann_macs,
        "layers": [
            {"name": layer.name, "kind": layer.neuron.kind,
             "spikes_per_sample": sum(w["spikes_per_layer"].get(layer.name, 0) for w in windows) / n,
             "synops_per_sample": sum(w["synops_per_layer"].get(layer.name, 0) for w in windows) / n}
            for layer in network.layers
        ],
        "energy_estimate": energy_estimates(synops / n, ann_macs, dense_macs),
        "streaming_samples_per_s_1thread": n / streaming_seconds if streaming_seconds > 0 else None,
        "realtime_factor": sum(r["duration_us"] for r in reports) * 1e-6 / streaming_seconds if streaming_seconds > 0 else None,
        "recordings": [
            {"file": Path(r["file"]).relative_to(data).as_posix(), "label": int(label),
             "prediction": r["window"]["prediction"], "events": r["events"],
             "input_events": r["window"]["input_events"], "synops": r["window"]["synops"],
             "decision_time_us": r["decision_time_us"]}
            for r, label in zip(reports, labels)
        ],
        "shown": {"file": reports[shown]["file"], "label": int(labels[shown]), "timeline": reports[shown]["timeline"]},
    }
    result.update(_speed(data, split, network, rounds, threads, compare_dense, progress, mode))
    return result


def _summary(reports: list[dict], labels) -> dict:
    """One mode's streams of every recording: accuracy and work over the input window, and the
    one-thread streaming speed over the whole recordings."""
    n = len(reports)
    windows = [r["window"] for r in reports]
    predictions = np.array([-1 if w["prediction"] is None else w["prediction"] for w in windows])
    seconds = sum(r["wall_s"] for r in reports)
    return {
        "accuracy": float(np.mean(predictions == labels)),
        "correct": int(np.sum(predictions == labels)),
        "input_events_per_sample": sum(w["input_events"] for w in windows) / n,
        "synops_per_sample": sum(w["synops"] for w in windows) / n,
        "spikes_per_sample": sum(w["spikes"] for w in windows) / n,
        "streaming_samples_per_s_1thread": n / seconds if seconds > 0 else None,
        "realtime_factor": sum(r["duration_us"] for r in reports) * 1e-6 / seconds if seconds > 0 else None,
    }


def _speed(data, split, network, rounds, threads, compare_dense, progress, mode) -> dict:
    empty = {"speedup_vs_dense": None, "speed": None}
    if not compare_dense:
        return empty
    try:
        import torch  # noqa: F401
    except ImportError:
        return {**empty, "speed_note": "dense comparison skipped: torch is not installed (pip install 'evsim[train]')"}
    from tqdm import tqdm

    from evsim.datasets.samples import load_samples

    samples = load_samples("nmnist", data, split, encoding=network.encoding)
    with tqdm(total=rounds, desc="timing evsim and dense PyTorch", unit="round", disable=not progress, leave=False) as bar:
        bench = benchmark(network, samples, rounds=rounds, threads=threads, progress=bar.update)
    step = bench["event_samples_per_s"] / bench["dense_batch1_samples_per_s"]
    asynchronous = bench["async_samples_per_s"] / bench["dense_batch1_samples_per_s"]
    return {
        # the demo's mode against dense PyTorch taking the recordings one at a time
        "speedup_vs_dense": step if mode == "step" else asynchronous,
        "step_speedup_vs_dense": step,
        "async_speedup_vs_dense": asynchronous,
        "speed": {k: bench[k] for k in (
            "threads", "rounds", "async_samples_per_s", "event_samples_per_s", "dense_batch1_samples_per_s",
            "dense_batch64_samples_per_s", "dense_batch64_actual_batch", "speedup_vs_dense_batch64",
            "step_equals_dense_predictions", "spread_samples_per_s")},
    }


def format_demo(d: dict) -> str:
    e32, ei = d["energy_estimate"]["fp32"], d["energy_estimate"]["int32"]
    lines = [
        f"evsim demo: {d['samples']} real N-MNIST {d['split']} recordings "
        f"({'bundled with evsim' if d['data'] == str(DEMO_DATA) else d['data']}) streamed through {d['model']} "
        f"in {MODE_NAMES[d['mode']]}",
        f"accuracy            {100 * d['accuracy']:.2f} % ({d['correct']} of {d['samples']})",
        f"input events        {d['input_events_per_sample']:,.0f} per recording in the model's "
        f"{d['window_us'] / 1000:g} ms input window from the first event (of {d['events_per_sample']:,.0f} recorded)",
        f"synaptic ops        {d['synops_per_sample']:,.0f} per recording (dense clock-driven SNN: "
        f"{d['dense_macs_per_sample']:,.0f} MACs; ANN: {d['ann_macs_per_sample']:,.0f} MACs)",
        f"spikes              {d['spikes_per_sample']:,.0f} per recording: "
        + ", ".join(f"{layer['name']} {layer['spikes_per_sample']:,.0f}" for layer in d["layers"] if layer["kind"] != "output"),
    ]
    for e in (e32, ei):
        lines.append(
            f"energy estimate     {e['precision']}: event-driven SNN {e['snn_event_driven_pj'] / 1e6:.2f} µJ, "
            f"ANN {e['ann_pj'] / 1e6:.2f} µJ, dense SNN {e['snn_clock_driven_pj'] / 1e6:.2f} µJ per recording "
            f"(45 nm operation energies, an estimate)")
    for m, summary in d["modes"].items():
        lines.append(
            f"{m + ' mode':<19} accuracy {100 * summary['accuracy']:.2f} %, {summary['synops_per_sample']:,.0f} synops "
            f"per recording; streamed from the files (decoding included), batch 1, 1 thread: "
            f"{summary['streaming_samples_per_s_1thread']:.1f} recordings/s ({summary['realtime_factor']:.1f}x real time)")
    lines.append(f"{'compile':<19} {d['compile_or_cache_load_s']:.1f} s to compile the kernels (a first run) or load "
                 "them from numba's cache, before and apart from every timing")
    speed = d.get("speed")
    if speed is None:
        lines.append(d.get("speed_note", "dense comparison skipped"))
    else:
        def rate(key: str) -> str:  # mean over the rounds, with the slowest and fastest round
            spread = speed["spread_samples_per_s"][key]
            return f"{speed[key]:.1f}/s ({spread['min']:.1f} .. {spread['max']:.1f})"

        lines.append(
            f"speed in memory, same recordings, {speed['threads']} thread{'s' if speed['threads'] != 1 else ''}, "
            f"{speed['rounds']} rounds (slowest .. fastest): "
            f"evsim step mode batch 1 {rate('event_samples_per_s')}, evsim async mode batch 1 {rate('async_samples_per_s')}, "
            f"dense PyTorch batch 1 {rate('dense_batch1_samples_per_s')}, batch {speed['dense_batch64_actual_batch']} "
            f"{rate('dense_batch64_samples_per_s')}")
        lines.append(
            f"speedup vs dense    {d['step_speedup_vs_dense']:.2f}x step mode, {d['async_speedup_vs_dense']:.2f}x "
            f"async mode (dense PyTorch at batch 1)")
    return "\n".join(lines)


ON_COLOUR, OFF_COLOUR = np.array([0.86, 0.08, 0.08]), np.array([0.1, 0.35, 0.95])
FIRST_SACCADE_US = 100_000  # N-MNIST's camera moves three times in 300 ms: the first move alone draws a sharp digit


def polarity_image(events, width: int, height: int) -> np.ndarray:
    """An RGB image on white of where ON events (red) and OFF events (blue) fell, each by its
    share of its polarity's busiest pixel; a pixel with both darkens towards purple."""
    counts = np.zeros((height, width, 2))
    np.add.at(counts, (events["y"].astype(int), events["x"].astype(int), events["p"].astype(int)), 1.0)
    counts /= counts.max(axis=(0, 1), keepdims=True).clip(min=1.0)
    on, off = counts[..., 1:2], counts[..., 0:1]
    white = np.ones(3)
    return (white - on * (white - ON_COLOUR)) * (white - off * (white - OFF_COLOUR))  # two filters on white paper


def plot_demo(d: dict, path: Path) -> Path:
    """Write :func:`demo_figure` as a PNG at ``path``. Needs matplotlib."""
    import matplotlib.pyplot as plt

    fig = demo_figure(d)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def demo_figure(d: dict):
    """Spikes per layer; one recording's events; its running prediction, titled with the mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from evsim.datasets.formats import read_events

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    spiking = [layer for layer in d["layers"] if layer["kind"] != "output"]  # the output layer only integrates
    axes[0].bar([layer["name"] for layer in spiking], [layer["spikes_per_sample"] for layer in spiking])
    axes[0].set(ylabel="spikes per recording", yscale="log",
                title=f"spikes per layer ({d['samples']} recordings)")

    shown = d["shown"]
    events, (width, height, _) = read_events(shown["file"])
    first = events[events["t"] - events["t"].min() < FIRST_SACCADE_US]
    axes[1].imshow(polarity_image(first, width, height))
    axes[1].legend(handles=[Patch(color=ON_COLOUR, label="ON events"), Patch(color=OFF_COLOUR, label="OFF events"),
                            Patch(color=ON_COLOUR * OFF_COLOUR, label="both")], loc="lower right", fontsize=8)
    axes[1].set(title=f"{Path(shown['file']).name} (digit {shown['label']}), first {FIRST_SACCADE_US // 1000} ms: "
                      f"{len(first):,} of {len(events):,} events", xticks=[], yticks=[])

    times = np.array([p["time_us"] for p in shown["timeline"]]) / 1000
    predicted = np.array([np.nan if p["prediction"] is None else p["prediction"] for p in shown["timeline"]])
    margins = np.array([p["margin"] for p in shown["timeline"]])
    lines = axes[2].step(times, predicted, where="post", label="predicted digit")
    lines.append(axes[2].axhline(shown["label"], color="grey", linestyle=":", label=f"true digit {shown['label']}"))
    axes[2].set(xlabel="recording time (ms)", ylabel="digit", yticks=range(10), ylim=(-0.5, 9.5),
                title=f"running prediction, {d['mode']} mode")
    twin = axes[2].twinx()
    lines += twin.plot(times, margins, color="tab:orange", alpha=0.6, label="margin over the runner-up")
    twin.set(ylabel="margin over the runner-up")
    axes[2].legend(handles=lines, loc="lower right", fontsize=8)  # both axes' lines in one legend
    fig.suptitle(f"evsim demo: {d['model']} in {MODE_NAMES[d['mode']]}")
    fig.tight_layout()
    return fig
