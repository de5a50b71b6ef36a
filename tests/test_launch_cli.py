"""The service's operations are commands of `amst` (launch.cli), not of the library's command line: `amst db
upgrade` migrates the run store named by DATABASE_URL (the whole `amst gc` is tests/api/test_api_artifacts.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from amst_core.cli import build_parser as library_parser
from amst_core.store.migrate import current
from launch.cli import build_parser, main


def test_amst_db_upgrade_migrates_the_database_it_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    revision = current(url)
    assert revision and f"database at revision {revision}" in capsys.readouterr().err


def test_db_and_gc_are_service_commands() -> None:
    service = build_parser()._subparsers._group_actions[0].choices
    library = library_parser()._subparsers._group_actions[0].choices
    assert {"db", "gc", "serve", "up"} <= set(service) and not {"db", "gc", "serve", "up"} & set(library)
    assert set(library) <= set(service), "the `amst` command keeps every library command"
