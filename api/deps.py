"""What routes share: the app's settings, a database session per request, the dispatcher, and the checks that
turn raw query values into safe ones (so no input can reach the database in a form it rejects with a 500)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from amst_core.store import queries
from amst_core.store.models import Run
from api.dispatch import RunDispatcher
from api.errors import ApiError
from api.settings import ApiSettings

RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_FILTER_VALUES = 50  # far above any real use; keeps IN lists under SQLite's bound-parameter limit
MAX_TEXT = 200  # the widest text column


def app_settings(request: Request) -> ApiSettings:
    return request.app.state.settings


def dispatcher(request: Request) -> RunDispatcher:
    return request.app.state.dispatcher


def db_session(request: Request) -> Iterator[Session]:
    factory: sessionmaker[Session] = request.app.state.sessions
    with factory() as s:
        yield s


SettingsDep = Annotated[ApiSettings, Depends(app_settings)]
SessionDep = Annotated[Session, Depends(db_session)]
DispatcherDep = Annotated[RunDispatcher, Depends(dispatcher)]


def check_text(value: str, field: str, max_len: int = MAX_TEXT) -> str:
    """Text the database can store and compare: no NUL (PostgreSQL refuses it), valid UTF-8, bounded length."""
    if "\x00" in value:
        raise ApiError(422, f"{field}: must not contain NUL characters", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, f"{field}: is not valid Unicode text", field) from None
    if len(value) > max_len:
        raise ApiError(422, f"{field}: at most {max_len} characters", field)
    return value


def find_run(s: Session, run_id: str, for_update: bool = False) -> Run:
    """The run or a 404; an id that cannot be a run id is simply not found (and never reaches the database)."""
    run = queries.get_run(s, run_id, for_update) if RUN_ID.match(run_id) else None
    if run is None:
        raise ApiError(404, f"run {run_id[:100]} not found", "run_id")
    return run
