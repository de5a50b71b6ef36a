"""Every example in README.md and Doc/ works as written: each `curl` call against the API (a submitted run must
also be trainable: its data check passes and one batch trains on the worker's side), and each `amst train` or
`amst config` line with its config file and `--set` overrides."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from amst_core.config import RunConfig, load_config
from tests.kit.api import FakeDispatcher
from tests.kit.tiny import write_tiny_avdigits

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "Doc").glob("*.md"))]


def shell_lines(path: Path) -> Iterator[str]:
    """Commands of the ```bash blocks, continuation lines joined, comments dropped."""
    for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", path.read_text(), re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            words = shlex.split(command, comments=True)
            if words:
                yield " ".join(shlex.quote(w) for w in words)


def examples(program: str) -> list[tuple[str, str]]:
    found = [(path.name, line) for path in DOCS for line in shell_lines(path)
             if re.search(rf"(^|/){program}$", shlex.split(line)[0]) or shlex.split(line)[0] == program]
    return found


CURLS = examples("curl")
AMST = [(doc, line) for doc, line in examples("amst") if shlex.split(line)[1] in ("train", "config")]


def test_the_docs_have_examples() -> None:
    assert any("POST" in line for _, line in CURLS), "README's REST example was found"
    assert AMST, "CLI examples were found"


def parse_curl(line: str) -> tuple[str, str, dict[str, str], str | None]:
    words = shlex.split(line)[1:]
    method, headers, data, url = "GET", {}, None, ""
    it = iter(words)
    for word in it:
        if word == "-X":
            method = next(it)
        elif word == "-H":
            name, _, value = next(it).partition(":")
            headers[name.strip()] = value.strip()
        elif word in ("-d", "--data"):
            data = next(it)
            method = "POST" if method == "GET" else method
        elif word.startswith("-"):
            continue  # -N, -s: how curl prints, not what it sends
        else:
            url = word
    return method, url, headers, data


@pytest.fixture
def api(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    from api.main import create_app
    from api.settings import ApiSettings
    from tests.kit.db import sqlite_copy

    data = tmp_path / "data"
    write_tiny_avdigits(data, frames=48)
    monkeypatch.setenv("AMST_DATA_ROOT", str(data))
    app = create_app(ApiSettings(database_url=sqlite_copy(sqlite_template, tmp_path), broker_url="memory://",
                                 data_root=data, artifacts=tmp_path / "artifacts"))
    app.state.dispatcher = FakeDispatcher()
    with TestClient(app) as client:
        yield client


def trains_one_batch(config: dict) -> None:
    """What the worker does with a stored config, up to the first batch."""
    from amst_core.data import make_loader, to_device
    from amst_core.engine import Trainer

    cfg = RunConfig.model_validate({**config, "device": "cpu"})
    trainer = Trainer(cfg, progress=False)
    batch = next(iter(make_loader(trainer.datasets["train"], min(cfg.batch_size, 8), shuffle=True)))
    trainer.method.train_mode(True)
    trainer.method.train_batch(to_device(batch, trainer.device), 0)


@pytest.mark.parametrize(("doc", "line"), CURLS, ids=[f"{d}: {line[:60]}" for d, line in CURLS])
def test_curl_examples_work_as_written(api: TestClient, doc: str, line: str) -> None:
    method, url, headers, data = parse_curl(line)
    path = urlsplit(url if "://" in url else f"http://{url}")
    target = path.path + (f"?{path.query}" if path.query else "")
    if "<id>" in target and target.startswith("/sweeps/"):
        sweep = api.post("/sweeps", json={"base": {"method": "naive", "dataset": {"name": "synthetic"},
                                                   "device": "cpu"}, "grid": {"seed": [0, 1]}},
                         headers={"Content-Type": "application/json"}).json()
        target = target.replace("<id>", sweep["id"])
    if "<id>" in target:
        run = api.post("/runs", json={"method": "naive", "dataset": {"name": "synthetic"}, "device": "cpu"},
                       headers={"Content-Type": "application/json"}).json()
        if target.endswith("/events"):  # a stream of a run that ended ends too
            api.post(f"/runs/{run['id']}/cancel", headers={"Content-Type": "application/json"})
        target = target.replace("<id>", run["id"])
    response = api.request(method, target, headers=headers, content=data)
    assert response.status_code < 300, f"{doc}: `{line}` answered {response.status_code}: {response.text[:500]}"
    if method == "POST" and path.path == "/runs":
        trains_one_batch(response.json()["config"])


@pytest.mark.parametrize(("doc", "line"), AMST, ids=[f"{d}: {line[:60]}" for d, line in AMST])
def test_cli_examples_name_valid_configs(doc: str, line: str) -> None:
    words = shlex.split(line)[2:]
    config = next((w for w in words if w.endswith((".yaml", ".yml"))), None)
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    if config is None:
        assert "--resume" in words, f"{doc}: `{line}` names no config"
        return
    assert (ROOT / config).is_file(), f"{doc}: `{line}`: {config} does not exist"
    load_config(ROOT / config, sets)
