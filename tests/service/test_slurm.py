"""Workers as Slurm jobs, on a real one-node Slurm cluster of the test's own (tests/kit/slurm.py): `amst slurm
workers` submits them, a sweep submitted through the API finishes on them, `scancel` of a job mid-run and a job
reaching its time limit each hand their run back with no epoch lost or repeated, an idle worker leaves and its job
ends, and `amst slurm status` says what each job runs. The API and the run store are the stack's; no worker runs
outside Slurm. The timeline (submission to first epoch, time-limit hand-over to resume) is printed."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.kit.slurm import OneNodeSlurm, ensure_slurm, wait_for_state
from tests.kit.svc import ROOT, TERMINAL, Service, tiny_run, wait_until

LONG_EPOCHS = 120  # the run the 1-minute job holds (paced below: 3 batches an epoch, 0.5 s or more)
SWEEP_EPOCHS = 30  # `scancel` comes within its first 10 epochs: 20 or more (2 s or more) still to go
LIMIT_S = 60  # --time 1
# The long run's first attempt, on the 1-minute job, sleeps before every batch: it is still training when Slurm's
# signal comes (30 to 60 s into the job) on a machine of any speed. Its resumed attempt trains at full speed.
# Written as sitecustomize.py into a folder on PYTHONPATH, which sbatch passes on to the jobs' processes.
PACE_THE_FIRST_ATTEMPT = '''
import time

import amst_core.execute as execute

real = execute.execute_run


def execute_run(cfg, *args, should_stop=None, attempt=1, **kwargs):
    if cfg.name == "outlives-its-job" and attempt == 1:
        inner = should_stop

        def should_stop(*a):
            time.sleep(0.15)
            return inner(*a) if inner is not None else False
    return real(cfg, *args, should_stop=should_stop, attempt=attempt, **kwargs)


execute.execute_run = execute_run
'''


@pytest.fixture
def cluster(backend_env: dict[str, str]) -> Iterator[OneNodeSlurm]:
    """Stopped, its jobs ended, before the stack's database and broker are removed."""
    reason = ensure_slurm()
    if reason:
        pytest.skip(reason)
    slurm = OneNodeSlurm(cpus=4)
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.stop()


