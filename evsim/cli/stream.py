"""``evsim stream FILE... --model MODEL``: run recordings through a model as they play.

The pipeline is evsim.runtime.streaming; this module holds the arguments, the text output,
folder expansion and the process pool for several files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from evsim.cli.common import non_negative_float, positive_float, positive_int, scale_factor
from evsim.errors import DataError, EvsimError, InputError

DEFAULT_EVERY_MS = 50.0
DEFAULT_WORKERS = 2
MODE_TEXT = {
    "step": "step: the trained network's time steps, run as their bins close (exactly evsim run's step mode)",
    "async": "async: continuous time, every event at its own µs (an approximation of the trained network)",
}


# --- text output --------------------------------------------------------------------------


def _ms(us) -> str:
    return "n/a" if us is None else f"{us / 1000:,.1f} ms"


def format_point(point: dict, every_us: float | None = None) -> str:
    prediction = "-" if point["prediction"] is None else str(point["prediction"])
    line = f"{_ms(point['time_us']):>12}  prediction {prediction:>3}  margin {point['margin']:.4f}"
    if "received" not in point:
        return line
    behind = "  BEHIND" if every_us is not None and point["lag_us"] > every_us else ""
    return (f"{line}  received {point['received']:,}  processed {point['processed']:,}  "
            f"dropped {point['dropped']:,}  lag {_ms(point['lag_us'])}{behind}")


def format_report(report: dict) -> str:
    width, height, _ = report["sensor_size"]
    origin = report["time_origin_us"]
    lines = [
        ("mode", MODE_TEXT[report["mode"]]),
        ("format", f"{report['format']}, sensor {width} x {height} (from the {report['sensor_size_from']})"),
        ("input", report["input_fit"]),
        ("time", "no events" if origin is None else
         f"0 = the first event, at {origin:,} µs on the file's clock; times are recording time"),
    ]
    prediction = "none (no input reached the output)" if report["prediction"] is None else str(report["prediction"])
    lines += [
        ("final", f"prediction {prediction}, margin {report['margin']:.4f}, after {_ms(report['duration_us'])}"),
        ("stable", f"since {_ms(report['decision_time_us'])}"),
        ("events", f"{report['events']:,} read, {report['input_events']:,} into the network"),
        ("synops", f"{report['synops']:,}"),
        ("spikes", "  ".join(f"{name} {n:,}" for name, n in report["spikes_per_layer"].items())
         + f"  (total {report['spikes']:,})"),
    ]
    window = report.get("window")
    if window is not None:
        prediction = "none" if window["prediction"] is None else str(window["prediction"])
        lines.append(("window", f"the model's first window alone (= evsim run): prediction {prediction}, "
                                f"{window['input_events']:,} events, {window['synops']:,} synops, "
                                f"{window['spikes']:,} spikes"))
    factor = report["realtime_factor"]
    speed = (f"{_ms(report['duration_us'])} of recording in {report['wall_s']:.2f} s "
             f"({report['mode']} mode, batch 1, 1 thread)")
    lines.append(("speed", speed + (f": {factor:,.2f}x real time" if factor is not None else "")))
    live = report.get("live")
    if live is not None:
        end = {"closed": "the server closed the connection"}.get(live["end"], "stopped before the stream's end")
        lines.append(("live", f"{live['camera']}: {live['received']:,} events received, {live['processed']:,} "
                              f"processed, {live['dropped']:,} dropped, lag at the end {_ms(live['lag_us'])}; {end}"))
    if report.get("interrupted"):
        lines.append(("status", "interrupted: the figures cover the part streamed so far"))
    if report.get("error"):
        lines.append(("status", "stopped by damaged input; the figures cover the part before it"))
    return "\n".join(f"{key:<8} {value}" for key, value in lines)


def format_row(report: dict) -> str:
    if "prediction" not in report:
        return f"{report['file']}: " + ("error (below)" if report.get("error") else "not started (interrupted)")
    prediction = "-" if report["prediction"] is None else report["prediction"]
    status = " (interrupted)" if report.get("interrupted") else ""
    status += " (damaged: stopped early, error below)" if report.get("error") else ""
    fit = "" if report["input_fit"].startswith("the sensor matches") else f"; {report['input_fit']}"
    factor = report["realtime_factor"]
    return (f"{report['file']}: prediction {prediction} margin {report['margin']:.4f} "
            f"stable since {_ms(report['decision_time_us'])}, {report['input_events']:,} of {report['events']:,} "
            f"events used, {report['synops']:,} synops, {report['spikes']:,} spikes, "
            f"{'n/a' if factor is None else f'{factor:,.1f}'}x real time ({report['mode']} mode, 1 thread){fit}{status}")


def label_from_path(path) -> int | None:
    """A recording's label where its folder names it, as in N-MNIST's ``Test/7/00001.bin``."""
    folder = Path(path).parent.name
    return int(folder) if folder.isdigit() else None


def totals(reports: list[dict]) -> dict:
    """Over the files streamed: how many, the accuracy of the window's prediction where a
    folder names the label, and the mean work per file."""
    done = [r for r in reports if "prediction" in r]
    labelled = [(r, label) for r in done if (label := label_from_path(r["file"])) is not None]
    decided = [(r.get("window") or r)["prediction"] for r, _ in labelled]
    correct = sum(p == label for p, (_, label) in zip(decided, labelled))
    n = len(done)
    return {"files": len(reports), "streamed": n, "failed": sum(1 for r in reports if r.get("error")),
            "labelled": len(labelled), "correct": correct,
            "accuracy": correct / len(labelled) if labelled else None,
            "synops_per_file": sum(r["synops"] for r in done) / n if n else None,
            "input_events_per_file": sum(r["input_events"] for r in done) / n if n else None}


def format_totals(t: dict) -> str:
    if not t["streamed"]:
        return f"total    {t['files']} files, none streamed"
    accuracy = ("no labels in the folder names" if t["accuracy"] is None else
                f"accuracy {100 * t['accuracy']:.2f} % ({t['correct']} of {t['labelled']} labelled by their folder; "
                "the model's window, as evsim run)")
    return (f"total    {t['streamed']} of {t['files']} files streamed: {accuracy}; "
            f"per file over the whole recording, {t['synops_per_file']:,.0f} synops and "
            f"{t['input_events_per_file']:,.0f} input events on average")


# --- the command --------------------------------------------------------------------------


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files as given; a folder becomes its event files (every supported suffix, recursively, sorted)."""
    from evsim.datasets.formats import READERS

    files = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in READERS)
            if not found:
                raise DataError(f"no event files ({', '.join(sorted(READERS))}) in this folder", item)
            files.extend(found)
        else:
            files.append(item)
    return files


