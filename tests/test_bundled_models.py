"""The models shipped in evsim/models: loadable by name, small, and as accurate as their cards say."""

from __future__ import annotations

import json

import pytest

import evsim
from evsim.cli.main import main
from evsim.model.file import load_model
from evsim.paths import BUNDLED_MODELS

CARDS = (BUNDLED_MODELS / "README.md").read_text()


@pytest.mark.parametrize("name, dataset", [("lenet-mnist", "mnist"), ("lenet-nmnist", "nmnist")])
def test_bundled_models_load_by_name_and_are_small(name, dataset):
    path = BUNDLED_MODELS / f"{name}.npz"
    assert path.stat().st_size < 5 * 2**20
    model = load_model(name)
    assert model.graph.meta["arch"] == "lenet" and model.graph.meta["dataset"] == dataset
    assert f"## `{name}`" in CARDS
    assert evsim.load(name).name == name


def run_json(capsys, args):
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_lenet_mnist_scores_what_its_card_says_on_the_vendored_images(capsys, mnist_root):
    result = run_json(capsys, ["run", "--model", "lenet-mnist", "--dataset", "mnist", "--data", str(mnist_root), "--json"])
    assert result["samples"] == 500
    assert f"{100 * result['accuracy']:.2f} % (engine, seed 0" in CARDS


def test_lenet_nmnist_scores_what_its_card_says_on_the_bundled_recordings(capsys, nmnist_root):
    args = ["run", "--model", "lenet-nmnist", "--dataset", "nmnist", "--data", str(nmnist_root), "--json"]
    step = run_json(capsys, args)
    streamed = run_json(capsys, args + ["--mode", "async"])
    assert step["samples"] == streamed["samples"] == 19
    assert f"{100 * step['accuracy']:.2f} % (step mode)" in CARDS
    correct = round(streamed["accuracy"] * 19)
    assert f"{100 * streamed['accuracy']:.2f} %\n    ({correct} of 19, async" in CARDS
