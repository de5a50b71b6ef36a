"""The Workers page (issue 25, item 5): every worker with where it runs (host, Slurm job, pod), its GPUs, queues,
the run it trains (a link to its page), its heartbeat and state; the empty state says how to start one. The rows'
words (ui.workerlist) first, then the page in AppTest against a real API process over a seeded store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from amst_core.placement import Placement
from amst_core.store import lifecycle
from amst_core.store.db import get_engine
from amst_core.store.models import RunStatus, Worker, utcnow
from tests.kit.db import migrated_sqlite
from tests.kit.seeded import APP, EVIL_NAME, seed_run
from tests.kit.svc import Service, service_env
from ui import workerlist

H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81_105}
L4 = {"index": 2, "name": "NVIDIA L4", "memory_mib": 22_488}


def worker(state: str = "alive", **fields: Any) -> dict[str, Any]:
    """A worker as GET /workers answers it."""
    return {"id": "w", "hostname": "node07", "pid": 311, "queues": ["gpu"], "device": "cuda:0", "gpus": [],
            "slurm": None, "pod": None, "heartbeat_age_s": 3.0, "alive": state == "alive", "state": state,
            "current_run_id": None, "current_run_name": None, **fields}


def test_where_names_the_host_then_the_slurm_job_or_the_pod() -> None:
    assert workerlist.where(worker()) == ["node07 · pid 311"]
    slurm = worker(slurm={"job_id": "4242", "job_name": "amst-worker", "partition": "gpu"})
    assert workerlist.where(slurm)[1] == "Slurm job 4242 (amst-worker, partition gpu)"
    bare_job = worker(slurm={"job_id": "4242", "job_name": None, "partition": None})
    assert workerlist.where(bare_job)[1] == "Slurm job 4242"
    assert workerlist.where(worker(pod={"name": "amst-worker-0", "namespace": "research"}))[1] == \
        "pod research/amst-worker-0"
    assert workerlist.where(worker(pod={"name": "amst-worker-0", "namespace": None}))[1] == "pod amst-worker-0"


def test_gpus_are_counted_by_kind_with_their_memory() -> None:
    assert workerlist.gpus([H100, {**H100, "index": 1}, L4]) == \
        "2 × NVIDIA H100 80GB HBM3 (79 GiB each)\n1 × NVIDIA L4 (22 GiB)"
    assert workerlist.gpus([{**L4, "memory_mib": 7_680}]) == "1 × NVIDIA L4 (7.5 GiB)"
    assert workerlist.gpus([]) == "none (CPU)"
    assert workerlist.gpus(None).startswith("not announced"), "an older worker is not taken for a CPU one"


def test_what_a_worker_trains_and_which_workers_are_listed() -> None:
    assert workerlist.run_label(worker()) is None
    training = worker(current_run_id="a1b2c3d4e5f6", current_run_name="skip-2")
    assert workerlist.run_label(training) == "skip-2 (a1b2c3)"
    assert workerlist.run_label({**training, "state": "lost"}) == "was training skip-2 (a1b2c3)"
    assert workerlist.run_label(worker(current_run_id="a1b2c3d4e5f6")) == "a1b2c3d4 (deleted since)"
    workers = [worker("stopped", id="a"), worker("lost", id="b"), worker("alive", id="c"), worker("alive", id="d"),
               worker("retired", id="e")]  # the API's order: latest heartbeat first
    assert workerlist.state_counts(workers) == "2 alive · 1 lost · 1 stopped · 1 retired"
    assert [w["id"] for w in workerlist.shown(workers, False)] == ["c", "d", "b", "e"]
    assert [w["id"] for w in workerlist.shown(workers, True)] == ["c", "d", "b", "a", "e"]


# ---- the page, against a real API ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workers_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """An API process (heartbeats an hour apart: nothing is reaped) over a store with one running run."""
    tmp = tmp_path_factory.mktemp("workers")
    url = f"sqlite:///{migrated_sqlite(tmp / 'amst.db')}"
    run = seed_run(url, "amst_full", 3, 10, RunStatus.running, name="full-on-node07")
    service = Service(service_env(tmp, DATABASE_URL=url, AMST_HEARTBEAT_S="3600"), tmp)
    service.start_api()
    try:
        yield service.url, url, run.id
    finally:
        service.stop()


def register(url: str, run_id: str) -> None:
    """Four workers: in a Slurm job training the run, in a pod (its name with Markdown in it), lost, stopped."""
    with Session(get_engine(url)) as s, s.begin():
        s.execute(delete(Worker))
        lifecycle.register_worker(s, "gpu0@node07", Placement("node07", 311, slurm_job_id="4242",
                                                              slurm_job_name="amst-worker", slurm_partition="gpu"),
                                  "gpu", "cuda:0", [H100, {**H100, "index": 1}])
        lifecycle.worker_heartbeat(s, "gpu0@node07", run_id)
        lifecycle.register_worker(s, "pod-worker", Placement("amst-worker-0", 1, pod_name=EVIL_NAME,
                                                             pod_namespace="research"), "gpu,cpu", "cuda:0", [L4])
        lifecycle.register_worker(s, "silent", Placement("node08", 5), "cpu", "cpu", [])
        lifecycle.register_worker(s, "done", Placement("node09", 6), "cpu", "cpu", [])
        lifecycle.worker_stopped(s, "done")
        s.execute(update(Worker).where(Worker.id.in_(["silent", "done"]))
                  .values(heartbeat_at=utcnow() - timedelta(days=1)))


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_the_page_says_how_to_start_a_worker_then_lists_each_with_where_it_runs(workers_api, ui_env) -> None:
    from streamlit.testing.v1 import AppTest

    api_url, db, run_id = workers_api
    with Session(get_engine(db)) as s, s.begin():
        s.execute(delete(Worker))
    ui_env(api_url)
    at = AppTest.from_file(APP, default_timeout=30).run()
    at = at.switch_page("views/workers.py").run()
    assert not at.exception, at.exception
    [empty] = at.info
    assert "No worker has registered yet" in empty.value and "`amst serve worker`" in empty.value

    register(db, run_id)
    at.run()
    assert not at.exception, at.exception
    assert not at.info
    assert any(c.value.startswith("2 alive · 1 lost · 1 stopped") for c in at.caption)
    text = markdown(at)
    assert "Slurm job 4242 \\(amst\\-worker, partition gpu\\)" in text and "node07 · pid 311" in text
    assert "2 × NVIDIA H100 80GB HBM3 \\(79 GiB each\\)" in text and "1 × NVIDIA L4 \\(22 GiB\\)" in text
    assert "pod research/" in text and "![pixel]" not in text, "a pod's name is shown as typed, never rendered"
    assert text.count(":green-badge[alive]") == 2 and text.count(":violet-badge[lost]") == 1
    assert "gpu0@node07" in text and "silent" in text and "done" not in text, "stopped workers: only when asked"
    [link] = at.get("page_link")
    assert link.proto.label == f"full-on-node07 ({run_id[:6]})" and link.proto.query_string == f"run={run_id}"
    assert link.proto.page.endswith("run")  # the Run page, as other views link to it


def test_stopped_workers_are_listed_when_asked_and_the_choice_is_in_the_url(workers_api, ui_env) -> None:
    from streamlit.testing.v1 import AppTest

    api_url, db, run_id = workers_api
    register(db, run_id)
    ui_env(api_url)
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.query_params["stopped"] = "1"
    at = at.switch_page("views/workers.py").run()
    assert not at.exception, at.exception
    assert next(t for t in at.toggle if t.label == "Show stopped workers").value
    text = markdown(at)
    assert "done" in text and ":gray-badge[stopped]" in text and "node09 · pid 6" in text
    with Session(get_engine(db)) as s, s.begin():
        s.execute(update(Worker).values(stopped_at=utcnow()))
    next(t for t in at.toggle if t.label == "Show stopped workers").set_value(False).run()
    assert "stopped" not in at.query_params
    [message] = at.info
    assert "all 4 stopped" in message.value and "`amst serve worker`" in message.value
