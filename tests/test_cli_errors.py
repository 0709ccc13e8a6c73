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
    assert len(rates) == 7
    for line in rates:
        assert re.search(r"(evsim (step|async) mode|dense PyTorch|dense floor \(convs, linears\))(, binned|, raw events)?, "
                         r"batch \d+, \d+ threads?", line), line
        assert re.search(r"\(\d+\.\d \.\. \d+\.\d\)$", line), line  # slowest .. fastest round
    assert "speedup of evsim step mode (batch 1) vs dense PyTorch" in text
    assert re.search(r"; \d+\.\d\dx the dense floor$", text, re.M), text


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
