"""The Sweeps page and its charts: progress, the results matrix with paired differences, a heatmap over two grid
keys, and curves grouped by cell with seeds as a band."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amst_core.store.models import RunStatus
from amst_core.vocab import vocabulary
from tests.kit.db import migrated_sqlite
from tests.kit.seeded import APP, seed_run, seed_sweep
from tests.kit.svc import Service, service_env
from ui import charts
from ui.series import RunSeries, group_bands
from ui.words import Words


@pytest.fixture(scope="module")
def sweep_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("sweeps")
    url = f"sqlite:///{migrated_sqlite(tmp / 'amst.db')}"
    summary = {"test_at_best": {"helper": {"audio": 0.7, "visual": 0.5}}}
    runs = [(seed_run(url, method, 8, 8, RunStatus.succeeded, seed=seed, name=f"{method}-{seed}",
                      summary=summary), {"method": method, "seed": seed})
            for method in ("naive", "amst_full") for seed in (0, 1)]
    sweep_id = seed_sweep(url, "study", {"method": ["naive", "amst_full"], "seed": [0, 1]}, runs,
                          {"method": "naive"})
    service = Service(service_env(tmp, DATABASE_URL=url, AMST_HEARTBEAT_S="3600"), tmp)
    service.start_api()
    try:
        yield service.url, sweep_id
    finally:
        service.stop()


def test_the_sweeps_page_shows_progress_matrix_and_grouped_curves(sweep_api, ui_env) -> None:
    from streamlit.testing.v1 import AppTest

    url, sweep_id = sweep_api
    ui_env(url)
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at = at.switch_page("views/sweeps.py").run()
    assert not at.exception, at.exception
    assert at.query_params["sweep"] == [sweep_id] or at.query_params["sweep"] == sweep_id
    assert any("4 of 4 runs ended" in c.value for c in at.caption)
    matrix = at.dataframe[1].value
    assert list(matrix["method"]) == ["naive", "amst_full"]
    assert "best_val_acc − baseline" in matrix.columns and matrix["best_val_acc"].str.contains("n=2").all()
    assert "(too few seeds)" in matrix["best_val_acc p (t / Wilcoxon)"].iloc[1]
    baseline = next(s for s in at.selectbox if s.label == "Baseline cell")
    assert baseline.value == "method=naive"
    baseline.set_value("(none)").run()
    assert "best_val_acc − baseline" not in at.dataframe[1].value.columns
    assert at.query_params["baseline"] in ([""], "")


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
