"""What training each attempt in a process of its own costs a run: the same tiny synthetic run (1 epoch) trained
in the calling process (`worker.attempt.AttemptRunner`, as workers trained before issue 21) and through the
worker's path (`worker.runner.Executor.execute`: a process forked from the fork server, which the first attempt
starts), side by side, on SQLite in a temporary folder.

    python bench/attempt_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tiny_config():
    from amst_core.config import RunConfig

    return RunConfig.model_validate({"method": "naive", "dataset": {"name": "synthetic"}, "epochs": 1,
                                     "batch_size": 16, "device": "cpu", "model": {"width": 8}})


def new_run(settings) -> str:
    from amst_core.store import lifecycle
    from amst_core.store.db import session_scope

    with session_scope(settings.db_url) as s:
        run = lifecycle.create_run(s, tiny_config())
        s.flush()
        return run.id


def in_process(settings, worker_id: str) -> float:
    from amst_core.store import lifecycle
    from amst_core.store.db import session_scope
    from worker.attempt import AttemptRunner

    run_id = new_run(settings)
    started = time.perf_counter()
    with session_scope(settings.db_url) as s:
        attempt = lifecycle.claim(s, run_id, worker_id, "cpu")
    assert AttemptRunner(settings, worker_id, "cpu").run(run_id, attempt) == "succeeded"
    return time.perf_counter() - started


def in_child(executor) -> float:
    run_id = new_run(executor.settings)
    started = time.perf_counter()
    assert executor.execute(run_id) == "succeeded"
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amst-attempt-") as home:
        os.environ.update(AMST_HOME=home, AMST_ARTIFACTS=str(Path(home) / "artifacts"))
        os.environ.pop("DATABASE_URL", None)
        from amst_core.store.migrate import upgrade
        from worker.runner import Executor
        from worker.settings import get_worker_settings

        upgrade()
        settings = get_worker_settings()
        executor = Executor(settings, "bench-worker", "cpu")
        first = in_child(executor)  # starts the fork server
        rows = {"in the calling process (before issue 21)": [in_process(settings, "bench-worker")
                                                             for _ in range(args.runs)],
                "in a training process forked from the fork server": [in_child(executor) for _ in range(args.runs)]}
    print(f"first attempt of a worker (the fork server starts): {first:.2f} s")
    print("| | median | min | max |\n|---|---|---|---|")
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times):.2f} s | {min(times):.2f} s | {max(times):.2f} s |")
    before, after = (statistics.median(t) for t in rows.values())
    print(f"cost of a training process per attempt: {after - before:+.2f} s (median against median)")


if __name__ == "__main__":
    main()
