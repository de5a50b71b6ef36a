"""Executing one run on this worker: lease, heartbeat, cancel, checkpoint resume, final state.

A worker process trains one run at a time (one process per GPU). Beside the training thread, a watcher
thread polls the run row: it refreshes the lease (heartbeat), turns `cancel_requested` into the engine's
stop flag within `cancel_poll_s`, and stops training if the lease was taken away (the run was reaped).
A maintenance thread keeps the worker row alive and reaps runs whose worker died.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session

from amst_core import runlog
from amst_core.config import ConfigError, RunConfig
from amst_core.limits import get_limits
from amst_core.runlog import RunLogHandler, log_path
from amst_core.settings import EXIT_RESTART, Settings, get_settings
from amst_core.store import lifecycle, sweeps
from amst_core.store.db import session_scope
from amst_core.store.models import Run, RunStatus
from amst_core.store.writer import OUTAGE, DatabaseUnavailable, DbSink, LeaseLost

log = logging.getLogger("amst.worker")
T = TypeVar("T")


def device_label() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    return "cpu"


class RunWatcher(threading.Thread):
    """Heartbeats the lease and raises the stop flag on cancel or when the lease is lost."""

    def __init__(self, settings: Settings, run_id: str, worker_id: str):
        super().__init__(daemon=True, name=f"watch-{run_id}")
        self.settings, self.run_id, self.worker_id = settings, run_id, worker_id
        self.stop_training = threading.Event()
        self.lease_lost = False
        self.database_gone = False  # unreachable for longer than the grace: training stopped
        self.done = threading.Event()
        self.progress: Callable[[], dict | None] = lambda: None  # the trainer's LiveProgress, once it exists

    def run(self) -> None:
        last_ok = time.monotonic()
        while not self.done.wait(self.settings.cancel_poll_s):
            try:
                with session_scope(self.settings.db_url) as s:
                    cancel = lifecycle.heartbeat(s, self.run_id, self.worker_id, self.progress())
            except OUTAGE as err:  # training goes on through an outage shorter than the grace
                down = time.monotonic() - last_ok
                if down < self.settings.cancel_poll_s * 2:
                    log.warning("run %s: heartbeat failed (%s); training goes on", self.run_id, type(err).__name__)
                if down > self.settings.db_grace_s:
                    log.error("run %s: no database for %.0f s (AMST_DB_GRACE_S): stopping", self.run_id, down)
                    self.database_gone = True
                    self.stop_training.set()
                continue
            except Exception:  # a bug in a heartbeat must not kill training either; the next tick retries
                log.exception("heartbeat of run %s failed", self.run_id)
                continue
            last_ok = time.monotonic()
            if cancel is None:
                self.lease_lost = True
                self.stop_training.set()
            elif cancel:
                self.stop_training.set()


class Executor:
    def __init__(self, settings: Settings, worker_id: str, device: str):
        self.settings, self.worker_id, self.device = settings, worker_id, device
        self.current_run: str | None = None
        self.watcher: RunWatcher | None = None
        self.shutting_down = False
        self.send = None  # set by the worker: re-dispatches a run this worker hands back
        # After a CUDA error that breaks the process's context (a device-side assert), every later kernel fails:
        # the run that broke it is failed and recorded, then the worker stops so that its supervisor (amst up,
        # compose's restart policy, Slurm, Kubernetes) starts a fresh process. A test replaces stop_worker.
        self.device_broken = False
        self.stop_worker: Callable[[], None] = stop_this_worker

    def shutdown(self) -> None:
        """The worker is stopping: end the current run at the next batch and hand it back to the queue."""
        self.shutting_down = True
        if self.watcher is not None:
            self.watcher.stop_training.set()

    def execute(self, run_id: str) -> str | None:
        if self.shutting_down:  # a message taken during warm shutdown: give it back for another worker
            from celery.exceptions import Reject

            log.info("run %s not taken: this worker is shutting down", run_id)
            raise Reject(f"worker {self.worker_id} is shutting down", requeue=True)
        with session_scope(self.settings.db_url) as s:
            attempt = lifecycle.claim(s, run_id, self.worker_id, self.device)
            run = s.get(Run, run_id) if attempt else None
            config = dict(run.config) if run else None
        if attempt is None or config is None:
            log.info("run %s not claimed (taken, cancelled, or gone)", run_id)
            return None
        with self.run_log(run_id, attempt) as run_log:
            status = self.run_attempt(run_id, attempt, config, run_log)
        if status not in (None, RunStatus.queued):  # the run ended: outside its log, this is about other runs
            self.release_sweep_runs()
        if self.device_broken:
            self.stop_worker()
        return status

    @contextmanager
    def run_log(self, run_id: str, attempt: int) -> Iterator[RunLogHandler | None]:
        """The run's own log file (amst_core.runlog) for this attempt, fed by this thread while it lasts."""
        try:
            handler = RunLogHandler(log_path(self.settings.run_dir(run_id)))
        except OSError as err:  # an unwritable artifacts folder loses the run's log, not the run
            log.warning("run %s: cannot write its log: %s", run_id, err)
            yield None
            return
        handler.header(attempt, self.worker_id, self.device)
        runlog.attach(handler)
        try:
            yield handler
        finally:
            runlog.detach(handler)

    def run_attempt(self, run_id: str, attempt: int, config: dict, run_log: RunLogHandler | None) -> str | None:
        log.info("run %s attempt %d starts on %s", run_id, attempt, self.worker_id)
        self.current_run = run_id
        watcher = self.watcher = RunWatcher(self.settings, run_id, self.worker_id)
        watcher.start()
        if run_log is not None:
            run_log.add_thread(watcher.ident)  # its heartbeat and outage warnings are about this run
        try:
            status, error, summary = self.train(run_id, attempt, config, watcher)
        finally:
            watcher.done.set()
            self.current_run = self.watcher = None
        if watcher.lease_lost or status is None:
            log.warning("run %s: lease lost (reaped); this worker's result is dropped", run_id)
            return None
        try:
            if status == RunStatus.cancelled and (self.shutting_down or watcher.database_gone):
                return self.hand_back(run_id, attempt)
            self.with_database(lambda s: lifecycle.finish(s, run_id, self.worker_id, attempt, status, error=error,
                                                          summary=summary))
        except DatabaseUnavailable as err:  # the run stays live in the store: the reaper re-queues it later
            log.error("run %s: its end (%s) could not be recorded: %s", run_id, status, err)
            return None
        log.info("run %s attempt %d ended: %s", run_id, attempt, status)
        return status

    def release_sweep_runs(self) -> None:
        """A sweep's next held-back runs get their message now, not at the API's next reaper pass."""
        if self.send is None:
            return
        try:
            with session_scope(self.settings.db_url) as s:
                released = sweeps.release_held(s, self.send)
        except Exception as err:  # the API's reaper releases them later
            log.warning("could not release a sweep's next runs: %s", err)
            return
        if released:
            log.info("released sweep runs %s", ", ".join(released))

    def hand_back(self, run_id: str, attempt: int) -> str:
        handed_back = self.with_database(lambda s: lifecycle.release(s, run_id, self.worker_id, attempt))
        if handed_back and self.send is not None:
            self.send(run_id, handed_back)
        log.info("run %s handed back to the queue", run_id)
        return RunStatus.queued

    def with_database(self, action: Callable[[Session], T]) -> T:
        """One transaction, waiting out a database outage up to AMST_DB_GRACE_S (DatabaseUnavailable after)."""
        started, pause = time.monotonic(), 0.25
        while True:
            try:
                with session_scope(self.settings.db_url) as s:
                    return action(s)
            except OUTAGE as err:
                waited = time.monotonic() - started
                if waited > self.settings.db_grace_s:
                    raise DatabaseUnavailable(f"no database for {waited:.0f} s") from err
            time.sleep(pause)
            pause = min(2 * pause, 5.0)

    def train(self, run_id: str, attempt: int, config: dict, watcher: RunWatcher):
        from amst_core.devices import is_device_failure
        from amst_core.engine import RunCancelled, StorageFull, Trainer
        from amst_core.execute import execute_run

        try:
            cfg = on_this_worker(RunConfig.model_validate(config))
            sink = DbSink(run_id, self.settings.db_url, worker_id=self.worker_id, grace_s=self.settings.db_grace_s,
                          max_buffered=self.settings.db_buffer_points, max_points=get_limits().points_per_run)

            def started(trainer: Trainer) -> None:
                watcher.progress = trainer.live.snapshot
                self.with_database(lambda s: lifecycle.set_running(s, run_id, self.worker_id, attempt,
                                                                   trainer.start_epoch))

            summary = execute_run(cfg, self.settings.run_dir(run_id), [sink], run_id=run_id, attempt=attempt,
                                  should_stop=watcher.stop_training.is_set, progress=False, started=started)
            return RunStatus.succeeded, None, summary
        except RunCancelled:
            why = "the worker is shutting down" if self.shutting_down else \
                "no database" if watcher.database_gone else "the lease was lost" if watcher.lease_lost else \
                "cancel requested"
            log.info("run %s stopped: %s", run_id, why)
            return RunStatus.cancelled, None, None
        except LeaseLost:
            watcher.lease_lost = True
            return None, None, None
        except (ConfigError, StorageFull, DatabaseUnavailable) as err:  # their messages say what to do
            log.error("run %s failed: %s", run_id, err)
            return RunStatus.failed, str(err), None
        except Exception as err:  # the run fails, the worker lives on for the next one (unless its GPU is broken)
            log.exception("run %s failed", run_id)  # the whole traceback stays in the worker's log
            error = failure_summary(err)
            if is_device_failure(err):
                self.device_broken = True
                error += "; this worker's GPU context is unusable after it: the worker restarts"
            return RunStatus.failed, error, None


