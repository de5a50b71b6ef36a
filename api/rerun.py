"""POST /runs/{id}/rerun: a new run from what a run recorded, on the data it trained on.

The config is the run's recorded resolved config (its provenance; the stored config of a run that recorded none).
The new run expects the data the old one trained on (`data_fingerprint`), so its worker refuses other data; the
API checks them first and answers 409 with what changed, unless the request says `force` (the new run then takes
the data as they are, and the answer warns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from amst_core import provenance
from amst_core.config import RunConfig
from amst_core.store.models import Run
from amst_core.store.sweeps import SERVER_TAG_PREFIX
from api.errors import ApiError, validation_error
from api.runconfig import check_dataset_files, parse_json, validate_config
from api.schemas import RerunIn
from api.settings import ApiSettings

SUFFIX = " (re-run)"
NAME_MAX = Run.name.type.length
RERUN_BODY = {"requestBody": {"required": False, "content": {"application/json": {
    "schema": RerunIn.model_json_schema()}}}}


async def rerun_body(request: Request) -> RerunIn:
    """FastAPI dependency: the request's options; an empty body is no force."""
    raw = await request.body()
    if not raw.strip():
        return RerunIn()
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(422, 'body: must be a JSON object: {"force": true|false}, or nothing', "body")
    try:
        return RerunIn.model_validate(data)
    except ValidationError as err:
        raise validation_error(err.errors()) from None


@dataclass
class Rerun:
    config: RunConfig  # resolved against the data, as POST /runs queues it
    warnings: list[str] = field(default_factory=list)


def plan(run: Run, force: bool, settings: ApiSettings) -> Rerun:
    """The new run's config and warnings; ApiError 409 when the data changed and `force` is not set."""
    recorded = run.provenance if run.provenance and "digests" in run.provenance else None
    cfg = check_dataset_files(recorded_config(run, recorded, settings), settings)
    if recorded is None:
        return Rerun(cfg, [f"run {run.id} recorded no provenance (it did not start, or trained before runs recorded "
                           "it): its stored config is re-run, with nothing recorded to check its data against"])
    changes = provenance.data_changes(recorded["data"], provenance.data_fingerprint(cfg, settings.data_roots))
    if changes and not force:
        raise ApiError(409, f"the data changed since run {run.id} trained: {'; '.join(changes)}. Re-run it anyway on "
                            'the data as they are now with {"force": true}', "force")
    warnings = [f"the data changed since run {run.id} trained: {'; '.join(changes)}; the re-run trains on the data "
                "as they are now"] if changes else []
    expected = None if force else recorded["digests"]["data"]
    return Rerun(cfg.model_copy(update={"data_fingerprint": expected}), warnings)


def recorded_config(run: Run, recorded: dict[str, Any] | None, settings: ApiSettings) -> RunConfig:
    """The run's recorded config under a new name, without the server's tags (a re-run joins no sweep), as this
    server validates it; a 409 when it no longer can (a method or dataset since removed)."""
    source = dict(recorded["config"] if recorded else run.config)
    source["name"] = rerun_name(run.name)
    source["tags"] = [t for t in source.get("tags") or () if not t.startswith(SERVER_TAG_PREFIX)]
    source["data_fingerprint"] = None
    try:
        return validate_config(source, settings.limits)
    except ApiError as err:
        raise ApiError(409, f"run {run.id} cannot be re-run on this server: its config is refused: {err.message}",
                       "run_id") from None


def rerun_name(name: str) -> str:
    """"<name> (re-run)", once: a re-run of a re-run keeps the name it has."""
    return name if name.endswith(SUFFIX) else name[:NAME_MAX - len(SUFFIX)] + SUFFIX
