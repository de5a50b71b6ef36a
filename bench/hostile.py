"""The hostile campaign of issue 21, rerunnable against any checkout: what a hostile or careless user can do to a
service on the embedded default (SQLite, no token), counted.

    python bench/hostile.py                  # this checkout
    python bench/hostile.py --code /tmp/old  # the service processes run an older checkout (its amst_core, api...)

Phase 1 starts the API alone (runs stay queued: nothing is trained) and submits what should be refused: data
links out of AMST_DATA_ROOT, text models outside it or on the hub while offline, a 1 GiB sparse sample, sloppy
sweep bodies, names with controls, the server's `sweep:` tags, a burst of 100 sweeps, a sweep that asks for
hundreds of folder scans. Phase 2 starts `amst up` (API and worker), trains a sweep whose grid values are
spreadsheet formulas and reads its CSV, then submits seven runs whose config crashed the worker (a narrow audio
encoder on 512x128 fbanks), then one sane run.

It prints one line per case and the totals: cases tried, 5xx answers, accepted (should have been refused),
outside data accepted for reading, existence oracles, runs lost, hangs (a request or /health slower than
HANG_S), service down. Exit status 0 whatever it finds: it measures, the suite asserts.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.tiny import folder_run, write_tiny_folder, write_tiny_roberta  # noqa: E402

HANG_S = 5.0  # a request or /health slower than this: a hang
PINNED_S = 30.0  # one request that keeps the API busy this long: pinned


class Campaign:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lines: list[str] = []

    def note(self, case: str, outcome: str, *kinds: str) -> None:
        self.counts["cases"] += 1
        for kind in kinds:
            self.counts[kind] += 1
        line = f"{case:<58} {outcome}{'  <- ' + ', '.join(kinds) if kinds else ''}"
        self.lines.append(line)
        print(line, flush=True)

    def expect_refused(self, case: str, response: httpx.Response, outside: bool = False) -> None:
        code = response.status_code
        if code >= 500:
            self.note(case, f"{code} {said(response)}", "5xx")
        elif code < 400:
            self.note(case, f"{code} accepted", "accepted", *(("outside data accepted",) if outside else ()))
        else:
            self.note(case, f"{code} refused: {said(response)}")


def said(response: httpx.Response, limit: int = 90) -> str:
    """The first line of an error's detail, cut short."""
    try:
        detail = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        detail = response.text
    text = (str(detail).splitlines() or [""])[0]
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- the service


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_env(home: Path, data: Path, code: Path) -> dict[str, str]:
    env = dict(os.environ, AMST_HOME=str(home), AMST_DATA_ROOT=str(data), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(code), AMST_HEARTBEAT_S="1", AMST_REAPER_S="1",
               AMST_CANCEL_POLL_S="0.5")
    for name in ("DATABASE_URL", "BROKER_URL", "AMST_API_TOKEN"):
        env.pop(name, None)
    return env


