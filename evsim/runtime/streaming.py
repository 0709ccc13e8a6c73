"""Streaming a recording through a model as it plays: the pipeline behind ``evsim stream``.

The file is decoded chunk by chunk (evsim.datasets.formats) and fed to a stream of the engine, so
a recording of any length runs in constant memory: in step mode (the default) a
evsim.engine.step.StepStream, the trained network's time steps, whose first window is exactly
``evsim run``'s step mode; in asynchronous mode an evsim.engine.asynchronous.Stream, continuous
time. Every ``every_us`` of recording time the running prediction and its margin (top output minus
the second) are read out; at the end come the final prediction, the time from which it never
changed, the counters and the speed relative to real time.

Times are recording time: the first event's timestamp is subtracted (AEDAT4 stamps are Unix-epoch
µs, Prophesee ones count from the camera's start). A read-out at time ``m`` includes every event
before ``m`` and none after (in step mode: every step that ends by ``m``): the engine is flushed at
each read-out time, which no event straddles, so the results do not depend on ``chunk_events``.
"""

from __future__ import annotations

import signal
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from evsim.datasets.formats import open_event_file
from evsim.errors import DataError, EvsimError, InputError, require
from evsim.events import make_events, sensor_size
from evsim.model.names import Mode
from evsim.engine.asynchronous import Stream, input_window_us
from evsim.engine.step import StepStream

MODES = tuple(Mode)


def recording_stream(network, mode: str):
    """The stream of ``network`` in ``mode`` for a recording in recording time (its first event
    read is 0: the step bins start there, though a crop may drop that event). Both modes' streams
    are read the same way: ``feed(chunk, hold=True, end_us=...)``, ``advance_to``, ``output``,
    ``finish``, ``window_result``, ``facts``."""
    return StepStream(network, origin_us=0) if Mode.of(mode, "mode") == Mode.STEP else Stream(network)


def tonic_transforms():
    # imports torch: only when a transform is asked for
    return require("tonic.transforms", "data", "--crop and --downsample")


@dataclass(frozen=True)
class InputFit:
    """How a recording's pixels are brought to the model's input: a per-event transform."""

    transform: object  # callable on an event array, or None
    description: str


def model_sensor_size(network) -> tuple[int, int, int]:
    """The (width, height, polarities) the model takes: its encoding's, else its input shape's."""
    size = network.encoding.sensor_size
    if size:
        return size
    return sensor_size(network.input_shape)


def fit_input(sensor_size, model_size, crop=None, downsample=None) -> InputFit:
    """The transform that maps events of ``sensor_size`` onto ``model_size`` (both (W, H, P)).

    ``crop`` (W, H) keeps the central W x H pixels (tonic.transforms.CenterCrop); ``downsample``
    F scales the coordinates by F (tonic.transforms.Downsample) and centres the result in the
    model's input. Both act on each event alone, with no state, so chunking cannot change them.
    """
    width, height, polarities = (int(s) for s in sensor_size)
    model_w, model_h, model_p = model_size
    if polarities != model_p:
        raise InputError(f"the recording has {polarities} polarities, the model takes {model_p} input channels")
    if crop is not None and downsample is not None:
        raise InputError("use --crop or --downsample, not both")
    if (width, height) == (model_w, model_h):
        # a recording that fits is left as it is, whatever --crop/--downsample say for the others
        asked = " (--crop/--downsample left it as it is)" if crop is not None or downsample is not None else ""
        return InputFit(None, f"the sensor matches the model's input{asked}")
    if crop is not None or downsample is not None:
        T = tonic_transforms()
    if crop is not None:
        crop_w, crop_h = crop
        if (crop_w, crop_h) != (model_w, model_h):
            raise InputError(f"--crop {crop_w} {crop_h} does not give the model's {model_w} x {model_h} input; "
                             f"use --crop {model_w} {model_h}")
        transform = T.CenterCrop(sensor_size=(width, height, polarities), size=(crop_w, crop_h))
        return InputFit(transform, f"--crop: the central {crop_w} x {crop_h} of the {width} x {height} sensor")
    if downsample is not None:
        if not 0 < downsample <= 1:
            raise InputError(f"--downsample must be in (0, 1], got {downsample}")
        # The size exactly as tonic computes coordinates: int16(x * F) for the largest x.
        corner = T.Downsample(spatial_factor=downsample)(make_events([width - 1], [height - 1], [0], [False]))
        down_w, down_h = int(corner["x"][0]) + 1, int(corner["y"][0]) + 1
        if down_w > model_w or down_h > model_h:
            factor = min(model_w / width, model_h / height)
            raise InputError(f"--downsample {downsample} turns the {width} x {height} sensor into "
                             f"{down_w} x {down_h}, larger than the model's {model_w} x {model_h}; "
                             f"use a factor of at most {factor:.4g}")
        scale = T.Downsample(spatial_factor=downsample)
        centre = T.CenterCrop(sensor_size=(down_w, down_h, polarities), size=(model_w, model_h))
        return InputFit(T.Compose([scale, centre]),
                        f"--downsample {downsample}: {width} x {height} -> {down_w} x {down_h}, "
                        f"centred in the model's {model_w} x {model_h}")
    raise InputError(
        f"the recording's sensor is {width} x {height} but the model takes {model_w} x {model_h}: "
        f"pass --crop {model_w} {model_h} to keep the central pixels, or --downsample F to scale "
        f"the coordinates by F (at most {min(model_w / width, model_h / height):.4g} here); "
        "the result is centred in the model's input"
    )


