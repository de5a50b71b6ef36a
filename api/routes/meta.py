"""What the server offers: methods, datasets, workers, health."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from amst_core.catalog import DATASETS, METHODS
from amst_core.store import queries
from amst_core.store.models import utcnow
from api.deps import SessionDep, SettingsDep
from api.schemas import DatasetOut, HealthOut, MethodOut, WorkerOut

router = APIRouter(tags=["meta"])


def package_version() -> str:
    try:
        return version("amst-studio")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("/methods", response_model=list[MethodOut])
def list_methods() -> list[MethodOut]:
    """Training methods, with the JSON schema and defaults of their `method_params`."""
    return [MethodOut(name=m.name, summary=m.summary, default_fusion=m.default_fusion, fusion_fixed=m.fusion_fixed,
                      uses_skip=m.uses_skip, params_schema=m.params.model_json_schema(),
                      params_defaults=m.params().model_dump(mode="json"))
            for m in METHODS.values()]


@router.get("/datasets", response_model=list[DatasetOut])
def list_datasets(settings: SettingsDep) -> list[DatasetOut]:
    """Datasets, and whether each is prepared under AMST_DATA_ROOT."""
    return [DatasetOut(name=d.name, summary=d.summary, modalities=list(d.modalities), classes=list(d.classes),
                       splits=list(d.splits), prepared=d.name == "synthetic" or (Path(settings.data_root) / d.name)
                       .is_dir(), prepare_command=d.prepare_command, suggested=d.suggested)
            for d in DATASETS.values()]


@router.get("/workers", response_model=list[WorkerOut])
def list_workers(s: SessionDep, settings: SettingsDep) -> list[WorkerOut]:
    """Workers that registered, most recent heartbeat first; `alive` means a heartbeat within the lost limit."""
    now = utcnow()
    return [WorkerOut.of(w, now, settings.lost_after_s) for w in queries.workers(s)]


def database_reachable(request: Request) -> bool:
    try:
        with request.app.state.sessions() as s:
            s.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(request: Request, settings: SettingsDep) -> HealthOut | JSONResponse:
    """ok (200) when the database answers, unavailable (503) when it does not."""
    reachable = database_reachable(request)
    body = HealthOut(status="ok" if reachable else "unavailable", database_reachable=reachable,
                     database=request.app.state.engine.dialect.name, broker=urlsplit(settings.celery_broker).scheme,
                     version=package_version())
    return body if reachable else JSONResponse(body.model_dump(), status_code=503)
