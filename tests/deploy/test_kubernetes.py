"""deploy/kubernetes/, checked without a cluster: every object against the Kubernetes API schemas (kubernetes-validate,
which bundles them), and the manifests against docker-compose.yml, which stays the one statement of what each
process runs: the image, the command, the settings, the health check and the volumes of each compose service are
those of the Kubernetes object of the same name. Then what Kubernetes adds: secrets only from the Secret, GPUs,
the termination grace, non-root pods, Services that select pods. With `kubectl` installed, both kustomize folders
render and Doc/deploy.md's Secret commands run as written (`--dry-run=client`).

A fast test (tests/kit/tiers.py: no tier marker): it reads files and starts no process but `kubectl`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

try:
    import kubernetes_validate
except ImportError as err:  # a missing validator fails the module, never skips it: CI must check the schemas
    raise ImportError("kubernetes-validate is not installed: it is in pyproject.toml's dev extra, so `make venv` "
                      "installs it (or: .venv/bin/pip install -c constraints.txt -e '.[dev]')") from err

from amst_core import placement
from amst_core.settings import Settings
from tests.kit.compose import DEPLOY_DOC, ROOT
from tests.kit.composefile import (
    SERVICES,
    command,
    env_names,
    environment,
    known_server_env,
    resolve,
    seconds,
    ui_settings_model,
    volume_mounts,
)

# The oldest Kubernetes release these manifests are for: a field newer than it fails the schema check.
K8S_VERSION = "1.30"
KUBE = ROOT / "deploy" / "kubernetes"
NAMESPACE = "amst"
SECRET = "amst-secrets"
# Settings that hold a password or a token, or may (a broker URL with a Redis password): never written in a
# manifest, always a secretKeyRef into the Secret.
SECRET_SETTINGS = frozenset({"DATABASE_URL", "BROKER_URL", "AMST_API_TOKEN"})
WITH_PASSWORD = re.compile(r"\w+://[^/\s@]*:[^/\s@]+@")  # scheme://user:password@host
WITH_TOKEN = re.compile(r"TOKEN|PASSWORD|SECRET", re.I)
UI_SERVICE = "ui"  # the one project service that reads the dashboard's settings, not the server's
DOC_SECTION = "### Kubernetes"


# ---- loading ------------------------------------------------------------------------------------------------------

def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != "kustomization.yaml")


def load_objects() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict), f"{path}: not a Kubernetes object: {doc!r}"
                found.append((path, doc))
    return found


OBJECTS = load_objects()
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


def label(path: Path, obj: dict[str, Any]) -> str:
    return f"{path.relative_to(KUBE)}:{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def of_kind(*kinds: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for _, obj in OBJECTS if obj["kind"] in kinds}


WORKLOADS = of_kind(*WORKLOAD_KINDS)
CONFIG_MAPS = of_kind("ConfigMap")
APP = sorted(name for name in SERVICES if "build" in SERVICES[name])  # compose's services of the project's image


def pod(name: str) -> dict[str, Any]:
    return WORKLOADS[name]["spec"]["template"]["spec"]


def container(name: str) -> dict[str, Any]:
    """The workload's one container: one process per pod, as one per compose service."""
    containers = pod(name)["containers"]
    assert len(containers) == 1, f"{name}: {len(containers)} containers, expected one"
    return containers[0]


