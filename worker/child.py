"""The training process of one attempt, seen from the worker that started it: start, memory limit, end.

Each attempt trains in a child process (worker/attempt.py), so that a native crash (a segmentation fault in a
kernel), an abort or the out-of-memory killer ends that process, not the worker: the worker records why on the
run and takes the next one. Training processes are forked from a fork server that the worker starts once (a fresh
interpreter that has imported the training code: torch, the engine), so an attempt starts in a fraction of a
second instead of the ~3 s of imports a new interpreter pays. The fork server has one thread and never touches
CUDA, so its children may use CUDA; the worker itself could not fork them (its threads, its CUDA context).

While the child runs, the worker polls its memory every `POLL_S` and kills it past AMST_RUN_MEMORY_MB, so that
the run fails alone instead of the kernel's out-of-memory killer choosing among the machine's processes.
(RLIMIT_AS counts address space, which CUDA reserves by the terabyte; a cgroup's memory.max needs a delegated
cgroup v2, which most hosts, containers and this CI lack.)
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import subprocess
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

log = logging.getLogger("amst.worker")
POLL_S = 0.2
PR_SET_PDEATHSIG = 1
LOADERS_EVERY = 10  # polls between two looks at the data-loading processes (smaps_rollup costs ~5 ms per GiB)
MIB = 2**20


@dataclass(frozen=True)
class ProcessEnd:
    """How a training process ended: its exit status (negative: the signal that killed it), its peak memory
    where known, and, when the worker killed it for memory, what it used then and the limit."""

    returncode: int
    peak_mib: float | None = None
    over_limit_mib: float | None = None  # what it used when the worker killed it (AMST_RUN_MEMORY_MB)
    limit_mib: int | None = None

    @property
    def abnormal(self) -> bool:
        return self.returncode != 0 or self.over_limit_mib is not None


def status_kib(pid: int, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM, RssAnon), or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def private_kib(pid: int) -> int:
    """Memory a process holds alone (Private_Clean + Private_Dirty): a data-loading process forked from the
    training process shares its pages until it writes them, and those must not count twice."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith(("Private_Clean:",
                                                                                      "Private_Dirty:")))


def descendants(root: int) -> list[int]:
    """Every live process below `root` (its data-loading processes and theirs), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, frontier = [], [root]
    while frontier:
        children = [c for p in frontier for c in parents.get(p, [])]
        found += children
        frontier = children
    return found


class MemoryMeter:
    """The memory of a training process and its data-loading processes, in MiB: its resident set (VmRSS) every
    poll, plus what its descendants hold privately, looked at every LOADERS_EVERY polls."""

    def __init__(self, pid: int):
        self.pid, self.polls, self.loaders_kib, self.peak_mib = pid, 0, 0, 0.0

    def sample(self) -> float | None:
        own = status_kib(self.pid, "VmRSS")
        if own is None:
            return None
        if self.polls % LOADERS_EVERY == 0:
            self.loaders_kib = sum(private_kib(p) for p in descendants(self.pid))
        self.polls += 1
        used = (own + self.loaders_kib) / 1024
        self.peak_mib = max(self.peak_mib, used, (status_kib(self.pid, "VmHWM") or 0) / 1024)
        return used


# What a training process imports, the engine's lazy imports included (torch, torchvision, the methods): ~3 s.
PRELOAD = ["worker.attempt", "amst_core.execute", "amst_core.engine", "amst_core.methods", "amst_core.models"]
_forkserver: ForkServerContext | None = None


def forkserver() -> ForkServerContext:
    """multiprocessing's fork server, preloading the training code (started on first use, then reused)."""
    global _forkserver
    if _forkserver is None:
        _forkserver = multiprocessing.get_context("forkserver")
        _forkserver.set_forkserver_preload(PRELOAD)
    return _forkserver


def die_with_worker() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LauncherProcess:
    """PyTorch's elastic launcher running a run's ranks, seen as a multiprocessing process (pid, join, exitcode):
    a new interpreter, not a fork, as the launcher starts its own."""

    def __init__(self, command: list[str], env: dict[str, str]):
        # A worker that dies (SIGKILL, the out-of-memory killer) takes the launcher along, as the fork server's
        # children go (worker.attempt.die_with_parent): SIGTERM, which the launcher passes to the ranks, which
        # hand the run back at their next batch. Set in the child between fork and exec (the worker's other
        # threads only heartbeat; prctl is async-signal-safe).
        self.popen = subprocess.Popen(command, env=env, preexec_fn=die_with_worker)
        self.pid: int | None = self.popen.pid

    def join(self, timeout: float) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()


