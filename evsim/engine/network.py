"""The engine's entry point: a :class:`Network` of compiled layers built from a model file.

:meth:`Network.run` simulates one input in step mode (evsim.engine.step, equal to the dense
forward) or in continuous time (evsim.engine.asynchronous); :meth:`Network.run_many` runs many on
threads (the kernels release the GIL), in step mode as compiled batches (:meth:`Network.run_batch`,
evsim.engine.batch) with the same results.
"""

from __future__ import annotations

import os
import queue
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evsim.engine.asynchronous import Stream, input_window_us, step_width_us
from evsim.engine.batch import BatchPlan, BatchWorkspace, run_batch
from evsim.engine.counting import RunResult
from evsim.engine.layers import compile_layer
from evsim.engine.step import StepStream, Workspace, leak_table, run_steps
from evsim.errors import InputError, ModelError
from evsim.events import (
    SpikeEvents,
    WindowCounts,
    check_has_spikes,
    check_spike_train,
    check_spike_values,
    check_window_used,
    time_bins,
    timed_spike_train,
    to_spike_events,
    warn_if_crowded,
    window_events,
)
from evsim.model.file import load_model, model_path
from evsim.model.encoding import Encoding
from evsim.model.graph import Graph
from evsim.model.names import Mode


class Network:
    """A trained spiking network ready for event-driven simulation."""

    def __init__(self, graph: Graph, weights: dict[str, np.ndarray], dtype=np.float32, name: str = "",
                 read_file=None):
        if graph.meta.get("ann"):  # its weights would run with spiking dynamics they were never trained for
            raise ModelError(f"{name or 'this model'} is an ANN (evsim train --ann), not a spiking network: "
                             "convert it first (evsim convert --model ANN --out SNN.npz)")
        self.graph = graph
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ModelError(f"the engine runs in float32 or float64, not {self.dtype}")
        self.name = name
        # path -> (events, sensor size): how run() reads a file path. The readers lie above the
        # engine (evsim.datasets), so the caller hands one in; evsim.load does.
        self.read_file = read_file
        self.weights = weights  # as trained, keyed by the graph's weight names (for the dense reference)
        self.layers = [compile_layer(graph, pop, weights, self.dtype) for pop in graph.populations]
        self.timesteps = graph.timesteps
        # free workspaces, shared by every thread: a thread pool that comes and goes with each
        # run_many finds the ones the last pool allocated (tens of MB each, page-faulted on first use)
        self._workspaces: queue.SimpleQueue = queue.SimpleQueue()
        self._leak_tables = [leak_table(layer, self.timesteps, self.dtype) for layer in self.layers]
        self._batch_plan: BatchPlan | None = None
        self._batch_workspaces: queue.SimpleQueue = queue.SimpleQueue()

    @classmethod
    def from_file(cls, path_or_name, dtype=np.float32, read_file=None) -> "Network":
        """The model in a file, given as a path or as a bundled model's name (``evsim.load`` gives
        one that also reads event files)."""
        path = model_path(path_or_name)
        model = load_model(path)
        return cls(model.graph, model.weights, dtype=dtype, name=path.stem, read_file=read_file)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.graph.input_shape

    @property
    def encoding(self) -> Encoding:
        return self.graph.encoding

    def __repr__(self) -> str:
        body = ", ".join(f"{l.name}:{l.neuron.kind}{list(l.shape)}" for l in self.layers)
        return f"Network({self.name or 'unnamed'}; input {list(self.input_shape)}; T={self.timesteps}; {body})"

    def take_workspace(self) -> Workspace:
        """A step-mode workspace (T steps) that no one else holds until :meth:`give_back_workspace`."""
        try:
            return self._workspaces.get_nowait()
        except queue.Empty:
            return Workspace.allocate(self.layers, self.timesteps, self.dtype)

    def give_back_workspace(self, ws: Workspace) -> None:
        self._workspaces.put(ws)

    @contextmanager
    def workspace(self):
        """A step-mode workspace no other thread holds until the ``with`` block ends."""
        ws = self.take_workspace()
        try:
            yield ws
        finally:
            self.give_back_workspace(ws)

    def encode(self, inputs, origin_us: int | None = None) -> SpikeEvents:
        """Validate and convert an input (events, binned events, spike train) to input events."""
        return to_spike_events(inputs, self.input_shape, self.timesteps, self.encoding, self.dtype, origin_us)

    def run(self, inputs, mode: str = "step", record_spikes: bool = False, origin_us: int | None = None):
        """Simulate one input event-driven; return prediction, output and counters.

        ``inputs`` is an event file path, a structured event array (tonic's ``x, y, t, p``),
        :class:`~evsim.events.BinnedEvents`, or a spike train ``[T, C, H, W]`` as a numpy array
        or a tensor (anything with ``.detach()``, e.g. torch); a batch ``[T, B, C, H, W]`` returns
        a list of results, one per sample. Events pass through the model's input window: time
        starts at the first event unless ``origin_us`` is given, and ``result.window`` says how
        many events were read, used and dropped (a sample with none inside is an InputError).

        ``mode="step"`` runs in time steps, the dense model's semantics (its result equals the
        dense forward); ``mode="async"`` runs in continuous time (evsim.engine.asynchronous). With
        ``record_spikes`` (step mode only) the result also holds every layer's per-neuron spike
        counts in the graph's ``(C, H, W)`` layout (``result.spike_counts``).
        """
        mode = Mode.of(mode, "mode")
        if record_spikes and mode != "step":
            raise InputError("record_spikes=True works in step mode only: the asynchronous engine counts "
                             "spikes per layer (result.per_layer), not per neuron")
        if isinstance(inputs, (list, tuple)) and not is_labelled_sample(inputs):
            return [self.run(x, mode, record_spikes, origin_us) for x in inputs]
        inputs = as_input(inputs, self.read_file)
        if isinstance(inputs, np.ndarray) and inputs.dtype.names is None and inputs.ndim == 5:
            check_batch(inputs, self.timesteps)
            return [self.run(inputs[:, b], mode, record_spikes, origin_us) for b in range(inputs.shape[1])]
        if mode == "async":
            return self._run_async(inputs, origin_us)
        events = self.encode(inputs, origin_us)
        with self.workspace() as ws:
            result = run_steps(self.layers, self._leak_tables, ws, events, self.timesteps, record_spikes)
        result.window = events.window
        return result

    def _run_async(self, inputs, origin_us: int | None) -> RunResult:
        """One input in continuous time over the model's window, read out at the window's end."""
        stream = Stream(self)
        window_us = input_window_us(self)
        if isinstance(inputs, np.ndarray) and inputs.dtype.names is not None:
            inside, counts = window_events(inputs, window_us, origin_us)
            check_window_used(counts, window_us)
            warn_if_crowded(time_bins(inside["t"], self.timesteps, int(window_us)), self.timesteps)
            stream.feed(inside, flush=True)
        elif isinstance(inputs, np.ndarray):
            check_spike_train(inputs, self.input_shape, self.timesteps)
            check_spike_values(inputs, self.encoding)
            timed = timed_spike_train(inputs, step_width_us(self), self.dtype)
            check_has_spikes(len(timed))
            counts = WindowCounts.untimed(len(timed))
            stream.feed(timed, flush=True)
        else:
            raise InputError("asynchronous mode needs timestamped events or a dense spike train, "
                             f"not {type(inputs).__name__}")
        result = stream.result(at_us=window_us)
        result.window = counts
        return result

    def stream(self, mode: str = "step", **options):
        """A stream to :meth:`feed <StepStream.feed>` events chunk by chunk as they arrive:
        a :class:`~evsim.engine.step.StepStream` (``mode="step"``, the trained network's time
        steps, exactly :meth:`run`'s step mode) or an asynchronous
        :class:`~evsim.engine.asynchronous.Stream` (``mode="async"``, continuous time). Both are
        read the same way: ``feed`` (with ``hold`` and ``end_us`` for read-outs between chunks),
        ``advance_to``, ``output``, ``finish``, ``window_result``, ``facts``."""
        return {Mode.STEP: StepStream, Mode.ASYNC: Stream}[Mode.of(mode, "mode")](self, **options)

    def run_batch(self, inputs, workers: int = 2) -> list[RunResult]:
        """Step mode for a list of inputs in one compiled call (evsim.engine.batch): the inputs
        spread over ``workers`` of Numba's threads, no Python per input or layer. The results
        equal :meth:`run`'s, in input order."""
        return self._run_encoded([self.encode(as_input(x, self.read_file)) for x in inputs], workers)

    def _run_encoded(self, events: list[SpikeEvents], workers: int) -> list[RunResult]:
        if self._batch_plan is None:
            self._batch_plan = BatchPlan.build(self.layers, self._leak_tables, self.timesteps, self.dtype)
        try:
            ws = self._batch_workspaces.get_nowait()
        except queue.Empty:
            ws = None
        if ws is None or ws.workers < workers:
            ws = BatchWorkspace.allocate(self._batch_plan, workers, self.timesteps, self.dtype)
        try:
            return run_batch(self._batch_plan, ws, self.layers, events, self.timesteps)
        finally:
            self._batch_workspaces.put(ws)

    def run_many(self, inputs, workers: int = 2, mode: str = "step", progress=None):
        """Run an iterable of inputs on ``workers`` threads (the kernels release the GIL).

        Yields RunResults in input order. ``progress`` is called once per finished input. Step
        mode runs the inputs in batches of :meth:`run_batch` (``16 * workers`` at a time).
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be a positive whole number, got {workers!r}")
        if mode == "step":
            yield from self._run_batches(inputs, workers, progress)
            return
        if workers == 1:
            for x in inputs:
                result = self.run(x, mode=mode)
                if progress:
                    progress()
                yield result
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = []
            for x in inputs:
                pending.append(pool.submit(self.run, x, mode))
                if len(pending) >= 4 * workers:
                    result = pending.pop(0).result()
                    if progress:
                        progress()
                    yield result
            for future in pending:
                result = future.result()
                if progress:
                    progress()
                yield result

    def _run_batches(self, inputs, workers: int, progress):
        """Step mode in batches of ``16 * workers``: with several workers, each batch is read and
        encoded here while the one before runs on the worker threads (its kernels hold no GIL);
        with one, everything runs on the calling thread."""
        if workers == 1:
            for events, alone in self._encoded_batches(inputs, 16):
                yield from self._finish(self._run_encoded(events, 1), progress)
                if alone is not None:
                    yield from self._finish([self.run(alone)], progress)
            return
        with ThreadPoolExecutor(max_workers=1) as runner:
            running = None
            for events, alone in self._encoded_batches(inputs, 16 * workers):
                upcoming = runner.submit(self._run_encoded, events, workers)
                if running is not None:
                    yield from self._finish(running.result(), progress)
                running = None
                if alone is not None:  # a batch [T, B, C, H, W] given as one input: run() gives a list
                    yield from self._finish(upcoming.result(), progress)
                    yield from self._finish([self.run(alone)], progress)
                else:
                    running = upcoming
            if running is not None:
                yield from self._finish(running.result(), progress)

    def _encoded_batches(self, inputs, size: int):
        """``(events, None)`` per ``size`` inputs, and ``(events before, x)`` at an input ``x`` that
        is itself a batch."""
        batch = []
        for x in inputs:
            x = as_input(x, self.read_file)
            if isinstance(x, np.ndarray) and x.dtype.names is None and x.ndim == 5:
                yield batch, x
                batch = []
                continue
            batch.append(self.encode(x))
            if len(batch) == size:
                yield batch, None
                batch = []
        if batch:
            yield batch, None

    @staticmethod
    def _finish(results, progress):
        for result in results:
            if progress:
                progress()
            yield result


def is_labelled_sample(inputs) -> bool:
    """tonic's ``(events, label)``: a dataset item, of which the events are the input."""
    return (isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], np.ndarray)
            and inputs[0].dtype.names is not None and np.ndim(inputs[1]) == 0)