def run(args) -> int:
    from evsim.datasets.live import is_stream_address
    from evsim.runtime.load import load

    options = dict(every_us=args.every * 1000.0, crop=args.crop, downsample=args.downsample,
                   chunk_events=args.chunk_events, keep_timeline=args.json, mode=args.mode)
    addresses = [item for item in args.files if is_stream_address(item)]
    if addresses:
        if len(args.files) > 1:
            raise InputError("a live stream (tcp://HOST:PORT) streams alone: give one address and no files")
        if args.cluster:
            raise InputError("--cluster streams files; a live stream runs here")
        return _run_live(addresses[0], args, options)
    files = expand_inputs(args.files)
    if args.cluster:
        return _run_on_cluster(files, args, options)
    if len(files) == 1:
        return _run_one(files[0], load(args.model), args, options)
    return _run_many(files, args, options)


def _run_one(path: Path, network, args, options) -> int:
    def header() -> None:
        print(f"stream {path} through {args.model}")
        print(f"{'time':>12}  (every {args.every:g} ms of recording time)", flush=True)

    def point(p: dict) -> None:
        print(format_point(p), flush=True)

    from evsim.runtime.streaming import stream_file

    report = stream_file(path, network, on_start=None if args.json else header,
                         on_point=None if args.json else point, **options)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    sys.stdout.flush()
    if "error" in report:
        raise DataError(report["error"])
    return 130 if report["interrupted"] else 0


