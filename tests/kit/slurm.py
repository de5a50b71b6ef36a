"""A one-node Slurm cluster of the test's own on this machine, from Debian's packages (slurm-wlm, munge).

munged runs with a key and a socket of its own; slurmctld and slurmd run as root in the foreground, with every
state, spool, log and pid file in one folder and free ports; the node is this host with CPUs, no GPUs, no cgroups
(proctrack/linuxproc, task/none). Slurm's commands find this cluster through SLURM_CONF, which `env` gives: the
machine's own Slurm or munge, if any, is neither read nor touched. `stop` cancels every job, stops the daemons
and ends any process left with this cluster's SLURM_CONF in its environment (a job's processes inherit it from
sbatch, slurmstepd from slurmd): nothing keeps running."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.kit.apt import apt_install
from tests.kit.svc import free_port, wait_until

TOOLS = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo", "munged")
PACKAGES = ("slurm-wlm", "munge")
KILL_WAIT_S = 30  # Slurm's default: a job's processes get this long between SIGTERM and SIGKILL


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def ensure_slurm() -> str | None:
    """Install Slurm and munge from Debian's packages when missing and allowed; why a cluster cannot run here, or
    None. A cluster of the test's own needs root too: slurmd starts jobs as their user."""
    if os.geteuid() != 0:
        return "a Slurm cluster of the test's own needs root (slurmd runs jobs as their user)"
    missing = missing_tools()
    if not missing:
        return None
    if shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not installed, and this is not Debian to install {' '.join(PACKAGES)}"
    if (failed := apt_install(PACKAGES)) is not None:
        return failed
    still = missing_tools()
    return f"{', '.join(still)} still missing after apt-get install" if still else None


class OneNodeSlurm:
    """slurmctld + slurmd + munged for one node (this host) and one partition."""

    def __init__(self, cpus: int = 4, partition: str = "amst") -> None:
        self.cpus, self.partition = cpus, partition
        self.node = socket.gethostname().split(".")[0]  # slurmd names itself by the short host name
        # Not under pytest's tmp_path: munged wants every folder above its socket open to all (0755).
        self.folder = Path(tempfile.mkdtemp(prefix="amst-slurm-"))
        self.folder.chmod(0o755)
        self.conf = self.folder / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.daemons: dict[str, subprocess.Popen] = {}

    def conf_text(self) -> str:
        f = self.folder
        return "\n".join([
            "ClusterName=amsttest",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            f"SlurmdPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={f / 'munge.socket'}",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",  # a job's processes are slurmstepd's descendants: no cgroups
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/builtin",  # every submission is looked at at once, no backfill cycle to wait for
            "ReturnToService=2",
            f"KillWait={KILL_WAIT_S}",
            "SlurmdParameters=config_overrides",  # the node's CPUs as written here, whatever the machine has
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
            f"PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n"

    def start(self) -> None:
        for sub in ("state", "spool"):
            (self.folder / sub).mkdir()
        key = self.folder / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        self.conf.write_text(self.conf_text())
        f = self.folder
        self.daemon("munged", "munged", "-F", f"--key-file={key}", f"--socket={f / 'munge.socket'}",
                    f"--pid-file={f / 'munged.pid'}", f"--seed-file={f / 'munged.seed'}",
                    f"--log-file={f / 'munged.log'}")
        wait_until(lambda: (f / "munge.socket").exists(), 10, message="munged's socket")
        self.daemon("slurmctld", "slurmctld", "-D", "-f", str(self.conf))
        self.daemon("slurmd", "slurmd", "-D", "-f", str(self.conf))
        wait_until(lambda: self.node_state() == "idle", 60, interval=0.5,
                   message=f"the node to be idle in sinfo\n{self.logs()}")

    def daemon(self, name: str, *argv: str) -> None:
        log = (self.folder / f"{name}.out").open("w")
        self.daemons[name] = subprocess.Popen(argv, env={**os.environ, **self.env}, stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)

    def command(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(argv, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}")
        return done

    def node_state(self) -> str:
        done = self.command("sinfo", "--noheader", "--format=%t", f"--nodes={self.node}", check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    def jobs(self) -> dict[str, str]:
        """{job id: state} of the jobs squeue lists (pending, running, completing)."""
        out = self.command("squeue", "--noheader", "--format=%i %T").stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def job(self, job_id: str) -> dict[str, str]:
        """scontrol's fields of a job, ended ones too (kept for MinJobAge, 300 s by default)."""
        out = self.command("scontrol", "show", "job", "--oneliner", job_id).stdout
        return dict(item.split("=", 1) for item in out.split() if "=" in item)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.folder.glob("*.log"))
                         if p.is_file())

    def stop(self) -> None:
        """Cancel every job, wait for them to end, stop the daemons; then end whatever was started under this
        cluster and is still running."""
        if "slurmctld" in self.daemons:
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.command("scancel", f"--user={getpass.getuser()}", check=False)
                wait_until(lambda: not self.jobs(), KILL_WAIT_S + 30, interval=0.5, message="every job to end")
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.daemons.get(name)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for pid in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)

    def leftovers(self) -> list[int]:
        """Live processes whose environment names this cluster's slurm.conf: started by it or under it."""
        mark = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                with contextlib.suppress(OSError):
                    if mark in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                        found.append(int(entry))
        return found


def wait_for_state(cluster: OneNodeSlurm, job_id: str, states: set[str], timeout: float) -> dict[str, str]:
    """A job's scontrol fields once its JobState is one of `states`."""
    return wait_until(lambda: (j := cluster.job(job_id))["JobState"] in states and j, timeout, interval=0.5,
                      message=f"job {job_id} to be {' or '.join(sorted(states))}")


def seconds_between(earlier: str, later: str) -> float:
    """Seconds between two of scontrol's times (local, to the second)."""
    fmt = "%Y-%m-%dT%H:%M:%S"
    return time.mktime(time.strptime(later, fmt)) - time.mktime(time.strptime(earlier, fmt))
