"""Issue 14, a user's first hour, through the command line: every documented mistake ends in
exit code 2 and one line on stderr, never a traceback (points 3, 6, 7 and their siblings); the
bundled data from any folder (4); one vocabulary (5); labelled speeds (9); nothing written into
the repository (10).

Commands run in-process (``main(argv)``: an escaping exception would fail the test) except where
a missing optional dependency is simulated, which needs a fresh interpreter: there each command
runs in a child process whose ``sys.modules[name]`` is None, so that importing it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evsim.cli.main import EXTRAS, build_parser, main
from evsim.paths import BUNDLED_DATA

NMNIST = BUNDLED_DATA / "nmnist"
SEVEN = NMNIST / "Test/7/00001.bin"
README = Path(__file__).resolve().parent.parent / "README.md"
COMMANDS = ("info", "train", "eval", "run", "stream", "bench", "report", "demo")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``evsim ARGV``, argparse's exits included."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(capsys, *argv, match: str) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (argv, out, err)
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no usage block
    assert lines[0].startswith(f"evsim {argv[0]}: error: "), lines[0]
    assert re.search(match, lines[0]), lines[0]
    return lines[0]


@pytest.fixture()
def elsewhere(tmp_path, monkeypatch):
    """A user's own folder, far from the repository, with no data folder configured."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVSIM_DATA", str(tmp_path / "no-data-here"))
    return tmp_path


# --- 3. tracebacks, 6. bad values accepted, and their siblings ---------------------------


BAD_VALUES = [
    # (argv, what the one line must say)
    (["bench", "--model", "lenet-nmnist", "--rounds", "0"], r"--rounds: must be at least 1, got 0"),
    (["bench", "--model", "lenet-nmnist", "--threads", "0"], r"--threads: must be at least 1"),
    (["bench", "--model", "lenet-nmnist", "--limit", "-1"], r"--limit: must be at least 1"),
    (["run", "--model", "lenet-nmnist", "--threads", "-3"], r"--threads: must be at least 1, got -3"),
    (["run", "--model", "lenet-nmnist", "--threads", "two"], r"--threads: expected a whole number, got 'two'"),
    (["run", "--model", "lenet-nmnist", "--limit", "0"], r"--limit: must be at least 1"),
    (["run", "--model", "lenet-nmnist", "--mode", "fast"], r"--mode: invalid choice: 'fast'"),
    (["run", "--model", "lenet-nmnist", "--dataset", "imagenet"], r"--dataset: invalid choice"),
    (["run", "--model", "lenet-nmnist", "--workers", "2"], r"unrecognized arguments: --workers 2"),
    (["eval", "--model", "lenet-nmnist", "--timesteps", "0"], r"--timesteps/-T: must be at least 1, got 0"),
    (["eval", "--model", "lenet-nmnist", "--batch-size", "0"], r"--batch-size: must be at least 1"),
    (["train", "--arch", "lenet", "--dataset", "mnist", "--epochs", "0", "--timesteps", "4", "--out", "x.npz"],
     r"--epochs: must be at least 1"),
    (["train", "--arch", "lenet", "--dataset", "mnist", "--epochs", "1", "--timesteps", "-1", "--out", "x.npz"],
     r"--timesteps/-T: must be at least 1"),
    (["train", "--arch", "lenet", "--dataset", "mnist", "--epochs", "1", "-T", "4", "--out", "x.npz", "--limit", "9:3"],
     r"--limit: START:STOP needs 0 <= START < STOP, got '9:3'"),
    (["train", "--arch", "lenet", "--dataset", "mnist", "--epochs", "1", "-T", "4", "--out", "x.npz", "--limit", "a:3"],
     r"--limit: expected N or START:STOP, got 'a:3'"),
    (["train", "--arch", "lenet", "--dataset", "cifar10", "--data", ".", "--epochs", "1", "-T", "4", "--out", "x.npz",
      "--augment"],
     r"--augment applies to real N-MNIST recordings and to MNIST"),
    (["report", "--model", "lenet-nmnist", "--out", "r", "--latencies", "0"], r"--latencies: time steps must be positive"),
    (["report", "--model", "lenet-nmnist", "--out", "r", "--threads", "0"], r"--threads: must be at least 1"),
    (["report", "--model", "lenet-nmnist", "--out", "r", "--timesteps", "10"], r"unrecognized arguments: --timesteps"),
    (["demo", "--rounds", "0"], r"--rounds: must be at least 1"),
    (["demo", "--threads", "0"], r"--threads: must be at least 1"),
    (["stream", str(SEVEN), "--model", "lenet-nmnist", "--every", "0"], r"--every: must be positive, got 0"),
    (["stream", str(SEVEN), "--model", "lenet-nmnist", "--chunk-events", "0"], r"--chunk-events: must be at least 1, got 0"),
    (["stream", str(SEVEN), "--model", "lenet-nmnist", "--workers", "0"], r"--workers: must be at least 1, got 0"),
    (["run"], r"the following arguments are required: --model"),
]


@pytest.mark.parametrize("argv, match", BAD_VALUES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_VALUES])
def test_bad_values_are_one_line_errors(capsys, elsewhere, argv, match):
    assert_one_line_error(capsys, *argv, match=match)


