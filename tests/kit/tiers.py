"""The suite's tiers, decided in one place at collection (registered by tests/conftest.py's `pytest_plugins`).

`make test-fast` runs `-m "not service and not browser and not slow and not gpu and not postgresql"`: unit tests
and in-process API tests on the embedded store, the inner loop (under 2 minutes on 2 cores). `make test` runs
everything, as CI does. A test is

- `service` when it starts real service processes (an API, a worker, `amst up`, a Celery queue): everything under
  tests/service/, and any test using a fixture that starts an API process;
- `browser` when it drives the headless Chromium (it starts a service too);
- `slow` when it trains for more than a few seconds, builds wheels or runs a fuzzer (marked where it is written,
  or by file below when the whole file is);
- `postgresql` when it is the PostgreSQL variant of a test parametrized over the run store's backends: the quick
  tier checks each such test once, on the embedded SQLite a developer has; the whole suite runs both (and skips
  PostgreSQL where it does not answer).

Markers written on a test with `@pytest.mark.slow` and friends keep working; this only adds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

# Files (relative to tests/) whose every test belongs to the tiers listed: a name ending in ".py" is one file,
# anything else a prefix (a folder, "ui/test_browser": every browser file).
BY_PATH: dict[str, tuple[str, ...]] = {
    "service/": ("service",),
    "ui/test_browser": ("browser", "service"),
    "api/test_api_schemathesis.py": ("service", "slow"),  # a real API process under a fuzzer, 25 + 20 s
    "test_offline_node.py": ("slow",),  # wheelhouses and offline pip installs into fresh environments
    "deploy/test_compose_stack.py": ("service", "slow"),  # the compose stack built and run with podman-compose
    "service/test_slurm.py": ("service", "slow"),  # a one-node Slurm cluster of its own, worker jobs, 2-3 min
}
# Fixtures that start an API process (the dashboard's pages read a real one through HTTP). A new such fixture
# outside tests/service belongs here, or its tests land in the quick tier.
SERVICE_FIXTURES = frozenset({"seeded_api", "sweep_api", "workers_api"})


def tiers_of(item: pytest.Item) -> set[str]:
    """The tiers a collected test belongs to, from where it is written and what it uses."""
    try:
        relative = Path(item.path).resolve().relative_to(TESTS).as_posix()
    except ValueError:  # a test file outside tests/, named on the command line
        return set()
    tiers = {tier for prefix, names in BY_PATH.items() for tier in names
             if relative == prefix or (not prefix.endswith(".py") and relative.startswith(prefix))}
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        tiers.add("service")
    if on_postgresql(item):
        tiers.add("postgresql")
    return tiers


def on_postgresql(item: pytest.Item) -> bool:
    """Whether a backend parameter of the test (`db_url`, a service's backend, ...) is PostgreSQL."""
    callspec = getattr(item, "callspec", None)
    return callspec is not None and any(value == "postgresql" for value in callspec.params.values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for tier in sorted(tiers_of(item)):
            item.add_marker(tier)
