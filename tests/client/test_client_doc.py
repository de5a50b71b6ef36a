"""Doc/client.md's Python examples run as written, in order, against the API in this process (its network calls
are routed to the app) while a fake trainer takes every queued run through its epochs."""

from __future__ import annotations

import contextlib
import io
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from amst_core.store.db import get_engine
from amst_core.store.models import Run, RunStatus
from api.settings import ApiSettings
from tests.kit.api import TOKEN, FakeWorker
from tests.kit.tiny import write_tiny_avdigits

DOC = Path(__file__).resolve().parents[2] / "Doc" / "client.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
SLEEP = time.sleep  # the trainer's own pause, before a test shortens the client's


def train_queued_runs(settings: ApiSettings) -> None:
    """One pass of the fake trainer: every queued run through all its epochs, with a best checkpoint."""
    with Session(get_engine(settings.db_url)) as s:
        queued = [(r.id, r.epochs_total) for r in s.scalars(select(Run).where(Run.status == RunStatus.queued))]
    for run_id, epochs in queued:
        worker = FakeWorker(settings.db_url, run_id).start()
        for epoch in range(epochs):
            worker.epoch(epoch, 0.5 + 0.1 * (hash(run_id) % 3))
        best = settings.run_dir(run_id) / "checkpoints" / "best.pt"
        best.parent.mkdir(parents=True, exist_ok=True)
        best.write_bytes(b"weights")
        worker.finish()


@pytest.fixture
def trainer(settings: ApiSettings) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            train_queued_runs(settings)
            SLEEP(0.02)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 6


def test_the_python_examples_run_as_written(settings: ApiSettings, transport: httpx.BaseTransport, trainer,
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_tiny_avdigits(settings.data_root, frames=48)
    monkeypatch.setenv("AMST_DATA_ROOT", str(settings.data_root))
    monkeypatch.setenv("AMST_API_TOKEN", TOKEN)
    monkeypatch.delenv("AMST_API_URL", raising=False)
    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", lambda self, request: transport.handle_request(request))
    monkeypatch.setattr("amst_client.client.time.sleep", lambda seconds: SLEEP(0.01))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for number, block in enumerate(BLOCKS, start=1):
            try:
                exec(compile(block, f"Doc/client.md, python block {number}", "exec"), namespace)
            except Exception as err:
                raise AssertionError(f"Doc/client.md, python block {number} failed: {err!r}\n{block}") from err
    out = printed.getvalue()
    assert out.startswith("ok\n")
    assert "succeeded: epoch 3/3" in out and "422 epochs" in out
    assert (tmp_path / "alt-avdigits-best.pt").read_bytes() == b"weights"
    assert namespace["sweep"]["progress"] == {**namespace["sweep"]["progress"], "total": 4, "done": 4}
