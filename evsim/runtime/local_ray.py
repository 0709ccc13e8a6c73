"""A Ray started inside evsim (``--cluster local``) stopped as a whole, Ctrl-C or not.

A terminal sends Ctrl-C (SIGINT) to the whole process group, and the processes a local Ray starts
(GCS, raylet, agents, workers) belong to it: they died of it half-way, printing C++ stack traces
or leaving orphans that SIGTERM did not stop. So Ray is started with SIGINT blocked, a mask its
processes inherit (:func:`ctrl_c_held`): only the driver sees Ctrl-C, cancels its tasks and
shuts Ray down; then :func:`shut_down` stops whatever the shutdown left (agents still starting
when the raylet went). Process discovery reads Linux's /proc; elsewhere only Ray's own shutdown runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager


def shut_down(ray, local: bool) -> None:
    """Disconnect; with ``local``, stop every process the Ray started here had started. A Ctrl-C
    meanwhile waits until that is done."""
    with ctrl_c_held():
        started = descendants(os.getpid()) if local else {}
        sessions = {marker for pid in started for marker in _session_dirs(pid)}
        ray.shutdown()
        stop_leftovers(started, sessions)


def descendants(pid: int) -> dict[int, int]:
    """The processes below ``pid`` (Linux /proc; elsewhere none): pid -> start time."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)] = int(stat[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found and (stat := _stat(child)) is not None:
                found[child] = int(stat[19])
                frontier.append(child)
    return found


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ..., start time at 19)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _session_dirs(pid: int) -> list[bytes]:
    """The ``--session-dir=`` a Ray process was started with (the folder names its driver's pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [arg for arg in fh.read().split(b"\0") if arg.startswith(b"--session-dir=")]
    except OSError:
        return []


def _orphaned_ray_of_ours(pid: int) -> bool:
    """A Ray process of this process group whose parent died: one that Ray started during its
    own shutdown (a renamed agent, ``ray::...``, whose command line no longer names its session)."""
    stat = _stat(pid)
    if stat is None or int(stat[1]) != 1 or int(stat[2]) != os.getpgrp():
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            command = fh.read()
    except OSError:
        return False
    return command.startswith(b"ray::") or b"/ray/" in command


def stop_leftovers(started: dict[int, int], sessions: set[bytes], grace_s: float = 3.0) -> None:
    """Stop what a local Ray started and its shutdown left running: agents still starting when
    the raylet went lose their parent and stay, whatever SIGTERM says. First every process of
    ``started`` (the same pid and start time: it may have renamed itself meanwhile) gets
    ``grace_s`` to end; then the strays: processes of one of our Ray ``sessions``, or Ray
    processes of this group orphaned meanwhile (one restarted during the shutdown)."""
    def alive(pids) -> list[int]:
        return [pid for pid in pids if (stat := _stat(pid)) is not None and stat[0] != b"Z"
                and (pid not in started or int(stat[19]) == started[pid])]

    def strays() -> list[int]:
        others = [int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) not in started]
        return alive(pid for pid in others if sessions & set(_session_dirs(pid)) or _orphaned_ray_of_ours(pid))

    _stop(lambda: alive(started), grace_s)
    _stop(strays, 0.5)  # once their parents are gone, orphans show as such


def _stop(find, grace_s: float) -> None:
    """Wait up to ``grace_s`` for the processes ``find()`` lists to end; kill the rest."""
    deadline = time.monotonic() + grace_s
    while find() and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in find():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 1.0
    while find() and time.monotonic() < deadline:  # gone, so that their children are orphans now
        time.sleep(0.05)


@contextmanager
def ctrl_c_held():
    """Hold back Ctrl-C (SIGINT) for the ``with`` block and deliver it after, as a KeyboardInterrupt.

    Processes started inside the block inherit the blocked signal: a local Ray's raylet, GCS,
    agents and workers then never see the Ctrl-C that the terminal sends to the whole process
    group (they died of it half-way, printing C++ stack traces or leaving orphans); only this
    process does, and it cancels the tasks and shuts them down in order.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # a Ctrl-C that came meanwhile arrives now
