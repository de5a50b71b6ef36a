"""Executing one run on this worker: lease, a training process per attempt, its end, the reaper.

A worker process serves one run at a time (one process per GPU). It claims the run's lease, then trains the
attempt in a child process (worker/attempt.py, started and watched by worker/child.py) and waits for it: a native
crash, an abort or an out-of-memory kill ends that process, not the worker. When the child ended without
recording an end of its own, the worker records how it died (retried at most AMST_CRASH_RETRIES times in a row,
then failed). A maintenance thread keeps the worker row and the lease of the run in training alive (the child
takes seconds to start) and runs the reaper-and-release pass (amst_core.store.reaper), as the API does.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session

from amst_core import placement, runlog
from amst_core.config import RunConfig
from amst_core.runlog import RunLogHandler, log_path
from amst_core.store import lifecycle, reaper
from amst_core.store.db import session_scope
from amst_core.store.models import Run, RunStatus
from amst_core.store.outage import OUTAGE, DatabaseUnavailable, Outage, wait_out
from worker import gpulocks
from worker.child import ProcessEnd, TrainingProcess, describe_end
from worker.gpulocks import Taken
from worker.settings import WorkerSettings, get_worker_settings

log = logging.getLogger("amst.worker")
T = TypeVar("T")
REFUSED_PAUSE_S = 5.0  # before handing back a run this worker cannot hold
STILL_QUEUED_S = 5.0  # how often a worker waiting for GPUs looks whether its run is still queued
ASKED_TO_STOP = (-15, -2)  # SIGTERM, SIGINT: a training process that died of these was stopped, not crashed


def device_label() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return "cpu"


class Executor:
    """The worker's side of a run: claim, start the training process, wait, record how it ended."""

    def __init__(self, settings: WorkerSettings, worker_id: str, device: str):
        self.settings, self.worker_id, self.device = settings, worker_id, device
        self.current_run: str | None = None
        self.child: TrainingProcess | None = None
        self.shutting_down = False
        self.send = None  # set by the worker: re-dispatches a run this worker hands back or retries
        self.run_ended: Callable[[], None] = lambda: None  # set by the worker: a reaper-and-release pass now
        self.gpus: list[dict] | None = None  # what this worker has (amst_core.gpu.visible_gpus), read once
        self.waiting_run: str | None = None  # a run it waits to have GPUs for
        self.locks = gpulocks.from_env()  # GPUs shared with the other workers of `amst serve worker --gpus`

    def shutdown(self) -> None:
        """The worker is stopping: the training process ends the run at its next batch and hands it back."""
        self.shutting_down = True
        if self.child is not None:
            self.child.terminate()

    def execute(self, run_id: str) -> str | None:
        from celery.exceptions import Reject

        if self.shutting_down:  # a message taken during warm shutdown: give it back for another worker
            log.info("run %s not taken: this worker is shutting down", run_id)
            raise Reject(f"worker {self.worker_id} is shutting down", requeue=True)
        config = self.queued_config(run_id)
        if config and (why := placement.cannot_hold(config, self.gpus_here())) is not None:  # another worker may
            log.info("run %s not taken: %s (GET /runs/%s says so while no live worker can)", run_id, why, run_id)
            time.sleep(REFUSED_PAUSE_S)  # a worker alone on the queue takes it again: not in a tight loop
            raise Reject(f"worker {self.worker_id} cannot hold run {run_id}: {why}", requeue=True)
        gpus = self.take_gpus(run_id, config)
        if gpus is None and self.shares_gpus(config):  # it stopped being queued: never claimed without its GPUs
            log.info("run %s not taken: no longer queued", run_id)
            return None
        try:
            with session_scope(self.settings.db_url) as s:
                attempt = lifecycle.claim(s, run_id, self.worker_id, self.device)
            if attempt is None:
                log.info("run %s not claimed (taken, cancelled, ended, or gone)", run_id)
                return None
            self.current_run = run_id
            try:
                end = self.train_in_child(run_id, attempt, gpus)
            finally:
                self.current_run = None
        finally:
            if gpus is not None:
                gpus.release()
        try:
            status = self.settle(run_id, attempt, end)
        except DatabaseUnavailable as err:  # the run stays live in the store: the reaper re-queues it later
            log.error("run %s: how its training process ended could not be recorded: %s", run_id, err)
            return None
        if status not in (None, RunStatus.queued):  # the run ended: its sweep may start its next ones now
            self.run_ended()
        return status

    def train_in_child(self, run_id: str, attempt: int, gpus: Taken | None = None) -> ProcessEnd:
        argv = [run_id, str(attempt), "--worker-id", self.worker_id, "--device", self.device]
        env = {**os.environ, **self.settings.as_env()}
        if gpus is not None:  # the GPUs this attempt holds among the worker's (worker.gpulocks)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus.gpus)
        ranks, device = self.ranks_of(run_id, attempt)
        if ranks > 1:
            from amst_core.ranks import launcher_env

            env = launcher_env(ranks, device, env)
        child = TrainingProcess(argv, env, self.settings.run_memory_mb, ranks=ranks,
                                rank_restarts=self.settings.rank_restarts)
        started = time.monotonic()
        pid = child.start()
        self.child = child
        if self.shutting_down:  # the stop came while it was being started
            child.terminate()
        log.info("run %s attempt %d trains in process %d", run_id, attempt, pid)
        try:
            end = child.wait()
        except BaseException:  # a cold shutdown of the worker: the child still stops at its next batch
            child.terminate()
            raise
        finally:
            self.child = None
        log.info("run %s attempt %d: training process %d ended after %.1f s (%s)", run_id, attempt, pid,
                 time.monotonic() - started, f"exit status {end.returncode}" if end.returncode >= 0 else
                 f"signal {-end.returncode}")
        return end

    def queued_config(self, run_id: str) -> dict | None:
        """A queued run's config; None for a run that is gone or not queued (the claim then says so)."""
        with session_scope(self.settings.db_url) as s:
            run = s.get(Run, run_id)
            return run.config if run is not None and run.status == RunStatus.queued and run.config else None

    def shares_gpus(self, config: dict | None) -> bool:
        """Whether this run (a queued one's config; None: no longer queued) trains on GPUs this worker shares with
        the other workers of its set, under their locks."""
        return self.locks is not None and (config or {}).get("device") != "cpu"

    def take_gpus(self, run_id: str, config: dict | None) -> Taken | None:
        """The GPUs a worker that shares them (`amst serve worker --gpus`: worker.gpulocks) trains this run on;
        None for a worker alone on its GPUs, or for a run that stopped being queued while its worker waited. A
        one-GPU worker whose GPU is busy or wanted by a multi-GPU run hands the run back; a multi-GPU worker waits
        until enough of its GPUs are free."""
        from celery.exceptions import Reject

        if not config or not self.shares_gpus(config):
            return None
        count = int((config.get("resources") or {}).get("gpus") or 1)
        looked = [time.monotonic()]

        def gave_up() -> bool:  # the worker stops, or the run was cancelled (looked at every few seconds)
            if self.shutting_down:
                return True
            if time.monotonic() - looked[0] < STILL_QUEUED_S:
                return False
            looked[0] = time.monotonic()
            try:
                return self.queued_config(run_id) is None
            except OUTAGE:  # the database is away a while: go on waiting, look again later
                return False

        self.waiting_run = run_id  # busy, for AMST_WORKER_IDLE_EXIT_S, while it waits for its GPUs
        try:
            taken = self.locks.take(count, gave_up)
        finally:
            self.waiting_run = None
        if taken is not None:
            log.info("run %s trains on GPU(s) %s", run_id, ",".join(taken.gpus))
            return taken
        if not self.shutting_down and len(self.locks.gpus) > 1:
            return None  # it waited, and the run is no longer queued: the claim says so
        why = "its worker is shutting down" if self.shutting_down else \
            f"GPU {self.locks.gpus[0]} is in use or wanted by a run on several GPUs"
        log.info("run %s not taken: %s", run_id, why)
        if not self.shutting_down:
            time.sleep(REFUSED_PAUSE_S)  # another worker of the queue may hold it now
        raise Reject(f"worker {self.worker_id}: run {run_id} not taken: {why}", requeue=True)

    def gpus_here(self) -> list[dict]:
        """This worker's GPUs as it announces them (amst_core.gpu.visible_gpus), read once."""
        if self.gpus is None:
            from amst_core.gpu import visible_gpus  # torch: this module stays light to import, as device_label

            self.gpus = [dict(g) for g in visible_gpus()]
        return self.gpus

    def ranks_of(self, run_id: str, attempt: int) -> tuple[int, str]:
        """How many ranks the run trains on (`resources.gpus`), and its device; one when it is no longer this
        worker's (the training process then finds that out and ends at once)."""
        config = with_database(self.settings, lambda s: lifecycle.leased_config(s, run_id, self.worker_id,
                                                                                attempt)) or {}
        return int((config.get("resources") or {}).get("gpus", 1)), str(config.get("device", "auto"))

    def settle(self, run_id: str, attempt: int, end: ProcessEnd) -> str | None:
        """The run's status once its training process is gone. A child that recorded an end (or handed the run
        back) is taken at its word; one that died without (a signal, a non-zero exit, the memory limit) has its
        cause recorded here."""
        state = with_database(self.settings, lambda s: lifecycle.attempt_state(s, run_id, attempt))
        if state is None or state.worker_id not in (None, self.worker_id):
            return None  # reaped meanwhile: the run is another worker's, or gone
        if state.attempt_ended:
            if state.attempt_status == "interrupted" and state.status == RunStatus.queued:
                return self.dispatch(run_id, state.queue, "handed back to the queue")
            return state.status if state.worker_id == self.worker_id else None
        if not end.abnormal:  # it could not reach the database to record its end: the reaper will
            return None
        if end.over_limit_mib is None and (self.shutting_down or end.returncode in ASKED_TO_STOP):
            queue = with_database(self.settings, lambda s: lifecycle.release(s, run_id, self.worker_id, attempt))
            return self.dispatch(run_id, queue, "handed back to the queue") if queue else None
        return self.record_crash(run_id, attempt, end)

    def record_crash(self, run_id: str, attempt: int, end: ProcessEnd) -> str:
        cause = describe_end(end)
        tail = runlog.last_lines(self.settings.run_dir(run_id))
        log.error("run %s attempt %d: %s", run_id, attempt, cause)
        note_in_run_log(self.settings, run_id, cause)
        # A run over the memory limit would grow the same way again: it fails at once.
        outcome = with_database(self.settings, lambda s: lifecycle.record_crash(
            s, run_id, self.worker_id, attempt, cause, self.settings.crash_retries, tail=tail,
            retry=end.over_limit_mib is None))
        if outcome is None:
            return None
        if outcome.requeue_on is not None:
            return self.dispatch(run_id, outcome.requeue_on, "re-queued after its training process died")
        log.error("run %s %s: %s", run_id, outcome.status, outcome.error)
        return outcome.status

    def dispatch(self, run_id: str, queue: str | None, why: str) -> str:
        if self.send is not None and queue is not None:
            self.send(run_id, queue)
        log.info("run %s %s", run_id, why)
        return RunStatus.queued


