"""The Celery app: one task, `amst.execute_run`, executed by one worker process per GPU.

Settings follow DESIGN.md section 5: late acks, prefetch 1, reject on worker lost, a visibility timeout
longer than any run. The database, not the broker, decides who runs what (see worker.runner), so a message
delivered twice is harmless.
"""

from __future__ import annotations

import logging

from celery import Celery, signals

from amst_core.settings import Settings, get_settings
from amst_core.store.lifecycle import TASK_NAME

VISIBILITY_TIMEOUT_S = 30 * 24 * 3600  # longer than any run: an unacked run is not handed to a second worker
log = logging.getLogger("amst.worker")


def make_celery(settings: Settings) -> Celery:
    app = Celery("amst", broker=settings.celery_broker)
    transport_options = {}
    if settings.celery_broker.startswith(("redis", "rediss")):
        transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT_S}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # results live in the run store
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_default_queue="gpu",
    )
    app.task(name=TASK_NAME, bind=True, acks_late=True)(execute_run)
    return app


def execute_run(task, run_id: str) -> str | None:
    """Celery entry point: train run `run_id` if this worker can take its lease."""
    from worker.runner import current_executor

    return current_executor().execute(run_id)


@signals.worker_process_init.connect
def _init_logging(**_kwargs) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


app = make_celery(get_settings())