def env_of(name: str) -> dict[str, dict[str, Any]]:
    """Every variable the container gets, envFrom ConfigMaps resolved: name -> {"value": ...} or {"secret": key}
    or {"field": path} (the downward API)."""
    c = container(name)
    env: dict[str, dict[str, Any]] = {}
    for source in c.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"{name}: envFrom {source}: only ConfigMaps (a Secret's keys would " \
                                                "be invisible here; name each secret with secretKeyRef)"
        ref = source["configMapRef"]["name"]
        assert ref in CONFIG_MAPS, f"{name}: envFrom names ConfigMap {ref!r}, which no manifest defines"
        env |= {k: {"value": v} for k, v in CONFIG_MAPS[ref]["data"].items()}
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = {"value": var["value"]}
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET, f"{name}: {var['name']} from Secret {ref['name']!r}, not {SECRET!r}"
            env[var["name"]] = {"secret": ref["key"]}
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = {"field": var["valueFrom"]["fieldRef"]["fieldPath"]}
        else:
            pytest.fail(f"{name}: {var['name']} comes from neither a value, the Secret nor the downward API: {var}")
    return env


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def listed_files(folder: Path) -> list[Path]:
    """The manifest files a kustomization folder takes in, through its sub-folders."""
    files = []
    for resource in kustomization(folder)["resources"]:
        path = (folder / resource).resolve()
        assert path.exists(), f"{folder / 'kustomization.yaml'} lists {resource}, which does not exist"
        files += listed_files(path) if path.is_dir() else [path]
    return files


def secret_keys(paths: list[Path]) -> set[str]:
    """The Secret's keys that the objects of these files read."""
    keys = set()
    for path, obj in OBJECTS:
        if path in paths and obj["kind"] in WORKLOAD_KINDS:
            for c in obj["spec"]["template"]["spec"]["containers"]:
                keys |= {v["valueFrom"]["secretKeyRef"]["key"] for v in c.get("env", [])
                         if "secretKeyRef" in v.get("valueFrom", {})}
    return keys


def doc_commands() -> list[str]:
    """The command lines of Doc/deploy.md's Kubernetes section, continuation lines joined, comments dropped."""
    text = DEPLOY_DOC.read_text()
    section = text[text.index(DOC_SECTION):]
    section = section[:section.index("\n## ")]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        lines += [" ".join(line.split("  #")[0].split()) for line in block.replace("\\\n", " ").splitlines()
                  if line.strip()]
    return lines


def secret_commands() -> dict[str, str]:
    """Doc/deploy.md's two `create secret` lines: with the bundled PostgreSQL and Redis, and with external ones."""
    found = [c for c in doc_commands() if c.startswith(f"kubectl -n {NAMESPACE} create secret generic {SECRET} ")]
    assert len(found) == 2, f"Doc/deploy.md's Kubernetes section should create the Secret twice: {found}"
    bundled, external = found
    return {"bundled": bundled, "external": external}


def literal_keys(line: str) -> set[str]:
    return set(re.findall(r"--from-literal=(\w+)=", line))


# ---- the schemas ---------------------------------------------------------------------------------------------------

def test_there_are_manifests() -> None:
    kinds = sorted(obj["kind"] for _, obj in OBJECTS)
    assert {"Deployment", "StatefulSet", "Job", "Service", "ConfigMap", "PersistentVolumeClaim"} <= set(kinds), kinds


@pytest.mark.parametrize(("path", "obj"), OBJECTS, ids=[label(p, o) for p, o in OBJECTS])
def test_every_object_is_valid_for_the_kubernetes_api(path: Path, obj: dict[str, Any]) -> None:
    """Strict: a field the API does not know (a typo, a field of a later release) fails as a wrong type does."""
    checked, problem = None, None
    try:
        checked = kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:  # failed below, without the schema it quotes
        where = ".".join(str(p) for p in err.path)
        problem = f"not a valid {obj['kind']} for Kubernetes {K8S_VERSION}: {where}: {err.message}"
    except kubernetes_validate.SchemaNotFoundError as err:
        problem = err.message
    if problem:
        pytest.fail(f"{label(path, obj)}: {problem}", pytrace=False)
    assert checked == K8S_VERSION


