"""Model files from strangers (issue 28): every hostile NIR or ``.npz`` file ends in exit 2 with one
line and no traceback, reads nothing outside itself, and keeps memory bounded.

The corpus is written here, by h5py and zipfile, in milliseconds: a size is *declared* (an HDF5
dataset never written reads as its fill value; an ``.npy`` header can promise any shape), so no
case needs gigabytes on disk. The memory bound is checked in one subprocess that runs the whole
corpus through the CLI and reports its peak resident memory (README, "Model files from strangers"):
its own high-water mark, VmHWM, since ru_maxrss on Linux also counts the parent's memory at fork.
Random byte flips and truncations of a real NIR file and a real model file, seeded, must each
end in a model or a ModelError, never anything else.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py", reason="NIR files need the nir extra (h5py)")

from evsim.cli.main import main  # noqa: E402
from evsim.errors import ModelError  # noqa: E402
from evsim.interop.nir import NirGraph, NirNode, import_nir, nir_to_model, read_nir, write_nir  # noqa: E402
from evsim.model.file import GRAPH_KEY, MAX_GRAPH_BYTES, MAX_MODEL_BYTES, load_model, model_path, save_model  # noqa: E402
from evsim.model.graph import INPUT, Graph, Population, Projection  # noqa: E402

NIR_FIXTURE = Path(__file__).parent / "data" / "nir" / "snntorch_lenet" / "model.nir"
PEAK_RSS_MB = 400
"""The README's bound: the whole hostile corpus, run through the CLI in one process, peaks below this."""
HUGE = MAX_MODEL_BYTES // 4 + (1 << 26)  # float32 elements: 1.25 GiB, more than the model bound
IMPORT = ("--out", "{out}", "--dt-us", "1000", "--timesteps", "5")


# ------------------------------------------------------------------------------- NIR corpus


def edit_nir(path: Path, edit) -> Path:
    """The snntorch LeNet fixture with ``edit(f, other)`` applied; ``other`` is a second HDF5 file
    beside it holding a (20, 2, 5, 5) float32 dataset ``/w`` and 4000 bytes of raw "secret" data."""
    shutil.copy(NIR_FIXTURE, path)
    other = path.with_name(path.stem + "_other.h5")
    with h5py.File(other, "w") as g:
        g["w"] = np.ones((20, 2, 5, 5), np.float32)
    raw = path.with_name(path.stem + "_secret.bin")
    raw.write_bytes(np.full(1000, 7.0, np.float32).tobytes())
    with h5py.File(path, "r+") as f:
        edit(f, other, raw)
    return path


def replace_weight(f, **kwargs):
    del f["node/nodes/0/weight"]
    f["node/nodes/0"].create_dataset("weight", **kwargs)


def external_link(f, other, raw):
    del f["node/nodes/0/weight"]
    f["node/nodes/0/weight"] = h5py.ExternalLink(str(other), "/w")


def soft_link_out(f, other, raw):
    del f["node/nodes/0/weight"]
    f["node/nodes/0/weight"] = h5py.SoftLink("/node/nodes/3/weight")


def virtual(f, other, raw):
    layout = h5py.VirtualLayout(shape=(20, 2, 5, 5), dtype=np.float32)
    layout[:] = h5py.VirtualSource(str(other), "w", shape=(20, 2, 5, 5))
    del f["node/nodes/0/weight"]
    f["node/nodes/0"].create_virtual_dataset("weight", layout)


def too_many_nodes(f, other, raw):
    nodes = f["node/nodes"]
    for i in range(10_001 - len(nodes)):
        nodes[f"x{i}"] = nodes["1"]  # hard links: the count is refused before any node is read


def too_many_edges(f, other, raw):
    del f["node/edges"]
    f["node"].create_dataset("edges", shape=(20_001, 2), dtype=h5py.string_dtype())