def test_eval_device_that_this_machine_lacks(capsys, elsewhere):
    torch = pytest.importorskip("torch")
    assert_one_line_error(capsys, "eval", "--model", "lenet-nmnist", "--device", "tpu",
                          match=r"--device 'tpu' is not a torch device; use cpu, cuda, cuda:N or mps")
    assert_one_line_error(capsys, "eval", "--model", "lenet-nmnist", "--device", "cuda:99",
                          match=r"--device cuda:99: (this machine has|there are)")
    if not torch.cuda.is_available():  # the case: CUDA asked of a CPU-only torch
        assert_one_line_error(capsys, "eval", "--model", "lenet-nmnist", "--device", "cuda",
                              match=r"--device cuda: this machine has (a CPU-only torch|no visible GPU); use --device cpu")
        assert_one_line_error(capsys, "train", "--arch", "lenet", "--dataset", "mnist", "--epochs", "1",
                              "--timesteps", "2", "--out", "x.npz", "--device", "cuda", match=r"--device cuda: this machine has")


def test_report_out_naming_an_existing_file(capsys, elsewhere):
    (elsewhere / "taken").write_text("not a folder")
    assert_one_line_error(capsys, "report", "--model", "lenet-nmnist", "--out", "taken",
                          match=r"--out taken is a file; name a folder")
    assert (elsewhere / "taken").read_text() == "not a folder"


def test_model_dataset_mismatch(capsys, elsewhere):
    assert_one_line_error(capsys, "run", "--model", "lenet-nmnist", "--dataset", "mnist",
                          match=r"model lenet-nmnist was trained on nmnist, not mnist")
    assert_one_line_error(capsys, "run", "--model", "lenet-mnist",
                          match=r"no \S*mnist: pass --data, or set \$EVSIM_DATA to the folder holding mnist/")


# --- 7. misleading messages ---------------------------------------------------------------


def test_info_on_a_folder_says_it_is_a_folder(capsys, elsewhere):
    line = assert_one_line_error(capsys, "info", NMNIST, match=r"is a folder, not an event file")
    assert "no such file" not in line
    assert_one_line_error(capsys, "info", elsewhere / "nothing.bin", match=r"nothing.bin: no such file")


def test_a_text_file_as_model_says_it_is_not_a_model(capsys, elsewhere):
    line = assert_one_line_error(capsys, "run", "--model", README, match=r"not an evsim model file")
    assert "pickle" not in line
    assert_one_line_error(capsys, "run", "--model", elsewhere, match=r"is a folder, not a model file")
    assert_one_line_error(capsys, "run", "--model", "lenet-cifar",
                          match=r"no model file or bundled model named 'lenet-cifar' \(bundled: lenet-mnist, lenet-mnist-ann, lenet-nmnist\)")


def test_a_png_named_bin_says_what_it_is(capsys, elsewhere):
    png = elsewhere / "digit.bin"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    line = assert_one_line_error(capsys, "info", png, match=r"the name says N-MNIST \(.bin\) but it is a PNG image file")
    assert "outside" not in line
    junk = elsewhere / "junk.bin"
    junk.write_bytes(bytes([200, 100, 0, 0, 1]) * 10)
    assert_one_line_error(capsys, "stream", junk, "--model", "lenet-nmnist",
                          match=r"its first record is not an N-MNIST event")


# --- 3. missing optional dependencies -------------------------------------------------------


