"""What a run can be traced to: the code, the environment, the data and the full resolved config.

Recorded at the start of every attempt (amst_core.execute), in the run folder (provenance.json), the checkpoints,
the run store and `GET /runs/{id}`. Three digests summarise it, so that runs can be compared at a glance (Compare,
sweep tables: `differences`) and a re-run can tell whether its data are still those of the run it repeats
(`data_changes`):

- code: the package version, and where it runs from a git checkout, the commit and whether the tree was modified;
- environment: Python, torch, CUDA, cuDNN and the device's name (not the host: runs move between workers);
- data: every file under the dataset folder (relative path, size, modification time), the split and class files'
  contents, and the settings samples are preprocessed with. Paths are relative to the dataset folder, so the same
  files under another AMST_DATA_ROOT are the same data; a copy with new modification times is not (it is said so).

Torch is imported only to describe the environment: the API computes data fingerprints without it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amst_core.config import ConfigError, RunConfig
from amst_core.datafiles import DataRoots, PathRefused, looks_like_path, text_model_source
from amst_core.vocab import TEXT

if TYPE_CHECKING:
    import torch

ASPECTS = ("code", "environment", "data")
# The run-config fields a cached or decoded sample depends on (amst_core.data.cache.FeatureSpec reads the same).
PREPROCESSING_MODEL_FIELDS = ("mel_bins", "audio_frames", "frames", "image_size", "text_model", "text_max_length")
REPOSITORY = Path(__file__).resolve().parents[1]


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- code


@functools.lru_cache(maxsize=1)
def code() -> dict[str, Any]:
    """Of this process: its code is what was imported at its start, so one look per process is the right one.
    AMST_GIT_COMMIT names the commit where there is no checkout (an image built from one)."""
    try:
        version = metadata.version("amst-studio")
    except metadata.PackageNotFoundError:
        version = "unknown"
    commit, dirty = git_state(REPOSITORY)
    if commit is None and os.environ.get("AMST_GIT_COMMIT"):
        commit = os.environ["AMST_GIT_COMMIT"]
    return {"version": version, "commit": commit, "dirty": dirty}


def git_state(folder: Path) -> tuple[str | None, bool | None]:
    """(commit, modified) of the checkout at `folder`; (None, None) when it is none or git is absent."""
    if not (folder / ".git").exists():
        return None, None
    try:
        head = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(folder), "status", "--porcelain"], capture_output=True,
                                text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None, None
    return head or None, bool(status.strip())


# ---------------------------------------------------------------- environment


def environment(device: torch.device | str) -> dict[str, Any]:
    import torch

    device = torch.device(device)
    cuda = device.type == "cuda" and torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # a str subclass that weights-only checkpoint loading refuses
        "cuda": torch.version.cuda,
        "cudnn": str(torch.backends.cudnn.version()) if cuda else None,
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else cpu_name(),
    }


@functools.lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


# ---------------------------------------------------------------- data


def data_fingerprint(cfg: RunConfig, roots: DataRoots | None = None) -> dict[str, Any]:
    """The data a run of `cfg` reads, as file statistics and settings (no file is read but the split and class
    files). Raises ConfigError where the dataset folder is refused (outside AMST_DATA_ROOT)."""
    from amst_core.datasets import DATASETS

    roots = roots or DataRoots.from_env()
    spec = DATASETS[cfg.dataset.name]
    folder = roots.dataset_dir(cfg.dataset)
    files = folder_stats(folder, roots) if folder.is_dir() else None
    found: dict[str, Any] = {
        "dataset": cfg.dataset.name,
        "root": cfg.dataset.root or cfg.dataset.name,
        "files": files,
        "split_files": split_file_hashes(cfg, roots) if spec.layout and files else {},
        "preprocessing": {"dataset": cfg.dataset.model_dump(mode="json"),
                          "model": {k: getattr(cfg.model, k) for k in PREPROCESSING_MODEL_FIELDS}},
    }
    if TEXT in cfg.modalities and looks_like_path(cfg.model.text_model):
        try:  # the folder the run reads (confined, `~` expanded), as amst_core.datafiles finds it
            text_folder = text_model_source(cfg.model.text_model, roots)
        except ConfigError as err:
            if isinstance(err, PathRefused):  # outside the data roots: refused here as the run's check refuses it
                raise
            text_folder = None  # missing: the run's own check says so
        found["text_model"] = folder_stats(text_folder, roots) if isinstance(text_folder, Path) else None
    return {**found, "digest": digest(found)}


def folder_stats(folder: Path, roots: DataRoots | None = None) -> dict[str, Any]:
    """Every file under `folder` (hidden ones left out, as no reader reads them): how many, their bytes, a digest
    of (relative path, size, modification time) and one of (relative path, size) to tell a copy from a change."""
    with_times, sizes = hashlib.sha256(), hashlib.sha256()
    count = total = 0
    for path, size, mtime_ns in walk_files(folder, roots or DataRoots.from_env()):
        with_times.update(f"{path}\0{size}\0{mtime_ns}\n".encode())
        sizes.update(f"{path}\0{size}\n".encode())
        count, total = count + 1, total + size
    return {"count": count, "bytes": total, "digest": with_times.hexdigest()[:16],
            "sizes_digest": sizes.hexdigest()[:16]}


def walk_files(folder: Path, roots: DataRoots) -> Iterable[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every non-hidden file, in a fixed order. A link is followed only where it
    stays inside the data roots (`roots.confine`), and a folder reached twice (a link loop) is walked once."""
    seen = {os.path.realpath(folder)}

    def inside(path: str) -> bool:
        if not os.path.islink(path):
            return True
        try:
            roots.confine(Path(path), "dataset.root", "the dataset's file")
        except ConfigError:
            return False  # a link out of the data roots: no (confined) reader reads it either
        return True

    def once(path: str) -> bool:
        real = os.path.realpath(path)
        if real in seen:
            return False
        seen.add(real)
        return True

    for parent, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in sorted(dirs) if not d.startswith(".") and inside(os.path.join(parent, d))
                   and once(os.path.join(parent, d))]
        for name in sorted(n for n in names if not n.startswith(".")):
            path = os.path.join(parent, name)
            if not inside(path):
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue  # a dangling link: no reader can read it either
            yield os.path.relpath(path, folder), st.st_size, st.st_mtime_ns