def test_a_broken_manifest_fails_the_schema_check() -> None:
    """The check above can fail: a misspelt field and a wrong type, in a copy of the worker."""
    worker = json.loads(json.dumps(WORKLOADS["worker"]))
    worker["spec"]["template"]["spec"]["terminationGracePeriod"] = 120
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriod"):
        kubernetes_validate.validate(worker, K8S_VERSION, strict=True)
    worker = json.loads(json.dumps(WORKLOADS["worker"]))
    worker["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSION, strict=True)


def test_names_are_unique_per_kind() -> None:
    keys = [(obj["kind"], obj["metadata"]["name"]) for _, obj in OBJECTS]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)


# ---- kustomize -----------------------------------------------------------------------------------------------------

def test_every_manifest_is_in_exactly_one_folder_and_the_full_stack_takes_them_all() -> None:
    folders = [KUBE / "app", KUBE / "bundled"]
    listed = [f for folder in folders for f in listed_files(folder)]
    assert sorted(listed) == manifest_files(), "a manifest file no kustomization takes in, or one taken twice"
    assert sorted(listed_files(KUBE)) == manifest_files()
    assert kustomization(KUBE)["namespace"] == NAMESPACE


def test_the_external_folder_is_the_app_without_postgres_and_redis() -> None:
    external = KUBE / "external"
    assert kustomization(external)["namespace"] == NAMESPACE
    assert sorted(listed_files(external)) == sorted(listed_files(KUBE / "app"))
    app_workloads = {obj["metadata"]["name"] for path, obj in OBJECTS
                     if path in listed_files(external) and obj["kind"] in WORKLOAD_KINDS}
    assert app_workloads == set(APP), "the app folder holds the project's processes, and only them"


def kubectl_kustomize(folder: Path) -> list[dict[str, Any]]:
    done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {folder}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (the checks above need none)")
def test_kustomize_renders_both_folders_into_the_namespace() -> None:
    for folder in (KUBE, KUBE / "external"):
        rendered = kubectl_kustomize(folder)
        files = {(obj["kind"], obj["metadata"]["name"]) for path, obj in OBJECTS if path in listed_files(folder)}
        assert {(obj["kind"], obj["metadata"]["name"]) for obj in rendered} == files, folder
        assert {obj["metadata"].get("namespace") for obj in rendered} == {NAMESPACE}, folder
        images = {c["image"] for obj in rendered if obj["kind"] in WORKLOAD_KINDS
                  for c in obj["spec"]["template"]["spec"]["containers"]}
        assert app_image() in images, f"kustomize's images: entry changed the image: {images}"


# ---- compose's services, one for one -------------------------------------------------------------------------------

def test_every_compose_service_has_its_workload() -> None:
    assert set(WORKLOADS) == set(SERVICES), "one workload per compose service, under its name"
    assert WORKLOADS["migrate"]["kind"] == "Job", "the migration runs once and exits"


def app_image() -> str:
    images = {resolve(SERVICES[name]["image"]) for name in APP}
    assert len(images) == 1, images
    return images.pop()


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_container_runs_the_image_of_its_compose_service(name: str) -> None:
    expected = app_image() if name in APP else SERVICES[name]["image"]
    assert container(name)["image"] == expected


def test_one_image_for_every_process_of_the_project() -> None:
    images = {container(name)["image"] for name in WORKLOADS if name in APP}
    assert images == {app_image()}
    [entry] = kustomization(KUBE / "app")["images"]
    assert entry["name"] == app_image().split(":")[0], "the images: entry must name the image the containers use"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_container_runs_the_command_of_its_compose_service(name: str) -> None:
    """compose's `command` replaces the image's CMD and keeps its ENTRYPOINT (`amst`): Kubernetes' `args` does
    that; its `command` would replace the entrypoint."""
    c = container(name)
    assert "command" not in c, f"{name}: `command` replaces the image's entrypoint; compose keeps it"
    expected = command(name) if "command" in SERVICES[name] else None
    assert c.get("args") == expected


def test_the_migration_job_runs_amst_db_upgrade() -> None:
    assert container("migrate")["args"] == ["db", "upgrade"]
    assert pod("migrate")["restartPolicy"] in ("OnFailure", "Never")


# ---- settings ------------------------------------------------------------------------------------------------------

