"""The charts as Chromium draws them (issue 23): what only a browser can tell, the legends' swatches, the log axes'
tick labels, the curves' widths and their legends' places at a phone's width. Against the `still` stack (an API
and the dashboard, no worker: the seeded runs stay as they are)."""

from __future__ import annotations

import re

import pytest

from tests.kit.browser import PHONE, TALL, browser_page, chromium_path, open_drawn

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="Chromium is not installed (make test installs "
                                "Debian's chromium when it runs as root)")

# Per figure: its subplot titles, its plot area and legends on the page, each x axis's drawn length, each log
# axis's drawn tick labels, each legend entry's swatch (path) and dash pattern.
DRAWN = """() => { const LEGENDS = '.infolayer > .legend, .infolayer > .legend2';  // legend2: Compare's pairs
  const TEXT = '.legendtext, .legend2text';  // a legend's texts are classed by its name
  return [...document.querySelectorAll('.js-plotly-plot')].map(gd => {
  const L = gd._fullLayout, box = gd.getBoundingClientRect();
  const axes = k => Object.keys(L).filter(n => new RegExp('^' + k + 'axis\\\\d*$').test(n)).map(n => L[n]);
  const rect = n => { const r = n.getBoundingClientRect(); return {top: r.top, bottom: r.bottom}; };
  return {
    titles: (gd.layout.annotations || []).map(a => a.text),
    plotTop: box.top + L._size.t, plotBottom: box.top + L._size.t + L._size.h,
    xLengths: axes('x').map(a => a._length),
    logTicks: axes('y').filter(a => a.type === 'log').map(a => (a._vals || []).map(v => v.text)),
    legends: [...gd.querySelectorAll(LEGENDS)].map(rect),
    entries: [...gd.querySelectorAll(LEGENDS.replaceAll(',', ' .traces,') + ' .traces')]
      .filter(t => t.querySelector(TEXT)).map(t => ({
      name: t.querySelector(TEXT).textContent,
      path: (t.querySelector('.legendlines path') || {getAttribute: () => ''}).getAttribute('d'),
      dash: (t.querySelector('.legendlines path') || {style: {}}).style.strokeDasharray || ''})),
  };
}); }"""


def open_all_drawn(page, address: str) -> None:
    """Open a page and wait until every chart it holds is drawn (however many the page's version draws)."""
    open_drawn(page, address, 1)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length"
                           " >= document.querySelectorAll('[data-testid=stPlotlyChart]').length", timeout=60_000)


def curve_figures(drawn: list[dict]) -> list[dict]:
    """The Run page's curve figures: their panels are titled '<split> <metric>'."""
    return [f for f in drawn if f["titles"] and all(re.match(r"^(train|val|test) \w+", t) for t in f["titles"])]


def test_at_a_phones_width_curves_are_wide_and_legends_sit_by_their_curves(still) -> None:
    """Finding 14: the Run page's three split panels were about 100 px each; Compare's run legend sat under the
    AMST-minus-baseline row, far below its curves."""
    _, ui, runs, _ = still
    with browser_page(**PHONE) as page:
        open_all_drawn(page, f"{ui}/run?run={runs['full'].id}")
        curves = curve_figures(page.evaluate(DRAWN))
        assert len(curves) == 3, curves
        for figure in curves:
            assert min(figure["xLengths"]) >= 280, figure  # the whole phone's width, less the axis labels
            legend = figure["legends"][0]
            assert 0 <= legend["top"] - figure["plotBottom"] <= 120, figure  # under its own curves
        open_all_drawn(page, f"{ui}/compare?runs={runs['full'].id},{runs['base'].id}")
        overlay = page.evaluate(DRAWN)[0]
        runs_legend = min(overlay["legends"], key=lambda r: r["top"])
        assert runs_legend["bottom"] <= overlay["plotTop"] and overlay["plotTop"] - runs_legend["bottom"] <= 80


def test_legends_show_dash_patterns_and_log_axes_label_their_ticks_in_full(still) -> None:
    """Finding 4: 30 px swatches showed alt (dash), joint (dashdot) and fused as the same solid black line, and
    the difference row's modality lines had no entry. Finding 6: a log axis labelled its ticks "3, 2, 10, 9, ...",
    0.5 and 5 alike."""
    _, ui, runs, _ = still
    with browser_page(**TALL) as page:
        open_all_drawn(page, f"{ui}/run?run={runs['full'].id}&log=1")
        val = next(f for f in curve_figures(page.evaluate(DRAWN)) if any(t.startswith("val") for t in f["titles"]))
        swatches = {e["name"]: e for e in val["entries"]}
        assert {"fused", "alt", "joint"} <= set(swatches), swatches
        for entry in swatches.values():
            assert int(re.search(r"h(\d+)", entry["path"]).group(1)) >= 60, entry
        dashes = [swatches[name]["dash"] for name in ("fused", "alt", "joint")]
        assert len(set(dashes)) == 3, dashes  # three patterns the eye can tell apart
        assert val["logTicks"], val
        for ticks in val["logTicks"]:
            values = [float(t.replace("−", "-")) for t in ticks]  # every label a whole number: no bare digit
            assert len(values) == len(set(values)) >= 3, ticks
        open_all_drawn(page, f"{ui}/compare?runs={runs['full'].id},{runs['base'].id}")
        names = [e["name"] for e in page.evaluate(DRAWN)[0]["entries"]]
        assert any(n.endswith("− baseline · audio") for n in names), names
        assert any(n.endswith("− baseline · visual") for n in names), names
