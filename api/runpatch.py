"""The body of `PATCH /runs/{id}`: strict JSON, a RunPatch with one field or more, text the store can keep, and
no more tags than a run request may carry. Each check raises an ApiError naming the field."""

from __future__ import annotations

from fastapi import Request
from pydantic import ValidationError

from amst_core.store.models import Run
from api.deps import check_text
from api.errors import ApiError, validation_error
from api.runconfig import TAG_LIMIT, parse_json
from api.schemas import NOTES_MAX, RunPatch

FIELDS = ", ".join(RunPatch.model_fields)
# The route reads its body itself (to answer an empty body with a 422, as an empty `{}`), so OpenAPI is told its
# schema here. RunPatch is flat: its schema needs no $defs.
RUN_PATCH_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": RunPatch.model_json_schema()}}}}


async def run_patch_body(request: Request) -> RunPatch:
    """FastAPI dependency: the validated changes of the request body."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(422, f"body: send a JSON object with one or more of {FIELDS}", "body")
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ApiError(422, f"body: must be a JSON object with one or more of {FIELDS}", "body")
    try:
        patch = RunPatch.model_validate(data)
    except ValidationError as err:
        raise validation_error(err.errors()) from None
    if not patch.model_fields_set:
        raise ApiError(422, f"body: nothing to change; send one or more of {FIELDS}", "body")
    check_storable(patch, request.app.state.settings.limits.tags)
    return patch


def check_storable(patch: RunPatch, max_tags: int) -> None:
    """What the model's types cannot say: valid Unicode (a JSON escape can carry half a surrogate pair), no NUL in
    notes (PostgreSQL refuses it), and the server's bound on tags, counted as POST /runs counts them."""
    if patch.name is not None:
        check_text(patch.name, "name", Run.name.type.length)
    if patch.notes is not None:
        check_text(patch.notes, "notes", NOTES_MAX)
    for i, tag in enumerate(patch.tags or ()):
        check_text(tag, f"tags.{i}", TAG_LIMIT)
    if patch.tags is not None and len(set(patch.tags)) > max_tags:
        raise ApiError(422, f"tags: at most {max_tags} tags on this server (AMST_MAX_TAGS); got "
                            f"{len(set(patch.tags))}", "tags")
