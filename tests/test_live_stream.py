"""``evsim stream tcp://HOST:PORT``: live AEDAT 4.0 streams served by dv-processing itself.

Each test starts dv-processing's ``NetworkWriter`` on 127.0.0.1 in a process of its own
(tests/live_server.py), serving a real recording, and streams it with ``evsim stream``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("dv_processing")

from evsim.cli.main import main  # noqa: E402

HERE = Path(__file__).parent
NMNIST_7 = Path(__file__).parents[1] / "evsim/data/nmnist/Test/7/00001.bin"
TIMING_KEYS = ("wall_s", "realtime_factor", "file", "format", "sensor_size_from", "timeline", "live")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """tests/live_server.py serving ``path`` on a free local port; ended when the test ends."""

    def __init__(self, path, speed: float, *options: str):
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "live_server.py"), str(path), str(self.port), str(speed), *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        assert line == "listening\n", self.process.stderr.read()
        self.address = f"tcp://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def serve():
    servers = []

    def start(path, speed, *options):
        servers.append(Server(path, speed, *options))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def stream_json(capsys, *args, code=0) -> tuple[dict, str]:
    assert main(["stream", *map(str, args), "--json"]) == code
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def same_result(live: dict, file: dict) -> None:
    assert {k: v for k, v in live.items() if k not in TIMING_KEYS} == \
           {k: v for k, v in file.items() if k not in TIMING_KEYS}
    strip = [{k: p[k] for k in ("time_us", "prediction", "margin")} for p in live["timeline"]]
    assert strip == file["timeline"]


@pytest.mark.parametrize("mode", ["step", "async"])
def test_a_live_stream_gives_the_files_result(capsys, serve, mode):
    server = serve(NMNIST_7, 1.0)
    live, _ = stream_json(capsys, server.address, "--model", "lenet-nmnist", "--mode", mode, "--chunk-events", "500")
    file, _ = stream_json(capsys, NMNIST_7, "--model", "lenet-nmnist", "--mode", mode)
    same_result(live, file)
    assert live["prediction"] == 7 and live["synops"] > 0
    assert live["live"]["received"] == live["live"]["processed"] == live["events"] == file["events"] == 3330
    assert live["live"]["dropped"] == 0 and live["live"]["end"] == "closed"
    assert live["sensor_size"] == [34, 34, 2] and live["sensor_size_from"] == "stream's description"
    assert all({"received", "processed", "dropped", "lag_us"} <= set(p) for p in live["timeline"])


def test_a_connection_closed_midway_ends_with_the_part_received(capsys, serve):
    server = serve(NMNIST_7, 0, "--send", "2000", "--then", "close")
    live, _ = stream_json(capsys, server.address, "--model", "lenet-nmnist")
    assert live["events"] == live["live"]["received"] == 2000 and live["live"]["end"] == "closed"
    assert "error" not in live and live["interrupted"] is False


def test_a_connection_that_goes_silent_is_lost(capsys, serve):
    server = serve(NMNIST_7, 0, "--send", "2000", "--then", "stall")
    live, err = stream_json(capsys, server.address, "--model", "lenet-nmnist", "--timeout", "1", code=1)
    assert live["events"] == 2000 and live["live"]["end"] is None
    assert "no event for 1 s while connected" in live["error"]
    assert err.startswith("evsim stream: error: ") and err.count("\n") == 1


def test_ten_times_real_time_the_lag_grows_or_the_oldest_events_go(capsys, dvs_dir, serve):
    recording, options = dvs_dir / "sample.aedat4", ["--downsample", "0.1", "--chunk-events", "1000"]
    server = serve(recording, 10.0)
    kept, _ = stream_json(capsys, server.address, "--model", "lenet-nmnist", *options)
    lags = [p["lag_us"] for p in kept["timeline"]]
    assert kept["live"]["dropped"] == 0 and kept["live"]["received"] == kept["events"] == 111954
    assert max(lags) > 50_000  # the engine (a few times real time) falls behind a 10x sender
    server = serve(recording, 10.0)
    dropping, _ = stream_json(capsys, server.address, "--model", "lenet-nmnist", *options, "--max-lag", "5")
    counts = dropping["live"]
    assert counts["dropped"] > 0 and counts["received"] == counts["processed"] + counts["dropped"] == 111954
    assert dropping["events"] == counts["processed"]
    assert max(p["lag_us"] for p in dropping["timeline"]) < max(lags)


def test_text_output_shows_the_live_counts(capsys, serve):
    server = serve(NMNIST_7, 0)
    assert main(["stream", server.address, "--model", "lenet-nmnist", "--every", "100"]) == 0
    out = capsys.readouterr().out
    assert "received" in out and "lag" in out and "the server closed the connection" in out
    assert "3,330 events received, 3,330 processed, 0 dropped" in out


def test_no_server_is_one_line(capsys):
    assert main(["stream", f"tcp://127.0.0.1:{free_port()}", "--model", "lenet-nmnist"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no event stream there (connect: Connection refused)" in err


@pytest.mark.parametrize("address, message", [
    ("tcp://127.0.0.1", "is not a stream address"),
    ("tcp://127.0.0.1:notaport", "is not a stream address"),
])
def test_a_bad_address_is_one_line(capsys, address, message):
    assert main(["stream", address, "--model", "lenet-nmnist"]) == 2
    assert message in capsys.readouterr().err


def test_a_live_stream_streams_alone(capsys, nmnist_root):
    assert main(["stream", "tcp://127.0.0.1:1", str(NMNIST_7), "--model", "lenet-nmnist"]) == 2
    assert "streams alone" in capsys.readouterr().err


def test_evsim_serve_serves_a_file_to_evsim_stream(capsys):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "evsim.cli", "serve", str(NMNIST_7), "--port", str(port),
                               "--speed", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith(f"serving {NMNIST_7} (3,330 events, 34 x 34) on tcp://127.0.0.1:{port}")
        live, _ = stream_json(capsys, f"tcp://127.0.0.1:{port}", "--model", "lenet-nmnist")
        assert live["events"] == 3330 and live["prediction"] == 7
        assert server.stdout.readline() == "sent 3,330 events\n" and server.wait(10) == 0
    finally:
        server.kill()


@pytest.mark.parametrize("argv, message", [
    (["serve", str(NMNIST_7), "--port", "70000"], "argument --port: must be in 1..65535, got 70000"),
    (["serve", str(NMNIST_7), "--port", "7777", "--speed", "-1"], "argument --speed: must be 0 or more"),
    (["stream", "tcp://127.0.0.1:7777", "--model", "lenet-nmnist", "--timeout", "0"], "argument --timeout: must be positive"),
    (["stream", "tcp://127.0.0.1:7777", "--model", "lenet-nmnist", "--max-lag", "-5"], "argument --max-lag: must be 0 or more"),
])
def test_live_options_are_checked_when_parsed(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1
