"""Charts redrawn without a blank frame.

Streamlit counts a Plotly figure in its element's identity: a figure with one more epoch is a new element, mounted
afresh, and its chart area stays empty until Plotly has drawn it (a tenth of a second, a second on a loaded
machine). The script below copies each keyed chart's plot when the page starts to rerun (Streamlit marks its
elements stale), and shows that copy in the new, still empty chart of the same key on the same run's page until
Plotly has drawn the new one (at most 3 s); the new one is laid out underneath, hidden, so nothing below moves.

It reads Streamlit's markup (stElementContainer, data-stale, data-retained, st-key-<key>, stPlotlyChart): if a
Streamlit release changes it, the script finds nothing to do and charts blank for a moment as before
(tests/ui/test_browser_run.py tells).
"""

from __future__ import annotations

import streamlit as st

# Kept here as text (not a .js file beside it): the package installs its Python modules only.
SCRIPT = r"""
(() => {
  if (window.amstSteadyCharts) return;
  window.amstSteadyCharts = true;

  const CONTAINER = '[data-testid="stElementContainer"]';
  const LIMIT_MS = 3000; // a picture is never shown longer than this, whatever happens to the new chart
  // key -> {page, plot}: a copy of the chart's Plotly plot taken when the page started to rerun (Streamlit marks
  // its elements stale), before the rerun removes it (a removed plot is emptied: Plotly.purge)
  const pictures = new Map();
  const page = () => location.pathname + "?" + (new URLSearchParams(location.search).get("run") || "");

  const keyOf = (container) => (container.className.match(/\bst-key-([\w-]+)/) || [])[1];
  const chartOf = (container) => container.querySelector(".stPlotlyChart:not(.steady-ghost)");
  // Drawn and shown: Plotly has laid out its traces, and Streamlit no longer keeps it out of sight.
  function shown(chart) {
    const gd = chart && chart.querySelector(".js-plotly-plot");
    return !!(gd && gd._fullLayout && gd.style.display !== "none" && gd.style.visibility !== "hidden" &&
              gd.getClientRects().length &&
              gd.querySelector(".main-svg .trace, .main-svg .hm, .main-svg .point"));
  }

  function remember(container) {
    const key = keyOf(container), chart = chartOf(container);
    const stale = container.getAttribute("data-stale") === "true";
    if (!stale) container.steadyCopied = false;
    if (!key || !stale || container.steadyCopied || !shown(chart)) return;
    container.steadyCopied = true;
    pictures.set(key, {page: page(), plot: chart.querySelector(".js-plotly-plot").cloneNode(true)});
  }

  function cover(container) {
    const key = keyOf(container), held = key && pictures.get(key);
    if (!held || held.page !== page() || container.hasAttribute("data-retained") ||
        container.classList.contains("steady-waiting") || shown(chartOf(container)) ||
        !held.plot.querySelector(".main-svg")) return;
    const ghost = document.createElement("div");
    ghost.className = "steady-ghost";
    ghost.style.pointerEvents = "none";
    const picture = ghost.appendChild(held.plot.cloneNode(true));
    picture.classList.replace("js-plotly-plot", "steady-ghost-plot"); // not a figure to the page's own scripts
    picture.style.visibility = "visible";
    picture.style.display = "";  // as Streamlit hides a plot it keeps out of sight
    container.classList.add("steady-waiting");
    container.appendChild(ghost);
    container.steadyTimer = setTimeout(() => uncover(container), LIMIT_MS);
  }

  function uncover(container) {
    clearTimeout(container.steadyTimer);
    container.querySelectorAll(":scope > .steady-ghost").forEach((g) => g.remove());
    container.classList.remove("steady-waiting");
  }

  new MutationObserver(() => {
    const containers = document.querySelectorAll(CONTAINER);
    containers.forEach(remember);
    containers.forEach(cover);
    document.querySelectorAll(`${CONTAINER}.steady-waiting`).forEach((c) => shown(chartOf(c)) && uncover(c));
  }).observe(document.body, {childList: true, subtree: true, attributes: true,
                             attributeFilter: ["style", "class", "data-stale"]});

  const style = document.createElement("style");
  style.textContent = `
    .steady-waiting { position: relative; }
    .steady-waiting .stPlotlyChart:not(.steady-ghost) {
      position: absolute !important; top: 0; left: 0; width: 100%; visibility: hidden;
    }`;
  document.head.appendChild(style);
})();
"""


def steady_charts() -> None:
    """A page whose charts are redrawn as it refreshes (a live run) keeps showing each keyed chart's picture until
    its new figure is drawn, instead of a blank area for a moment at each redraw. Called once per page run; the
    browser runs the script once per page load."""
    st.html(f"<script>{SCRIPT}</script>", unsafe_allow_javascript=True)