NIR_CASES = {
    "gzip bomb": (lambda f, o, r: replace_weight(f, shape=(HUGE,), dtype=np.float32, chunks=(1 << 20,),
                                                 compression="gzip"), r"declares \d+ bytes.*MAX_MODEL_BYTES"),
    "external storage": (lambda f, o, r: replace_weight(f, shape=(20, 2, 5, 5), dtype=np.float32,
                                                        external=[(str(r), 0, 4000)]), r"stored in another file"),
    "external link": (external_link, r"external link to .*_other\.h5:/w; evsim reads nothing outside the file"),
    "soft link leaving its group": (soft_link_out, r"soft link to /node/nodes/3/weight, outside its group"),
    "virtual dataset": (virtual, r"virtual dataset"),
    "lzf filter": (lambda f, o, r: replace_weight(f, data=np.ones((20, 2, 5, 5), np.float32), compression="lzf"),
                   r"uses the HDF5 filter lzf"),
    "vlen numbers": (lambda f, o, r: replace_weight(f, shape=(4,), dtype=h5py.vlen_dtype(np.float32)),
                     r"variable-length sequence"),
    "object references": (lambda f, o, r: replace_weight(f, shape=(4,), dtype=h5py.ref_dtype), r"object reference"),
    "compound dtype": (lambda f, o, r: replace_weight(f, shape=(4,), dtype=np.dtype([("a", "<f4"), ("b", "<i4")])),
                       r"compound"),
    "empty dataspace": (lambda f, o, r: replace_weight(f, data=h5py.Empty("f4")), r"empty dataspace"),
    "text array as weight": (lambda f, o, r: replace_weight(f, data=np.array(["a", "b"], dtype=object),
                                                            dtype=h5py.string_dtype()), r"array of text"),
    "too many nodes": (too_many_nodes, r"holds 10\d\d\d nodes; evsim reads at most 10000"),
    "too many edges": (too_many_edges, r"20001 edges; evsim reads at most 20000"),
}


def chain(n_scale: int) -> NirGraph:
    """Input -> Flatten -> n_scale Scale nodes -> Linear -> LIF -> Output: valid, and long."""
    nodes = {"in": NirNode("in", "Input", {"shape": np.array([1, 2, 2])}),
             "flat": NirNode("flat", "Flatten", {"start_dim": np.int64(0), "end_dim": np.int64(-1)}),
             "fc": NirNode("fc", "Linear", {"weight": np.eye(4)}),
             "lif": NirNode("lif", "IF", {"r": np.ones(4), "v_threshold": np.ones(4)}),
             "out": NirNode("out", "Output", {"shape": np.array([4])})}
    names = [f"s{i}" for i in range(n_scale)]
    nodes.update({n: NirNode(n, "Scale", {"scale": np.full(4, 1.0)}) for n in names})
    path = ["in", "flat", *names, "fc", "lif", "out"]
    return NirGraph(nodes, tuple(zip(path, path[1:])))


def with_edges(graph: NirGraph, add=(), drop=()) -> NirGraph:
    return dataclasses.replace(graph, edges=tuple(e for e in graph.edges if e not in drop) + tuple(add))


def with_node(graph: NirGraph, node: NirNode) -> NirGraph:
    return dataclasses.replace(graph, nodes={**graph.nodes, node.name: node})


SPARE = NirNode("spare", "Scale", {"scale": np.full(4, 1.0)})
GRAPH_FAULTS = {
    "cycle": (lambda g: with_edges(g, add=[("s1", "s0")]), r"the graph has a cycle"),
    "dangling edge": (lambda g: with_edges(g, add=[("s1", "ghost")]), r"dangling edge: 's1' -> 'ghost' names a node 'ghost'"),
    "unreachable node": (lambda g: with_edges(with_node(g, SPARE), add=[("spare", "fc")]),
                         r"node 'spare' \(Scale\) is unreachable: no path from the Input 'in'"),
    "node leading nowhere": (lambda g: with_edges(with_node(g, SPARE), add=[("s1", "spare")]),
                             r"node 'spare' \(Scale\) leads nowhere"),
    "no path from input to output": (lambda g: with_edges(g, drop=[("s1", "s2")]),
                                     r"no path from its Input 'in' to its Output 'out'"),
}


# ------------------------------------------------------------------------------- .npz corpus


def tiny_graph(out: int = 3, hidden: int = 4) -> Graph:
    return Graph((1, 2, 2), (Population("h", "lif", (hidden,), (Projection(INPUT, "linear", "h.w"),)),
                             Population("out", "output", (out,), (Projection("h", "linear", "out.w"),))),
                 timesteps=5, encoding={"kind": "events", "window_us": 5000, "sensor_size": [2, 2, 1]})


