"""The Sweeps page in a real browser: what only layout can tell. The compact results table keeps its difference
and p-value columns in view at 1400 px, with no horizontal scrolling (finding 8 of issue 23)."""

from __future__ import annotations

import pytest

from amst_core.store.models import RunStatus
from tests.kit.browser import SHOTS, TALL, browser_page, chromium_path, wait_for_app
from tests.kit.seeded import seed_run, seed_sweep

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no Chromium")

# Every measure a two-modality AMST-FULL run reports: the widest compact table a usual sweep makes.
SUMMARY = {"test_at_best": {"alt_helper": {"audio": 0.71, "visual": 0.52},
                            "alt_branch": {"audio": 0.64, "visual": 0.41}}}
SKIPPED = "-"  # naive's value of a skip factor in a sweep's cells
GRID = {"method": ["naive", "amst_alt", "amst_full"], "skip.audio": [2, 3], "seed": [0, 1]}

# The table and every element it sits in up to its container, where narrower than its content (what would scroll
# sideways), and the right edge of the last column's heading against the window's.
LAYOUT = """() => {
    const box = document.querySelector('.st-key-compact-table');
    const table = box.querySelector('table');
    const heads = [...table.querySelectorAll('th')];
    const scrolled = [];
    for (let e = table; e && e !== box.parentElement; e = e.parentElement) {
        if (e.scrollWidth > e.clientWidth + 1) scrolled.push(e.tagName + '.' + e.className);
    }
    return {heads: heads.map(h => h.innerText.trim()), right: heads[heads.length - 1].getBoundingClientRect().right,
            window: window.innerWidth, scrolled};
}"""


def wide_sweep(db_url: str) -> str:
    runs = []
    for method in GRID["method"]:
        for skip in ([SKIPPED] if method == "naive" else GRID["skip.audio"]):
            runs += [(seed_run(db_url, method, 4, 4, RunStatus.succeeded, seed=seed, dataset="avdigits",
                               summary=SUMMARY), {"method": method, "skip.audio": skip, "seed": seed})
                     for seed in GRID["seed"]]
    return seed_sweep(db_url, "avdigits-skip", GRID, runs, {"method": "naive"})


def test_the_compact_table_shows_difference_and_p_value_without_scrolling_at_1400_px(still) -> None:
    _, ui, _, db_url = still
    sweep_id = wide_sweep(db_url)
    with browser_page(TALL["width"], TALL["height"]) as page:
        page.goto(f"{ui}/sweeps?sweep={sweep_id}")
        wait_for_app(page)
        try:
            page.wait_for_selector(".st-key-compact-table table", timeout=120_000)
        except Exception as err:  # say what the page showed instead
            raise AssertionError(page.inner_text("body")[:3000]) from err
        layout = page.evaluate(LAYOUT)
        page.screenshot(path=str(SHOTS / "sweeps.png"), full_page=True)
    assert layout["heads"][-4:] == ["Δ val acc", "p (val acc)", "Δ test acc", "p (test acc)"], layout["heads"]
    assert "branch visual" in layout["heads"]  # every measure is there, not cut to make room
    assert layout["scrolled"] == [] and layout["right"] <= layout["window"], layout
