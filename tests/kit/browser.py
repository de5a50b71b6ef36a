"""Debian's Chromium, headless, driven by Playwright (no browser download: executable_path is the system one)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx

from tests.kit.svc import ROOT, free_port, wait_until

if TYPE_CHECKING:
    from tests.kit.svc import Service

SHOTS = ROOT / "Doc" / "img"  # the screenshots the docs show
TALL = {"width": 1400, "height": 2000}  # Streamlit scrolls inside its own container: a tall window shows it all
PHONE = {"width": 390, "height": 2400}  # a phone's width; tall, so the screenshot shows the whole page

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def browser_page(width: int = 1400, height: int = 1000) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def wait_for_app(page, timeout_ms: int = 30_000) -> None:
    """Streamlit has finished a script run: the app is mounted and no element is running."""
    page.wait_for_selector("[data-testid='stApp']", timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout_ms)


def start_dashboard(service: Service) -> str:
    """`amst serve ui` on a free port, talking to the service's API; its address once it answers."""
    port = free_port()
    service.env["AMST_API_URL"] = service.url
    service.start("ui", "serve", "ui", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: healthy(url), 60, message=f"dashboard at {url}")
    return url


def healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200
    return False


def legend(page) -> str:
    return " ".join(page.eval_on_selector_all(".legendtext", "nodes => nodes.map(n => n.textContent)"))


def open_drawn(page, address: str, charts: int) -> None:
    """Go to a page and wait until its script ran and `charts` Plotly figures are drawn."""
    page.goto(address)
    wait_for_app(page)
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}", timeout=60_000)
    page.wait_for_timeout(800)
