"""Where evsim's package data lies: the bottom layer, importable by every other one."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
BUNDLED_MODELS = PACKAGE / "models"
"""Trained models shipped inside the package, each ``<name>.npz`` with its ``<name>.md`` card."""
BUNDLED_DATA = PACKAGE / "data"
"""Real recordings shipped inside the package (see its README.md): ``BUNDLED_DATA / "nmnist"``."""
DEMO_MODEL = "lenet-nmnist"
"""The bundled model ``evsim demo`` streams the bundled recordings through."""
DEMO_DATA = BUNDLED_DATA / "nmnist"
