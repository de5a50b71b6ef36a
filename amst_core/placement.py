"""Where a worker process runs: its host and process, and the Slurm job or Kubernetes pod that holds it, read from
the environment those schedulers give their processes. A worker announces it in the run store (`workers` row) so
that `GET /workers` and the dashboard's Workers page can say which job or pod to look at (or `scancel`).

No scheduler is asked anything: a process outside Slurm and Kubernetes simply has neither.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Slurm sets these in every job step's environment (sbatch, srun, salloc); SLURM_JOB_ID is what `scancel` takes.
SLURM_JOB_ID, SLURM_JOB_NAME, SLURM_PARTITION = "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_JOB_PARTITION"
# Kubernetes sets KUBERNETES_SERVICE_HOST in every container of a pod (whatever `enableServiceLinks` says), and
# HOSTNAME to the pod's name. The pod's namespace is nowhere in the environment unless the manifest puts it there:
# deploy/kubernetes's worker sets POD_NAME and POD_NAMESPACE from the downward API (fieldRef metadata.name and
# metadata.namespace), which also names the pod right where a manifest overrides its hostname.
IN_KUBERNETES, POD_NAME, POD_NAMESPACE = "KUBERNETES_SERVICE_HOST", "POD_NAME", "POD_NAMESPACE"
ENV_NAMES = (SLURM_JOB_ID, SLURM_JOB_NAME, SLURM_PARTITION, IN_KUBERNETES, POD_NAME, POD_NAMESPACE)


@dataclass(frozen=True)
class Placement:
    hostname: str
    pid: int
    slurm_job_id: str | None = None
    slurm_job_name: str | None = None
    slurm_partition: str | None = None
    pod_name: str | None = None
    pod_namespace: str | None = None


def here(environ: Mapping[str, str] | None = None) -> Placement:
    """This process's placement, from `environ` (default: the process's environment)."""
    env = os.environ if environ is None else environ
    hostname = socket.gethostname()
    in_pod = bool(given(env, IN_KUBERNETES) or given(env, POD_NAME))
    return Placement(
        hostname=hostname, pid=os.getpid(),
        slurm_job_id=given(env, SLURM_JOB_ID),
        slurm_job_name=given(env, SLURM_JOB_NAME) if given(env, SLURM_JOB_ID) else None,
        slurm_partition=given(env, SLURM_PARTITION) if given(env, SLURM_JOB_ID) else None,
        pod_name=(given(env, POD_NAME) or given(env, "HOSTNAME") or hostname) if in_pod else None,
        pod_namespace=given(env, POD_NAMESPACE) if in_pod else None,
    )


def given(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value with spaces stripped; unset or blank is None (a template that left it empty)."""
    value = env.get(name, "").strip()
    return value or None


def cannot_hold(config: Mapping[str, Any], gpus: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a worker with these GPUs (`amst_core.gpu.visible_gpus`) cannot hold a run of this config, or None.
    A run on the CPU fits any worker, and a one-GPU run any worker of its queue (a worker without a GPU trains it
    on its CPU, as `device: auto` allows); a run on N > 1 GPUs needs N of them, and `resources.min_gpu_memory_gb`
    needs GPUs that large."""
    if config.get("device") == "cpu":
        return None
    resources = config.get("resources") or {}
    count, memory_gb = int(resources.get("gpus") or 1), resources.get("min_gpu_memory_gb")
    if count > 1 and len(gpus) < count:
        return f"it asks for {count} GPUs (resources.gpus); this worker has {len(gpus)}"
    if memory_gb:
        smallest = min((g["memory_mib"] for g in gpus), default=0) / 1024
        if smallest < float(memory_gb):
            return (f"it asks for GPUs of at least {float(memory_gb):g} GB (resources.min_gpu_memory_gb); this "
                    f"worker's have {smallest:.0f} GB" if gpus else "it asks for GPUs of at least "
                    f"{float(memory_gb):g} GB (resources.min_gpu_memory_gb); this worker has no GPU")
    return None
