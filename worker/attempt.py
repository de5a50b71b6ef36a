"""One attempt of a run, trained in a process of its own: forked from the worker's fork server (`forked`), or
`python -m worker.attempt RUN_ID ATTEMPT ...` by hand.

The worker (worker/runner.py) claims the run's lease, then starts this process and waits for it (worker/child.py).
Here, beside the training thread, a watcher thread polls the run row: it refreshes the lease (heartbeat, with the
progress inside the epoch), turns `cancel_requested` into the engine's stop flag within `cancel_poll_s`, and stops
training if the lease was taken away (the run was reaped). The attempt's end (succeeded, failed, cancelled, or
handed back to the queue when the worker is stopping) is recorded here; a process that dies before recording one
(a native crash, a kill) leaves that to the worker, which knows how it died.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from amst_core import runlog
from amst_core.config import ConfigError, RunConfig
from amst_core.distributed import SINGLE, Ranks, is_communication_error, ranks_from_env
from amst_core.limits import get_limits
from amst_core.runlog import RunLogHandler, log_path
from amst_core.store import lifecycle
from amst_core.store.db import session_scope
from amst_core.store.models import RunStatus
from amst_core.store.outage import OUTAGE, DatabaseUnavailable, Outage
from amst_core.store.writer import DbSink, LeaseLost
from worker.runner import failure_summary, note_in_run_log, on_this_worker, with_database
from worker.settings import WorkerSettings, get_worker_settings

log = logging.getLogger("amst.worker")
PR_SET_PDEATHSIG = 1
RANK0_ENDED_ALONE = 3  # rank 0's exit status when it ended the run without the other ranks (AttemptRunner)


class RunWatcher(threading.Thread):
    """Heartbeats the lease and raises the stop flag on cancel or when the lease is lost."""

    def __init__(self, settings: WorkerSettings, run_id: str, worker_id: str):
        super().__init__(daemon=True, name=f"watch-{run_id}")
        self.settings, self.run_id, self.worker_id = settings, run_id, worker_id
        self.stop_training = threading.Event()
        self.lease_lost = False
        self.database_gone = False  # unreachable for longer than the grace: training stopped
        self.done = threading.Event()
        self.progress: Callable[[], dict | None] = lambda: None  # the trainer's LiveProgress, once it exists

    def run(self) -> None:
        outage = Outage(self.settings.db_grace_s, f"run {self.run_id}: heartbeat")
        while not self.done.wait(self.settings.cancel_poll_s):
            try:
                with session_scope(self.settings.db_url) as s:
                    cancel = lifecycle.heartbeat(s, self.run_id, self.worker_id, self.progress())
            except OUTAGE as err:  # training goes on through an outage shorter than the grace
                try:
                    outage.failed(err, "; training goes on meanwhile")
                except DatabaseUnavailable:
                    log.error("run %s: no database for %.0f s (AMST_DB_GRACE_S): stopping", self.run_id,
                              outage.down_s)
                    self.database_gone = True
                    self.stop_training.set()
                continue
            except Exception:  # a bug in a heartbeat must not kill training either; the next tick retries
                log.exception("heartbeat of run %s failed", self.run_id)
                continue
            outage.answered()
            if cancel is None:
                self.lease_lost = True
                self.stop_training.set()
            elif cancel:
                self.stop_training.set()


class AttemptRunner:
    """Trains one claimed attempt in this process and records its end. On several ranks (under PyTorch's
    launcher) every rank trains; rank 0 alone heartbeats, watches for cancel, keeps the run's log and records the
    end, and the others follow its stop at the same batch (amst_core.distributed)."""

    def __init__(self, settings: WorkerSettings, worker_id: str, device: str, ranks: Ranks = SINGLE):
        self.settings, self.worker_id, self.device, self.ranks = settings, worker_id, device, ranks
        self.watcher: RunWatcher | None = None
        self.shutting_down = False
        # Rank 0 ended the run on its own (a failure of its writes, a lost lease) while the other ranks may be
        # waiting in a collective for it: its process exits non-zero so that the launcher ends them.
        self.ended_alone = False

    def shutdown(self) -> None:
        """The worker is stopping: end the run at the next batch and hand it back to the queue."""
        self.shutting_down = True
        if self.watcher is not None:
            self.watcher.stop_training.set()

    def run(self, run_id: str, attempt: int) -> str | None:
        """Train attempt `attempt` of `run_id`, which this worker claimed; returns the run's new status, or None
        when the lease is no longer this worker's."""
        with session_scope(self.settings.db_url) as s:
            config = lifecycle.leased_config(s, run_id, self.worker_id, attempt)
        if config is None:
            log.info("run %s attempt %d is no longer this worker's: not trained", run_id, attempt)
            return None
        if not self.ranks.is_main:
            self.train_follower(run_id, attempt, dict(config))
            return None
        with self.run_log(run_id, attempt) as run_log:
            return self.run_attempt(run_id, attempt, dict(config), run_log)

    @contextmanager
    def run_log(self, run_id: str, attempt: int) -> Iterator[RunLogHandler | None]:
        """The run's own log file (amst_core.runlog) for this attempt, fed by this thread while it lasts. A
        native crash writes its Python stack there too (faulthandler), where the worker quotes it from."""
        try:
            handler = RunLogHandler(log_path(self.settings.run_dir(run_id)))
        except OSError as err:  # an unwritable artifacts folder loses the run's log, not the run
            log.warning("run %s: cannot write its log: %s", run_id, err)
            yield None
            return
        handler.header(attempt, self.worker_id, self.device)
        runlog.attach(handler)
        faulthandler.enable(handler.file, all_threads=False)
        try:
            yield handler
        finally:
            faulthandler.enable(sys.stderr, all_threads=False)  # before the file closes: its descriptor is reused
            runlog.detach(handler)

    def run_attempt(self, run_id: str, attempt: int, config: dict, run_log: RunLogHandler | None) -> str | None:
        log.info("run %s attempt %d starts on %s", run_id, attempt, self.worker_id)
        watcher = self.watcher = RunWatcher(self.settings, run_id, self.worker_id)
        if self.shutting_down:  # asked to stop while it was starting: the first batch hands the run back
            watcher.stop_training.set()
        watcher.start()
        if run_log is not None:
            run_log.add_thread(watcher.ident)  # its heartbeat and outage warnings are about this run
        try:
            status, error, summary = self.train(run_id, attempt, config, watcher)
        finally:
            watcher.done.set()
            self.watcher = None
        if watcher.lease_lost or status is None:
            log.warning("run %s: lease lost (reaped); this worker's result is dropped", run_id)
            return None
        try:
            if status == RunStatus.cancelled and (self.shutting_down or watcher.database_gone):
                return self.hand_back(run_id, attempt)
            with_database(self.settings, lambda s: lifecycle.finish(s, run_id, self.worker_id, attempt, status,
                                                                    error=error, summary=summary))
        except DatabaseUnavailable as err:  # the run stays live in the store: the reaper re-queues it later
            log.error("run %s: its end (%s) could not be recorded: %s", run_id, status, err)
            return None
        log.info("run %s attempt %d ended: %s", run_id, attempt, status)
        return status

    def train_follower(self, run_id: str, attempt: int, config: dict) -> None:
        """A rank other than 0: train beside rank 0, which writes and records everything. A stop (cancel, a lost
        lease, the worker stopping) reaches it from rank 0 at a batch; an error ends this process, and the
        launcher ends the others and restarts them (or gives up: the worker records the crash)."""
        from amst_core.engine import RunCancelled
        from amst_core.execute import execute_run

        cfg = on_this_worker(RunConfig.model_validate(config))
        try:
            execute_run(cfg, self.settings.run_dir(run_id), [], run_id=run_id, attempt=attempt,
                        should_stop=lambda: self.shutting_down, progress=False, ranks=self.ranks)
        except RunCancelled:
            log.info("run %s: rank %d stopped with rank 0", run_id, self.ranks.rank)
        except Exception as err:  # this rank's own failure goes to the run's log, where rank 0's side is
            if not isinstance(err, ConfigError) and not is_communication_error(err):  # rank 0 says those
                note_in_run_log(self.settings, run_id, f"rank {self.ranks.rank}: {failure_summary(err)}")
            raise

    def hand_back(self, run_id: str, attempt: int) -> str:
        """Back to the queue; the worker, which holds the broker connection, sends its message."""
        with_database(self.settings, lambda s: lifecycle.release(s, run_id, self.worker_id, attempt))
        log.info("run %s handed back to the queue", run_id)
        return RunStatus.queued

    def train(self, run_id: str, attempt: int, config: dict, watcher: RunWatcher):
        from amst_core.devices import is_device_failure
        from amst_core.engine import RunCancelled, Trainer
        from amst_core.execute import execute_run
        from amst_core.runfolder import StorageFull

        try:
            cfg = on_this_worker(RunConfig.model_validate(config))
            if self.ranks.distributed:
                from amst_core.ranks import check_devices

                check_devices(cfg)  # as many GPUs here as the run asks for, else a failure that says so
            sink = DbSink(run_id, self.settings.db_url, worker_id=self.worker_id, grace_s=self.settings.db_grace_s,
                          max_buffered=self.settings.db_buffer_points, max_points=get_limits().points_per_run)

            def started(trainer: Trainer) -> None:  # rank 0 alone: the other ranks train without it
                watcher.progress = trainer.live.snapshot
                provenance = getattr(trainer, "provenance", None)  # amst_core.provenance.collect, for this attempt

                def running(s: Session) -> None:
                    lifecycle.set_running(s, run_id, self.worker_id, attempt, trainer.start_epoch)
                    if provenance is not None:
                        lifecycle.record_provenance(s, run_id, self.worker_id, attempt, provenance)

                with_database(self.settings, running)

            summary = execute_run(cfg, self.settings.run_dir(run_id), [sink], run_id=run_id, attempt=attempt,
                                  should_stop=watcher.stop_training.is_set, progress=False, started=started,
                                  ranks=self.ranks)
            return RunStatus.succeeded, None, summary
        except RunCancelled:
            why = "the worker is shutting down" if self.shutting_down else \
                "no database" if watcher.database_gone else "the lease was lost" if watcher.lease_lost else \
                "cancel requested"
            log.info("run %s stopped: %s", run_id, why)
            return RunStatus.cancelled, None, None
        except LeaseLost:
            watcher.lease_lost = self.ended_alone = True
            return None, None, None
        except (ConfigError, StorageFull, DatabaseUnavailable) as err:  # their messages say what to do
            log.error("run %s failed: %s", run_id, err)
            self.ended_alone = True
            return RunStatus.failed, str(err), None
        except Exception as err:  # the run fails; this process ends with it, the worker lives on
            if is_communication_error(err):  # another rank died: the launcher restarts the ranks, or gives up
                log.exception("run %s: rank 0 lost the other ranks (the launcher restarts them or gives up)", run_id)
                raise
            self.ended_alone = True
            log.exception("run %s failed", run_id)  # the whole traceback stays in the run's and the worker's log
            error = failure_summary(err)
            if is_device_failure(err):  # every later kernel in this process would fail: it ends with the run
                error += "; the GPU context of its training process is unusable after it: the next run trains " \
                         "in a fresh process"
            return RunStatus.failed, error, None


