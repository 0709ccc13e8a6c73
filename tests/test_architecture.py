"""The layering of evsim, enforced by import-linter's contracts in pyproject.toml.

cli > analysis > runtime > engine | training > datasets > interop > model | events > paths | errors; the engine,
model and events layers import no torch, no dataset reader, no CLI; only the CLI imports the CLI.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "lint_imports.py"


def lint_script():
    spec = importlib.util.spec_from_file_location("lint_imports", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_import_contracts_hold():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: ([3-9]|\d\d+) kept, 0 broken\.", result.stdout), result.stdout


@pytest.mark.parametrize("module, line, contract, reason", [
    ("evsim/engine/kernels.py", "import torch", "import no torch", "evsim.engine is not allowed to import torch"),
    ("evsim/events.py", "import evsim.datasets.nmnist", "import no torch",
     "evsim.events is not allowed to import evsim.datasets"),
    ("evsim/runtime/inputs.py", "import evsim.cli.common", "Nothing outside the CLI",
     "evsim.runtime is not allowed to import evsim.cli"),
    ("evsim/runtime/streaming.py", "import evsim.analysis.report", "Layers",
     "evsim.runtime is not allowed to import evsim.analysis"),
    ("evsim/model/graph.py", "import evsim.engine.kernels", "Layers", "evsim.model is not allowed to import evsim.engine"),
    ("evsim/datasets/nmnist.py", "import evsim.training.network", "Layers",
     "evsim.datasets is not allowed to import evsim.training"),
])
def test_an_import_in_the_wrong_direction_breaks_a_contract(tmp_path, module, line, contract, reason):
    lint = lint_script()
    lint.stage(tmp_path)  # the installed layout: datasets/ is evsim/datasets/ there
    staged = tmp_path / module
    staged.write_text(staged.read_text() + f"\n{line}\n")
    result = lint.lint(tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert re.search(r"Contracts: \d+ kept, [1-9]\d* broken\.", result.stdout), result.stdout
    broken = result.stdout.split("Broken contracts", 1)[1]
    assert contract in broken and reason in broken, result.stdout


CYCLES = """
import grimp
graph = grimp.build_graph("evsim", cache_dir=None)
print(len(graph.modules), "modules")
for module in sorted(graph.modules):
    for other in sorted(graph.find_modules_directly_imported_by(module)):
        if other in graph.modules and other != module and graph.chain_exists(importer=other, imported=module):
            print("cycle:", module, "->", other)
"""


def import_cycles(staged: Path) -> list[str]:
    # a fresh interpreter: grimp finds the package through importlib, which would return this
    # process's evsim (the repository's folder, without training/ and datasets/ inside it)
    env = {**os.environ, "PYTHONPATH": str(staged)}
    result = subprocess.run([sys.executable, "-c", CYCLES], cwd=staged, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[0]) > 40, result.stdout  # the whole package, training and datasets included
    return [line for line in result.stdout.splitlines() if line.startswith("cycle:")]


def test_no_import_cycle(tmp_path):
    """No import cycle anywhere in evsim (imports inside functions included)."""
    lint_script().stage(tmp_path)
    assert import_cycles(tmp_path) == []
    neuron = tmp_path / "evsim" / "model" / "neuron.py"
    neuron.write_text(neuron.read_text() + "\nimport evsim.model.graph\n")  # graph imports neuron
    assert "cycle: evsim.model.graph -> evsim.model.neuron" in import_cycles(tmp_path)
