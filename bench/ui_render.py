"""Dashboard render time and API calls per refresh, in a real headless Chromium.

Ten running runs of 70 series x 100 epochs each (60 per-modality and fused curves: 3 splits x 5 curves x 4
metrics; plus gaps, skip and timing series) are written the way a worker writes them into a fresh SQLite store.
A real API process (`amst serve api`) and dashboard (`amst serve ui`) serve them. It measures, over fresh browser
sessions (so nothing is cached on the dashboard's side):
  - Compare with all ten runs overlaid (it fetches the split and metric it draws: 7 of the 70 series of each
    run): navigation until every chart is drawn;
  - Run page of one run (all 7 000 points fetched, 30 acc and loss curves drawn): the same;
then, from the API's access log over a window of live refreshes, the calls each page makes per refresh; and the
CPU the dashboard's Streamlit process spends per open live page (the run page of a running run that gets no new
point: what a page left open between two epochs costs), against the same process with no page open.

With `--before REV`, the dashboard of that commit (its ui/ only, `git archive`) is served beside today's, on the
same API and data, and measured the same way in the same run: before and after side by side.

    python bench/ui_render.py [--runs 10] [--epochs 100] [--repeats 3] [--window-s 20] [--before REV]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]  # tests.kit

from amst_core.store.models import RunStatus  # noqa: E402
from tests.kit.browser import browser_page, wait_for_app  # noqa: E402
from tests.kit.db import migrated_sqlite  # noqa: E402
from tests.kit.seeded import seed_run  # noqa: E402
from tests.kit.svc import Service, free_port, wait_until  # noqa: E402

NAMES = ("acc", "loss", "macro_f1", "acc_prob")
REFRESH_S = 2.0


def drawn(page, url: str, charts: int) -> float:
    start = time.perf_counter()
    page.goto(url)
    wait_for_app(page, 120_000)
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                           timeout=120_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=120_000)
    return time.perf_counter() - start


def metrics_calls(log: Path, offset: int) -> tuple[dict[str, int], int]:
    text = log.read_text()[offset:]
    per_run: dict[str, int] = {}
    other = 0
    for match in re.finditer(r'"GET (/[^ ]*) HTTP', text):
        path = match.group(1)
        if m := re.match(r"/runs/([0-9a-f]+)/metrics", path):
            per_run[m.group(1)] = per_run.get(m.group(1), 0) + 1
        else:
            other += 1
    return per_run, other


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window-s", type=float, default=20.0)
    parser.add_argument("--before", help="a commit whose dashboard to measure beside today's")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url = f"sqlite:///{migrated_sqlite(tmp / 'amst.db')}"
        t = time.perf_counter()
        # Half AMST-ALT, half naive, paired by seed: Compare draws the overlay and the AMST-minus-baseline chart.
        ids = [seed_run(url, ("naive", "amst_alt")[i % 2], args.epochs, 2 * args.epochs, RunStatus.running,
                        seed=i // 2, name=f"run{i}", names=NAMES).id for i in range(args.runs)]
        print(f"seeded {args.runs} running runs x 70 series x {args.epochs} epochs in {time.perf_counter() - t:.1f} s")
        env = {"DATABASE_URL": url, "BROKER_URL": f"sqla+sqlite:///{tmp}/broker.db", "AMST_HOME": str(tmp),
               "AMST_HEARTBEAT_S": "3600", "AMST_UI_REFRESH_S": str(REFRESH_S), "PYTHONUNBUFFERED": "1",
               "PATH": "/usr/bin:/bin", "HOME": str(tmp)}
        service = Service(env, tmp)
        try:
            service.start_api()
            service.env["AMST_API_URL"] = service.url
            ui = f"http://127.0.0.1:{free_port()}"
            service.start("ui", "serve", "ui", "--port", ui.rsplit(":", 1)[1])
            baseline = start_baseline(tmp)
            dashboards = {"today": (ui, service.procs["ui"].pid)}
            if args.before:
                dashboards[args.before] = start_before(tmp, args.before, service.url)
            wait_until(lambda: "URL:" in service.logs("ui") and "URL:" in (tmp / "baseline.log").read_text()
                       and all("URL:" in p.read_text() for p in tmp.glob("ui-*.log")), 60,
                       message="the dashboards and the bare page")
            measure(service, dashboards, baseline, ids, args, tmp / "api.log")
        finally:
            service.stop()
            for proc in BASELINE:
                proc.terminate()
                proc.wait()


BASELINE: list[subprocess.Popen] = []


def start_baseline(tmp: Path) -> str:
    """The bare page, served with `amst serve ui`'s own Streamlit flags."""
    from launch.processes import ui_command

    port = free_port()
    cmd = ui_command("127.0.0.1", port)
    cmd[4] = str(ROOT / "bench" / "ui_baseline_app.py")  # python -m streamlit run <script> ...
    BASELINE.append(subprocess.Popen(cmd, stdout=(tmp / "baseline.log").open("w"), stderr=subprocess.STDOUT))
    return f"http://127.0.0.1:{port}"


