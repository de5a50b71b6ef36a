"""`amst up`: every service process on this machine, supervised.

It is the embedded default: SQLite and kombu's SQLAlchemy broker transport under ./.amst/ (no Redis,
no Docker), or PostgreSQL and Redis when DATABASE_URL and BROKER_URL are set. It migrates the database,
starts the API, one worker and the dashboard as child processes (each in its own process group), optionally
submits a demo run and prints its status changes, restarts a child that dies, and stops them all on SIGINT or
SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx

from amst_client import ApiError, ApiUnavailable, Client
from amst_core.store.db import home
from amst_core.vocab import HELPER, TERMINAL, component
from launch import supervisor
from launch.supervisor import CRASH_LOOP, tail

# Restarted for ever (every BACKOFF_MAX_S at most) rather than stopping everything: the API must keep serving, and a
# worker can die for its runs' sake (its training processes are children of its own; a worker killed with them,
# by a person or the OOM killer, is started again and its run resumed).
RESTARTED_FOR_EVER = ("worker",)


def embedded_env() -> dict[str, str]:
    """The environment of `amst up`'s children: one .amst folder, absolute, shared by every process."""
    env = dict(os.environ)
    env["AMST_HOME"] = str(home())
    env.setdefault("AMST_DATA_ROOT", str(Path(env.get("AMST_DATA_ROOT", "./data")).resolve()))
    return env


class DemoRun:
    """One run of `amst up --demo`: once the API answers, submit it and print its status as it changes. Polled
    from the supervisor's loop through amst_client with short timeouts, so Ctrl-C is never held up."""

    def __init__(self, api_url: str, config: dict, every_s: float = 0.5,
                 transport: httpx.BaseTransport | None = None):
        self.config, self.every_s = config, every_s
        self.api = Client(api_url, timeout_s=5.0, transport=transport)
        self.key = uuid.uuid4().hex  # a submit whose answer was lost and is sent again returns the same run
        self.run_id: str | None = None
        self.last: tuple | None = None
        self.next_at = 0.0
        self.done = False
        self.final: dict | None = None  # the run as it ended

    def poll(self) -> None:
        if self.done or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + self.every_s
        try:
            if self.run_id is None:
                if self.api.health()["status"] != "ok":
                    return
                run = self.api.submit(self.config, idempotency_key=self.key)
                self.run_id = run["id"]
                print(f"demo run {run['id']} submitted: {run['method']} on {run['dataset']}, "
                      f"{run['epochs_total']} epochs", flush=True)
            else:
                run = self.api.run(self.run_id)
        except (ApiError, ApiUnavailable, KeyError):
            return  # the API is still starting (or briefly busy): try again on the next poll
        self.report(run)

    def report(self, run: dict) -> None:
        """Print what changed since the last poll: the new status, then one line per epoch finished since (a short
        epoch can start and end between two polls; its line is still printed, before the final status)."""
        status, epochs = run["status"], run["epochs_done"]
        last_status, last_epochs = self.last or (None, 0)
        ended = status in TERMINAL
        if status != last_status and not ended:
            print(f"demo run {run['id']}: {status}", flush=True)
        if epochs > last_epochs and last_status != "running" and status != "running":
            print(f"demo run {run['id']}: running", flush=True)  # it ran between two polls
        for epoch in range(last_epochs + 1, epochs + 1):
            best = run["best_val_acc"] if epoch == epochs else None
            print(f"demo run {run['id']}: epoch {epoch}/{run['epochs_total']}"
                  + (f", best val acc {best:.3f}" if best is not None else ""), flush=True)
        if status != last_status and ended:
            print(f"demo run {run['id']}: {status}" + (f" ({run['error']})" if run.get("error") else ""), flush=True)
        self.last = (status, epochs)
        if ended:
            self.done, self.final = True, run
            test = run["test_acc_at_best"]
            if status == "succeeded" and test is not None:
                print(f"demo run {run['id']}: test accuracy at the best epoch {test:.3f}", flush=True)


class Demo:
    """`amst up --demo CONFIG`: the config's run and, by default, the same run with the baseline method (same
    data, seed and settings), so that a newcomer sees what the method changes: both results side by side, and the
    dashboard's Compare view of the pair."""

    def __init__(self, api_url: str, configs: list[dict], ui_url: str | None = None, every_s: float = 0.5,
                 transport: httpx.BaseTransport | None = None):
        self.runs = [DemoRun(api_url, c, every_s, transport) for c in configs]
        self.ui_url = ui_url
        self.done = False

    def poll(self) -> None:
        for run in self.runs:
            if not run.done:
                run.poll()
            if run.run_id is None:
                break  # submitted in order, so that they queue (and train) in order
        if not self.done and all(run.done for run in self.runs):
            self.done = True
            print(side_by_side([run.final for run in self.runs if run.final is not None], self.ui_url), flush=True)


