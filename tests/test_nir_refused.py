"""NIR files evsim must refuse: each malformed graph or unreadable file gets one clear error,
from ``import_nir`` and from ``evsim import`` (exit 2). The graphs are the snntorch fixture of
tests/data/nir/ with one thing broken."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("h5py", reason="NIR files need the nir extra (h5py)")

from evsim.cli.main import main  # noqa: E402
from evsim.errors import ModelError  # noqa: E402
from evsim.interop.nir import import_nir, read_nir, write_nir  # noqa: E402

FIXTURES = Path(__file__).parent / "data" / "nir"
T, DT_US = 20, 15_000


def variant(tmp_path, name: str, edit) -> Path:
    """snntorch_lenet with one change, written back as a NIR file."""
    graph = read_nir(FIXTURES / "snntorch_lenet" / "model.nir")
    graph = edit(graph)
    return write_nir(tmp_path / f"{name}.nir", graph)


def replace_node(graph, name, **changes):
    node = graph.nodes[name]
    nodes = dict(graph.nodes)
    nodes[name] = dataclasses.replace(node, **changes)
    return dataclasses.replace(graph, nodes=nodes)


def with_param(graph, name, key, value):
    return replace_node(graph, name, params={**graph.nodes[name].params, key: value})


BAD = {
    "unknown node": (lambda g: replace_node(g, "1", type="CubaLIF"), r"node '1' has type CubaLIF"),
    "cycle": (lambda g: dataclasses.replace(g, edges=g.edges + (("4", "3"),)), r"the graph has a cycle"),
    "dilated conv": (lambda g: with_param(g, "3", "dilation", np.array([2, 2])), r"node '3' \(Conv2d\): dilation"),
    "groups that do not fit": (lambda g: with_param(g, "3", "groups", np.int64(2)),
                               r"node '3' \(Conv2d\): weight \[50, 20, 5, 5\] in 2 groups does not take an input of shape \[20, 17, 17\]"),
    "groups not positive": (lambda g: with_param(g, "3", "groups", np.int64(0)), r"node '3' \(Conv2d\): groups \[0\] is not one"),
    "shape mismatch": (lambda g: with_param(g, "7", "weight", np.zeros((200, 1000), np.float32)),
                       r"node '7' \(Linear\): weight \[200, 1000\] does not take an input of shape \[1800\]"),
    "NaN parameter": (lambda g: with_param(g, "4", "tau", np.full((50, 13, 13), np.nan)),
                      r"node '4' \(LIF\): tau contains NaN or infinite values"),
    "inf weight": (lambda g: with_param(g, "0", "weight", np.full((20, 2, 5, 5), np.inf, np.float32)),
                   r"node '0' \(Conv2d\): weight contains NaN"),
    "missing Input": (lambda g: dataclasses.replace(
        g, nodes={k: v for k, v in g.nodes.items() if k != "input"},
        edges=tuple(e for e in g.edges if e[0] != "input")), r"exactly one Input node, it has 0"),
    "dangling edge": (lambda g: dataclasses.replace(g, edges=g.edges + (("8", "nowhere"),)), r"names a node 'nowhere'"),
    "neuron shape": (lambda g: with_param(g, "8", "v_threshold", np.ones(7)), r"node '8' \(LIF\): v_threshold: shape \[7\]"),
    "nonzero v_reset": (lambda g: with_param(g, "8", "v_reset", np.full(200, 0.5)), r"node '8' \(LIF\): nonzero v_reset"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_graphs_get_one_clear_error(tmp_path, case, capsys):
    edit, message = BAD[case]
    path = variant(tmp_path, case.replace(" ", "_"), edit)
    with pytest.raises(ModelError, match=message):
        import_nir(path, dt_us=DT_US, timesteps=T)
    assert main(["import", str(path), "--out", str(tmp_path / "m.npz"), "--dt-us", "15000", "-T", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "evsim import: error:" in err
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("how", ["truncated", "corrupt", "empty", "not HDF5 at all"])
def test_unreadable_files_get_one_clear_error(tmp_path, how, capsys):
    data = (FIXTURES / "snntorch_lenet" / "model.nir").read_bytes()
    content = {"truncated": data[: len(data) // 2], "corrupt": data[:4096] + bytes(4096) + data[8192:],
               "empty": b"", "not HDF5 at all": b"{\"nodes\": []}"}[how]
    path = tmp_path / "bad.nir"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="bad.nir"):
        import_nir(path, dt_us=DT_US, timesteps=T)
    assert main(["import", str(path), "--out", str(tmp_path / "m.npz"), "--dt-us", "15000", "-T", "20"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_import_needs_a_time_step_unless_evsim_wrote_the_file(tmp_path, capsys):
    path = FIXTURES / "snntorch_lenet" / "model.nir"
    assert main(["import", str(path), "--out", str(tmp_path / "m.npz")]) == 2
    assert "NIR stores no time step" in capsys.readouterr().err
    with pytest.raises(ModelError, match="unknown semantics"):
        import_nir(path, dt_us=DT_US, timesteps=T, semantics="brian2")
    with pytest.raises(ModelError, match="neuron time step is --semantics nir's"):
        import_nir(path, dt_us=DT_US, timesteps=T, semantics="snntorch", neuron_dt_s=1e-3)
    # the bin width is not the neuron step: at 15 ms snntorch's tau = 0.8 ms would be unstable
    with pytest.raises(ModelError, match=r"dt/tau = 18.75"):
        import_nir(path, dt_us=DT_US, timesteps=T, neuron_dt_s=0.015)
