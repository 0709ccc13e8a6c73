"""``evsim demo``: the main job on the bundled recordings, with no data folder and no arguments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from evsim.cli.main import main


def run_json(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.mark.slow
@pytest.mark.slow
def test_demo_streams_the_bundled_test_recordings_and_counts_what_evsim_stream_counts(tmp_path, capsys, nmnist_root):
    demo = run_json(capsys, ["demo", "--json", "--no-dense", "--figure", str(tmp_path / "demo.png")])
    files = sorted((nmnist_root / "Test").glob("*/*.bin"))
    assert demo["samples"] == len(files) == 19 and demo["split"] == "test"
    streamed = [run_json(capsys, ["stream", str(f), "--model", "lenet-nmnist", "--json"]) for f in files]
    labels = [int(f.parent.name) for f in files]
    # the demo's figures are the model's input window's (evsim run's), as `evsim stream` gives them in "window"
    assert demo["accuracy"] == pytest.approx(np.mean([s["window"]["prediction"] == y for s, y in zip(streamed, labels)]))
    assert demo["synops_per_sample"] == pytest.approx(np.mean([s["window"]["synops"] for s in streamed]))
    assert demo["spikes_per_sample"] == pytest.approx(np.mean([s["window"]["spikes"] for s in streamed]))
    assert demo["input_events_per_sample"] == pytest.approx(np.mean([s["window"]["input_events"] for s in streamed]))
    # both modes are shown; step mode (the default, as `evsim stream`'s) gives exactly evsim run's counts
    assert demo["mode"] == "step" and set(demo["modes"]) == {"step", "async"}
    assert demo["modes"]["step"]["synops_per_sample"] == demo["synops_per_sample"]
    assert demo["modes"]["async"]["synops_per_sample"] != demo["synops_per_sample"]
    assert all(s["window"]["synops"] <= s["synops"] for s in streamed)
    assert sum(layer["synops_per_sample"] for layer in demo["layers"]) == pytest.approx(demo["synops_per_sample"])
    assert 0.5 < demo["accuracy"] <= 1.0  # a trained model on real recordings it never saw
    assert demo["synops_per_sample"] < demo["dense_macs_per_sample"]
    fp32 = demo["energy_estimate"]["fp32"]
    assert fp32["snn_event_driven_pj"] == pytest.approx(demo["synops_per_sample"] * 0.9)
    assert demo["speedup_vs_dense"] is None and demo["speed"] is None
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.slow
def test_demo_measures_evsim_against_dense_pytorch(capsys, nmnist_root):
    """The demo's step-mode figures against the dense float64 model on the same 19 recordings:
    accuracy, synaptic operations (per-kind formula) and the agreement of predictions."""
    pytest.importorskip("torch")
    from evsim.datasets.samples import load_samples
    from evsim.model.file import load_model
    from evsim.training.network import dense_forward
    from test_engine_exact import expected_synops

    from evsim.analysis.demo import format_demo

    demo = run_json(capsys, ["demo", "--mode", "step", "--json", "--rounds", "1", "--no-figure"])
    text = format_demo(demo)  # what `evsim demo` prints, from the same figures
    assert "speedup vs dense" in text and "accuracy" in text and "energy estimate" in text

    model = load_model("lenet-nmnist")
    graph = model.graph
    samples = load_samples("nmnist", nmnist_root, "test", encoding=graph.encoding)
    assert len(samples) == demo["samples"] == 19
    frames = samples.inputs(np.arange(19), graph.timesteps, np.random.default_rng(0)).astype(np.float64)
    output, counts = dense_forward(graph, {k: v.astype(np.float64) for k, v in model.weights.items()}, frames)
    events = {"input": np.abs(frames).sum(0), **counts}
    synops = np.mean([sum(expected_synops(graph, pop, {k: v[i] for k, v in events.items()}) for pop in graph.populations)
                      for i in range(19)])
    top2 = np.sort(output, axis=1)[:, -2:]
    ties = int((top2[:, 1] - top2[:, 0] < 1e-5).sum())
    accuracy = float(np.mean(output.argmax(1) == np.asarray(samples.labels)))
    assert abs(demo["accuracy"] - accuracy) <= ties / 19 and accuracy > 0.5
    assert demo["synops_per_sample"] == pytest.approx(synops, rel=1e-3)  # float32 engine: rounding-level ties only
    speed = demo["speed"]
    assert speed["step_equals_dense_predictions"] >= 1 - ties / 19  # the exactness oracle, on the demo's recordings
    assert demo["speedup_vs_dense"] == pytest.approx(speed["event_samples_per_s"] / speed["dense_batch1_samples_per_s"])
    assert demo["figure"] is None


def test_demo_refuses_a_folder_without_recordings(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path), "--no-dense", "--no-figure"]) == 2
    assert "N-MNIST" in capsys.readouterr().err
