"""Run messages are sent and revoked in one place (api.dispatch): the task the API and a worker send is the task
the worker runs, and no other module talks to Celery's send_task or revoke."""

from __future__ import annotations

import re
from pathlib import Path

from amst_core.store.lifecycle import TASK_NAME
from api import dispatch

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("amst_core", "api", "worker", "launch", "ui")
SENDING = re.compile(r"\.send_task\(|\.control\.revoke\(")


def test_the_message_sent_is_the_task_a_worker_runs() -> None:
    from worker.app import app

    assert dispatch.TASK_NAME == TASK_NAME and TASK_NAME in app.tasks


def test_only_the_dispatch_module_sends_or_revokes_run_messages() -> None:
    senders = sorted(str(path.relative_to(ROOT)) for package in PRODUCT for path in (ROOT / package).rglob("*.py")
                     if SENDING.search(path.read_text()))
    assert senders == ["api/dispatch.py"]


def test_a_worker_process_sends_through_the_dispatcher() -> None:
    """`amst serve worker` hands the reaper and its executor api.dispatch's sender, not one of its own."""
    source = (ROOT / "launch" / "processes.py").read_text()
    assert "Dispatcher(" in source and "TASK_NAME" not in source
