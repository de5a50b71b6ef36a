"""Runs: submit, list and search, inspect, stream, label (PATCH), cancel, retry, re-run, delete, download
(DESIGN.md section 6)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Annotated, Any, Literal

import yaml
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import StringConstraints
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from amst_core.artifacts import disk_use
from amst_core.catalog import DATASETS, METHODS
from amst_core.config import PRINTABLE, RunConfig
from amst_core.runfolder import Checkpoint, RunFolder
from amst_core.store import lifecycle, queries, search
from amst_core.store.models import Modality, Run, RunStatus, utcnow
from amst_core.store.sweeps import sweep_tag
from amst_core.vocab import MODALITIES, Split
from api.deps import MAX_FILTER_VALUES, DispatcherDep, SessionDep, SettingsDep, find_run
from api.dispatch import queue_or_undo
from api.errors import ApiError
from api.events import RunEvents
from api.guards import require_token
from api.idempotency import KeyHeader, idempotency_key, keyed_run, race_winner, replayed, request_hash
from api.pagination import decode_cursor, encode_cursor
from api.rerun import RERUN_BODY, plan, rerun_body
from api.runconfig import RUN_CONFIG_BODY, RUN_CONFIG_SCHEMA, check_dataset_files, check_user_tags, run_config_body
from api.runpatch import RUN_PATCH_BODY, run_patch_body
from api.schemas import ErrorResponse, MetricsOut, RerunIn, RerunOut, RunDetail, RunPage, RunPatch, RunSummary
from api.settings import ApiSettings

log = logging.getLogger("amst.api")
router = APIRouter(tags=["runs"])

EPOCH_MAX = 2**31 - 1
EVENT_ID = r"^(-1|[0-9]{1,9})$"  # an event id is an epoch number (-1 before any)
Auth = [Depends(require_token)]
Errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 409, 422)}
# Mutating routes also answer 413 (body too large) and 415 (not JSON, when the server has no token).
Mutation: dict[int | str, dict[str, Any]] = {**Errors, **{code: {"model": ErrorResponse} for code in (413, 415)}}

# Filters: repeat a parameter for several values (`?status=queued&status=running`); values of one filter OR,
# filters AND. Names the catalog knows are enums; free names are bounded like the columns they are compared with.
MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]
DatasetName = Literal[tuple(DATASETS)]  # type: ignore[valid-type]
ModalityName = Literal[(*MODALITIES, "none", "null")]  # type: ignore[valid-type]  # none/null: run-level series
Text40 = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=PRINTABLE)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=PRINTABLE)]


def values(item: Any, what: str) -> Any:
    return Annotated[list[item] | None, Query(max_length=MAX_FILTER_VALUES, description=what)]


# OpenAPI links: what a client (or schemathesis' stateful phase) can do with the id of a submitted run.
RUN_LINKS = {name: {"operationId": op, "parameters": {"run_id": "$response.body#/id"}} for name, op in (
    ("GetRun", "get_run_runs__run_id__get"), ("GetMetrics", "get_metrics_runs__run_id__metrics_get"),
    ("CancelRun", "cancel_run_runs__run_id__cancel_post"), ("RetryRun", "retry_run_runs__run_id__retry_post"),
    ("DeleteRun", "delete_run_runs__run_id__delete"), ("UpdateRun", "update_run_runs__run_id__patch"),
    ("RerunRun", "rerun_run_runs__run_id__rerun_post"))}
# Cancel and retry take no input, but a POST must say it is JSON (api.guards): an empty body or `{}`.
EMPTY_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "maxProperties": 0, "description": "nothing, or {}"}}}}}


async def empty_body(request: Request) -> None:
    raw = (await request.body()).strip()
    if raw and raw != b"{}":
        raise ApiError(422, f"{request.url.path} takes no body (send nothing, or {{}})", "body")


def run_detail(s: Session, run: Run, settings: ApiSettings) -> RunDetail:
    """RunDetail in four small queries (tags came with the run; attempts, latest values, queue position) and a
    look at the run's folder."""
    now = utcnow()
    return RunDetail.build(run, now, lifecycle.queue_position(s, run), queries.attempts(s, run.id),
                           queries.latest_values(s, run.id), disk_use(settings.run_dir(run.id)),
                           queries.waiting_reason(s, run, now, settings.lost_after_s))


@router.post("/runs", status_code=201, response_model=RunDetail, dependencies=Auth, openapi_extra=RUN_CONFIG_BODY,
             responses={**Mutation, 201: {"links": RUN_LINKS}, 503: {"model": ErrorResponse},
                        200: {"model": RunDetail, "description": "a replay: the run an earlier request with this "
                                                                 "Idempotency-Key created"}})