def with_database(settings: WorkerSettings, action: Callable[[Session], T]) -> T:
    """One transaction, waiting out a database outage up to AMST_DB_GRACE_S (DatabaseUnavailable after)."""

    def transaction() -> T:
        with session_scope(settings.db_url) as s:
            return action(s)

    return wait_out(transaction, Outage(settings.db_grace_s, "worker"))


def note_in_run_log(settings: WorkerSettings, run_id: str, message: str) -> None:
    """One line in the run's own log, from the worker: how its training process ended."""
    try:
        handler = RunLogHandler(log_path(settings.run_dir(run_id)))
    except OSError:
        return
    runlog.attach(handler)
    try:
        log.error("run %s: %s", run_id, message)
    finally:
        runlog.detach(handler)


def on_this_worker(cfg: RunConfig) -> RunConfig:
    """A worker started with `--gpu N` sees that GPU alone, as cuda:0: a run that names another index (cuda:1,
    written for a machine with several GPUs) trains on this worker's GPU, the one its queue gave it."""
    pinned = os.environ.get("AMST_WORKER_GPU")
    if pinned is None or not cfg.device.startswith("cuda:") or cfg.device == "cuda:0":
        return cfg
    log.info("the run asks for %s; this worker serves GPU %s alone (cuda:0 in this process): it trains there",
             cfg.device, pinned)
    return cfg.model_copy(update={"device": "cuda:0"})


