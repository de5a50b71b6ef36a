"""What the server offers: its vocabulary, methods, datasets, workers, health; AMST runs paired with baselines, and
how runs differ in code, environment or data."""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from amst_core.catalog import DATASETS, METHODS
from amst_core.config import ConfigError, RunConfig
from amst_core.datafiles import describe_dataset
from amst_core.datasets.base import REFERENCE_SPLIT, SplitScheme
from amst_core.layouts.schemes import shared_speakers
from amst_core.provenance import differences
from amst_core.recipes import filled_in
from amst_core.store import queries
from amst_core.store.models import utcnow
from amst_core.store.queries import RunFilters
from amst_core.sweeps import pair_baselines
from amst_core.vocab import TEXT, vocabulary
from api.deps import RUN_ID, SessionDep, SettingsDep, find_run
from api.errors import ApiError, validation_error
from api.schemas import (
    DatasetOut,
    DatasetSplitsOut,
    DependencyOut,
    DifferencesOut,
    ErrorResponse,
    HealthOut,
    MethodOut,
    PairOut,
    RunSeriesOut,
    SplitCountsOut,
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
    files pass the check a run gets, under AMST_DATA_ROOT); per split of the reference split, class counts and
    speakers (and the speakers two splits share) where the files say."""
    out = []
    for d in DATASETS.values():
        state = describe_dataset(d.name, settings.data_roots)
        out.append(DatasetOut(name=d.name, summary=d.summary, modalities=list(d.modalities),
                              classes=list(state.classes or d.classes), splits=list(d.splits), prepared=state.ready,
                              problem=state.problem, sizes=state.sizes, folders=list(state.folders),
                              split_counts=SplitCountsOut.of_splits(state.counts),
                              shared_speakers=shared_speakers(state.counts or {}),
                              split_schemes=[REFERENCE_SPLIT, *d.split_schemes] if d.split_schemes else [],
                              text=TEXT in d.modalities, prepare_command=d.prepare_command, knobs=list(d.knobs),
                              defaults=d.defaults,
                              recipes={m: filled_in(d.name, m) for m in METHODS},
                              reference={m: filled_in(d.name, m, "reference") for m in METHODS}))
    return out


@router.get("/datasets/{name}/splits", response_model=DatasetSplitsOut,
            responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
def dataset_splits(name: str, settings: SettingsDep,
                   split_scheme: Annotated[SplitScheme, Query(description="dataset.split_scheme")] = "reference",
                   split_seed: Annotated[int | None, Query(ge=0, le=2**31 - 1,
                                                           description="dataset.split_seed (default 0)")] = None,
                   test_session: Annotated[int | None, Query(ge=1, le=5, description="dataset.test_session")] = None,
                   ) -> DatasetSplitsOut:
    """Per split, the class counts and speakers a run with these split settings gets (its drawn split, from the
    split files: no media read), and the speakers two splits share."""
    spec = DATASETS.get(name)
    if spec is None:
        raise ApiError(404, f"no dataset {name!r}; GET /datasets lists them", "name")
    if spec.counts is None:
        raise ApiError(404, f"{name} has no split files to count; GET /datasets gives its sizes", "name")
    asked = {"split_scheme": None if split_scheme == REFERENCE_SPLIT else split_scheme, "split_seed": split_seed,
             "test_session": test_session}
    try:
        cfg = RunConfig.model_validate({"method": "naive", "dataset": {
            "name": name, **{k: v for k, v in asked.items() if v is not None}}})
        counts = spec.counts(cfg, settings.data_roots)
    except ValidationError as err:
        raise validation_error(err.errors()) from None
    except ConfigError as err:
        raise ApiError(422, str(err), err.field) from None
    dataset = cfg.dataset
    return DatasetSplitsOut(dataset=name, split_scheme=dataset.split_scheme or REFERENCE_SPLIT,
                            split_seed=dataset.split_seed, test_session=dataset.test_session,
                            split_counts=SplitCountsOut.of_splits(counts) or {},
                            shared_speakers=shared_speakers(counts))


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


@router.get("/differences", response_model=DifferencesOut, responses={404: {"model": ErrorResponse}})
def run_differences(s: SessionDep, run: Annotated[list[str], Query(min_length=1, max_length=PAIR_RUNS,
                                                                   description="the runs compared")]
                    ) -> DifferencesOut:
    """How the runs differ in code, environment or data, from what each recorded at its start: one line per
    aspect, e.g. "code differs: 3f2a1c0 (2 runs), 9e81b44-dirty (1 run)" (amst_core.provenance.differences: one
    rule for Compare and the sweep tables). Runs that recorded nothing are counted, not compared."""
    ids = list(dict.fromkeys(run))
    recorded = queries.provenances(s, [i for i in ids if RUN_ID.match(i)])
    if missing := [i for i in ids if i not in recorded]:
        raise ApiError(404, f"run {missing[0][:100]} not found", "run")
    return DifferencesOut(runs=ids, differences=differences([recorded[i] for i in ids]))


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
