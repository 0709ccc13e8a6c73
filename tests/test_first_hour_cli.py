"""Issue 30, the first hour round two, through the command line: no silent wrong answer, no
traceback, no lost work (points 3-14, 16, 17), and issue 29's lazy command modules. The Python
half is tests/test_first_hour.py; the helpers and the ``elsewhere`` folder are test_cli_errors'.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli_errors import NMNIST, README, SEVEN, assert_one_line_error, elsewhere, run_cli  # noqa: F401


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
        "from evsim.runtime.streaming import warm_up, stream_file\n"
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
    from evsim.runtime.inputs import sample_inputs
    from evsim.datasets.samples import coded_inputs, load_samples
    import evsim
    import numpy as np

    net = evsim.load("lenet-mnist")
    samples = load_samples("mnist", mnist_root, "test", limit=12, encoding=net.encoding)
    # the frames the dense evaluation runs are the engine's inputs, sample by sample
    from evsim.training.network import load_trained
    from evsim.training.trainer import evaluate

    dense, seen = load_trained("lenet-mnist"), []
    forward = dense.forward
    dense.forward = lambda inputs, **kw: (seen.append(inputs.numpy().copy()), forward(inputs, **kw))[1]
    evaluate(dense, samples, net.timesteps, batch_size=5, seed=3)
    engine_inputs = np.stack(list(sample_inputs(samples, net, 3)), axis=1)
    np.testing.assert_array_equal(np.concatenate(seen, axis=1), engine_inputs)
    np.testing.assert_array_equal(engine_inputs, coded_inputs(samples, np.arange(12), net.timesteps, 3))


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
                              "async_samples_per_s", "dense_batch1_samples_per_s", "dense_batch64_samples_per_s",
                              "dense_floor_samples_per_s")}
    report = {"threads": 2, "dense_batch64_actual_batch": 28, "model": "m", "samples": 28, "dataset": "nmnist",
              "dense_floor_batch": 28, "speedup_vs_dense_floor": 1,
              "rounds": 1, "timesteps": 100, **rates, "spread_samples_per_s": {k: {"min": 1, "max": 1} for k in rates},
              "speedup_vs_dense_batch1": 1, "speedup_vs_dense_batch64": 1, "speedup_vs_best_dense_from_raw": 1,
              "synops_per_s": 1, "synops_per_s_per_core": 1, "fraction_of_ceiling": 1, "ceiling_synops_per_s": 1,
              "compile_or_cache_load_s": 1, "accuracy": {"step": 1.0, "dense_batch64": 1.0}}
    text = format_bench(report)
    assert "dense_batch64" not in text and "accuracy evsim step mode 100.0 %, dense PyTorch batch 28 100.0 %" in text


def session_processes(session: int) -> dict[int, str]:
    """The live processes of a session (Linux /proc): pid -> command line. A zombie is dead (this
    container's init may be slow to reap it)."""
    found = {}
    for entry in os.listdir("/proc"):
        try:
            if (entry.isdigit() and os.getsid(int(entry)) == session
                    and Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"):
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
    # a suite started in the background (`cmd &`) runs with SIGINT ignored, and a child inherits
    # that: Python then installs no KeyboardInterrupt handler and the Ctrl-C would do nothing
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
    deadline = time.monotonic() + 10
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
