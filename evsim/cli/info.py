"""``evsim info FILE``: what an event file holds, at a glance or as JSON."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

import numpy as np

from evsim.cli.common import add_output_arguments


@dataclass(frozen=True)
class EventSummary:
    file: str
    events: int
    t_first_us: int | None
    t_last_us: int | None
    duration_us: int | None  # last minus first timestamp
    sensor_size: tuple[int, int, int]  # (width, height, polarities)
    x_min: int | None
    x_max: int | None
    y_min: int | None
    y_max: int | None
    on_events: int
    off_events: int
    on_fraction: float | None
    mean_rate_hz: float | None  # events per second over the duration


def summarise_events(path, events: np.ndarray, sensor_size) -> EventSummary:
    n = len(events)
    on = int(np.count_nonzero(events["p"]))
    if n == 0:
        t_first = t_last = duration = None
        x_range = y_range = (None, None)
    else:
        t_first, t_last = int(events["t"].min()), int(events["t"].max())
        duration = t_last - t_first
        x_range = (int(events["x"].min()), int(events["x"].max()))
        y_range = (int(events["y"].min()), int(events["y"].max()))
    return EventSummary(
        file=str(path),
        events=n,
        t_first_us=t_first,
        t_last_us=t_last,
        duration_us=duration,
        sensor_size=tuple(int(s) for s in sensor_size),
        x_min=x_range[0],
        x_max=x_range[1],
        y_min=y_range[0],
        y_max=y_range[1],
        on_events=on,
        off_events=n - on,
        on_fraction=on / n if n else None,
        mean_rate_hz=n / (duration * 1e-6) if duration else None,
    )


def format_summary(s: EventSummary) -> str:
    width, height, polarities = s.sensor_size
    lines = [
        ("file", s.file),
        ("events", f"{s.events:,}"),
        ("sensor", f"{width} x {height}, {polarities} polarities"),
    ]
    if s.events:
        lines += [
            ("time", f"{s.t_first_us:,} .. {s.t_last_us:,} µs"),
            ("duration", f"{s.duration_us:,} µs ({s.duration_us / 1000:.1f} ms)"),
            ("x range", f"{s.x_min} .. {s.x_max}"),
            ("y range", f"{s.y_min} .. {s.y_max}"),
            ("ON / OFF", f"{s.on_events:,} / {s.off_events:,} ({100 * s.on_fraction:.1f} % ON)"),
        ]
        rate = "n/a (zero duration)" if s.mean_rate_hz is None else f"{s.mean_rate_hz:,.0f} events/s"
        lines.append(("mean rate", rate))
    return "\n".join(f"{key:<10} {value}" for key, value in lines)


def is_model(file: str) -> bool:
    """A model file (.npz, or a zip archive under another name), a NIR graph (.nir) or a bundled
    model's name, rather than events."""
    import os
    import zipfile

    from evsim.paths import BUNDLED_MODELS

    if file.lower().endswith((".npz", ".nir")) or (BUNDLED_MODELS / f"{file}.npz").exists():
        return True
    return os.path.isfile(file) and zipfile.is_zipfile(file)  # no event format is a zip archive


def training_text(meta: dict) -> str | None:
    """What a model file records of its training, in one line (None when it records nothing)."""
    parts = []
    if meta.get("arch") or meta.get("dataset"):
        parts.append(f"{meta.get('arch', 'a network')} on {meta.get('dataset', 'unknown data')}"
                     + (" (ANN)" if meta.get("ann") else ""))
    if meta.get("pretrained_on"):
        parts.append(f"from {meta.get('init', 'a model')} trained on {meta['pretrained_on']}")
    if meta.get("epochs"):
        parts.append(f"{meta['epochs']} epochs")
    if meta.get("train_samples"):
        parts.append(f"{meta['train_samples']:,} training samples"
                     + (f" + {meta['simulated_per_epoch']:,} simulated per epoch" if meta.get("simulated_per_epoch") else ""))
    if meta.get("val_accuracy") is not None:
        parts.append(f"validation accuracy {100 * meta['val_accuracy']:.2f} % on {meta.get('val_samples', 0):,}")
    if meta.get("accuracy") is not None:
        parts.append(f"test accuracy {100 * meta['accuracy']:.2f} % on {meta.get('test_samples', 0):,} (dense)")
    for key in ("imported_from", "converted_from"):
        if meta.get(key):
            parts.append(f"{key.replace('_', ' ')} {meta[key]}")
    return "; ".join(parts) or None


def model_summary(file: str) -> dict:
    """Each layer of a model with its neuron rule; a NIR file's nodes and edges as they are stored."""
    if file.lower().endswith(".nir"):
        from evsim.interop.nir import check_graph, read_nir

        graph = read_nir(file)
        order, shapes = check_graph(graph)
        return {"file": file, "format": f"NIR {graph.version}".strip(),
                "nodes": [{"name": n, "type": graph.nodes[n].type, "shape": list(shapes[n])} for n in order],
                "edges": [list(e) for e in graph.edges],
                "note": "NIR stores no time step: evsim import FILE --dt-us N --timesteps T [--semantics ...]"}
    from evsim.model.file import load_model
    from evsim.model.summary import neuron_rule

    graph = load_model(file).graph
    return {"file": file, "format": "evsim model", "input_shape": list(graph.input_shape),
            "timesteps": graph.timesteps, "encoding": graph.encoding.to_dict(), "meta": graph.meta,
            "layers": [{"name": p.name, "kind": p.kind, "shape": list(p.shape),
                        "inputs": [q.to_dict() for q in p.inputs], "neuron": p.neuron.to_dict(),
                        "rule": neuron_rule(p.neuron)} for p in graph.populations]}


def run_model(args: argparse.Namespace) -> int:
    summary = model_summary(args.file)
    if args.json:
        print(json.dumps(summary))
    elif "nodes" in summary:
        print(f"{summary['file']}: {summary['format']}, {len(summary['nodes'])} nodes")
        for node in summary["nodes"]:
            print(f"  {node['name']:<12} {node['type']:<10} {node['shape']}")
        print(summary["note"])
    else:
        from evsim.model.file import load_model
        from evsim.model.summary import describe

        print(f"{summary['file']}: {summary['format']}")
        for line in describe(load_model(args.file).graph):
            print(f"  {line}")
        trained = training_text(summary["meta"])
        if trained:
            print(f"  trained: {trained}")
    return 0


def run(args: argparse.Namespace) -> int:
    if is_model(args.file):
        return run_model(args)
    from evsim.datasets.formats import read_events

    events, sensor_size = read_events(args.file)
    summary = summarise_events(args.file, events, sensor_size)
    if args.json:
        print(json.dumps(asdict(summary)))
    else:
        print(format_summary(summary))
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="summarise an event file or a model",
        description="Summarise an event file: event count, time span, sensor size, coordinate "
        "ranges, ON/OFF balance and mean event rate. Given a model (.npz, a bundled model's name, "
        "or a NIR .nir graph): each layer with its neuron rule.",
    )
    parser.add_argument("file", help="event file (its suffix selects the format, .bin: N-MNIST), or a model "
                        "file (.npz), bundled model name or NIR graph (.nir)")
    add_output_arguments(parser, progress=False)
    parser.set_defaults(func=run)
