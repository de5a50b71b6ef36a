"""Install where GPU users are: a node with its own PyTorch and no internet (Doc/deploy.md, "Offline GPU nodes and
clusters"). The training path imports no service package; a wheelhouse for another Python holds no torch; pip
installs offline from it into a Python that already has the torch family, leaves that torch alone, and the result
trains; bench/gpu_check.sh does all of it by itself on such a Python."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.kit.node import (
    ROOT,
    TORCH_FAMILY,
    cached_wheelhouse,
    node_python,
    offline_env,
    torch_family_folder,
    wheelhouse,
)
from tests.kit.tiny import write_tiny_avdigits

PY = f"{sys.version_info.major}.{sys.version_info.minor}"
INSTALL_S = "300"  # gpu_check.sh's limit for its install step, raised: here it only catches a hang
SERVICE_PACKAGES = ("sqlalchemy", "fastapi", "celery", "av", "soundfile", "alembic", "psycopg", "streamlit",
                    "uvicorn", "httpx", "starlette", "kombu", "redis")
# What the package is built from (a copy: pip builds in the source folder, and this tree is shared).
SOURCES = ("pyproject.toml", "README.md", "amst_core", "amst_client", "api", "worker", "ui", "launch",
           "migrations")


def copy_sources(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def test_the_training_path_imports_no_service_package(tmp_path: Path) -> None:
    """A finder that refuses the service packages, then a 1-epoch run through execute_run and through `amst train`:
    any import of them on the way, even one whose ImportError is caught, is recorded and fails the test."""
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        BLOCKED, tried = {SERVICE_PACKAGES!r}, []

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in BLOCKED:
                    tried.append(name)
                    raise ImportError(f"{{name}} is a service package: the training path must not import it")
                return None

        sys.meta_path.insert(0, Refuse())
        sys.path[:0] = [{str(ROOT)!r}]
        from pathlib import Path
        import yaml
        from tests.kit.tiny import tiny_config
        from amst_core.execute import execute_run
        from amst_core.sinks import JsonlSink
        from launch.cli import main

        out = Path({str(tmp_path)!r})
        cfg = tiny_config("amst_full", epochs=1)
        summary = execute_run(cfg, out / "run", [JsonlSink(out / "run" / "metrics.jsonl")], run_id="run")
        (out / "tiny.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        code = main(["train", str(out / "tiny.yaml"), "--out", str(out / "cli"), "--no-progress"])
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
        print(json.dumps({{"code": code, "best": summary["best_val_acc"],
                          "tried": tried, "loaded": loaded}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["tried"] == [] and result["loaded"] == [], result
    assert result["code"] == 0
    assert (tmp_path / "run" / "summary.json").is_file() and (tmp_path / "cli" / "summary.json").is_file()
    assert len((tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()) >= 1


def test_the_wheelhouse_requirements_leave_out_the_torch_family() -> None:
    training = wheelhouse.requirements(())
    names = {wheelhouse.requirement_name(r) for r in training}
    assert not names & set(TORCH_FAMILY)
    assert {"pydantic", "pydantic-settings", "celery", "sqlalchemy", "psycopg", "fastapi", "transformers"} <= names
    assert not names & {"streamlit", "plotly", "av", "scipy", "pytest"}, "the training set stays under 50 MiB"
    everything = {wheelhouse.requirement_name(r) for r in wheelhouse.requirements(("all", "test"))}
    assert {"streamlit", "plotly", "av", "scipy", "pytest"} <= everything and not everything & set(TORCH_FAMILY)
    assert "amst-studio" not in everything, "self-references are expanded"


def wheel_tags(path: Path) -> tuple[str, str]:
    """(python tag, abi tag) of a wheel file name."""
    parts = path.name[:-len(".whl")].split("-")
    return parts[-3], parts[-2]


@pytest.mark.slow
def test_make_wheelhouse_fetches_cp312_wheels_and_no_torch() -> None:
    dest = cached_wheelhouse("3.12", with_tests=True, make=True)  # `make wheelhouse PY=3.12 WHEELHOUSE=...`
    wheels = sorted(dest.glob("*.whl"))
    names = {wheelhouse.wheel_name(w) for w in wheels}
    assert not names & {*TORCH_FAMILY, "triton", "numpy", "pillow"}, names
    assert not [n for n in names - {"nvidia-ml-py"} if n.startswith(("nvidia-", "cuda-"))], names  # ml-py: ours
    binary = [w for w in wheels if wheel_tags(w)[1] != "none"]
    assert binary, "no compiled wheel: pydantic-core, psycopg-binary... should be there"
    for w in binary:
        python, abi = wheel_tags(w)
        assert abi == "cp312" or (abi == "abi3" and int(python[3:] or 0) <= 312), w.name
        assert "manylinux" in w.name, w.name
    wanted = {wheelhouse.requirement_name(r) for r in wheelhouse.requirements(("test",))}
    assert wanted - wheelhouse.PROVIDED_WITH_TORCHVISION <= names, f"missing: {wanted - names}"
    assert {"setuptools", "pip", "pytest"} <= names
    size = sum(w.stat().st_size for w in wheels)
    assert size < 50 * 2**20, f"{size / 2**20:.1f} MiB: the wheelhouse travels with the tree under 64 MiB"


@pytest.fixture(scope="module")
def torch_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return torch_family_folder(tmp_path_factory.mktemp("node") / "torch-family")


def snapshot(folder: Path) -> dict[str, str]:
    return {p.name: os.readlink(p) for p in folder.iterdir()}


@pytest.mark.slow
def test_offline_install_leaves_the_node_torch_alone_and_trains(tmp_path: Path, torch_folder: Path) -> None:
    house = cached_wheelhouse(PY, with_tests=True)
    before = snapshot(torch_folder)
    python = node_python(tmp_path / "node", torch_folder)
    env = offline_env()
    done = subprocess.run([python, "-m", "pip", "install", "--no-index", "--find-links", str(house),
                           str(copy_sources(tmp_path / "src"))], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    installed = re.search(r"^Successfully installed (.*)$", done.stdout, re.M)
    assert installed and "amst-studio" in installed.group(1), done.stdout[-2000:]
    names = {wheelhouse.normalize(item.rsplit("-", 1)[0]) for item in installed.group(1).split()}
    assert not names & {*TORCH_FAMILY, "triton"}, names
    assert not [n for n in names - {"nvidia-ml-py"} if n.startswith(("nvidia-", "cuda-"))], names
    assert snapshot(torch_folder) == before, "pip changed the node's torch family"
    site = tmp_path / "node" / "lib" / f"python{PY}" / "site-packages"
    assert not [p for p in site.iterdir() if p.name.startswith(("torch", "nvidia", "triton", "cuda"))
                and not p.name.startswith("nvidia_ml_py")]  # pynvml is ours
    assert subprocess.run([python, "-m", "pip", "check"], env=env, capture_output=True).returncode == 0

    probe = ("import torch, amst_core.config, api.main, worker.app, launch.processes, launch.up; "  # up: amst_client
             "print(torch.__file__); print(amst_core.config.__file__)")  # amst_core: a namespace package
    where = subprocess.run([python, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr[-3000:]
    torch_file, core_file = where.stdout.split()
    assert torch_file.startswith(str(torch_folder)) and core_file.startswith(str(site)), where.stdout

    data = tmp_path / "data"
    write_tiny_avdigits(data)
    train = subprocess.run(
        [tmp_path / "node" / "bin" / "amst", "train", str(ROOT / "configs" / "avdigits" / "amst_full.yaml"),
         "--set", "epochs=1", "--set", "device=cpu", "--set", "model.width=8", "--out", str(tmp_path / "run"),
         "--no-progress"],
        env={**env, "AMST_DATA_ROOT": str(data), "AMST_CACHE": str(tmp_path / "cache")}, cwd=tmp_path,
        capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    assert 0 <= json.loads(train.stdout.strip().splitlines()[-1])["best_val_acc"] <= 1
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) >= 1


@pytest.mark.slow
def test_gpu_check_sh_runs_on_a_bare_node_python(tmp_path: Path, torch_folder: Path) -> None:
    """bench/gpu_check.sh --allow-cpu as a node runs it: a Python with only its torch family, the wheelhouse, no
    index, no .venv."""
    house = cached_wheelhouse(PY, with_tests=True)
    python = node_python(tmp_path / "node", torch_folder)
    out = tmp_path / "out"
    # INSTALL_S: the install's own limit (75 s with --allow-cpu) is a node's, not a loaded 2-core CI machine's.
    # TIER_EXCLUDE: torch.compile's inductor builds C++ for about 2 minutes on a CPU; the compiled paths have CPU
    # tests of their own (tests/core/test_cuda_paths.py), and a GPU node runs these.
    env = offline_env(PYTHON=str(python), TMPDIR=str(tmp_path), INSTALL_S=INSTALL_S, TIER_EXCLUDE="compiled")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--allow-cpu", "--wheelhouse", str(house),
                           "--out", str(out)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    log = done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s["status"] for s in summary["steps"]}
    assert steps["install"] == "ok" and steps["node"] == "ok" and steps["benchmark"] == "ok", (steps, log[-4000:])
    assert re.search(rf"torch \S+ from {re.escape(str(torch_folder))}/torch/", log), "not the node's torch"
    assert summary["node"]["torch"].startswith("2.11") and summary["node"]["python"] == sys.version.split()[0]
    rows = summary["benchmark"]["rows"]
    assert {r["method"] for r in rows} == {"naive", "amst_joint", "amst_full"}
    assert all(r["cycle_samples_per_s"] > 0 for r in rows if "error" not in r) and all("error" not in r for r in rows)
    table = (out / "summary.md").read_text()
    assert "| card | driver | torch | CUDA |" in table and summary["node"]["torch"] in table
    assert "| amst_full | fast |" in table, "the benchmark's figures are in the table"
    if (ROOT / "tests" / "gpu").is_dir():
        assert steps["GPU tier"] == steps["GPU tier: compile and service"] == "ok", (steps, log[-4000:])
        assert summary["tier"]["failed"] == summary["tier"]["errors"] == 0, log[-4000:]
        assert summary["tier"]["passed"] > 0 and "| tests/gpu |" in table
        assert "not (compiled)" in log, "the compiled tests were left out as asked"
        assert done.returncode == 0, log[-4000:]
    else:
        assert steps["GPU tier"] == "not run" and done.returncode != 0


@pytest.mark.slow
def test_gpu_check_sh_stops_on_a_torch_out_of_range_unless_told(tmp_path: Path) -> None:
    """A node whose torch says 2.10.0: the install stops (pip finds no torch in range and installs none) and the
    other steps do not run; --any-torch installs the rest and runs them. 1-second limits: the tier and the
    benchmark are cut short, and say so."""
    house = cached_wheelhouse(PY, with_tests=True)
    folder = torch_family_folder(tmp_path / "torch-family", torch_version="2.10.0")
    python = node_python(tmp_path / "node", folder)
    env = offline_env(PYTHON=str(python), TMPDIR=str(tmp_path), TIER_S="1", SLOW_TIER_S="1", BENCH_S="1",
                      INSTALL_S=INSTALL_S)
    env.pop("PYTHONPATH", None)
    steps = {}
    for flags in ([], ["--any-torch"]):
        out = tmp_path / f"out{len(flags)}"
        done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--allow-cpu", *flags, "--wheelhouse",
                               str(house), "--out", str(out)], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode != 0
        steps[bool(flags)] = {s["step"]: s["status"] for s in json.loads((out / "summary.json").read_text())["steps"]}
        if not flags:
            log = done.stdout + done.stderr
            assert "outside pyproject.toml's range" in log and "requirement torch<2.12,>=2.11.0a0" in log, log
    assert steps[False] == {"install": "failed (exit 1)", "node": "not run", "GPU tier": "not run",
                            "GPU tier: compile and service": "not run", "benchmark": "not run"}, steps
    assert steps[True]["install"] == "ok" and steps[True]["node"] == "ok", steps
    assert steps[True]["benchmark"] == "timed out after 1 s", steps
    for tier in ("GPU tier", "GPU tier: compile and service"):
        assert steps[True][tier] == ("timed out after 1 s" if (ROOT / "tests" / "gpu").is_dir() else "not run")
    assert [p.name for p in folder.iterdir() if p.name.startswith("torch-")] == ["torch-2.10.0.dist-info"]
