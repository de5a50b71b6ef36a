"""End to end in a real headless Chromium: submit a run through the form, watch it train, screenshot every page.

The whole product runs as processes (API, worker, dashboard on the embedded default); the screenshots land in
Doc/img/ for the README and the docs.
"""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.kit.browser import PHONE, SHOTS, TALL, browser_page, chromium_path, legend, open_drawn, wait_for_app
from tests.kit.seeded import epoch_points
from tests.kit.svc import wait_until

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (make test installs "
                                "Debian's chromium when it runs as root)")


def test_submit_watch_and_screenshot_every_page(stack, tmp_path: Path) -> None:
    service, ui, seeded = stack
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser_page(**TALL) as page:
        page.goto(f"{ui}/new")
        wait_for_app(page)
        page.get_by_label("Name").fill("e2e-amst-full")
        page.get_by_role("spinbutton", name="Epochs").fill("2")  # the label's help button has the name too
        page.get_by_role("spinbutton", name="Batch size").fill("20")
        page.get_by_role("textbox", name="Device").fill("cpu")
        page.screenshot(path=str(SHOTS / "ui-new-run.png"), full_page=True)
        page.get_by_role("button", name="Submit run").click()

        page.wait_for_url("**/run?run=*", timeout=30_000)
        run_id = page.url.split("run=")[1].split("&")[0]
        # Curves of both modalities appear while the run trains, without reloading the page.
        page.wait_for_function("() => document.querySelectorAll('.legendtext').length >= 4", timeout=120_000)
        seen_running = httpx.get(f"{service.url}/runs/{run_id}").json()["status"]
        assert "audio" in legend(page) and "visual" in legend(page), legend(page)
        wait_until(lambda: httpx.get(f"{service.url}/runs/{run_id}").json()["status"] == "succeeded", 180,
                   message="the submitted run to succeed")
        page.wait_for_function("() => document.body.innerText.includes('2/2')", timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SHOTS / "ui-run.png"), full_page=True)
        assert seen_running in ("queued", "starting", "running", "succeeded")

        page.goto(ui)
        wait_for_app(page)
        page.wait_for_selector("[data-testid='stDataFrame']", timeout=30_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SHOTS / "ui-runs.png"), full_page=True)

        page.goto(f"{ui}/compare?runs={seeded['full']},{seeded['base']}")
        wait_for_app(page)
        page.wait_for_selector(".js-plotly-plot", timeout=30_000)
        page.wait_for_timeout(1500)
        assert "amst-full-s0" in legend(page)
        page.screenshot(path=str(SHOTS / "ui-compare.png"), full_page=True)
    # The dashboard made no error page on the way.
    assert "Traceback" not in service.logs("ui")


def test_finished_run_page_draws_every_chart(stack) -> None:
    """Not a timing assertion (machines are noisy): the page must finish drawing, and say how long it took."""
    _, ui, seeded = stack
    with browser_page(**TALL) as page:
        start = time.perf_counter()
        page.goto(f"{ui}/run?run={seeded['full']}")
        wait_for_app(page)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=60_000)
        print(f"\n[ui] run page of a 30-epoch AMST-FULL run drawn in {time.perf_counter() - start:.2f} s")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(SHOTS / "ui-run-amst-full.png"), full_page=True)


# ---- one view per URL, no idle redraws, phone width: against an API with no worker, so runs stay as seeded ----

FIGURES = """() => [...document.querySelectorAll('.js-plotly-plot')].map(gd => {
  const L = gd._fullLayout;
  const epochAxes = Object.keys(L).filter(k => /^xaxis\\d*$/.test(k)).map(k => L[k])
    .filter(a => a.tickformat === 'd').map(a => ({dtick: a.dtick, ticks: (a._vals || []).map(v => v.text)}));
  const titles = [...gd.querySelectorAll('.gtitle, .annotation-text, .xtitle, .ytitle, .legendtext')].map(n => {
    const r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, n.textContent]; });
  return {epochAxes, titles, width: gd.getBoundingClientRect().width};
})"""





