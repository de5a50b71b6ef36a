"""`amst slurm workers` and `amst slurm status`: service workers as Slurm batch jobs.

Each job runs one `amst serve worker` that joins the queue like any other worker: it needs to reach the run store
(DATABASE_URL), the broker (BROKER_URL) and the shared artifacts and data folders, and nothing else. Slurm is asked
through its own commands (sbatch, squeue), nothing is scheduled here.

The time limit: `--signal=B:TERM@<grace>` has Slurm send SIGTERM to the batch shell alone, `grace` seconds before
the job's end (the man page says up to 60 s earlier; slurmctld looks at time limits every 30 s, so here between
`grace` and `grace` + 30 s before it). The script `exec`s the worker, so that shell *is* the worker: SIGTERM is
Celery's warm shutdown, the worker asks its training process to stop at the next batch, hands the run back to the
queue (it continues from its last epoch's checkpoint on another worker) and exits, and the job ends before its
time limit. Without `B:` Slurm signals job steps only (srun's), and a batch job running the worker has none.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

JOB_NAME = "amst-worker"  # what `amst slurm status` looks for in squeue
DEFAULT_GRACE_S = 120
DEFAULT_IDLE_EXIT_S = 600
DEFAULT_CPUS = 4
# Values written into the script: no spaces, quotes or newlines (a newline would start a line of the script).
# {option: (pattern, what it allows)}
VALUES = {"--partition": (re.compile(r"[\w.@+-]+"), "letters, digits and . @ + - _"),
          "--account": (re.compile(r"[\w.@+-]+"), "letters, digits and . @ + - _"),
          "--constraint": (re.compile(r"[\w.,:&|\[\]*()!+-]+"), "feature names and Slurm's & | [ ] * ( ) ! , :"),
          "--queue": (re.compile(r"[\w.,+-]+"), "queue names separated by commas")}
# Variables that name one worker process: sbatch copies the submitting shell's environment into the job.
ONE_WORKER = ("AMST_WORKER_ID", "AMST_WORKER_GPU", "AMST_WORKER_HEALTH_FILE", "AMST_GPU_SET_MEMBER")
PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


class SlurmError(Exception):
    """Slurm's commands are missing or refused: the message says which and quotes Slurm."""


@dataclass(frozen=True)
class WorkerJobs:
    """What `amst slurm workers` submits: `count` jobs, each one worker on `gpus` GPUs."""

    count: int
    gpus: int
    partition: str
    time: str
    account: str | None = None
    constraint: str | None = None
    cpus: int = DEFAULT_CPUS
    grace_s: int = DEFAULT_GRACE_S
    idle_exit_s: float = DEFAULT_IDLE_EXIT_S
    queue: str | None = None
    log_dir: Path | None = None


def time_limit_s(text: str) -> int:
    """Seconds of a Slurm time limit, in sbatch's formats: minutes, minutes:seconds, hours:minutes:seconds,
    days-hours, days-hours:minutes, days-hours:minutes:seconds."""
    days, dash, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    if len(parts) > 3 or not all(p.isdigit() for p in parts) or (dash and not days.isdigit()):
        raise ValueError(f"{text!r} is not a Slurm time limit: give minutes (30), minutes:seconds, "
                         "hours:minutes:seconds, days-hours, days-hours:minutes or days-hours:minutes:seconds")
    n = [int(p) for p in parts]
    if dash:  # days-hours[:minutes[:seconds]]
        h, m, s = [*n, 0, 0][:3]
        return int(days) * 86400 + h * 3600 + m * 60 + s
    if len(n) == 3:  # hours:minutes:seconds
        return n[0] * 3600 + n[1] * 60 + n[2]
    return n[0] * 60 + (n[1] if len(n) == 2 else 0)  # minutes[:seconds]


