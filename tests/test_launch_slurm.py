"""`amst slurm workers` and `amst slurm status` without a cluster (launch/slurm.py): the script each job runs, what
is refused and how, sbatch missing or refusing, and the status table. tests/service/test_slurm.py runs them on a
real one-node cluster."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from launch import slurm
from launch.cli import main

DEPLOY_DOC = Path(__file__).resolve().parents[1] / "Doc" / "deploy.md"
JOBS = slurm.WorkerJobs(count=2, gpus=0, partition="amst", time="5")
SQUEUE = "11|RUNNING|1:02|3:58|node07\n12|PENDING|0:00|5:00|(Resources)\n13|RUNNING|0:10|4:50|node08\n"


@pytest.fixture(autouse=True)
def service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AMST_", "DATABASE_URL", "BROKER_URL", "SLURM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", "postgresql://amst:s3cret@db.lab:5432/amst")
    monkeypatch.setenv("BROKER_URL", "redis://:hidden@redis.lab:6379/0")
    monkeypatch.setenv("AMST_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("AMST_DATA_ROOT", str(tmp_path / "data"))


def fake_command(folder: Path, name: str, body: str) -> None:
    """A `name` on PATH that runs `body` (a shell script)."""
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(("text", "seconds"), [("5", 300), ("90:30", 5430), ("1:00:00", 3600), ("2-0", 172800),
                                               ("1-2:30", 95400), ("0-0:0:45", 45)])
def test_slurm_time_limits_are_read_as_sbatch_reads_them(text: str, seconds: int) -> None:
    assert slurm.time_limit_s(text) == seconds


@pytest.mark.parametrize("text", ["", "5m", "1:2:3:4", "a-1", "-5", "1.5"])
def test_a_time_limit_sbatch_would_not_read_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Slurm time limit"):
        slurm.time_limit_s(text)


@pytest.mark.parametrize(("change", "says"), [
    ({"count": 0}, "--count 0"),
    ({"gpus": -1}, "--gpus-per-worker -1"),
    ({"partition": "gpu\n#SBATCH --qos=high"}, "--partition"),
    ({"account": "lab one"}, "--account 'lab one'"),
    ({"constraint": "a100'"}, "--constraint"),
    ({"time": "soon"}, "--time 'soon' is not a Slurm time limit"),
    ({"time": "2", "grace_s": 120}, "--grace 120: .* shorter than the time limit \\(--time 2 is 120 s\\)"),
    ({"idle_exit_s": -1}, "--idle-exit -1"),
])
def test_what_would_make_a_useless_or_wrong_job_is_refused_naming_the_option(change: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        slurm.check(slurm.WorkerJobs(**{**JOBS.__dict__, **change}))


def test_the_script_runs_the_worker_with_the_services_settings_and_slurms_signal(monkeypatch: pytest.MonkeyPatch,
                                                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("AMST_HEARTBEAT_S", "5")  # a worker setting this shell gives: the job's worker gets it
    monkeypatch.setenv("AMST_API_TOKEN", "t0ken")  # the API's: a worker never reads it, the script never names it
    monkeypatch.setenv("AMST_WORKER_ID", "one-worker")
    jobs = slurm.WorkerJobs(count=1, gpus=0, partition="amst", time="1:00:00", grace_s=90, idle_exit_s=300)
    script = slurm.batch_script(jobs, slurm.worker_env(jobs))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    directives = [line.removeprefix("#SBATCH ") for line in lines if line.startswith("#SBATCH ")]
    assert directives == ["--job-name=amst-worker", "--partition=amst", "--time=1:00:00", "--nodes=1", "--ntasks=1",
                          "--cpus-per-task=4", "--signal=B:TERM@90",
                          f"--output={tmp_path / 'artifacts' / 'slurm'}/%x-%j.out"]
    exports = dict(line.removeprefix("export ").split("=", 1) for line in lines if line.startswith("export "))
    assert exports == {"AMST_ARTIFACTS": str(tmp_path / "artifacts"), "AMST_DATA_ROOT": str(tmp_path / "data"),
                       "AMST_HEARTBEAT_S": "5", "BROKER_URL": "redis://:hidden@redis.lab:6379/0",
                       "DATABASE_URL": "postgresql+psycopg://amst:s3cret@db.lab:5432/amst",
                       "AMST_WORKER_IDLE_EXIT_S": "300", "CUDA_VISIBLE_DEVICES": "''"}
    assert "unset AMST_WORKER_ID AMST_WORKER_GPU AMST_WORKER_HEALTH_FILE AMST_GPU_SET_MEMBER" in lines
    assert lines[-1].startswith("exec ") and lines[-1].endswith("-m launch serve worker --queue cpu")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0


@pytest.mark.parametrize(("gpus", "worker", "gres"), [(0, "worker --queue cpu", None),
                                                       (1, "worker --gpu 0", "--gres=gpu:1"),
                                                       (4, "worker --gpus 0,1,2,3", "--gres=gpu:4")])
def test_a_job_asks_for_its_gpus_and_its_worker_holds_them(gpus: int, worker: str, gres: str | None) -> None:
    jobs = slurm.WorkerJobs(count=1, gpus=gpus, partition="gpu", time="12:00:00", account="lab",
                            constraint="a100&nvlink")
    script = slurm.batch_script(jobs, slurm.worker_env(jobs))
    assert script.rstrip().endswith(worker)
    assert ("#SBATCH " + gres in script) if gres else "--gres" not in script
    assert "#SBATCH --account=lab\n" in script and "#SBATCH --constraint=a100&nvlink\n" in script
    assert ("CUDA_VISIBLE_DEVICES" in script) == (gpus == 0), "Slurm sets it for a job with GPUs"


def test_idle_exit_zero_means_the_worker_never_leaves_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMST_WORKER_IDLE_EXIT_S", "30")  # this shell's value: --idle-exit decides for the jobs
    jobs = slurm.WorkerJobs(**{**JOBS.__dict__, "idle_exit_s": 0})
    assert "AMST_WORKER_IDLE_EXIT_S" not in slurm.worker_env(jobs)


def test_dry_run_prints_the_script_with_passwords_masked(capsys: pytest.CaptureFixture) -> None:
    assert main(["slurm", "workers", "--count", "2", "--gpus-per-worker", "1", "--partition", "gpu", "--time", "30",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/bin/bash\n") and "#SBATCH --gres=gpu:1" in out
    assert "s3cret" not in out and "hidden" not in out
    assert "export DATABASE_URL=postgresql+psycopg://amst:***@db.lab:5432/amst" in out
    assert "export BROKER_URL=redis://:***@redis.lab:6379/0" in out


def test_without_sbatch_the_command_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["slurm", "workers", "--count", "1", "--gpus-per-worker", "0", "--partition", "p", "--time", "5"]) == 2
    assert "error: sbatch: not found on PATH" in capsys.readouterr().err


def test_sbatchs_refusal_is_quoted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    fake_command(tmp_path, "sbatch", "cat > /dev/null; echo 'sbatch: error: invalid partition specified: p' >&2; "
                                     "exit 1")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["slurm", "workers", "--count", "1", "--gpus-per-worker", "0", "--partition", "p", "--time", "5"]) == 2
    err = capsys.readouterr().err
    assert "error: sbatch refused the job: sbatch: error: invalid partition specified: p" in err


def test_each_job_is_one_sbatch_of_the_script_on_standard_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """No script file is left behind (it holds the database's password); the job ids are printed one a line."""
    fake_command(tmp_path, "sbatch", f'n=$(ls {tmp_path}/got-* 2>/dev/null | wc -l); cat > {tmp_path}/got-$n; '
                                     f'echo "$*" > {tmp_path}/args; echo "$((100 + n));cluster"')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert main(["slurm", "workers", "--count", "3", "--gpus-per-worker", "0", "--partition", "p", "--time", "5"]) == 0
    assert capsys.readouterr().out.split() == ["100", "101", "102"]
    scripts = {(tmp_path / f"got-{n}").read_text() for n in range(3)}
    assert len(scripts) == 1 and "s3cret" in scripts.pop()
    assert (tmp_path / "args").read_text().split() == ["--parsable"]
    assert (tmp_path / "artifacts" / "slurm").is_dir(), "Slurm writes no log into a folder that is not there"


def test_status_joins_squeue_with_what_each_worker_runs() -> None:
    jobs = [slurm.QueuedJob(*line.split("|")) for line in SQUEUE.splitlines()]
    workers = [
        {"id": "node07:40", "state": "lost", "started_at": "2026-01-01T00:00:00", "slurm": {"job_id": "11"},
         "current_run_id": None, "current_run_name": None},
        {"id": "node07:41", "state": "alive", "started_at": "2026-01-01T01:00:00", "slurm": {"job_id": "11"},
         "current_run_id": "r1", "current_run_name": "amst_full-avdigits"},
        {"id": "node08:9", "state": "alive", "started_at": "2026-01-01T01:00:00", "slurm": {"job_id": "13"},
         "current_run_id": None, "current_run_name": None},
        {"id": "laptop:1", "state": "alive", "started_at": "2026-01-01T01:00:00", "slurm": None,
         "current_run_id": "r2", "current_run_name": "x"},
    ]
    table = slurm.status_table(jobs, workers).splitlines()
    assert table[0].split() == ["JOB", "STATE", "USED", "LEFT", "NODE", "WORKER"]
    assert table[1].split() == ["11", "RUNNING", "1:02", "3:58", "node07", "node07:41", "alive,", "run",
                                "amst_full-avdigits", "(r1)"]
    assert table[2].split() == ["12", "PENDING", "0:00", "5:00", "(Resources)", "no", "worker", "yet"]
    assert table[3].split()[-3:] == ["node08:9", "alive,", "idle"]
    assert slurm.status_table(jobs, None).splitlines()[1].endswith("?"), "API unreachable: the jobs alone"


def test_status_reads_squeue_for_this_users_worker_jobs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_command(tmp_path, "squeue", f"echo \"$*\" > {tmp_path}/args; printf '{SQUEUE}'")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert [j.job_id for j in slurm.squeue()] == ["11", "12", "13"]
    assert (tmp_path / "args").read_text().split() == ["--me", "--name=amst-worker", "--noheader",
                                                       f"--format={slurm.SQUEUE_FORMAT}"]


def test_the_docs_dry_run_prints_the_script_the_doc_describes(monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    """Doc/deploy.md's Slurm section: its exports, then its --dry-run line as written (the lines that submit need
    a cluster with that partition and account: tests/service/test_slurm.py runs them on its own)."""
    section = DEPLOY_DOC.read_text().split("### Slurm\n", 1)[1].split("\n### ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    lines = [shlex.split(line) for line in block.splitlines() if line.strip()]
    for words in (w for w in lines if w[0] == "export"):
        for assignment in words[1:]:
            monkeypatch.setenv(*assignment.split("=", 1))
    (dry_run,) = [w for w in lines if "--dry-run" in w]
    assert dry_run[:3] == ["amst", "slurm", "workers"] and main(dry_run[1:]) == 0
    out = capsys.readouterr().out
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=8:00:00", "#SBATCH --gres=gpu:1", "#SBATCH --account=lab",
                 "#SBATCH --signal=B:TERM@120", "#SBATCH --output=/shared/amst/artifacts/slurm/%x-%j.out",
                 "export DATABASE_URL=postgresql+psycopg://amst:***@10.0.0.1:5432/amst",
                 "export AMST_WORKER_IDLE_EXIT_S=600"):
        assert line in out.splitlines(), line
    assert out.rstrip().endswith("-m launch serve worker --gpu 0")
