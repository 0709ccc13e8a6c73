"""The typed input encoding (evsim.model.encoding): one default, the model file's form unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evsim.errors import InputError
from evsim.events import to_spike_events
from evsim.model.encoding import DEFAULT_WINDOW_US, Encoding, EncodingKind
from evsim.model.file import GRAPH_KEY, load_model, model_path, save_model


@pytest.mark.parametrize("name", ["lenet-nmnist", "lenet-mnist", "lenet-mnist-ann"])
def test_bundled_models_read_and_write_the_same_json(name, tmp_path):
    with np.load(model_path(name), allow_pickle=False) as archive:
        header = json.loads(archive[GRAPH_KEY].tobytes().decode("utf-8"))
    model = load_model(name)
    stored = header["graph"] if "graph" in header else header
    assert model.graph.to_dict() == stored  # every field, the encoding included, as the file holds it
    again = load_model(save_model(tmp_path / f"{name}.npz", model.graph, model.weights))
    assert again.graph.to_dict() == stored and again.graph == model.graph


def test_the_record_and_its_defaults():
    events = Encoding.of({"kind": "events", "window_us": 300_000, "sensor_size": [34, 34, 2]})
    assert events.kind is EncodingKind.EVENTS and events.sensor_size == (34, 34, 2) and events.step_us(100) == 3000.0
    assert events == {"kind": "events", "window_us": 300_000, "sensor_size": [34, 34, 2]}  # its JSON form
    older = Encoding.of({"kind": "events"})  # a file from before the window was recorded
    assert older.window == DEFAULT_WINDOW_US and older.window_us is None and older.step_us(10) is None
    images = Encoding.of({"kind": "poisson", "scale": 0.5, "future_key": 1})
    assert images.scale == 0.5 and images.to_dict() == {"kind": "poisson", "scale": 0.5, "future_key": 1}
    assert not Encoding() and Encoding.of(None) == {}


def test_a_window_scales_with_the_steps():
    events = Encoding(window_us=300_000)
    assert events.for_timesteps(50, 100, "T'=50").window_us == 150_000
    with pytest.raises(InputError, match="T'=5: .* whole"):
        events.for_timesteps(5, 7, "T'=5")  # 300 ms in 7 steps, run for 5: not whole µs
    assert Encoding(kind="poisson", scale=0.5).for_timesteps(7, 100, "x") == {"kind": "poisson", "scale": 0.5}


def test_the_engine_takes_the_window_of_the_record():
    events = np.zeros(3, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    events["t"] = [0, 150, 450]
    spikes = to_spike_events(events, (2, 4, 4), 3, Encoding(window_us=300), np.float64)
    assert spikes.window.used == 2 and np.diff(spikes.step_offsets).tolist() == [1, 1, 0]
    with pytest.raises(InputError, match="sensor size"):
        to_spike_events(events, (2, 4, 4), 3, Encoding(sensor_size=(5, 4, 2)), np.float64)
