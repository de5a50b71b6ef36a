"""docker-compose.yml as the tests read it: its services, their environment, commands, health checks and volumes,
and the settings the code reads (tests/test_deploy_compose.py checks the compose file, tests/deploy/
test_kubernetes.py the manifests against the same rules)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from amst_core.limits import Limits
from amst_core.settings import Settings
from api.settings import ApiSettings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP = ("migrate", "api", "worker", "ui")  # the services that run the project's image
SERVER = ("api", "worker")  # the services that read the run store, the broker, datasets and artifacts
# Variables the code reads with os.environ.get rather than through a Settings model.
DIRECT_ENV = {"AMST_HOME": "amst_core/store/db.py"}
INTERPOLATION = re.compile(r"(?<!\$)\$\{(\w+)(?::?-([^}]*))?\}")  # $${X} is an escaped $, not a variable


# ---- helpers -------------------------------------------------------------------------------------------------------

def env_names(model: type[BaseSettings]) -> set[str]:
    """The environment variables a pydantic-settings model reads (its aliases, else prefix + field name)."""
    prefix = model.model_config.get("env_prefix", "")
    names: set[str] = set()
    for name, field in model.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names |= {c.upper() for c in alias.choices if isinstance(c, str)}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def ui_settings_model() -> type[BaseSettings]:
    return pytest.importorskip("ui.settings", reason="the dashboard (ui/settings.py) is not there yet").UiSettings


def field_defaults(model: type[BaseSettings]) -> dict[str, Any]:
    defaults = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias or field.alias
        defaults[(alias if isinstance(alias, str) else name).upper()] = field.default
    return defaults


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def depends_on(service: str) -> dict[str, str]:
    deps = SERVICES[service].get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


def resolve(value: str) -> str:
    """Compose interpolation with an empty environment: every ${VAR:-default} becomes its default."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def command(service: str) -> list[str]:
    cmd = SERVICES[service]["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def healthcheck_text(service: str) -> str:
    test = SERVICES[service]["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a compose duration: {duration}"
    return sum(float(n) * units[u] for n, u in parts)


def volume_mounts(service: str) -> dict[str, tuple[str, bool]]:
    """target -> (named volume or host path, read_only)."""
    mounts = {}
    for spec in SERVICES[service].get("volumes", []):
        if isinstance(spec, dict):
            mounts[spec["target"]] = (spec["source"], bool(spec.get("read_only")))
        else:
            source, target, *mode = spec.split(":")
            mounts[target] = (source, "ro" in (mode[0].split(",") if mode else []))
    return mounts


def dotenv(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            pairs[key.strip()] = value.strip()
    return pairs


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def known_server_env() -> set[str]:
    models = (Settings, ApiSettings, WorkerSettings, Limits)
    return set().union(*(env_names(m) for m in models)) | set(DIRECT_ENV)
