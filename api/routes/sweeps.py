"""Sweeps: a grid of runs as one submission, its progress, its results matrix and tables (amst_core.sweeps)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import yaml
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from amst_core.config import PRINTABLE, ConfigError, RunConfig
from amst_core.provenance import differences
from amst_core.store import queries
from amst_core.store import sweeps as store
from amst_core.store.models import Run, Sweep, utcnow
from amst_core.sweeps import (
    MIN_PAIRS,
    TABLE_FORMATS,
    SweepError,
    SweepRun,
    cell_key,
    expand,
    find_cell,
    format_cell,
    matrix,
    render_table,
)
from api.deps import RUN_ID, DispatcherDep, SessionDep, SettingsDep
from api.dispatch import queue_or_undo
from api.errors import ApiError, validation_error
from api.idempotency import KeyHeader, idempotency_key, keyed_run, race_winner, replayed, request_hash
from api.routes.runs import EMPTY_BODY, Auth, Errors, Mutation, empty_body, revoke
from api.runconfig import canonical_json, check_dataset_files, check_storable, parse_json, validate_config
from api.schemas import ErrorResponse, RunSummary
from api.settings import ApiSettings

log = logging.getLogger("amst.api")
router = APIRouter(tags=["sweeps"])


class SweepIn(BaseModel):
    # As strict as a RunConfig: a misspelt field (`max_concurent`) or a number sent as text is refused, not
    # silently dropped or converted.
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str | None = Field(None, min_length=1, max_length=120, pattern=PRINTABLE)
    base: dict[str, Any] = Field(description="a RunConfig: what every run of the sweep shares")
    grid: dict[str, Annotated[list[Any], Field(min_length=1, max_length=1000)]] = Field(
        min_length=1, max_length=50, description='dotted run-config fields and their values, e.g. {"method": '
                                                   '["naive", "amst_full"], "skip.audio": [1, 2, 3], "seed": [0, 1]}')
    baseline: dict[str, Any] | None = Field(None, description='the cell the others are paired with, by some of its '
                                                              'grid values: {"method": "naive"}')
    max_concurrent: int | None = Field(None, ge=1, le=10_000, description="runs of this sweep dispatched at once "
                                       "(at most the server's AMST_SWEEP_MAX_CONCURRENT)")


class StatOut(BaseModel):
    mean: float | None
    std: float | None
    count: int


class PairedOut(BaseModel):
    seeds: list[Any]
    differences: list[float]
    mean: float | None
    t_p: float | None = Field(description="paired t-test, two-sided")
    wilcoxon_p: float | None = Field(description="Wilcoxon signed-rank, two-sided")
    meaningful: bool = Field(description=f"at least {MIN_PAIRS} paired seeds; fewer make the p-values say little")


class RowOut(BaseModel):
    cell: dict[str, Any]
    stats: dict[str, StatOut]
    paired: dict[str, PairedOut]


class SweepOut(BaseModel):
    id: str
    name: str
    status: str = Field(description="queued, running, cancelling, succeeded, finished (some runs did not succeed) "
                                    "or cancelled")
    created_at: datetime
    grid: dict[str, Any]
    baseline: dict[str, Any] | None
    max_concurrent: int
    progress: dict[str, Any] = Field(description="total, done, succeeded, and runs per status")


class SweepDetail(SweepOut):
    base: dict[str, Any]
    runs: list[RunSummary]
    cells: list[dict[str, Any]] = Field(description="each run's grid values, in the order of `runs`")
    matrix: list[RowOut] = Field(description="one row per cell (the grid minus seed) over its succeeded runs")
    differences: list[str] = Field([], description="how its runs differ in code, environment or data (one line per "
                                                   "aspect, as GET /differences says it); empty when they agree")


class SweepPage(BaseModel):
    items: list[SweepOut]


def sweep_out(sweep: Sweep, runs: list[Run]) -> dict[str, Any]:
    return {"id": sweep.id, "name": sweep.name, "status": store.status(sweep, runs), "created_at": sweep.created_at,
            "grid": sweep.grid, "baseline": sweep.baseline, "max_concurrent": sweep.max_concurrent,
            "progress": store.progress(runs)}


def find_sweep(s: Session, sweep_id: str, for_update: bool = False) -> Sweep:
    sweep = store.get_sweep(s, sweep_id, for_update) if RUN_ID.match(sweep_id) else None
    if sweep is None:
        raise ApiError(404, f"sweep {sweep_id[:100]} not found", "sweep_id")
    return sweep


def results_matrix(sweep: Sweep, runs: list[Run], baseline: dict[str, Any] | None) -> list:
    """The matrix over the succeeded runs, paired with the baseline cell (the request's, else the sweep's) once
    that cell has results; a baseline that names no single cell of the grid is a 422."""
    baseline = baseline if baseline is not None else sweep.baseline
    results = store.results(runs)
    try:
        if baseline:
            cell = find_cell(list(dict.fromkeys(cell_key(r.sweep_cell or {}) for r in runs)), baseline)
            if not any(r.cell_key == cell for r in results):
                baseline = None  # nothing to pair with yet
        return matrix(results, baseline)
    except SweepError as err:
        raise ApiError(422, str(err), err.field) from None


def sweep_field(err: SweepError, grid: dict[str, Any]) -> str:
    """Where a refused combination went wrong: a grid key (`grid.skip.audio`) or the base (`base.dataset`)."""
    if not err.cell or not err.field:
        return err.field or "grid"
    return cell_field(err.field, grid)


def cell_field(field: str, grid: dict[str, Any]) -> str:
    """A run-config field refused in a cell, as the sweep's body names it: the grid key that sets it (or sets a
    field of its section: `dataset.root` is missing for `grid.dataset.name`), else the base's field."""
    exact = [k for k in grid if field == k or field.startswith(f"{k}.") or k.startswith(f"{field}.")]
    near = exact or [k for k in grid if k.split(".")[0] == field.split(".")[0]]
    return f"grid.{near[0]}" if near else f"base.{field}"


