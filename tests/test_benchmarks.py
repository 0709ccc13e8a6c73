"""``evsim bench``, ``evsim report`` and benchmarks/scaling.py on a tiny model and a few real
N-MNIST recordings: well-formed output, figures written, and the report's numbers consistent with
``evsim run`` and with the dense forward. No timing assertions."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from evsim.cli.main import main
from evsim.errors import InputError
from evsim.model.file import load_model, save_model
from evsim.analysis.report import truncated_graph
from random_model import random_nmnist_graph, random_nmnist_weights

REPO = Path(__file__).resolve().parent.parent
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMESTEPS = 20  # 15 ms bins over the 300 ms window


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    graph = dataclasses.replace(random_nmnist_graph(), timesteps=TIMESTEPS)
    return save_model(tmp_path_factory.mktemp("model") / "tiny_T20.npz", graph, random_nmnist_weights())


def data_args(model_path, nmnist_root, limit=3):
    return ["--model", str(model_path), "--dataset", "nmnist", "--data", str(nmnist_root), "--limit", str(limit)]


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_MAGIC


def float64_reference(model_path, nmnist_root, limit):
    """The dense float64 model on the first ``limit`` test recordings: predictions, labels, per-layer
    spike counts, the synaptic operations the per-kind formula gives, and each sample's top-two
    output gap (a float32 run may only disagree where that gap is a rounding-level tie)."""
    from evsim.datasets.samples import load_samples
    from evsim.training.network import dense_forward
    from test_engine_exact import expected_synops

    model = load_model(model_path)
    graph = model.graph
    samples = load_samples("nmnist", nmnist_root, "test", limit=limit, encoding=graph.encoding)
    frames = samples.inputs(np.arange(len(samples)), graph.timesteps, np.random.default_rng(0))
    weights64 = {k: v.astype(np.float64) for k, v in model.weights.items()}
    output, counts = dense_forward(graph, weights64, frames.astype(np.float64))
    synops = []
    for i in range(len(samples)):
        events = {"input": np.abs(frames[:, i]).sum(0), **{name: c[i] for name, c in counts.items()}}
        synops.append(sum(expected_synops(graph, pop, events) for pop in graph.populations))
    top2 = np.sort(output, axis=1)[:, -2:]
    return {"predictions": output.argmax(1), "labels": np.asarray(samples.labels), "synops": np.array(synops),
            "gaps": top2[:, 1] - top2[:, 0], "counts": counts}


def test_bench_json(capsys, model_path, nmnist_root):
    assert main(["bench", *data_args(model_path, nmnist_root), "--rounds", "1", "--threads", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 3 and report["timesteps"] == TIMESTEPS and report["dataset"] == "nmnist"
    assert report["dense_batch64_actual_batch"] == 3
    ref = float64_reference(model_path, nmnist_root, 3)
    assert ref["synops"].min() > 0
    # float32 runs: a spike may flip on a rounding-level tie, which moves a count by a few
    # operations; a miscounted projection moves it by percent
    assert report["synops_per_sample"] == pytest.approx(ref["synops"].mean(), rel=1e-3)
    ties = int((ref["gaps"] < 1e-5).sum())
    accuracy = float(np.mean(ref["predictions"] == ref["labels"]))
    for mode in ("step", "step_raw", "dense_batch1", "dense_batch64"):
        assert abs(report["accuracy"][mode] - accuracy) <= ties / 3, mode
    assert report["step_equals_dense_predictions"] >= 1 - ties / 3
    assert report["async_synops_per_sample"] > 0
    speedup = report["event_samples_per_s"] / report["dense_batch1_samples_per_s"]
    assert report["speedup_vs_dense_batch1"] == pytest.approx(speedup, rel=1e-9) and speedup > 0
    # step mode is timed from binned events and from the raw ones: the same answers both ways
    assert report["accuracy"]["step_raw"] == report["accuracy"]["step"]
    best = max(report["dense_batch1_samples_per_s"], report["dense_batch64_samples_per_s"])
    assert report["speedup_vs_best_dense_from_raw"] == pytest.approx(report["event_from_raw_samples_per_s"] / best)
    # the dense floor: the convolutions and linears alone, at its best batch
    assert report["dense_floor_batch"] in (1, 3) and report["dense_floor_samples_per_s"] > 0
    assert report["speedup_vs_dense_floor"] == pytest.approx(report["event_samples_per_s"] / report["dense_floor_samples_per_s"])


def test_dense_floor_is_the_dense_model_without_its_neurons(model_path):
    """The floor runs the same projections as the dense model: with every neuron replaced by the
    identity, a linear chain of convolutions, pooling and linears, checked layer by layer."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    import evsim
    from evsim.analysis.bench import dense_floor

    network = evsim.load(model_path)
    frames = torch.rand(3, 2, *network.input_shape)
    x = frames.flatten(0, 1)
    for pop in network.graph.populations:
        (proj,) = pop.inputs
        w = torch.as_tensor(network.weights[proj.weight], dtype=torch.float32) if proj.weight else None
        if proj.op == "conv":
            x = F.conv2d(x, w, stride=proj.stride, padding=proj.padding)
        elif proj.op == "avgpool":
            x = F.avg_pool2d(x, proj.kernel, proj.stride)
        else:
            x = x.flatten(1) @ w.T
    torch.testing.assert_close(dense_floor(network.graph, network.weights)(frames), x)


