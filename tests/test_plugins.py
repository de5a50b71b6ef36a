"""A dataset and a method from plugins (AMST_PLUGINS + modules on the path) exist everywhere with no edit of the
package: GET /datasets and GET /methods (in-process API), `amst train`; a worker run and the New run form are in
tests/service/test_plugin_served.py. A plugin whose spec has no check stops the process naming the dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from amst_core import plugins
from amst_core.datasets import DATASETS
from amst_core.method_specs import METHODS
from amst_core.store.migrate import upgrade
from api.main import create_app
from api.settings import ApiSettings
from tests.kit.plugin import NO_CHECK_MODULE, TOY, TOY_CLASSES, TOY_METHOD, plugin_env, toy_run, write_toy_plugin

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def toy_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The plugins loaded into this process as a process starting with AMST_PLUGINS would; gone afterwards."""
    folder = write_toy_plugin(tmp_path / "plugins")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("AMST_PLUGINS", f"{TOY},{TOY_METHOD}")
    plugins.load_plugins()
    try:
        yield
    finally:
        DATASETS.pop(TOY, None)
        METHODS.pop(TOY_METHOD, None)
        for module in (TOY, TOY_METHOD):
            plugins._loaded.discard(module)
        for module in (TOY, f"{TOY}_source", TOY_METHOD, f"{TOY_METHOD}_impl"):
            sys.modules.pop(module, None)


def test_a_plugin_dataset_and_method_are_served_by_the_api(toy_loaded: None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/amst.db"
    upgrade(url)
    app = create_app(ApiSettings(database_url=url, broker_url="memory://", data_root=tmp_path))
    with TestClient(app) as client:
        served = {d["name"]: d for d in client.get("/datasets").json()}
        methods = {m["name"]: m for m in client.get("/methods").json()}
    assert methods[TOY_METHOD]["summary"] == "naive training, registered by a plugin"
    toy = served[TOY]
    assert toy["modalities"] == ["audio", "visual"] and toy["classes"] == list(TOY_CLASSES)
    assert toy["prepared"] and toy["recipes"]["naive"]["epochs"] == 2


def amst(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "launch", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_plugin_method_trains_a_plugin_dataset_with_amst_train(tmp_path: Path) -> None:
    import os

    env = {**os.environ, **plugin_env(write_toy_plugin(tmp_path / "plugins"), TOY, TOY_METHOD), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ROOT)])
    config = tmp_path / "toy.yaml"
    config.write_text(yaml.safe_dump(toy_run(method=TOY_METHOD)))
    done = amst("train", str(config), "--out", str(tmp_path / "run"), "--no-progress", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    points = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {p["epoch"] for p in points} == {0, 1}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["method"] == TOY_METHOD
    assert {p["modality"] for p in points if p["component"] == "helper" and p["name"] == "acc"} == {"audio", "visual"}


def test_a_plugin_spec_without_a_check_stops_the_process_naming_the_dataset(tmp_path: Path) -> None:
    import os

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "no_check.py").write_text(NO_CHECK_MODULE)
    env = {**os.environ, **plugin_env(folder, "no_check")}
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], str(ROOT)])
    done = subprocess.run([sys.executable, "-c", "import amst_core.catalog"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "dataset 'unchecked': its spec has no check" in done.stderr


def test_a_check_that_crashes_marks_its_dataset_not_ready_and_the_others_are_still_listed(tmp_path: Path) -> None:
    from amst_core.datasets import DatasetSpec, register

    def crashing(cfg, roots):
        raise RuntimeError("a bug in someone's check")

    register(DatasetSpec("crashing", "a plugin's buggy check", ("audio",), check=crashing, source="nowhere:Source"))
    try:
        url = f"sqlite:///{tmp_path}/amst.db"
        upgrade(url)
        app = create_app(ApiSettings(database_url=url, broker_url="memory://", data_root=tmp_path))
        with TestClient(app) as client:
            resp = client.get("/datasets")
        assert resp.status_code == 200
        served = {d["name"]: d for d in resp.json()}
        assert not served["crashing"]["prepared"] and "RuntimeError" in served["crashing"]["problem"]
        assert "a bug" not in served["crashing"]["problem"] and served["synthetic"]["prepared"]
    finally:
        DATASETS.pop("crashing", None)
