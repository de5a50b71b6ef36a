"""The compose stack of docker-compose.yml + docker-compose.local.yml under podman-compose, as a test drives it:
the tools installed when missing (root, Debian), the local base image, a build, `up`, health, and a `down` that
leaves nothing of the project behind. Every command is one a user types (Doc/deploy.md, "Without a registry")."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from tests.kit.apt import apt_install

ROOT = Path(__file__).resolve().parents[2]
FILES = ("docker-compose.yml", "docker-compose.local.yml")
DEPLOY_DOC = ROOT / "Doc" / "deploy.md"
PODMAN_SECTION = "### Without a registry, or with podman"
DOC_PROJECT = "amst-studio"  # the project name the doc's podman commands use
BASE_IMAGE = "localhost/amst-debian:bookworm"
CONTAINERS_CONF = ROOT / "deploy" / "local" / "containers.conf"
# Each tool the stack needs and the Debian package that has it. iptables: podman's network backend (netavark) sets
# up a container's network with it and fails with "netavark: No such file or directory" without (podman only
# recommends it, and a fresh machine may lack it: CI's did).
PACKAGES = {"podman": "podman", "podman-compose": "podman-compose", "runc": "runc", "debootstrap": "debootstrap",
            "iptables": "iptables"}
# The CA bundle of a machine that intercepts TLS, where its environment names one for pip (this workplace's does):
# pip inside the build and `prepare avdigits` need it. It stays the machine's: mounted for one step, never copied
# into the image or the repository. Elsewhere the doc's lines run exactly as written.
HOST_CA = next((Path(p) for p in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"))
                if p and Path(p).is_file()), None)


def missing_tools() -> list[str]:
    return [tool for tool in PACKAGES if shutil.which(tool) is None]


def ensure_tools() -> str | None:
    """Install podman, podman-compose, runc and debootstrap from Debian's packages when missing and allowed;
    the reason the stack cannot run here, or None."""
    missing = missing_tools()
    if not missing:
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{', '.join(missing)} not installed, and this is not root on Debian to install them"
    packages = [PACKAGES[tool] for tool in missing]
    if (failed := apt_install([*packages, "catatonit", "aardvark-dns", "netavark", "fuse-overlayfs"])) is not None:
        return failed
    still = missing_tools()
    return f"{', '.join(still)} still missing after apt-get install" if still else None


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = run_group(["podman", *args], podman_env(), ROOT, timeout)
    if check and done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done


def run_group(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run `cmd` in a process group of its own, killed whole when it overruns: podman-compose's podman and
    buildah children would otherwise go on after a timeout."""
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def ensure_base_image() -> float:
    """The Debian base every image of the local override builds on; seconds it took (0 when it was there)."""
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return 0.0
    started = time.monotonic()
    subprocess.run([str(ROOT / "deploy" / "local" / "base-image.sh"), BASE_IMAGE], env=podman_env(), check=True,
                   capture_output=True, text=True, timeout=900)
    return time.monotonic() - started


class Stack:
    """One compose project: its name keeps its containers, network and volumes apart from anything else."""

    def __init__(self, project: str, env: dict[str, str]):
        files = os.pathsep.join(str(ROOT / f) for f in FILES)  # the doc's COMPOSE_FILE, absolute: any cwd
        self.project, self.env = project, {**podman_env(), "COMPOSE_FILE": files, **env}

    def compose(self, *args: str, check: bool = True, timeout: float = 900,
                podman_args: Sequence[str] = ()) -> subprocess.CompletedProcess:
        cmd = ["podman-compose", "-p", self.project, *podman_args, *args]
        return self.checked(run_group(cmd, self.env, ROOT, timeout), " ".join(cmd), check)

    @staticmethod
    def checked(done: subprocess.CompletedProcess, what: str, check: bool = True) -> subprocess.CompletedProcess:
        """podman-compose 1.0 exits 0 when a podman command it ran failed (`run` included): it prints each one's
        "exit code: N"."""
        failed = [code for code in re.findall(r"^exit code: (-?\d+)$", done.stdout + done.stderr, re.M) if code != "0"]
        if check and (done.returncode != 0 or failed):
            raise AssertionError(f"{what} exited {done.returncode} {failed}:\n{done.stdout[-3000:]}\n"
                                 f"{done.stderr[-3000:]}")
        return done

    def doc_command(self, line: str) -> str:
        """A command line of Doc/deploy.md's podman section (it must be there, as written), as this stack runs it:
        its own project name, and the machine's CA bundle where pip downloads."""
        assert line in podman_doc_commands(), f"Doc/deploy.md's podman section has no line {line!r}"
        line = line.replace(f"-p {DOC_PROJECT}", f"-p {self.project}").replace(f"{DOC_PROJECT}_", f"{self.project}_")
        if HOST_CA and line.endswith(" build"):
            line = line.replace("podman-compose ", f"podman-compose '--podman-build-args=--secret id=build_ca,"
                                                   f"src={HOST_CA}' ", 1)
        if HOST_CA and "prepare avdigits" in line:
            line = line.replace("podman-compose ", f"podman-compose '--podman-run-args=-v {HOST_CA}:"
                                                   f"/etc/amst-host-ca.crt:ro' ", 1)
            line = line.replace(" run ", " run -e PIP_CERT=/etc/amst-host-ca.crt ", 1)
        return line

    def run_doc(self, line: str, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess:
        line = self.doc_command(line)
        return self.checked(run_group(["bash", "-c", f"set -o pipefail; {line}"], self.env, cwd, timeout), line)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"  # podman-compose 1.0's naming

    def healthy(self, service: str) -> bool:
        """Runs the service's own health check once: podman runs them on a timer only under systemd."""
        return podman("healthcheck", "run", self.container(service), check=False, timeout=60).returncode == 0

    def state(self, service: str) -> str:
        done = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.container(service),
                      check=False)
        return done.stdout.strip() if done.returncode == 0 else "absent"

    def logs(self, service: str, tail: int = 60) -> str:
        done = podman("logs", "--tail", str(tail), self.container(service), check=False)
        return done.stdout + done.stderr  # podman logs replays the container's stderr on its own

    def down(self) -> None:
        """Whatever state a test left: `down -v`, then force-remove what is still there (podman-compose 1.0 leaves
        its network; a test cut short may leave more)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.compose("down", "-v", "-t", "60", check=False, timeout=300)
        for name in self.owned("container"):
            podman("rm", "-f", "-t", "10", name, check=False)
        for name in self.owned("volume"):
            podman("volume", "rm", "-f", name, check=False)
        for name in self.owned("network"):
            podman("network", "rm", "-f", name, check=False)

    def owned(self, kind: str) -> list[str]:
        """Names of the containers, networks or volumes that carry this project's label (podman-compose 1.0
        labels all three, and makes no pod)."""
        listing = {"container": ["ps", "-a"], "network": ["network", "ls"], "volume": ["volume", "ls"]}[kind]
        name = "{{.Names}}" if kind == "container" else "{{.Name}}"
        return podman(*listing, "--filter", f"label=io.podman.compose.project={self.project}",
                      "--format", name).stdout.split()

    def leftovers(self) -> dict[str, list[str]]:
        return {kind: names for kind in ("container", "network", "volume") if (names := self.owned(kind))}


def podman_doc_commands() -> list[str]:
    """The command lines of the bash blocks of Doc/deploy.md's podman section, comments dropped."""
    text = DEPLOY_DOC.read_text()
    section = text[text.index(PODMAN_SECTION):]
    section = section[:section.index("\n## ")]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        lines += [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    return lines


def image_size_mb(image: str) -> float:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip()) / 2**20
