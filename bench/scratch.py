"""A throwaway database for a benchmark: a fresh PostgreSQL database next to the given URL (dropped
afterwards), or a temporary SQLite file when no URL is given. Either is migrated to head by the caller."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.kit
from tests.kit.db import scratch_pg_database


@contextmanager
def scratch_database(url: str | None) -> Iterator[str]:
    if url is None or url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    with scratch_pg_database(url, "amst_bench") as scratch:
        yield scratch
