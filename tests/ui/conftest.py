"""The dashboard's fixtures: a real API process over a run store seeded with runs, and AppTest pages on it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from amst_core.store.models import RunStatus
from tests.kit.browser import start_dashboard
from tests.kit.db import migrated_sqlite
from tests.kit.seeded import APP, EVIL_NAME, SeededRun, seed_run
from tests.kit.svc import Service, service_env
from tests.kit.tiny import write_tiny_avdigits


@dataclass
class SeededApi:
    url: str
    runs: dict[str, SeededRun]
    service: Service
    db: str = ""
    artifacts: Path = Path()


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
    service = Service(service_env(tmp, DATABASE_URL=url, AMST_HEARTBEAT_S="3600"), tmp)
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


# ---- the browser suites' stacks (tests/ui/test_browser*.py) ----

@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """API, one worker and the dashboard, over a store that already holds two finished runs to compare."""
    tmp = tmp_path_factory.mktemp("e2e")
    write_tiny_avdigits(tmp / "data", frames=48)  # the audio length avdigits suggests to the form
    url = f"sqlite:///{migrated_sqlite(tmp / 'amst.db')}"
    base = seed_run(url, "naive", 30, 30, RunStatus.succeeded, name="naive-s0", tags=("baseline",),
                    dataset="avdigits")
    full = seed_run(url, "amst_full", 30, 30, RunStatus.succeeded, name="amst-full-s0", tags=("amst",),
                    dataset="avdigits")
    service = Service(service_env(tmp, DATABASE_URL=url, AMST_HEARTBEAT_S="1", AMST_CANCEL_POLL_S="0.2"), tmp)
    service.start_api()
    service.start_worker()
    ui_url = start_dashboard(service)
    try:
        yield service, ui_url, {"base": base.id, "full": full.id}
    finally:
        service.stop()


@pytest.fixture(scope="module")
def still(tmp_path_factory: pytest.TempPathFactory):
    """The API and the dashboard over a store with a running run whose worker is silent (heartbeats an hour
    apart, so it stays running and gets no new points unless a test writes them) and two finished runs."""
    tmp = tmp_path_factory.mktemp("still")
    write_tiny_avdigits(tmp / "data")
    url = f"sqlite:///{migrated_sqlite(tmp / 'amst.db')}"
    runs = {"live": seed_run(url, "amst_alt", 6, 30, RunStatus.running, name="alt-live"),
            "full": seed_run(url, "amst_full", 30, 30, RunStatus.succeeded, name="amst-full-s0"),
            "base": seed_run(url, "naive", 30, 30, RunStatus.succeeded, name="naive-s0")}
    service = Service(service_env(tmp, DATABASE_URL=url, AMST_HEARTBEAT_S="3600", AMST_UI_REFRESH_S="1"), tmp)
    service.start_api()
    ui_url = start_dashboard(service)
    try:
        yield service, ui_url, runs, url
    finally:
        service.stop()
