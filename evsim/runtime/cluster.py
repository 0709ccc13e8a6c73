"""Dataset runs on a Ray cluster: ``evsim run --cluster`` and ``evsim stream DIR... --cluster``.

The samples (or files) are cut into chunks, one Ray task per chunk; each task runs the engine on
``threads`` threads (the kernels release the GIL) and returns its chunk's results, which come back
here keyed by chunk index and are handed on in input order: the same results as a local run.
Ray reuses its worker processes, so each one compiles (or loads) the numba kernels and builds the
network once; the model travels once, through the object store. A task whose worker dies is run
again (``MAX_RETRIES``); since results are kept per chunk, a retried chunk replaces nothing and
is counted once.

``local`` starts a Ray instance inside this process, on 127.0.0.1; any other address is a running
cluster (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on the others):
``HOST:PORT`` of its head, ``ray://HOST:10001`` for Ray Client, or ``auto`` for the cluster that
this machine belongs to. Every node needs evsim installed; ``evsim stream`` reads its files on the
nodes, under the same paths (a shared file system), while ``evsim run`` ships its inputs.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import socket
import tempfile
import uuid
from contextlib import closing, contextmanager
from dataclasses import dataclass
from concurrent.futures import ThreadPoolExecutor

from evsim.runtime.inputs import InputChunk
from evsim.runtime.local_ray import ctrl_c_held, shut_down
from evsim.errors import ClusterError, EvsimError, InputError, require

MAX_RETRIES = 3  # runs of a task whose worker process or node died, beyond the first
CONNECT_TIMEOUT_S = 5.0
TASKS_PER_SLOT = 4  # chunks per task slot: enough to balance uneven chunks, few enough to amortise a task
MAX_CHUNK = 64  # samples per task at most: a lost worker costs at most this much work again
DEFAULT_RAY_PORT = 6379


# --- connecting -----------------------------------------------------------------------------


def _ray():
    return require("ray", "cluster", "--cluster")


@contextmanager
def connect(address: str, num_cpus: int | None = None):
    """Ray, connected to ``address`` (``local``: a Ray started here with ``num_cpus`` CPUs, default
    all) for the ``with`` block, and disconnected after it. A Ray this process already runs (a
    caller's own ``ray.init``) is used as it is and left running."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    local = address == "local"
    if local:
        start_local(num_cpus)
    else:
        check_reachable(address)
        try:
            ray.init(address=address, **QUIET)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds, bare Exception included
            raise ClusterError(f"cannot connect to the Ray cluster at {address}: {_first_line(exc)}") from None
    try:
        yield ray
    finally:
        shut_down(ray, local)


# the workers' output must not mix into ours (--json prints one object and nothing else)
QUIET = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
LOCAL_STARTS = 3


def start_local(num_cpus: int | None = None) -> None:
    """Start Ray in this process with ``num_cpus`` CPUs (default: all of them), no dashboard.

    Ray gives a starting node a fixed 30 s to register; a machine busy enough can miss that, so a
    start that timed out is tried again.
    """
    ray = _ray()
    if num_cpus is not None and num_cpus < 1:
        raise InputError(f"a local cluster needs at least one CPU, got {num_cpus}")
    for attempt in range(LOCAL_STARTS):
        try:
            with ctrl_c_held():  # Ray's processes are started with Ctrl-C blocked, for good
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **QUIET)
            return
        except KeyboardInterrupt:  # held back during the start, delivered as it ended
            shut_down(ray, local=True)
            raise
        except Exception as exc:  # noqa: BLE001 - Ray raises a bare Exception for a start that timed out
            shut_down(ray, local=True)  # what did start
            if attempt == LOCAL_STARTS - 1 or "timed out" not in str(exc):
                raise ClusterError(f"cannot start Ray here: {_first_line(exc)}") from None


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """A ClusterError within ``timeout_s`` when nothing listens at ``address`` (``ray.init`` would
    keep retrying for a minute or more). ``auto`` is left to Ray, which looks on this machine."""
    if address == "auto":
        return
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({reason}); start one with `ray start --head` "
            f"and pass the address it prints, or use --cluster local"
        ) from None


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST[:PORT]`` or ``ray://HOST[:PORT]``."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    host = host.strip("[]")  # an IPv6 literal
    if not host:
        raise InputError(f"--cluster {address!r}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    if not port:
        return host, 10001 if address.startswith("ray://") else DEFAULT_RAY_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--cluster {address!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def task_slots(ray, threads: int) -> int:
    """How many tasks of ``threads`` CPUs the cluster runs at once; a ClusterError if no node has
    that many CPUs (the tasks would wait for ever)."""
    cpus = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
    if not cpus or max(cpus) < threads:
        raise ClusterError(f"no node of the cluster has {threads} CPUs for a task of {threads} threads "
                           f"(CPUs per node: {', '.join(str(int(c)) for c in cpus) or 'none'}); lower --threads")
    return max(1, sum(int(c) // threads for c in cpus))


def chunk_size(count: int, slots: int) -> int:
    return max(1, min(MAX_CHUNK, math.ceil(count / (slots * TASKS_PER_SLOT))))


# --- the model on the workers --------------------------------------------------------------


@dataclass(frozen=True)
class SharedModel:
    """A network in the object store: the graph and weights, and a key naming this copy. The
    reference is wrapped in a list, so that Ray hands it to a task as a reference and the task
    fetches it only when its worker has not built this network yet."""

    key: str
    ref: list


def share_model(ray, network) -> SharedModel:
    return SharedModel(uuid.uuid4().hex, [ray.put((network.graph, network.weights, network.dtype.str, network.name))])


_worker_model: tuple[str, object] | None = None  # (key, Network): the network this worker process built last


def worker_network(model: SharedModel, per_node_cache: bool):
    """The network of ``model``, built once per worker process."""
    global _worker_model
    if _worker_model is None or _worker_model[0] != model.key:
        use_node_cache(per_node_cache)
        import ray

        from evsim.datasets.formats import read_events
        from evsim.engine.network import Network

        graph, weights, dtype, name = ray.get(model.ref[0])
        _worker_model = (model.key, Network(graph, weights, dtype=dtype, name=name, read_file=read_events))
    return _worker_model[1]


def use_node_cache(per_node: bool) -> None:
    """Point numba's cache at a folder of this node's own, before the engine is first imported.

    Numba caches beside the installed sources by default; on a cluster those may lie on a file
    system that every node shares and writes at once. A local cluster runs on the driver's machine
    and keeps its cache, which is already compiled.
    """
    if per_node:
        os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"evsim-numba-{getpass.getuser()}"))


# --- the tasks ------------------------------------------------------------------------------


def run_chunk(model: SharedModel, chunk: InputChunk, mode: str, threads: int, per_node_cache: bool) -> list:
    """A chunk of samples through the network: its RunResults in order."""
    network = worker_network(model, per_node_cache)
    return list(network.run_many(chunk.inputs(network.timesteps), workers=threads, mode=mode))


def stream_chunk(model: SharedModel, paths: list[str], options: dict, threads: int, per_node_cache: bool) -> list[dict]:
    """A chunk of files streamed through the network, ``threads`` at a time: their reports in order."""
    from evsim.runtime.streaming import stream_report

    network = worker_network(model, per_node_cache)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda path: stream_report(path, network, **options), paths))


