"""The Compare page in Streamlit's AppTest, against a real API process with seeded runs: what its figures plot
(read from the chart's Plotly spec) and what it says beside them."""

from __future__ import annotations

import json
from itertools import accumulate

import httpx
import pytest

from amst_core.store.models import RunStatus
from tests.kit.seeded import seed_provenance, seed_run
from ui.common import plain


def figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def compare(app, **params: str):
    app.switch_page("views/compare.py")
    app.query_params.update(params)
    at = app.run()
    assert not at.exception, texts(at.exception)
    return at


def line(figure: dict, name: str) -> dict:
    """The first trace whose legend name starts with `name` (run labels end with a short id)."""
    return next(t for t in figure["data"] if t.get("name", "").startswith(name))


def epoch_seconds(api: str, run_id: str) -> list[float]:
    """The run's seconds since its start at the end of each epoch, from its epoch times as the API serves them."""
    body = httpx.get(f"{api}/runs/{run_id}/metrics", params={"name": "epoch_time"}).json()
    return list(accumulate(body["series"][0]["values"]))


def test_the_wall_time_axis_plots_seconds_not_epochs(app, seeded_api) -> None:
    """Finding 1: the page fetched only the metric it draws, had no epoch times, and drew epochs 1..30 under
    "wall time (s)"."""
    runs = seeded_api.runs
    at = compare(app, runs=f"{runs['full'].id},{runs['base'].id}", x="wall")
    overlay = figures(at)[0]
    assert overlay["layout"]["xaxis"]["title"]["text"] == "wall time (s)"
    full = line(overlay, "full-s0")
    assert full["x"] == pytest.approx(epoch_seconds(seeded_api.url, runs["full"].id), abs=1e-3)
    assert full["x"][-1] > 30  # seconds (2 to 3 a seeded epoch), not the 30th epoch


def test_a_run_keeps_its_colour_when_runs_are_grouped(app, seeded_api) -> None:
    """Finding 5: groups were coloured by their sorted labels, so the naive run (first in the link, pink) turned
    purple once grouped by method."""
    runs = seeded_api.runs
    at = compare(app, runs=f"{runs['base'].id},{runs['full'].id}")
    alone = figures(at)[0]
    at = next(m for m in at.multiselect if m.label == "Group by (config keys)").set_value(["method"]).run()
    grouped = figures(at)[0]
    assert line(grouped, "method=naive")["line"]["color"] == line(alone, "base-s0")["line"]["color"]
    assert line(grouped, "method=amst_full")["line"]["color"] == line(alone, "full-s0")["line"]["color"]


def test_grouping_keeps_the_wall_time_axis_and_the_log_scale(app, seeded_api) -> None:
    """Finding 5: the grouped view dropped both silently (epochs on x, a linear loss axis)."""
    runs = seeded_api.runs
    at = compare(app, runs=f"{runs['base'].id},{runs['full'].id}", group="method", metric="loss", x="wall", log="1")
    grouped = figures(at)[0]
    assert grouped["layout"]["yaxis"]["type"] == "log"
    assert "wall time" in grouped["layout"]["xaxis"]["title"]["text"]
    naive = line(grouped, "method=naive")
    assert naive["x"] == pytest.approx(epoch_seconds(seeded_api.url, runs["base"].id), abs=1e-3)
    assert "mean wall time" in texts(at.caption)


def test_runs_drawn_on_top_of_each_other_are_named(app, seeded_api) -> None:
    """Finding 5: a run with the same seed and config as another is hidden exactly under it; the page says so."""
    runs = seeded_api.runs
    twin = seed_run(seeded_api.db, "naive", 30, 30, RunStatus.succeeded, name="base-twin")
    at = compare(app, runs=f"{runs['base'].id},{twin.id},{runs['full'].id}")
    said = texts(at.caption).replace("\\", "")
    assert "Drawn exactly on top of each other (identical values): base-s0" in said and "base-twin" in said


def test_runs_that_ran_other_code_or_environments_are_said_to_differ(app, seeded_api) -> None:
    """The API's one rule (GET /differences): one line per aspect, naming each value and its runs."""
    runs = [seed_run(seeded_api.db, "naive", 3, 3, RunStatus.succeeded, name=f"traced-{i}", seed=40 + i)
            for i in range(3)]
    seed_provenance(seeded_api.db, runs[0].id, "3f2a1c0")
    seed_provenance(seeded_api.db, runs[1].id, "3f2a1c0")
    seed_provenance(seeded_api.db, runs[2].id, "9e81b44", dirty=True, torch="2.8.0")
    at = compare(app, runs=",".join(r.id for r in runs))
    warning = texts(at.warning)
    assert "These runs did not all run the same code, environment or data" in warning
    assert plain("code differs: 3f2a1c0 (2 runs), 9e81b44-dirty (1 run)") in warning
    assert plain("environment differs: torch 2.9.0, seed CPU (2 runs), torch 2.8.0, seed CPU (1 run)") in warning