def read_out(output: np.ndarray) -> tuple[int | None, float]:
    """The prediction (None while nothing reached the output) and its margin over the runner-up."""
    if not np.any(output):
        return None, 0.0
    top_two = np.sort(output)[-2:] if len(output) > 1 else np.r_[0.0, output]
    return int(np.argmax(output)), float(top_two[-1] - top_two[0])


class Timeline:
    """The read-outs so far and the time since which the prediction has not changed.

    The decision time is tracked as the read-outs come, so that only ``--json`` (which prints
    every read-out) keeps them: the text mode streams in constant memory however long the
    recording.
    """

    def __init__(self, keep: bool):
        self.points: list[dict] | None = [] if keep else None
        self.last: dict | None = None
        self.stable_since: float | None = None

    def add(self, point: dict) -> None:
        if self.last is None or point["prediction"] != self.last["prediction"]:
            self.stable_since = point["time_us"]
        self.last = point
        if self.points is not None:
            self.points.append(point)


_warm: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # network -> the modes warm_up ran


def warm_up(network, mode: str = "step") -> None:
    """Stream a burst of synthetic events through a throwaway stream the way :func:`stream_file`
    feeds a recording (several chunks, read-outs between them, every layer firing), so that
    compiling or loading every kernel it calls (once per process) is not timed as processing.
    Once per network and mode."""
    if mode in _warm.setdefault(network, set()):
        return
    _warm[network].add(mode)
    width, height, polarities = model_sensor_size(network)
    stream = recording_stream(network, mode)
    window_us = input_window_us(network)
    x, y, p = np.meshgrid(np.arange(width), np.arange(height), np.arange(polarities), indexing="ij")
    times = np.linspace(0, window_us, 9)[:-1].astype(np.int64)  # every pixel fires at 8 times
    events = make_events(np.tile(x.ravel(), len(times)), np.tile(y.ravel(), len(times)),
                         np.repeat(times, x.size), np.tile(p.ravel(), len(times)).astype(bool))
    half = len(events) // 2
    mark = float(times[len(times) // 2])
    for chunk in (events[:half], events[half:]):
        stream.feed(chunk, hold=True, end_us=int(chunk["t"][-1]))
        stream.advance_to(mark)
        stream.output()
    stream.finish(int(times[-1]))
    stream.window_result(allow_empty=True)


class Stop:
    """Set by Ctrl-C while a file streams: the stream stops between two chunks, so that the
    partial result is that of a whole prefix of the recording (a KeyboardInterrupt could strike
    between two layers of one chunk), and a worker process returns it instead of dying."""

    requested = False
    in_worker = False

    @staticmethod
    def request(*_) -> None:
        Stop.requested = True

    @staticmethod
    def in_this_worker() -> None:
        """In a worker process of a pool: Ctrl-C, which reaches the whole process group, stops
        the file streaming now between two chunks, and the worker streams nothing more."""
        signal.signal(signal.SIGINT, Stop.request)
        Stop.in_worker = True


@contextmanager
def _ctrl_c_stops_between_chunks():
    if not Stop.in_worker:  # a worker, once told to stop, streams nothing more
        Stop.requested = False
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals; a KeyboardInterrupt is caught as such
        return
    previous = signal.signal(signal.SIGINT, Stop.request)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stream_file(source, network, every_us: float, crop=None, downsample=None, chunk_events: int = 65536,
                on_start=None, on_point=None, keep_timeline: bool = True, mode: str = "step") -> dict:
    """Stream one file through ``network`` in ``mode`` (step or async); the report, partial if
    interrupted or damaged.

    ``source`` is a file's path, or a source already opened: an EventFile, or a live stream
    (evsim.datasets.live.LiveStream), whose counts (received, processed, dropped, lag) then join
    every read-out and the report's ``live``.

    ``on_start()`` is called once the file and its fit to the model are checked, before the
    first event; ``on_point(point)`` with each read-out as it happens; the report's ``timeline``
    lists them all unless ``keep_timeline`` is False (then it is None). Errors found before
    any event is read (format, sensor size) raise; a DataError met while streaming ends the
    stream and is returned in the report's ``error`` with what was processed up to it. The
    report's ``window`` holds the model's input window alone (evsim.events.window_events: from the
    first event, the model's ``window_us``): exactly ``evsim run``'s (``Network.run``'s)
    prediction and counters for this recording in the same mode; the top-level figures cover
    the whole recording.
    """
    mode = Mode.of(mode, "mode")
    event_file = open_event_file(source) if isinstance(source, (str, PurePath)) else source
    live = getattr(event_file, "progress", None)
    model_size = model_sensor_size(network)
    fit = fit_input(event_file.sensor_size, model_size, crop, downsample)
    warm_up(network, mode)
    if on_start is not None:
        on_start()
    started = time.perf_counter()
    stream = recording_stream(network, mode)
    run = _Run(stream, Timeline(keep_timeline), on_point, every_us, live)
    with _ctrl_c_stops_between_chunks():
        try:
            for chunk in event_file.chunks(chunk_events):
                if Stop.requested:
                    run.interrupted = True
                    break
                if len(chunk):  # a live source yields empty chunks while it waits
                    run.play(chunk, fit.transform)
        except KeyboardInterrupt:
            run.interrupted = True
        except DataError as exc:
            run.error = exc
    result = stream.finish(run.end_us if run.origin is not None else None)
    if run.origin is not None and (run.timeline.last is None or run.timeline.last["time_us"] < run.end_us):
        run.mark(float(run.end_us), result.output)
    wall = time.perf_counter() - started
    prediction, margin = read_out(result.output)
    report = {
        "file": str(event_file.path),
        "mode": mode,
        "format": event_file.format,
        "sensor_size": list(event_file.sensor_size),
        "sensor_size_from": event_file.sensor_size_from,
        "model_input": list(model_size),
        "input_fit": fit.description,
        "time_origin_us": run.origin,
        "duration_us": run.end_us,
        "events": run.events_read,
        "input_events": result.input_events,
        "prediction": prediction,
        "margin": margin,
        "decision_time_us": run.timeline.stable_since,
        **_layer_counts(result),
        "wall_s": wall,
        "realtime_factor": run.end_us * 1e-6 / wall if run.end_us > 0 and wall > 0 else None,
        "timeline": run.timeline.points,
        "interrupted": run.interrupted,
        **stream.facts(),
    }
    window = stream.window_result(allow_empty=True)
    if window is not None:
        report["window"] = _counts(window)
    if live is not None:
        report["live"] = {**live(), "camera": event_file.camera, "end": event_file.end}
    if run.error is not None:
        report["error"] = str(run.error)
    return report


class _Run:
    """A recording as it plays through a stream: its clock, read-out times and timeline."""

    def __init__(self, stream, timeline: Timeline, on_point, every_us: float, progress=None):
        self.stream = stream  # either mode (recording_stream), read the same way
        self.timeline = timeline
        self.on_point = on_point
        self.progress = progress  # a live source's counts, added to every read-out
        self.every_us = every_us
        self.next_mark = every_us
        self.origin: int | None = None
        self.end_us = 0
        self.events_read = 0
        self.interrupted = False
        self.error: DataError | None = None

    def play(self, chunk: np.ndarray, transform) -> None:
        """One chunk: fed in recording time, then read out at every mark it passes."""
        stream = self.stream
        if self.origin is None:
            self.origin = int(chunk["t"][0])
        chunk = chunk.copy()
        chunk["t"] -= self.origin  # recording time (the first event read is 0), before any crop
        read, chunk_end_us = len(chunk), int(chunk["t"][-1])
        if transform is not None:
            chunk = transform(chunk)
        stream.feed(chunk, hold=True, end_us=chunk_end_us)
        while self.next_mark <= chunk_end_us:
            stream.advance_to(self.next_mark)
            self.mark(self.next_mark)
            self.next_mark += self.every_us
        self.events_read, self.end_us = self.events_read + read, chunk_end_us

    def mark(self, at_us: float, output=None) -> None:
        prediction, margin = read_out(self.stream.output() if output is None else output)
        point = {"time_us": at_us, "prediction": prediction, "margin": margin}
        if self.progress is not None:
            point.update(self.progress())
        self.timeline.add(point)
        if self.on_point is not None:
            self.on_point(point)


def stream_report(path, network, **options) -> dict:
    """:func:`stream_file`'s report, or for a file that cannot be streamed ``{"file", "error"}``:
    how one file of many fails, without stopping the others."""
    try:
        return stream_file(path, network, **options)
    except EvsimError as exc:
        return {"file": str(path), "error": str(exc)}


def _counts(result) -> dict:
    """A result's prediction and counters, as the report gives them."""
    prediction, margin = read_out(result.output)
    return {"prediction": prediction, "margin": margin, "input_events": result.input_events, **_layer_counts(result)}


def _layer_counts(result) -> dict:
    return {
        "synops": result.synops,
        "spikes": result.spikes,
        "spikes_per_layer": {layer.name: layer.spikes for layer in result.layers if layer.neuron.kind != "output"},
        "synops_per_layer": {layer.name: layer.synops for layer in result.layers},
    }
