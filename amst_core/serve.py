"""`amst serve api|worker` and `amst up`: the service processes, started from the command line.

`amst up` is the embedded default: SQLite and kombu's SQLAlchemy broker transport under ./.amst/ (no Redis,
no Docker), or PostgreSQL and Redis when DATABASE_URL and BROKER_URL are set. It migrates the database,
starts the API and one worker as child processes, and stops them all on SIGINT or SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from amst_core.store.db import home

STOP_GRACE_S = 20.0


def serve_api(host: str, port: int) -> None:
    import uvicorn

    # An open server-sent event stream would otherwise hold a graceful shutdown forever.
    uvicorn.run("api.main:create_app", factory=True, host=host, port=port, log_level="info",
                timeout_graceful_shutdown=5)


def serve_worker(gpu: int | None, queue: str | None) -> None:
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)  # before torch is imported: this process sees one GPU
    queues = queue or ("gpu" if gpu is not None else "gpu,cpu")
    from celery import signals

    from worker.app import TASK_NAME, app
    from worker.runner import current_executor, start_maintenance

    def send(run_id: str, q: str) -> None:
        app.send_task(TASK_NAME, args=[run_id], queue=q)

    start_maintenance(queues, send)
    signals.worker_shutting_down.connect(lambda **_: current_executor().shutdown(), weak=False)
    name = f"amst-{'gpu' + str(gpu) if gpu is not None else 'cpu'}-{os.getpid()}@%h"
    app.worker_main(["worker", "--pool=solo", "--concurrency=1", "-Q", queues, "-n", name, "--loglevel=INFO",
                     "--without-gossip", "--without-mingle"])


def ui_command(host: str, port: int) -> list[str]:
    """The dashboard: a Streamlit server that talks only to the API (AMST_API_URL). Error details stay in the
    server log; pages show their own messages."""
    import ui

    app = Path(ui.__file__).parent / "app.py"
    return [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
            "--server.address", host, "--server.port", str(port), "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.showErrorDetails", "none", "--client.toolbarMode", "minimal",
            "--theme.primaryColor", "#0072B2"]


def serve_ui(host: str, port: int) -> None:
    cmd = ui_command(host, port)
    os.execv(cmd[0], cmd)  # Streamlit becomes this process: signals reach it directly


def embedded_env() -> dict[str, str]:
    """The environment of `amst up`'s children: one .amst folder, absolute, shared by every process."""
    env = dict(os.environ)
    env["AMST_HOME"] = str(home())
    env.setdefault("AMST_DATA_ROOT", str(Path(env.get("AMST_DATA_ROOT", "./data")).resolve()))
    return env


def up(port: int, ui: bool, ui_port: int) -> int:
    from amst_core.store.migrate import upgrade

    env = embedded_env()
    os.environ.update(env)
    upgrade()
    backend = "PostgreSQL" if os.environ.get("DATABASE_URL") else f"SQLite in {env['AMST_HOME']}"
    broker = "Redis" if os.environ.get("BROKER_URL", "").startswith("redis") else "embedded SQLite broker"
    print(f"amst up: database {backend}, {broker}", flush=True)
    amst = [sys.executable, "-m", "amst_core.cli"]
    commands = {"api": [*amst, "serve", "api", "--port", str(port)], "worker": [*amst, "serve", "worker"]}
    env.setdefault("AMST_API_URL", f"http://127.0.0.1:{port}")
    if ui:
        commands["ui"] = [*amst, "serve", "ui", "--port", str(ui_port)]
    print(f"API:  http://127.0.0.1:{port}  (docs at /docs)", flush=True)
    if ui:
        print(f"dashboard: http://127.0.0.1:{ui_port}", flush=True)
    return supervise(commands, env)


def supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Start the children, wait until a signal arrives or one exits, then stop all of them (whole process
    groups). The handlers are installed first, so a Ctrl-C at any moment still stops every child."""
    stopping = {"signal": None}

    def on_signal(signum, _frame) -> None:
        stopping["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: dict[str, subprocess.Popen] = {}
    try:
        for name, cmd in commands.items():
            if stopping["signal"] is None:
                children[name] = subprocess.Popen(cmd, env=env, start_new_session=True)
        while stopping["signal"] is None:
            exited = [name for name, p in children.items() if p.poll() is not None]
            if exited:
                print(f"amst up: {', '.join(exited)} exited; stopping the rest", file=sys.stderr, flush=True)
                break
            time.sleep(0.2)
    finally:
        stop_all(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping["signal"] is not None else 1


def stop_all(children: dict[str, subprocess.Popen]) -> None:
    for p in children.values():
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for p in children.values():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