def _run_live(address: str, args, options) -> int:
    """A live stream: the read-outs as they come, the summary at the end, exit 0 when the server
    closed the stream, 1 when the connection was lost, 130 on Ctrl-C."""
    from evsim.datasets.live import LiveStream
    from evsim.runtime.load import load
    from evsim.runtime.streaming import stream_file, tonic_transforms, warm_up

    max_lag_us = None if args.max_lag is None else args.max_lag * 1000.0
    network = load(args.model)
    # everything slow comes before the connection: dv's reader drops what it holds unread when
    # the server closes, and a long import or kernel load holds the GIL from the receiving thread
    warm_up(network, args.mode)
    if args.crop is not None or args.downsample is not None:
        tonic_transforms()
    source = LiveStream(address, timeout_s=args.timeout, max_lag_us=max_lag_us)

    def header() -> None:
        print(f"stream {address} ({source.camera}, {source.sensor_size[0]} x {source.sensor_size[1]}) "
              f"through {args.model}; "
              + ("every event kept" if max_lag_us is None else f"events more than {args.max_lag:g} ms behind dropped"))
        print(f"{'time':>12}  (every {args.every:g} ms of stream time; lag: the newest event received "
              "minus the newest processed)", flush=True)

    def point(p: dict) -> None:
        print(format_point(p, options["every_us"]), flush=True)

    report = stream_file(source, network, on_start=None if args.json else header,
                         on_point=None if args.json else point, **options)
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    if "error" in report:
        print(f"evsim stream: error: {report['error']}", file=sys.stderr)
        return 1
    return 130 if report["interrupted"] else 0


_worker_network = None


def _init_worker(model_path: str) -> None:
    global _worker_network
    from evsim.runtime.load import load
    from evsim.runtime.streaming import Stop

    # Ctrl-C reaches the whole process group: an idle worker must not die of it (a streaming
    # one stops between chunks and returns what it has, see Stop).
    Stop.in_this_worker()
    _worker_network = load(model_path)


def _stream_in_worker(path: str, options: dict) -> dict:
    from evsim.runtime.streaming import stream_report

    return stream_report(path, _worker_network, **options)


def _run_many(files: list[Path], args, options) -> int:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    from evsim.runtime.load import load

    load(args.model)  # a bad model is one error here, not one per file in the workers
    reports: list[dict | None] = [None] * len(files)
    printed = 0
    interrupted = False
    with ProcessPoolExecutor(max_workers=args.workers, initializer=_init_worker,
                             initargs=(str(args.model),)) as pool:
        futures = [pool.submit(_stream_in_worker, str(path), options) for path in files]
        index = {future: i for i, future in enumerate(futures)}
        with tqdm(total=len(files), unit="file", file=sys.stderr, disable=True if args.no_progress else None) as bar:
            try:
                for future in as_completed(futures):
                    reports[index[future]] = future.result()
                    bar.update()
                    while not args.json and printed < len(files) and reports[printed] is not None:
                        bar.write(format_row(reports[printed]), file=sys.stdout)
                        printed += 1
            except KeyboardInterrupt:
                interrupted = True
                for future in futures:
                    future.cancel()
                for i, future in enumerate(futures):
                    if reports[i] is None:
                        reports[i] = (future.result() if not future.cancelled()
                                      else {"file": str(files[i]), "interrupted": True})
    return _finish(reports, printed, interrupted, args)


