"""``evsim info``: its numbers against the shared MANIFEST and SOURCES.md."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evsim.cli.main import main
from evsim.datasets.formats import read_events


def info_json(capsys, path) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object on one line
    return json.loads(out)


def test_json_matches_manifest_for_every_vendored_recording(capsys, nmnist_root, nmnist_manifest):
    for row in nmnist_manifest:
        info = info_json(capsys, nmnist_root / row["path"])
        assert info["events"] == row["n_events"]
        assert info["t_first_us"] == row["t_first_us"]
        assert info["t_last_us"] == row["t_last_us"]
        assert info["duration_us"] == row["t_last_us"] - row["t_first_us"]
        assert info["on_events"] == row["n_on_events"]
        assert info["off_events"] == row["n_events"] - row["n_on_events"]
        assert info["sensor_size"] == [34, 34, 2]
        assert 0 <= info["x_min"] <= info["x_max"] <= 33
        assert 0 <= info["y_min"] <= info["y_max"] <= 33
        assert info["on_fraction"] == pytest.approx(row["n_on_events"] / row["n_events"])
        assert info["mean_rate_hz"] == pytest.approx(
            row["n_events"] / ((row["t_last_us"] - row["t_first_us"]) * 1e-6))


def test_json_matches_sources_for_tonics_sample(capsys, dvs_dir):
    # SOURCES.md: 4,325 events; 654-311,175 µs; x 0-33; y 0-33; 2,145 ON
    info = info_json(capsys, dvs_dir / "sample_nmnist.bin")
    assert (info["events"], info["t_first_us"], info["t_last_us"], info["on_events"]) == (
        4325, 654, 311175, 2145)
    assert (info["x_min"], info["x_max"], info["y_min"], info["y_max"]) == (0, 33, 0, 33)


def test_text_output(capsys, nmnist_root):
    assert main(["info", str(nmnist_root / "Test/7/00001.bin")]) == 0
    out = capsys.readouterr().out
    lines = {line[:10].strip(): line[11:] for line in out.splitlines()}  # "key       value"
    assert lines["events"] == "3,330"
    assert lines["time"] == "5,087 .. 307,827 µs"
    assert lines["duration"] == "302,740 µs (302.7 ms)"
    assert lines["sensor"] == "34 x 34, 2 polarities"
    assert lines["x range"] == "0 .. 33" and lines["y range"] == "0 .. 33"
    assert lines["ON / OFF"] == "1,718 / 1,612 (51.6 % ON)"
    assert lines["mean rate"] == "11,000 events/s"


def test_read_events_gives_sensor_size(nmnist_root):
    events, sensor_size = read_events(nmnist_root / "Test/0/00004.bin")
    assert len(events) == 5293 and sensor_size == (34, 34, 2)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("broken.bin", b"\x01\x02\x03\x04\x05\x06", "at byte 5: 1 trailing bytes"),
        ("absent.bin", None, "no such file"),
        ("recording.xyz", b"", "unknown event file format '.xyz'"),
    ],
)
def test_bad_files_exit_2_with_a_message(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = subprocess.run([sys.executable, "-m", "evsim.cli", "info", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("evsim info: error: ")
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_ann_model_is_described_as_an_ann_not_by_spiking_rules(capsys):
    assert main(["info", "lenet-mnist-ann"]) == 0
    ann = capsys.readouterr().out
    assert "not spiking" in ann and "ReLU (ANN)" in ann and "linear read-out (ANN)" in ann
    assert "threshold" not in ann and "leak" not in ann  # the spiking fields an ANN never uses
    assert main(["info", "lenet-mnist"]) == 0
    snn = capsys.readouterr().out
    assert "ANN" not in snn and "threshold 1, one spike if v > th; reset to 0; leak 0.99" in snn
