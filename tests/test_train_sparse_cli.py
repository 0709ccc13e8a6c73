"""``evsim train`` with the activity penalty, augmentation and a validation split."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from evsim.cli.main import main  # noqa: E402
from evsim.model.file import load_model  # noqa: E402


def exit_code(argv) -> int:
    """``evsim ARGV``'s exit status, whether the command returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--spike-bound", "conv1"], "LAYER=N"),
        (["--spike-bound", "out=5"], "not a spiking population"),
        (["--keep", "best-val"], "needs a validation split"),
        (["--val", "-3"], "--val"),
        (["--synops-penalty=-1e-7"], "--synops-penalty: must be 0 or more"),
        (["--synops-target", "0"], "synops-target"),
        (["--ann", "--mix-simulated", "10"], "apply to spiking training"),
        (["--simulated-data", "mnist"], "pass --mix-simulated too"),
        (["--augment-rotate", "10"], "use them with --dataset nmnist --augment"),
        (["--augment", "--augment-scale", "0.7"], "augmentation ranges out of bounds"),
    ],
)
def test_bad_options_are_one_line_errors(extra, message, nmnist_root, tmp_path, capsys):
    args = ["train", "--arch", "lenet", "--dataset", "nmnist", "--data", str(nmnist_root), "--epochs", "1",
            "--timesteps", "4", "--out", str(tmp_path / "m.npz"), "--no-progress", *extra]
    assert exit_code(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_augment_shifts_mnist_digits(mnist_root, tmp_path, capsys):
    args = ["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(mnist_root), "--epochs", "1",
            "--timesteps", "2", "--limit", "32", "--test-limit", "8", "--out", str(tmp_path / "m.npz"),
            "--no-progress", "--threads", "1", "--augment"]
    assert main(args) == 0
    assert "augmentation shifts of up to 2 pixels" in capsys.readouterr().out
    args[args.index("mnist")] = "cifar10"  # colour images are always cropped and flipped
    args.append("--force")  # m.npz exists now
    assert exit_code(args) == 2 and "--augment applies to real N-MNIST recordings and to MNIST" in capsys.readouterr().err


def test_augment_rotates_and_scales_recordings_on_request(nmnist_root, tmp_path, capsys):
    args = ["train", "--arch", "lenet", "--dataset", "nmnist", "--data", str(nmnist_root), "--epochs", "1",
            "--timesteps", "4", "--batch-size", "4", "--test-limit", "4", "--out", str(tmp_path / "m.npz"),
            "--no-progress", "--threads", "1", "--augment", "--augment-rotate", "12", "--augment-scale", "0.1"]
    assert main(args) == 0
    assert "rotate=12.0, scale=0.1" in capsys.readouterr().out


@pytest.mark.slow
def test_sparse_fine_tuning_keeps_the_best_by_validation(shared_data, tmp_path, capsys):
    out = tmp_path / "sparse.npz"
    args = ["train", "--arch", "lenet", "--dataset", "nmnist", "--data", str(shared_data / "nmnist"),
            "--epochs", "2", "--timesteps", "10", "--limit", "48", "--val", "16", "--test-limit", "8",
            "--init", "lenet-nmnist", "--lr", "3e-3", "--augment", "--synops-penalty", "1e-6",
            "--spike-bound", "conv1=5000", "--keep", "best-val", "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "32 train / 16 validation / 8 test samples" in stdout
    assert "best epoch by validation accuracy" in stdout and "the best by validation" in stdout
    history = torch.load(f"{out}.checkpoint.pt", weights_only=True)["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    for h in history:
        assert h["val_penalty"] > 0 and h["val_synops"] > 0 and 0 <= h["val_accuracy"] <= 1
    assert history[1]["train_synops"] < history[0]["train_synops"]  # the penalty bites at once at lr 3e-3
    best = max(history, key=lambda h: (h["val_accuracy"], -h["val_synops"]))
    meta = load_model(out).graph.meta
    assert meta["epochs"] == best["epoch"] and meta["val_accuracy"] == pytest.approx(best["val_accuracy"])
    assert meta["val_samples"] == 16 and meta["train_samples"] == 32


def test_resuming_a_finished_run_is_a_one_line_error(shared_data, tmp_path, capsys):
    out = tmp_path / "m.npz"
    args = ["train", "--arch", "lenet", "--dataset", "nmnist", "--data", str(shared_data / "nmnist"), "--epochs", "1",
            "--timesteps", "4", "--limit", "20", "--val", "10", "--test-limit", "2", "--out", str(out),
            "--no-progress", "--threads", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "already holds 1 epochs" in err and len(err.strip().splitlines()) == 1


def test_the_best_epoch_is_chosen_within_the_synops_budget():
    from evsim.training.trainer import best_by_validation

    history = [{"epoch": 1, "val_accuracy": 0.95, "val_synops": 9e6},
               {"epoch": 2, "val_accuracy": 0.90, "val_synops": 4e6},
               {"epoch": 3, "val_accuracy": 0.92, "val_synops": 4.5e6},
               {"epoch": 4, "val_accuracy": 0.92, "val_synops": 4.2e6}]
    assert best_by_validation(history) == 1
    assert best_by_validation(history, 5e6) == 4  # of equal accuracy, the cheaper
    assert best_by_validation(history, 4.4e6) == 4
    assert best_by_validation(history, 1e6) is None


@pytest.mark.parametrize("extra, message", [
    (["--synops-budget", "5e6"], "goes with --keep best-val"),
    (["--synops-budget", "0", "--keep", "best-val", "--val", "4"], "must be positive"),
])
def test_a_synops_budget_needs_best_val(mnist_root, tmp_path, capsys, extra, message):
    args = ["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(mnist_root), "--epochs", "1",
            "--timesteps", "4", "--out", str(tmp_path / "m.npz"), "--no-progress", *extra]
    assert exit_code(args) == 2 and message in capsys.readouterr().err


def test_with_no_epoch_in_the_budget_the_last_is_written_and_said(mnist_root, tmp_path, capsys):
    out = tmp_path / "m.npz"
    args = ["train", "--arch", "lenet", "--dataset", "mnist", "--data", str(mnist_root), "--epochs", "2",
            "--timesteps", "4", "--limit", "40", "--val", "10", "--test-limit", "10", "--keep", "best-val",
            "--synops-budget", "1", "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "among those of at most 1 validation synops per sample" in stdout
    assert "no epoch met the synops budget" in stdout and "the last (none met the synops budget)" in stdout
    assert load_model(out).graph.meta["epochs"] == 2


def test_mix_simulated_adds_a_fresh_draw_of_simulated_recordings_each_epoch(nmnist_root, simulated_mnist_root,
                                                                              tmp_path, capsys):
    out = tmp_path / "mix.npz"
    args = ["train", "--arch", "lenet", "--dataset", "nmnist", "--data", str(nmnist_root), "--epochs", "2",
            "--timesteps", "4", "--batch-size", "8", "--mix-simulated", "24", "--simulated-data",
            str(simulated_mnist_root), "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args) == 0
    assert "1 train + 24 simulated per epoch / 19 test samples" in capsys.readouterr().out
    history = torch.load(f"{out}.checkpoint.pt", weights_only=True)["history"]
    assert [h["epoch_samples"] for h in history] == [1 + 24, 1 + 24]  # the simulated ones are trained on
    assert load_model(out).graph.meta["simulated_per_epoch"] == 24
    simulated_only = [arg if arg != "nmnist" else "nmnist-sim" for arg in args]
    args, simulated_only = args + ["--force"], simulated_only + ["--force"]  # mix.npz exists now
    for bad, message in ((args + ["--mix-simulated", "41"], "more than the 40 simulated recordings"),
                         (args + ["--mix-simulated", "-1"], "--mix-simulated: must be 0 or more"),
                         (simulated_only, "adds simulated recordings to real N-MNIST ones")):
        assert exit_code(bad) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