def check(jobs: WorkerJobs) -> None:
    """Refuse what sbatch would refuse late or what would make a useless job, naming the option."""
    if jobs.count < 1:
        raise ValueError(f"--count {jobs.count}: submit at least one worker")
    if jobs.gpus < 0:
        raise ValueError(f"--gpus-per-worker {jobs.gpus}: 0 (a CPU worker) or more")
    if jobs.cpus < 1:
        raise ValueError(f"--cpus-per-worker {jobs.cpus}: at least 1")
    given = {"--partition": jobs.partition, "--account": jobs.account, "--constraint": jobs.constraint,
             "--queue": jobs.queue}
    for option, value in given.items():
        pattern, allowed = VALUES[option]
        if value is not None and not pattern.fullmatch(value):
            raise ValueError(f"{option} {value!r}: give {allowed}, no spaces or quotes")
    try:
        limit = time_limit_s(jobs.time)
    except ValueError as err:
        raise ValueError(f"--time {err}") from None
    if not 0 < jobs.grace_s < limit:
        raise ValueError(f"--grace {jobs.grace_s}: give a number of seconds shorter than the time limit "
                         f"(--time {jobs.time} is {limit} s), or Slurm signals the worker as soon as it starts")
    if jobs.idle_exit_s < 0:
        raise ValueError(f"--idle-exit {jobs.idle_exit_s:g}: seconds (0: never)")


def worker_command(jobs: WorkerJobs) -> list[str]:
    """`amst serve worker` for a job of `gpus` GPUs. Slurm sets CUDA_VISIBLE_DEVICES to the job's GPUs, which
    --gpu and --gpus count among."""
    argv = [sys.executable, "-m", "launch", "serve", "worker"]
    if jobs.gpus == 1:
        argv += ["--gpu", "0"]
    elif jobs.gpus > 1:
        argv += ["--gpus", ",".join(map(str, range(jobs.gpus)))]
    queue = jobs.queue or ("cpu" if jobs.gpus == 0 else None)  # a CPU job serves the runs asking for the CPU
    return argv + (["--queue", queue] if queue else [])


def worker_env(jobs: WorkerJobs, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The worker settings this shell gives (worker.settings.WorkerSettings: their exact names), with the run
    store, broker and folders written out absolute, as the job's worker must see them."""
    from worker.settings import WorkerSettings

    settings = WorkerSettings()  # a bad value is refused here, not in K jobs later
    names = {field.alias for field in WorkerSettings.model_fields.values() if field.alias}
    env = {name: environ[name] for name in sorted(names - set(ONE_WORKER)) if name in environ}
    env.update({"DATABASE_URL": settings.db_url, "BROKER_URL": settings.celery_broker,
                "AMST_ARTIFACTS": str(settings.artifacts_dir), "AMST_DATA_ROOT": str(settings.data_root.resolve())})
    env.pop("AMST_WORKER_IDLE_EXIT_S", None)
    if jobs.idle_exit_s:
        env["AMST_WORKER_IDLE_EXIT_S"] = f"{jobs.idle_exit_s:g}"
    if jobs.gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU job keeps off GPUs the submitting shell could see
    return env


def log_folder(jobs: WorkerJobs, env: Mapping[str, str]) -> Path:
    return jobs.log_dir.resolve() if jobs.log_dir else Path(env["AMST_ARTIFACTS"]) / "slurm"


def batch_script(jobs: WorkerJobs, env: Mapping[str, str]) -> str:
    """One worker's sbatch script."""
    directives = [f"--job-name={JOB_NAME}", f"--partition={jobs.partition}", f"--time={jobs.time}", "--nodes=1",
                  "--ntasks=1", f"--cpus-per-task={jobs.cpus}", f"--signal=B:TERM@{jobs.grace_s}",
                  f"--output={log_folder(jobs, env)}/%x-%j.out"]
    if jobs.gpus:
        directives.append(f"--gres=gpu:{jobs.gpus}")
    if jobs.account:
        directives.append(f"--account={jobs.account}")
    if jobs.constraint:
        directives.append(f"--constraint={jobs.constraint}")
    idle = f"after {jobs.idle_exit_s:g} s without a run" if jobs.idle_exit_s else "never while idle"
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives),
             "# One AMST worker (`amst slurm workers`). It leaves on its own " + idle + "; at Slurm's SIGTERM",
             f"# ({jobs.grace_s} s or more before the time limit, to this shell, which exec makes the worker) it "
             "hands its run back",
             "# to the queue at the next batch and exits.",
             f"unset {' '.join(ONE_WORKER)}",
             *(f"export {name}={shlex.quote(value)}" for name, value in env.items()),
             "exec " + shlex.join(worker_command(jobs))]
    return "\n".join(lines) + "\n"


