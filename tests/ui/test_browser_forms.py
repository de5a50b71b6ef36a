"""The Runs table and the New run form in a real browser (issue 23, findings 7 and 9): what only a browser can
tell, the table's columns against the window's width and the font, rows ticked and opened in Compare, and what the
learning-rate field shows. Against `still` (API and dashboard, no worker: the runs stay as seeded)."""

from __future__ import annotations

import time

import pytest

from tests.kit.browser import browser_page, chromium_path, wait_for_app
from ui.runstable import width

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Chromium (apt install chromium)")

LIVE = {"epoch": 6, "split": "train", "batch": 17, "batches": 38, "samples_per_s": 213.0}
ROW_MARKER_PX = 35  # the grid's row-selection column
ROW_PX = 35  # the height of the grid's header and of each row
PADDING_PX = 16  # the grid's cell padding, both sides

GRID = """() => { const s = document.querySelector('[data-testid=stDataFrame] .dvn-scroller');
  const box = document.querySelector('[data-testid=stDataFrame]').getBoundingClientRect();
  const headers = [...document.querySelectorAll('[data-testid=stDataFrame] [role=columnheader]')];
  const rows = [...document.querySelectorAll('[data-testid=stDataFrame] [role=row]')].slice(1)
    .map(r => [...r.querySelectorAll('[role=gridcell]')].map(c => c.textContent));
  return {scroll: s.scrollWidth, client: s.clientWidth, left: box.left, top: box.top,
          headers: headers.map(h => h.textContent), rows}; }"""
# Text as the grid draws it: the dashboard's font at 14 px (the status cell bold).
MEASURE = """(items) => { const c = document.createElement('canvas').getContext('2d');
  const family = getComputedStyle(document.querySelector('[data-testid=stDataFrame]')).fontFamily;
  return items.map(([text, weight]) => { c.font = `${weight} 14px ${family}`; return c.measureText(text).width; }); }"""


def drawn(column: str, text: str) -> str:
    """A cell's text as the grid draws it: accuracies to three places, progress as a percentage."""
    if column in ("val acc", "test acc") and text:
        return f"{float(text):.3f}"
    if column == "progress" and text:
        return f"{float(text):.0%}"
    return text


def going_live(url: str, run_id: str) -> None:
    """The silent worker's run says where it is inside its seventh epoch."""
    from sqlalchemy.orm import Session

    from amst_core.store import lifecycle
    from amst_core.store.db import get_engine

    with Session(get_engine(url)) as s, s.begin():
        lifecycle.heartbeat(s, run_id, "seed-worker", {**LIVE, "updated_at": time.time()})


def test_the_runs_table_fits_1400_px_with_nothing_cut_and_ticked_runs_open_in_compare(still) -> None:
    """At 1400 px best val acc, progress and "now" were off-screen and "now" read "epoch 7:"; no runs could be
    ticked to compare."""
    _, ui, runs, url = still
    going_live(url, runs["live"].id)
    with browser_page(1400, 1000) as page:
        page.goto(f"{ui}/runs")
        wait_for_app(page)
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stDataFrame] [role=gridcell]')]"
                               ".some(c => c.textContent.startsWith('epoch 7: train 17/38'))", timeout=30_000)
        grid = page.evaluate(GRID)
        assert grid["scroll"] <= grid["client"], grid  # no column beyond the window's edge
        assert {"val acc", "progress", "now"} <= set(grid["headers"]), grid["headers"]
        assert ROW_MARKER_PX + sum(width(h) for h in grid["headers"]) <= grid["client"], grid["headers"]
        texts = [(h, h, 400) for h in grid["headers"]] + [
            (h, drawn(h, cell), 600 if h == "status" else 400) for row in grid["rows"]
            for h, cell in zip(grid["headers"], row, strict=True)]
        measured = page.evaluate(MEASURE, [[text, weight] for _, text, weight in texts])
        cut = [(h, text, round(px)) for (h, text, _), px in zip(texts, measured, strict=True)
               if px + PADDING_PX > width(h)]
        assert not cut, cut

        names = [row[grid["headers"].index("name")] for row in grid["rows"]]
        ticked = [names.index("amst-full-s0"), names.index("naive-s0")]
        for row in ticked:  # the checkbox in the row-selection column
            page.mouse.click(grid["left"] + ROW_MARKER_PX / 2, grid["top"] + ROW_PX * (row + 1.5))
            wait_for_app(page)
        page.get_by_text("Compare these 2 runs").click()
        page.wait_for_url("**/compare?runs=*", timeout=30_000)
        chosen = page.url.split("runs=")[1].split("&")[0].replace("%2C", ",").split(",")
        assert set(chosen) == {runs["full"].id, runs["base"].id}, page.url


def test_the_learning_rate_field_shows_a_small_rate_as_a_number(still) -> None:
    """3e-6 was shown as 0.00000 (and sent correctly)."""
    _, ui, _, _ = still
    with browser_page(1400, 1600) as page:
        page.goto(f"{ui}/new")
        wait_for_app(page)
        field = page.get_by_role("spinbutton", name="Learning rate")
        field.wait_for(timeout=30_000)
        assert float(field.input_value()) == 0.01  # avdigits' recipe
        field.fill("0.000003")
        field.press("Tab")
        page.wait_for_timeout(500)
        shown = field.input_value()
        assert float(shown) == pytest.approx(3e-6), shown  # "%.5f" showed 0.00000
