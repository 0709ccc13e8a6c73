"""ANN baseline and ANN-to-SNN conversion (evsim.training.ann, evsim.training.convert): rates
approach activations as T grows, a converted net's predictions approach its ANN's, and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from evsim.cli.main import main  # noqa: E402
from evsim.datasets.encoding import poisson_spikes  # noqa: E402
from evsim.datasets.samples import load_samples  # noqa: E402
from evsim.engine.network import Network  # noqa: E402
from evsim.errors import ModelError  # noqa: E402
from evsim.model.file import load_model, save_model  # noqa: E402
from evsim.model.graph import INPUT, Graph, Population, Projection  # noqa: E402
from evsim.training.ann import ANN_META, AnalogNetwork, analog_inputs, run_ann_epoch  # noqa: E402
from evsim.training.convert import Conversion, activation_scales, convert, converted  # noqa: E402
from evsim.training.network import dense_forward  # noqa: E402

MNIST_SAMPLE = Path(__file__).parent / "data" / "mnist"


def one_layer_graph() -> Graph:
    """36 inputs -> 24 neurons -> 3 outputs, fully connected."""
    return Graph((1, 6, 6), (
        Population("fc1", "lif", (24,), (Projection(INPUT, "linear", "fc1"),)),
        Population("out", "output", (3,), (Projection("fc1", "linear", "out"),)),
    ), timesteps=10, encoding={"kind": "poisson", "scale": 1.0}, meta={"dataset": "mnist", **ANN_META})


def test_a_converted_layers_firing_rate_approaches_its_ann_activation():
    graph = one_layer_graph()
    rng = np.random.default_rng(0)
    weights = {"fc1": rng.normal(0.05, 0.2, (24, 36)).astype(np.float32),
               "out": rng.normal(0.0, 0.3, (3, 24)).astype(np.float32)}
    images = rng.random((16, 1, 6, 6)).astype(np.float32)
    ann = AnalogNetwork(graph, init=False).double()
    ann.load_weights(weights)
    record = {}
    with torch.no_grad():
        ann(torch.from_numpy(images).double(), record=record)
    activation = record["fc1"].numpy()
    assert (activation > 0).mean() > 0.3  # enough active neurons for the comparison to mean something
    scale = float(activation.max())  # the layer-wise maximum (percentile 100): no neuron saturates
    errors = {}
    for steps in (10, 100, 1000):
        snn, snn_weights = converted(graph, weights, {"fc1": scale}, timesteps=steps)
        assert snn.population("fc1").reset == "subtract" and snn.population("fc1").leak == 1.0
        frames = poisson_spikes(images, steps, np.random.default_rng(steps), scale=1.0)
        _, counts = dense_forward(snn, snn_weights, frames)
        errors[steps] = np.abs(counts["fc1"] / steps - activation / scale).mean()
        if steps == 100:  # the event engine fires the same spikes
            engine = Network(snn, snn_weights, dtype=np.float64)
            results = engine.run(frames, record_spikes=True)
            np.testing.assert_array_equal(np.stack([r.spike_counts["fc1"] for r in results]), counts["fc1"])
    assert errors[10] > errors[100] > errors[1000]
    assert errors[1000] < 0.02, errors


def tiny_graph() -> Graph:
    return Graph((1, 28, 28), (
        Population("conv1", "lif", (6, 14, 14), (Projection(INPUT, "conv", "conv1", kernel=5, stride=2, padding=2),)),
        Population("pool1", "pool", (6, 7, 7), (Projection("conv1", "avgpool", None, kernel=2, stride=2),)),
        Population("fc1", "lif", (32,), (Projection("pool1", "linear", "fc1"),)),
        Population("out", "output", (10,), (Projection("fc1", "linear", "out"),)),
    ), timesteps=10, encoding={"kind": "poisson", "scale": 0.5}, meta={"arch": "tiny", "dataset": "mnist", **ANN_META})


@pytest.fixture(scope="module")
def tiny_ann():  # about 5 s on an idle core
    """A small ANN trained for a few epochs on the 1000 vendored MNIST training images."""
    torch.manual_seed(0)
    train = load_samples("mnist", MNIST_SAMPLE, "train")
    network = AnalogNetwork(tiny_graph(), dropout=0.1)
    optimizer = torch.optim.Adam(network.weights, lr=3e-3)
    for epoch in range(4):
        run_ann_epoch(network, train, 10, 32, np.random.default_rng(epoch), optimizer)
    return network.eval(), train


@pytest.mark.slow
def test_a_tiny_converted_nets_accuracy_approaches_its_anns(tiny_ann):
    network, train = tiny_ann
    test = load_samples("mnist", MNIST_SAMPLE, "test", limit=150)
    with torch.no_grad():
        ann_pred = network(torch.from_numpy(analog_inputs(test, np.arange(len(test)), 10, None))).argmax(1).numpy()
    ann_accuracy = (ann_pred == test.labels).mean()
    assert ann_accuracy > 0.8
    snn, weights, scales = convert(network, train, Conversion(percentile=99.9))
    assert set(scales) == {"conv1", "pool1", "fc1"}
    # chains keep the ANN's weights: the scales are in the thresholds
    for name, weight in network.export_weights().items():
        np.testing.assert_array_equal(weights[name], weight)
    assert snn.population("pool1").threshold == pytest.approx(scales["pool1"] / scales["conv1"])
    agreement, accuracy = {}, {}
    for steps in (4, 150):
        frames = test.inputs(np.arange(len(test)), steps, np.random.default_rng(1))
        output, _ = dense_forward(dataclasses.replace(snn, timesteps=steps), weights, frames)
        agreement[steps] = (output.argmax(1) == ann_pred).mean()
        accuracy[steps] = (output.argmax(1) == test.labels).mean()
    assert agreement[150] >= 0.95 and agreement[150] > agreement[4], agreement
    assert accuracy[150] >= ann_accuracy - 0.03, (accuracy, ann_accuracy)


@pytest.mark.slow
def test_scales_are_the_percentile_of_non_zero_activations(tiny_ann):
    network, train = tiny_ann
    calibration = train.take(np.arange(64))
    record = {}
    with torch.no_grad():
        network(torch.from_numpy(analog_inputs(calibration, np.arange(64), 10, None)), record=record)
    scales = activation_scales(network, calibration, percentile=99.0, batch_size=16)
    for name, values in record.items():
        values = values.numpy()
        assert scales[name] == pytest.approx(np.percentile(values[values > 0], 99.0))
    peak = activation_scales(network, calibration, percentile=100.0, batch_size=16)
    assert peak["fc1"] == pytest.approx(float(record["fc1"].max()))


def test_a_residual_sum_scales_the_weighted_path_to_the_skips_reference():
    graph = Graph((1, 4, 4), (
        Population("conv1", "lif", (2, 4, 4), (Projection(INPUT, "conv", "conv1", kernel=3, padding=1),)),
        Population("conv2", "lif", (2, 4, 4), (Projection("conv1", "conv", "conv2", kernel=3, padding=1),)),
        Population("conv3", "lif", (2, 4, 4), (Projection("conv2", "conv", "conv3", kernel=3, padding=1),
                                               Projection("conv1", "identity", None))),
        Population("out", "output", (3,), (Projection("conv3", "linear", "out"),)),
    ), timesteps=5, meta=dict(ANN_META))
    rng = np.random.default_rng(0)
    weights = {name: rng.normal(size=shape).astype(np.float32) for name, shape in graph.weight_shapes().items()}
    scales = {"conv1": 2.0, "conv2": 4.0, "conv3": 3.0}
    snn, converted_weights = converted(graph, weights, scales)
    assert snn.population("conv3").threshold == pytest.approx(3.0 / 2.0)  # the identity skip's source
    np.testing.assert_allclose(converted_weights["conv3"], weights["conv3"] * 2.0)  # lambda_conv2 / lambda_conv1
    np.testing.assert_array_equal(converted_weights["conv2"], weights["conv2"])
    assert "ann" not in snn.meta


@pytest.fixture(scope="module")
def ann_file(tiny_ann, tmp_path_factory):
    network, _ = tiny_ann
    path = tmp_path_factory.mktemp("ann") / "tiny-ann.npz"
    save_model(path, network.graph, network.export_weights())
    return path


@pytest.mark.slow
def test_convert_and_eval_cli(ann_file, tmp_path, capsys):
    out = tmp_path / "snn.npz"
    assert main(["convert", "--model", str(ann_file), "--data", str(MNIST_SAMPLE), "--out", str(out),
                 "--timesteps", "30", "--calibration", "200", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "reset by subtraction" in printed and "pool1" in printed
    model = load_model(out)
    assert model.graph.timesteps == 30 and model.graph.meta["conversion"]["calibration_samples"] == 200
    assert main(["eval", "--model", str(ann_file), "--data", str(MNIST_SAMPLE), "--limit", "100", "--no-progress"]) == 0
    assert "ANN on cpu" in capsys.readouterr().out
    # the converted model is an ordinary evsim model: the engine runs it
    assert main(["run", "--model", str(out), "--data", str(MNIST_SAMPLE), "--limit", "5", "--no-progress"]) == 0


@pytest.mark.slow
def test_convert_refuses_a_spiking_model_and_a_bad_percentile(ann_file, tmp_path, capsys):
    assert main(["convert", "--model", "lenet-mnist", "--data", str(MNIST_SAMPLE), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "not an ANN" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:  # checked when the options are read (issue 30)
        main(["convert", "--model", str(ann_file), "--data", str(MNIST_SAMPLE), "--out", str(tmp_path / "x.npz"),
              "--percentile", "0"])
    assert exc.value.code == 2 and "--percentile" in capsys.readouterr().err


def test_the_engine_refuses_an_ann(tmp_path, capsys):
    graph = one_layer_graph()
    rng = np.random.default_rng(0)
    weights = {name: rng.normal(size=shape).astype(np.float32) for name, shape in graph.weight_shapes().items()}
    path = save_model(tmp_path / "ann.npz", graph, weights)
    with pytest.raises(ModelError, match="is an ANN"):
        Network.from_file(path)
    assert main(["run", "--model", str(path), "--data", str(MNIST_SAMPLE), "--limit", "1", "--no-progress"]) == 2
    assert "convert it first" in capsys.readouterr().err


def test_the_bundled_ann_loads_by_name_and_scores_what_its_card_says(capsys, mnist_root):
    from evsim.paths import BUNDLED_MODELS

    cards = (BUNDLED_MODELS / "README.md").read_text()
    assert (BUNDLED_MODELS / "lenet-mnist-ann.npz").stat().st_size < 5 * 2**20
    model = load_model("lenet-mnist-ann")
    assert model.graph.meta["ann"] and model.graph.meta["arch"] == "lenet" and model.graph.meta["dataset"] == "mnist"
    assert "## `lenet-mnist-ann`" in cards and "evsim convert --model lenet-mnist-ann" in cards
    assert main(["eval", "--model", "lenet-mnist-ann", "--data", str(mnist_root), "--json", "--threads", "1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 500 and result["mode"] == "ann"
    assert f"{100 * result['accuracy']:.2f} % on the 500 vendored test images" in cards


@pytest.mark.slow
def test_report_compare_puts_models_side_by_side_on_the_same_inputs(ann_file, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    snn = tmp_path / "tiny-snn.npz"
    assert main(["convert", "--model", str(ann_file), "--data", str(MNIST_SAMPLE), "--out", str(snn),
                 "--timesteps", "20", "--calibration", "100"]) == 0
    capsys.readouterr()
    out = tmp_path / "compare"
    assert main(["report", "--compare", str(snn), str(ann_file), "lenet-mnist", "--data", str(MNIST_SAMPLE),
                 "--limit", "6", "--latencies", "5,10", "--threads", "1", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    kinds = [m["kind"] for m in result["models"]]
    assert kinds == ["converted", "ann", "snn"]
    converted_entry, ann_entry, direct = result["models"]
    assert [r["timesteps"] for r in converted_entry["analysis"]["latency"]] == [5, 10, 20]
    assert [r["timesteps"] for r in direct["analysis"]["latency"]] == [5, 10, 25]
    # the same inputs: the first 5 steps of the same Poisson trains carry the same input spikes
    assert converted_entry["analysis"]["latency"][0]["input_events"] == direct["analysis"]["latency"][0]["input_events"]
    # iso-accuracy is the first model's best accuracy; it reaches it where its best is first seen
    summary = converted_entry["summary"]
    assert result["iso_accuracy"]["target"] == summary["max_accuracy"]
    assert summary["iso_accuracy_timesteps"] == summary["max_accuracy_timesteps"]
    assert 0.0 <= ann_entry["accuracy"] <= 1.0 and ann_entry["ann_macs"] == converted_entry["ann_macs"]
    markdown = (out / "report.md").read_text()
    assert "tables 8 and 9" in markdown and "fig. 11" in markdown and "fig. 9" in markdown
    assert all((out / name).stat().st_size > 0 for name in ("compare_accuracy.png", "compare_compute.png"))


def test_report_refuses_compare_with_model_and_a_single_model(capsys):
    assert main(["report", "--compare", "lenet-mnist", "--data", str(MNIST_SAMPLE), "--out", "/tmp/x"]) == 2
    assert "at least two" in capsys.readouterr().err
    assert main(["report", "--compare", "lenet-mnist", "lenet-mnist", "--model", "lenet-mnist", "--out", "/tmp/x"]) == 2
    assert "not both" in capsys.readouterr().err