def split_file_hashes(cfg: RunConfig, roots: DataRoots) -> dict[str, str]:
    """sha256 of the split files and the class file a reference layout reads (the samples and labels of a run)."""
    from amst_core.datafiles import ReferenceFiles
    from amst_core.datasets import DATASETS
    from amst_core.layouts import LAYOUTS

    files = ReferenceFiles(LAYOUTS[cfg.dataset.name], cfg, roots)
    hashes: dict[str, str] = {}
    for split in DATASETS[cfg.dataset.name].splits:
        try:
            hashes[split] = file_hash(files.split_path(split))
        except ConfigError:
            hashes[split] = "missing"
    try:  # confined, as the split files are: a link out of the data roots is not read
        hashes["classes"] = file_hash(files.existing_file(files.class_file_name, "the class file",
                                                          "dataset.class_file"))
    except ConfigError:
        hashes["classes"] = "missing"
    return hashes


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def data_changes(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a run's recorded data fingerprint and today's, in words; [] when the digests agree."""
    if recorded.get("digest") == now.get("digest"):
        return []
    changes = [f"{name} file changed" for name, h in sorted(recorded.get("split_files", {}).items())
               if now.get("split_files", {}).get(name) != h]
    was, is_ = recorded.get("files") or {}, now.get("files") or {}
    if was != is_:
        if not is_:
            changes.append("the dataset folder is gone")
        elif (was.get("count"), was.get("bytes")) != (is_.get("count"), is_.get("bytes")):
            changes.append(f"the dataset folder held {was.get('count')} files ({was.get('bytes')} bytes), now "
                           f"{is_.get('count')} ({is_.get('bytes')} bytes)")
        elif was.get("sizes_digest") == is_.get("sizes_digest"):
            changes.append("the same files and sizes, with other modification times (copied or touched?)")
        else:
            changes.append("files of the dataset folder changed (same count and total size)")
    for section in ("dataset", "model"):
        before = recorded.get("preprocessing", {}).get(section, {})
        after = now.get("preprocessing", {}).get(section, {})
        changes += [f"{section}.{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(set(before) | set(after))
                    if before.get(k) != after.get(k)]
    if recorded.get("text_model") != now.get("text_model"):
        changes.append("the text model's files changed")
    return changes or ["the data digest differs"]


def check_expected_data(cfg: RunConfig, found: dict[str, Any]) -> None:
    """A run that expects its data (`data_fingerprint`, a re-run's) refuses other data before it trains."""
    if cfg.data_fingerprint is not None and cfg.data_fingerprint != found["digest"]:
        raise ConfigError("data_fingerprint", f"the data are not those the run expects (digest {found['digest']}, "
                                              f"expected {cfg.data_fingerprint}); re-run with force to go on")


# ---------------------------------------------------------------- the record


def collect(cfg: RunConfig, device: torch.device | str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole record of a run about to train `cfg` (the config resolved against its data) on `device`."""
    found = {"code": code(), "environment": environment(device), "data": data or data_fingerprint(cfg),
             "config": cfg.model_dump(mode="json")}
    return {**found, "digests": {"code": digest(found["code"]), "environment": digest(environment_key(found)),
                                 "data": found["data"]["digest"]}}


def environment_key(prov: dict[str, Any]) -> dict[str, Any]:
    """What makes two environments compute differently: versions and the device's kind, not the host."""
    env = prov["environment"]
    return {k: env.get(k) for k in ("python", "torch", "cuda", "cudnn", "device_name")}


def flat(prov: dict[str, Any]) -> dict[str, str]:
    """Dotted keys ("code.commit", "environment.torch", "data.digest", "digests.code", ...) for tags; the config
    and the file lists are left out (exports give the config as parameters)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif value is not None:
            out[prefix] = str(value)

    walk("", {k: v for k, v in prov.items() if k not in ("config",)})
    return out


def label(aspect: str, prov: dict[str, Any]) -> str:
    """How a table names one run's code, environment or data."""
    if aspect == "code":
        c = prov["code"]
        return (c["commit"][:7] + ("-dirty" if c.get("dirty") else "")) if c.get("commit") else f"v{c['version']}"
    if aspect == "environment":
        env = environment_key(prov)
        return f"torch {env['torch']}" + (f", CUDA {env['cuda']}" if env["cuda"] else "") + f", {env['device_name']}"
    return f"data {prov['digests']['data'][:8]}"


def differences(provs: Sequence[dict[str, Any] | None]) -> list[str]:
    """One line per aspect in which the runs differ, e.g. "code differs: 3f2a1c0 (2 runs), 9e81b44-dirty (1 run)";
    runs with nothing recorded (trained before provenance was) are counted, not compared."""
    known = [p for p in provs if p and "digests" in p]
    lines = []
    for aspect in ASPECTS:
        groups: dict[str, tuple[str, int]] = {}
        for prov in known:
            key = prov["digests"][aspect]
            name, n = groups.get(key, (label(aspect, prov), 0))
            groups[key] = (name, n + 1)
        if len(groups) > 1:
            lines.append(f"{aspect} differs: " + ", ".join(f"{name} ({runs(n)})" for name, n in groups.values()))
    missing = len(provs) - len(known)
    if missing and known:
        lines.append(f"{runs(missing)} recorded no provenance (trained before it was recorded): not compared")
    return lines


def runs(n: int) -> str:
    return f"{n} run" + ("" if n == 1 else "s")
