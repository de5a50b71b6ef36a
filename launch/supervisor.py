"""Service processes kept running, for `amst up` (API, worker, dashboard) and `amst serve worker --gpus` (a worker
per GPU and one for multi-GPU runs): start each in a session of its own, start again one that dies after a growing
pause (a crash, SIGKILL, the out-of-memory killer), say when one keeps dying at its start, and stop them all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# The exit status of a service process that stops itself to be started afresh: EX_TEMPFAIL, non-zero so that
# every supervisor restarts it (systemd's on-failure, a Kubernetes pod, a Slurm requeue), and never counted here
# as a crash loop.
EXIT_RESTART = 75


@dataclass
class Child:
    """One supervised process and its restart bookkeeping."""

    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # when a dead child is started again
    quick_failures: int = 0  # deaths in a row within QUICK_DEATH_S of their start
    env: dict[str, str] | None = field(default=None, repr=False)  # its own environment, else the supervisor's

    def backoff_s(self) -> float:
        return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, self.quick_failures - 1))


STOP_GRACE_S = 20.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 30.0
QUICK_DEATH_S = 10.0  # a child that dies sooner than this after its start counts towards a crash loop
CRASH_LOOP = 5  # that many quick deaths in a row: something is wrong that a restart will not fix


def start(child: Child, env: dict[str, str], logs: Path | None) -> None:
    """Each child leads a session of its own (a terminal's Ctrl-C reaches it through its supervisor only); its
    output goes to `logs`/<name>.log, so the console stays readable, or with `logs` None to the supervisor's."""
    env = child.env if child.env is not None else env
    if logs is None:
        child.process = subprocess.Popen(child.command, env=env, start_new_session=True)
    else:
        with (logs / f"{child.name}.log").open("a") as out:
            child.process = subprocess.Popen(child.command, env=env, start_new_session=True, stdout=out,
                                             stderr=subprocess.STDOUT)
    child.started_at, child.restart_at = time.monotonic(), None


def watch(children: dict[str, Child], env: dict[str, str], logs: Path | None, who: str = "amst up",
          restarted_for_ever: tuple[str, ...] = ()) -> Child | None:
    """One look at the children: restart the dead ones when their pause is over. Returns a child in a crash
    loop, if any, unless it is one of `restarted_for_ever` (started again every BACKOFF_MAX_S at most)."""
    where = f" (its log: {logs / 'NAME'}.log)" if logs is not None else ""
    now = time.monotonic()
    for child in children.values():
        process = child.process
        if child.restart_at is None and process is not None and process.poll() is not None:
            quick = now - child.started_at < QUICK_DEATH_S
            if process.returncode == EXIT_RESTART:  # it asked for a fresh process: no crash, however soon
                child.quick_failures = 0
            else:
                child.quick_failures = child.quick_failures + 1 if quick else 1
            if child.quick_failures >= CRASH_LOOP and child.name not in restarted_for_ever:
                return child
            child.restart_at = now + child.backoff_s()
            print(f"{who}: {child.name} exited ({describe_exit(process.returncode)}); restarting it in "
                  f"{child.backoff_s():.0f} s{where.replace('NAME', child.name)}", file=sys.stderr, flush=True)
            if child.quick_failures == CRASH_LOOP:  # said once per series, with what its log says
                said = f" --- end of {logs / child.name}.log ---\n{tail(logs / f'{child.name}.log')}" if logs else ""
                print(f"{who}: {child.name} keeps failing at start ({CRASH_LOOP} times in a row); it is restarted "
                      f"every {BACKOFF_MAX_S:.0f} s at most while the API keeps serving.{said}", file=sys.stderr,
                      flush=True)
        elif child.restart_at is not None and now >= child.restart_at:
            start(child, env, logs)
            print(f"{who}: {child.name} restarted", file=sys.stderr, flush=True)
    return None


def describe_exit(code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (", perhaps by the out-of-memory killer" if name == "SIGKILL" else "")
    if code == EXIT_RESTART:
        return f"exit code {code}: it asked for a fresh process"
    return f"exit code {code}"


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def stop_all(children: dict[str, subprocess.Popen], grace_s: float | None = None) -> None:
    """SIGTERM to each child's process group, SIGKILL to what is left after `grace_s` (STOP_GRACE_S)."""
    for p in children.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + (STOP_GRACE_S if grace_s is None else grace_s)
    for p in children.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