def start_before(tmp: Path, rev: str, api_url: str) -> tuple[str, int]:
    """The dashboard as it was at `rev`: its ui/ package first on the path, served with that commit's own
    Streamlit flags (its launch/processes.py), against today's API."""
    import importlib.util

    tree = tmp / "before"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "ui", "launch/processes.py"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    spec = importlib.util.spec_from_file_location("before_processes", tree / "launch" / "processes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    port = free_port()
    cmd = module.ui_command("127.0.0.1", port)
    cmd[4] = str(tree / "ui" / "app.py")
    env = {**os.environ, "PYTHONPATH": str(tree), "AMST_API_URL": api_url, "AMST_UI_REFRESH_S": str(REFRESH_S)}
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=(tmp / f"ui-{rev}.log").open("w"),
                            stderr=subprocess.STDOUT)
    BASELINE.append(proc)
    return f"http://127.0.0.1:{port}", proc.pid


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, window_s: float, page=None, url: str | None = None, charts: int = 0) -> float:
    """Percent of one core the process used over `window_s`, with `url` open in `page` (None: nothing open)."""
    if page is not None:
        drawn(page, url, charts)
        page.wait_for_timeout(2 * REFRESH_S * 1000)  # settled
    start = cpu_seconds(pid)
    time.sleep(window_s)
    return 100 * (cpu_seconds(pid) - start) / window_s


def timings(url: str, charts: int, repeats: int) -> tuple[float, float]:
    """Median seconds until drawn: in a fresh browser (nothing cached), and navigating again in a browser
    that has shown the page before (what a user sees moving between pages)."""
    cold, warm = [], []
    for _ in range(repeats):
        with browser_page() as page:
            cold.append(drawn(page, url, charts))
            warm.append(drawn(page, url, charts))
    return statistics.median(cold), statistics.median(warm)


def pages_of(ui: str, ids: list[str], today: bool = True) -> dict[str, tuple[str, int]]:
    """The pages measured and how many Plotly figures each draws: today one per page section (Compare's overlay
    holds the AMST-minus-baseline row, the balance holds the skip strip); before, one per chart."""
    return {"compare (10 runs overlaid)": (f"{ui}/compare?runs={','.join(ids)}", 1 if today else 2),
            "run page (1 run, every curve)": (f"{ui}/run?run={ids[0]}", 2 if today else 3)}


def measure(service: Service, dashboards: dict[str, tuple[str, int]], baseline: str, ids: list[str],
            args: argparse.Namespace, log: Path) -> None:
    for ui, _ in dashboards.values():
        with browser_page() as page:
            drawn(page, f"{ui}/run?run={ids[0]}", 2)  # warm the server's imports once; not measured
    floor = timings(baseline, 1, args.repeats)
    print(f"{'bare Streamlit + 1 tiny Plotly':40s} drawn in median {floor[0]:.2f} s fresh, {floor[1]:.2f} s again")
    for version, (ui, _) in dashboards.items():
        for label, (url, charts) in pages_of(ui, ids, version == "today").items():
            cold, warm = timings(url, charts, args.repeats)
            print(f"{version + ': ' + label:40s} drawn in median {cold:.2f} s fresh ({cold / floor[0]:.2f}x the "
                  f"bare page), {warm:.2f} s again ({warm / floor[1]:.2f}x)")
    for version, (ui, pid) in dashboards.items():
        idle = cpu_share(pid, args.window_s)
        url, charts = pages_of(ui, ids, version == "today")["run page (1 run, every curve)"]
        with browser_page() as page:
            live = cpu_share(pid, args.window_s, page, url, charts)
        print(f"{version + ': CPU of the Streamlit process':40s} {live:.1f} % of a core with one live run page open "
              f"(no new point), {idle:.1f} % with no page open; over {args.window_s:g} s")
    ui = dashboards["today"][0]
    for label, (url, charts) in pages_of(ui, ids).items():
        with browser_page() as page:
            drawn(page, url, charts)
            page.wait_for_timeout(2 * REFRESH_S * 1000)  # settled: the count starts between two refreshes
            offset = len(log.read_text())
            page.wait_for_timeout(args.window_s * 1000)
            per_run, other = metrics_calls(log, offset)
        refreshes = args.window_s / REFRESH_S
        visible = sorted(per_run.values())
        print(f"{label:40s} over {args.window_s:g} s (~{refreshes:.0f} refreshes): metrics calls per run "
              f"{visible} -> {sum(visible) / max(1, len(visible)) / refreshes:.2f} per run per refresh; "
              f"other API calls {other}")


if __name__ == "__main__":
    main()