def npy_header(descr: str, shape) -> bytes:
    """A ``.npy`` header that promises ``shape`` with a few bytes of data behind it."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue() + b"\0" * 64


def write_npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def npy(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def graph_bytes(graph: Graph) -> bytes:
    header = {"format": "evsim-model", "version": 2, "graph": graph.to_dict()}
    return npy(np.frombuffer(json.dumps(header).encode(), np.uint8))


def good_members(graph: Graph | None = None) -> dict[str, bytes]:
    graph = graph or tiny_graph()
    return {GRAPH_KEY + ".npy": graph_bytes(graph),
            **{f"{k}.npy": npy(np.ones(s, np.float32)) for k, s in graph.weight_shapes().items()}}


NPZ_CASES = {
    "graph record declares 6.4 GB": ({GRAPH_KEY + ".npy": npy_header("|u1", (6_400_000_000,))},
                                     rf"graph description declares 6400000000 bytes; evsim reads at most {MAX_GRAPH_BYTES}"),
    "weight declares 6.4 GB": ({**good_members(), "h.w.npy": npy_header("<f4", (40_000, 40_000))},
                               r"weight h.w has shape \(40000, 40000\), graph needs \(4, 4\)"),
    "graph needs 6.4 GB of weights": (
        {GRAPH_KEY + ".npy": graph_bytes(tiny_graph(40_000, 40_000)), "h.w.npy": npy_header("<f4", (40_000, 4)),
         "out.w.npy": npy_header("<f4", (40_000, 40_000))},
        r"the graph needs \d+ bytes of weights; evsim reads models of at most"),
    "weight of objects": ({**good_members(), "h.w.npy": npy_header("|O", (4, 4))}, r"holds Python objects"),
    "member that is no array": ({**good_members(), "notes.txt": b"hello"}, r"holds 'notes.txt', which is not an array"),
    "weight in an unknown dtype": ({**good_members(), "h.w.npy": npy(np.ones((4, 4), np.int8))},
                                   r"weight h.w has dtype int8, expected float32 or float64"),
}


# ------------------------------------------------------------------------------- the corpus on disk


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[list[str], str]]:
    """Every hostile case as (evsim argv, the pattern its one error line must match)."""
    folder = tmp_path_factory.mktemp("hostile")
    out = str(folder / "imported.npz")
    cases = {}
    for i, (name, (edit, match)) in enumerate(NIR_CASES.items()):
        path = edit_nir(folder / f"nir{i}.nir", edit)
        cases[f"nir: {name}"] = (["import", str(path), *(a.format(out=out) for a in IMPORT)], match)
    for i, (name, (fault, match)) in enumerate(GRAPH_FAULTS.items()):
        path = write_nir(folder / f"graph{i}.nir", fault(chain(3)))
        cases[f"graph: {name}"] = (["import", str(path), *(a.format(out=out) for a in IMPORT)], match)
    for i, (name, (members, match)) in enumerate(NPZ_CASES.items()):
        path = write_npz(folder / f"model{i}.npz", members)
        cases[f"npz: {name}"] = (["info", str(path)], match)
    return cases


CASE_NAMES = [f"nir: {n}" for n in NIR_CASES] + [f"graph: {n}" for n in GRAPH_FAULTS] + [f"npz: {n}" for n in NPZ_CASES]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_hostile_file_ends_in_one_line_and_exit_2(case, corpus, capsys):
    argv, match = corpus[case]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (case, out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.search(match, lines[0]), lines[0]


PEAK_SCRIPT = """
import json, resource, sys
from evsim.cli.main import main

codes = [main(argv) for argv in json.loads(sys.argv[1])]
try:  # this process's own high-water mark: on Linux, ru_maxrss also counts the parent's memory at fork
    status = open("/proc/self/status").read()
    peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
