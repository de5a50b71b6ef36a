"""Opaque cursors for run lists: base64url of the last run's (created_at, id) in the (created_at DESC, id DESC)
order. Keyset pagination: a page costs the same at any depth, and runs added meanwhile never shift a page."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from amst_core.store.queries import PageKey
from api.deps import RUN_ID
from api.errors import ApiError


def encode_cursor(key: PageKey) -> str:
    raw = json.dumps([key.created_at.astimezone(UTC).isoformat(), key.id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> PageKey | None:
    if not cursor:  # absent, or empty as a form leaves it
        return None
    try:
        if len(cursor) > 200:  # ours are about 70 characters
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, run_id = json.loads(raw)
        created_at = datetime.fromisoformat(created)
        if created_at.tzinfo is None or not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise ValueError("not a cursor")
        created_at = created_at.astimezone(UTC)  # may overflow at the ends of the calendar
    except (ValueError, TypeError, OverflowError, binascii.Error, RecursionError):
        raise ApiError(400, "cursor: not a cursor this server issued; use next_cursor from the previous page "
                            "with the same filters", "cursor") from None
    return PageKey(created_at, run_id)