def side_by_side(runs: list[dict], ui_url: str | None) -> str:
    """The demo's runs in one table (the slow modality's helper shows whether the method trained it), the Compare
    link of the pair, and how to stop."""
    lines = []
    if len(runs) > 1:
        first = runs[0]
        lines.append(f"demo: {' against '.join(r['method'] for r in runs)} on {first['dataset']}, seed "
                     f"{first['config']['seed']}, {first['epochs_total']} epochs each")
        lines.append(f"  {'method':<12} {'run':<16}  {'best val acc':>12}  {'test acc at best':>16}  helpers at best "
                     "(test)")
        for r in runs:
            lines.append(f"  {r['method']:<12} {r['id']:<16}  {fmt(r['best_val_acc']):>12}  "
                         f"{fmt(r['test_acc_at_best']):>16}  {helpers_at_best(r)}")
        if ui_url:
            lines.append(f"compare them: {ui_url}/compare?runs={','.join(r['id'] for r in runs)}")
    lines.append("press Ctrl-C to stop everything")
    return "\n".join(lines)


def helpers_at_best(run: dict) -> str:
    """Each modality's helper test accuracy at the best epoch (how well each encoder learned its modality;
    AMST-FULL's are its alternating module's, as in Doc/results.md)."""
    at_best = (run.get("summary") or {}).get("test_at_best") or {}
    helpers = at_best.get(component(HELPER, "alt_")) or at_best.get(HELPER) or {}
    return " · ".join(f"{m} {v:.3f}" for m, v in sorted(helpers.items())) or "-"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def demo_pair(config: dict, baseline: str | None) -> list[dict]:
    """The demo's run configs: `config`, and the same with the baseline method where it names one (its method-
    specific settings left to the baseline's defaults)."""
    if not baseline or baseline == config["method"]:
        return [config]
    twin = {k: v for k, v in config.items() if k not in ("method_params", "fusion", "skip")}
    name, method = config.get("name") or "demo", config["method"]
    return [config, {**twin, "method": baseline,
                     "name": name.replace(method, baseline) if method in name else f"{name}-{baseline}"}]


def up(port: int, ui: bool, ui_port: int, demo: list[dict] | None = None) -> int:
    from amst_core.store.migrate import upgrade

    env = embedded_env()
    os.environ.update(env)
    upgrade()
    backend = "PostgreSQL" if os.environ.get("DATABASE_URL") else f"SQLite in {env['AMST_HOME']}"
    broker = "Redis" if os.environ.get("BROKER_URL", "").startswith("redis") else "embedded SQLite broker"
    print(f"amst up: database {backend}, {broker}", flush=True)
    amst = [sys.executable, "-m", "launch"]
    commands = {"api": [*amst, "serve", "api", "--port", str(port)], "worker": [*amst, "serve", "worker"]}
    env.setdefault("AMST_API_URL", f"http://127.0.0.1:{port}")
    # The pages that may change runs when no token is set: this dashboard's and the API's own /docs.
    env.setdefault("AMST_ALLOWED_ORIGINS", ",".join(f"http://{host}:{p}" for p in (ui_port, port)
                                                    for host in ("127.0.0.1", "localhost")))
    if ui:
        commands["ui"] = [*amst, "serve", "ui", "--port", str(ui_port)]
    print(f"API:  http://127.0.0.1:{port}  (docs at /docs)", flush=True)
    if ui:
        print(f"dashboard: http://127.0.0.1:{ui_port}", flush=True)
    watcher = Demo(f"http://127.0.0.1:{port}", demo, f"http://127.0.0.1:{ui_port}" if ui else None) if demo else None
    return supervise(commands, env, watcher.poll if watcher else None)


def supervise(commands: dict[str, list[str]], env: dict[str, str], tick=None) -> int:
    """Start the children and keep them running: one that dies (a crash, SIGKILL, the OOM killer) is started
    again after a growing pause, with a message; an API or dashboard that keeps dying at once (a port in use) ends
    everything, a worker never does (RESTARTED_FOR_EVER).
    A signal stops all of them (whole process groups). The handlers are installed first, so a Ctrl-C at any
    moment still stops every child."""
    stopping = {"signal": None}

    def on_signal(signum, _frame) -> None:
        if stopping["signal"] is None:
            print("\namst up: stopping API, worker and dashboard ...", file=sys.stderr, flush=True)
        stopping["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    children = {name: supervisor.Child(name, cmd) for name, cmd in commands.items()}
    logs = Path(env["AMST_HOME"]) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    print(f"logs: {logs}/{{{','.join(commands)}}}.log", flush=True)
    code = 0
    try:
        for child in children.values():
            if stopping["signal"] is None:
                supervisor.start(child, env, logs)
        while stopping["signal"] is None:
            broken = supervisor.watch(children, env, logs, restarted_for_ever=RESTARTED_FOR_EVER)
            if broken is not None:
                print(f"amst up: {broken.name} keeps failing at start ({CRASH_LOOP} times in a row); stopping. "
                      f"--- end of {logs / broken.name}.log ---\n{tail(logs / f'{broken.name}.log')}",
                      file=sys.stderr, flush=True)
                code = 1
                break
            if tick is not None:
                tick()
            time.sleep(0.2)
    finally:
        supervisor.stop_all({c.name: c.process for c in children.values() if c.process is not None})
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
