"""The Workers page's rows apart from Streamlit: where a worker runs, its GPUs and what it trains, in words, from
GET /workers (one worker per row)."""

from __future__ import annotations

from collections import Counter
from typing import Any

MIB_PER_GIB = 1024
# The page's order: those at work first, then those that need a look, then those gone; a state the API adds later
# comes last, not left out.
ORDER = ("alive", "lost", "stopped")


def where(worker: dict[str, Any]) -> list[str]:
    """Its host and process, then the Slurm job or Kubernetes pod that holds it (what `scancel` or `kubectl`
    takes), one line each."""
    lines = [f"{worker['hostname']} · pid {worker['pid']}"]
    if slurm := worker.get("slurm"):
        details = [d for d in (slurm.get("job_name"), slurm.get("partition") and f"partition {slurm['partition']}")
                   if d]
        lines.append(f"Slurm job {slurm['job_id']}" + (f" ({', '.join(details)})" if details else ""))
    if pod := worker.get("pod"):
        lines.append(f"pod {pod['namespace']}/{pod['name']}" if pod.get("namespace") else f"pod {pod['name']}")
    return lines


def memory(mib: int) -> str:
    """Whole GiB from 10 GiB up (79 GiB), one decimal below (7.5 GiB)."""
    gib = mib / MIB_PER_GIB
    return f"{gib:.0f} GiB" if gib >= 10 else f"{gib:.1f} GiB"


def gpus(listed: list[dict[str, Any]] | None) -> str:
    """'2 × NVIDIA H100 80GB HBM3 (79 GiB each)', a line per kind of card; a CPU worker says so, and a worker
    that registered before workers announced their GPUs is not taken for a CPU one."""
    if listed is None:
        return "not announced (a worker of an older version)"
    if not listed:
        return "none (CPU)"
    kinds = Counter((g["name"], g["memory_mib"]) for g in listed)  # in the order the worker listed them
    return "\n".join(f"{n} × {name} ({memory(mib)}{' each' if n > 1 else ''})" for (name, mib), n in kinds.items())


def run_label(worker: dict[str, Any]) -> str | None:
    """The run it trains as a link's label (None: it trains nothing); a lost worker's is the run it trained when
    it went silent."""
    run_id = worker.get("current_run_id")
    if not run_id:
        return None
    name = worker.get("current_run_name")
    label = f"{name} ({run_id[:6]})" if name else f"{run_id[:8]} (deleted since)"
    return f"was training {label}" if worker["state"] == "lost" else label


def rank(worker: dict[str, Any]) -> int:
    return ORDER.index(worker["state"]) if worker["state"] in ORDER else len(ORDER)


def state_counts(workers: list[dict[str, Any]]) -> str:
    """'2 alive · 1 lost · 3 stopped'."""
    counts = Counter(w["state"] for w in sorted(workers, key=rank))
    return " · ".join(f"{n} {state}" for state, n in counts.items())


def shown(workers: list[dict[str, Any]], with_stopped: bool) -> list[dict[str, Any]]:
    """Alive, then lost, then stopped workers, each in the API's order (latest heartbeat first). Stopped workers
    pile up (each restart under a new pid is a new worker): listed only when asked for. A lost one stays: its
    heartbeats stopped without a word, which someone may need to look into."""
    return sorted((w for w in workers if with_stopped or w["state"] != "stopped"), key=rank)