def test_runs_has_its_own_address_and_the_root_keeps_the_links_parameters(still) -> None:
    _, ui, _, _ = still
    with browser_page() as page:
        page.goto(f"{ui}/runs?status=running")
        wait_for_app(page)
        page.wait_for_selector("[data-testid='stDataFrame']", timeout=30_000)
        assert "Page not found" not in page.inner_text("body")
        page.goto(f"{ui}/?status=succeeded")
        page.wait_for_url("**/runs?status=succeeded", timeout=30_000)


def switched_on(page, toggle, url: str, tries: int = 3) -> None:
    """Turn a Streamlit toggle on and wait for the address to say so. A click that lands while the page is being
    rerun (a live page refreshes every second) can be lost on a loaded machine (seen once in CI): the toggle is
    clicked again only while it is still off."""
    switch = page.locator("label", has=toggle).locator("input[type=checkbox]")
    for _ in range(tries):
        wait_for_app(page)
        if not switch.is_checked():
            toggle.click()
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_url(url, timeout=10_000)
            return
    raise AssertionError(f"the address never showed {url} ({page.url}); toggle checked: {switch.is_checked()}")


def test_a_shared_link_shows_the_same_view_in_a_fresh_browser(still) -> None:
    _, ui, runs, _ = still
    with browser_page(**TALL) as page:
        open_drawn(page, f"{ui}/run?run={runs['full'].id}", 2)
        page.get_by_text("Chart options").click()
        toggle = page.get_by_text("Log scale (loss)")
        toggle.wait_for(state="visible", timeout=30_000)
        switched_on(page, toggle, "**log=1**")
        shared = page.url
    with browser_page(**TALL) as fresh:
        open_drawn(fresh, shared, 2)
        log_axes = fresh.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot');
            return Object.keys(gd._fullLayout).filter(k => /^yaxis\\d*$/.test(k))
              .map(k => [gd._fullLayout[k].title.text, gd._fullLayout[k].type]); }""")
        assert ["loss", "log"] in log_axes and ["acc", "linear"] in log_axes, log_axes


def test_an_open_live_page_redraws_only_when_a_run_changes(still) -> None:
    """Nothing new for several refresh periods: no chart is drawn again. A new epoch arrives: it is."""
    from amst_core.store.writer import DbSink

    _, ui, runs, url = still
    with browser_page(**TALL) as page:
        open_drawn(page, f"{ui}/run?run={runs['live'].id}", 2)
        page.evaluate("""() => { window.redraws = 0; document.querySelectorAll('.js-plotly-plot')
            .forEach(gd => gd.on('plotly_afterplot', () => { window.redraws += 1; })); }""")
        page.wait_for_timeout(5000)  # five refreshes of 1 s
        assert page.evaluate("window.redraws") == 0
        sink = DbSink(runs["live"].id, url)
        sink.begin(6)
        points = epoch_points("amst_alt", 6, random.Random(6))
        for p in points:
            p.attempt = 1
        sink.write(points)
        page.wait_for_function("() => document.body.innerText.includes('7/30')", timeout=30_000)


def overlapping(boxes: list[list]) -> list[tuple[str, str]]:
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                out.append((a[4], b[4]))
    return out


@pytest.mark.parametrize("size", [PHONE, TALL], ids=["phone", "desktop"])
def test_titles_never_overlap_and_epoch_ticks_are_whole_at_phone_and_desktop_width(still, size) -> None:
    _, ui, runs, _ = still
    label = "phone" if size is PHONE else "desktop"
    pages = {"run": (f"{ui}/run?run={runs['live'].id}", 2),
             "compare": (f"{ui}/compare?runs={runs['full'].id},{runs['base'].id},{runs['live'].id}", 1)}
    with browser_page(**size) as page:
        for name, (address, count) in pages.items():
            open_drawn(page, address, count)
            page.screenshot(path=str(SHOTS / f"ui-{name}-{label}.png"), full_page=True)
            for figure in page.evaluate(FIGURES):
                assert not overlapping(figure["titles"]), (name, figure["titles"])
                for axis in figure["epochAxes"]:
                    assert float(axis["dtick"]).is_integer(), (name, axis)
                    assert all(t.isdigit() for t in axis["ticks"]), (name, axis)
                    assert len(axis["ticks"]) <= 9, (name, axis)
