"""The training process of one attempt, seen from the worker that started it: start, memory limit, end.

Each attempt trains in a child process (`python -m worker.attempt`, worker/attempt.py), so that a native crash
(a segmentation fault in a kernel), an abort or the out-of-memory killer ends that process, not the worker: the
worker records why on the run and takes the next one. While the child runs, the worker polls its memory every
`POLL_S` and kills it past AMST_RUN_MEMORY_MB, so that the run fails alone instead of the kernel's out-of-memory
killer choosing among the machine's processes. (RLIMIT_AS counts address space, which CUDA reserves by the
terabyte; a cgroup's memory.max needs a delegated cgroup v2, which most hosts, containers and this CI lack.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("amst.worker")
POLL_S = 0.2
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


class TrainingProcess:
    """One child process, waited for with os.wait4 (its own peak RSS comes with its exit status)."""

    def __init__(self, command: list[str], env: dict[str, str], limit_mib: int = 0):
        self.command, self.env, self.limit_mib = command, env, limit_mib
        self.process: subprocess.Popen | None = None

    def start(self) -> int:
        # Same process group as the worker: a signal to the worker's group (Ctrl-C, `amst up` stopping, a
        # supervisor's SIGKILL) reaches the training process too.
        self.process = subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL)
        return self.process.pid

    def terminate(self) -> None:
        """Ask it to stop at the next batch and hand its run back (its SIGTERM handler)."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def kill_tree(self) -> None:
        assert self.process is not None
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def wait(self) -> ProcessEnd:
        """Until the process ends; kills it (and its data loaders) when it uses more than `limit_mib`."""
        assert self.process is not None
        meter, over = MemoryMeter(self.process.pid), None
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self.process.returncode = os.waitstatus_to_exitcode(status)
                peak = max(meter.peak_mib, usage.ru_maxrss / 1024) or None  # ru_maxrss: KiB on Linux
                return ProcessEnd(self.process.returncode, peak, over, self.limit_mib if over else None)
            used = meter.sample()
            if over is None and used is not None and self.limit_mib and used > self.limit_mib:
                over = used
                log.error("training process %d uses %.0f MiB, over AMST_RUN_MEMORY_MB (%d MiB): killing it",
                          self.process.pid, used, self.limit_mib)
                self.kill_tree()
            time.sleep(POLL_S)


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
