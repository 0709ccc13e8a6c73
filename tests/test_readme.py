"""The README's example commands work as written, from a copy of the repository's layout."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from evsim.cli.main import main

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
# indented code lines and inline code that start with `evsim <command>`, except the demo (tests/test_demo.py)
COMMANDS = sorted({c.strip() for c in re.findall(r"^\s{4,}(evsim [^\n]+)$", README, re.M)}
                  | {c for c in re.findall(r"`(evsim [a-z]+ [^`]+)`", README)})


def test_the_readme_shows_the_guide_commands():
    shown = {shlex.split(c)[1] for c in COMMANDS}
    assert {"train", "eval", "run", "stream", "bench", "report"} <= shown
    assert "pip install torch==2.13.0 && pip install -e \".[train,plot,data,nir,cluster,live,dev]\"\nevsim demo" in README


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder that sees the repository's data (``evsim/``, ``tests/``); outputs land in it."""
    folder = tmp_path_factory.mktemp("readme")
    for name in ("evsim", "tests"):
        (folder / name).symlink_to(REPO / name)
    return folder


def run_in(folder, command, monkeypatch, capsys) -> str:
    monkeypatch.chdir(folder)
    code = main(shlex.split(command)[1:])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip()
    return captured.out


@pytest.mark.slow
def train_command() -> str:
    return next(c for c in COMMANDS if shlex.split(c)[1] == "train")


@pytest.fixture(scope="module")
def readme_training(workdir):
    """The guide's train command, run once (the eval command reads what it writes)."""
    pytest.importorskip("torch")
    args = shlex.split(train_command())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        import contextlib
        import io

        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(args[1:])
    assert code == 0, stdout.getvalue()
    return workdir / args[args.index("--out") + 1], stdout.getvalue()


def accuracy_printed(text: str) -> float:
    found = re.findall(r"accuracy\s+([0-9.]+)\s*%", text)
    assert found, text
    return float(found[-1]) / 100


SLOW_COMMANDS = {"train", "eval", "run", "bench", "report"}  # over 5 s each (a training epoch, whole splits)


@pytest.mark.parametrize("command", [
    pytest.param(c, marks=pytest.mark.slow) if shlex.split(c)[1] in SLOW_COMMANDS else c
    for c in COMMANDS if shlex.split(c)[1] not in ("demo", "serve") and "FILE" not in c and "tcp://" not in c
])
def test_readme_command_runs(command, workdir, monkeypatch, capsys, request):
    args = shlex.split(command)
    subcommand = args[1]
    if subcommand in ("train", "eval", "bench"):
        pytest.importorskip("torch")
    if subcommand == "train":
        from evsim.model.file import load_model

        out, stdout = request.getfixturevalue("readme_training")
        model = load_model(out)  # what the command says it trains, for as long as it says
        assert model.graph.meta["arch"] == args[args.index("--arch") + 1]
        assert model.graph.meta["epochs"] == int(args[args.index("--epochs") + 1])
        assert model.graph.timesteps == int(args[args.index("--timesteps") + 1])
        assert model.graph.input_shape == (1, 28, 28)
        assert accuracy_printed(stdout) > 0.3  # one epoch on 1000 images learns: chance is 0.1
        return
    if subcommand == "eval":
        request.getfixturevalue("readme_training")
        assert accuracy_printed(run_in(workdir, command, monkeypatch, capsys)) > 0.3
        return
    run_in(workdir, command, monkeypatch, capsys)


def test_readme_live_stream_commands_run(workdir, monkeypatch, capsys):
    """The README's pair: ``evsim serve ... --port P &``, then ``evsim stream tcp://127.0.0.1:P``
    (on a free port here), served by dv-processing's own NetworkWriter."""
    pytest.importorskip("dv_processing")
    import socket
    import subprocess
    import sys

    serve = next(c for c in COMMANDS if shlex.split(c)[1] == "serve")
    stream = next(c for c in COMMANDS if "tcp://" in c)
    port = shlex.split(serve)[shlex.split(serve).index("--port") + 1]
    assert serve.endswith("&") and f"tcp://127.0.0.1:{port}" in stream
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = str(sock.getsockname()[1])
    args = [a if a != port else free for a in shlex.split(serve.removesuffix("&"))[1:]]
    server = subprocess.Popen([sys.executable, "-m", "evsim.cli", *args], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("serving ")
        out = run_in(workdir, stream.replace(f":{port}", f":{free}"), monkeypatch, capsys)
        assert "the server closed the connection" in out and "111,954 events received" in out
        assert server.wait(30) == 0
    finally:
        server.kill()