def submit_run(response: Response, s: SessionDep, settings: SettingsDep, dispatch: DispatcherDep,
               cfg: Annotated[RunConfig, Depends(run_config_body)], key: KeyHeader = None) -> RunDetail:
    """Queue a run. Only `method` and `dataset.name` are required. With an `Idempotency-Key`, repeating the same
    request returns the first run (200, `Idempotent-Replayed: true`); the same key with another body is a 409."""
    key = idempotency_key(key)
    digest = request_hash(cfg.model_dump(mode="json"))
    if (earlier := keyed_run(s, key)) is not None:
        return replay(s, response, earlier, digest, settings)
    cfg = check_dataset_files(cfg, settings)
    try:
        run = lifecycle.create_run(s, cfg, key, digest)  # its flush meets the unique key first
        s.commit()
    except IntegrityError:  # a concurrent request with the same key won the race
        if key is None:
            raise
        return replay(s, response, race_winner(s, key), digest, settings)

    queue_or_undo(s, lambda: lifecycle.message_sent(s, run.id, dispatch.send(run.id, run.queue)),
                  lambda: lifecycle.discard_unsent(s, run.id), "run")
    response.headers["Location"] = f"/runs/{run.id}"
    return run_detail(s, run, settings)


def replay(s: Session, response: Response, run: Run, digest: str, settings: ApiSettings) -> RunDetail:
    replayed(response, run, digest, f"/runs/{run.id}")
    return run_detail(s, run, settings)


@router.get("/runs", response_model=RunPage, responses=Errors)
def list_runs(s: SessionDep, status: values(RunStatus, "any of these statuses") = None,
              method: values(MethodName, "any of these methods") = None,
              dataset: values(DatasetName, "any of these datasets") = None,
              tag: values(Tag, "a run must carry every one of these tags") = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 50,
              cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")]
              = None,
              q: Annotated[str | None, Query(max_length=500, description="search terms, all must hold: `key OP "
                                             "value` (OP: = != > >= < <= ~) on a run field or a config path, or "
                                             "a word in the name or id; Doc/service.md")] = None,
              archived: Annotated[Literal["hide", "only", "all"], Query(description="archived runs: hidden, "
                                                                                   "alone, or with the others")]
              = "hide",
              with_config: Annotated[bool, Query(description="each run carries its full config")] = False,
              ) -> RunPage:
    """Runs, newest first, a page at a time. Filters combine with AND; values of one filter with OR. With `q` a
    page may hold fewer than `limit` runs and still have a next_cursor (a search reads a bounded number of runs
    per request)."""
    filters = queries.RunFilters(statuses=distinct(status), methods=distinct(method), datasets=distinct(dataset),
                                 tags=distinct(tag), archived=archived, search=search_terms(q))
    runs, next_key = queries.list_runs(s, filters, limit, decode_cursor(cursor), with_config)
    now = utcnow()
    return RunPage(items=[RunSummary.of(r, now, with_config) for r in runs],
                   next_cursor=encode_cursor(next_key) if next_key else None)


def search_terms(q: str | None) -> tuple[search.Term, ...]:
    """The query's terms; a 422 naming `q` for one that cannot be read or whose key names nothing (a typo
    would otherwise match no run, silently)."""
    try:
        terms = tuple(search.parse(q or ""))
        search.check_keys(terms, RunConfig)
        return terms
    except search.SearchError as err:
        raise ApiError(422, f"q: {err}", "q") from None


@router.get("/runs/{run_id}", response_model=RunDetail, responses=Errors)
def get_run(run_id: str, s: SessionDep, settings: SettingsDep) -> RunDetail:
    """Config, status, attempts, progress, best metrics, heartbeat age, queue position, device, ETA."""
    return run_detail(s, find_run(s, run_id), settings)


@router.patch("/runs/{run_id}", response_model=RunDetail, dependencies=Auth, responses=Mutation,
              openapi_extra=RUN_PATCH_BODY)
def update_run(run_id: str, s: SessionDep, settings: SettingsDep,
               patch: Annotated[RunPatch, Depends(run_patch_body)]) -> RunDetail:
    """Rename, annotate, retag (the tags given replace the run's) or archive a run, in any state. Only the fields
    sent change; the run's config never does."""
    run = find_run(s, run_id, for_update=True)
    changes = patch.model_dump(exclude_unset=True)
    if "tags" in changes:  # a sweep's run keeps its sweep's tag: the tags sent replace the others
        own = sweep_tag(run.sweep_id) if run.sweep_id else None
        check_user_tags(changes["tags"], own)
        changes["tags"] = [*changes["tags"], *([own] if own else [])]
    lifecycle.relabel(run, changes)
    s.commit()
    return run_detail(s, run, settings)


