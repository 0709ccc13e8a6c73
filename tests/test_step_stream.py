"""Step-mode streaming (evsim.engine.step.StepStream, ``evsim stream --mode step``): events binned
into the model's steps as they arrive give exactly ``Network.run``'s step mode, however the
recording is cut into chunks."""

from __future__ import annotations

import inspect
import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evsim.runtime.streaming import stream_file
from evsim.cli.main import main
from evsim.datasets.formats import read_events
from evsim.engine.network import Network
from evsim.runtime.load import load
from evsim.engine.step import StepStream
from random_model import random_nmnist_graph, random_nmnist_weights, save_random_nmnist_model

FILES = ["Test/0/00004.bin", "Test/3/00031.bin", "Test/7/00001.bin", "Test/1/00003.bin"]
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def bundled():
    return load("lenet-nmnist")


@pytest.fixture(scope="module")
def recordings(nmnist_root):
    out = []
    for name in FILES:
        events, _ = read_events(nmnist_root / name)
        events = events.copy()
        events["t"] -= events["t"][0]  # the file's first event is time 0, for run and stream alike
        out.append(events)
    return out


def counts(result):
    return [layer.to_dict() for layer in result.layers], result.input_events


def fed_in_chunks(network, events, cuts) -> StepStream:
    stream = StepStream(network)
    bounds = [0, *sorted(cuts), len(events)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        stream.feed(events[lo:hi])
    stream.flush()
    return stream


@SETTINGS
@given(data=st.data())
def test_step_stream_equals_run_whatever_the_chunks(bundled, recordings, data):
    which = data.draw(st.integers(0, len(recordings) - 1), label="file")
    events = recordings[which]
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=40), label="cuts")
    stream = fed_in_chunks(bundled, events, cuts)
    expected = bundled.run(events, mode="step")
    window = stream.window_result()
    # float32, bundled model: the same operations in the same order, so equal to the last bit
    assert np.array_equal(window.output, expected.output)
    assert counts(window) == counts(expected)


@pytest.mark.parametrize("size", [1, 13, 500, 1 << 20])
def test_fixed_chunk_sizes_on_several_files(bundled, recordings, size):
    for events in recordings:
        stream = fed_in_chunks(bundled, events, range(size, len(events), size))
        expected = bundled.run(events, mode="step")
        assert np.array_equal(stream.window_result().output, expected.output)
        assert counts(stream.window_result()) == counts(expected)
        # recordings end a few ms past the window: the whole-recording result runs those steps too
        assert stream.steps_done > bundled.timesteps
        assert stream.input_events == len(events)


