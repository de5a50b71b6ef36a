"""Processes read from /proc: the service tests check that what they started is gone afterwards. Children of
`amst up` run in sessions of their own, so the checks follow the process tree recorded while it ran."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    state: str
    start: int  # clock ticks since boot: (pid, start) names a process even after its pid is reused

    @classmethod
    def read(cls, pid: int) -> Proc | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        fields = raw[raw.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
        return cls(pid, int(fields[1]), int(fields[2]), int(fields[3]), fields[0], int(fields[19]))

    @property
    def alive(self) -> bool:
        now = Proc.read(self.pid)
        return now is not None and now.start == self.start and now.state not in ("Z", "X")

    def describe(self) -> str:
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return f"pid {self.pid} (sid {self.sid}, state {self.state}): {cmd.strip()}"
        return f"pid {self.pid}"


def all_procs() -> list[Proc]:
    procs = (Proc.read(int(d)) for d in os.listdir("/proc") if d.isdigit())
    return [p for p in procs if p is not None]


def descendants(root: int) -> list[Proc]:
    procs = all_procs()
    found, frontier = [], {root}
    while frontier:
        children = [p for p in procs if p.ppid in frontier]
        found += children
        frontier = {p.pid for p in children}
    return found


def leftovers(up_pid: int, tree: list[Proc]) -> list[Proc]:
    """Live processes of the recorded tree, or of any session or group that `amst up` or its children led."""
    sessions = {up_pid} | {p.sid for p in tree} | {p.pgid for p in tree}
    alive = [p for p in tree if p.alive]
    alive += [p for p in all_procs() if (p.sid in sessions or p.pgid in sessions) and p.state not in ("Z", "X")
              and p not in alive]
    return alive




def with_env(name: str, value: str) -> list[Proc]:
    """Live processes whose environment holds name=value (every child inherits it: a tag for a process tree
    whose parent links are gone)."""
    tag = f"{name}={value}".encode()
    found = []
    for p in all_procs():
        with contextlib.suppress(OSError):
            if tag in Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0") and p.state not in ("Z", "X"):
                found.append(p)
    return found
