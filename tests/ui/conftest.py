"""The dashboard's fixtures: a real API process over a run store seeded with runs, and AppTest pages on it."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbkit import migrated_sqlite
from uikit import SeededRun, seed_run

from amst_core.store.models import RunStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
from svc import Service, write_tiny_avdigits

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "ui" / "app.py")


@dataclass
class SeededApi:
    url: str
    runs: dict[str, SeededRun]
    service: Service
    db: str = ""
    artifacts: Path = Path()


EVIL_NAME = "![pixel](http://evil.example/p.png) [click](http://evil.example) :red[alarm] $x$"
FIRST_EPOCH_LIVE = {"epoch": 0, "split": "train", "batch": 120, "batches": 400, "samples_per_s": 213.0}


def in_first_epoch(url: str) -> SeededRun:
    """A running run that has finished no epoch yet, 120 of 400 training batches into its first one."""
    import time

    from sqlalchemy.orm import Session

    from amst_core.store import lifecycle
    from amst_core.store.db import get_engine

    run = seed_run(url, "amst_full", 0, 5, RunStatus.running, name="first-epoch", seed=2)
    with Session(get_engine(url)) as s, s.begin():
        lifecycle.heartbeat(s, run.id, "seed-worker", {**FIRST_EPOCH_LIVE, "updated_at": time.time()})
    return run


def service_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "BROKER_URL", "AMST_API"))}
    env.update({"DATABASE_URL": f"sqlite:///{tmp}/amst.db", "BROKER_URL": f"sqla+sqlite:///{tmp}/broker.db",
                "AMST_HOME": str(tmp), "AMST_DATA_ROOT": str(tmp / "data"), "AMST_ARTIFACTS": str(tmp / "artifacts"),
                "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


@pytest.fixture(scope="module")
def seeded_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeededApi]:
    """An API process (embedded SQLite store and broker, no worker) with five runs of every kind of status.
    Heartbeats are spaced an hour apart so that the seeded running run is never reaped as lost."""
    tmp = tmp_path_factory.mktemp("seeded")
    write_tiny_avdigits(tmp / "data")
    url = f"sqlite:///{migrated_sqlite(tmp / 'amst.db')}"
    runs = {
        "base": seed_run(url, "naive", 30, 30, RunStatus.succeeded, name="base-s0", tags=("baseline",)),
        "full": seed_run(url, "amst_full", 30, 30, RunStatus.succeeded, name="full-s0", tags=("amst",)),
        "live": seed_run(url, "amst_alt", 12, 30, RunStatus.running, name="alt-live", tags=("amst",)),
        "failed": seed_run(url, "amst_joint", 5, 30, RunStatus.failed, name="joint-fail"),
        "queued": seed_run(url, "naive", 0, 30, RunStatus.queued, name="waiting", seed=1),
        "mla": seed_run(url, "mla", 30, 30, RunStatus.succeeded, name="mla-s0", summary={"selections": {
            "combo:a30_v70": {"best_epoch": 21, "best_val_acc": 0.91, "test_acc_at_best": 0.9},
            "combo:entropy": {"best_epoch": 25, "best_val_acc": 0.88, "test_acc_at_best": 0.87}}}),
        "evil": seed_run(url, "naive", 3, 3, RunStatus.succeeded, name=EVIL_NAME, seed=3),
    }
    runs["first"] = in_first_epoch(url)
    service = Service(service_env(tmp, AMST_HEARTBEAT_S="3600"), tmp)
    service.start_api()
    try:
        yield SeededApi(service.url, runs, service, url, tmp / "artifacts")
    finally:
        service.stop()


@pytest.fixture
def ui_env(monkeypatch: pytest.MonkeyPatch):
    """Point the dashboard (AppTest runs it in this process) at an API; settings are read afresh."""
    from ui.settings import ui_settings

    def point_at(url: str, **extra: str) -> None:
        monkeypatch.setenv("AMST_API_URL", url)
        for key, value in extra.items():
            monkeypatch.setenv(key, value)
        ui_settings.cache_clear()

    yield point_at
    ui_settings.cache_clear()


@pytest.fixture
def app(seeded_api: SeededApi, ui_env):
    from streamlit.testing.v1 import AppTest

    ui_env(seeded_api.url)
    return AppTest.from_file(APP, default_timeout=30)
