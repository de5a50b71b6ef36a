"""A GPU node's Python imitated on this machine, for the offline-install tests: a Python that sees the torch family
already installed (as an NGC-style image or a cluster module provides it) and nothing else of ours, a wheelhouse
made by tools/wheelhouse.py (cached across runs), and an environment in which pip reaches no index."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AMST_TEST_WHEELHOUSE_CACHE", Path.home() / ".cache" / "amst-test-wheelhouse"))
# pip's own words when it cannot reach an index: only these skip a test; any other failure fails it.
NO_NETWORK = re.compile(r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
                        r"Network is unreachable|ConnectTimeout|Failed to establish a new connection")

sys.path.insert(0, str(ROOT / "tools"))
import wheelhouse  # noqa: E402  (tools/ is no package)
from wheelhouse import TORCH_FAMILY, normalize  # noqa: E402


def torch_family_dists() -> dict[str, md.Distribution]:
    """The torch family installed here and everything it requires, transitively, with the extras it asks for
    (torch 2.11 requires cuda-toolkit[cublas,cudart,...]: pip checks those too); markers of this platform."""
    found: dict[str, md.Distribution] = {}
    extras: dict[str, set[str]] = {}
    pending: list[tuple[str, set[str]]] = [(name, set()) for name in sorted(TORCH_FAMILY)]
    while pending:
        name, wanted = pending.pop()
        name = normalize(name)
        if name in found and wanted <= extras[name]:
            continue
        try:
            found[name] = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # a requirement of another platform or Python
        extras[name] = extras.get(name, set()) | wanted
        for spec in found[name].requires or []:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras[name])):
                pending.append((req.name, set(req.extras)))
    return found


def torch_family_folder(dest: Path, torch_version: str | None = None) -> Path:
    """A folder of symlinks to the torch family's files in this environment's site-packages (its packages, modules
    and .dist-info folders), as a node's image holds them; a venv sees it through a .pth file. `torch_version`:
    torch's metadata says that version instead (a node whose torch is outside our range)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, dist in torch_family_dists().items():
        site = Path(dist.locate_file("")).resolve()
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            if top in ("..", "__pycache__") or (dest / top).exists():
                continue  # ..: scripts in bin/; a namespace folder (nvidia/) is linked once, whole
            if name == "torch" and torch_version and top.endswith(".dist-info"):
                info = dest / f"torch-{torch_version}.dist-info"
                shutil.copytree(site / top, info)
                metadata = (info / "METADATA").read_text()
                (info / "METADATA").write_text(re.sub(r"(?m)^Version: .*$", f"Version: {torch_version}", metadata))
                continue
            (dest / top).symlink_to(site / top)
    return dest


def node_python(dest: Path, torch_folder: Path) -> Path:
    """A fresh venv (pip from the interpreter's ensurepip, nothing downloaded) that sees only the torch family
    besides the standard library: not --system-site-packages of this environment."""
    venv.EnvBuilder(with_pip=True, clear=True).create(dest)
    python = dest / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    (Path(site) / "node_torch_family.pth").write_text(f"{torch_folder}\n")
    return python


def offline_env(**extra: str) -> dict[str, str]:
    """This environment with pip cut off from every index and from this machine's pip configuration (its find-links
    folder and its constraint), as on a node without internet."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "VIRTUAL_ENV"}
    return {**env, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def wheelhouse_key(python_version: str, with_tests: bool, make: bool) -> str:
    """What a wheelhouse is made from: the project's dependency declarations in pyproject.toml (not its tool
    sections: a change to pytest's or ruff's settings keeps the cache), constraints.txt and tools/wheelhouse.py, and
    with `make` the Makefile's lines that build it (not its other targets)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    fields = ("name", "requires-python", "dependencies", "optional-dependencies")
    declared = {"build-system": project.get("build-system"),
                "project": {key: project["project"].get(key) for key in fields}}
    digest = hashlib.sha256(f"{python_version} training {with_tests}".encode())
    digest.update(json.dumps(declared, sort_keys=True).encode())
    for path in (ROOT / "constraints.txt", Path(wheelhouse.__file__)):
        digest.update(path.read_bytes())
    if make:
        recipe = [line for line in (ROOT / "Makefile").read_text().splitlines()
                  if re.search(r"wheelhouse|WHEELHOUSE|^(PY|SET|PYTHON)\b", line)]
        digest.update("\n".join(recipe).encode())
    return ("make-" if make else "") + digest.hexdigest()[:16]


def cached_wheelhouse(python_version: str, with_tests: bool, make: bool = False) -> Path:
    """A wheelhouse for `python_version`, built once per content of its inputs (wheelhouse_key) and kept under
    ~/.cache; skips the test when no index can be reached."""
    dest = CACHE / f"py{python_version}-{wheelhouse_key(python_version, with_tests, make)}"
    done = dest / ".complete"
    if done.exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    if make:
        cmd = ["make", "-s", "wheelhouse", f"PY={python_version}", f"WHEELHOUSE={dest}"]
    else:
        cmd = [sys.executable, str(ROOT / "tools" / "wheelhouse.py"), "--python-version", python_version,
               "--dest", str(dest), *(["--with-tests"] if with_tests else [])]
    done_run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done_run.returncode != 0:
        if NO_NETWORK.search(done_run.stdout + done_run.stderr):
            pytest.skip("no package index reachable to build the wheelhouse")
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done_run.stdout[-3000:]}\n{done_run.stderr[-3000:]}")
    done.write_text(done_run.stdout[-2000:])
    return dest
