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
    assert "pip install torch==2.13.0 && pip install -e \".[train,plot,data,nir,cluster,dev]\"\nevsim demo" in README


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
@pytest.mark.parametrize("command", [c for c in COMMANDS if shlex.split(c)[1] != "demo" and "FILE" not in c])
def test_readme_command_runs(command, workdir, monkeypatch, capsys):
    subcommand = shlex.split(command)[1]
    if subcommand in ("train", "eval", "bench"):
        pytest.importorskip("torch")
    if subcommand == "eval" and not (workdir / "my-lenet.npz").exists():  # the guide trains it first
        run_in(workdir, next(c for c in COMMANDS if shlex.split(c)[1] == "train"), monkeypatch, capsys)
    if subcommand == "train" and (workdir / "my-lenet.npz").exists():
        return  # already run, and checked, for the eval command
    run_in(workdir, command, monkeypatch, capsys)