def downward(name: str) -> set[str]:
    return {k for k, v in env_of(name).items() if "field" in v}


@pytest.mark.parametrize("name", APP)
def test_each_container_gets_the_settings_of_its_compose_service(name: str) -> None:
    """The same variables, and the same values as compose gives with nothing set in .env; a secret's value is the
    Secret's (Doc/deploy.md says what to put in it)."""
    env = env_of(name)
    compose = environment(name)
    assert set(env) - downward(name) == set(compose), \
        f"{name}: missing {sorted(set(compose) - set(env))}, extra {sorted(set(env) - set(compose))}"
    for key, value in compose.items():
        if key in SECRET_SETTINGS:
            assert env[key] == {"secret": key}, f"{name}: {key} must come from the Secret's key {key}"
        else:
            assert env[key] == {"value": resolve(value)}, f"{name}: {key}"


@pytest.mark.parametrize("name", APP)
def test_every_variable_is_a_setting_the_code_reads(name: str) -> None:
    known = env_names(ui_settings_model()) if name == UI_SERVICE else known_server_env()
    unknown = set(env_of(name)) - downward(name) - known
    assert not unknown, f"{name} sets variables no settings class reads: {sorted(unknown)}"
    unread = downward(name) - set(placement.ENV_NAMES)
    assert not unread, f"{name} gets {sorted(unread)} from the downward API, which amst_core.placement does not read"


def test_a_worker_names_its_pod_for_the_cluster_view() -> None:
    env = env_of("worker")
    assert env[placement.POD_NAME] == {"field": "metadata.name"}
    assert env[placement.POD_NAMESPACE] == {"field": "metadata.namespace"}


def test_the_shared_settings_are_the_service_settings() -> None:
    """The ConfigMap holds only what amst_core.settings.Settings and its subclasses read."""
    [config] = CONFIG_MAPS.values()
    assert set(config["data"]) <= known_server_env()
    assert {"AMST_DATA_ROOT", "AMST_ARTIFACTS", "AMST_HEARTBEAT_S"} <= set(config["data"]) & env_names(Settings)


def test_settings_holding_a_password_or_token_in_compose_are_secret() -> None:
    for name in APP:
        for key, value in environment(name).items():
            if any(WITH_TOKEN.search(var) for var in re.findall(r"\$\{(\w+)", value)):
                assert key in SECRET_SETTINGS, f"compose's {name}.{key} carries a secret: add it to SECRET_SETTINGS"


def literal_values() -> list[tuple[str, str, str]]:
    """(where, variable, value) of every value written in a manifest: container env and ConfigMap data."""
    found = []
    for path, obj in OBJECTS:
        if obj["kind"] == "ConfigMap":
            found += [(label(path, obj), k, str(v)) for k, v in obj.get("data", {}).items()]
        if obj["kind"] in WORKLOAD_KINDS:
            for c in obj["spec"]["template"]["spec"]["containers"]:
                found += [(label(path, obj), v["name"], str(v["value"])) for v in c.get("env", []) if "value" in v]
    return found


def test_no_secret_is_written_in_a_manifest() -> None:
    assert not [label(p, o) for p, o in OBJECTS if o["kind"] == "Secret"], "the Secret is created, not applied"
    for where, key, value in literal_values():
        assert not WITH_PASSWORD.search(value), f"{where}: {key} holds a URL with a password"
        assert not WITH_TOKEN.search(key), f"{where}: {key} is written inline; take it from the Secret {SECRET}"
        assert key not in SECRET_SETTINGS, f"{where}: {key} is written inline; take it from the Secret {SECRET}"


def test_the_secret_check_catches_an_inline_url() -> None:
    assert WITH_PASSWORD.search("postgresql+psycopg://amst:s3cret@postgres:5432/amst")
    assert WITH_PASSWORD.search("redis://:s3cret@redis:6379/0")
    assert not WITH_PASSWORD.search("http://api:8000") and not WITH_PASSWORD.search("redis://redis:6379/0")


