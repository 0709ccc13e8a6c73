"""A short real training run on the vendored MNIST sample, through ``evsim train`` and ``evsim eval``."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evsim.cli.main import main  # noqa: E402
from evsim.model.file import load_model  # noqa: E402
from evsim.datasets.samples import load_samples  # noqa: E402
from evsim.training.network import SpikingNetwork, load_trained  # noqa: E402
from evsim.training.trainer import evaluate  # noqa: E402

MNIST_SAMPLE = Path(__file__).parent / "data" / "mnist"
TIMESTEPS = 8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One epoch of LeNet on the 1000 vendored training images: the model file and the CLI's output."""
    out = tmp_path_factory.mktemp("run") / "lenet.npz"
    args = ["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(MNIST_SAMPLE), "--epochs", "1",
            "--timesteps", str(TIMESTEPS), "--out", str(out), "--lr", "0.01", "--momentum", "0.9",
            "--batch-size", "8", "--seed", "0", "--no-progress", "--threads", "1"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(args)
    assert code == 0, stdout.getvalue()
    return out, stdout.getvalue()


def run_cli(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_training_lowers_the_loss_and_beats_chance(trained):
    out, stdout = trained
    assert "epoch 1/1" in stdout and "test accuracy" in stdout
    model = load_model(out)
    assert model.graph.meta["arch"] == "lenet" and model.graph.meta["epochs"] == 1
    assert model.graph.encoding == {"kind": "poisson", "scale": 0.5}
    assert model.graph.timesteps == TIMESTEPS

    test_set = load_samples("mnist", MNIST_SAMPLE, "test")
    assert len(test_set) == 500
    torch.manual_seed(0)  # the trainer's initialisation for --seed 0
    untrained = SpikingNetwork(model.graph)
    before = evaluate(untrained, test_set, TIMESTEPS, batch_size=8)
    after = evaluate(load_trained(out), test_set, TIMESTEPS, batch_size=8)
    assert after.loss < 0.8 * before.loss
    assert after.accuracy > 0.4  # chance is 0.1; this run reaches about 0.65
    print(f"test loss {before.loss:.4f} -> {after.loss:.4f}, accuracy {before.accuracy:.3f} -> {after.accuracy:.3f}")
    assert model.graph.meta["accuracy"] == pytest.approx(after.accuracy)  # same seed, same spikes


@pytest.mark.slow
def test_eval_cli_json(trained, capsys):
    out, _ = trained
    code, stdout, _ = run_cli(capsys, ["eval", "--model", str(out), "--data", str(MNIST_SAMPLE), "--limit", "100", "--json"])
    assert code == 0
    report = json.loads(stdout)
    assert report["samples"] == 100 and report["timesteps"] == TIMESTEPS and report["dataset"] == "mnist"
    assert 0.3 < report["accuracy"] <= 1.0
    code, stdout, _ = run_cli(capsys, ["eval", "--model", str(out), "--data", str(MNIST_SAMPLE), "--limit", "100"])
    assert code == 0 and "accuracy" in stdout


def test_checkpoint_resume_continues_where_it_stopped(tmp_path, capsys):
    out = tmp_path / "small.npz"
    base = ["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(MNIST_SAMPLE), "--timesteps", "4",
            "--out", str(out), "--limit", "64", "--test-limit", "32", "--no-progress", "--milestones", "1",
            "--threads", "1"]
    code, stdout, _ = run_cli(capsys, base + ["--epochs", "1"])
    assert code == 0
    checkpoint = Path(f"{out}.checkpoint.pt")
    assert checkpoint.is_file()
    first = load_model(out).weights
    code, stdout, _ = run_cli(capsys, base + ["--epochs", "2", "--resume"])
    assert code == 0
    assert "resumed" in stdout and "epoch 2/2" in stdout and "epoch 1/2" not in stdout
    assert "lr 0.002" in stdout  # the schedule resumed too: 0.01 * 0.2 after milestone 1
    second = load_model(out)
    assert second.graph.meta["epochs"] == 2
    assert any(not np.array_equal(first[k], second.weights[k]) for k in first)


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    code, _, err = run_cli(capsys, ["eval", "--model", str(tmp_path / "missing.npz"), "--data", str(MNIST_SAMPLE)])
    assert code == 2 and "missing.npz" in err
    code, _, err = run_cli(capsys, ["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(tmp_path),
                                     "--epochs", "1", "--timesteps", "2", "--out", str(tmp_path / "m.npz")])
    assert code == 2 and "error" in err
    code, _, err = run_cli(capsys, ["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(MNIST_SAMPLE),
                                     "--epochs", "1", "--timesteps", "2", "--out", str(tmp_path / "m.npz"),
                                     "--resume"])
    assert code == 2 and "checkpoint" in err


def test_engine_and_cli_import_without_torch():
    code = (
        "import sys, evsim, evsim.cli.main, evsim.engine.network, evsim.model.file\n"
        "evsim.cli.main.build_parser()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nmnist_training_records_the_event_encoding(nmnist_root, tmp_path, capsys):
    out = tmp_path / "nmnist.npz"
    code, stdout, _ = run_cli(capsys, ["train", "--arch", "lenet", "--dataset", "nmnist", "--data", str(nmnist_root),
                                       "--epochs", "1", "--timesteps", "5", "--out", str(out), "--no-progress",
                                       "--threads", "1"])
    assert code == 0, stdout
    assert "adam" in stdout
    graph = load_model(out).graph
    assert graph.input_shape == (2, 34, 34)
    assert graph.encoding == {"kind": "events", "window_us": 300_000, "sensor_size": [34, 34, 2]}
    code, stdout, _ = run_cli(capsys, ["eval", "--model", str(out), "--data", str(nmnist_root), "--json"])
    assert code == 0
    report = json.loads(stdout)
    assert report["dataset"] == "nmnist" and report["timesteps"] == 5
    assert report["samples"] == len(list((nmnist_root / "Test").rglob("*.bin")))


@pytest.mark.slow
def test_engine_reproduces_the_trained_model_in_float32(trained):
    """On the same spike trains, the event engine (float32) predicts what the dense trainer
    (float32) predicts, and in float64 every neuron fires exactly as often."""
    import evsim
    from evsim.training import dense_forward

    out, _ = trained
    model = load_model(out)
    test_set = load_samples("mnist", MNIST_SAMPLE, "test", limit=100)
    trains = test_set.inputs(np.arange(len(test_set)), TIMESTEPS, np.random.default_rng(7))
    dense_out, _ = dense_forward(model.graph, model.weights, trains, dtype=torch.float32)
    engine = evsim.load(out, dtype=np.float32)
    engine_pred = np.array([engine.run(trains[:, i]).prediction for i in range(len(test_set))])
    # float32 sums in another order may break a rounding-level tie between the two top classes, nothing more
    top2 = np.sort(dense_out, axis=1)[:, -2:]
    differ = engine_pred != dense_out.argmax(1)
    assert np.all(top2[differ, 1] - top2[differ, 0] < 1e-5), np.flatnonzero(differ)

    weights64 = {k: v.astype(np.float64) for k, v in model.weights.items()}
    dense64, counts = dense_forward(model.graph, weights64, trains[:, :10].astype(np.float64), dtype=torch.float64)
    engine64 = evsim.Network(model.graph, weights64, dtype=np.float64)
    for i in range(10):
        result = engine64.run(trains[:, i], record_spikes=True)
        for name, c in result.spike_counts.items():
            np.testing.assert_array_equal(c, counts[name][i], err_msg=name)
        np.testing.assert_allclose(result.output, dense64[i], rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def macs_per_step(graph, pop) -> int:
    """Multiply-accumulates of one dense step of ``pop``, from the layer shapes alone."""
    total = 0
    for proj in pop.inputs:
        src = graph.shape_of(proj.source)
        if proj.op == "linear":
            total += int(np.prod(src)) * pop.shape[0]
        elif proj.op == "conv":
            total += int(np.prod(pop.shape)) * src[0] * proj.kernel**2
        elif proj.op == "avgpool":
            total += int(np.prod(pop.shape)) * proj.kernel**2
        else:
            total += int(np.prod(src))
    return total


@pytest.mark.slow  # needs the trained fixture: a training epoch
def test_run_cli_json_reports_the_counters(trained, capsys):
    """`evsim run --json` against the dense float64 model on the same Poisson trains: accuracy,
    spikes and synaptic operations per layer (per-kind formula), input events, dense MACs."""
    import evsim
    from evsim.runtime.inputs import sample_inputs
    from evsim.training.network import dense_forward
    from test_engine_exact import expected_synops

    out, _ = trained
    code, stdout, _ = run_cli(capsys, ["run", "--model", str(out), "--dataset", "mnist", "--data", str(MNIST_SAMPLE), "--limit", "40", "--json"])
    assert code == 0
    report = json.loads(stdout)
    model = load_model(out)
    graph = model.graph
    samples = load_samples("mnist", MNIST_SAMPLE, "test", limit=40, encoding=graph.encoding)
    trains = np.stack(list(sample_inputs(samples, evsim.load(out), seed=0)), axis=1)  # the CLI's default seed
    weights64 = {k: v.astype(np.float64) for k, v in model.weights.items()}
    output, counts = dense_forward(graph, weights64, trains.astype(np.float64))
    events = {"input": np.abs(trains).sum(0), **counts}
    assert report["samples"] == 40 and report["timesteps"] == TIMESTEPS
    assert report["input_events_per_sample"] == pytest.approx(events["input"].sum() / 40, rel=1e-12)
    top2 = np.sort(output, axis=1)[:, -2:]
    ties = int((top2[:, 1] - top2[:, 0] < 1e-5).sum())
    accuracy = float(np.mean(output.argmax(1) == np.asarray(samples.labels)))
    assert abs(report["accuracy"] - accuracy) <= ties / 40 and accuracy > 0.3
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert list(layers) == [p.name for p in graph.populations] == ["conv1", "pool1", "conv2", "pool2", "fc1", "out"]
    total_synops = 0.0
    for pop in graph.populations:
        synops = np.mean([expected_synops(graph, pop, {k: v[i] for k, v in events.items()}) for i in range(40)])
        total_synops += synops
        # float32 engine vs float64 formula: a rounding-level tie may flip a spike, nothing more
        assert layers[pop.name]["synops_per_sample"] == pytest.approx(synops, rel=1e-3), pop.name
        if pop.fires:
            assert layers[pop.name]["spikes_per_sample"] == pytest.approx(counts[pop.name].sum() / 40, rel=1e-3), pop.name
    assert report["synops_per_sample"] == pytest.approx(total_synops, rel=1e-3)
    ann = sum(macs_per_step(graph, pop) for pop in graph.populations)
    assert report["ann_macs_per_sample"] == ann and report["dense_macs_per_sample"] == ann * TIMESTEPS
    code, stdout, _ = run_cli(capsys, ["run", "--model", str(out), "--dataset", "mnist", "--data", str(MNIST_SAMPLE), "--limit", "40", "--mode", "async", "--json"])
    assert code == 0
    report = json.loads(stdout)
    assert report["mode"] == "async" and report["samples"] == 40 and report["synops_per_sample"] > 0