"""Idempotency-Key for POST /runs and POST /sweeps: one key, one thing created, whatever the retries.

The key lives on a run row (unique column `idempotency_key`, with the hash of the request that used it): a run's
own, or the first run of a sweep. So both routes share one namespace and one race: concurrent requests with the
same key meet the unique key at the flush, and the losers answer with the winner's creation. Repeating a request
with its key answers 200 with what it created (`Idempotent-Replayed: true`); the same key with another request
is a 409.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import Header, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from amst_core.store.models import Run
from api.errors import ApiError
from api.runconfig import canonical_json

PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"  # printable ASCII, no space at either end
KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200, pattern=PATTERN,
                                         description="repeating a request with its key returns what the first "
                                                     "created (200) instead of creating it again")]


def request_hash(value: Any) -> str:
    """sha256 of the canonical JSON of a validated request: equal requests hash equal, whatever their key
    order."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 200 or not value.isascii() or not value.isprintable():
        raise ApiError(422, "Idempotency-Key: 1 to 200 printable ASCII characters (a UUID is a good key)",
                       "Idempotency-Key")
    return value


def keyed_run(s: Session, key: str | None) -> Run | None:
    """The run that holds the key: the run an earlier request created, or the first run of its sweep."""
    return s.scalar(select(Run).where(Run.idempotency_key == key)) if key is not None else None


def race_winner(s: Session, key: str | None) -> Run:
    """After an IntegrityError on the flush: the run of the concurrent request that took the key first."""
    s.rollback()
    earlier = keyed_run(s, key)
    if earlier is None:  # the winner was rolled back (its broker refused it): this one may try again
        raise ApiError(409, "a concurrent request with this Idempotency-Key did not complete; send the request "
                            "again", "Idempotency-Key")
    return earlier


def replayed(response: Response, earlier: Run, digest: str, location: str) -> None:
    """Answer a repeated request (200, `Idempotent-Replayed`), or a 409 when the key served another request."""
    if earlier.request_hash != digest:
        raise ApiError(409, "Idempotency-Key was already used for a different request; use a new key",
                       "Idempotency-Key")
    response.status_code = 200
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = location
