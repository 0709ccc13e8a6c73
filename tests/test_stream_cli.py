"""``evsim stream``: every vendored recording through a tiny random-weight model, as it plays."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from evsim.cli.main import main
from evsim.datasets.formats import EventFile, read_events
from evsim.runtime.load import load
from evsim.engine.asynchronous import Stream
from random_model import save_random_nmnist_model

TIMING_KEYS = ("wall_s", "realtime_factor")

# file, options, events (SOURCES.md), first timestamp (the time origin), last timestamp
SAMPLES = [
    ("sample_nmnist.bin", [], 4325, 654, 311175),
    ("ncars_sample_a.dat", ["--crop", "34", "34"], 2009, 0, 99952),
    ("ncars_sample_b.dat", ["--crop", "34", "34"], 4407, 0, 99937),
    ("gen41_evt3_small.raw", ["--downsample", "0.025"], 5000, 5840504, 5885714),
    ("gen3_evt2_sample.raw", ["--downsample", "0.05"], 539481, 1317888, 1367888),
    ("sample.aedat4", ["--downsample", "0.1"], 111954, 1605537493718345, 1605537494308262),
]


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    return save_random_nmnist_model(tmp_path_factory.mktemp("model") / "tiny.npz")


def stream_json(capsys, *args, code=0) -> dict:
    assert main(["stream", *map(str, args), "--json"]) == code
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object, on one line
    return json.loads(out)


def without_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in TIMING_KEYS}


@pytest.mark.parametrize("name, options, n_events, t_first, t_last", SAMPLES)
def test_every_vendored_sample_streams(capsys, dvs_dir, model_path, name, options, n_events, t_first, t_last):
    report = stream_json(capsys, dvs_dir / name, "--model", model_path, *options)
    for key in ("prediction", "events", "synops", "spikes", "decision_time_us", "realtime_factor", "timeline"):
        assert key in report
    assert report["events"] == n_events
    assert report["time_origin_us"] == t_first
    assert report["duration_us"] == t_last - t_first
    assert report["interrupted"] is False and "error" not in report
    assert report["realtime_factor"] > 0
    timeline = report["timeline"]
    times = [p["time_us"] for p in timeline]
    marks = np.arange(1, int((t_last - t_first) // 50_000) + 1) * 50_000.0
    assert times[: len(marks)] == marks.tolist()  # every 50 ms of recording time, from 0
    assert times[-1] == t_last - t_first  # and the end of the recording
    assert timeline[-1]["prediction"] == report["prediction"]
    assert report["decision_time_us"] in times
    assert report["spikes"] == sum(report["spikes_per_layer"].values())
    if not options:  # nothing dropped
        assert report["input_events"] == n_events
    if "--downsample" in options:
        assert report["input_events"] == n_events  # downsampling moves events, never drops them


def test_crop_keeps_exactly_the_central_pixels(capsys, dvs_dir, model_path):
    events, (width, height, _) = read_events(dvs_dir / "ncars_sample_a.dat")
    x0, y0 = (width - 34) // 2, (height - 34) // 2
    inside = (events["x"] >= x0) & (events["x"] < x0 + 34) & (events["y"] >= y0) & (events["y"] < y0 + 34)
    report = stream_json(capsys, dvs_dir / "ncars_sample_a.dat", "--model", model_path, "--crop", 34, 34)
    assert report["input_events"] == int(inside.sum()) < len(events)


def test_nmnist_every_layer_spikes_and_the_result_equals_one_plain_feed(capsys, nmnist_root, model_path):
    path = nmnist_root / "Test/3/00031.bin"
    report = stream_json(capsys, path, "--model", model_path, "--mode", "async")
    assert all(n > 0 for n in report["spikes_per_layer"].values())
    # The read-outs must not disturb the simulation: one feed of all events gives the same figures.
    events, _ = read_events(path)
    events["t"] -= events["t"][0]
    network = load(model_path)
    stream = Stream(network)
    stream.feed(events)
    result = stream.result()
    assert (report["synops"], report["spikes"]) == (result.synops, result.spikes)
    assert report["prediction"] == int(np.argmax(result.output))
    top = np.sort(result.output)
    assert report["margin"] == pytest.approx(top[-1] - top[-2], rel=1e-12)
    # and the 100 ms read-out holds exactly the events before 100 ms
    early = Stream(network)
    early.feed(events[events["t"] < 100_000])
    early.flush()
    output = early.output(at_us=100_000.0)
    point = report["timeline"][1]
    assert point["time_us"] == 100_000.0
    assert point["prediction"] == int(np.argmax(output))
    assert point["margin"] == pytest.approx(np.sort(output)[-1] - np.sort(output)[-2], rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name, options, sizes", [
    ("sample_nmnist.bin", [], (1, 37, 65536)),
    ("ncars_sample_b.dat", ["--crop", "34", "34"], (7, 65536)),
    ("sample.aedat4", ["--downsample", "0.1"], (999, 65536)),
])
def test_result_does_not_depend_on_chunk_size(capsys, dvs_dir, model_path, name, options, sizes):
    # tonic's CenterCrop and Downsample act on each event alone: cutting the file elsewhere
    # changes nothing, down to the last read-out
    reports = [
        without_timing(stream_json(capsys, dvs_dir / name, "--model", model_path, *options, "--chunk-events", n))
        for n in sizes
    ]
    assert all(r == reports[0] for r in reports[1:])


def test_several_files_in_input_order_with_two_workers(capsys, nmnist_root, dvs_dir, model_path):
    files = [nmnist_root / "Test/9/00008.bin", dvs_dir / "sample_nmnist.bin", nmnist_root / "Test/0/00004.bin"]
    singles = [without_timing(stream_json(capsys, f, "--model", model_path)) for f in files]
    combined = stream_json(capsys, *files, "--model", model_path, "--workers", 2)
    assert [r["file"] for r in combined["files"]] == [str(f) for f in files]
    assert [without_timing(r) for r in combined["files"]] == singles
    assert combined["interrupted"] is False
    folder = stream_json(capsys, nmnist_root / "Test/1", "--model", model_path, "--workers", 2)
    assert [r["file"] for r in folder["files"]] == [str(p) for p in sorted((nmnist_root / "Test/1").glob("*.bin"))]


def truncated_copy(tmp_path, source, keep_records=2000):
    path = tmp_path / "cut.bin"
    path.write_bytes(source.read_bytes()[: 5 * keep_records + 3])  # 3 bytes into a record
    return path


def test_truncated_file_reports_the_part_before_the_damage(capsys, tmp_path, nmnist_root, model_path):
    source = nmnist_root / "Test/0/00004.bin"
    path = truncated_copy(tmp_path, source)
    assert main(["stream", str(path), "--model", str(model_path), "--chunk-events", "500", "--json"]) == 2
    captured = capsys.readouterr()
    report = json.loads(captured.out)  # the partial result first ...
    assert report["events"] == report["input_events"] == 2000  # every whole record before the cut
    assert "at byte 10000" in report["error"] and report["timeline"]
    assert report["duration_us"] == int(read_events(source)[0]["t"][1999] - read_events(source)[0]["t"][0])
    assert captured.err == f"evsim stream: error: {path} at byte 10000: 3 trailing bytes do not make a whole " \
        "5-byte event record (N-MNIST files are a multiple of 5 bytes long)\n"  # ... then the error
    result = subprocess.run(
        [sys.executable, "-m", "evsim.cli", "stream", str(path), "--model", str(model_path), "--chunk-events", "500"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "events   2,000 read" in result.stdout and "stopped by damaged input" in result.stdout
    assert result.stderr.startswith("evsim stream: error: ") and f"{path} at byte 10000" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_damaged_file_among_several(capsys, tmp_path, nmnist_root, model_path):
    bad = truncated_copy(tmp_path, nmnist_root / "Test/0/00004.bin")
    good = nmnist_root / "Test/1/00003.bin"
    assert main(["stream", str(good), str(bad), "--model", str(model_path), "--json"]) == 2
    captured = capsys.readouterr()
    reports = json.loads(captured.out)["files"]
    assert "error" not in reports[0] and reports[0]["events"] > 0
    assert reports[1]["events"] == 2000 and "at byte 10000" in reports[1]["error"]
    assert f"evsim stream: error: {bad} at byte 10000" in captured.err


def test_sensor_size_mismatch_explains_the_options(capsys, dvs_dir, model_path):
    assert main(["stream", str(dvs_dir / "sample.aedat4"), "--model", str(model_path)]) == 2
    err = capsys.readouterr().err
    assert "the recording's sensor is 320 x 240 but the model takes 34 x 34" in err
    assert "--crop 34 34" in err and "--downsample F" in err
    assert main(["stream", str(dvs_dir / "sample.aedat4"), "--model", str(model_path), "--crop", "40", "40"]) == 2
    assert "use --crop 34 34" in capsys.readouterr().err
    assert main(["stream", str(dvs_dir / "sample.aedat4"), "--model", str(model_path), "--downsample", "0.5"]) == 2
    assert "160 x 120, larger than the model's 34 x 34" in capsys.readouterr().err


def test_ctrl_c_prints_the_partial_result(capsys, monkeypatch, nmnist_root, model_path):
    real_chunks = EventFile.chunks

    def interrupted_after_one_chunk(self, chunk_events):
        chunks = real_chunks(self, chunk_events)
        yield next(chunks)
        raise KeyboardInterrupt

    monkeypatch.setattr(EventFile, "chunks", interrupted_after_one_chunk)
    report = stream_json(capsys, nmnist_root / "Test/0/00004.bin", "--model", model_path,
                         "--chunk-events", 1000, code=130)
    assert report["interrupted"] is True and report["events"] == 1000
    assert report["prediction"] == report["timeline"][-1]["prediction"]


def test_text_output_says_times_start_at_the_first_event(capsys, dvs_dir, model_path):
    assert main(["stream", str(dvs_dir / "sample.aedat4"), "--model", str(model_path),
                 "--downsample", "0.1", "--every", "200"]) == 0
    out = capsys.readouterr().out
    assert "0 = the first event, at 1,605,537,493,718,345 µs on the file's clock" in out
    assert "events   111,954 read, 111,954 into the network" in out
    assert "--downsample 0.1: 320 x 240 -> 32 x 24, centred in the model's 34 x 34" in out
    assert [line.split()[0] for line in out.splitlines() if "prediction" in line and "ms" in line][:3] == [
        "200.0", "400.0", "589.9"]
    # the text mode keeps no timeline but finds the same decision time
    report = stream_json(capsys, dvs_dir / "sample.aedat4", "--model", model_path, "--downsample", 0.1, "--every", 200)
    stable = next(line for line in out.splitlines() if line.startswith("stable"))
    assert stable == f"stable   since {report['decision_time_us'] / 1000:,.1f} ms"


def test_options_are_never_abbreviated(capsys, nmnist_root, model_path):
    # argparse's prefix matching would read `--ever 50` as `--every 50` (and once read `--mode` as `--model`)
    with pytest.raises(SystemExit) as exit_info:
        main(["stream", str(nmnist_root / "Test/0/00004.bin"), "--model", str(model_path), "--ever", "50"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --ever 50" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--mod", str(model_path), "--dataset", "nmnist"])
    assert "the following arguments are required: --model" in capsys.readouterr().err
    from evsim.cli.main import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert not parser.allow_abbrev and commands and not any(p.allow_abbrev for p in commands.values())