def run_without(module: str, commands: list[list[str]], cwd: Path) -> list[dict]:
    """Each of ``commands`` in one child interpreter in which ``module`` cannot be imported."""
    script = (
        "import contextlib, io, json, sys\n"
        f"sys.modules[{module!r}] = None\n"
        "from evsim.cli.main import main\n"
        "results = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    err = io.StringIO()\n"
        "    with contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            code = main(argv)\n"
        "        except SystemExit as exc:\n"
        "            code = exc.code\n"
        "    results.append({'argv': argv, 'code': code, 'err': err.getvalue()})\n"
        "print(json.dumps(results))\n"
    )
    env = {**os.environ, "EVSIM_DATA": str(cwd / "no-data-here")}
    done = subprocess.run([sys.executable, "-c", script, json.dumps(commands)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


MISSING = {
    "torch": [
        ["eval", "--model", "lenet-nmnist"],
        ["train", "--arch", "lenet", "--dataset", "nmnist", "--epochs", "1", "--timesteps", "2", "--out", "m.npz"],
        ["bench", "--model", "lenet-nmnist", "--limit", "1", "--rounds", "1"],
    ],
    "matplotlib": [["report", "--model", "lenet-nmnist", "--out", "report"]],
    # a Prophesee recording (640 x 480) needs the crop; a 34 x 34 one would be left as it is
    "tonic": [["stream", str(Path(__file__).parent / "data/dvs/ncars_sample_a.dat"), "--model", "lenet-nmnist",
               "--crop", "34", "34"]],
    "aedat": [["info", str(Path(__file__).parent / "data/dvs/sample.aedat4")]],
}


@pytest.mark.parametrize("module", sorted(MISSING))
def test_a_missing_extra_is_one_line_naming_it(tmp_path, module):
    for result in run_without(module, MISSING[module], tmp_path):
        lines = result["err"].strip().splitlines()
        assert result["code"] == 2, result
        assert len(lines) == 1 and "Traceback" not in result["err"], result
        assert f"pip install 'evsim[{EXTRAS[module]}]'" in lines[0] and module in lines[0], result


def test_without_torch_the_engine_commands_still_run(tmp_path):
    [result] = run_without("torch", [["run", "--model", "lenet-nmnist", "--limit", "1", "--json", "--threads", "1"]], tmp_path)
    assert result["code"] == 0, result


# --- 4. the bundled data from any folder, the model's own dataset ---------------------------


def test_run_and_report_from_another_folder_need_neither_dataset_nor_data(capsys, elsewhere):
    code, out, err = run_cli(capsys, "run", "--model", "lenet-nmnist", "--limit", 3, "--threads", 1, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"] == "nmnist" and Path(report["data"]) == NMNIST and report["samples"] == 3
    assert report["events_per_sample"] > report["input_events_per_sample"] > 1000
    assert sum(report["events_dropped"].values()) == round(3 * (report["events_per_sample"] - report["input_events_per_sample"]))
    code, out, err = run_cli(capsys, "report", "--model", "lenet-nmnist", "--limit", 2, "--latencies", "50",
                             "--threads", 1, "--out", "runs/report", "--json")
    assert code == 0, err
    assert json.loads(out)["data"]["dataset"] == "nmnist"
    assert (elsewhere / "runs/report/report.md").is_file()


@pytest.mark.parametrize("command", ["run", "bench", "report", "eval"])
def test_dataset_defaults_to_the_models_own(command):
    args = build_parser().parse_args([command, "--model", "lenet-nmnist", *(["--out", "r"] if command == "report" else [])])
    assert args.dataset is None and args.data is None  # resolved from the model when it is loaded


# --- 5. one vocabulary ----------------------------------------------------------------------


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(parser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


def test_every_command_has_json_no_progress_and_help_on_every_option():
    commands = subparsers()
    assert set(commands) >= set(COMMANDS)
    for name, parser in commands.items():
        opts = options(parser)
        assert "--json" in opts and "--no-progress" in opts, name
        for action in parser._actions:
            assert action.help, (name, action.option_strings or action.dest)


def test_threads_are_threads_and_workers_are_processes():
    for name, parser in subparsers().items():
        opts = options(parser)
        if name in ("run", "report", "bench", "demo", "eval", "train"):
            assert "--threads" in opts and "--workers" not in opts, name
            assert "thread" in opts["--threads"].help, name
        if "--workers" in opts:
            assert name == "stream" and "process" in opts["--workers"].help
        if "--timesteps" in opts:  # one meaning: the number of time steps
            assert opts["--timesteps"].type.__name__ == "positive_int", name


def test_version(capsys):
    import evsim

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"evsim {evsim.__version__}"


def test_the_same_json_key_for_the_file(capsys):
    code, out, _ = run_cli(capsys, "info", SEVEN, "--json")
    assert code == 0
    info = json.loads(out)
    code, out, _ = run_cli(capsys, "stream", SEVEN, "--model", "lenet-nmnist", "--json")
    assert code == 0
    stream = json.loads(out)
    assert info["file"] == stream["file"] == str(SEVEN) and "path" not in info
    assert info["events"] == stream["events"] == 3330


# --- 9. labelled speeds ---------------------------------------------------------------------


def test_bench_names_mode_batch_and_spread(capsys, elsewhere):
    pytest.importorskip("torch")
    code, out, err = run_cli(capsys, "bench", "--model", "lenet-nmnist", "--limit", 2, "--rounds", 2, "--threads", 1,
                             "--json")
    assert code == 0, err
    report = json.loads(out)
    for key, spread in report["spread_samples_per_s"].items():
        assert spread["min"] <= report[key] * (1 + 1e-9) and report[key] <= spread["max"] * (1 + 1e-9), key
    from evsim.cli.bench import format_bench

    text = format_bench(report)
    rates = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(rates) == 6
    for line in rates:
        assert re.search(r"(evsim (step|async) mode|dense PyTorch)(, binned|, raw events)?, batch \d+, \d+ threads?", line), line
        assert re.search(r"\(\d+\.\d \.\. \d+\.\d\)$", line), line  # slowest .. fastest round
    assert "speedup of evsim step mode (batch 1) vs dense PyTorch" in text


def test_run_names_its_mode_batch_and_threads(capsys, elsewhere):
    code, out, err = run_cli(capsys, "run", "--model", "lenet-nmnist", "--limit", 1, "--threads", 1, "--mode", "async")
    assert code == 0, err
    assert re.search(r"samples/s \(evsim async mode, batch 1, 1 thread\)", out), out
    code, out, err = run_cli(capsys, "stream", SEVEN, "--model", "lenet-nmnist", "--every", 100)
    assert code == 0, err
    assert re.search(r"^speed .* \(step mode, batch 1, 1 thread\): [\d.]+x real time$", out, re.M), out


# --- 10. nothing written into the repository --------------------------------------------------


def test_the_guide_and_the_demo_write_into_runs():
    assert str(subparsers()["demo"].get_default("figure")) == "runs/evsim-demo.png"
    text = README.read_text()
    guide = text[text.index("## A short guide"):text.index("## Layout")]
    outputs = re.findall(r"--(?:out|figure) (\S+)", guide)
    assert outputs and all(path.startswith("runs/") for path in outputs), outputs


@pytest.mark.slow
def test_train_and_eval_print_one_json_object(capsys, elsewhere, mnist_root):
    pytest.importorskip("torch")
    code, out, err = run_cli(capsys, "train", "--arch", "lenet", "--dataset", "mnist", "--data", mnist_root,
                             "--epochs", 1, "--timesteps", 2, "--limit", 16, "--test-limit", 8,
                             "--out", "runs/m.npz", "--json")
    assert code == 0, err
    trained = json.loads(out)  # the epoch lines went to stderr
    assert trained["model"] == "runs/m.npz" and [e["epoch"] for e in trained["epochs"]] == [1]
    assert "epoch 1/1" in err and (elsewhere / "runs/m.npz").is_file()
    code, out, err = run_cli(capsys, "eval", "--model", "runs/m.npz", "--data", mnist_root, "--limit", 8, "--json")
    assert code == 0, err
    evaluated = json.loads(out)
    assert evaluated["dataset"] == "mnist" and evaluated["timesteps"] == 2 and evaluated["samples"] == 8
    assert evaluated["mode"] == "dense" and evaluated["batch"] == 32 and evaluated["samples_per_s"] > 0


@pytest.mark.slow
def test_the_demo_says_where_each_speed_was_measured(tmp_path):
    """The demo shows a streaming rate (from the files, one thread) and in-memory rates (several
    threads): each line must say which it is, with the mode, batch and spread across rounds."""
    pytest.importorskip("torch")
    import evsim
    from evsim.analysis.demo import format_demo, run_demo

    for digit in ("1", "7"):  # two recordings keep it short
        (tmp_path / "Test" / digit).mkdir(parents=True)
        source = sorted((NMNIST / "Test" / digit).glob("*.bin"))[0]
        (tmp_path / "Test" / digit / source.name).symlink_to(source)
    text = format_demo(run_demo(evsim.load("lenet-nmnist"), tmp_path, rounds=2, threads=1, progress=False))
    streaming = [line for line in text.splitlines() if "streamed from the files" in line]
    assert len(streaming) == 2 and all("batch 1, 1 thread" in line for line in streaming)
    [memory] = [line for line in text.splitlines() if line.startswith("speed in memory")]
    assert "1 thread, 2 rounds (slowest .. fastest)" in memory
    for label in ("evsim step mode batch 1", "evsim async mode batch 1", "dense PyTorch batch 1", "batch 2 "):
        assert re.search(re.escape(label) + r" ?\d+\.\d/s \(\d+\.\d \.\. \d+\.\d\)", memory), label


def test_the_readme_shows_how_to_install_and_where_other_libraries_come_in():
    text = README.read_text()
    install = text[text.index("## Install and first run"):text.index("## Test")]
    assert "git clone" in install and "pip install torch==2.13.0" in install
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in install
    guide = text[text.index("## A short guide"):text.index("## Layout")]
    assert "[Models from other simulators](#models-from-other-simulators)" in guide
    assert "## Models from other simulators" in text
    keys = text[text.index("### JSON keys"):]
    for key in ("`file`", "`events`", "`input_events`", "`events_dropped`", "`samples_per_s`", "`window`"):
        assert key in keys, key


# --- issue 30: no silent wrong answer, no traceback, no lost work ----------------------------


TRAIN = ["train", "--arch", "lenet", "--dataset", "mnist", "--epochs", "1", "-T", "2"]
NEGATIVE = [
    (["run", "--model", "lenet-nmnist", "--seed", "-1"], r"--seed: must be 0 or more, got -1"),
    (["eval", "--model", "lenet-nmnist", "--seed", "-1"], r"--seed: must be 0 or more"),
    (["report", "--model", "lenet-nmnist", "--out", "r", "--seed", "-1"], r"--seed: must be 0 or more"),
    (["bench", "--model", "lenet-nmnist", "--seed", "-1"], r"--seed: must be 0 or more"),
    (["convert", "--model", "lenet-mnist-ann", "--out", "c.npz", "--seed", "-1"], r"--seed: must be 0 or more"),
    ([*TRAIN, "--out", "m.npz", "--seed", "-1"], r"--seed: must be 0 or more"),
    ([*TRAIN, "--out", "m.npz", "--lr", "-1"], r"--lr: must be 0 or more, got -1"),
    ([*TRAIN, "--out", "m.npz", "--lr", "nan"], r"--lr: expected a finite number"),
    ([*TRAIN, "--out", "m.npz", "--momentum", "-1"], r"--momentum: must be 0 or more, got -1"),
    ([*TRAIN, "--out", "m.npz", "--weight-decay", "-1"], r"--weight-decay: must be 0 or more"),
    ([*TRAIN, "--out", "m.npz", "--dropout", "1"], r"--dropout: must lie in \[0, 1\)"),
    ([*TRAIN, "--out", "m.npz", "--val", "-2"], r"--val: must be 0 or more"),
    (["report", "--compare", "lenet-mnist", "--out", "r", "--iso-accuracy", "90"], r"--iso-accuracy: must lie in \[0, 1\]"),
    (["convert", "--model", "lenet-mnist-ann", "--out", "c.npz", "--percentile", "101"], r"--percentile: must lie in \(0, 100\]"),
    (["stream", str(SEVEN), "--model", "lenet-nmnist", "--downsample", "2"], r"--downsample: must lie in \(0, 1\]"),
    (["import", "x.nir", "--out", "m.npz", "--neuron-dt", "-1"], r"--neuron-dt: must be positive"),
]


@pytest.mark.parametrize("argv, match", NEGATIVE, ids=[" ".join(a[:1] + a[-2:]) for a, _ in NEGATIVE])
def test_every_documented_option_is_checked_when_parsed(capsys, elsewhere, argv, match):
    """Issue 30, point 7: these were tracebacks (exit 1) from numpy or torch."""
    assert_one_line_error(capsys, *argv, match=match)


def test_out_is_checked_before_any_work(capsys, elsewhere, monkeypatch):
    """Point 5: a folder as --out failed with IsADirectoryError after the whole training."""
    pytest.importorskip("torch")
    import evsim.training.trainer as trainer

    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("trained before checking --out"))
    (elsewhere / "runs" / "report").mkdir(parents=True)
    assert_one_line_error(capsys, *TRAIN, "--out", "runs/report", match=r"--out runs/report is a folder; give the model file")
    assert_one_line_error(capsys, "convert", "--model", "lenet-mnist-ann", "--out", "runs/report",
                          match=r"--out runs/report is a folder")
    assert_one_line_error(capsys, *TRAIN, "--out", "runs/model", match=r"name it with the suffix \.npz")
    (elsewhere / "afile").write_text("x")
    assert_one_line_error(capsys, *TRAIN, "--out", "afile/m.npz", match=r"afile is a file, not a folder")
    # the architecture names live in evsim.training.architectures alone (issue 29: the CLI had its own copy)
    assert_one_line_error(capsys, "train", "--arch", "vgg8", *TRAIN[3:], "--out", "m.npz",
                          match=r"--arch 'vgg8' is not an architecture of the paper; choose one of lenet, vgg7, resnet7")


def test_an_existing_output_is_replaced_only_with_force(capsys, elsewhere):
    """Point 6: train, convert, import and export silently replaced an existing file."""
    pytest.importorskip("torch")
    pytest.importorskip("h5py")
    (elsewhere / "m.npz").write_bytes(b"precious")
    assert_one_line_error(capsys, *TRAIN, "--out", "m.npz",
                          match=r"--out m\.npz exists; pass --force to replace it or --resume to continue its training")
    (elsewhere / "m.npz").unlink()
    (elsewhere / "m.npz.checkpoint.pt").write_bytes(b"precious")
    assert_one_line_error(capsys, *TRAIN, "--out", "m.npz", match=r"the checkpoint m\.npz\.checkpoint\.pt exists; "
                          r"pass --resume to continue its training or --force to start again")
    (elsewhere / "m.npz").write_bytes(b"precious")
    assert_one_line_error(capsys, "convert", "--model", "lenet-mnist-ann", "--out", "m.npz", match=r"exists; pass --force")
    (elsewhere / "x.nir").write_bytes(b"precious")
    assert_one_line_error(capsys, "export", "lenet-nmnist", "--out", "x.nir", match=r"--out x\.nir exists; pass --force")
    assert_one_line_error(capsys, "import", "x.nir", "--out", "m.npz", match=r"--out m\.npz exists; pass --force")
    assert (elsewhere / "m.npz").read_bytes() == (elsewhere / "x.nir").read_bytes() == b"precious"
    code, _, err = run_cli(capsys, "export", "lenet-nmnist", "--out", "x.nir", "--force")
    assert code == 0, err
    code, _, err = run_cli(capsys, "import", "x.nir", "--out", "m.npz", "--force")
    assert code == 0 and (elsewhere / "m.npz").read_bytes()[:2] == b"PK", err


def test_export_of_an_image_model_asks_for_the_step_width_and_keeps_the_suffix(capsys, elsewhere):
    """Points 13 and 16: "no input window (encoding.window_us)" with no option to give one, and
    a NIR file written under --out x.npz."""
    pytest.importorskip("h5py")
    assert_one_line_error(capsys, "export", "lenet-mnist", "--out", "m.nir",
                          match=r"lenet-mnist codes its inputs as poisson spikes, with no time step in µs.*--dt-us")
    assert_one_line_error(capsys, "export", "lenet-nmnist", "--out", "x.npz",
                          match=r"a NIR file is written; name it with the suffix \.nir")
    code, out, err = run_cli(capsys, "export", "lenet-mnist", "--out", "m.nir", "--dt-us", "1000")
    assert code == 0 and (elsewhere / "m.nir").is_file(), err
    code, out, err = run_cli(capsys, "import", "m.nir", "--out", "m.npz", "--json")
    assert code == 0, err
    import evsim

    assert evsim.load("m.npz").encoding["window_us"] == 1000 * evsim.load("lenet-mnist").timesteps


def nmnist_folder(root: Path, digits=("3", "7")) -> Path:
    for digit in digits:
        (root / "Test" / digit).mkdir(parents=True)
        source = sorted((NMNIST / "Test" / digit).glob("*.bin"))[0]
        (root / "Test" / digit / source.name).symlink_to(source)
    return root / "Test"


def test_downsample_leaves_the_recordings_that_fit_alone(capsys, elsewhere):
    """Point 3: --downsample 0.02 shrank a 34 x 34 recording to about one pixel and classified it."""
    code, out, err = run_cli(capsys, "stream", nmnist_folder(elsewhere), "--model", "lenet-nmnist",
                             "--downsample", "0.02", "--workers", "1", "--json")
    assert code == 0, err
    reports = json.loads(out)["files"]
    assert [r["window"]["prediction"] for r in reports] == [3, 7]
    assert all(r["input_fit"] == "the sensor matches the model's input (--crop/--downsample left it as it is)"
               for r in reports)
    assert [r["input_events"] for r in reports] == [r["events"] for r in reports]


def test_a_folder_stream_prints_totals_and_each_error_once(capsys, elsewhere):
    """Point 14: no totals; a failing file's error printed twice; "events" meant events read."""
    folder = nmnist_folder(elsewhere)
    (folder / "7" / "broken.bin").write_bytes(bytes([200, 100, 0, 0, 1]) * 10)
    code, out, err = run_cli(capsys, "stream", folder, "--model", "lenet-nmnist", "--workers", "1")
    assert code == 2
    [total] = [line for line in out.splitlines() if line.startswith("total")]
    assert "2 of 3 files streamed: accuracy 100.00 % (2 of 2 labelled by their folder" in total
    assert re.search(r"[\d,]+ synops and [\d,]+ input events on average", total)
    assert re.search(r"00001\.bin: prediction 7 .* ([\d,]+) of \1 events used", out), out
    assert err.count("its first record is not an N-MNIST event") == out.count("its first record is not") + 1 == 1
    assert "broken.bin: error (below)" in out


def test_demo_figure_into_a_folder_and_no_progress_bars_off_a_terminal(capsys, elsewhere):
    """Point 12: --figure runs/ wrote runs.png here; the bars went into a redirected stderr."""
    pytest.importorskip("matplotlib")
    data = nmnist_folder(elsewhere / "nmnist").parent
    code, out, err = run_cli(capsys, "demo", "--data", data, "--no-dense", "--figure", "runs/")
    assert code == 0, err
    assert (elsewhere / "runs" / "evsim-demo.png").is_file() and not (elsewhere / "runs.png").exists()
    assert "figure              runs/evsim-demo.png" in out
    assert err == ""  # stderr is not a terminal here: no bar, no carriage return


@pytest.mark.slow
def test_eval_and_train_draw_no_bars_off_a_terminal(capsys, elsewhere, mnist_root):
    pytest.importorskip("torch")
    code, _, err = run_cli(capsys, "eval", "--model", "lenet-mnist", "--data", mnist_root, "--limit", 4)
    assert code == 0 and err == "", err
    code, _, err = run_cli(capsys, *TRAIN, "--data", mnist_root, "--limit", 8, "--test-limit", 4, "--out", "m.npz")
    assert code == 0 and err == "", err


def test_the_demo_figure_keys_its_colours_lines_and_mode(capsys, elsewhere):
    """Point 17: ON/OFF were white and grey with no key, the margin had no legend entry, and
    the step and async figures looked the same."""
    pytest.importorskip("matplotlib")
    import evsim
    from evsim.analysis.demo import demo_figure, polarity_image, run_demo

    result = run_demo(evsim.load("lenet-nmnist"), nmnist_folder(elsewhere / "nmnist").parent, compare_dense=False,
                      progress=False, mode="async")
    result["model"] = "lenet-nmnist"
    fig = demo_figure(result)
    events_axis, prediction_axis = fig.axes[1], fig.axes[2]
    assert [t.get_text() for t in events_axis.get_legend().get_texts()] == ["ON events", "OFF events", "both"]
    labels = [t.get_text() for t in prediction_axis.get_legend().get_texts()]
    assert "margin over the runner-up" in labels and "predicted digit" in labels
    assert "async mode" in prediction_axis.get_title() and "async mode" in fig._suptitle.get_text()
    from evsim.events import make_events

    image = polarity_image(make_events([0, 1], [0, 0], [0, 0], [True, False]), 3, 1)
    on, off, empty = image[0]
    assert on[0] > 0.8 > on[2] and off[2] > 0.8 > off[0] and tuple(empty) == (1.0, 1.0, 1.0)


def test_the_stream_warm_up_compiles_every_kernel_a_recording_needs(tmp_path):
    """Point 9: the demo timed numba's compilation of the kernels its one-event warm-up missed
    (a fresh install's first async rate was 1.9 recordings/s, the second 38/s). In a fresh
    interpreter, streaming a recording after the warm-up must load no kernel."""
    script = (
        "import sys, numba, evsim\n"
        "from evsim.analysis.streaming import warm_up, stream_file\n"
        "def loaded():\n"
        "    return {(m.__name__, n): len(o.signatures) for m in list(sys.modules.values())\n"
        "            if getattr(m, '__name__', '').startswith('evsim')\n"
        "            for n, o in vars(m).items() if isinstance(o, numba.core.registry.CPUDispatcher)}\n"
        "net = evsim.load('lenet-nmnist')\n"
        "for mode in ('step', 'async'):\n"
        "    warm_up(net, mode)\n"
        "    before = loaded()\n"
        f"    stream_file({str(SEVEN)!r}, net, 5000.0, chunk_events=997, mode=mode)\n"
        "    after = loaded()\n"
        "    print(mode, {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["step {}", "async {}"], done.stdout


def test_a_wrong_evsim_data_is_named_not_replaced_by_the_bundled_recordings(capsys, elsewhere, monkeypatch):
    """Point 4: EVSIM_DATA pointing at the nmnist folder itself fell back to the 19 bundled recordings."""
    nmnist_folder(elsewhere / "nmnist")
    monkeypatch.setenv("EVSIM_DATA", str(elsewhere / "nmnist"))
    assert_one_line_error(capsys, "run", "--model", "lenet-nmnist", "--limit", "1",
                          match=r"the data folder \S+nmnist has no nmnist/ folder; it looks like the N-MNIST folder "
                                r"itself: set \$EVSIM_DATA to the folder above it")
    monkeypatch.setenv("EVSIM_DATA", str(elsewhere))
    code, out, err = run_cli(capsys, "run", "--model", "lenet-nmnist", "--json")
    assert code == 0 and json.loads(out)["samples"] == 2, err


def test_eval_and_run_draw_the_same_poisson_spikes(capsys, elsewhere, mnist_root):
    """Point 10: eval (dense) and run (step mode) with the same seed gave 99.40 % and 99.20 %."""
    pytest.importorskip("torch")
    common = ["--model", "lenet-mnist", "--data", mnist_root, "--limit", 60, "--seed", 3, "--json"]
    code, out, err = run_cli(capsys, "eval", *common)
    assert code == 0, err
    dense = json.loads(out)
    code, out, err = run_cli(capsys, "run", *common, "--threads", 1)
    assert code == 0, err
    event_driven = json.loads(out)
    assert dense["samples"] == event_driven["samples"] == 60
    assert dense["accuracy"] == event_driven["accuracy"]
    from evsim.analysis.inputs import sample_inputs
    from evsim.datasets.samples import coded_inputs, load_samples
    import evsim
    import numpy as np

    net = evsim.load("lenet-mnist")
    samples = load_samples("mnist", mnist_root, "test", limit=60, encoding=net.encoding)
    first = next(sample_inputs(samples, net, 3))
    np.testing.assert_array_equal(first, coded_inputs(samples, np.array([0, 1]), net.timesteps, 3)[:, 0])


@pytest.mark.parametrize("command", ["run", "eval"])
def test_simulated_recordings_are_announced_before_the_work(capsys, elsewhere, mnist_root, command):
    """Point 11: eval on an nmnist-sim model simulated 9,900 recordings without a word."""
    if command == "eval":
        pytest.importorskip("torch")
    code, _, err = run_cli(capsys, command, "--model", "lenet-nmnist", "--dataset", "nmnist-sim", "--data", mnist_root,
                           "--limit", 2, "--no-progress", "--json")
    assert code == 0, err
    assert f"evsim {command}: simulating 2 nmnist-like recordings from the digits in {mnist_root}" in err


def test_an_interrupted_training_says_where_its_checkpoint_is(capsys, elsewhere, mnist_root, monkeypatch):
    """Point 16: the interrupted-training message did not say that a checkpoint exists or how to resume."""
    pytest.importorskip("torch")
    import evsim.training.trainer as trainer

    real_epoch, calls = trainer.run_epoch, []

    def ctrl_c_in_epoch_2(*args, **kwargs):
        if kwargs.get("optimizer") is not None or (len(args) > 5 and args[5] is not None):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "run_epoch", ctrl_c_in_epoch_2)
    argv = [*TRAIN[:5], "--epochs", "2", "-T", "2", "--data", mnist_root, "--limit", 8, "--test-limit", 4, "--out", "m.npz"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == (
        "evsim train: interrupted; the checkpoint m.npz.checkpoint.pt holds 1 of 2 epochs (and m.npz the model so far): "
        "run the same command with --resume to continue")
    code, out, err = run_cli(capsys, *argv, "--resume")
    assert code == 0 and "resumed from m.npz.checkpoint.pt after epoch 1" in out, err


def test_info_reads_a_model_without_suffix_and_shows_its_training(capsys, elsewhere):
    """Point 16: "unknown event file format ''" for a model without suffix; no training
    metadata; an ANN's layers labelled lif."""
    import shutil

    from evsim.paths import BUNDLED_MODELS

    shutil.copy(BUNDLED_MODELS / "lenet-mnist.npz", elsewhere / "mymodel")
    code, out, err = run_cli(capsys, "info", "mymodel")
    assert code == 0, err
    assert out.startswith("mymodel: evsim model")
    assert "trained: lenet on mnist; from lenet-mnist.npz trained on mnist; 3 epochs; 60,000 training samples; " \
           "test accuracy 99.28 % on 10,000 (dense)" in out
    code, out, err = run_cli(capsys, "info", "lenet-mnist-ann")
    layers = [line.split()[1] for line in out.splitlines()[2:8]]
    assert layers == ["relu", "pool", "relu", "pool", "relu", "output"], out
    assert "(ANN)" in out.splitlines()[-1]


def test_bench_names_the_dense_batch_it_ran(capsys):
    """Point 16: bench printed "dense_batch64" beside a table that said batch 28."""
    from evsim.cli.bench import format_bench

    rates = {k: 1.0 for k in ("event_samples_per_s", "event_from_raw_samples_per_s", "event_1thread_samples_per_s",
                              "async_samples_per_s", "dense_batch1_samples_per_s", "dense_batch64_samples_per_s")}
    report = {"threads": 2, "dense_batch64_actual_batch": 28, "model": "m", "samples": 28, "dataset": "nmnist",
              "rounds": 1, "timesteps": 100, **rates, "spread_samples_per_s": {k: {"min": 1, "max": 1} for k in rates},
              "speedup_vs_dense_batch1": 1, "speedup_vs_dense_batch64": 1, "speedup_vs_best_dense_from_raw": 1,
              "synops_per_s": 1, "synops_per_s_per_core": 1, "fraction_of_ceiling": 1, "ceiling_synops_per_s": 1,
              "compile_or_cache_load_s": 1, "accuracy": {"step": 1.0, "dense_batch64": 1.0}}
    text = format_bench(report)
    assert "dense_batch64" not in text and "accuracy evsim step mode 100.0 %, dense PyTorch batch 28 100.0 %" in text


def session_processes(session: int) -> dict[int, str]:
    """The processes of a session (Linux /proc): pid -> command line."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.getsid(int(entry)) == session:
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("when", ["agent.py", "default_worker", "ray::run_chunk"],
                         ids=["while Ray starts", "while its workers start", "while a task runs"])
def test_ctrl_c_on_a_local_cluster_run_stops_everything_it_started(elsewhere, mnist_root, when):
    """Point 8: Ctrl-C during `evsim run --cluster local` gave a Ray C++ stack trace and exit 1,
    orphaned Ray processes that SIGTERM did not stop, or "interrupted" and then exit 139. The
    terminal sends SIGINT to the whole process group; here the run has a session of its own."""
    pytest.importorskip("ray")
    import signal
    import time

    argv = [sys.executable, "-m", "evsim.cli", "run", "--model", "lenet-mnist", "--data", str(mnist_root),
            "--cluster", "local", "--threads", "1", "--json"]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            commands = session_processes(child.pid).values()
            if any(when in c for c in commands):
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run ended before the Ctrl-C"
        os.killpg(child.pid, signal.SIGINT)
        interrupted = time.monotonic()
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert time.monotonic() - interrupted < 30
    assert child.returncode == 130, err
    assert err.strip() == "evsim run: interrupted" and out == ""
    deadline = time.monotonic() + 5
    while session_processes(child.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = session_processes(child.pid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, left


def test_the_comparison_figures_show_every_bar_tick_and_line(capsys, elsewhere, mnist_root):
    """Point 17: compare_compute.png cut its log axis just below the smallest bar (a 2.3 M-op
    SNN looked like zero) and had an unlabelled dashed line; compare_accuracy.png's ticks read
    "6x10^0"; compare_activity.png's legend covered a bar."""
    pytest.importorskip("matplotlib")
    code, _, err = run_cli(capsys, "report", "--compare", "lenet-mnist", "lenet-mnist-ann", "--data", mnist_root,
                           "--limit", 4, "--latencies", "3,6", "--out", "cmp", "--json")
    assert code == 0, err
    from evsim.analysis.compare import comparison_figures

    figures = comparison_figures(json.loads((elsewhere / "cmp" / "report.json").read_text()))
    accuracy = figures["accuracy"].axes[0]
    assert [t.get_text() for t in accuracy.get_xticklabels()] == ["3", "6", "25"]
    assert not accuracy.xaxis.get_minor_ticks()
    left, right = figures["compute"].axes
    heights = [bar.get_height() for bar in left.patches]
    assert left.get_ylim()[0] <= min(heights) / 10  # the smallest bar stands a decade tall
    assert [t.get_text() for t in left.texts] == [f"{h / 1e6:.2f} M" for h in heights]
    assert "break-even (ratio 1)" in [t.get_text() for t in right.get_legend().get_texts()]
    activity = figures["activity"]
    activity.canvas.draw()
    legend = activity.axes[0].get_legend().get_window_extent()
    assert all(not legend.overlaps(bar.get_window_extent()) for bar in activity.axes[0].patches)


@pytest.mark.parametrize("argv", [["--help"], ["info", "lenet-nmnist"], ["info", "--help"], ["stream", "--help"]])
def test_the_cli_loads_a_commands_modules_only_when_it_runs(argv):
    """Issue 29, item 7: building the parser imported every command module, so `evsim info`
    loaded numba, the engine and NIR (0.9 s before any work)."""
    script = ("import sys\nfrom evsim.cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "heavy = ('numba', 'torch', 'evsim.engine', 'evsim.analysis', 'h5py', 'tonic', 'matplotlib', 'ray')\n"
              "print(sorted({m.split('.')[0] if not m.startswith('evsim') else '.'.join(m.split('.')[:2])\n"
              "              for m in sys.modules if m.startswith(heavy)}))\n")
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_readme_states_the_rules_these_tests_check():
    """The README's claims about errors, outputs, progress bars, Ctrl-C and empty samples are the
    behaviour tested above and in tests/test_first_hour.py (issue 30)."""
    text = " ".join(README.read_text().split())
    for claim in ("every option is checked when the command line is read",
                  "an existing one is replaced only with `--force`",
                  "Progress bars go to stderr and only to a terminal",
                  "on `--cluster local` it also stops the Ray tasks and every process Ray started",
                  "a sample with no event inside is an error, never a silent class 0",
                  "an input with no spike at all (an all-zero spike train, one silent sample of a batch, a stream's "
                  "`result()` before any event)",
                  "gets a warning that evsim reads `t` in µs",
                  "The first `evsim demo` of a new install compiles the Numba kernels first",
                  "on the Poisson spikes `evsim run` draws with the same `--seed`"):
        assert claim in text, claim
