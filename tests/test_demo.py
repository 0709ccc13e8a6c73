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
def test_demo_measures_evsim_against_dense_pytorch(tmp_path, capsys):
    pytest.importorskip("torch")
    code = main(["demo", "--rounds", "1", "--figure", str(tmp_path / "demo.png")])
    out = capsys.readouterr().out
    assert code == 0
    assert "speedup vs dense" in out and "accuracy" in out and "energy estimate" in out
    demo = run_json(capsys, ["demo", "--json", "--rounds", "1", "--no-figure"])
    assert demo["speedup_vs_dense"] > 0 and demo["figure"] is None
    speed = demo["speed"]
    assert demo["mode"] == "step"  # the default: the trained network's time steps
    assert demo["speedup_vs_dense"] == pytest.approx(speed["event_samples_per_s"] / speed["dense_batch1_samples_per_s"])
    assert demo["async_speedup_vs_dense"] == pytest.approx(speed["async_samples_per_s"] / speed["dense_batch1_samples_per_s"])
    assert speed["step_equals_dense_predictions"] == 1.0  # the exactness oracle, on the demo's recordings


def test_demo_refuses_a_folder_without_recordings(tmp_path, capsys):
    assert main(["demo", "--data", str(tmp_path), "--no-dense", "--no-figure"]) == 2
    assert "N-MNIST" in capsys.readouterr().err
