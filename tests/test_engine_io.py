"""The engine's boundary: model files and inputs are validated before any kernel runs,
and the counters mean what they say."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import evsim
from evsim.engine.counting import ENERGY_PJ, energy_estimate
from evsim.events import bin_events, make_events
from evsim.errors import InputError, ModelError
from evsim.model.graph import Graph, Population, Projection
from evsim.model.file import FORMAT_VERSION, GRAPH_KEY, load_model, save_model
from evsim.engine.network import Network
from evsim.runtime.load import load


def tiny_graph(timesteps=5) -> Graph:
    return Graph(
        (2, 6, 6),
        (
            Population("c1", "lif", (3, 6, 6), (Projection("input", "conv", "c1.w", 3, 1, 1),)),
            Population("p1", "pool", (3, 3, 3), (Projection("c1", "avgpool", kernel=2, stride=2),), threshold=0.75, leak=1.0),
            Population("out", "output", (4,), (Projection("p1", "linear", "out.w"),)),
        ),
        timesteps=timesteps,
        encoding={"kind": "events", "window_us": 10_000, "sensor_size": [6, 6, 2]},
    )


def tiny_weights(seed=0):
    rng = np.random.default_rng(seed)
    return {"c1.w": rng.normal(0, 1.0, (3, 2, 3, 3)).astype(np.float32), "out.w": rng.normal(0, 1.0, (4, 27)).astype(np.float32)}


@pytest.fixture
def model_path(tmp_path):
    return save_model(tmp_path / "tiny.npz", tiny_graph(), tiny_weights())


def test_model_file_round_trip(model_path):
    model = load_model(model_path)
    assert model.graph == tiny_graph()
    for name, w in tiny_weights().items():
        np.testing.assert_array_equal(model.weights[name], w)
    assert load(model_path).input_shape == (2, 6, 6)


def rewrite(path, header_edit=None, weights_edit=None):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays.pop(GRAPH_KEY).tobytes())
    if header_edit:
        header_edit(header)
    if weights_edit:
        weights_edit(arrays)
    arrays[GRAPH_KEY] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_unknown_format_version_is_rejected(model_path):
    rewrite(model_path, header_edit=lambda h: h.update(version=FORMAT_VERSION + 1))
    with pytest.raises(ModelError, match=f"version {FORMAT_VERSION + 1} is not supported"):
        load_model(model_path)


def test_nan_weights_are_rejected(model_path):
    rewrite(model_path, weights_edit=lambda a: a["c1.w"].__setitem__((0, 0, 0, 0), np.nan))
    with pytest.raises(ModelError, match="NaN or infinite"):
        load_model(model_path)


def test_inconsistent_shapes_are_rejected(model_path):
    rewrite(model_path, weights_edit=lambda a: a.__setitem__("out.w", np.zeros((4, 26), np.float32)))
    with pytest.raises(ModelError, match=r"shape \(4, 26\)"):
        load_model(model_path)
    rewrite(model_path, header_edit=lambda h: h["graph"]["populations"][1].update(shape=[3, 4, 4]))
    with pytest.raises(ModelError, match="gives shape"):
        load_model(model_path)


def test_missing_and_extra_weights_are_rejected(model_path):
    rewrite(model_path, weights_edit=lambda a: a.pop("out.w"))
    with pytest.raises(ModelError, match="missing weights: out.w"):
        load_model(model_path)
    rewrite(model_path, weights_edit=lambda a: a.update({"out.w": np.zeros((4, 27), np.float32), "stray": np.zeros(3)}))
    with pytest.raises(ModelError, match="not used by the graph: stray"):
        load_model(model_path)


def test_truncated_and_garbage_files_are_rejected(model_path, tmp_path):
    data = model_path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        load_model(truncated)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00not a model" * 100)
    with pytest.raises(ModelError):
        load_model(garbage)
    with pytest.raises(ModelError, match="no such model file"):
        load_model(tmp_path / "absent.npz")


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: the file appears if, and only if, the loader unpickled."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_arrays_are_refused_without_being_executed(tmp_path):
    """A complete model file (every weight present) whose first weight is a pickled object array:
    the loader must refuse it without unpickling, so the payload's marker file never appears."""
    path, marker = tmp_path / "evil.npz", tmp_path / "payload-ran"
    header = {"format": "evsim-model", "version": FORMAT_VERSION, "graph": tiny_graph().to_dict()}
    weights = tiny_weights()
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open(GRAPH_KEY + ".npy", "w") as fh:
            np.lib.format.write_array(fh, np.frombuffer(json.dumps(header).encode(), np.uint8))
        with zf.open("c1.w.npy", "w") as fh:
            np.lib.format.write_array(fh, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
        with zf.open("out.w.npy", "w") as fh:
            np.lib.format.write_array(fh, weights["out.w"])
    assert set(tiny_graph().weight_shapes()) == {"c1.w", "out.w"}  # nothing is missing: only pickle can fail
    with pytest.raises(ModelError, match="not a readable evsim model file.*allow_pickle"):
        load_model(path)
    assert not marker.exists(), "the pickled payload was executed"
    with pytest.raises(ModelError):
        evsim.load(path)
    assert not marker.exists()


def test_unknown_bundled_name_is_a_model_error():
    with pytest.raises(ModelError, match="no model file or bundled model"):
        evsim.load("no-such-model")


@pytest.fixture
def network():
    return Network(tiny_graph(), tiny_weights(), dtype=np.float64)


@pytest.mark.parametrize("x, y", [(6, 2), (2, 6), (6, 6)], ids=["x", "y", "both"])
def test_events_outside_the_input_are_rejected(network, x, y):
    events = make_events([1, x], [1, y], [100, 200], [True, False])
    with pytest.raises(InputError, match=f"at x={x}, y={y}.* outside the sensor"):
        network.run(events)
    with pytest.raises(InputError, match="outside"):
        network.run(events, mode="async")


def test_spike_train_of_the_wrong_shape_is_rejected(network):
    with pytest.raises(InputError, match="does not fit input"):
        network.run(np.zeros((5, 1, 6, 6), np.int8))
    with pytest.raises(InputError, match="time steps"):
        network.run(np.zeros((4, 2, 6, 6), np.int8))
    with pytest.raises(InputError, match="whole spike counts"):
        network.run(np.full((5, 2, 6, 6), 0.5))


def test_binned_events_of_another_sensor_are_rejected(network):
    events = make_events([1], [1], [100], [True])
    with pytest.raises(InputError, match="do not fit input"):
        network.run(bin_events(events, (8, 8, 2), 5, 10_000))


def test_events_and_their_binned_form_give_the_same_run(network):
    rng = np.random.default_rng(3)
    n = 300
    events = make_events(rng.integers(0, 6, n), rng.integers(0, 6, n), np.sort(rng.integers(0, 12_000, n)), rng.integers(0, 2, n).astype(bool))
    a = network.run(events)
    b = network.run(bin_events(events, (6, 6, 2), 5, 10_000))
    np.testing.assert_array_equal(a.output, b.output)
    # events past the window (which starts at the first event) are dropped, the rest counted once each
    inside = int((events["t"] - events["t"].min() < 10_000).sum())
    assert a.input_events == a.window.used == inside and a.window.dropped == {"after_window": n - inside}


def test_counters_follow_the_spikes(network):
    rng = np.random.default_rng(1)
    train = (rng.random((5, 2, 6, 6)) < 0.5).astype(np.int8)
    result = network.run(train, record_spikes=True)
    c1, p1, out = result.layers
    assert c1.input_events == train.sum()
    # a 3x3 padded conv reaches 3 output rows/cols except at the border; each reach is 3 adds
    assert c1.synops < train.sum() * 9 * 3 and c1.synops > 0
    assert c1.spikes == result.spike_counts["c1"].sum()
    assert p1.input_events == c1.spikes and p1.synops == c1.spikes
    assert out.synops == p1.spikes * 4
    assert out.spikes == 0
    # dense equivalents: MACs of one step x T, and of one ANN pass
    assert c1.ann_macs == 3 * 6 * 6 * 2 * 9 and c1.dense_macs == 5 * c1.ann_macs
    assert out.ann_macs == 27 * 4
    assert result.synops == c1.synops + p1.synops + out.synops


def test_energy_estimate_uses_the_papers_45nm_figures():
    e = energy_estimate(synops=1000, ann_macs=100, dense_macs=5000, precision="fp32")
    assert e["snn_event_driven_pj"] == pytest.approx(1000 * 0.9)
    assert e["ann_pj"] == pytest.approx(100 * 4.6)
    i = energy_estimate(synops=1000, ann_macs=100, dense_macs=5000, precision="int32")
    assert i["ann_over_snn"] == pytest.approx(100 * 3.2 / (1000 * 0.1))
    assert ENERGY_PJ["int32"] == {"mac": 3.2, "ac": 0.1}


def test_float32_and_float64_engines_agree(network):
    rng = np.random.default_rng(2)
    train = (rng.random((5, 2, 6, 6)) < 0.4).astype(np.int8)
    a = Network(tiny_graph(), tiny_weights(), dtype=np.float32).run(train)
    b = network.run(train)
    np.testing.assert_allclose(a.output, b.output, rtol=1e-5, atol=1e-6)
    assert [l.spikes for l in a.layers] == [l.spikes for l in b.layers]


def test_run_many_keeps_input_order(network):
    """Across batches (32 inputs each on two workers, the next one encoded while one runs)."""
    rng = np.random.default_rng(4)
    trains = [(rng.random((5, 2, 6, 6)) < 0.4).astype(np.int8) for _ in range(70)]
    serial = [network.run(t).output for t in trains]
    for workers in (1, 2):
        done = []
        parallel = [r.output for r in network.run_many(iter(trains), workers=workers, progress=lambda: done.append(1))]
        assert len(parallel) == len(done) == len(trains)
        for a, b in zip(serial, parallel):
            np.testing.assert_array_equal(a, b)


def test_workspaces_outlive_the_threads_that_used_them(network):
    """Each run_many starts new threads; they take the batch workspace earlier runs left (no
    thread holds one across runs), and a reused workspace gives the same results as a fresh one."""
    rng = np.random.default_rng(5)
    trains = [(rng.random((5, 2, 6, 6)) < 0.4).astype(np.int8) for _ in range(16)]
    fresh = Network(tiny_graph(), tiny_weights(), dtype=np.float64)
    first = [r.output for r in fresh.run_many(trains, workers=2)]
    assert fresh._batch_workspaces.qsize() == 1
    again = [r.output for r in fresh.run_many(trains[::-1], workers=2)][::-1]
    assert fresh._batch_workspaces.qsize() == 1  # one per call would make two
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