def masked(script: str) -> str:
    """The script as --dry-run prints it: passwords in URLs replaced (sbatch gets them)."""
    return PASSWORD.sub(r"\1***@", script)


def sbatch(script: str, runner=subprocess.run) -> str:
    """Submit one script on standard input (no file of it is left); the job's id."""
    if shutil.which("sbatch") is None:
        raise SlurmError("sbatch: not found on PATH; run this where Slurm's commands are (a login node), or see "
                         "the script with --dry-run")
    done = runner(["sbatch", "--parsable"], input=script, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        raise SlurmError(f"sbatch refused the job: {said}")
    return done.stdout.strip().split(";")[0]


def submit_workers(jobs: WorkerJobs, dry_run: bool = False, runner=subprocess.run) -> list[str]:
    check(jobs)
    env = worker_env(jobs)
    script = batch_script(jobs, env)
    if dry_run:
        print(masked(script), end="")
        return []
    if env["DATABASE_URL"].startswith("sqlite") or env["BROKER_URL"].startswith("sqla+sqlite"):
        print("warning: the run store or broker is a SQLite file on this machine: jobs on other nodes cannot use it "
              "(set DATABASE_URL and BROKER_URL to PostgreSQL and Redis)", file=sys.stderr)
    log_folder(jobs, env).mkdir(parents=True, exist_ok=True)  # Slurm writes no folder it lacks
    submitted: list[str] = []
    for _ in range(jobs.count):
        try:
            submitted.append(sbatch(script, runner))
        except SlurmError as err:
            if submitted:
                raise SlurmError(f"{err} (after submitting job(s) {', '.join(submitted)})") from None
            raise
        print(submitted[-1])
    print(f"{len(submitted)} worker job(s) submitted to partition {jobs.partition} ({jobs.gpus} GPU(s) each, "
          f"--time {jobs.time}); their logs: {log_folder(jobs, env)}; `amst slurm status` lists them",
          file=sys.stderr)
    return submitted


# ---- status -------------------------------------------------------------------------------------------------------

SQUEUE_FIELDS = ("job_id", "state", "used", "left", "where")
SQUEUE_FORMAT = "%i|%T|%M|%L|%R"  # id, state, time used, time left, node (or why it waits)


@dataclass(frozen=True)
class QueuedJob:
    job_id: str
    state: str
    used: str
    left: str
    where: str


def squeue(runner=subprocess.run) -> list[QueuedJob]:
    """This user's worker jobs, as squeue lists them."""
    if shutil.which("squeue") is None:
        raise SlurmError("squeue: not found on PATH; run this where Slurm's commands are (a login node)")
    done = runner(["squeue", "--me", f"--name={JOB_NAME}", "--noheader", f"--format={SQUEUE_FORMAT}"],
                  capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SlurmError(f"squeue failed: {(done.stderr or done.stdout).strip()}")
    jobs = []
    for line in done.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) == len(SQUEUE_FIELDS):
            jobs.append(QueuedJob(*fields))
    return jobs


def what_it_runs(job: QueuedJob, workers: Sequence[Mapping] | None) -> str:
    """The worker of a job (GET /workers' slurm.job_id) and the run it trains."""
    if workers is None:
        return "?"
    mine = [w for w in workers if (w.get("slurm") or {}).get("job_id") == job.job_id]
    if not mine:
        return "no worker yet" if job.state in ("PENDING", "RUNNING", "CONFIGURING") else "-"
    worker = max(mine, key=lambda w: (w["state"] == "alive", w["started_at"]))
    run, name = worker.get("current_run_id"), worker.get("current_run_name")
    doing = "idle" if not run else f"run {name} ({run})" if name else f"run {run}"
    return f"{worker['id']} {worker['state']}, {doing}"


def status_table(jobs: Sequence[QueuedJob], workers: Sequence[Mapping] | None) -> str:
    rows = [("JOB", "STATE", "USED", "LEFT", "NODE", "WORKER")]
    rows += [(j.job_id, j.state, j.used, j.left, j.where, what_it_runs(j, workers)) for j in jobs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1]
                     for r in rows)