except OSError:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)
print(json.dumps({"codes": codes, "peak_mb": peak_mb}))
"""


def test_hostile_corpus_peak_memory_is_bounded(corpus):
    """The whole corpus through the CLI in one fresh process: every case exit 2, peak RSS under PEAK_RSS_MB."""
    argvs = [argv for argv, _ in corpus.values()]
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [2] * len(argvs), dict(zip(corpus, result["codes"]))
    assert result["peak_mb"] < PEAK_RSS_MB, f"peak resident memory {result['peak_mb']:.0f} MB"


def test_a_long_valid_chain_imports_without_recursion(tmp_path):
    """Thousands of Scale nodes in a row (the issue's RecursionError), in memory (h5py takes about a
    millisecond per node, and the file path is the corpus's): a model, the scales folded into the weights."""
    model = nir_to_model(chain(5000), dt_us=1000, timesteps=5)
    np.testing.assert_array_equal(model.weights["fc"], np.eye(4))
    assert [p.kind for p in model.graph.populations] == ["lif", "output"]


def test_a_sparse_file_beyond_the_model_bound_is_refused_unread(tmp_path):
    path = tmp_path / "huge.nir"
    with open(path, "wb") as fh:
        fh.truncate(MAX_MODEL_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ModelError, match=rf"the file has {MAX_MODEL_BYTES + 1} bytes"):
        read_nir(path)


# ------------------------------------------------------------------------------- byte flips


def mutations(data: bytes, seed: int, count: int):
    """``count`` damaged copies of ``data``: random byte flips (1 to 16 bytes) and truncations."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        if k % 3 == 2:
            yield data[: int(rng.integers(0, len(data)))]
        else:
            buf = bytearray(data)
            for pos in rng.integers(0, len(data), size=int(rng.integers(1, 17))):
                buf[pos] ^= int(rng.integers(1, 256))
            yield bytes(buf)


def test_flipped_and_truncated_nir_files_end_in_a_model_or_a_model_error(tmp_path):
    data = NIR_FIXTURE.read_bytes()
    outcomes = {"model": 0, "error": 0}
    for k, damaged in enumerate(mutations(data, seed=28, count=60)):
        path = tmp_path / f"flip{k}.nir"
        path.write_bytes(damaged)
        try:
            import_nir(path, dt_us=1000, timesteps=5, semantics="snntorch")
            outcomes["model"] += 1
        except ModelError as exc:
            assert "\n" not in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 10, outcomes  # the damage was real


def test_flipped_and_truncated_model_files_end_in_a_model_or_a_model_error(tmp_path):
    path = save_model(tmp_path / "base.npz", tiny_graph(), {"h.w": np.ones((4, 4), np.float32),
                                                            "out.w": np.ones((3, 4), np.float32)})
    bundled = model_path("lenet-nmnist").read_bytes()
    outcomes = {"model": 0, "error": 0}
    for source, data, count in (("tiny", path.read_bytes(), 60), ("lenet", bundled, 15)):
        for k, damaged in enumerate(mutations(data, seed=29, count=count)):
            target = tmp_path / f"{source}{k}.npz"
            target.write_bytes(damaged)
            try:
                load_model(target)
                outcomes["model"] += 1
            except ModelError as exc:
                assert "\n" not in str(exc)
                outcomes["error"] += 1
    assert outcomes["error"] > 20, outcomes


# ------------------------------------------------------------------------------- event files


def gzip_of_zeros(header: bytes, zeros: int) -> bytes:
    """A gzip stream of ``header`` and ``zeros`` zero bytes, written a megabyte at a time."""
    import zlib

    stream = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [stream.compress(header)]
    for _ in range(zeros >> 20):
        parts.append(stream.compress(bytes(1 << 20)))
    return b"".join(parts) + stream.flush()


def peak_python_bytes(fn) -> tuple[int, Exception | None]:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        error = None
    except Exception as exc:  # noqa: BLE001 - returned for the caller to check
        error = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, error


def test_an_idx_gzip_bomb_decompresses_no_further_than_its_header_declares(tmp_path):
    from evsim.datasets.mnist import read_idx
    from evsim.errors import DataError

    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (2, 28, 28))  # 1568 bytes of images
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(gzip_of_zeros(header, 64 << 20))  # ... and 64 MiB behind them, in about 64 kB
    peak, error = peak_python_bytes(lambda: read_idx(path))
    assert isinstance(error, DataError) and "unexpected bytes after the IDX data" in str(error), error
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_an_idx_header_declaring_gigabytes_allocates_nothing_of_them(tmp_path):
    from evsim.datasets.mnist import read_idx
    from evsim.errors import DataError

    header = bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in (4_000_000, 28, 28))
    for name, data in (("raw-idx3-ubyte", header + bytes(100)), ("gz-idx3-ubyte.gz", gzip_of_zeros(header, 0))):
        (tmp_path / name).write_bytes(data)
        peak, error = peak_python_bytes(lambda: read_idx(tmp_path / name))
        assert isinstance(error, DataError) and "truncated" in str(error), error
        assert peak < 4 << 20, (name, peak)


def test_aedat4_size_fields_are_checked_against_the_file_before_decoding(tmp_path, dvs_dir):
    import struct

    from evsim.datasets.formats import read_events
    from evsim.errors import DataError

    data = bytearray((dvs_dir / "sample.aedat4").read_bytes())
    first_packet = 18 + struct.unpack_from("<i", data, 14)[0]
    bad_packet = bytearray(data)
    struct.pack_into("<i", bad_packet, first_packet + 4, 0x7FFFFFFF)
    bad_header = bytearray(data)
    struct.pack_into("<i", bad_header, 14, 0x7FFFFFF0)
    cases = ((bad_packet, r"declares 2147483647 bytes, \d+ remain"), (bad_header, r"the header declares 2147483632 bytes"))
    for k, (damaged, match) in enumerate(cases):
        path = tmp_path / f"bad{k}.aedat4"
        path.write_bytes(bytes(damaged))
        with pytest.raises(DataError, match=match):
            read_events(path)


def test_a_header_declaring_an_absurd_sensor_is_refused(tmp_path, dvs_dir):
    from evsim.datasets.formats import read_events
    from evsim.errors import DataError

    data = (dvs_dir / "gen3_evt2_sample.raw").read_bytes()
    path = tmp_path / "huge.raw"
    path.write_bytes(b"% geometry 100000000x100000000\n" + data)
    with pytest.raises(DataError, match="declares a 100000000x100000000 sensor"):
        read_events(path)
