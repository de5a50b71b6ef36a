"""The body of `POST /runs`: strict JSON, a valid RunConfig, values the database can store, a dataset that exists.

Each check raises an ApiError naming the field, before anything is written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from amst_core.catalog import DATASETS
from amst_core.config import ConfigError, RunConfig
from amst_core.datafiles import check_dataset
from amst_core.limits import Limits, check_limits, count_problems
from amst_core.store.sweeps import SERVER_TAG_PREFIX
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


def validate_config(data: Any, limits: Limits) -> RunConfig:
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as err:
        raise validation_error(with_count_limits(err.errors(), data, limits)) from None
    except RecursionError:
        raise ApiError(422, "the body is nested too deeply to be a RunConfig", "body") from None
    stored = cfg.model_dump(mode="json")
    check_storable(stored)
    size = len(canonical_json(stored))
    if size > limits.config_bytes:
        raise ApiError(422, f"the run config takes {size:,} bytes as stored; this server keeps at most "
                            f"{limits.config_bytes:,} (AMST_MAX_CONFIG_BYTES)", "body")
    try:
        check_limits(cfg, limits)
    except ConfigError as err:
        raise ApiError(422, str(err), err.field) from None
    check_user_tags(cfg.tags)
    return cfg


def with_count_limits(errors: list[Any], data: Any, limits: Limits) -> list[Any]:
    """Validation's problems with this server's limits on counts (epochs, batch_size, ...) checked as well, each
    in place of validation's own problem with that field: `batch_size: 1e12` is told "at most 4096 samples on
    this server", not RunConfig's 32-bit bound, and on the first answer even when another field is wrong."""
    over = count_problems(data, limits) if isinstance(data, dict) else {}
    kept = [e for e in errors if not (e.get("loc") and e["loc"][0] in over)]
    return kept + [{"loc": (field,), "msg": message, "type": "service_limit"} for field, message in over.items()]


def check_user_tags(tags: Iterable[str], own: str | None = None) -> None:
    """`sweep:<id>` tags are the server's: it tags a sweep's runs so (GET /runs?tag=sweep:<id>). A request may not
    set one, but a sweep's run may keep its `own`."""
    for i, tag in enumerate(tags):
        if tag.startswith(SERVER_TAG_PREFIX) and tag != own:
            raise ApiError(422, f"tags.{i}: {tag[:100]!r}: tags starting with {SERVER_TAG_PREFIX!r} are the "
                                "server's (the runs of a sweep carry them); choose another tag", f"tags.{i}")


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


def check_dataset_files(cfg: RunConfig, settings: ApiSettings) -> RunConfig:
    """The run's data must be there, confined to AMST_DATA_ROOT and fit the config (the worker's own check, run
    before anything is queued): a config that cannot work is a 422 naming the field, never a failed run. Returns
    the config resolved against the data (a folder dataset's modalities)."""
    try:
        return check_dataset(cfg, settings.data_roots)
    except ConfigError as err:
        message = str(err)
        hint = DATASETS[cfg.dataset.name].prepare_command
        if err.field == "dataset.root" and hint and "does not exist" in message and hint not in message:
            message += f"; run `{hint}` first"
        raise ApiError(422, message, err.field or "dataset") from None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


async def run_config_body(request: Request) -> RunConfig:
    """FastAPI dependency: the validated RunConfig of the request body."""
    return validate_config(parse_json(await request.body()), request.app.state.settings.limits)


# The body is read by run_config_body, so OpenAPI is told its schema explicitly (see api.main.custom_openapi).
RUN_CONFIG_SCHEMA = {"$ref": "#/components/schemas/RunConfig"}
RUN_CONFIG_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": RUN_CONFIG_SCHEMA}}}}
