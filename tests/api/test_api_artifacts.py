"""Artifacts are bounded: each run's disk use in GET /runs/{id}, and a retention policy (`amst gc`, and the API
every AMST_GC_INTERVAL_S) that removes ended runs' checkpoints, runs' folders the store no longer knows, and
temporary files a crash left."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from amst_core.artifacts import collect
from amst_core.store.db import get_engine
from amst_core.store.models import Run, RunStatus, utcnow
from api.settings import ApiSettings
from launch.cli import main  # amst gc: a service operation
from tests.kit.api import FakeWorker, submit

MB = 1_000_000


def fill(run_dir: Path, **files: int) -> None:
    for name, size in files.items():
        path = run_dir / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * size)


def ended(db_url: str, run_id: str, days_ago: float, status: RunStatus = RunStatus.succeeded) -> None:
    with Session(get_engine(db_url)) as s, s.begin():
        s.execute(update(Run).where(Run.id == run_id).values(status=status, finished_at=utcnow() - timedelta(
            days=days_ago)))


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_runs_disk_use_is_in_its_detail(client: TestClient, settings: ApiSettings) -> None:
    run_id = submit(client)["id"]
    assert client.get(f"/runs/{run_id}").json()["artifacts"] == {"bytes": 0, "files": {}}
    fill(settings.run_dir(run_id), checkpoints__last_pt=3 * MB, checkpoints__best_pt=2 * MB, config_yaml=100)
    artifacts = client.get(f"/runs/{run_id}").json()["artifacts"]
    assert artifacts["bytes"] == 5 * MB + 100
    assert artifacts["files"] == {"checkpoints/best_pt": 2 * MB, "checkpoints/last_pt": 3 * MB, "config_yaml": 100}


def test_retention_removes_what_the_policy_says(client: TestClient, settings: ApiSettings, db_url: str) -> None:
    old, recent, failed, live = (submit(client)["id"] for _ in range(4))
    for run_id in (old, recent, failed, live):
        fill(settings.run_dir(run_id), **{"checkpoints__last.pt": MB, "checkpoints__best.pt": MB})
    ended(db_url, old, days_ago=31)
    ended(db_url, recent, days_ago=2)
    ended(db_url, failed, days_ago=40, status=RunStatus.failed)
    FakeWorker(db_url, live).start()  # running: never touched
    orphan = settings.artifacts_dir / "runs" / "gone0000deadbeef"
    fill(orphan, **{"checkpoints__last.pt": MB})
    age(orphan, 7200)
    crash = settings.run_dir(recent) / "checkpoints" / "last.pt.tmp"
    fill(settings.run_dir(recent), **{"checkpoints__last.pt.tmp": MB})
    age(crash, 7200)

    with Session(get_engine(db_url)) as s:
        dry = collect(s, settings, dry_run=True)
        assert (settings.run_dir(old) / "checkpoints" / "last.pt").exists(), "a dry run removes nothing"
        report = collect(s, settings)
    assert sorted(dry.removed) == sorted(report.removed)
    removed = {Path(path).relative_to(settings.artifacts_dir / "runs").as_posix() for path, _ in report.removed}
    assert removed == {f"{old}/checkpoints/last.pt", f"{failed}/checkpoints/last.pt", "gone0000deadbeef",
                       f"{recent}/checkpoints/last.pt.tmp"}
    assert report.freed_bytes == 4 * MB
    assert (settings.run_dir(old) / "checkpoints" / "best.pt").exists(), "the best model is kept by default"
    assert client.get(f"/runs/{old}").json()["artifacts"]["files"] == {"checkpoints/best.pt": MB}


def test_amst_gc_on_the_command_line(client: TestClient, settings: ApiSettings, db_url: str,
                                     monkeypatch, capsys) -> None:
    run_id = submit(client)["id"]
    fill(settings.run_dir(run_id), **{"checkpoints__last.pt": MB, "checkpoints__best.pt": MB})
    ended(db_url, run_id, days_ago=3)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("AMST_ARTIFACTS", str(settings.artifacts_dir))
    monkeypatch.setenv("AMST_KEEP_BEST_CHECKPOINT", "false")
    assert main(["gc", "--dry-run"]) == 0
    assert "would remove 0 files" in capsys.readouterr().err, "3 days is within the default 30"
    assert main(["gc", "--days", "1", "--dry-run"]) == 0
    assert "would remove 2 files" in capsys.readouterr().err
    assert main(["gc", "--days", "1"]) == 0
    assert "removed 2 files or folders, 2.0 MB" in capsys.readouterr().err
    assert not (settings.run_dir(run_id) / "checkpoints" / "best.pt").exists()


def test_disk_use_skips_a_file_renamed_between_listing_and_stat(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A live run's writer renames its temporary checkpoint at any moment: GET /runs/{id} sums the folder then,
    and a file that went between the listing and its stat was a 500."""
    from amst_core.artifacts import disk_use

    (tmp_path / "config.yaml").write_text("x: 1\n")
    gone = tmp_path / "checkpoints" / "last.pt.tmp"
    listed = [tmp_path / "config.yaml", gone]
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: iter(listed))
    real_is_file = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda self: True if self == gone else real_is_file(self))
    assert disk_use(tmp_path) == {"config.yaml": 5}
