"""Dataset runs on Ray (evsim.runtime.cluster): the same results as a local run, in input order,
also when a worker process dies mid-run; clear errors without Ray or without a cluster."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import evsim
from evsim.runtime.cluster import check_reachable, parse_address, run_on_cluster, start_local, stream_on_cluster
from evsim.runtime.inputs import InputChunk, sample_inputs
from evsim.runtime.streaming import stream_report
from evsim.datasets.samples import load_samples
from evsim.errors import ClusterError, InputError, MissingExtra

needs_ray = pytest.mark.skipif(
    __import__("importlib").util.find_spec("ray") is None, reason="ray is not installed (the evsim[cluster] extra)"
)


@pytest.fixture(scope="module")
def network():
    return evsim.load("lenet-nmnist")


@pytest.fixture(scope="module")
def samples(network, nmnist_root):
    return load_samples("nmnist", nmnist_root, "test", encoding=network.encoding)


@pytest.fixture(scope="module")
def local_results(network, samples):
    return list(network.run_many(sample_inputs(samples, network), workers=2))


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs for the module; evsim's calls use it as it is (evsim.runtime.cluster.connect)."""
    import ray

    start_local(num_cpus=2)
    yield ray
    ray.shutdown()


def assert_same(results, expected):
    assert len(results) == len(expected)
    for got, want in zip(results, expected):
        assert got.prediction == want.prediction
        np.testing.assert_array_equal(got.output, want.output)
        assert got.per_layer == want.per_layer  # synops, spikes, neuron updates per layer
        assert got.window == want.window


# --- without a cluster ----------------------------------------------------------------------


def test_addresses_are_parsed_or_refused():
    assert parse_address("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert parse_address("head") == ("head", 6379)
    assert parse_address("ray://head") == ("head", 10001)
    assert parse_address("ray://[::1]:10002") == ("::1", 10002)
    with pytest.raises(InputError, match="port"):
        parse_address("head:http")
    with pytest.raises(InputError, match="expected local"):
        parse_address(":6379")


def test_an_address_where_nothing_listens_is_one_clear_error_at_once():
    started = time.perf_counter()
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        check_reachable("127.0.0.1:1")
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("command", ["run", "stream"])
def test_without_ray_the_cli_names_the_extra(command, nmnist_root, monkeypatch, capsys):
    from evsim.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when it is not installed
    argv = ["run", "--model", "lenet-nmnist", "--limit", "2"] if command == "run" else \
        ["stream", str(nmnist_root / "Test" / "0"), "--model", "lenet-nmnist"]
    assert main([*argv, "--cluster", "local", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"evsim {command}: error: --cluster needs ray: pip install 'evsim[cluster]'"


def test_a_chunk_travels_with_its_inputs(network, samples, tmp_path):
    import pickle

    positions = np.arange(3, 9)
    chunk = pickle.loads(pickle.dumps(InputChunk.of(samples, positions)))
    expected = list(sample_inputs(samples, network))[3:9]
    for got, want in zip(chunk.inputs(network.timesteps), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_chunk_of_images_codes_them_as_the_whole_split_does(test_data_dir):
    from evsim.datasets.samples import load_samples as load

    mnist = evsim.load("lenet-mnist")
    images = load("mnist", test_data_dir / "mnist", "test", limit=12, encoding=mnist.encoding)
    expected = list(sample_inputs(images, mnist, seed=5))
    chunk = InputChunk.of(images, [4, 7, 11], seed=5)
    for got, position in zip(chunk.inputs(mnist.timesteps), [4, 7, 11], strict=True):
        np.testing.assert_array_equal(got, expected[position])


# --- on a local cluster of 2 CPUs ------------------------------------------------------------


@needs_ray
@pytest.mark.slow
def test_a_cluster_run_equals_run_many(ray_cluster, network, samples, local_results):
    done = []
    results = list(run_on_cluster(network, samples, "local", threads=1, progress=done.append))
    assert_same(results, local_results)
    assert sum(done) == len(samples) and len(done) > 1  # one call per chunk, every sample once


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _ours(pid: int) -> bool:
    """Whether ``pid`` descends from this process (our Ray's raylet starts the workers), not
    from another Ray on the machine."""
    while pid > 1:
        if pid == os.getpid():
            return True
        pid = _parent(pid)
    return False


def _processes() -> dict[int, str]:
    """Our descendants' titles by pid."""
    titles = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                title = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                if title.startswith("ray::") and _ours(int(entry)):
                    titles[int(entry)] = title
            except (OSError, ValueError, IndexError):
                pass  # a process that ended meanwhile
    return titles


@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds Ray's worker processes in /proc (Linux)")
def test_a_worker_killed_mid_run_loses_and_doubles_nothing(ray_cluster, network, samples, local_results):
    results: list = []
    failure: list = []

    def consume():
        try:
            results.extend(run_on_cluster(network, samples, "local", threads=1, chunk=2))
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread
            failure.append(exc)

    runner = threading.Thread(target=consume)
    runner.start()
    killed = None
    while runner.is_alive() and killed is None:
        # Ray titles a worker process `ray::<task>` while it runs one
        busy = [pid for pid, title in _processes().items() if title == "ray::run_chunk"]
        if busy:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.005)
    runner.join()
    assert killed is not None, "the run ended before a worker could be killed"
    assert not failure, failure
    assert_same(results, local_results)


@needs_ray
@pytest.mark.slow
def test_streaming_on_a_cluster_gives_the_local_reports_in_file_order(ray_cluster, network, nmnist_root):
    files = sorted((nmnist_root / "Test").rglob("*.bin"))[:5] + [nmnist_root / "Test" / "missing.bin"]
    options = dict(every_us=50_000.0, keep_timeline=True, mode="step")
    reports = list(stream_on_cluster(network, files, "local", options, chunk=2))
    expected = [stream_report(path, network, **options) for path in files]
    assert [r["file"] for r in reports] == [str(f) for f in files]
    assert "error" in reports[-1]
    for got, want in zip(reports, expected):
        for report in (got, want):
            report.pop("wall_s", None), report.pop("realtime_factor", None)
            report.pop("error", None)  # names the file's absolute path in the worker
        assert got == want


@needs_ray
@pytest.mark.slow
def test_evsim_run_on_a_cluster_reports_what_the_local_run_does(ray_cluster, monkeypatch, capsys):
    import json

    from evsim.cli.main import main

    reports = []
    for extra in ([], ["--cluster", "local"]):
        assert main(["run", "--model", "lenet-nmnist", "--limit", "6", "--threads", "1", "--json", *extra]) == 0
        report = json.loads(capsys.readouterr().out)
        reports.append({key: value for key, value in report.items() if key not in ("seconds", "samples_per_s")})
    assert reports[0].pop("cluster") is None and reports[1].pop("cluster") == "local"
    assert reports[0] == reports[1]


@needs_ray
@pytest.mark.slow
def test_a_task_wider_than_any_node_is_refused(ray_cluster, network, samples):
    with pytest.raises(ClusterError, match="no node of the cluster has 3 CPUs"):
        next(run_on_cluster(network, samples, "local", threads=3))


def test_without_ray_a_cluster_run_names_the_extra(network, samples, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtra, match=r"evsim\[cluster\]"):
        next(run_on_cluster(network, samples, "local"))
