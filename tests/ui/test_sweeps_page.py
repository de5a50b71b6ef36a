"""The Sweeps page and its charts: progress, the results matrix with paired differences, a heatmap over two grid
keys, and curves grouped by cell with seeds as a band."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amst_core.store.models import RunStatus
from amst_core.vocab import vocabulary
from tests.kit.db import migrated_sqlite
from tests.kit.seeded import APP, seed_provenance, seed_run, seed_sweep
from tests.kit.svc import Service, service_env
from ui import charts
from ui.common import plain
from ui.series import RunSeries, group_bands
from ui.words import Words


@pytest.fixture(scope="module")
def sweep_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A sweep made with baseline {"method": "naive"} over a grid with a skip factor, which naive's cells show as
    "-": the baseline names its cell by some of its values, as a researcher writes it."""
    tmp = tmp_path_factory.mktemp("sweeps")
    url = f"sqlite:///{migrated_sqlite(tmp / 'amst.db')}"
    summary = {"test_at_best": {"helper": {"audio": 0.7, "visual": 0.5}}}
    runs = [(seed_run(url, method, 8, 8, RunStatus.succeeded, seed=seed, name=f"{method}-{seed}",
                      summary=summary), {"method": method, "skip.audio": 2 if method != "naive" else "-", "seed": seed})
            for method in ("naive", "amst_full") for seed in (0, 1)]
    sweep_id = seed_sweep(url, "study", {"method": ["naive", "amst_full"], "skip.audio": [2], "seed": [0, 1]}, runs,
                          {"method": "naive"})
    service = Service(service_env(tmp, DATABASE_URL=url, AMST_HEARTBEAT_S="3600"), tmp)
    service.start_api()
    try:
        yield service.url, sweep_id, url
    finally:
        service.stop()


def compact_table(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("| method |"))


def test_the_sweeps_page_preselects_the_sweeps_baseline_and_shows_the_compact_table(sweep_api, ui_env) -> None:
    from streamlit.testing.v1 import AppTest

    url, sweep_id, _ = sweep_api
    ui_env(url)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at = at.switch_page("views/sweeps.py").run()  # the newest sweep, this module's first
    assert not at.exception, at.exception
    assert at.query_params["sweep"] == [sweep_id] or at.query_params["sweep"] == sweep_id
    assert any("4 of 4 runs ended" in c.value for c in at.caption)
    baseline = next(s for s in at.selectbox if s.label == "Baseline cell")
    assert baseline.value == "method=naive, skip.audio=-"  # the sweep's own, found among the cells
    assert "baseline" not in at.query_params  # nothing rewrote the sweep's choice away
    assert not any("no succeeded run yet" in c.value for c in at.caption)  # it has results: paired below
    table = compact_table(at)
    header = table.splitlines()[0]
    assert header.startswith("| method | skip.audio | n | val acc | test acc | helper audio | helper visual |")
    assert header.endswith("| Δ val acc | p (val acc) | Δ test acc | p (test acc) |")
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    assert rows[0].startswith("| naive | - | 2 |") and "| baseline | - |" in rows[0]
    assert "±" in rows[1] and "**" in table and "† fewer than 5 paired seeds" in table
    assert [b.label for b in at.get("download_button")] == ["CSV (every number)", "Markdown", "LaTeX (booktabs)"]
    numbers = at.dataframe[1].value
    assert list(numbers["method"]) == ["naive", "amst_full"] and numbers["best_val_acc mean"].dtype == float
    assert list(numbers["best_val_acc significance"]) == ["baseline", "too few seeds"]
    baseline.set_value("(none)").run()
    assert "Δ" not in compact_table(at).splitlines()[0]
    assert at.query_params["baseline"] in ([""], "")


def test_a_baseline_in_the_url_names_its_cell_by_some_of_its_values(sweep_api, ui_env) -> None:
    from streamlit.testing.v1 import AppTest

    url, sweep_id, _ = sweep_api
    ui_env(url)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.query_params["sweep"], at.query_params["baseline"] = sweep_id, "method=amst_full"
    at = at.switch_page("views/sweeps.py").run()
    assert not at.exception, at.exception
    assert next(s for s in at.selectbox if s.label == "Baseline cell").value == "method=amst_full, skip.audio=2"
    assert at.query_params["baseline"] in (["method=amst_full"], "method=amst_full")
    assert "baseline cell (method=amst_full, skip.audio=2)" in compact_table(at)


