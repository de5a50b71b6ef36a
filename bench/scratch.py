"""A throwaway database for a benchmark: a fresh PostgreSQL database next to the given URL (dropped
afterwards), or a temporary SQLite file when no URL is given. Either is migrated to head by the caller."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from amst_core.store.db import get_engine, normalise_url


@contextmanager
def scratch_database(url: str | None) -> Iterator[str]:
    if url is None or url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"amst_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    scratch = normalise_url(url.rsplit("/", 1)[0] + f"/{name}")
    try:
        yield scratch
    finally:
        get_engine(scratch).dispose()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