T = TypeVar("T")


def in_cell(run: SweepRun, grid: dict[str, Any], check: Callable[[], T]) -> T:
    """A check of one run of the grid, whose refusal names the cell and the sweep's field."""
    try:
        return check()
    except ApiError as err:
        if err.status_code != 422:
            raise
        whole = err.field in (None, "body")  # the run config as a whole (its stored size): the base makes most of it
        field = "base" if whole else cell_field(err.field, grid)
        raise ApiError(422, f"cell {format_cell(run.cell)}: {err.message}", field) from None


def data_key(cfg: RunConfig) -> str:
    """What the data check reads: the dataset, and the model's input shapes it must fit (mel_bins, text model)."""
    return canonical_json({"dataset": cfg.dataset.model_dump(mode="json"), "model": cfg.model.model_dump(mode="json")})


def checked_runs(body: SweepIn, settings: ApiSettings) -> list[SweepRun]:
    """Every run of the grid validated as POST /runs validates one (limits, storable values, no server tags), and
    the data of each distinct dataset checked once, at most AMST_SWEEP_MAX_DATASET_CHECKS of them; each run gets
    its config as resolved against its data (a folder's modalities)."""
    check_storable(body.base, "base")
    check_storable(body.grid, "grid")
    check_storable(body.baseline, "baseline")
    try:
        runs = expand(body.base, body.grid)
    except SweepError as err:
        raise ApiError(422, str(err), sweep_field(err, body.grid)) from None
    configs = [in_cell(r, body.grid, lambda r=r: validate_config(r.config.model_dump(mode="json"), settings.limits))
               for r in runs]
    first: dict[str, tuple[SweepRun, RunConfig]] = {}
    for r, cfg in zip(runs, configs, strict=True):
        first.setdefault(data_key(cfg), (r, cfg))
    bound_dataset_checks(len(first), body.grid, settings.sweep_max_dataset_checks)
    resolved = {key: in_cell(r, body.grid, lambda cfg=cfg: check_dataset_files(cfg, settings))
                for key, (r, cfg) in first.items()}
    return [in_cell(r, body.grid, lambda r=r, cfg=cfg: with_data(r, cfg, resolved[data_key(cfg)]))
            for r, cfg in zip(runs, configs, strict=True)]


def bound_dataset_checks(count: int, grid: dict[str, Any], limit: int) -> None:
    """A data check may scan a large folder (about a second per 20,000 files): a sweep asks for a bounded number."""
    if count <= limit:
        return
    keys = [k for k in grid if k.split(".")[0] in ("dataset", "model")] or list(grid)
    key = max(keys, key=lambda k: len(grid[k]))
    raise ApiError(422, f"grid.{key}: the grid makes {count} distinct datasets (dataset and model fields) whose "
                        f"data must be checked; this server checks at most {limit} per sweep "
                        "(AMST_SWEEP_MAX_DATASET_CHECKS): split the sweep", f"grid.{key}")


