"""The FastAPI app. Start it with `uvicorn.run("api.main:create_app", factory=True, ...)`.

Building the app touches neither the database nor the broker; the lifespan checks that the database answers and
runs the reaper: lost runs are re-queued and queued runs whose broker message may be lost are dispatched again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy import inspect
from sqlalchemy.orm import sessionmaker

from amst_core import artifacts
from amst_core.catalog import DATASETS
from amst_core.config import RunConfig
from amst_core.settings import Settings
from amst_core.store import lifecycle, reaper
from amst_core.store.db import get_engine
from api.dispatch import Dispatcher
from api.errors import install_error_handlers
from api.guards import BodyLimit, HeadAsGet
from api.routes import logs, meta, runs, sweeps
from api.routes.meta import package_version
from api.schemas import SCHEMA_REF
from api.settings import api_settings

log = logging.getLogger("amst.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = api_settings(settings)
    app = FastAPI(title="AMST Studio", version=package_version(), lifespan=lifespan,
                  description="Submit, watch and compare AMST training runs. Mutating routes need "
                              "`Authorization: Bearer <AMST_API_TOKEN>` when the server sets a token.")
    app.state.settings = settings
    app.state.engine = get_engine(settings.db_url)  # lazy: connects on first use
    app.state.sessions = sessionmaker(app.state.engine, expire_on_commit=False)
    app.state.dispatcher = Dispatcher(settings)  # tests replace it with a fake
    app.state.reaper_clock = lifecycle.ReaperClock(settings.lost_after_s)
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.body_bytes)
    app.add_middleware(HeadAsGet)
    app.include_router(runs.router)
    app.include_router(logs.router)
    app.include_router(sweeps.router)
    app.include_router(meta.router)
    app.openapi = lambda: custom_openapi(app)  # type: ignore[method-assign]
    return app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    try:  # an unroutable database host must not hold up the start for minutes
        await asyncio.wait_for(asyncio.to_thread(check_database, app), timeout=10)
    except TimeoutError:
        log.error("database %s did not answer within 10 s", app.state.engine.url.render_as_string())
    reaper = asyncio.create_task(reaper_loop(app), name="amst-reaper")
    try:
        yield
    finally:
        reaper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reaper


def check_database(app: FastAPI) -> None:
    """Say at startup what is wrong with the database, but keep serving: /health reports it. (`amst serve api`
    first waits AMST_SCHEMA_WAIT_S for the schema; an app started otherwise, e.g. in tests, may find none.)"""
    try:
        if not inspect(app.state.engine).has_table("runs"):
            log.warning("the database has no run store yet: run `amst db upgrade`")
    except Exception as err:
        log.error("database %s is not reachable: %s", app.state.engine.url.render_as_string(), err)


async def reaper_loop(app: FastAPI) -> None:
    """Every AMST_REAPER_S: lost and stalled runs; every AMST_GC_INTERVAL_S: the artifacts retention policy."""
    settings = app.state.settings
    next_gc = time.monotonic() + min(settings.gc_interval_s, 60.0)  # soon after a start, then at the interval
    while True:
        await asyncio.sleep(settings.reaper_s)
        try:
            await asyncio.to_thread(reap_once, app)
            if settings.gc_interval_s > 0 and time.monotonic() >= next_gc:
                next_gc = time.monotonic() + settings.gc_interval_s
                await asyncio.to_thread(collect_garbage, app)
        except Exception as err:  # the loop must outlive a database outage, and not judge heartbeats right after
            app.state.reaper_clock.failed()
            log.warning("reaper pass failed: %s", type(err).__name__)


def collect_garbage(app: FastAPI) -> None:
    with app.state.sessions() as s:
        report = artifacts.collect(s, app.state.settings)
    if report.removed:
        log.info("retention: removed %d files, %.1f MB", len(report.removed), report.freed_bytes / 1e6)


def reap_once(app: FastAPI) -> list[str]:
    """One reaper pass (amst_core.store.reaper, which every worker runs too); returns the ids of the runs
    dispatched again: those re-queued after their worker was lost, and those queued for long on a queue whose live
    worker sits idle (their broker message was lost)."""
    with app.state.sessions() as s:
        return reaper.reap_and_release(s, app.state.settings, app.state.dispatcher.send,
                                       app.state.reaper_clock).resent


def custom_openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, plus RunConfig: POST /runs reads its body itself (to answer malformed JSON and
    invalid fields with our JSON errors), so FastAPI cannot see the model. Bearer auth is declared only when the
    server has a token; without one, mutating operations declare the JSON content type they require."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        config = RunConfig.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {})
        components.setdefault("schemas", {}).update(config.pop("$defs", {}))
        components["schemas"]["RunConfig"] = config
        defaults_of_the_dataset(components["schemas"])
        typed_configs(schema["components"]["schemas"])
        for operations in schema["paths"].values():
            for operation in operations.values():
                for parameter in operation.get("parameters", []):
                    parameter["schema"] = not_null(parameter["schema"])
        if not app.state.settings.api_token:
            components.pop("securitySchemes", None)
            for operations in schema["paths"].values():
                for method, operation in operations.items():
                    operation.pop("security", None)
                    if method == "post":  # api.guards: a POST must be JSON, so it always has a JSON body
                        operation.setdefault("requestBody", {})["required"] = True
        app.openapi_schema = schema
    return app.openapi_schema


def defaults_of_the_dataset(schemas: dict[str, Any]) -> None:
    """A field whose default a dataset sets (avdigits: mel_bins 13, image_size 28) states no default: a generated
    client sends every default its schema states, and the reference's (mel_bins 128) is a 422 on avdigits. Left
    out, such a field takes the dataset's own value (RunConfig's dataset defaults), which its description says."""
    run_config = schemas["RunConfig"]["properties"]
    for section in sorted({key for info in DATASETS.values() for key in info.defaults}):
        run_config[section].pop("default", None)  # the whole section's defaults, the reference's
        model = RunConfig.model_fields[section].annotation
        properties = schemas[model.__name__]["properties"]  # type: ignore[union-attr]
        for name in sorted({key for info in DATASETS.values() for key in info.defaults.get(section, {})}):
            field = properties[name]
            usual = field.pop("default", None)
            field["description"] = (f"{field.get('description', '').rstrip('.')}. " if field.get("description")
                                    else "") + f"Left out: the dataset's own (GET /datasets: defaults), else {usual}"


def typed_configs(node: Any) -> Any:
    """Every schema marked as a stored config (api.schemas.StoredConfig) becomes a reference to RunConfig."""
    if isinstance(node, dict):
        if SCHEMA_REF in node:
            return {"$ref": f"#/components/schemas/{node[SCHEMA_REF]}"}
        for key, value in node.items():
            node[key] = typed_configs(value)
    elif isinstance(node, list):
        node[:] = [typed_configs(item) for item in node]
    return node


def not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter is absent or has a value; `X | None` in Python is never a JSON null on the wire."""
    options = [o for o in schema.get("anyOf", []) if o != {"type": "null"}]
    if len(options) != 1:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}


@lru_cache(maxsize=1)
def _default_app() -> FastAPI:
    return create_app()


def __getattr__(name: str) -> Any:
    """`api.main:app` also works (uvicorn without --factory): the app is built on first access, not at import."""
    if name == "app":
        return _default_app()
    raise AttributeError(name)