def test_a_baseline_without_results_yet_is_said_not_left_to_guess(sweep_api, ui_env) -> None:
    from streamlit.testing.v1 import AppTest

    url, _, db_url = sweep_api
    finished = seed_run(db_url, "amst_full", 8, 8, RunStatus.succeeded, seed=0)
    waiting = seed_run(db_url, "naive", 0, 8, RunStatus.queued, seed=0)
    sweep_id = seed_sweep(db_url, "waiting", {"method": ["naive", "amst_full"], "seed": [0]},
                          [(finished, {"method": "amst_full", "seed": 0}), (waiting, {"method": "naive", "seed": 0})],
                          {"method": "naive"})
    ui_env(url)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.query_params["sweep"] = sweep_id
    at = at.switch_page("views/sweeps.py").run()
    assert not at.exception, at.exception
    assert next(s for s in at.selectbox if s.label == "Baseline cell").value == "method=naive"
    assert any("The baseline cell (method=naive) has no succeeded run yet" in c.value for c in at.caption)


def run_series(run_id: str, values: list[float]) -> RunSeries:
    rs = RunSeries(run_id)
    rs.points[("val", "branch", "audio", "acc")] = dict(enumerate(values))
    rs.points[("val", "fused", None, "acc")] = dict(enumerate(values))
    return rs


def test_group_bands_are_the_mean_and_one_standard_deviation_of_each_group() -> None:
    runs = [run_series("a", [0.2, 0.4]), run_series("b", [0.4, 0.8]), run_series("c", [0.9])]
    bands = group_bands(runs, {"x": ["a", "b"], "y": ["c"]}, "val", "branch", "acc", Words.of(vocabulary()))
    assert list(bands) == ["audio", "fused"]
    x = bands["audio"]["x"]
    assert x.epochs == [0, 1] and x.mean == pytest.approx([0.3, 0.6])
    assert x.high[1] - x.mean[1] == pytest.approx(0.2828427, abs=1e-6) and x.runs == 2
    assert bands["audio"]["y"].low == bands["audio"]["y"].high == [0.9]  # one run: no width
    fig = charts.band_figure(bands, "val", "acc", "fused")
    assert len(fig.data) == 8  # a band and a mean line per group per panel
    assert [t.name for t in fig.data if t.showlegend] == ["x (n=2)", "y (n=1)"]
    assert fig.layout.xaxis.dtick == 1


def test_the_heatmap_averages_a_measure_over_two_grid_keys() -> None:
    rows = [{"cell": {"method": m, "skip.audio": k}, "stats": {"acc": {"mean": v, "std": None, "count": 3}}}
            for m, k, v in (("alt", 1, 0.8), ("alt", "auto", 0.9), ("full", 1, 0.85), ("full", 5, 0.95))]
    fig = charts.heatmap_figure(rows, "skip.audio", "method", "acc")
    heat = fig.data[0]
    assert list(heat.x) == ["1", "5", "auto"] and list(heat.y) == ["alt", "full"]
    assert heat.z[0] == (0.8, None, 0.9) or list(heat.z[0]) == [0.8, None, 0.9]
    assert heat.text[1][1] == "0.950 (n=3)"


def test_a_sweep_whose_runs_ran_different_code_says_so(sweep_api, ui_env) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session
    from streamlit.testing.v1 import AppTest

    from amst_core.store.db import get_engine
    from amst_core.store.models import Run

    url, sweep_id, db = sweep_api
    with Session(get_engine(db)) as s:
        ids = list(s.scalars(select(Run.id).where(Run.sweep_id == sweep_id).order_by(Run.name)))
    ui_env(url)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.query_params["sweep"] = sweep_id
    at = at.switch_page("views/sweeps.py").run()
    assert not at.exception and "did not all run the same" not in "".join(w.value for w in at.warning)
    for i, run_id in enumerate(ids):  # one of the four trained on a modified tree
        seed_provenance(db, run_id, "3f2a1c0", dirty=i == 0)
    at = at.run()
    warning = "\n".join(w.value for w in at.warning)
    assert "did not all run the same code, environment or data" in warning
    assert plain("3f2a1c0-dirty (1 run)") in warning and plain("3f2a1c0 (3 runs)") in warning
