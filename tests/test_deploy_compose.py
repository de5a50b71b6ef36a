"""docker-compose.yml, Dockerfile, .dockerignore and .env.example, checked without a Docker engine: start order,
health checks, the GPU reservation, and that every setting they pass is one the code reads, with its default."""

from __future__ import annotations

import fnmatch
import re
from graphlib import CycleError, TopologicalSorter

import pytest
import yaml

from api.settings import ApiSettings
from launch.cli import build_parser
from tests.kit.composefile import (
    APP,
    COMPOSE,
    COMPOSE_TEXT,
    DIRECT_ENV,
    INTERPOLATION,
    ROOT,
    SERVER,
    SERVICES,
    command,
    depends_on,
    dockerfile_instructions,
    dotenv,
    env_names,
    environment,
    field_defaults,
    healthcheck_text,
    known_server_env,
    resolve,
    seconds,
    ui_settings_model,
    volume_mounts,
)
from worker.settings import WorkerSettings

# ---- services, images, start order ---------------------------------------------------------------------------------

def test_every_service_has_an_image_or_a_build() -> None:
    assert set(SERVICES) == {"redis", "postgres", "migrate", "api", "worker", "ui"}
    for name, service in SERVICES.items():
        assert "image" in service or "build" in service, name
    assert SERVICES["redis"]["image"] == "redis:7-alpine"
    assert SERVICES["postgres"]["image"] == "postgres:16-alpine"