def die_with_parent(parent: int) -> None:
    """A worker that dies (SIGKILL, the OOM killer choosing it) takes its training process along: SIGTERM, so the
    run is handed back at the next batch rather than trained on by a process nobody waits for. `parent` is the
    fork server, which exits when its worker does."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the watcher's lease check still stops it once reaped
        return
    if os.getppid() != parent:  # the worker died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.attempt", description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("attempt", type=int)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--parent", type=int, default=os.getppid(),
                        help="the process whose death ends this one (default: the parent)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = AttemptRunner(get_worker_settings(), args.worker_id, args.device, ranks_from_env())
    # SIGTERM from the worker (warm shutdown), SIGINT from a terminal's Ctrl-C to the worker's process group.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.shutdown())
    die_with_parent(args.parent)
    runner.run(args.run_id, args.attempt)
    return RANK0_ENDED_ALONE if runner.ranks.distributed and runner.ended_alone else 0


def forked(argv: list[str], env: dict[str, str]) -> None:
    """The training process as forked from the worker's fork server (worker/child.py): the worker's environment
    and settings of now over the fork server's (which has those of its start, plus what imports set, such as
    CUBLAS_WORKSPACE_CONFIG), then `main`."""
    from amst_core.limits import get_limits
    from amst_core.settings import get_settings

    os.environ.update(env)
    get_settings.cache_clear()
    get_worker_settings.cache_clear()
    get_limits.cache_clear()
    sys.exit(main(argv))


if __name__ == "__main__":
    sys.exit(main())
