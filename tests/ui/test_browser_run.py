"""The Run page in a real headless Chromium, where only a browser can tell: what a live page shows between two
refreshes (its first epoch's counters), and whether a new epoch blanks the charts for a frame.

Against the `still` stack (API and dashboard, no worker): the test writes heartbeats and points itself.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.kit.browser import TALL, browser_page, chromium_path, open_drawn, wait_for_app
from tests.kit.seeded import epoch_points, seed_run

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (make test installs "
                                "Debian's chromium when it runs as root)")

# Counts the moments (each batch of DOM mutations) at which fewer charts show a picture than when it started
# watching: a chart emptied and filled again, or removed by a rerun and mounted afresh, is one blank moment.
# A picture: an element's Plotly SVG, laid out and visible.
WATCH_BLANKS = """() => {
  const pictures = () => [...document.querySelectorAll('[data-testid="stElementContainer"]')].filter(c =>
    c.getClientRects().length && [...c.querySelectorAll('.main-svg')].some(svg =>
      svg.getClientRects().length && getComputedStyle(svg).visibility === 'visible')).length;
  const want = pictures();
  window.blanks = 0;
  window.watcher = new MutationObserver(() => { if (pictures() < want) window.blanks += 1; });
  window.watcher.observe(document.body, {childList: true, subtree: true, attributes: true});
  return want;
}"""

# The last epoch the first figure (the curves) draws.
LAST_EPOCH_DRAWN = """() => Math.max(...document.querySelector('.js-plotly-plot').data
  .flatMap(t => (t.x || []).filter(x => typeof x === 'number')))"""


def write_epoch(url: str, run_id: str, epoch: int) -> None:
    """One epoch's points, as the worker's store writer writes them."""
    from amst_core.store.writer import DbSink

    sink = DbSink(run_id, url)
    sink.begin(epoch)
    points = epoch_points("amst_alt", epoch, random.Random(epoch))
    for p in points:
        p.attempt = 1
    sink.write(points)


def test_a_new_epoch_redraws_the_charts_in_place_without_a_blank_frame(still) -> None:
    _, ui, runs, url = still
    with browser_page(**TALL) as page:
        open_drawn(page, f"{ui}/run?run={runs['live'].id}", 2)
        assert page.evaluate(WATCH_BLANKS) >= 2
        before = page.evaluate(LAST_EPOCH_DRAWN)
        for epoch, shown in ((6, "7/30"), (7, "8/30")):
            write_epoch(url, runs["live"].id, epoch)
            page.wait_for_function(f"() => document.body.innerText.includes('{shown}')", timeout=30_000)
            wait_for_app(page)
        page.wait_for_timeout(1500)  # the redraw's last elements
        assert page.evaluate("document.querySelectorAll('.js-plotly-plot').length") >= 2
        assert page.evaluate("window.blanks") == 0
        assert page.evaluate(LAST_EPOCH_DRAWN) == before + 2  # the same figures, drawn again with the new points


def heartbeat(url: str, run_id: str, batch: int) -> None:
    from sqlalchemy.orm import Session

    from amst_core.store import lifecycle
    from amst_core.store.db import get_engine

    live = {"epoch": 0, "split": "train", "batch": batch, "batches": 400, "samples_per_s": 213.0,
            "updated_at": time.time()}
    with Session(get_engine(url)) as s, s.begin():
        lifecycle.heartbeat(s, run_id, "seed-worker", live)


def test_the_first_epochs_box_and_bar_move_with_the_live_counter(still) -> None:
    """Inside the first epoch, the "Waiting for the first epoch" box, its bar and the header read one source: a
    heartbeat further on moves them all, and the header gives an ETA from the rate."""
    from amst_core.store.models import RunStatus

    _, ui, _, url = still
    run = seed_run(url, "amst_full", 0, 5, RunStatus.running, name="first-epoch-live", seed=2)
    heartbeat(url, run.id, 120)
    with browser_page(**TALL) as page:
        page.goto(f"{ui}/run?run={run.id}")
        wait_for_app(page)
        page.get_by_text("batch 120/400").first.wait_for(timeout=30_000)
        heartbeat(url, run.id, 300)
        page.wait_for_function("() => document.body.innerText.includes('batch 300/400')", timeout=30_000)
        page.wait_for_timeout(2500)  # two more refreshes of 1 s
        body = page.inner_text("body")
        assert "batch 120/400" not in body, body  # no part of the page stayed at the page load's value
        bar = page.locator("[data-testid='stProgress'] [role='progressbar']").last.get_attribute("aria-valuenow")
        assert bar is not None and float(bar) == pytest.approx(75, abs=1), bar
        assert "ETA —" not in body and "ETA ~" in body, body