# ---- health --------------------------------------------------------------------------------------------------------

def compose_health(name: str) -> list[str]:
    """compose's health check, `$$` unescaped (compose's escape for a literal `$`)."""
    return [part.replace("$$", "$") for part in SERVICES[name]["healthcheck"]["test"]]


def as_compose_test(probe: dict[str, Any], ports: dict[str, int]) -> list[str]:
    """A probe written as the compose health check that does the same."""
    if "exec" in probe:
        argv = probe["exec"]["command"]
        return ["CMD-SHELL", argv[2]] if argv[:2] == ["sh", "-c"] else ["CMD", *argv]
    get = probe["httpGet"]
    port = ports.get(get["port"], get["port"])
    return ["CMD", "python", "-m", "launch.health", f"http://127.0.0.1:{port}{get['path']}"]


def container_ports(name: str) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(name).get("ports", []) if "name" in p}


# The probe that plays compose's health check: readiness where a Service routes to the pods, liveness for the
# worker, which no Service routes to.
HEALTH_PROBE = {name: "livenessProbe" if name == "worker" else "readinessProbe"
                for name in SERVICES if "healthcheck" in SERVICES[name]}


@pytest.mark.parametrize("name", sorted(HEALTH_PROBE))
def test_each_health_probe_is_the_compose_health_check(name: str) -> None:
    probe = container(name)[HEALTH_PROBE[name]]
    assert as_compose_test(probe, container_ports(name)) == compose_health(name)


@pytest.mark.parametrize("name", sorted(HEALTH_PROBE))
def test_every_long_running_container_has_liveness_and_readiness(name: str) -> None:
    c = container(name)
    assert "livenessProbe" in c, name
    if name != "worker":  # no Service routes to a worker: readiness would mean nothing
        assert "readinessProbe" in c, name


def test_the_migration_has_no_probe() -> None:
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(container("migrate")), \
        "the Job's exit code is its health; a liveness probe would kill a long migration"


def test_the_worker_liveness_reads_the_file_its_heartbeat_touches() -> None:
    argv = container("worker")["livenessProbe"]["exec"]["command"]
    assert argv[:3] == ["python", "-m", "launch.health"] and "--file" in argv
    assert argv[argv.index("--file") + 1] == env_of("worker")["AMST_WORKER_HEALTH_FILE"]["value"]
    assert container("worker")["startupProbe"]["exec"]["command"] == argv


def http_paths(name: str) -> dict[str, str]:
    c = container(name)
    return {kind: c[kind]["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")
            if kind in c and "httpGet" in c[kind]}


def test_api_and_dashboard_probes_are_their_health_routes() -> None:
    assert http_paths("api")["readinessProbe"] == urlsplit(compose_health("api")[-1]).path == "/health"
    assert set(http_paths("ui").values()) == {urlsplit(compose_health("ui")[-1]).path}


def test_the_api_liveness_route_answers_through_a_database_outage() -> None:
    """Readiness is /health, 503 while the database does not answer; liveness must not be, or Kubernetes would
    restart an API that a restart cannot mend. Shown on the real app, its database a closed port."""
    from fastapi.testclient import TestClient

    from api.main import create_app

    app = create_app(Settings(DATABASE_URL="postgresql+psycopg://amst@127.0.0.1:1/amst", BROKER_URL="memory://"))
    client = TestClient(app)  # not entered: no lifespan, no reaper, as when the database is down from the start
    paths = http_paths("api")
    assert client.get(paths["readinessProbe"]).status_code == 503
    assert client.get(paths["livenessProbe"]).status_code == 200
    assert client.get(paths["startupProbe"]).status_code == 200


