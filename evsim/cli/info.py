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


def run(args: argparse.Namespace) -> int:
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
        help="summarise an event file",
        description="Summarise an event file: event count, time span, sensor size, coordinate "
        "ranges, ON/OFF balance and mean event rate.",
    )
    parser.add_argument("file", help="event file; its suffix selects the format (.bin: N-MNIST)")
    add_output_arguments(parser, progress=False)
    parser.set_defaults(func=run)