def amst(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "launch", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def submit_workers(env: dict[str, str], *options: str) -> list[str]:
    """`amst slurm workers` on the test cluster's partition, CPU workers of one CPU; the job ids it printed."""
    done = amst(env, "slurm", "workers", "--gpus-per-worker", "0", "--partition", "amst", "--cpus-per-worker", "1",
                *options)
    return done.stdout.split()


def get(svc: Service, path: str) -> dict | list:
    resp = httpx.get(f"{svc.url}{path}", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def worker_of(svc: Service, job_id: str) -> dict | None:
    """The worker row of a Slurm job (GET /workers' slurm.job_id)."""
    return next((w for w in get(svc, "/workers") if (w["slurm"] or {}).get("job_id") == job_id), None)


def at(stamp: str) -> float:
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def assert_every_epoch_once(svc: Service, run_id: str, epochs: int) -> None:
    series = get(svc, f"/runs/{run_id}/metrics?split=train&split=val")["series"]
    assert series
    for s in series:
        if s["component"] != "run":
            assert s["epochs"] == list(range(epochs)), (run_id, s["split"], s["component"], s["modality"], s["epochs"])


def test_worker_jobs_serve_a_sweep_and_hand_their_runs_back(cluster: OneNodeSlurm, service: Service,
                                                             tmp_path: Path) -> None:
    # Heartbeats 2 s apart (lost after 6 s), not the service tests' 0.5 s: five Python processes share 2 cores
    # here, and a worker whose training process is starting could miss 1.5 s of them and have its run reaped.
    service.env["AMST_HEARTBEAT_S"] = "2"
    service.start_api()
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PACE_THE_FIRST_ATTEMPT)
    env = {**service.env, **cluster.env, "PYTHONPATH": str(hook)}
    timeline: dict[str, float] = {}

    # A 1-minute job, alone, and the long run it takes (the only worker of the queue then).
    submitted = time.time()
    (limited,) = submit_workers(env, "--count", "1", "--time", "1", "--grace", "1", "--idle-exit", "120")
    resp = httpx.post(f"{service.url}/runs", json=tiny_run(name="outlives-its-job", method="naive",
                                                             epochs=LONG_EPOCHS), timeout=10)
    assert resp.status_code == 201, resp.text
    long_id = resp.json()["id"]

    def trained_or_ended() -> dict | None:
        run = get(service, f"/runs/{long_id}")
        return run if run["epochs_done"] >= 1 or run["status"] in TERMINAL else None

    run = wait_until(trained_or_ended, 120, interval=0.2, message=f"the long run's first epoch on job {limited}")
    assert run["status"] == "running", run  # not a run that ended at once (its error says why)
    timeline["1-minute job submitted -> first epoch"] = time.time() - submitted
    limited_worker = worker_of(service, limited)
    assert limited_worker and run["worker_id"] == limited_worker["id"]
    status = amst(env, "slurm", "status", "--api", service.url).stdout
    print(f"\namst slurm status:\n{status}")
    rows = {line.split()[0]: line for line in status.splitlines()[1:]}
    assert limited in rows, status
    row = rows[limited]
    still = get(service, f"/runs/{long_id}")
    if (still["attempt"], still["worker_id"]) == (1, limited_worker["id"]):  # on the job all along (no signal yet)
        assert "RUNNING" in row and f"{limited_worker['id']} alive, run outlives-its-job ({long_id})" in row, row

    # Two 5-minute jobs and a 4-run sweep (one job is cancelled mid-run), and a worker that idles.
    submitted = time.time()
    first, second = submit_workers(env, "--count", "2", "--time", "5", "--idle-exit", "120")
    (idler,) = submit_workers(env, "--count", "1", "--time", "5", "--idle-exit", "3", "--queue", "nobody-sends-here")
    resp = httpx.post(f"{service.url}/sweeps", json={"name": "on-slurm", "base": tiny_run(method="naive",
                      epochs=SWEEP_EPOCHS), "grid": {"seed": [0, 1, 2, 3]}}, timeout=30)
    assert resp.status_code == 201, resp.text
    sweep_id = resp.json()["id"]

    def mid_run() -> dict | None:
        worker = worker_of(service, first)
        run = get(service, f"/runs/{worker['current_run_id']}") if worker and worker["current_run_id"] else None
        return run if run and 1 <= run["epochs_done"] <= 10 else None

    victim = wait_until(mid_run, 120, interval=0.2, message=f"job {first}'s worker to be mid-run")
    timeline["5-minute jobs submitted -> first epoch"] = time.time() - submitted
    cancelled = time.time()
    cluster.command("scancel", first)

    # Everything ends: the sweep on the remaining job, the long run there after its job's time limit.
    resumed_epoch_at: list[float] = []

    def ended() -> tuple[dict, dict] | None:
        run, sweep = get(service, f"/runs/{long_id}"), get(service, f"/sweeps/{sweep_id}")
        if not resumed_epoch_at and run["attempt"] >= 2 and run["epochs_done"] > run["attempts"][-1]["start_epoch"]:
            resumed_epoch_at.append(time.time())
        over = run["status"] in ("succeeded", "failed") and sweep["status"] in ("succeeded", "finished")
        return (sweep, run) if over else None

    done, long_run = wait_until(ended, 300, interval=0.25, message="the sweep's runs and the long run to end")

    workers = {job: worker_of(service, job) for job in (limited, idler, first, second)}
    assert done["status"] == "succeeded" and done["progress"]["succeeded"] == 4, done["progress"]
    for run in done["runs"]:
        assert_every_epoch_once(service, run["id"], SWEEP_EPOCHS)
        trained_by = {a["worker_id"] for a in get(service, f"/runs/{run['id']}")["attempts"]}
        assert trained_by <= {workers[first]["id"], workers[second]["id"]}, trained_by
    attempts = get(service, f"/runs/{victim['id']}")["attempts"]
    assert (attempts[0]["status"], attempts[0]["worker_id"]) == ("interrupted", workers[first]["id"]), attempts
    assert (attempts[-1]["status"], attempts[-1]["worker_id"]) == ("succeeded", workers[second]["id"]), attempts
    assert attempts[1]["start_epoch"] >= 1, "resumed from its checkpoint"
    assert cluster.job(first)["JobState"] == "CANCELLED"
    timeline["scancel -> its run handed back"] = at(attempts[0]["ended_at"]) - cancelled

    assert long_run["status"] == "succeeded" and long_run["restarts"] == 0, long_run
    # Handed back before or after the 5-minute jobs started, it resumed on one of them (on the cancelled one
    # too, had it taken it then: interrupted there, once more).
    handed, *between, resumed = long_run["attempts"]
    assert (handed["status"], handed["worker_id"]) == ("interrupted", workers[limited]["id"]), handed
    assert all(a["status"] == "interrupted" for a in between), between
    assert resumed["status"] == "succeeded" and resumed["worker_id"] in (workers[first]["id"],
                                                                        workers[second]["id"]), resumed
    assert long_run["attempts"][1]["start_epoch"] >= 1, "resumed from its checkpoint, not from the start"
    assert_every_epoch_once(service, long_id, LONG_EPOCHS)
    job = wait_for_state(cluster, limited, {"COMPLETED", "TIMEOUT", "FAILED", "CANCELLED"}, 120)
    assert job["JobState"] == "COMPLETED", f"the worker left before its time limit: {job}"
    assert workers[limited]["state"] == "stopped", workers[limited]

    # The idle worker left on its own, having trained nothing, and its job ended.
    assert wait_for_state(cluster, idler, {"COMPLETED", "FAILED", "TIMEOUT"}, 60)["JobState"] == "COMPLETED"
    assert workers[idler]["state"] == "stopped" and workers[idler]["current_run_id"] is None, workers[idler]

    start = time.mktime(time.strptime(cluster.job(limited)["StartTime"], "%Y-%m-%dT%H:%M:%S"))
    timeline["1-minute job started -> run handed back (Slurm's signal, then the next batch)"] = \
        at(handed["ended_at"]) - start
    timeline["run handed back -> its time limit"] = start + LIMIT_S - at(handed["ended_at"])
    timeline["run handed back -> resumed on another job's worker (claimed)"] = \
        at(long_run["attempts"][1]["started_at"]) - at(handed["ended_at"])
    timeline["run handed back -> its first epoch after the resume"] = resumed_epoch_at[0] - at(handed["ended_at"])
    print("\nSlurm timeline:\n" + "\n".join(f"  {what}: {s:.1f} s" for what, s in timeline.items()))
    assert timeline["run handed back -> its time limit"] > 0

    refused = subprocess.run([sys.executable, "-m", "launch", "slurm", "workers", "--count", "1", "--gpus-per-worker",
                              "0", "--partition", "nope", "--time", "5"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "error: sbatch refused the job: sbatch: error: invalid partition" in \
        refused.stderr, refused.stderr
