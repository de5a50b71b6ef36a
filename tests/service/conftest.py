"""Fixtures of the service tests: the shared stacks (`stack`: API + one worker per backend and session) and a
fresh stack for a test that kills, stops or restarts one of its processes (`service`, over `backend_env`).

Both default to one backend (tests.kit.svc.DEFAULT_BACKEND: PostgreSQL + Redis when reachable, else the embedded
default). A test whose subject differs by backend runs on both with
`@pytest.mark.parametrize("stack" or "backend_env", BACKENDS, indirect=True)`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kit.svc import DEFAULT_BACKEND, Service, StackPool, stack_env


@pytest.fixture(scope="session")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackPool]:
    pool = StackPool(tmp_path_factory.mktemp("stacks"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def stack(request: pytest.FixtureRequest, stacks: StackPool) -> Iterator[Service]:
    """The session's running stack of the backend (the default one unless parametrized); whatever the test left
    queued or running is cancelled afterwards, so the next test finds the worker idle."""
    backend = getattr(request, "param", DEFAULT_BACKEND)
    svc = stacks.get(backend)
    print(f"\n[service backend] shared stack: {backend} at {svc.url}")
    yield svc
    svc.settle()


@pytest.fixture
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a stack of the test's own, its store copied from the template."""
    with stack_env(getattr(request, "param", DEFAULT_BACKEND), tmp_path) as env:
        yield env


@pytest.fixture
def service(backend_env: dict[str, str], tmp_path: Path) -> Iterator[Service]:
    """A stack of the test's own (nothing started yet), for a test that kills, stops or restarts its processes."""
    svc = Service(backend_env, tmp_path)
    try:
        yield svc
    finally:
        svc.stop()
