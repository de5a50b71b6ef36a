"""The body of `POST /runs`: strict JSON, a valid RunConfig, values the database can store, a dataset that exists.

Each check raises an ApiError naming the field, before anything is written.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from amst_core.catalog import DATASETS
from amst_core.config import RunConfig
from api.deps import check_text
from api.errors import ApiError, validation_error
from api.settings import ApiSettings

INT_LIMIT = 2**31 - 1  # integer columns (epochs, seed, ...) are 32-bit on PostgreSQL
COLUMN_LIMITS = {"name": 200}  # text that lands in a column of that width; tags are checked one by one
TAG_LIMIT = 100


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no NaN or Infinity literals); any failure is a 400 that says why."""
    if not raw.strip():
        raise ApiError(400, "malformed JSON: the body is empty; send a RunConfig object", "body")
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", "body") from None
    except ValueError as err:  # JSONDecodeError, bad UTF-8, integers too long to parse
        raise ApiError(400, f"malformed JSON: {err}", "body") from None


def validate_config(data: Any) -> RunConfig:
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as err:
        raise validation_error(err.errors()) from None
    except RecursionError:
        raise ApiError(422, "the body is nested too deeply to be a RunConfig", "body") from None
    check_storable(cfg.model_dump(mode="json"))
    return cfg


def check_storable(value: Any, path: str = "") -> None:
    """Reject what a valid RunConfig may still hold but the store cannot keep: non-finite floats (not JSON),
    integers beyond 32 bits, NUL characters or broken Unicode in text, names longer than their column."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:  # iterative: the shape of a validated config is bounded, but a loop cannot overflow anyway
        where, v = stack.pop()
        if isinstance(v, dict):
            stack += [(f"{where}.{k}" if where else str(k), item) for k, item in v.items()]
        elif isinstance(v, list | tuple):
            stack += [(f"{where}.{i}", item) for i, item in enumerate(v)]
        elif isinstance(v, float) and not math.isfinite(v):
            raise ApiError(422, f"{where}: must be a finite number", where)
        elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT_LIMIT:
            raise ApiError(422, f"{where}: must be at most {INT_LIMIT} in size", where)
        elif isinstance(v, str):
            limit = TAG_LIMIT if where.startswith("tags.") else COLUMN_LIMITS.get(where, 10_000)
            check_text(v, where, limit)


def check_dataset_folder(cfg: RunConfig, settings: ApiSettings) -> None:
    """A real dataset must be prepared under AMST_DATA_ROOT before a run can use it (synthetic is generated)."""
    if cfg.dataset.name == "synthetic":
        return
    folder = Path(settings.data_root) / (cfg.dataset.root or cfg.dataset.name)
    try:
        exists = folder.is_dir()
    except (OSError, ValueError):  # a name too long for the filesystem is simply not there
        exists = False
    if exists:
        return
    hint = DATASETS[cfg.dataset.name].prepare_command
    message = f"dataset.root: folder {folder} does not exist under AMST_DATA_ROOT ({settings.data_root})"
    message += f"; run `{hint}` first" if hint else "; put the dataset there first"
    raise ApiError(422, message, "dataset.root")


def request_hash(cfg: RunConfig) -> str:
    """sha256 of the canonical JSON of the validated config: equal requests hash equal, whatever their key order
    or spelled-out defaults."""
    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= 200 or not value.isascii() or not value.isprintable():
        raise ApiError(422, "Idempotency-Key: 1 to 200 printable ASCII characters (a UUID is a good key)",
                       "Idempotency-Key")
    return value


async def run_config_body(request: Request) -> RunConfig:
    """FastAPI dependency: the validated RunConfig of the request body."""
    return validate_config(parse_json(await request.body()))


# The body is read by run_config_body, so OpenAPI is told its schema explicitly (see api.main.custom_openapi).
RUN_CONFIG_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunConfig"}}},
    }
}