@pytest.mark.parametrize("name", ["api", "worker"])
def test_the_startup_probe_outlasts_the_schema_wait(name: str) -> None:
    """`amst serve api` and `amst serve worker` wait up to AMST_SCHEMA_WAIT_S for the migration's schema before
    they listen or touch their health file; liveness must not count before that."""
    probe = container(name)["startupProbe"]
    allowed = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    assert allowed > float(env_of(name)["AMST_SCHEMA_WAIT_S"]["value"]), (name, allowed)


# ---- GPUs, stopping, volumes ---------------------------------------------------------------------------------------

def gpus(name: str) -> object:
    return container(name).get("resources", {}).get("limits", {}).get("nvidia.com/gpu")


def test_a_worker_asks_for_one_gpu_and_no_one_else_does() -> None:
    [device] = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["count"] == 1, "compose reserves one GPU per worker"
    assert str(gpus("worker")) == "1", "one worker per pod, one GPU per pod"
    assert not [name for name in WORKLOADS if name != "worker" and gpus(name) is not None]


def test_a_stopped_worker_has_time_to_hand_its_run_back() -> None:
    grace = pod("worker")["terminationGracePeriodSeconds"]
    assert grace >= max(60, seconds(SERVICES["worker"]["stop_grace_period"])), grace
    update = WORKLOADS["worker"]["spec"]["strategy"]
    assert update["rollingUpdate"]["maxSurge"] == 0, "an update must not need a spare GPU"