def distinct(items: list[Any] | None) -> tuple[Any, ...]:
    return tuple(dict.fromkeys(str(i) for i in items or ()))


def series_filters(split: values(Split, "any of these splits") = None,
                   component: values(Text40, "any of these components (fused, branch, helper, ...)") = None,
                   modality: values(ModalityName, "any of these modalities; none: run-level series") = None,
                   name: values(Text40, "any of these metric names (acc, loss, ...)") = None,
                   ) -> queries.SeriesFilters:
    return queries.SeriesFilters(
        splits=distinct(split), components=distinct(component), names=distinct(name),
        modalities=tuple(dict.fromkeys(Modality.none if m == "null" else Modality(m) for m in modality or ())))


SeriesFiltersDep = Annotated[queries.SeriesFilters, Depends(series_filters)]
SinceEpoch = Annotated[int, Query(ge=-1, le=EPOCH_MAX, description="only epochs after this one")]


@router.get("/runs/{run_id}/metrics", response_model=MetricsOut, responses=Errors)
def get_metrics(run_id: str, s: SessionDep, filters: SeriesFiltersDep, since_epoch: SinceEpoch = -1,
                max_points: Annotated[int | None, Query(ge=2, le=100_000, description="per series")] = None,
                ) -> MetricsOut:
    """Curves of a run. `modality=none` selects run-level series. Only whole epochs are returned."""
    run = find_run(s, run_id)
    series = queries.series_points(s, run.id, filters, since_epoch, run.epochs_done, max_points)
    return MetricsOut.build(run, utcnow(), series, since_epoch, lifecycle.superseded_from(s, run))