def with_data(run: SweepRun, cfg: RunConfig, resolved: RunConfig) -> SweepRun:
    """The run with the dataset section its data check resolved (validated again: a folder's modalities decide
    what a method may do)."""
    if resolved.dataset == cfg.dataset:
        return SweepRun(run.cell, cfg)
    data = {**cfg.model_dump(mode="json"), "dataset": resolved.dataset.model_dump(mode="json")}
    try:
        return SweepRun(run.cell, RunConfig.model_validate(data))
    except ValidationError as err:
        raise validation_error(err.errors()) from None


async def sweep_body(request: Request) -> SweepIn:
    try:
        return SweepIn.model_validate(parse_json(await request.body()))
    except ValidationError as err:
        raise validation_error(err.errors()) from None


# The body is read by sweep_body (strict JSON, our error format), so OpenAPI is told its schema explicitly.
SWEEP_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": SweepIn.model_json_schema()}}}}


SWEEP_LINKS = {name: {"operationId": op, "parameters": {"sweep_id": "$response.body#/id"}} for name, op in (
    ("GetSweep", "get_sweep_sweeps__sweep_id__get"), ("GetTable", "get_table_sweeps__sweep_id__table_get"),
    ("CancelSweep", "cancel_sweep_sweeps__sweep_id__cancel_post"))}


@router.post("/sweeps", status_code=201, response_model=SweepDetail, dependencies=Auth, openapi_extra=SWEEP_BODY,
             responses={**Mutation, 503: {"model": ErrorResponse}, 201: {"links": SWEEP_LINKS},
                        200: {"model": SweepDetail, "description": "a replay: the sweep an earlier request with this "
                                                                   "Idempotency-Key created"}})
def submit_sweep(response: Response, s: SessionDep, settings: SettingsDep, dispatch: DispatcherDep,
                 body: Annotated[SweepIn, Depends(sweep_body)], key: KeyHeader = None) -> SweepDetail:
    """Queue a grid of runs. Every combination is validated first: an invalid one is a 422 naming its cell and
    field, and nothing is queued. Runs are released `max_concurrent` at a time (fair to other runs). With an
    `Idempotency-Key`, repeating the request returns the first sweep (200); the key with another body is a 409.
    A sync route: its checks run in FastAPI's threadpool, never on the event loop."""
    key = idempotency_key(key)
    digest = request_hash(body.model_dump(mode="json"))
    if (earlier := keyed_run(s, key)) is not None:
        return replay(s, response, earlier, digest)
    runs = checked_runs(body, settings)
    limit = min(body.max_concurrent or settings.sweep_max_concurrent, settings.sweep_max_concurrent)
    try:
        sweep = store.create_sweep(s, body.name, body.base, body.grid, runs, body.baseline, limit, key, digest)
        s.commit()
    except (SweepError, ConfigError) as err:
        s.rollback()
        raise ApiError(422, str(err), getattr(err, "field", None) or "baseline") from None
    except IntegrityError:  # a concurrent request with the same key won the race
        if key is None:
            raise
        return replay(s, response, race_winner(s, key), digest)
    queue_or_undo(s, lambda: store.release_held(s, dispatch.send, sweep.id),
                  lambda: store.delete_sweep(s, sweep.id), "sweep")
    response.headers["Location"] = f"/sweeps/{sweep.id}"
    return detail(s, sweep)


def replay(s: Session, response: Response, earlier: Run, digest: str) -> SweepDetail:
    """The sweep whose first run holds the key; a key that a run (or another sweep) used is a 409."""
    replayed(response, earlier, digest if earlier.sweep_id else "", f"/sweeps/{earlier.sweep_id}")
    return detail(s, find_sweep(s, earlier.sweep_id or ""))


def detail(s: Session, sweep: Sweep, baseline: dict[str, Any] | None = None) -> SweepDetail:
    runs = store.sweep_runs(s, sweep.id)
    now = utcnow()
    rows = results_matrix(sweep, runs, baseline)
    recorded = queries.provenances(s, [r.id for r in runs])
    return SweepDetail(**sweep_out(sweep, runs), base=sweep.base, runs=[RunSummary.of(r, now) for r in runs],
                       cells=[r.sweep_cell or {} for r in runs],
                       matrix=[RowOut(cell=r.cell, stats={k: StatOut(**vars(v)) for k, v in r.stats.items()},
                                      paired={k: PairedOut(**vars(v)) for k, v in r.paired.items()}) for r in rows],
                       differences=differences([recorded[r.id] for r in runs]))


