"""How long a sweep takes through the service, and what the queue adds per run: an API and 1 or 2 workers on the
embedded default (SQLite + SQLite broker), a sweep of tiny synthetic runs (one short epoch each, so the queue's
share shows), with `max_concurrent` = the number of workers.

Per run: its time in the worker (started -> finished). Queue overhead per run = (sweep wall time x workers - the
runs' summed worker time) / runs: what dispatching, releasing held runs (the reaper pass, AMST_REAPER_S) and
starting a run cost on top of training.

Usage: python bench/sweep_queue.py [--runs 12] [--workers 1,2] [--reaper-s 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BASE = {"method": "naive", "dataset": {"name": "synthetic", "synthetic": {"samples": {"train": 32, "val": 16,
                                                                                      "test": 16}}},
        "model": {"frames": 1, "width": 8}, "epochs": 1, "batch_size": 16, "device": "cpu"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(runs: int, workers: int, reaper_s: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "BROKER_URL", "AMST_"))}
        env.update({"AMST_HOME": tmp, "AMST_DATA_ROOT": f"{tmp}/data", "AMST_REAPER_S": str(reaper_s),
                    "AMST_HEARTBEAT_S": "1", "OMP_NUM_THREADS": "1"})
        subprocess.run([sys.executable, "-m", "launch", "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        port = free_port()
        procs = [subprocess.Popen([sys.executable, "-m", "launch", "serve", "api", "--port", str(port)], env=env,
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)]
        procs += [subprocess.Popen([sys.executable, "-m", "launch", "serve", "worker"], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
                  for _ in range(workers)]
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            time.sleep(5)  # the workers are up and listening
            started = time.perf_counter()
            sweep = httpx.post(f"{url}/sweeps", json={"base": BASE, "grid": {"seed": list(range(runs))},
                                                      "max_concurrent": workers}, timeout=30).json()
            while sweep["status"] not in ("succeeded", "finished", "cancelled"):
                time.sleep(0.2)
                sweep = httpx.get(f"{url}/sweeps/{sweep['id']}", timeout=10).json()
            wall = time.perf_counter() - started
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                p.wait(timeout=30)
    busy = [(datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(r["started_at"])).total_seconds()
            for r in sweep["runs"]]
    return {"runs": runs, "workers": workers, "wall_s": wall, "run_s": sum(busy) / len(busy),
            "overhead_per_run_s": (wall * workers - sum(busy)) / runs, "succeeded": sweep["progress"]["succeeded"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=12)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--reaper-s", type=float, default=5.0, help="AMST_REAPER_S (5 is the default)")
    args = p.parse_args()
    print(f"| workers | runs | sweep wall time (s) | mean run time in its worker (s) | queue overhead per run (s) |\n"
          f"|---:|---:|---:|---:|---:|   (AMST_REAPER_S {args.reaper_s})")
    for workers in (int(w) for w in args.workers.split(",")):
        r = measure(args.runs, workers, args.reaper_s)
        print(f"| {workers} | {r['runs']} ({r['succeeded']} succeeded) | {r['wall_s']:.1f} | {r['run_s']:.2f} | "
              f"{r['overhead_per_run_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