@router.get("/runs/{run_id}/events", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {}}, "description": "status, metrics and end events"}, **Errors})
async def run_events(request: Request, run_id: str, filters: SeriesFiltersDep, since_epoch: SinceEpoch = -1,
                     last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", pattern=EVENT_ID,
                                                                 description="the id of the last event received")]
                     = None,
                     ) -> StreamingResponse:
    """Server-sent events: `status` on every change, `metrics` for new epochs, `end` when the run is over.
    Each event's id is the last epoch sent; reconnecting with Last-Event-ID resumes after it."""
    state = request.app.state
    since = resume_epoch(last_event_id, since_epoch)

    def exists() -> None:  # a 404 must come before the stream starts
        with state.sessions() as s:
            find_run(s, run_id)

    await asyncio.to_thread(exists)
    events = RunEvents(state.sessions, lambda s, run: run_detail(s, run, state.settings), run_id, filters, since,
                       state.settings.sse_poll_s, state.settings.sse_keepalive_s)
    return StreamingResponse(events.stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def resume_epoch(last_event_id: str | None, since_epoch: int) -> int:
    """The header wins over the query: a browser's EventSource reconnects to the same URL with the header.
    Its form (EVENT_ID) is checked by FastAPI."""
    return since_epoch if last_event_id is None else int(last_event_id)


@router.post("/runs/{run_id}/cancel", response_model=RunDetail, dependencies=[*Auth, Depends(empty_body)],
             responses=Mutation, openapi_extra=EMPTY_BODY)
def cancel_run(run_id: str, s: SessionDep, settings: SettingsDep, dispatch: DispatcherDep) -> RunDetail:
    """A queued run is cancelled at once; a running one is flagged and its worker stops within seconds."""
    run = find_run(s, run_id, for_update=True)
    try:
        lifecycle.request_cancel(s, run)
    except lifecycle.TransitionError as err:
        raise ApiError(409, str(err), "run_id") from None
    s.commit()
    if run.task_id:
        revoke(dispatch, run.task_id)
    return run_detail(s, run, settings)


def revoke(dispatch: DispatcherDep, task_id: str) -> None:
    """Best effort: the database already says cancelled, and a worker checks it before starting."""
    try:
        dispatch.revoke(task_id)
    except Exception as err:
        log.warning("could not revoke task %s: %s", task_id, err)


@router.post("/runs/{run_id}/retry", response_model=RunDetail, dependencies=[*Auth, Depends(empty_body)],
             responses={**Mutation, 503: {"model": ErrorResponse}}, openapi_extra=EMPTY_BODY)
def retry_run(run_id: str, s: SessionDep, settings: SettingsDep, dispatch: DispatcherDep) -> RunDetail:
    """Queue a failed, cancelled or lost run again; it resumes from its last checkpoint."""
    run = find_run(s, run_id, for_update=True)
    try:
        lifecycle.retry_and_send(s, run, dispatch.send)
    except lifecycle.TransitionError as err:
        raise ApiError(409, str(err), "run_id") from None
    except lifecycle.MessageRefused as err:
        raise ApiError(503, f"could not queue the run: {err}") from None
    return run_detail(s, run, settings)


@router.post("/runs/{run_id}/rerun", status_code=201, response_model=RerunOut, dependencies=Auth,
             openapi_extra=RERUN_BODY,
             responses={**Mutation, 201: {"links": RUN_LINKS}, 503: {"model": ErrorResponse},
                        200: {"model": RerunOut, "description": "a replay: the re-run an earlier request with this "
                                                                "Idempotency-Key created"}})
def rerun_run(run_id: str, response: Response, s: SessionDep, settings: SettingsDep, dispatch: DispatcherDep,
              body: Annotated[RerunIn, Depends(rerun_body)], key: KeyHeader = None) -> RerunOut:
    """A new run from the run's record: its recorded resolved config (the stored one if it recorded none), named
    "<name> (re-run)", expecting the data it trained on. 409 when those data changed since (the message says
    what changed); `{"force": true}` re-runs on the data as they are, and the answer's `warnings` say so."""
    key = idempotency_key(key)
    digest = request_hash({"rerun": run_id, "force": body.force})
    if (earlier := keyed_run(s, key)) is not None:
        return RerunOut(**dict(replay(s, response, earlier, digest, settings)))
    run = find_run(s, run_id)
    rerun = plan(run, body.force, settings)
    try:
        new = lifecycle.create_run(s, rerun.config, key, digest, rerun_of=run.id)
        s.commit()
    except IntegrityError:  # a concurrent request with the same key won the race
        if key is None:
            raise
        return RerunOut(**dict(replay(s, response, race_winner(s, key), digest, settings)))
    queue_or_undo(s, lambda: lifecycle.message_sent(s, new.id, dispatch.send(new.id, new.queue)),
                  lambda: lifecycle.discard_unsent(s, new.id), "run")
    response.headers["Location"] = f"/runs/{new.id}"
    return RerunOut(**dict(run_detail(s, new, settings)), warnings=rerun.warnings)


@router.delete("/runs/{run_id}", status_code=204, dependencies=Auth, responses=Mutation)
def delete_run(run_id: str, s: SessionDep, settings: SettingsDep, dispatch: DispatcherDep) -> Response:
    """Delete a run that is not running, with its points and checkpoints."""
    run = find_run(s, run_id, for_update=True)
    message = f"run {run.id} is {run.status}; cancel it first (POST /runs/{run.id}/cancel)"
    if run.status in lifecycle.LIVE:
        raise ApiError(409, message, "run_id")
    if not lifecycle.delete_run(s, run.id):  # a worker claimed it a moment ago
        raise ApiError(409, message, "run_id")
    s.commit()
    if run.status == RunStatus.queued and run.task_id:
        revoke(dispatch, run.task_id)
    shutil.rmtree(settings.run_dir(run.id), ignore_errors=True)
    return Response(status_code=204)


@router.get("/runs/{run_id}/checkpoint", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}}, **Errors})
def get_checkpoint(run_id: str, s: SessionDep, settings: SettingsDep,
                   which: Annotated[Checkpoint, Query()] = "best") -> FileResponse:
    """Download the run's best (highest validation accuracy) or last checkpoint."""
    run = find_run(s, run_id)
    path = RunFolder(settings.run_dir(run.id)).checkpoint(which)
    if not path.is_file():
        raise ApiError(404, f"run {run.id} has no {which} checkpoint yet", "which")
    return FileResponse(path, media_type="application/octet-stream", filename=f"{run.id}-{which}.pt")


@router.get("/runs/{run_id}/config", responses={200: {"content": {
    "application/json": {"schema": RUN_CONFIG_SCHEMA},
    "application/yaml": {"schema": RUN_CONFIG_SCHEMA}}},  # the same config, as YAML
    **Errors})
def get_config(run_id: str, s: SessionDep,
               format: Annotated[Literal["json", "yaml"], Query()] = "json") -> Response:
    """The run's full config (defaults filled in): JSON, or a YAML file for `amst train`."""
    run = find_run(s, run_id)
    if format == "json":
        return JSONResponse(run.config)
    text = yaml.safe_dump(run.config, sort_keys=False)
    return Response(text, media_type="application/yaml",
                    headers={"Content-Disposition": f'attachment; filename="{run.id}.yaml"'})

