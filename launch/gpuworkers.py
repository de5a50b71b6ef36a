"""`amst serve worker --gpus 0,1,2,3`: runs on up to 4 GPUs, and one-GPU runs side by side on each GPU while no
multi-GPU run waits for them.

It supervises one worker process per GPU (`--gpu K`, queue `gpu`) and one for the runs asking for several GPUs
(`--gpus`, queues `gpu-x4`..`gpu-x2`). They share the GPUs through lock files (worker/gpulocks.py says the rule: a
multi-GPU run waits for the one-GPU runs already training on its GPUs, and none starts there meanwhile; never two
runs on one GPU). The set's process:

- passes SIGTERM and SIGINT on to its workers as SIGTERM (each hands its run back, as any worker does; they run in
  sessions of their own, so a terminal's Ctrl-C reaches them once, through it);
- starts again a worker that ended (launch/supervisor.py: after a growing pause; five that die within 10 s of their
  start in a row stop the set, which exits 1: a worker that cannot start would otherwise be started for ever);
- leaves when the set is idle, with AMST_WORKER_IDLE_EXIT_S: no GPU of the set held or waited for that long (its
  workers get no idle limit of their own: one idle while another trains must stay for the next one-GPU run);
- gives each worker its own AMST_WORKER_HEALTH_FILE (`<file>.<worker>`, e.g. `health.gpu0`) and no
  AMST_WORKER_ID or AMST_WORKER_GPU of the set's (they name one process).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from launch import supervisor
from worker.gpulocks import LOCK_DIR_ENV, MEMBER_ENV, GpuLocks

log = logging.getLogger("amst.gpuworkers")
POLL_S = 0.5
IDLE_LOOK_S = 2.0  # how often the set looks whether its GPUs are in use (with AMST_WORKER_IDLE_EXIT_S)
STOP_GRACE_S = 100.0  # for its workers to hand their runs back (inside Slurm's and Kubernetes' 120 s)
ONE_PROCESS = ("AMST_WORKER_ID", "AMST_WORKER_GPU")  # name one worker process: not copied into the set's
WHO = "amst serve worker --gpus"


def members(gpus: list[int], queues: list[str]) -> dict[str, list[str]]:
    """The worker processes serving `queues` on `gpus`, by name, with their arguments to `amst serve worker`: one
    per GPU for queue `gpu`, one for the other queues."""
    found = {f"gpu{g}": ["--gpu", str(g), "--queue", "gpu"] for g in gpus if "gpu" in queues}
    several = [q for q in queues if q != "gpu"]
    if several:
        found["gpus" + "-".join(map(str, gpus))] = ["--gpus", ",".join(map(str, gpus)), "--queue", ",".join(several)]
    return found


def lock_dir(environ: dict[str, str] | os._Environ = os.environ) -> Path:
    """Where the GPUs' lock files live: AMST_GPU_LOCK_DIR, or a folder of the user's in the machine's temporary
    folder, shared by every set of the user on the machine; one per Slurm job in a job (each job's GPUs are its
    own, and may be numbered from 0 in each)."""
    given = environ.get(LOCK_DIR_ENV)
    if given:
        return Path(given)
    job = environ.get("SLURM_JOB_ID")
    return Path(tempfile.gettempdir()) / f"amst-gpu-locks-{os.getuid()}{f'-slurm{job}' if job else ''}"


def usable_lock_dir(folder: Path, given: bool) -> Path:
    """Create the folder (the user's alone) or check one that is there: the set stops at once, saying why, rather
    than every run failing on its lock. The default folder must be the user's; one given may be shared."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not given and folder.stat().st_uid != os.getuid():
            raise SystemExit(f"{folder}: the GPU lock folder belongs to another user, who could hold this set's "
                             f"GPUs; set {LOCK_DIR_ENV} to a folder of yours")
        probe = GpuLocks(folder, ["probe"])
        fd = probe.try_lock("probe", "lock")
        if fd is not None:
            os.close(fd)
    except OSError as err:
        raise SystemExit(f"{LOCK_DIR_ENV}={folder}: cannot keep the GPUs' lock files there ({err})") from None
    return folder


def member_env(base: dict[str, str], name: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in ONE_PROCESS}
    if env.get("AMST_WORKER_HEALTH_FILE"):
        env["AMST_WORKER_HEALTH_FILE"] = f"{env['AMST_WORKER_HEALTH_FILE']}.{name}"
    return env


class Supervisor:
    def __init__(self, gpus: list[int], queues: list[str], environ: dict[str, str] | None = None,
                 gpu_ids: list[str] | None = None):
        self.env = dict(os.environ if environ is None else environ)
        self.lock_dir_given = bool(self.env.get(LOCK_DIR_ENV))
        self.env[LOCK_DIR_ENV] = str(lock_dir(self.env))
        self.env[MEMBER_ENV] = "1"
        idle = self.env.pop("AMST_WORKER_IDLE_EXIT_S", None)
        self.idle_exit_s = float(idle) if idle else None
        self.gpu_ids = gpu_ids if gpu_ids is not None else [str(g) for g in gpus]  # as the lock files name them
        self.command = [sys.executable, "-m", "launch", "serve", "worker"]
        self.args = members(gpus, queues)
        self.children = {name: supervisor.Child(name, [], env=member_env(self.env, name)) for name in self.args}
        self.stopping = False

    def stop(self, _signum: int = signal.SIGTERM, _frame=None) -> None:
        self.stopping = True

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.stop)
        usable_lock_dir(Path(self.env[LOCK_DIR_ENV]), self.lock_dir_given)
        code = 0
        try:
            for name, child in self.children.items():
                child.command = [*self.command, *self.args[name]]
                if not self.stopping:
                    supervisor.start(child, self.env, None)
                    log.info("worker %s started (process %d): amst serve worker %s", name, child.process.pid,
                             " ".join(self.args[name]))
            code = self.keep_running()
        finally:  # each worker hands its run back (SIGTERM: Celery's warm shutdown), then the set ends
            supervisor.stop_all({c.name: c.process for c in self.children.values() if c.process is not None},
                                STOP_GRACE_S)
        log.info("every worker of the set has ended")
        return code

    def keep_running(self) -> int:
        """Until a stop, a worker in a crash loop (1), or the idle limit."""
        idle_since, looked = time.monotonic(), 0.0
        while not self.stopping:
            broken = supervisor.watch(self.children, self.env, None, who=WHO)
            if broken is not None:
                log.error("worker %s keeps ending at its start (%d times in a row): the set stops", broken.name,
                          supervisor.CRASH_LOOP)
                return 1
            if self.idle_exit_s is not None and time.monotonic() - looked >= IDLE_LOOK_S:
                looked = time.monotonic()
                if self.in_use():
                    idle_since = looked
                elif looked - idle_since >= self.idle_exit_s:
                    log.info("no GPU of the set used for %.0f s (AMST_WORKER_IDLE_EXIT_S=%g): the set leaves",
                             looked - idle_since, self.idle_exit_s)
                    return 0
            time.sleep(POLL_S)
        return 0

    def in_use(self) -> bool:
        """A GPU of the set is held by a run or wanted by a waiting one (a shared lock held for an instant: a
        worker taking a GPU at that instant finds it busy and tries again)."""
        locks = GpuLocks(Path(self.env[LOCK_DIR_ENV]), self.gpu_ids)
        for gpu in self.gpu_ids:
            for kind in ("lock", "wanted"):
                fd = os.open(locks.path(gpu, kind), os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                finally:
                    os.close(fd)
        return False


def supervise(gpus: list[int], queues: list[str], gpu_ids: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/%(name)s] %(message)s")
    return Supervisor(gpus, queues, gpu_ids=gpu_ids).run()