@router.get("/sweeps", response_model=SweepPage, responses=Errors)
def list_sweeps(s: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> SweepPage:
    """Sweeps, newest first, with their progress."""
    return SweepPage(items=[SweepOut(**sweep_out(w, store.sweep_runs(s, w.id))) for w in store.newest_sweeps(s, limit)])


def parse_baseline(text: str | None) -> dict[str, Any] | None:
    """`method=naive,skip.audio=2` -> {"method": "naive", "skip.audio": 2} (values read as YAML scalars)."""
    if text is None:
        return None
    out: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ApiError(422, f"baseline: {item!r} is not key=value", "baseline")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        out[key] = parsed if isinstance(parsed, str | int | float | bool) else value
    return out


Baseline = Annotated[str | None, Query(max_length=500, description="pair the cells with this one instead: "
                                                                    "key=value,... (e.g. method=naive)")]


@router.get("/sweeps/{sweep_id}", response_model=SweepDetail, responses=Errors)
def get_sweep(sweep_id: str, s: SessionDep, baseline: Baseline = None) -> SweepDetail:
    """The sweep, its runs with their grid values, and the results matrix over its succeeded runs."""
    return detail(s, find_sweep(s, sweep_id), parse_baseline(baseline))


class CsvResponse(Response):
    media_type = "text/csv"  # what OpenAPI says the 200 is (FastAPI would say JSON), with the other formats


TEXT = {"schema": {"type": "string"}}
# Its errors are JSON all the same: declared with their content (a `model` would take the route's media type).
JSON_ERRORS = {code: {"description": "an error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/ErrorResponse"}}}} for code in Errors}


TABLE_MEDIA = {"csv": ("text/csv", "csv"), "markdown": ("text/markdown", "md"), "latex": ("application/x-latex", "tex")}


@router.get("/sweeps/{sweep_id}/table", response_class=CsvResponse, responses={
    200: {"content": {media: TEXT for media, _ in TABLE_MEDIA.values()}}, **JSON_ERRORS})
def get_table(sweep_id: str, s: SessionDep, format: Literal["csv", "markdown", "latex", "md", "tex"] = "csv",
              baseline: Baseline = None) -> Response:
    """The results matrix against the baseline cell (the sweep's own unless `baseline` names another; empty: none).
    `csv`: every number in its own column (mean, std, n per measure; diff, t-test and Wilcoxon p, paired seeds
    per primary measure) and the significance in words (`significant`, `not significant`, `too few seeds`,
    `baseline`). `markdown` (`md`) and `latex` (`tex`, a booktabs tabular): the compact table for a paper, one row
    per cell with "mean ± std" per measure, the best of each column bold, Δ and the paired t-test's p against the
    baseline (marked † with too few seeds), and notes saying so, first of them how its runs differ in code,
    environment or data where they do."""
    sweep = find_sweep(s, sweep_id)
    runs = store.sweep_runs(s, sweep.id)
    recorded = queries.provenances(s, [r.id for r in runs])
    text = render_table(results_matrix(sweep, runs, parse_baseline(baseline)), format,
                        differences([recorded[r.id] for r in runs]))
    media, suffix = TABLE_MEDIA[TABLE_FORMATS[format]]
    return Response(text, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{sweep.id}.{suffix}"'})


@router.post("/sweeps/{sweep_id}/cancel", response_model=SweepDetail, dependencies=[*Auth, Depends(empty_body)],
             responses=Mutation, openapi_extra=EMPTY_BODY)
def cancel_sweep(sweep_id: str, s: SessionDep, settings: SettingsDep, dispatch: DispatcherDep) -> SweepDetail:
    """Cancel the sweep: its queued runs at once, its running ones within seconds."""
    sweep = find_sweep(s, sweep_id, for_update=True)
    tasks = store.cancel_sweep(s, sweep)
    s.commit()
    for task_id in tasks:
        revoke(dispatch, task_id)
    return detail(s, sweep)


__all__ = ["ApiSettings", "router"]
