"""Which worker process trains on which GPU, when several share a machine's GPUs (`amst serve worker --gpus`).

`amst serve worker --gpus 0,1,2,3` starts one worker process per GPU (runs asking for one GPU, queue `gpu`) and one
for the runs asking for several (queues `gpu-x4`..`gpu-x2`): launch/gpuworkers.py. They share the GPUs through
one lock file per GPU in AMST_GPU_LOCK_DIR, held (flock, exclusive) by the process training on it for the whole
attempt; the kernel lets a lock go when its holder dies, so no lock outlives a crash.

- A one-GPU worker takes a run only when its GPU's lock is free and no multi-GPU worker is waiting for that GPU;
  otherwise it hands the run back to its queue (another worker of the queue may hold it now).
- A multi-GPU worker with a run of N GPUs first says it wants its GPUs (a second lock file per GPU, held while it
  waits): the one-GPU workers then take no new run there, and finish the one they train. It takes N free GPUs all
  at once or none (never holding some while waiting for others: two waiters cannot block each other), and trains
  on exactly those. So a multi-GPU run waits at most for the one-GPU runs already training, and one-GPU runs use
  every GPU while no multi-GPU run is queued. Never two runs on one GPU.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("amst.worker")
LOCK_DIR_ENV = "AMST_GPU_LOCK_DIR"
MEMBER_ENV = "AMST_GPU_SET_MEMBER"  # set by `amst serve worker --gpus` in the environment of the workers it starts
POLL_S = 0.5  # how often a waiting multi-GPU worker looks for free GPUs


class GpuLocks:
    """This worker process's GPUs (their ids as CUDA_VISIBLE_DEVICES names them) and their lock files in `folder`."""

    def __init__(self, folder: Path, gpus: list[str]):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.gpus = folder, gpus

    def path(self, gpu: str, kind: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", gpu)  # an index or a GPU UUID (GPU-8d1c...)
        return self.folder / f"gpu-{safe}.{kind}"

    def try_lock(self, gpu: str, kind: str) -> int | None:
        """The open, locked file's descriptor, or None when another process holds it."""
        fd = os.open(self.path(gpu, kind), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException as err:
            os.close(fd)
            if isinstance(err, BlockingIOError):
                return None
            raise
        return fd

    def wanted(self, gpu: str) -> bool:
        """A multi-GPU worker is waiting for this GPU."""
        fd = self.try_lock(gpu, "wanted")
        if fd is None:
            return True
        os.close(fd)
        return False

    def take_one(self) -> Taken | None:
        """A one-GPU worker's GPU for its next run, or None (in use, or wanted by a multi-GPU run)."""
        gpu = self.gpus[0]
        fd = self.try_lock(gpu, "lock")
        if fd is not None and self.wanted(gpu):  # locked first, then looked: a waiter that came between is seen
            os.close(fd)
            return None
        return None if fd is None else Taken([gpu], [fd])

    def take(self, count: int, stopping: Callable[[], bool]) -> Taken | None:
        """`count` of this worker's GPUs, all at once: waits, saying it wants them, until that many are free; None
        when `stopping()` says the worker stops meanwhile. A one-GPU worker never waits (`take_one`)."""
        if len(self.gpus) == 1:
            return self.take_one()
        wants: dict[str, int] = {}
        started = time.monotonic()
        try:
            while not stopping():
                taken = self.take_free(count)
                if taken is not None:
                    if wants:
                        log.info("GPUs %s free after %.0f s", ",".join(taken.gpus), time.monotonic() - started)
                    return taken
                if not wants:
                    log.info("waiting for %d free GPU(s) among %s (one-GPU runs training there finish first)",
                             count, ",".join(self.gpus))
                self.want(wants)
                time.sleep(POLL_S)
            return None
        finally:
            for fd in wants.values():
                os.close(fd)

    def want(self, wants: dict[str, int]) -> None:
        """Say that a multi-GPU run waits for these GPUs: each one's `wanted` lock, held until it has them. A GPU
        whose claim is held by someone else (another waiter, or a one-GPU worker looking at it this instant) is
        tried again at the next poll."""
        for gpu in self.gpus:
            if gpu not in wants and (fd := self.try_lock(gpu, "wanted")) is not None:
                wants[gpu] = fd

    def take_free(self, count: int) -> Taken | None:
        taken = Taken([], [])
        try:
            for gpu in self.gpus:
                fd = self.try_lock(gpu, "lock")
                if fd is not None:
                    taken.gpus.append(gpu)
                    taken.fds.append(fd)
                    if len(taken.gpus) == count:
                        return taken
        except BaseException:
            taken.release()
            raise
        taken.release()  # all or none: holding some while waiting for others could block another waiter
        return None


class Taken:
    """GPUs held for one attempt; `release()` (or the process's end) lets them go."""

    def __init__(self, gpus: list[str], fds: list[int]):
        self.gpus, self.fds = gpus, fds

    def release(self) -> None:
        for fd in self.fds:
            os.close(fd)  # closing the only descriptor of the open file releases its flock
        self.fds = []


def from_env(environ: os._Environ | dict[str, str] = os.environ) -> GpuLocks | None:
    """The locks of a worker started by `amst serve worker --gpus` (AMST_GPU_SET_MEMBER and AMST_GPU_LOCK_DIR
    set), on its pinned GPUs (CUDA_VISIBLE_DEVICES); None for a worker alone on its GPUs."""
    folder = environ.get(LOCK_DIR_ENV)
    gpus = [g.strip() for g in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return GpuLocks(Path(folder), gpus) if is_member(environ) and folder and gpus else None


def is_member(environ: os._Environ | dict[str, str] = os.environ) -> bool:
    """This process is one of the workers `amst serve worker --gpus` started."""
    return bool(environ.get(MEMBER_ENV))