def start(args: list[str], env: dict[str, str], code: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "launch", *args], env=env, cwd=code, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_healthy(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the API at {url} did not answer within {timeout:.0f} s")


# ---------------------------------------------------------------- data


def write_data(tmp: Path) -> tuple[Path, Path]:
    data, outside = tmp / "data", tmp / "outside"
    outside.mkdir()
    write_tiny_folder(outside / "elsewhere", per_class=2)  # an outside dataset: its files are the "secrets"
    write_tiny_roberta(outside / "model")
    write_tiny_roberta(data / "tm")
    clean = write_tiny_folder(data / "clean", per_class=2)
    for name in ("linkfile", "linklabel", "linkframes", "linkframe", "bigtext"):
        write_tiny_folder(data / name, per_class=2)
    # Each attack replaces one file (or a sample's image) of a complete sample, so that nothing else is wrong.
    secret = outside / "elsewhere" / "train" / "cat"
    swap(data / "linkfile" / "train" / "cat" / "cat_train_0.txt", secret / "cat_train_1.txt")
    (data / "linklabel" / "val" / "dog").rename(data / "linklabel" / "val_dog_moved")
    (data / "linklabel" / "val" / "dog").symlink_to(outside / "elsewhere" / "val" / "dog", target_is_directory=True)
    clip = data / "linkframes" / "train" / "cat" / "cat_train_0"  # the sample's frames: a folder linked out
    (clip.parent / "cat_train_0.png").unlink()
    clip.symlink_to(outside / "elsewhere" / "train" / "dog", target_is_directory=True)
    own = data / "linkframe" / "train" / "cat" / "cat_train_0"  # a real frame folder, one frame linked out
    (own.parent / "cat_train_0.png").rename(own.parent / "moved.bin")
    own.mkdir()
    (own / "0001.png").symlink_to(secret / "cat_train_0.png")
    huge = data / "bigtext" / "train" / "cat" / "cat_train_0.txt"
    with huge.open("wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: costs no disk
    many = data / "many"
    write_tiny_folder(many, per_class=2)
    for k in range(3000):  # empty files: scanning lists them, nothing reads them in phase 1
        (many / "train" / ("cat" if k % 2 else "dog") / f"extra_{k}.wav").touch()
    (data / "tmlink").symlink_to(outside / "model", target_is_directory=True)
    return data, clean


# ---------------------------------------------------------------- phase 1: the API alone


def swap(path: Path, target: Path) -> None:
    path.unlink()
    path.symlink_to(target)


def synthetic_run(**overrides: Any) -> dict[str, Any]:
    body = {"method": "naive", "dataset": {"name": "synthetic"}, "epochs": 1, "batch_size": 8, "device": "cpu",
            "model": {"width": 8}}
    body.update(overrides)
    return body


def submission_cases(c: Campaign, api: httpx.Client, tmp: Path) -> None:
    outside = tmp / "outside"
    c.expect_refused("a file linked out of the root", api.post("/runs", json=folder_run("linkfile", "tm")),
                     outside=True)
    c.expect_refused("a label folder linked out", api.post("/runs", json=folder_run("linklabel", "tm")),
                     outside=True)
    c.expect_refused("a frame folder linked out", api.post("/runs", json=folder_run("linkframes", "tm")),
                     outside=True)
    c.expect_refused("one frame of a frame folder linked out", api.post("/runs", json=folder_run("linkframe", "tm")),
                     outside=True)
    for label, model in [("text_model: an outside file", outside / "model" / "config.json"),
                         ("text_model: an outside folder", outside / "model"), ("text_model: /etc", "/etc"),
                         ("text_model: ../ out of the root", "../outside/model"),
                         ("text_model: a link out of the root", "tmlink"),
                         ("text_model: a hub name while offline", "roberta-base")]:
        started = time.monotonic()
        response = api.post("/runs", json=folder_run("clean", model))
        slow = time.monotonic() - started > HANG_S
        c.expect_refused(label, response, outside="hub" not in label)
        if slow:
            c.note(label + " (time)", f"{time.monotonic() - started:.0f} s", "hang")
    existing = api.post("/runs", json=folder_run("clean", outside / "model" / "config.json"))
    missing = api.post("/runs", json=folder_run("clean", outside / "model" / "nothing.json"))
    same = existing.status_code == missing.status_code and \
        existing.text.replace("config.json", "X") == missing.text.replace("nothing.json", "X")
    c.note("text_model: an outside file that exists vs one that does not", "same answer" if same else
           f"{existing.status_code} vs {missing.status_code}, different messages", *(() if same else ("oracle",)))
    c.expect_refused("a 1 GiB sparse .txt sample", api.post("/runs", json=folder_run("bigtext", "tm")))
    control = api.post("/runs", json=folder_run("clean", "tm"))
    c.note("control: a clean folder dataset", f"{control.status_code}", *(() if control.status_code == 201 else
                                                                             ("control refused",)))


def patch_cases(c: Campaign, api: httpx.Client) -> None:
    run = api.post("/runs", json=synthetic_run()).json()["id"]
    sweep = api.post("/sweeps", json={"base": synthetic_run(), "grid": {"seed": [0]}}).json()["id"]
    for label, name in [("a name with a C1 control", "run\x85one"), ("a name with U+2028", "a\u2028b"),
                        ("a name with RLO (U+202E)", "\u202egnp.exe"), ("a name of one zero-width space", "\u200b")]:
        c.expect_refused(f"PATCH {label}", api.patch(f"/runs/{run}", json={"name": name}))
    c.expect_refused("PATCH a tag of another sweep", api.patch(f"/runs/{run}", json={"tags": [f"sweep:{sweep}"]}))
    for path in ("/health", "/runs", f"/runs/{run}", "/sweeps"):
        code = api.head(path).status_code
        c.note(f"HEAD {path}", str(code), *(() if code == 200 else ("HEAD refused",)))


def sweep_cases(c: Campaign, api: httpx.Client) -> None:
    base = synthetic_run()
    for label, extra in [("unknown field max_concurent", {"max_concurent": 2}),
                         ("unknown field basline", {"basline": {"seed": 0}}),
                         ("max_concurrent as the string '2'", {"max_concurrent": "2"})]:
        c.expect_refused(f"POST /sweeps with {label}", api.post("/sweeps", json={"base": base, "grid": {"seed": [0]},
                                                                                **extra}))
    # A generated client parses a response as the first media type the schema declares for it.
    schema = api.get("/openapi.json").json()["paths"]
    run = api.post("/runs", json=base).json()["id"]
    sweep = api.post("/sweeps", json={"base": base, "grid": {"seed": [0]}}).json()["id"]
    for path, url in [("/runs/{run_id}/config", f"/runs/{run}/config"),
                      ("/sweeps/{sweep_id}/table", f"/sweeps/{sweep}/table")]:
        declared = list(schema[path]["get"]["responses"]["200"].get("content", {}))
        sent = api.get(url).headers.get("content-type", "").split(";")[0]
        c.note(f"GET {path}: declared first / sent", f"{declared[0] if declared else 'none'} / {sent}",
               *(() if declared and declared[0] == sent else ("schema",)))


def formula_cells(c: Campaign, api_url: str, timeout: float = 180) -> None:
    """A sweep whose grid values are spreadsheet formulas, trained (its table has rows once runs end)."""
    api = httpx.Client(base_url=api_url, timeout=30)
    base = synthetic_run()
    names = ["=1+2", "+SUM(1,1)", "-1+2", "@SUM(A1)", '=HYPERLINK("http://x","y")']
    sweep = api.post("/sweeps", json={"base": base, "grid": {"name": names}})
    if sweep.status_code != 201:
        c.note("a sweep of formula names", f"{sweep.status_code} (not created)")
        return
    sweep_id, deadline = sweep.json()["id"], time.monotonic() + timeout
    while api.get(f"/sweeps/{sweep_id}").json()["progress"]["done"] < len(names) and time.monotonic() < deadline:
        time.sleep(1)
    table = api.get(f"/sweeps/{sweep_id}/table", params={"format": "csv"}).text
    cells = [cell for row in csv.reader(io.StringIO(table)) for cell in row]
    live = [cell for cell in cells if cell in names]  # written as sent: a spreadsheet evaluates it
    c.note("formula cells in a sweep's CSV", f"{len(live)} live of {len(names)}", *(("formula",) if live else ()))


def burst_of_sweeps(c: Campaign, api_url: str) -> None:
    """100 sweeps of 2 runs each at once: every answer is 201, and exactly the answered sweeps exist."""
    before = count_sweeps(api_url)

    def post(k: int) -> int:
        body = {"base": synthetic_run(), "grid": {"seed": [k, k + 1000]}, "name": f"burst {k}"}
        try:
            return httpx.post(f"{api_url}/sweeps", json=body, timeout=120).status_code
        except httpx.HTTPError:
            return 599

    with concurrent.futures.ThreadPoolExecutor(100) as pool:
        codes = list(pool.map(post, range(100)))
    created = count_sweeps(api_url) - before
    errors = sum(code >= 500 for code in codes)
    answered = sum(code == 201 for code in codes)
    for _ in range(errors):
        c.counts["5xx"] += 1
    c.note("100 concurrent POST /sweeps", f"{answered} x 201, {errors} x 5xx, {created} sweeps stored",
           *(("committed but answered 5xx",) if created > answered else ()))


def count_sweeps(api_url: str) -> int:
    total, cursor = 0, None
    while True:
        page = httpx.get(f"{api_url}/sweeps", params={"limit": 200, **({"cursor": cursor} if cursor else {})},
                         timeout=30).json()
        total += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total


def pinning_sweep(c: Campaign, api_url: str) -> None:
    """A sweep whose cells name 600 class files of a 3,000-file folder dataset, while /health is polled."""
    base = folder_run("many", "tm")
    base["dataset"]["on_bad_sample"] = "skip"  # the extra files are empty: samples without their other files
    body = {"base": base, "grid": {"dataset.class_file": [f"classes_{k}.txt" for k in range(600)]}}
    worst, done = 0.0, threading.Event()

    def poll() -> None:
        nonlocal worst
        while not done.is_set():
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{api_url}/health", timeout=60)
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.2)

    poller = threading.Thread(target=poll)
    poller.start()
    started = time.monotonic()
    try:
        response = httpx.post(f"{api_url}/sweeps", json=body, timeout=600)
        code, message = response.status_code, said(response, 60)
    except httpx.HTTPError as err:
        code, message = 599, type(err).__name__
    took = time.monotonic() - started
    done.set()
    poller.join()
    c.note("a sweep of 600 class files over 3,000 files",
           f"{code} after {took:.1f} s; /health at worst {worst:.1f} s ({message})",
           *(("hang",) if worst > HANG_S else ()), *(("pinned",) if took > PINNED_S else ()),
           *(("5xx",) if code >= 500 else ()))


# ---------------------------------------------------------------- phase 2: API and worker


def crashing_runs(c: Campaign, api_url: str, count: int = 7, timeout: float = 300) -> None:
    """Seven runs whose config crashed the worker (a width-4 audio encoder on 512x128 fbanks), then a sane one."""
    crash = synthetic_run(model={"width": 4}, dataset={"name": "synthetic", "synthetic": {
        "modalities": ["audio"], "audio_shape": [512, 128], "samples": {"train": 8, "val": 4, "test": 4}}},
        batch_size=4)
    ids = []
    for _ in range(count):
        response = httpx.post(f"{api_url}/runs", json=crash, timeout=30)
        if response.status_code == 201:
            ids.append(response.json()["id"])
    c.note(f"{count} runs of the crashing config", f"{len(ids)} accepted, {count - len(ids)} refused at submission")
    sane = httpx.post(f"{api_url}/runs", json=synthetic_run(), timeout=30).json()["id"]
    deadline, down_since, statuses = time.monotonic() + timeout, None, {}
    while time.monotonic() < deadline:
        try:
            statuses = {run: httpx.get(f"{api_url}/runs/{run}", timeout=5).json() for run in [*ids, sane]}
            down_since = None
        except httpx.HTTPError:
            down_since = down_since or time.monotonic()
            if time.monotonic() - down_since > 20:
                break
        if statuses and all(s["status"] in ("succeeded", "failed", "cancelled", "lost") for s in statuses.values()):
            break
        time.sleep(1)
    if down_since is not None:
        c.note("the service during the crashing runs", "the API stopped answering", "service down")
    ended = Counter(s["status"] for run, s in statuses.items() if run != sane)
    unexplained = sum(1 for run, s in statuses.items()
                      if run != sane and (s["status"] == "lost" or (s["status"] == "failed" and not s.get("error"))))
    for _ in range(ended.get("lost", 0)):
        c.counts["runs lost"] += 1
    c.note("the crashing runs ended", json.dumps(dict(ended)) or "unknown",
           *(("ended without a reason",) if unexplained else ()))
    sane_status = statuses.get(sane, {}).get("status", "unknown (no API)")
    c.note("a sane run submitted after them", sane_status,
           *(() if sane_status == "succeeded" else ("sane run not done",)))


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout the service processes run")
    parser.add_argument("--json", type=Path, help="write the totals here")
    parser.add_argument("--skip-workers", action="store_true", help="phase 1 only")
    args = parser.parse_args()
    c = Campaign()
    with tempfile.TemporaryDirectory(prefix="amst-hostile-") as folder:
        tmp = Path(folder)
        data, _ = write_data(tmp)
        env = service_env(tmp / "home", data, args.code.resolve())
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        subprocess.run([sys.executable, "-m", "launch", "db", "upgrade"], env=env, cwd=args.code, check=True,
                       capture_output=True)
        api_process = start(["serve", "api", "--port", str(port)], env, args.code, tmp / "api.log")
        try:
            wait_healthy(api_url)
            with httpx.Client(base_url=api_url, timeout=120) as api:
                submission_cases(c, api, tmp)
                patch_cases(c, api)
                sweep_cases(c, api)
            burst_of_sweeps(c, api_url)
            pinning_sweep(c, api_url)
        finally:
            stop(api_process)
        if not args.skip_workers:
            env = service_env(tmp / "home2", data, args.code.resolve())
            port = free_port()
            up = start(["up", "--no-ui", "--port", str(port)], env, args.code, tmp / "up.log")
            try:
                wait_healthy(f"http://127.0.0.1:{port}")
                formula_cells(c, f"http://127.0.0.1:{port}")
                crashing_runs(c, f"http://127.0.0.1:{port}")
            finally:
                stop(up)
    totals = {k: c.counts.get(k, 0) for k in ("cases", "5xx", "accepted", "outside data accepted", "oracle",
                                               "runs lost", "hang", "pinned", "service down")}
    others = {k: v for k, v in c.counts.items() if k not in totals}
    print("\ntotals:", json.dumps(totals), "\nother findings:", json.dumps(others))
    if args.json:
        args.json.write_text(json.dumps({"totals": totals, "other": others, "cases": c.lines}, indent=1))


if __name__ == "__main__":
    main()
