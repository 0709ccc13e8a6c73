"""One stream interface for both modes, so that a caller streams a recording without asking which.

:func:`mode_stream` gives a :class:`StepModeStream` (the trained time steps, an
evsim.engine.step.StepStream) or an :class:`AsyncModeStream` (continuous time, an
evsim.engine.asynchronous.Stream), both read the same way:

- ``feed(chunk, end_us)``: the next chunk of tonic events in recording time (the first event read
  is 0), ``end_us`` its last event's time;
- ``advance_to(t)``: every event before ``t`` has been fed; ``output()`` is then the running
  output at ``t`` (step mode: after every step that ends by ``t``);
- ``finish(end_us)``: the stream has ended (``end_us``: the last event read, None when there was
  none); the result of the whole recording;
- ``window_result()``: the model's input window alone, exactly ``Network.run``'s result in the same
  mode (None in async mode when the recording had no event);
- ``facts()``: what the mode adds to a report.

Read-outs happen at times no event straddles, so results do not depend on how chunks are cut.
"""

from __future__ import annotations

import numpy as np

from evsim.engine.asynchronous import Stream, input_window_us
from evsim.engine.counting import RunResult
from evsim.engine.step import StepStream
from evsim.events import timed_input_events
from evsim.model.names import Mode


def mode_stream(network, mode: str):
    """The stream of ``network`` in ``mode`` (step or async)."""
    return {Mode.STEP: StepModeStream, Mode.ASYNC: AsyncModeStream}[Mode.of(mode, "mode")](network)


class StepModeStream:
    def __init__(self, network):
        self.stream = StepStream(network, origin_us=0)  # times arrive as recording time

    def feed(self, chunk: np.ndarray, end_us: int) -> None:
        self.stream.feed(chunk, hold=True)  # validated and binned once; steps run as marks pass

    def advance_to(self, time_us: float) -> None:
        self.stream.advance_to(time_us)

    def output(self) -> np.ndarray:
        return self.stream.output()

    def finish(self, end_us: int | None) -> RunResult:
        self.stream.flush()
        return self.stream.result(allow_empty=True)

    def window_result(self) -> RunResult:
        return self.stream.window_result(allow_empty=True)

    def facts(self) -> dict:
        return {"steps": self.stream.steps_done}


class AsyncModeStream:
    """An asynchronous Stream fed up to each read-out time: an event at or after a time shows
    that every event before it has arrived. The state at the window's end is taken on the way."""

    def __init__(self, network):
        self.network = network
        self.stream = Stream(network)
        self.window_end_us = input_window_us(network)
        self.window: RunResult | None = None
        self.pending = None  # the current chunk's events not fed yet (TimedEvents)
        self.chunk_end_us = -np.inf
        self.at_us = 0.0

    def feed(self, chunk: np.ndarray, end_us: int) -> None:
        self._settle()
        self.pending = timed_input_events(chunk, self.network.input_shape, self.network.dtype)
        self.chunk_end_us = end_us

    def advance_to(self, time_us: float) -> None:
        if self.window is None and self.window_end_us <= time_us:
            self._take_window()
        self._feed_before(time_us)
        self.at_us = time_us

    def output(self) -> np.ndarray:
        return self.stream.output(self.at_us)

    def finish(self, end_us: int | None) -> RunResult:
        self._settle()
        # read out at the last event read, which a crop may have kept from the network
        result = self.stream.result(at_us=float(end_us) if end_us is not None else None, allow_empty=True)
        if self.window is None and end_us is not None:  # the recording ended inside the window
            self.window = self.stream.result(at_us=self.window_end_us, allow_empty=True)
        return result

    def window_result(self) -> RunResult | None:
        return self.window

    def facts(self) -> dict:
        return {}

    def _feed_before(self, time_us: float) -> None:
        if self.pending is None:
            return
        cut = int(np.searchsorted(self.pending.time, time_us, side="left"))
        self.stream.feed(self.pending[:cut], flush=True)  # every event before time_us is here
        self.pending = self.pending[cut:]

    def _take_window(self) -> None:
        self._feed_before(self.window_end_us)
        self.window = self.stream.result(at_us=self.window_end_us, allow_empty=True)

    def _settle(self) -> None:
        """The chunk's read-outs are done: take the window if the chunk reached its end, and
        feed the rest of the chunk."""
        if self.pending is None:
            return
        if self.window is None and self.window_end_us <= self.chunk_end_us:
            self._take_window()
        self.stream.feed(self.pending)
        self.pending = None