def test_a_recording_shorter_than_the_window_reads_out_at_the_window_end(bundled, recordings):
    events = recordings[0]
    short = events[events["t"] < 120_000]
    stream = fed_in_chunks(bundled, short, [len(short) // 3])
    assert stream.steps_done == 40  # the last partial bin ran, as evsim run runs it
    expected = bundled.run(short, mode="step")
    assert np.array_equal(stream.result().output, expected.output)
    assert counts(stream.result()) == counts(expected)


def test_running_prediction_is_read_at_closed_steps_only(bundled, recordings):
    # advance_to(m) runs exactly the steps that end by m; later events do not change it
    events = recordings[1]
    step_us = 300_000 // bundled.timesteps
    a = StepStream(bundled)
    a.feed(events[events["t"] < 100_500])
    a.advance_to(100_500)
    assert a.steps_done == 33
    b = StepStream(bundled)
    b.feed(events[events["t"] < 33 * step_us])
    b.advance_to(33 * step_us)
    assert b.steps_done == 33
    assert np.array_equal(a.output(), b.output())
    a.feed(events[events["t"] >= 100_500])
    a.flush()
    assert np.array_equal(a.window_result().output, bundled.run(events).output)


def test_held_events_read_out_as_events_fed_up_to_each_mark(bundled, recordings):
    # feed(hold=True) queues a whole chunk; advance_to(m) then runs exactly the steps that end
    # by m, as feeding the events before m and advancing does
    events = recordings[1]
    held, cut = StepStream(bundled), StepStream(bundled)
    held.feed(events, hold=True)
    assert held.steps_done == 0
    fed = 0
    for mark in range(int(events["t"][0]) + 7_000, int(events["t"][0]) + 300_000, 7_000):
        upto = int(np.searchsorted(events["t"], mark))
        cut.feed(events[fed:upto])
        fed = upto
        held.advance_to(mark)
        cut.advance_to(mark)
        assert held.steps_done == cut.steps_done
        assert np.array_equal(held.output(), cut.output())
    held.flush()
    assert np.array_equal(held.window_result().output, bundled.run(events).output)
    assert counts(held.window_result()) == counts(bundled.run(events))


def test_past_the_window_it_runs_on_as_a_longer_window_would(recordings):
    # a random network in float64 (every neuron kind, stride 2, pooling) over two recordings end
    # to end; beyond the first window it must behave as the same network trained with 2T steps
    graph = random_nmnist_graph()
    weights = random_nmnist_weights(0)
    net = Network(graph, weights, dtype=np.float64)
    long_graph = replace(graph, timesteps=2 * graph.timesteps,
                         encoding={**graph.encoding, "window_us": 2 * graph.encoding["window_us"]})
    long_net = Network(long_graph, weights, dtype=np.float64)
    second = recordings[2].copy()
    second["t"] += 310_000
    events = np.concatenate([recordings[0], second])
    events = events[events["t"] < 600_000]
    reference = long_net.run(events)
    results = []
    for cuts in ([], list(range(997, len(events), 997)), [5, 4000, 4001, 8000]):
        stream = fed_in_chunks(net, events, cuts)
        assert stream.steps_done == 200
        result = stream.result()
        results.append((result.output.tolist(), counts(result)))
        assert [layer.spikes for layer in result.layers] == [layer.spikes for layer in reference.layers]
        assert [layer.synops for layer in result.layers] == [layer.synops for layer in reference.layers]
        # the output is read as V / T with the stream's T, the reference divides by 2T
        assert np.allclose(result.output, 2 * reference.output, rtol=1e-12, atol=1e-12)
    assert all(r == results[0] for r in results[1:])


def test_events_must_come_in_time_order(bundled, recordings):
    from evsim.errors import InputError

    stream = StepStream(bundled)
    stream.feed(recordings[0][1000:1010])
    with pytest.raises(InputError, match="must not decrease"):
        stream.feed(recordings[0][:10])


def test_events_before_a_given_origin_are_dropped_and_counted(bundled, recordings):
    events = recordings[0]
    stream = StepStream(bundled, origin_us=int(events["t"][100]))
    stream.feed(events)
    stream.flush()
    assert stream.dropped_events == int(np.count_nonzero(events["t"] < events["t"][100]))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=st.integers(1, 6000), every_ms=st.sampled_from([7.0, 50.0, 1000.0]))
def test_evsim_stream_step_mode_reports_run_exactly(nmnist_root, bundled, chunk, every_ms):
    path = nmnist_root / FILES[1]
    report = stream_file(path, bundled, every_ms * 1000, chunk_events=chunk, mode="step")
    reference = stream_file(path, bundled, every_ms * 1000, chunk_events=1 << 20, mode="step")
    events, _ = read_events(path)
    events["t"] -= events["t"][0]  # stream's recording time: the first event is 0
    expected = bundled.run(events, mode="step")
    window = report["window"]
    assert window["prediction"] == int(np.argmax(expected.output))
    assert window["synops"] == expected.synops and window["spikes"] == expected.spikes
    assert window["synops_per_layer"] == {layer.name: layer.synops for layer in expected.layers}
    assert window["input_events"] == expected.input_events
    drop = ("wall_s", "realtime_factor")
    assert {k: v for k, v in report.items() if k not in drop} == {k: v for k, v in reference.items() if k not in drop}


def test_cli_default_mode_is_step(capsys, tmp_path, nmnist_root):
    model = save_random_nmnist_model(tmp_path / "tiny.npz")
    path = nmnist_root / FILES[0]
    assert main(["stream", str(path), "--model", str(model), "--json"]) == 0
    step = json.loads(capsys.readouterr().out)
    assert main(["stream", str(path), "--model", str(model), "--json", "--mode", "async"]) == 0
    asynchronous = json.loads(capsys.readouterr().out)
    assert (step["mode"], asynchronous["mode"]) == ("step", "async")
    assert "window" in step and "window" in asynchronous  # both modes: the model's window alone, as evsim run
    events = read_events(path)[0]
    events["t"] -= events["t"][0]
    expected = load(model).run(events)
    assert step["window"]["spikes"] == expected.spikes
    assert asynchronous["window"]["spikes"] == load(model).run(events, mode="async").spikes
    assert main(["stream", str(path), "--model", str(model)]) == 0
    assert "exactly evsim run's step mode" in capsys.readouterr().out


def test_pooling_fused_into_the_layer_before_gives_identical_results(bundled, recordings, monkeypatch):
    # kernels.run_population_steps_pooled against the two populations run one after the other
    from evsim.engine import step

    assert step.pools_into_next(bundled.layers, 0) and step.pools_into_next(bundled.layers, 2)
    fused = [bundled.run(events, record_spikes=True) for events in recordings]
    monkeypatch.setattr(step, "pools_into_next", lambda layers, i: False)
    apart = [bundled.run(events, record_spikes=True) for events in recordings]
    for a, b in zip(fused, apart):
        assert np.array_equal(a.output, b.output) and counts(a) == counts(b)
        assert all(np.array_equal(a.spike_counts[name], b.spike_counts[name]) for name in a.spike_counts)


@pytest.mark.parametrize("mode", ["step", "async"])
def test_both_modes_stream_through_one_interface(bundled, recordings, mode):
    """The engine's two streams have the one interface that evsim stream reads without asking
    the mode (feed with hold and end_us, advance_to, output, finish, window_result, facts), and
    read through it a recording cut in chunks gives ``Network.run``'s window result in that mode."""
    from evsim.runtime.streaming import recording_stream

    stream = recording_stream(bundled, mode)
    assert {"hold", "end_us"} <= set(inspect.signature(stream.feed).parameters)
    events = recordings[0]
    marks = []
    for chunk in np.array_split(events, 5):
        stream.feed(chunk, hold=True, end_us=int(chunk["t"][-1]))
        stream.advance_to(float(chunk["t"][-1]))
        marks.append(stream.output())
    result = stream.finish(int(events["t"][-1]))
    window = stream.window_result(allow_empty=True)
    alone = bundled.run(events, mode=mode)
    np.testing.assert_array_equal(window.output, alone.output)
    assert [layer.to_dict() for layer in window.layers] == [layer.to_dict() for layer in alone.layers]
    assert result.input_events >= window.input_events and len(marks) == 5
    assert set(stream.facts()) == ({"steps"} if mode == "step" else set())
