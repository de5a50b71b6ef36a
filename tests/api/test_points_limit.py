"""POST /runs refuses a run that would write more metric points than AMST_MAX_POINTS_PER_RUN (422 naming
`epochs`), before anything is stored or queued; the estimate is pinned against real runs in
tests/core/test_points_estimate.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from amst_core.config import load_config
from amst_core.limits import Limits, run_points
from api.main import create_app
from api.settings import ApiSettings
from tests.kit.api import FakeDispatcher

BODY = {"method": "amst_full", "dataset": {"name": "synthetic"}, "epochs": 50, "device": "cpu"}
LIMIT = run_points(load_config(base=BODY))  # what that run writes at most


@pytest.fixture
def capped(make_settings: Callable[..., ApiSettings], dispatcher: FakeDispatcher) -> Iterator[TestClient]:
    app = create_app(make_settings(limits=Limits(points_per_run=LIMIT)))
    app.state.dispatcher = dispatcher
    with TestClient(app, headers={"Content-Type": "application/json"}) as c:
        yield c


def test_a_run_over_the_points_limit_is_a_422_naming_epochs(capped: TestClient, dispatcher: FakeDispatcher) -> None:
    r = capped.post("/runs", json={**BODY, "epochs": 51})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == "epochs" and "AMST_MAX_POINTS_PER_RUN" in error["message"]
    assert capped.get("/runs").json()["items"] == []
    assert capped.post("/runs", json=BODY).status_code == 201  # at the limit: accepted
