"""What the server offers: its vocabulary, methods, datasets, workers, health; AMST runs paired with baselines."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from amst_core.catalog import DATASETS, METHODS
from amst_core.datafiles import describe_dataset
from amst_core.recipes import filled_in
from amst_core.store import queries
from amst_core.store.models import utcnow
from amst_core.store.queries import RunFilters
from amst_core.sweeps import pair_baselines
from amst_core.vocab import TEXT, vocabulary
from api.deps import SessionDep, SettingsDep, find_run
from api.schemas import (
    DatasetOut,
    DependencyOut,
    ErrorResponse,
    HealthOut,
    MethodOut,
    PairOut,
    RunSeriesOut,
    VocabularyOut,
    WorkerOut,
)

router = APIRouter(tags=["meta"])


def package_version() -> str:
    try:
        return version("amst-studio")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("/vocabulary", response_model=VocabularyOut)
def get_vocabulary() -> VocabularyOut:
    """The product's words: modalities, splits, metric components, run-level series every run logs, run statuses.
    A client takes them from here instead of keeping its own lists (a method's own series: GET /methods)."""
    return VocabularyOut.model_validate(vocabulary())


@router.get("/methods", response_model=list[MethodOut])
def list_methods() -> list[MethodOut]:
    """Training methods, with the JSON schema and defaults of their `method_params`."""
    return [MethodOut(name=m.name, summary=m.summary, default_fusion=m.default_fusion, fusion_fixed=m.fusion_fixed,
                      uses_skip=m.uses_skip, params_schema=m.params.model_json_schema(),
                      params_defaults=m.params().model_dump(mode="json"),
                      series=[RunSeriesOut(**s.as_dict()) for s in m.series])
            for m in METHODS.values()]


@router.get("/datasets", response_model=list[DatasetOut])
def list_datasets(settings: SettingsDep) -> list[DatasetOut]:
    """Datasets: modalities, classes, sizes when the data are there, and whether each is ready on this server (its
    files pass the check a run gets, under AMST_DATA_ROOT)."""
    out = []
    for d in DATASETS.values():
        state = describe_dataset(d.name, settings.data_roots)
        out.append(DatasetOut(name=d.name, summary=d.summary, modalities=list(d.modalities),
                              classes=list(state.classes or d.classes), splits=list(d.splits), prepared=state.ready,
                              problem=state.problem, sizes=state.sizes, folders=list(state.folders),
                              text=TEXT in d.modalities, prepare_command=d.prepare_command, knobs=list(d.knobs),
                              defaults=d.defaults,
                              recipes={m: filled_in(d.name, m) for m in METHODS},
                              reference={m: filled_in(d.name, m, "reference") for m in METHODS}))
    return out


MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]
PAIR_RUNS = 100  # runs one request may pair
PAIR_POOL = 500  # baseline runs of those datasets looked at, newest first


@router.get("/pairs", response_model=list[PairOut], responses={404: {"model": ErrorResponse}})
def pair_runs(s: SessionDep,
              run: Annotated[list[str], Query(min_length=1, max_length=PAIR_RUNS, description="the runs compared")],
              baseline: Annotated[MethodName, Query(description="the baseline's method")] = "naive") -> list[PairOut]:
    """Each AMST run among `run` (a method that skips) with a `baseline` run of the same dataset and seed: one
    among `run` first, else the newest succeeded one, else the newest of any status; archived runs count. A run
    without a match is left out. (amst_core.sweeps.pair_baselines: one rule for Compare and the sweep tables.)"""
    runs = [find_run(s, run_id) for run_id in dict.fromkeys(run)]
    filters = RunFilters(methods=(baseline,), datasets=tuple(sorted({r.dataset for r in runs})), archived="all")
    candidates, _ = queries.list_runs(s, filters, PAIR_POOL)
    return [PairOut(run_id=a.id, baseline_id=b.id) for a, b in pair_baselines(runs, candidates, baseline)]


@router.get("/workers", response_model=list[WorkerOut])
def list_workers(s: SessionDep, settings: SettingsDep) -> list[WorkerOut]:
    """Workers that registered, most recent heartbeat first: where each runs (host, Slurm job, Kubernetes pod),
    its GPUs, queues and device, the run it trains, its heartbeat's age and its state (alive, lost, stopped)."""
    now = utcnow()
    workers = queries.workers(s)
    names = queries.run_names(s, [w.current_run_id for w in workers if w.current_run_id])
    return [WorkerOut.of(w, now, settings.lost_after_s, names) for w in workers]


HEALTH_CACHE_S = 2.0  # a load balancer polling every second costs the broker one connection every 2 s


def probe(check: Callable[[], object], backend: str) -> DependencyOut:
    started = time.perf_counter()
    try:
        check()
        error = None
    except Exception as err:  # the kind only: the message may hold the address or the password
        error = type(err).__name__
    return DependencyOut(backend=backend, reachable=error is None, error=error,
                         latency_ms=round(1000 * (time.perf_counter() - started), 2))


def database_check(request: Request) -> Callable[[], object]:
    def check() -> None:
        with request.app.state.sessions() as s:
            queries.ping(s)
    return check


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(request: Request, settings: SettingsDep) -> HealthOut | JSONResponse:
    """The database and the broker, each checked: ok (200) when both answer, else 503 saying which does not."""
    state = request.app.state
    cached = getattr(state, "health", None)
    if cached is None or time.monotonic() - cached[0] > HEALTH_CACHE_S:
        database = probe(database_check(request), state.engine.dialect.name)
        broker = probe(state.dispatcher.ping, urlsplit(settings.celery_broker).scheme)
        cached = state.health = (time.monotonic(), database, broker)
    _, database, broker = cached
    status = "ok" if database.reachable and broker.reachable else "degraded" if database.reachable \
        else "unavailable"
    body = HealthOut(status=status, database=database, broker=broker, version=package_version())
    return body if status == "ok" else JSONResponse(body.model_dump(), status_code=503)