def test_the_worker_has_compose_shared_memory() -> None:
    [shm] = [m for m in container("worker")["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    [volume] = [v for v in pod("worker")["volumes"] if v["name"] == shm["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"
    assert volume["emptyDir"]["sizeLimit"] == SERVICES["worker"]["shm_size"].replace("gb", "Gi")


def claimed_mounts(name: str) -> dict[str, tuple[str, bool]]:
    """mountPath -> (claim, read-only) of the container's mounts of PersistentVolumeClaims."""
    spec = pod(name)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", [])
              if "persistentVolumeClaim" in v}
    claims |= {t["metadata"]["name"]: t["metadata"]["name"]
               for t in WORKLOADS[name]["spec"].get("volumeClaimTemplates", [])}
    return {m["mountPath"]: (claims[m["name"]], bool(m.get("readOnly")))
            for m in container(name).get("volumeMounts", []) if m["name"] in claims}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_container_mounts_the_volumes_of_its_compose_service(name: str) -> None:
    assert claimed_mounts(name) == volume_mounts(name)


def test_shared_volumes_can_be_mounted_by_pods_on_several_nodes() -> None:
    claims = of_kind("PersistentVolumeClaim")
    shared = {claim for name in ("api", "worker") for claim, _ in claimed_mounts(name).values()}
    assert shared == {"artifacts", "data"} and shared <= set(claims)
    for claim in shared:
        assert claims[claim]["spec"]["accessModes"] == ["ReadWriteMany"], claim


# ---- security ------------------------------------------------------------------------------------------------------

def image_uid() -> int:
    """The uid of the image's user (Dockerfile's useradd)."""
    found = re.search(r"useradd[^\n]*--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert found, "Dockerfile: no useradd --uid"
    return int(found.group(1))


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_pod_runs_as_a_non_root_user(name: str) -> None:
    """PostgreSQL's and Redis's images too: started as their own users (postgres.yaml and redis.yaml say why that
    works), none needs root."""
    context = pod(name)["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, name
    if name in APP:
        assert context["runAsUser"] == image_uid() == context["runAsGroup"], name
    c = container(name)["securityContext"]
    assert c["allowPrivilegeEscalation"] is False and c["capabilities"]["drop"] == ["ALL"], name
    assert not c.get("privileged") and c.get("runAsUser", 1) != 0, name


def test_pods_with_compose_init_reap_their_orphans() -> None:
    """compose's `init: true` makes tini PID 1; in a pod the pause process is PID 1 with a shared namespace."""
    for name, service in SERVICES.items():
        assert bool(pod(name).get("shareProcessNamespace")) == bool(service.get("init")), name


# ---- Services ------------------------------------------------------------------------------------------------------

def test_each_workload_selects_its_own_pods() -> None:
    for name, obj in WORKLOADS.items():
        if obj["kind"] == "Job":
            continue
        selector = obj["spec"]["selector"]["matchLabels"]
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        others = [other for other in WORKLOADS if other != name
                  and selector.items() <= WORKLOADS[other]["spec"]["template"]["metadata"]["labels"].items()]
        assert not others, f"{name}'s selector also takes the pods of {others}"


@pytest.mark.parametrize("service", sorted(of_kind("Service")))
def test_every_service_selects_pods_that_exist_on_a_port_they_open(service: str) -> None:
    spec = of_kind("Service")[service]["spec"]
    chosen = [name for name in WORKLOADS
              if spec["selector"].items() <= WORKLOADS[name]["spec"]["template"]["metadata"]["labels"].items()]
    assert chosen == [service], f"Service {service} selects the pods of {chosen}"
    ports = container(service)["ports"]
    for port in spec["ports"]:
        target = port.get("targetPort", port["port"])
        assert target in {p["name"] for p in ports} | {p["containerPort"] for p in ports}, (service, target)


@pytest.mark.parametrize("service", ["api", "ui"])
def test_services_use_the_ports_compose_publishes(service: str) -> None:
    published = {int(str(p).rsplit(":", 1)[1]) for p in SERVICES[service]["ports"]}
    assert {p["port"] for p in of_kind("Service")[service]["spec"]["ports"]} == published


def test_the_service_urls_are_the_compose_urls() -> None:
    """The Services carry compose's service names, so that compose's URLs hold in the cluster."""
    assert urlsplit(resolve(environment("api")["DATABASE_URL"])).hostname in of_kind("Service")
    assert urlsplit(resolve(environment("api")["BROKER_URL"])).hostname in of_kind("Service")
    assert urlsplit(env_of("ui")["AMST_API_URL"]["value"]).hostname in of_kind("Service")


# ---- Doc/deploy.md's Secret ----------------------------------------------------------------------------------------

def test_the_doc_secrets_hold_what_the_manifests_read() -> None:
    commands = secret_commands()
    assert literal_keys(commands["bundled"]) == secret_keys(listed_files(KUBE))
    assert literal_keys(commands["external"]) == secret_keys(listed_files(KUBE / "external"))
    database, broker = (re.search(rf"--from-literal={key}=(\S+)", commands["bundled"]).group(1)
                        for key in ("DATABASE_URL", "BROKER_URL"))
    compose = {key: resolve(environment("api")[key]) for key in ("DATABASE_URL", "BROKER_URL")}
    parts = [(u.scheme, u.username, u.hostname, u.port, u.path)
             for u in map(urlsplit, (database, compose["DATABASE_URL"]))]
    assert parts[0] == parts[1], "the bundled Secret's DATABASE_URL is compose's, its password aside"
    assert broker == compose["BROKER_URL"]
    assert "kubectl apply -k deploy/kubernetes" in doc_commands()
    assert "kubectl apply -k deploy/kubernetes/external" in doc_commands()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (the check above needs none)")
def test_the_doc_secret_commands_make_the_keys_the_manifests_read() -> None:
    """Each `create secret` line as written, after the lines before it that set its shell variables, with
    `--dry-run=client`: kubectl builds the Secret without a cluster."""
    lines = doc_commands()
    for which, folder in (("bundled", KUBE), ("external", KUBE / "external")):
        line = secret_commands()[which]
        setup = [c for c in lines[:lines.index(line)] if re.match(r"^[A-Z_]+=", c)]
        script = "\n".join(["set -eu", *setup, f"{line} --dry-run=client -o json"])
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{which}: {done.stderr}"
        secret = json.loads(done.stdout)
        assert secret["metadata"] == {"name": SECRET, "namespace": NAMESPACE, "creationTimestamp": None}
        assert set(secret["data"]) == secret_keys(listed_files(folder)), which