def on_this_worker(cfg: RunConfig) -> RunConfig:
    """A worker started with `--gpu N` sees that GPU alone, as cuda:0: a run that names another index (cuda:1,
    written for a machine with several GPUs) trains on this worker's GPU, the one its queue gave it."""
    pinned = os.environ.get("AMST_WORKER_GPU")
    if pinned is None or not cfg.device.startswith("cuda:") or cfg.device == "cuda:0":
        return cfg
    log.info("the run asks for %s; this worker serves GPU %s alone (cuda:0 in this process): it trains there",
             cfg.device, pinned)
    return cfg.model_copy(update={"device": "cuda:0"})


def stop_this_worker() -> None:
    """A warm shutdown of this Celery worker, as its SIGTERM handler starts one but with exit status
    EXIT_RESTART: the task that just ended is acknowledged, no new one is taken, and the process exits for its
    supervisor to start afresh."""
    from celery.worker import state

    log.error("this worker's GPU is unusable after a CUDA error: stopping the worker so that it restarts")
    current_executor().shutdown()
    state.should_stop = EXIT_RESTART


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
    """Worker row heartbeat and the reaper (lost and stalled runs), for the worker's whole life."""

    def __init__(self, executor: Executor, queues: str, send):
        super().__init__(daemon=True, name="maintenance")
        self.executor, self.queues, self.send = executor, queues, send
        self.stopped = threading.Event()

    def run(self) -> None:
        settings, worker_id = self.executor.settings, self.executor.worker_id
        with session_scope(settings.db_url) as s:
            lifecycle.register_worker(s, worker_id, socket.gethostname(), os.getpid(), self.queues,
                                      self.executor.device)
        clock = lifecycle.ReaperClock(settings.lost_after_s)
        while not self.stopped.wait(min(settings.heartbeat_s, settings.reaper_s)):
            try:
                with session_scope(settings.db_url) as s:
                    lifecycle.worker_heartbeat(s, worker_id, self.executor.current_run)
                    reaped = lifecycle.reap(s, settings, clock)
                for run_id, queue in reaped.requeued:
                    log.warning("run %s lost its worker; re-queued on %s", run_id, queue)
                    self.send(run_id, queue)
            except OUTAGE as err:
                clock.failed()
                log.warning("maintenance tick: database unreachable (%s)", type(err).__name__)
            except Exception:
                log.exception("maintenance tick failed")
        with session_scope(settings.db_url) as s:
            lifecycle.worker_stopped(s, worker_id)

    def stop(self, timeout_s: float = 10.0) -> None:
        """The worker is shutting down: one last write says so (stopped_at), instead of heartbeats running out."""
        self.stopped.set()
        self.join(timeout_s)


_executor: Executor | None = None


def current_executor() -> Executor:
    """The executor of this worker process, created on first use."""
    global _executor
    if _executor is None:
        settings = get_settings()
        worker_id = os.environ.get("AMST_WORKER_ID") or f"{socket.gethostname()}:{os.getpid()}"
        _executor = Executor(settings, worker_id, device_label())
    return _executor


def start_maintenance(queues: str, send) -> Maintenance:
    current_executor().send = send
    thread = Maintenance(current_executor(), queues, send)
    thread.start()
    return thread