@pytest.mark.parametrize("name", APP)
def test_project_services_build_the_root_dockerfile(name: str) -> None:
    build = SERVICES[name]["build"]
    context, dockerfile = (build, "Dockerfile") if isinstance(build, str) else \
        (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    assert (ROOT / context).resolve() == ROOT and dockerfile == "Dockerfile", build
    assert SERVICES[name]["image"] == SERVICES["api"]["image"], "one image, one tag, for every project service"


@pytest.mark.parametrize("name", ["redis", "postgres", "api", "worker", "ui"])
def test_health_checks(name: str) -> None:
    assert SERVICES[name]["healthcheck"]["test"], name
    text = healthcheck_text(name)
    expected = {"redis": "redis-cli ping", "postgres": "pg_isready", "api": "http://127.0.0.1:8000/health",
                "worker": "--file /tmp/amst-worker.alive", "ui": "http://127.0.0.1:8501/_stcore/health"}[name]
    assert expected in text, text
    if name in ("api", "worker", "ui"):  # the image has no curl, and importing torch every 10 s would cost
        assert SERVICES[name]["healthcheck"]["test"][:4] == ["CMD", "python", "-m", "launch.health"], text


@pytest.mark.parametrize("name", ["redis", "api", "worker", "ui"])
def test_health_check_arguments_are_plain_words(name: str) -> None:
    """podman-compose 1.0 re-quotes a CMD argument holding a space or a quote, and podman then runs a broken
    command (seen: every python -c check unhealthy forever)."""
    kind, *argv = SERVICES[name]["healthcheck"]["test"]
    assert kind == "CMD"
    for arg in argv:
        assert re.fullmatch(r"[\w@%+=:,./-]+", arg), arg


def test_every_long_running_service_has_a_health_check() -> None:
    """Only the one-shot migration has none: it exits, and its exit code is its health."""
    assert {name for name, s in SERVICES.items() if "healthcheck" not in s} == {"migrate"}


def test_the_worker_health_check_reads_the_file_its_heartbeat_loop_touches() -> None:
    test = SERVICES["worker"]["healthcheck"]["test"]
    assert test[test.index("--file") + 1] == environment("worker")["AMST_WORKER_HEALTH_FILE"]
    stale_after = float(test[test.index("--max-age") + 1])
    tick = min(float(resolve(environment("worker")[k])) for k in ("AMST_HEARTBEAT_S", "AMST_REAPER_S"))
    assert stale_after >= 5 * tick, "a few missed ticks are not yet unhealthy"


def test_start_order_from_depends_on() -> None:
    graph = {name: set(depends_on(name)) for name in SERVICES}
    for name, deps in graph.items():
        assert deps <= set(SERVICES), f"{name} depends on unknown services {deps - set(SERVICES)}"
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as err:  # pragma: no cover - the assertion message is the point
        pytest.fail(f"depends_on has a cycle: {err.args[1]}")
    position = order.index
    assert position("redis") < position("migrate") and position("postgres") < position("migrate"), order
    assert position("migrate") < position("api") < position("ui"), order
    assert position("migrate") < position("worker"), order

    assert depends_on("migrate") == {"postgres": "service_healthy"}
    ready = {"redis": "service_healthy", "postgres": "service_healthy", "migrate": "service_completed_successfully"}
    assert depends_on("api") == ready
    assert depends_on("worker") == ready
    assert depends_on("ui") == {"api": "service_healthy"}
    assert SERVICES["migrate"].get("restart") == "no", "the migration runs once and exits"


def test_worker_reserves_one_nvidia_gpu_and_has_time_to_hand_back_its_run() -> None:
    worker = SERVICES["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1, devices
    gpu = devices[0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"], gpu
    assert gpu.get("count") == 1 or len(gpu.get("device_ids", [])) == 1, "one GPU per worker process"
    assert not ("count" in gpu and "device_ids" in gpu), "Docker refuses count together with device_ids"
    assert seconds(worker["stop_grace_period"]) >= 30, "SIGTERM: the worker stops at a batch and re-queues its run"


# ---- commands ------------------------------------------------------------------------------------------------------

def entrypoint() -> list[str]:
    [(_, value)] = [i for i in dockerfile_instructions() if i[0] == "ENTRYPOINT"]
    return yaml.safe_load(value)


@pytest.mark.parametrize("name", APP)
def test_service_commands_parse_with_the_cli(name: str) -> None:
    argv = command(name)
    if argv[0] == "amst":
        argv = argv[1:]
    assert entrypoint() != ["amst"] or command(name)[0] != "amst", "ENTRYPOINT is amst already"
    args = build_parser().parse_args(argv)
    expected = {"migrate": ("db", None), "api": ("serve", "api"), "worker": ("serve", "worker"),
                "ui": ("serve", "ui")}[name]
    assert (args.command, getattr(args, "role", None)) == expected, argv
    if name in ("api", "ui"):  # reachable from the other containers, on the port the health check and ports use
        port = {"api": 8000, "ui": 8501}[name]
        assert args.host == "0.0.0.0" and args.port == port, argv
        assert any(str(p).endswith(f":{port}") for p in SERVICES[name]["ports"]), SERVICES[name]["ports"]
    if name == "worker":
        assert set(args.queue.split(",")) == {"gpu", "cpu"} and args.gpu is None, \
            "the container sees its one GPU as device 0: no --gpu inside a container"


# ---- environment ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "source"), DIRECT_ENV.items())
def test_directly_read_variables_are_read(name: str, source: str) -> None:
    assert f'os.environ.get("{name}"' in (ROOT / source).read_text(), f"{source} no longer reads {name}"


@pytest.mark.parametrize("name", ["migrate", "api", "worker"])
def test_server_environment_holds_only_settings_the_code_reads(name: str) -> None:
    unknown = set(environment(name)) - known_server_env()
    assert not unknown, f"{name} sets variables no code reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", SERVER)
def test_servers_get_database_broker_data_and_artifacts(name: str) -> None:
    env = environment(name)
    for key in ("DATABASE_URL", "BROKER_URL", "AMST_DATA_ROOT", "AMST_ARTIFACTS", "AMST_HOME"):
        assert env.get(key), f"{name} lacks {key}"
    mounts = volume_mounts(name)
    assert mounts[env["AMST_ARTIFACTS"]] == ("artifacts", False), "checkpoints: written by the worker, served and " \
                                                                  "deleted by the api, one shared volume"
    assert mounts[env["AMST_DATA_ROOT"]][0] == "data"
    assert environment("migrate")["DATABASE_URL"] == env["DATABASE_URL"]


def test_worker_writes_datasets_and_postgres_keeps_its_volume() -> None:
    assert volume_mounts("worker")["/data"] == ("data", False), "`docker compose run worker prepare` writes here"
    assert volume_mounts("postgres")["/var/lib/postgresql/data"][0] == "pgdata"
    assert {"pgdata", "artifacts", "data"} <= set(COMPOSE["volumes"])


def test_urls_point_at_the_compose_services() -> None:
    from amst_core.store.db import normalise_url

    env = environment("api")
    database = resolve(env["DATABASE_URL"])
    pg = {k: resolve(v) for k, v in SERVICES["postgres"]["environment"].items()}
    assert normalise_url(database) == database == \
        f"postgresql+psycopg://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}"
    assert resolve(env["BROKER_URL"]) == "redis://redis:6379/0"


def test_passed_through_tunables_default_to_the_code_defaults() -> None:
    """`KEY: ${KEY:-d}` must give d == the Settings default, or compose silently changes the service."""
    defaults = field_defaults(ApiSettings) | field_defaults(WorkerSettings)
    checked = 0
    for name in ("migrate", "api", "worker"):
        for key, value in environment(name).items():
            match = INTERPOLATION.fullmatch(value)
            if match and match.group(1) == key and key in defaults and match.group(2):
                assert type(defaults[key])(match.group(2)) == defaults[key], (name, key, match.group(2))
                checked += 1
    assert checked >= 8


def test_ui_environment_is_what_the_dashboard_reads() -> None:
    model = ui_settings_model()
    env = environment("ui")
    unknown = set(env) - env_names(model)
    assert not unknown, f"ui sets variables the dashboard does not read: {sorted(unknown)}"
    assert env["AMST_API_URL"] == "http://api:8000"
    assert "DATABASE_URL" not in env and "BROKER_URL" not in env, "the dashboard talks to the API only"
    defaults = field_defaults(model)
    for key, value in env.items():
        match = INTERPOLATION.fullmatch(value)
        if match and match.group(1) == key and match.group(2) and key in defaults:
            assert type(defaults[key])(match.group(2)) == defaults[key], (key, match.group(2), defaults[key])


# ---- .env.example --------------------------------------------------------------------------------------------------

def test_env_example_documents_exactly_what_compose_reads() -> None:
    example = dotenv(ROOT / ".env.example")
    interpolated: dict[str, str] = {}
    for m in INTERPOLATION.finditer(COMPOSE_TEXT):
        default = interpolated.setdefault(m.group(1), m.group(2) or "")
        assert default == (m.group(2) or ""), f"{m.group(1)} has two defaults in docker-compose.yml"
    assert set(example) <= set(interpolated) | known_server_env(), set(example) - set(interpolated)
    assert set(interpolated) <= set(example), f"not in .env.example: {sorted(set(interpolated) - set(example))}"
    for key, value in example.items():
        assert value == interpolated[key], f".env.example {key}={value}, compose default {interpolated[key]!r}"


def test_no_variable_has_an_empty_default() -> None:
    """podman-compose 1.0 does not recognise `${X:-}` and passes it on literally (seen: the API's token became the
    text "${AMST_API_TOKEN:-}", whatever the user set); `${X}` is the same for Docker and works for both."""
    for name in ("docker-compose.yml", "docker-compose.local.yml"):
        assert not re.search(r"\$\{\w+:?-\}", (ROOT / name).read_text()), name


def test_env_example_comments_every_setting() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("# "), f"no comment above {line!r}"


# ---- Dockerfile and .dockerignore ----------------------------------------------------------------------------------

def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [value.strip() for op, value in dockerfile_instructions() if op == "USER"]
    assert users, "no USER: the processes would run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), users
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(rf"useradd[^\n]*--uid 10001[^\n]*\b{re.escape(users[-1])}\b", text), "user amst, uid 10001"
    assert re.search(r"chown -R amst:amst /data /artifacts /var/lib/amst", text)


def test_dockerfile_bakes_in_no_secret() -> None:
    for op, value in dockerfile_instructions():
        if op in ("ENV", "ARG"):
            assert not re.search(r"TOKEN|PASSWORD|SECRET|DATABASE_URL|BROKER_URL", value, re.I), (op, value)


def test_dockerfile_installs_the_pinned_project_with_its_migrations() -> None:
    pins = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.11.0" in pins, "the image relies on PyPI's CUDA build of torch 2.11.0"
    ops = dockerfile_instructions()
    assert ops[:2] == [("ARG", "BASE_IMAGE=python:3.11-slim"), ("FROM", "${BASE_IMAGE}")], \
        "python:3.11-slim unless a local base is asked for"
    runs = " ".join(value for op, value in ops if op == "RUN")
    assert "pyproject.toml" in runs and "-c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt" in runs, \
        "dependencies from the pins"
    assert "--mount=type=cache,target=/root/.cache/amst-wheels,sharing=locked" in runs, \
        "the wheels outlive the build, not in it; four services building at once take turns"
    assert "pip download --progress-bar off -d /root/.cache/amst-wheels" in runs, "a rebuild reuses them"
    assert "pip install --no-cache-dir --no-index --find-links /root/.cache/amst-wheels" in runs
    envs = " ".join(value for op, value in ops if op == "ENV").split()
    assert "python3 -m venv /opt/amst" in runs and "PATH=/opt/amst/bin:$PATH" in envs, "one venv on either base"
    for extra in ("ui", "media", "stats"):  # the image is the whole product, not only the worker
        assert f"'{extra}'" in runs, extra
    assert re.search(r"pip install [^&]*--no-deps /tmp/src", runs), "the project itself"
    assert "migrations" in runs and "MIGRATIONS / 'env.py'" in runs, "amst db upgrade needs migrations/"
    assert entrypoint() == ["amst"]


def dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_small_and_complete() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for path in (".venv", ".git", "data", ".amst", "runs", "tests", ".env", "amst_core/__pycache__",
                 "amst_core/data/__pycache__/avdigits.cpython-311.pyc",
                 # what Doc/deploy.md's backups write into the folder they run in, often the checkout: `COPY .`
                 # would keep the run store's dump in an image layer, however the next RUN deletes it
                 "amst-2026-12-06.sql", "artifacts-2026-12-06.tgz", "wheelhouse", "tools/wheelhouse.py",
                 "deploy/local/redis.Dockerfile", "notes.txt"):
        assert dockerignored(path, patterns), f"{path} would be sent to the build"
    for path in ("pyproject.toml", "README.md", "constraints.txt", "amst_core/cli.py", "amst_client/client.py",
                 "amst_core/data/avdigits.py", "api/main.py",
                 "launch/cli.py",
                 "worker/app.py", "ui/app.py", "migrations/env.py", "migrations/versions/0001_initial_run_store.py"):
        assert not dockerignored(path, patterns), f"{path} is needed by the build"


def test_dockerignore_lets_in_every_package_setuptools_installs() -> None:
    """An allowlist: a new top-level package in pyproject.toml must be let in here, or the image lacks it."""
    import tomllib

    allowed = {line[1:] for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {pattern.rstrip("*") for pattern in include["include"]} | {"migrations"} <= allowed, allowed


# ---- Doc/deploy.md: the one-worker-per-GPU override stays in step with the compose file ----------------------------

def test_deploy_doc_gpu_override_matches_the_worker() -> None:
    doc = (ROOT / "Doc" / "deploy.md").read_text()
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "worker-gpu1" in b]
    assert blocks, "Doc/deploy.md shows no worker-gpu1 override"
    extra = blocks[0]["services"]
    assert "worker-gpu1" in extra
    worker = {k: v for k, v in SERVICES["worker"].items() if k not in ("build", "deploy")}
    for name, service in extra.items():
        gpu = re.fullmatch(r"worker-gpu(\d+)", name)
        assert gpu, name
        [device] = service["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "device_ids": [gpu.group(1)], "capabilities": ["gpu"]}, (name, device)
        rest = {k: v for k, v in service.items() if k != "deploy"}
        assert rest == worker, f"{name} differs from the worker service: " \
                               f"{sorted(k for k in rest.keys() | worker.keys() if rest.get(k) != worker.get(k))}"


def test_the_installed_package_carries_every_dashboard_page() -> None:
    """The image installs the project (not editable): each st.Page file must be inside a package setuptools
    finds, or `amst serve ui` in the container has no pages."""
    from setuptools import find_packages

    from ui.common import PAGES

    packages = set(find_packages(str(ROOT), include=["ui*"]))
    for page in PAGES.values():
        folder = ("ui/" + page).rsplit("/", 1)[0].replace("/", ".")
        assert folder in packages, f"{page}: {folder} is not a package (add an __init__.py)"
