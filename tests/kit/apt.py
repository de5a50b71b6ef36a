"""Debian packages a test needs, installed when missing (the compose stack's podman, the Slurm cluster's daemons)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


def apt_install(packages: Sequence[str]) -> str | None:
    """`apt-get install` of `packages` (after an `apt-get update` when the first try fails: a fresh machine's
    package lists may be missing or stale); why they could not be installed, or None."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    if subprocess.run(install, env=env, capture_output=True).returncode == 0:
        return None
    subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    return None if done.returncode == 0 else f"apt-get could not install {' '.join(packages)}: " \
                                              f"{done.stderr.strip()[-500:]}"
