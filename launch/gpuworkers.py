"""`amst serve worker --gpus 0,1,2,3`: runs on up to 4 GPUs, and one-GPU runs side by side on each GPU while no
multi-GPU run needs them.

It supervises one worker process per GPU (`--gpu K`, queue `gpu`) and one for the runs asking for several GPUs
(`--gpus`, queues `gpu-x4`..`gpu-x2`). They share the GPUs through lock files (worker/gpulocks.py says the rule: a
multi-GPU run waits for the one-GPU runs already training on its GPUs, and none starts there meanwhile; never two
runs on one GPU). The supervisor forwards SIGTERM and SIGINT to them (each hands its run back, as any worker does),
starts again one that died, and ends when they have all ended: a worker that left on its own after an idle period
(AMST_WORKER_IDLE_EXIT_S) is not started again.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from worker.gpulocks import LOCK_DIR_ENV, MEMBER_ENV

log = logging.getLogger("amst.gpuworkers")
RESTART_PAUSE_S = 5.0  # before starting again a worker that died
POLL_S = 0.5


@dataclass
class Member:
    """One worker process of the set: its arguments to `amst serve worker`, and the process running them."""

    name: str
    args: list[str]
    proc: subprocess.Popen | None = None
    died_at: float | None = None
    restarts: int = field(default=0)


def members(gpus: list[int], queues: list[str]) -> list[Member]:
    """The worker processes serving `queues` on `gpus`: one per GPU for queue `gpu`, one for the other queues."""
    found = [Member(f"gpu{g}", ["--gpu", str(g), "--queue", "gpu"]) for g in gpus if "gpu" in queues]
    several = [q for q in queues if q != "gpu"]
    if several:
        found.append(Member("gpus" + "-".join(map(str, gpus)),
                            ["--gpus", ",".join(map(str, gpus)), "--queue", ",".join(several)]))
    return found


def lock_dir(environ: dict[str, str] | os._Environ = os.environ) -> Path:
    """Where the GPUs' lock files live: AMST_GPU_LOCK_DIR, or one folder per user in the machine's temporary
    folder (every `amst serve worker --gpus` of a user on this machine shares it)."""
    given = environ.get(LOCK_DIR_ENV)
    return Path(given) if given else Path(tempfile.gettempdir()) / f"amst-gpu-locks-{os.getuid()}"


class Supervisor:
    def __init__(self, gpus: list[int], queues: list[str], environ: dict[str, str] | None = None):
        self.env = dict(os.environ if environ is None else environ)
        self.env[LOCK_DIR_ENV] = str(lock_dir(self.env))
        self.env[MEMBER_ENV] = "1"
        self.members = members(gpus, queues)
        self.command = [sys.executable, "-m", "launch", "serve", "worker"]
        self.stopping = False

    def start(self, member: Member) -> None:
        from worker.child import die_with_worker

        member.proc = subprocess.Popen([*self.command, *member.args], env=self.env, preexec_fn=die_with_worker)
        log.info("worker %s started (process %d): amst serve worker %s", member.name, member.proc.pid,
                 " ".join(member.args))

    def stop(self, signum: int, _frame=None) -> None:
        """Pass the signal on: each worker hands back its run and ends."""
        self.stopping = True
        for member in self.members:
            if member.proc is not None and member.proc.poll() is None:
                member.proc.send_signal(signum)

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        Path(self.env[LOCK_DIR_ENV]).mkdir(parents=True, exist_ok=True)
        for member in self.members:
            self.start(member)
        while any(self.alive(m) for m in self.members):
            time.sleep(POLL_S)
            for member in self.members:
                self.look_after(member)
        log.info("every worker of the set has ended")
        return 0

    def alive(self, member: Member) -> bool:
        """Running, or to be started again."""
        return member.proc is not None or (member.died_at is not None and not self.stopping)

    def look_after(self, member: Member) -> None:
        """Start again a worker that died (after a pause); forget one that ended."""
        if member.proc is None:
            if self.alive(member) and time.monotonic() - member.died_at >= RESTART_PAUSE_S:
                member.died_at, member.restarts = None, member.restarts + 1
                self.start(member)
            return
        code = member.proc.poll()
        if code is None:
            return
        member.proc = None
        if code == 0 or self.stopping:
            log.info("worker %s ended (exit status %d)", member.name, code)
            return
        log.error("worker %s died (%s); started again in %.0f s", member.name,
                  f"exit status {code}" if code > 0 else f"signal {-code}", RESTART_PAUSE_S)
        member.died_at = time.monotonic()


def supervise(gpus: list[int], queues: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s")
    return Supervisor(gpus, queues).run()