def check_batch(batch: np.ndarray, timesteps: int) -> None:
    """A batch is time first, ``[T, B, C, H, W]`` (snntorch, norse); say so for a batch-first one,
    and refuse a sample with no spike by its position."""
    if batch.shape[0] != timesteps:
        hint = (" It looks batch-first [B, T, C, H, W]: pass x.transpose(0, 1) (torch) or np.swapaxes(x, 0, 1)."
                if batch.shape[1] == timesteps else "")
        raise InputError(f"a batch must be [T, B, C, H, W] with T={timesteps} first; got shape {tuple(batch.shape)}.{hint}")
    empty = np.flatnonzero(~batch.reshape(batch.shape[0], batch.shape[1], -1).any(axis=(0, 2)))
    if len(empty):
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        raise InputError(f"sample{'s' if len(empty) > 1 else ''} {shown} of the batch hold{'' if len(empty) > 1 else 's'} "
                         "no spikes (all zero): there is nothing to classify")


def as_input(inputs, read_file=None):
    """An input in a form the engine takes: a file's events (through ``read_file``, see
    :class:`Network`), or a tensor as a numpy array.

    Tensors are recognised by their ``detach`` method, so that the engine never imports torch.
    """
    if is_labelled_sample(inputs):
        inputs = inputs[0]
    if isinstance(inputs, (str, os.PathLike)):
        if read_file is None:
            raise InputError(f"cannot read {inputs}: this Network was built without an event file reader; "
                             "evsim.load(model) gives one that reads event files, or pass the events "
                             "(evsim.datasets.formats.read_events)")
        events, _ = read_file(inputs)
        return events
    if hasattr(inputs, "detach") and hasattr(inputs, "cpu"):
        return inputs.detach().cpu().numpy()
    return inputs