class TrainingProcess:
    """One training process: `worker.attempt.forked(argv, env)` forked from the fork server, or for a run on
    several ranks (`ranks` > 1) PyTorch's launcher running `python -m worker.attempt argv...` once per rank;
    waited for while its memory (with its ranks' and their data loaders') is watched."""

    def __init__(self, argv: list[str], env: dict[str, str], limit_mib: int = 0, ranks: int = 1,
                 rank_restarts: int = 0):
        self.argv, self.env, self.limit_mib = argv, env, limit_mib
        self.ranks, self.rank_restarts = ranks, rank_restarts
        self.process: BaseProcess | LauncherProcess | None = None

    def start(self) -> int:
        if self.ranks > 1:
            from amst_core.ranks import launcher_command

            command = launcher_command(self.ranks, self.rank_restarts, ["worker.attempt", *self.argv])
            self.process = LauncherProcess(command, self.env)
        else:
            from worker.attempt import forked

            # Not daemonic: a daemonic process may not start the data-loading processes. It is in the worker's
            # process group (the fork server is), so a signal to the group (Ctrl-C, `amst up` stopping, a
            # supervisor's SIGKILL) reaches it too.
            self.process = forkserver().Process(target=forked, args=(self.argv, self.env), name="amst-attempt")
            self.process.start()
        assert self.process.pid is not None
        return self.process.pid

    def terminate(self) -> None:
        """Ask it to stop at the next batch and hand its run back (its SIGTERM handler; the launcher passes it
        to every rank, and all stop at the same batch)."""
        if self.process is not None and self.process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)

    def kill_tree(self) -> None:
        assert self.process is not None and self.process.pid is not None
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def wait(self) -> ProcessEnd:
        """Until the process ends; kills it (and its data loaders) when it uses more than `limit_mib`. Its peak
        is the highest of the polled resident sets and VmHWM (the kernel's own peak, read at each poll)."""
        assert self.process is not None and self.process.pid is not None
        meter, over = MemoryMeter(self.process.pid), None
        while True:
            self.process.join(POLL_S)
            if self.process.exitcode is not None:  # negative: the signal that ended it
                return ProcessEnd(self.process.exitcode, meter.peak_mib or None, over,
                                  self.limit_mib if over else None)
            used = meter.sample()
            if over is None and used is not None and self.limit_mib and used > self.limit_mib:
                over = used
                log.error("training process %d uses %.0f MiB, over AMST_RUN_MEMORY_MB (%d MiB): killing it",
                          self.process.pid, used, self.limit_mib)
                self.kill_tree()


SIGNAL_CAUSES = {
    signal.SIGSEGV: "a native crash in PyTorch or a library it calls",
    signal.SIGBUS: "a native crash in PyTorch or a library it calls",
    signal.SIGILL: "a native crash in PyTorch or a library it calls",
    signal.SIGFPE: "a native crash in PyTorch or a library it calls",
    signal.SIGABRT: "a native abort in PyTorch or a library it calls",
    signal.SIGKILL: "perhaps by the kernel's out-of-memory killer",
}


def describe_end(end: ProcessEnd) -> str:
    """What a run's error says about a training process that ended without recording an end of its own."""
    peak = f"peak {end.peak_mib:.0f} MiB" if end.peak_mib else None
    if end.over_limit_mib is not None:
        return (f"out of memory: the training process used {end.over_limit_mib:.0f} MiB, over "
                f"AMST_RUN_MEMORY_MB ({end.limit_mib} MiB)")
    if end.returncode < 0:
        sig = signal.Signals(-end.returncode)
        cause = SIGNAL_CAUSES.get(sig)
        details = ", ".join(d for d in (cause, peak) if d)
        return f"the training process was killed by {sig.name}" + (f" ({details})" if details else "")
    return f"the training process exited with status {end.returncode} without recording an end" + (
        f" ({peak})" if peak else "")