def _run_on_cluster(files: list[Path], args, options) -> int:
    from tqdm import tqdm

    from evsim.runtime.cluster import stream_on_cluster
    from evsim.runtime.load import load

    # one thread per task: a file streams on one thread, and Ray runs a task on every CPU
    reports = stream_on_cluster(load(args.model), files, args.cluster, options, threads=1)
    done: list[dict] = []
    interrupted = False
    with tqdm(total=len(files), unit="file", file=sys.stderr, disable=True if args.no_progress else None) as bar:
        try:
            for report in reports:  # in file order
                done.append(report)
                bar.update()
                if not args.json:
                    bar.write(format_row(report), file=sys.stdout)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            reports.close()
    printed = 0 if args.json else len(done)
    done += [{"file": str(path), "interrupted": True} for path in files[len(done):]]
    return _finish(done, printed, interrupted, args)


def _finish(reports: list[dict], printed: int, interrupted: bool, args) -> int:
    """The rows not printed yet (or the JSON object), the errors, and the exit status."""
    summary = totals(reports)
    if args.json:
        print(json.dumps({"model": str(args.model), "files": reports, "totals": summary, "interrupted": interrupted}))
    else:
        for report in reports[printed:]:
            print(format_row(report))
        print(format_totals(summary))
    errors = [r["error"] for r in reports if r.get("error")]
    for message in errors:  # once each, here; the file's row points below
        print(f"evsim stream: error: {message}", file=sys.stderr)
    if errors:
        return 2
    return 130 if interrupted or any(r.get("interrupted") for r in reports) else 0


def description() -> str:
    from evsim.datasets.formats import supported_formats

    return ("Feed event recordings chunk by chunk through a model and report the running "
            "prediction, the time it became stable, the work done and the speed relative to real time. "
            "Step mode (default) bins the events into the model's time steps as they arrive and runs each "
            "step when its bin closes: over the model's window the result is exactly evsim run's. "
            "Async mode runs in continuous time. "
            f"Formats: {supported_formats()}. Times are recording time: the first event's timestamp is subtracted.")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "stream",
        help="stream event recordings through a model, as they play",
        description=description,
    )
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="event files, or folders whose event files are all streamed (in parallel), "
                             "or one live AEDAT 4.0 stream tcp://HOST:PORT (DV's network output; needs evsim[live])")
    parser.add_argument("--model", required=True, help="model file (.npz) or bundled model name")
    parser.add_argument("--every", type=positive_float, default=DEFAULT_EVERY_MS, metavar="MS",
                        help=f"read the prediction out every MS ms of recording time (default {DEFAULT_EVERY_MS:g})")
    parser.add_argument("--mode", choices=("step", "async"), default="step",
                        help="step: the trained time steps, exact (default); async: continuous time")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar over several files (it goes to stderr)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--crop", type=positive_int, nargs=2, metavar=("W", "H"),
                      help="keep the central W x H pixels (must be the model's input size)")
    size.add_argument("--downsample", type=scale_factor, metavar="F",
                      help="scale pixel coordinates by F (0 < F <= 1), centred in the model's input; "
                           "with --crop, only for recordings whose sensor is not the model's")
    parser.add_argument("--chunk-events", type=positive_int, default=65536, metavar="N",
                        help="events decoded per chunk (memory bound; results do not depend on it)")
    parser.add_argument("--workers", type=positive_int, default=DEFAULT_WORKERS, metavar="N",
                        help=f"worker processes for several files (default {DEFAULT_WORKERS})")
    parser.add_argument("--cluster", metavar="ADDRESS",
                        help="stream the files on a Ray cluster instead, every node reading them under the same "
                             "path: local (Ray started here) or the head's HOST:PORT, ray://HOST:PORT or auto "
                             "(needs evsim[cluster])")
    live = parser.add_argument_group("live streams (tcp://HOST:PORT)")
    live.add_argument("--max-lag", type=non_negative_float, metavar="MS",
                      help="drop the oldest unprocessed events when the engine falls more than MS ms of "
                           "stream time behind (default: keep every event; the lag grows)")
    live.add_argument("--timeout", type=positive_float, default=10.0, metavar="S",
                      help="take the connection as lost after S s without an event (default 10)")
    parser.set_defaults(func=run)
