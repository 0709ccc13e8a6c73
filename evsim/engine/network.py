"""The engine's entry point: a :class:`Network` of compiled layers built from a model file.

:meth:`Network.run` simulates one input in step mode (evsim.engine.step, equal to the dense
forward) or in continuous time (evsim.engine.asynchronous); :meth:`Network.run_many` runs many on
threads (the kernels release the GIL).
"""

from __future__ import annotations

import os
import queue
from contextlib import contextmanager
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from evsim.engine.asynchronous import Stream, step_width_us
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
    read_event_file,
    time_bins,
    timed_spike_train,
    to_spike_events,
    warn_if_crowded,
    window_events,
)
from evsim.interop.nir import import_nir
from evsim.model.file import load_model, model_path
from evsim.model.graph import Graph


class Network:
    """A trained spiking network ready for event-driven simulation."""

    def __init__(self, graph: Graph, weights: dict[str, np.ndarray], dtype=np.float32, name: str = ""):
        if graph.meta.get("ann"):  # its weights would run with spiking dynamics they were never trained for
            raise ModelError(f"{name or 'this model'} is an ANN (evsim train --ann), not a spiking network: "
                             "convert it first (evsim convert --model ANN --out SNN.npz)")
        self.graph = graph
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ModelError(f"the engine runs in float32 or float64, not {self.dtype}")
        self.name = name
        self.weights = weights  # as trained, keyed by the graph's weight names (for the dense reference)
        self.layers = [compile_layer(graph, pop, weights, self.dtype) for pop in graph.populations]
        self.timesteps = graph.timesteps
        # free workspaces, shared by every thread: a thread pool that comes and goes with each
        # run_many finds the ones the last pool allocated (tens of MB each, page-faulted on first use)
        self._workspaces: queue.SimpleQueue = queue.SimpleQueue()
        self._leak_tables = [leak_table(layer, self.timesteps, self.dtype) for layer in self.layers]

    @classmethod
    def from_file(cls, path_or_name, dtype=np.float32) -> "Network":
        """The model in a file, given as a path or as a bundled model's name."""
        path = model_path(path_or_name)
        model = load_model(path)
        return cls(model.graph, model.weights, dtype=dtype, name=path.stem)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.graph.input_shape

    @property
    def encoding(self) -> dict:
        return self.graph.encoding

    def __repr__(self) -> str:
        body = ", ".join(f"{l.name}:{l.kind}{list(l.shape)}" for l in self.layers)
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
        if mode not in ("step", "async"):
            raise InputError(f"unknown mode {mode!r}; choose step or async")
        if record_spikes and mode != "step":
            raise InputError("record_spikes=True works in step mode only: the asynchronous engine counts "
                             "spikes per layer (result.per_layer), not per neuron")
        if isinstance(inputs, (list, tuple)) and not is_labelled_sample(inputs):
            return [self.run(x, mode, record_spikes, origin_us) for x in inputs]
        inputs = as_input(inputs)
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
        window_us = step_width_us(self) * self.timesteps
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
        :class:`~evsim.engine.asynchronous.Stream` (``mode="async"``, continuous time)."""
        if mode == "step":
            return StepStream(self, **options)
        if mode == "async":
            return Stream(self, **options)
        raise InputError(f"unknown mode {mode!r}; choose step or async")

    def run_many(self, inputs, workers: int = 2, mode: str = "step", progress=None):
        """Run an iterable of inputs on ``workers`` threads (the kernels release the GIL).

        Yields RunResults in input order. ``progress`` is called once per finished input.
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be a positive whole number, got {workers!r}")
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


def as_input(inputs):
    """An input in a form the engine takes: a file's events, or a tensor as a numpy array.

    Tensors are recognised by their ``detach`` method, so that the engine never imports torch.
    """
    if is_labelled_sample(inputs):
        inputs = inputs[0]
    if isinstance(inputs, (str, os.PathLike)):
        events, _ = read_event_file(inputs)
        return events
    if hasattr(inputs, "detach") and hasattr(inputs, "cpu"):
        return inputs.detach().cpu().numpy()
    return inputs


def load(path_or_name, dtype=np.float32, *, dt_us: int | None = None, timesteps: int | None = None,
         semantics: str = "nir", neuron_dt_s: float | None = None) -> Network:
    """A Network from a model file path, or the name of a model bundled with evsim.

    A ``.nir`` file is imported first (evsim.interop.nir.import_nir): ``dt_us`` and ``timesteps``
    give its input encoding, ``semantics`` whose reading of the neurons to follow.
    """
    if str(path_or_name).lower().endswith(".nir"):
        model = import_nir(path_or_name, dt_us=dt_us, timesteps=timesteps, semantics=semantics,
                           neuron_dt_s=neuron_dt_s)
        return Network(model.graph, model.weights, dtype=dtype, name=Path(path_or_name).stem)
    if (dt_us, timesteps, neuron_dt_s) != (None, None, None) or semantics != "nir":
        raise ModelError("dt_us, timesteps, semantics and neuron_dt_s apply to .nir files only")
    return Network.from_file(path_or_name, dtype=dtype)
