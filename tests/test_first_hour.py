"""Issue 14, a user's first hour, through the Python API: the one input window (points 1, 2),
reprs and the inputs ``net.run`` takes (point 8), tonic's ``train=`` (point 11).

The CLI half (points 3-7, 9, 10) is tests/test_cli_errors.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import evsim
from evsim.runtime.streaming import stream_file
from evsim.datasets.formats import read_events
from evsim.errors import DataError, InputError
from evsim.events import bin_events, make_events, to_frames, window_events
from evsim.paths import BUNDLED_DATA

NMNIST = BUNDLED_DATA / "nmnist"
SEVEN = NMNIST / "Test/7/00001.bin"  # 3,330 events from 5,087 µs to 307,827 µs on the file's clock
SIX = NMNIST / "Test/6/00012.bin"  # its first event at 25,812 µs: the origin matters most here
WINDOW_US = 300_000


@pytest.fixture(scope="module")
def net():
    return evsim.load("lenet-nmnist")


# --- 1. no silent wrong answer ------------------------------------------------------------


def test_a_recording_on_an_epoch_clock_gives_the_same_answer_as_from_zero(net):
    """The issue's case: stamps of ~1.6e15 µs (AEDAT4 counts from the Unix epoch) used to leave
    no event inside [0, 300 ms) and gave class 0 from 0 events."""
    events, _ = read_events(SEVEN)
    shifted = events.copy()
    shifted["t"] += 1_605_537_493_718_345
    for mode in ("step", "async"):
        plain, far = net.run(events, mode=mode), net.run(shifted, mode=mode)
        assert far.prediction == plain.prediction == 7
        assert far.synops == plain.synops > 0
        assert far.input_events == plain.input_events == far.window.used
        assert far.window.origin_us == int(shifted["t"][0])


def test_events_past_the_window_are_counted_with_their_reason(net):
    events, _ = read_events(SEVEN)
    since_first = events["t"] - events["t"][0]
    past = int((since_first >= WINDOW_US).sum())
    assert past > 0  # the recording is 302.7 ms long
    for mode in ("step", "async"):
        result = net.run(events, mode=mode)
        assert result.window.read == len(events) == 3330
        assert result.window.used == result.input_events == len(events) - past
        assert result.window.dropped == {"after_window": past}


def test_the_vendored_aedat4_recording_cropped_to_34x34_is_not_class_0_from_nothing(net, dvs_dir):
    pytest.importorskip("aedat")
    events, (width, height, _) = read_events(dvs_dir / "sample.aedat4")
    x0, y0 = (width - 34) // 2, (height - 34) // 2
    keep = (events["x"] >= x0) & (events["x"] < x0 + 34) & (events["y"] >= y0) & (events["y"] < y0 + 34)
    crop = events[keep].copy()
    crop["x"] -= x0
    crop["y"] -= y0
    for mode in ("step", "async"):
        result = net.run(crop, mode=mode)
        inside = int((crop["t"] - crop["t"].min() < WINDOW_US).sum())
        assert result.input_events == inside > 1000
        assert result.synops > 0


def test_a_sample_with_nothing_inside_the_window_is_an_error(net):
    events, _ = read_events(SEVEN)
    for mode in ("step", "async"):
        with pytest.raises(InputError, match=r"all 3,330 events lie outside the input window"):
            net.run(events, mode=mode, origin_us=int(events["t"][0]) - 10 * WINDOW_US)
        with pytest.raises(InputError, match="holds no events"):
            net.run(events[:0], mode=mode)


def test_an_origin_before_the_first_event_shifts_the_bins(net):
    events, _ = read_events(SIX)
    first = int(events["t"][0])
    assert first == 25_812
    # origin 0 is the file's own clock: the events of the last 25.8 ms fall past the window
    on_file_clock = net.run(events, origin_us=0)
    from_first = net.run(events)
    assert on_file_clock.window.dropped["after_window"] > from_first.window.dropped["after_window"]
    assert on_file_clock.window.origin_us == 0 and from_first.window.origin_us == first
    early = make_events([1, 2], [1, 2], [100, 200], [1, 1])
    _, counts = window_events(early, WINDOW_US, origin_us=150)
    assert counts.dropped == {"before_origin": 1} and counts.used == 1


# --- 2. one definition of the window --------------------------------------------------------


@pytest.mark.parametrize("path", [SEVEN, SIX, NMNIST / "Test/0/00004.bin"], ids=lambda p: p.parent.name + "/" + p.name)
def test_streaming_and_net_run_agree_on_the_window_in_both_modes(net, path):
    for mode in ("step", "async"):
        expected = net.run(path, mode=mode)
        window = stream_file(path, net, every_us=50_000.0, chunk_events=997, mode=mode)["window"]
        assert (window["prediction"], window["synops"], window["spikes"], window["input_events"]) == (
            expected.prediction, expected.synops, expected.spikes, expected.input_events)


def test_the_trainers_frames_bin_exactly_the_engines_window(net):
    """The dense model trains on SampleSet.inputs; the engine bins raw events itself: the same
    events must land in the same steps, so that step mode keeps equalling the dense model."""
    from evsim.datasets.samples import load_samples

    samples = load_samples("nmnist", NMNIST, "test", encoding=net.encoding)
    position = int(np.flatnonzero(samples.labels == 6)[1])  # SIX: the recording that starts latest
    events = samples.events(position)
    frames = samples.inputs(np.array([position]), net.timesteps, np.random.default_rng(0))[:, 0]
    binned = bin_events(events, (34, 34, 2), net.timesteps, WINDOW_US)
    np.testing.assert_array_equal(frames, to_frames(binned))
    assert frames.sum() == net.run(events).input_events == binned.window.used
    # the frames as a spike train run exactly as the events do
    from_frames = net.run(frames.astype(np.int64))
    from_events = net.run(events)
    np.testing.assert_array_equal(from_frames.output, from_events.output)
    assert from_frames.synops == from_events.synops


# --- 8. Python ergonomics -------------------------------------------------------------------


def test_reprs_are_short_and_show_the_prediction(net):
    result = net.run(SEVEN)
    text = repr(result)
    assert text.startswith("RunResult(prediction=7,") and len(text) < 300
    assert "spike_counts" not in text and "meta" not in text and "array(" not in text
    assert "events=3,330 (dropped: 2 after_window)" in text
    layer = repr(net.layers[0])
    assert layer.startswith("Layer(conv1: lif [20, 34, 34] <- input") and len(layer) < 120 and "array" not in layer
    assert len(repr(net)) < 300 and "array" not in repr(net)


def test_per_layer_counts_by_name(net):
    result = net.run(SEVEN)
    per_layer = result.per_layer
    assert list(per_layer) == [layer.name for layer in net.layers]
    assert sum(counts["synops"] for counts in per_layer.values()) == result.synops
    assert sum(c["spikes"] for c in per_layer.values() if c["kind"] != "output") == result.spikes
    assert per_layer["conv1"]["input_events"] == result.input_events
    assert per_layer["pool1"]["input_events"] == per_layer["conv1"]["spikes"]


def test_net_run_takes_a_path_an_array_and_a_tensor(net):
    events, _ = read_events(SEVEN)
    by_path, by_str, by_array = net.run(SEVEN), net.run(str(SEVEN)), net.run(events)
    np.testing.assert_array_equal(by_path.output, by_array.output)
    np.testing.assert_array_equal(by_str.output, by_array.output)
    with pytest.raises(DataError, match="no such file"):
        net.run(NMNIST / "missing.bin")

    torch = pytest.importorskip("torch")
    frames = to_frames(bin_events(events, (34, 34, 2), net.timesteps, WINDOW_US))  # [T, C, H, W]
    from_numpy = net.run(frames)
    from_tensor = net.run(torch.from_numpy(frames))
    np.testing.assert_array_equal(from_numpy.output, from_tensor.output)
    assert from_tensor.prediction == by_array.prediction == 7


def test_load_and_network_behave_the_same_on_a_path(tmp_path):
    """Issue 29: no hidden registration step. ``evsim.load`` reads the file; a Network built
    without a reader (``Network.from_file``) refuses the path with a message naming evsim.load,
    and on the file's events gives exactly evsim.load's result, in a fresh interpreter too."""
    from evsim.engine.network import Network

    events, _ = read_events(SEVEN)
    bare = Network.from_file("lenet-nmnist")
    for mode in ("step", "async"):
        by_load = evsim.load("lenet-nmnist").run(SEVEN, mode=mode)
        with pytest.raises(InputError, match=r"evsim\.load"):
            bare.run(SEVEN, mode=mode)
        by_events = bare.run(events, mode=mode)
        np.testing.assert_array_equal(by_load.output, by_events.output)
        assert by_load.per_layer == by_events.per_layer
    import subprocess
    import sys

    script = ("import sys, evsim; from evsim.engine.network import Network\n"
              "print(evsim.load('lenet-nmnist').run(sys.argv[1]).prediction)\n"
              "try:\n    Network.from_file('lenet-nmnist').run(sys.argv[1])\n"
              "except evsim.InputError as exc:\n    print(exc)\n")
    shown = subprocess.run([sys.executable, "-c", script, str(SEVEN)], capture_output=True, text=True, check=True)
    prediction, refusal = shown.stdout.splitlines()
    assert prediction == "7" and "evsim.load(model)" in refusal


def test_a_batch_axis_gives_one_result_per_sample(net):
    samples = [read_events(path)[0] for path in (SEVEN, SIX, NMNIST / "Test/0/00004.bin")]
    frames = np.stack([to_frames(bin_events(e, (34, 34, 2), net.timesteps, WINDOW_US)) for e in samples], axis=1)
    assert frames.shape == (net.timesteps, 3, 2, 34, 34)  # [T, B, C, H, W], as snntorch and norse hold them
    for mode in ("step", "async"):
        results = net.run(frames, mode=mode)
        assert isinstance(results, list) and len(results) == 3
        for b, result in enumerate(results):
            single = net.run(frames[:, b], mode=mode)
            np.testing.assert_array_equal(result.output, single.output)
    assert [r.prediction for r in net.run(frames)] == [7, 6, 0]
    torch = pytest.importorskip("torch")
    from_tensor = net.run(torch.from_numpy(frames))
    assert [r.synops for r in from_tensor] == [r.synops for r in net.run(frames)]


# --- 6. bad values through the API ----------------------------------------------------------


def test_record_spikes_in_async_mode_is_refused_not_empty(net):
    with pytest.raises(InputError, match="step mode only"):
        net.run(SEVEN, mode="async", record_spikes=True)
    assert set(net.run(SEVEN, record_spikes=True).spike_counts) == {"conv1", "pool1", "conv2", "pool2", "fc1"}


@pytest.mark.parametrize("workers", [0, -3, 1.5])
def test_run_many_refuses_workers_below_one(net, workers):
    with pytest.raises(InputError, match="workers must be a positive whole number"):
        list(net.run_many([SEVEN], workers=workers))


def test_polarity_minus_one_is_named_as_a_polarity(net):
    events, _ = read_events(SEVEN)
    signed = np.empty(len(events), dtype=[("x", "i2"), ("y", "i2"), ("t", "i8"), ("p", "i1")])
    for field in ("x", "y", "t"):
        signed[field] = events[field]
    signed["p"] = np.where(events["p"], 1, -1)
    with pytest.raises(InputError, match=r"polarity p=-1; evsim takes p = 0 \(OFF\) or 1 \(ON\)") as exc:
        net.run(signed)
    assert "outside" not in str(exc.value)


# --- 11. conventions ------------------------------------------------------------------------


def test_datasets_take_tonics_train_flag(mnist_root):
    from evsim.datasets.mnist import load_mnist
    from evsim.datasets.nmnist import NMNIST as Recordings

    assert Recordings(NMNIST, train=False).files == Recordings(NMNIST, split="test").files
    assert Recordings(NMNIST, train=True).files == Recordings(NMNIST, "train").files
    assert Recordings(NMNIST).split == "test"
    with pytest.raises(InputError, match="name different splits"):
        Recordings(NMNIST, "train", train=False)
    images, labels = load_mnist(mnist_root, train=False)
    expected_images, expected_labels = load_mnist(mnist_root, "test")
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


# --- issue 30: no silent wrong answer through the API -----------------------------------------


def test_an_input_with_no_spikes_is_an_error_not_class_0(net):
    """Point 1: zeros, one all-zero sample of a batch, and a stream's result before any feed."""
    silent = np.zeros((net.timesteps, 2, 34, 34), np.int8)
    for mode in ("step", "async"):
        with pytest.raises(InputError, match=r"holds no spikes \(all zero\)"):
            net.run(silent, mode=mode)
    frames = to_frames(bin_events(read_events(SEVEN)[0], (34, 34, 2), net.timesteps, WINDOW_US))
    batch = np.stack([frames, np.zeros_like(frames), frames], axis=1)
    with pytest.raises(InputError, match=r"sample 1 of the batch holds no spikes"):
        net.run(batch)
    for mode in ("step", "async"):
        with pytest.raises(InputError, match=r"no event has reached the network yet"):
            net.stream(mode).result()
    stream = net.stream("step")
    stream.feed(read_events(SEVEN)[0])
    stream.flush()
    assert stream.result().prediction == 7


