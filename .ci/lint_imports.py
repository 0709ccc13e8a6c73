#!/usr/bin/env python3
"""Run import-linter (``lint-imports``) on evsim as it is installed.

``evsim.training`` and ``evsim.datasets`` live in ``training/`` and ``datasets/`` at the top of the
repository and are mapped into the package by ``[tool.setuptools.package-dir]``. import-linter
finds a package's modules by walking its folder, so on the repository (or an editable install) it
would not see them. This script lays the package out as an installed wheel has it, in a
temporary folder (the ``.py`` files only, per the pyproject's package-dir), and runs
``lint-imports`` there with the repository's ``[tool.importlinter]`` contracts. Its exit status
is lint-imports'.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def stage(target: Path) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = config.get("package-dir", {})
    for package in config["packages"]:
        # a package's folder: its own mapping, else its parent's mapping plus its last name
        parts = package.split(".")
        for cut in range(len(parts), 0, -1):
            prefix = ".".join(parts[:cut])
            if prefix in mapping:
                source = ROOT / mapping[prefix] / Path(*parts[cut:])
                break
        else:
            source = ROOT / Path(*parts)
        destination = target / Path(*parts)
        destination.mkdir(parents=True, exist_ok=True)
        for file in source.glob("*.py"):
            shutil.copy2(file, destination / file.name)


def lint(staged: Path, **run) -> subprocess.CompletedProcess:
    """``lint-imports`` on a staged layout (see :func:`stage`)."""
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(staged)}  # ahead of the editable install's finder
    return subprocess.run([command, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=staged, env=env, **run)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="evsim-lint-") as tmp:
        stage(Path(tmp))
        return lint(Path(tmp)).returncode


if __name__ == "__main__":
    sys.exit(main())