def show_status(api: str) -> int:
    from amst_client import ApiError, ApiUnavailable, Client

    jobs = squeue()
    workers = None
    try:
        with Client(api, timeout_s=10.0) as client:
            workers = client.workers()
    except (ApiError, ApiUnavailable) as err:
        print(f"warning: {err}; the jobs only", file=sys.stderr)
    if not jobs:
        print(f"no {JOB_NAME} job of yours in squeue", file=sys.stderr)
        return 0
    print(status_table(jobs, workers))
    return 0


# ---- the command --------------------------------------------------------------------------------------------------

def cmd_workers(args: argparse.Namespace) -> int:
    jobs = WorkerJobs(count=args.count, gpus=args.gpus_per_worker, partition=args.partition, time=args.time,
                      account=args.account, constraint=args.constraint, cpus=args.cpus_per_worker,
                      grace_s=args.grace, idle_exit_s=args.idle_exit, queue=args.queue, log_dir=args.log_dir)
    submit_workers(jobs, dry_run=args.dry_run)
    return 0


def run_command(func, args: argparse.Namespace) -> int:
    """The command's errors as the CLI says them (amst_core.cli: `error: ...`, exit status 2)."""
    from amst_core.config import ConfigError

    try:
        return func(args)
    except (ValueError, SlurmError) as err:
        raise ConfigError(None, str(err)) from None


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("slurm", help="service workers as Slurm jobs: submit them, list them")
    actions = p.add_subparsers(dest="action", required=True)

    w = actions.add_parser("workers", help="submit COUNT jobs, each running one worker that joins the queue")
    w.add_argument("--count", type=int, required=True, help="how many worker jobs")
    w.add_argument("--gpus-per-worker", type=int, required=True,
                   help="GPUs of each job (--gres=gpu:G); 0: a CPU worker serving runs that ask for the CPU")
    w.add_argument("--partition", required=True)
    w.add_argument("--time", required=True, help="each job's time limit, in sbatch's formats (minutes, h:m:s, d-h)")
    w.add_argument("--account")
    w.add_argument("--constraint", help="node features the jobs need (sbatch --constraint)")
    w.add_argument("--cpus-per-worker", type=int, default=DEFAULT_CPUS,
                   help=f"CPUs of each job, for data loading (default {DEFAULT_CPUS})")
    w.add_argument("--grace", type=int, default=DEFAULT_GRACE_S, metavar="S",
                   help="Slurm signals the worker this many seconds before the time limit (up to 30 s earlier): "
                        f"it hands its run back and leaves (default {DEFAULT_GRACE_S})")
    w.add_argument("--idle-exit", type=float, default=DEFAULT_IDLE_EXIT_S, metavar="S",
                   help=f"a worker with no run for this long leaves and its job ends (default {DEFAULT_IDLE_EXIT_S}; "
                        "0: never)")
    w.add_argument("--queue", help="the worker's queues (default: cpu for a CPU worker, as amst serve worker "
                                   "--gpu/--gpus choose for GPUs)")
    w.add_argument("--log-dir", type=Path, help="where Slurm writes each job's output (default $AMST_ARTIFACTS/slurm)")
    w.add_argument("--dry-run", action="store_true", help="print the script instead of submitting it "
                   "(passwords masked)")
    w.set_defaults(func=lambda args: run_command(cmd_workers, args))

    s = actions.add_parser("status", help="your worker jobs from squeue, and what each worker runs (GET /workers)")
    s.add_argument("--api", default=os.environ.get("AMST_API_URL") or "http://127.0.0.1:8000",
                   help="the AMST API (default AMST_API_URL, else http://127.0.0.1:8000)")
    s.set_defaults(func=lambda args: run_command(lambda a: show_status(a.api), args))