def failure_summary(err: BaseException, limit: int = 300) -> str:
    """What a run's `error` says about an unexpected exception: its type, the first line of its message (cut
    short) and where in the code it was raised. Never the traceback's locals or a long message, which could
    quote data the worker read; the worker's log has the rest."""
    first_line = (str(err).strip().splitlines() or [""])[0]
    message = first_line if len(first_line) <= limit else first_line[:limit] + " ..."
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(err).__name__}: {message}{where}; the worker's log has the traceback"


class Maintenance(threading.Thread):
    """Worker row and run lease heartbeats, and the reaper-and-release pass (amst_core.store.reaper), for the
    worker's whole life: every tick, and at once when nudged (a run of this worker ended: its sweep may start its
    next runs now, not at the next tick). With AMST_WORKER_IDLE_EXIT_S, it also ends an idle worker."""

    def __init__(self, executor: Executor, queues: str, send):
        super().__init__(daemon=True, name="maintenance")
        self.executor, self.queues, self.send = executor, queues, send
        self.stopped = threading.Event()
        self.nudged = threading.Event()
        self.clock = lifecycle.ReaperClock(executor.settings.lost_after_s)
        self.idle_since = time.monotonic()  # the worker's start, or the last time it was seen training
        self.leaving = False

    def run(self) -> None:
        registered = self.register()
        self.beat()
        while not self.sleep(min(self.executor.settings.heartbeat_s, self.executor.settings.reaper_s)):
            registered = registered or self.register()
            self.tick()
        try:
            with session_scope(self.executor.settings.db_url) as s:
                lifecycle.worker_stopped(s, self.executor.worker_id)
        except OUTAGE as err:
            log.warning("cannot record the worker's stop: database unreachable (%s)", type(err).__name__)

    def register(self) -> bool:
        """The worker's row; False while the database does not answer (a container can start before its network
        resolves the database's name): the loop lives on and tries again every tick."""
        from amst_core.gpu import visible_gpus  # torch: this module stays light to import, as device_label

        try:
            with session_scope(self.executor.settings.db_url) as s:
                lifecycle.register_worker(s, self.executor.worker_id, placement.here(), self.queues,
                                          self.executor.device, visible_gpus())
            return True
        except OUTAGE as err:
            log.warning("cannot register the worker yet: database unreachable (%s); trying again every tick",
                        type(err).__name__)
            return False

    def sleep(self, seconds: float) -> bool:
        """Wait a tick or a nudge; True when the worker stops."""
        self.nudged.wait(seconds)
        self.nudged.clear()
        return self.stopped.is_set()

    def nudge(self) -> None:
        self.idle_since = time.monotonic()  # a run of this worker just ended: one shorter than a tick counts too
        self.nudged.set()

    def tick(self) -> None:
        settings, worker_id = self.executor.settings, self.executor.worker_id
        try:
            with session_scope(settings.db_url) as s:
                training = self.executor.current_run
                # a run it waits to have GPUs for is its own too: the reaper must not take its queue for idle
                lifecycle.worker_heartbeat(s, worker_id, training or self.executor.waiting_run)
                if training is not None:  # the lease is the worker's: alive while its child starts or trains
                    lifecycle.heartbeat(s, training, worker_id)
                s.commit()
                reaper.reap_and_release(s, settings, self.send, self.clock)
        except OUTAGE as err:
            self.clock.failed()
            log.warning("maintenance tick: database unreachable (%s)", type(err).__name__)
        except Exception:
            log.exception("maintenance tick failed")
        self.beat()
        self.leave_when_idle()

    def leave_when_idle(self) -> bool:
        """AMST_WORKER_IDLE_EXIT_S: a worker that has trained nothing for that long stops as SIGTERM stops it
        (Celery's warm shutdown: a message it takes meanwhile is given back), so that the Slurm job holding it
        ends and frees its node. True when it asked."""
        now, limit = time.monotonic(), self.executor.settings.idle_exit_s
        if self.executor.current_run is not None or self.executor.waiting_run is not None:
            self.idle_since = now
        if limit is None or self.leaving or now - self.idle_since < limit:
            return False
        log.info("no run trained for %.0f s (AMST_WORKER_IDLE_EXIT_S=%g): this worker leaves",
                 now - self.idle_since, limit)
        self.leaving = True
        os.kill(os.getpid(), signal.SIGTERM)
        return True

    def beat(self) -> None:
        """The loop is alive (AMST_WORKER_HEALTH_FILE): a wedged worker stops touching it, a database outage does
        not stop it (the worker trains on through one)."""
        path = self.executor.settings.health_file
        if path is not None:
            try:
                path.touch()
            except OSError as err:
                log.warning("cannot touch the health file %s: %s", path, err)

    def stop(self, timeout_s: float = 10.0) -> None:
        """The worker is shutting down: one last write says so (stopped_at), instead of heartbeats running out."""
        self.stopped.set()
        self.nudged.set()
        self.join(timeout_s)


_executor: Executor | None = None


def current_executor() -> Executor:
    """The executor of this worker process, created on first use."""
    global _executor
    if _executor is None:
        settings = get_worker_settings()
        worker_id = os.environ.get("AMST_WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}"
        _executor = Executor(settings, worker_id, device_label())
    return _executor


def start_maintenance(queues: str, send) -> Maintenance:
    executor = current_executor()
    thread = Maintenance(executor, queues, send)
    executor.send, executor.run_ended = send, thread.nudge
    thread.start()
    return thread