# --- the driver -----------------------------------------------------------------------------


def ordered_results(ray, submit, sizes: list[int], window: int, progress=None):
    """Submit chunk ``i`` as ``submit(i)`` (an ObjectRef), at most ``window`` chunks ahead of the
    first one not yet handed on; yield the chunks' results one by one in input order.
    ``progress(n)`` is called as each chunk of ``n`` items completes (ray.wait)."""
    pending: dict = {}  # ObjectRef -> chunk index
    done: dict[int, list] = {}
    submitted = handed = 0
    try:
        while handed < len(sizes):
            while submitted < len(sizes) and submitted < handed + window:
                pending[submit(submitted)] = submitted
                submitted += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                index = pending.pop(ref)
                done[index] = _get(ray, ref, index)
                if progress is not None:
                    progress(sizes[index])
            while handed in done:
                yield from done.pop(handed)
                handed += 1
    finally:
        for ref in pending:  # an error or a consumer that stopped: no work left behind
            ray.cancel(ref, force=True)


def _get(ray, ref, index: int):
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, EvsimError):
            raise exc.cause from None
        raise
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError) as exc:
        raise ClusterError(f"chunk {index} was lost {MAX_RETRIES + 1} times ({_first_line(exc)})") from None


def run_on_cluster(network, samples, address: str, mode: str = "step", threads: int = 1, seed: int = 0,
                   progress=None, num_cpus: int | None = None, chunk: int | None = None):
    """Every sample of ``samples`` through ``network`` on the Ray cluster at ``address``: yields
    RunResults in sample order, the same as ``network.run_many(sample_inputs(samples, network,
    seed), mode=mode)``. ``progress(n)`` is called as each chunk of ``n`` samples completes."""
    with connect(address, num_cpus) as ray:
        slots = task_slots(ray, threads)
        size = chunk or chunk_size(len(samples), slots)
        starts = list(range(0, len(samples), size))
        model = share_model(ray, network)
        task = ray.remote(run_chunk).options(num_cpus=threads, max_retries=MAX_RETRIES, retry_exceptions=False)
        per_node = address != "local"

        def submit(i: int):
            positions = range(starts[i], min(starts[i] + size, len(samples)))
            return task.remote(model, InputChunk.of(samples, positions, seed), mode, threads, per_node)

        sizes = [min(size, len(samples) - start) for start in starts]
        with closing(ordered_results(ray, submit, sizes, window=2 * slots, progress=progress)) as results:
            yield from results


def stream_on_cluster(network, paths: list, address: str, options: dict, threads: int = 1, progress=None,
                      num_cpus: int | None = None, chunk: int | None = None):
    """Stream every file of ``paths`` through ``network`` on the Ray cluster at ``address`` (each
    node reads them under the same path): yields the reports of
    :func:`evsim.runtime.streaming.stream_report` in file order."""
    given = [str(p) for p in paths]
    absolute = [os.path.abspath(p) for p in given]  # a worker's folder is not ours
    with connect(address, num_cpus) as ray:
        slots = task_slots(ray, threads)
        size = chunk or chunk_size(len(given), slots)
        model = share_model(ray, network)
        task = ray.remote(stream_chunk).options(num_cpus=threads, max_retries=MAX_RETRIES, retry_exceptions=False)
        per_node = address != "local"
        chunks = [absolute[i : i + size] for i in range(0, len(absolute), size)]
        reports = ordered_results(ray, lambda i: task.remote(model, chunks[i], options, threads, per_node),
                                  [len(c) for c in chunks], window=2 * slots, progress=progress)
        with closing(reports):  # its unfinished tasks are cancelled while Ray still runs
            for name, report in zip(given, reports):
                yield {**report, "file": name}  # named as given, as a local run names it