def test_negative_or_unscaled_spike_counts_are_refused(net):
    """Point 2: -1 counts were taken as 231,200 input events; intensities are not spikes."""
    with pytest.raises(InputError, match=r"negative counts \(down to -1\); the model's inputs are event counts"):
        net.run(-np.ones((net.timesteps, 2, 34, 34), np.int8))
    images = evsim.load("lenet-mnist")
    with pytest.raises(InputError, match=r"counts up to 255; the model takes Poisson spikes"):
        images.run(np.full((images.timesteps, 1, 28, 28), 255, np.int16))
    with pytest.raises(InputError, match=r"negative counts .* spikes of images in \[0, 1\]"):
        images.run(-np.ones((images.timesteps, 1, 28, 28), np.int8))


def test_timestamps_in_the_wrong_unit_warn_or_fail_naming_microseconds(net):
    """Point 2: t in ms put all events into the first bin and predicted 0 with no word."""
    events, _ = read_events(SEVEN)
    in_ms = events.copy()
    in_ms["t"] //= 1000
    for mode in ("step", "async"):
        with pytest.warns(UserWarning, match=r"all [\d,]+ events fall into 1 of the model's 100 time steps.*µs"):
            net.run(in_ms, mode=mode)
    in_hundreds = events.copy()  # 3 ms in all: two of the 3 ms steps
    in_hundreds["t"] //= 100
    with pytest.warns(UserWarning, match=r"fall into 2 of the model's 100 time steps \(step 0, 1\)"):
        net.run(in_hundreds)
    in_s = np.empty(len(events), dtype=[("x", "i2"), ("y", "i2"), ("t", "f8"), ("p", "?")])
    for field in ("x", "y", "p"):
        in_s[field] = events[field]
    in_s["t"] = events["t"] * 1e-6
    with pytest.raises(InputError, match=r"t in whole microseconds \(µs\); for seconds multiply by 1,000,000"):
        net.run(in_s)
    with pytest.raises(InputError, match=r"whole microseconds"):
        make_events([1], [1], [0.5], [1])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert net.run(events).prediction == 7  # a real recording spreads over the steps


def test_net_run_takes_files_and_tonic_samples_and_explains_layouts(net, tmp_path, monkeypatch):
    """Point 15: a list of files, tonic's (events, label), a batch-first tensor, a sensor
    mismatch, and a file shadowing a bundled model's name."""
    events, _ = read_events(SEVEN)
    assert [r.prediction for r in net.run([SEVEN, str(SIX)])] == [7, 6]
    assert net.run((events, 7)).prediction == 7
    frames = to_frames(bin_events(events, (34, 34, 2), net.timesteps, WINDOW_US))
    batch_first = np.stack([frames, frames])  # [B, T, C, H, W]
    with pytest.raises(InputError, match=r"T=100 first.*batch-first \[B, T, C, H, W\]: pass x\.transpose\(0, 1\)"):
        net.run(batch_first)
    wide = events.copy()
    wide["x"] += 100
    with pytest.raises(InputError, match=r"need cropping or downsampling first \(tonic\.transforms\.CenterCrop"):
        net.run(wide)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lenet-nmnist").write_bytes(b"another model")
    with pytest.raises(evsim.ModelError, match=r"names both a bundled model and a file in this folder: write ./lenet-nmnist"):
        evsim.load("lenet-nmnist")
