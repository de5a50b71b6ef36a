"""A wheelhouse for a GPU node that has its own PyTorch and no internet (`make wheelhouse`; Doc/deploy.md,
"Offline GPU nodes and clusters").

Downloads, for one target Python on manylinux x86_64 (glibc 2.28 or newer), wheels of every dependency of the chosen
set except the torch family, plus setuptools (so that `pip install --no-index --find-links wheelhouse .` can build
this pure-Python project from the source tree offline) and pip (to bootstrap a Python that has none).

Left out, the node's image or module provides them: torch, torchvision and torchaudio are never asked for, so
neither are the packages only they need (nvidia-*, triton, sympy, mpmath, networkx); numpy and pillow, which
torchvision requires, are removed after the download (numpy alone is 15 MiB of a wheelhouse that must travel
under 64 MiB). torch's small requirements that our other dependencies also need (typing-extensions, filelock,
fsspec, jinja2, markupsafe) stay: a node's copy may be too old for pydantic or huggingface_hub, and pip uses the
node's copy whenever it satisfies.

Sets: `training` (the package's own dependencies: the training path, the text encoder, audio files, the worker's
queue, database and broker, and the API; what a GPU node needs; under 50 MiB) or `all` (the dashboard, video
decoding and the sweeps' paired tests too: over 200 MiB). `--with-tests` adds pytest for the GPU tier
(bench/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "amst-studio"
TORCH_FAMILY = frozenset({"torch", "torchvision", "torchaudio"})
PROVIDED_WITH_TORCHVISION = frozenset({"numpy", "pillow"})
BUILD_AND_BOOTSTRAP = ("setuptools>=68", "pip")
SETS = {"training": (), "all": ("all",)}
# Every manylinux tag up to glibc 2.28: pip does not widen an explicit --platform to the older tags that most
# wheels carry (watchdog, for one, has only manylinux2014).
PLATFORMS = (*(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
             "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0])


def requirement_extras(requirement: str) -> list[str]:
    found = re.search(r"\[([^\]]*)\]", requirement)
    return [e.strip() for e in found.group(1).split(",")] if found else []


def requirements(extras: tuple[str, ...], pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's dependencies with those of `extras` (self-references such as amst-studio[api] expanded), the
    torch family left out."""
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    found: list[str] = []
    pending, seen = [*project["dependencies"], *(f"{PROJECT}[{e}]" for e in extras)], set()
    while pending:
        req = pending.pop(0)
        if requirement_name(req) == PROJECT:
            for extra in requirement_extras(req):
                if extra not in seen:
                    seen.add(extra)
                    pending.extend(optional[extra])
        elif requirement_name(req) not in TORCH_FAMILY and req not in found:
            found.append(req)
    return found


def wheel_name(path: Path) -> str:
    return normalize(path.name.split("-", 1)[0])


def download(reqs: list[str], dest: Path, python_version: str, constraints: Path) -> None:
    """Binary wheels only: the node builds nothing (it may have no compiler)."""
    abi = "cp" + python_version.replace(".", "")
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--dest", str(dest),
           "--python-version", python_version, "--implementation", "cp", "--abi", abi,
           *(arg for p in PLATFORMS for arg in ("--platform", p)), "-c", str(constraints), *reqs]
    subprocess.run(cmd, check=True)


def prune(dest: Path) -> list[str]:
    """Remove the wheels the node's torch family brings; returns their file names."""
    removed = []
    for wheel in sorted(dest.glob("*.whl")):
        if wheel_name(wheel) in TORCH_FAMILY | PROVIDED_WITH_TORCHVISION:
            wheel.unlink()
            removed.append(wheel.name)
    return removed


def inputs_hash(python_version: str, set_name: str, with_tests: bool) -> str:
    """What the wheelhouse depends on: tests key their cached wheelhouse by it."""
    digest = hashlib.sha256(f"{python_version} {set_name} {with_tests}".encode())
    for path in (ROOT / "pyproject.toml", ROOT / "constraints.txt", Path(__file__).resolve()):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(dest: Path, python_version: str, set_name: str = "training", with_tests: bool = False) -> int:
    """Fill `dest`; returns its size in bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob("*.whl"):  # another set's or Python's wheels would make it bigger and pip's choice wider
        stale.unlink()
    reqs = requirements(SETS[set_name] + (("test",) if with_tests else ()))
    download([*reqs, *BUILD_AND_BOOTSTRAP], dest, python_version, ROOT / "constraints.txt")
    removed = prune(dest)
    wheels = sorted(dest.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels)
    print(f"wheelhouse {dest}: {len(wheels)} wheels, {size / 2**20:.1f} MiB, Python {python_version}, set "
          f"{set_name}{' with tests' if with_tests else ''}; left out (the node's torch family brings them): "
          f"torch, torchvision, torchaudio and their own requirements{', ' if removed else ''}{', '.join(removed)}")
    return size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                        help="the node's Python, e.g. 3.12 (default: this interpreter's)")
    parser.add_argument("--set", choices=sorted(SETS), default="training")
    parser.add_argument("--with-tests", action="store_true", help="add pytest (the GPU tier of bench/gpu_check.sh)")
    parser.add_argument("--dest", type=Path, default=ROOT / "wheelhouse")
    parser.add_argument("--requirements", action="store_true", help="only print the set's requirements, the torch "
                        "family left out (bench/gpu_check.sh --any-torch installs them), one a line")
    args = parser.parse_args(argv)
    if args.requirements:
        print("\n".join(requirements(SETS[args.set] + (("test",) if args.with_tests else ()))))
        return 0
    if not re.fullmatch(r"3\.\d+", args.python_version):
        parser.error(f"--python-version: {args.python_version!r} is not of the form 3.12")
    build(args.dest, args.python_version, args.set, args.with_tests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