@pytest.fixture(scope="module")
def report_dir(model_path, nmnist_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert main(["report", *data_args(model_path, nmnist_root), "--latencies", "5,10", "--threads", "1", "--out", str(out)]) == 0
    return out


def test_report_files(report_dir):
    for name in ("spike_activity.png", "accuracy_latency.png", "compute.png"):
        assert_png(report_dir / name)
    text = (report_dir / "report.md").read_text()
    assert "evsim report --model" in text and "--limit 3" in text  # the command that produced it
    assert text.count("nmnist test split, 3 samples") >= 4  # every section says what it was measured on
    for heading in ("fig. 9", "fig. 10", "fig. 11", "ESTIMATE"):
        assert heading in text
    report = json.loads((report_dir / "report.json").read_text())
    assert report["data"]["dataset"] == "nmnist" and report["data"]["samples"] == 3
    assert [row["timesteps"] for row in report["latency"]] == [5, 10, TIMESTEPS]
    assert [row["window_us"] for row in report["latency"]] == [75_000, 150_000, 300_000]  # same 15 ms bins
    events = [row["input_events"] for row in report["latency"]]
    assert events == sorted(events) and events[0] < events[-1]  # a prefix of the recording


def test_report_agrees_with_run(capsys, report_dir, model_path, nmnist_root):
    report = json.loads((report_dir / "report.json").read_text())
    assert main(["run", *data_args(model_path, nmnist_root), "--threads", "1", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    full = report["latency"][-1]
    assert full["accuracy"] == run["accuracy"]
    assert full["synops"] == pytest.approx(run["synops_per_sample"])
    assert full["hidden_spikes"] == pytest.approx(run["spikes_per_sample"])
    assert report["compute"]["total"]["synops"] == pytest.approx(run["synops_per_sample"])
    assert report["compute"]["total"]["ann_macs"] == pytest.approx(run["ann_macs_per_sample"])
    activity = {row["name"]: row for row in report["activity"]["layers"]}
    assert activity["input"]["spikes"] == pytest.approx(run["input_events_per_sample"])
    for layer in run["layers"]:
        if layer["name"] in activity:
            assert activity[layer["name"]]["spikes"] == pytest.approx(layer["spikes_per_sample"])
            assert activity[layer["name"]]["relative_to_input"] == pytest.approx(layer["spikes_per_sample"] / run["input_events_per_sample"])
    energy = report["compute"]["energy"]["int32"]
    assert energy["snn_event_driven_pj"] == pytest.approx(0.1 * run["synops_per_sample"])


def test_truncated_network_runs_the_first_steps_of_the_same_input(model_path, nmnist_root):
    """The engine at T' (window scaled) gives the dense forward of the first T' frames of the full binning."""
    from evsim.datasets.samples import load_samples
    from evsim.engine.network import Network
    from evsim.training.network import dense_forward

    model = load_model(model_path)
    samples = load_samples("nmnist", nmnist_root, "test", limit=2, encoding=model.graph.encoding)
    frames = samples.inputs(np.arange(2), TIMESTEPS, np.random.default_rng(0))
    for steps in (1, 7, TIMESTEPS):
        graph = truncated_graph(model.graph, steps)
        engine = Network(graph, model.weights, dtype=np.float64)
        expected, counts = dense_forward(graph, model.weights, frames[:steps])
        for i in range(2):
            result = engine.run(samples.events(i), record_spikes=True)
            np.testing.assert_allclose(result.output, expected[i], rtol=1e-9, atol=1e-12)
            for name, count in result.spike_counts.items():
                np.testing.assert_array_equal(count, counts[name][i])


def test_truncated_poisson_inputs_are_a_prefix(mnist_root):
    from evsim.runtime.inputs import sample_inputs
    from evsim.datasets.samples import load_samples
    from evsim.engine.network import Network
    from evsim.training.architectures import lenet

    graph = dataclasses.replace(lenet((1, 28, 28), 12), encoding={"kind": "poisson", "scale": 0.5})
    rng = np.random.default_rng(0)
    weights = {name: rng.normal(0, 0.1, shape).astype(np.float32) for name, shape in graph.weight_shapes().items()}
    samples = load_samples("mnist", mnist_root, "test", limit=2, encoding=graph.encoding)
    full = list(sample_inputs(samples, Network(graph, weights), seed=3))
    short = list(sample_inputs(samples, Network(truncated_graph(graph, 5), weights), seed=3))
    for long_train, short_train in zip(full, short):
        assert short_train.shape[0] == 5 and long_train[:5].any()
        np.testing.assert_array_equal(short_train, long_train[:5])
    assert truncated_graph(graph, 30).timesteps == 30 and "window_us" not in truncated_graph(graph, 30).encoding


def test_truncation_needs_whole_microsecond_bins():
    graph = dataclasses.replace(random_nmnist_graph(), timesteps=7)
    with pytest.raises(InputError, match="whole"):
        truncated_graph(graph, 3)
    assert truncated_graph(graph, 14).encoding["window_us"] == 600_000
    with pytest.raises(InputError):
        truncated_graph(graph, 0)


@pytest.mark.parametrize("bad", ["0", "5,x", ""])
def test_report_rejects_bad_timesteps(model_path, nmnist_root, tmp_path, bad):
    with pytest.raises(SystemExit) as exc:
        main(["report", *data_args(model_path, nmnist_root), "--latencies", bad, "--out", str(tmp_path)])
    assert exc.value.code == 2


@pytest.mark.slow
def load_script(name: str, monkeypatch):
    """benchmarks/<name>.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_scaling_quick(model_path, nmnist_root, tmp_path, capsys, monkeypatch):
    scaling = load_script("scaling", monkeypatch)
    json_path, figure = tmp_path / "scaling.json", tmp_path / "scaling.png"
    scaling.main(["--quick", "--model", str(model_path), "--data", str(nmnist_root),
                  "--json", str(json_path), "--figure", str(figure)])
    assert "(c) depth" in capsys.readouterr().out
    assert_png(figure)
    report = json.loads(json_path.read_text())
    timing = ("engine_s", "dense_b1_s", "input_events", "synops", "dense_macs", "rates")
    events = report["events"]["rows"]
    assert [r["thinning"] for r in events] == [1, 4]
    assert all(set(timing + ("dense_large_batch_s",)) <= set(r) for r in events)
    assert events[1]["input_events"] == pytest.approx(events[0]["input_events"] / 4, rel=0.05)  # every 4th event
    assert events[0]["dense_macs"] == events[1]["dense_macs"]
    steps = report["timesteps"]["rows"]
    assert [r["timesteps"] for r in steps] == [5, 10]
    assert steps[1]["dense_macs"] == 2 * steps[0]["dense_macs"]
    assert steps[0]["input_events"] == steps[1]["input_events"]  # same events, re-binned
    depth = report["depth"]["rows"]
    assert [r["arch"] for r in depth] == ["lenet", "resnet11"]
    for row in depth:
        assert set(timing) <= set(row)
        first = next(iter(row["rates"].values()))  # calibrated to 8 % on other images
        assert 0.04 < first < 0.16
        assert row["synops"] < row["dense_macs"]


def test_profile_phases_times_the_phases_of_the_same_synops(nmnist_root, capsys, monkeypatch):
    """benchmarks/profile_phases.py on two bundled recordings: every phase is timed, and the synops
    it reports are conv1's in ``Network.run`` of the same recordings."""
    import evsim
    from evsim.datasets.formats import read_events

    phases = load_script("profile_phases", monkeypatch)
    phases.main(["--data", str(nmnist_root), "--limit", "2", "--rounds", "1"])
    out = capsys.readouterr().out
    for name in ("marking", "marking + leak", "marking + adds", "marking + leak + adds", "the layer"):
        assert f"  {name} " in out
    network = evsim.load("lenet-nmnist")
    files = phases.recordings(nmnist_root, 2)
    synops = np.mean([network.run(read_events(f)[0]).layers[0].synops for f in files])
    assert f"{synops / 1e6:.2f} M synops per recording" in out


def test_train_speed_times_both_recurrences(nmnist_root, capsys, monkeypatch):
    """benchmarks/train_speed.py end to end on a few bundled recordings (T = 4): every kind is timed."""
    pytest.importorskip("torch")
    train_speed = load_script("train_speed", monkeypatch)
    train_speed.main(["--dataset", "nmnist", "--data", str(nmnist_root), "--timesteps", "4", "--batch-size", "4",
                      "--batches", "1", "--rounds", "2"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    kinds = ("layer_major", "layer_major_sparse", "layer_major_sparse_torch_recurrence", "stepwise")
    assert all(report[f"{kind}_samples_per_s"] > 0 for kind in kinds)
    assert report["recurrence_kernels_speedup"] > 0


def test_train_epoch_ab_times_both_paths(nmnist_root, simulated_mnist_root, capsys, monkeypatch):
    pytest.importorskip("torch")
    module = load_script("train_epoch_ab", monkeypatch)
    module.main(["--data", str(nmnist_root), "--simulated-data", str(simulated_mnist_root), "--threads", "1",
                 "--rounds", "2", "--real", "1", "--simulated", "4", "--timesteps", "4"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [len(v) for v in report["train_seconds"].values()] == [2, 2] and report["kernels_speedup"] > 0


def test_model_soup_averages_weights_and_refuses_other_graphs(tmp_path, monkeypatch):
    from evsim.model.file import load_model, model_path, save_model

    soup = load_script("model_soup", monkeypatch)
    bundled = load_model("lenet-nmnist")
    doubled = tmp_path / "doubled.npz"
    save_model(doubled, bundled.graph, {k: 3 * w for k, w in bundled.weights.items()})
    out = tmp_path / "soup.npz"
    monkeypatch.setattr(sys, "argv", ["model_soup.py", str(out), str(model_path("lenet-nmnist")), str(doubled)])
    soup.main()
    made = load_model(out)
    for name, w in bundled.weights.items():
        np.testing.assert_allclose(made.weights[name], 2 * w, rtol=1e-6)
    assert made.graph.populations == bundled.graph.populations and len(made.graph.meta["soup_of"]) == 2
    monkeypatch.setattr(sys, "argv", ["model_soup.py", str(out), str(model_path("lenet-nmnist")), str(model_path("lenet-mnist"))])
    with pytest.raises(SystemExit):
        soup.main()
