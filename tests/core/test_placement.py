"""What a worker announces about itself: where it runs (amst_core.placement, from a Slurm job's or a Kubernetes
pod's environment) and its GPUs (amst_core.gpu.visible_gpus, with torch.cuda answering for cards this machine
does not have)."""

from __future__ import annotations

import os
import socket

import pytest

from amst_core import gpu
from amst_core.placement import Placement, here
from tests.kit.gpu import fake_cards

# What sbatch and the kubelet put in a worker's environment (values as they write them).
SLURM = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "amst-worker", "SLURM_JOB_PARTITION": "gpu",
         "SLURM_JOB_NODELIST": "node07"}
POD = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "HOSTNAME": "amst-worker-7d9f-x2x", "POD_NAME": "amst-worker-7d9f-x2x",
       "POD_NAMESPACE": "research"}


def test_outside_any_scheduler_only_the_host_and_process_are_known() -> None:
    assert here({"HOSTNAME": "box"}) == Placement(socket.gethostname(), os.getpid())


def test_a_slurm_job_is_named_by_its_id_name_and_partition() -> None:
    place = here(SLURM)
    assert (place.slurm_job_id, place.slurm_job_name, place.slurm_partition) == ("4242", "amst-worker", "gpu")
    assert place.pod_name is None and place.pod_namespace is None
    assert here({"SLURM_JOB_NAME": "x", "SLURM_JOB_PARTITION": "gpu"}).slurm_job_name is None, \
        "a name without a job (a login shell that set it) is no job"


def test_a_kubernetes_pod_is_named_by_the_downward_api_or_its_hostname() -> None:
    place = here(POD)
    assert (place.pod_name, place.pod_namespace) == ("amst-worker-7d9f-x2x", "research")
    assert place.slurm_job_id is None
    bare = here({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "HOSTNAME": "amst-worker-0"})  # a manifest without them
    assert (bare.pod_name, bare.pod_namespace) == ("amst-worker-0", None)
    renamed = here({**POD, "HOSTNAME": "gpu-box"})  # spec.hostname set: the pod keeps its own name
    assert renamed.pod_name == "amst-worker-7d9f-x2x"


def test_blank_variables_count_as_unset() -> None:
    """A template that renders a missing value as "" or " " must not announce an empty job or pod."""
    place = here({"SLURM_JOB_ID": " ", "POD_NAME": "", "KUBERNETES_SERVICE_HOST": ""})
    assert place == Placement(socket.gethostname(), os.getpid())


def test_a_worker_lists_every_visible_gpu_with_its_name_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cards(monkeypatch, [("NVIDIA H100 80GB HBM3", 85_045_231_616), ("NVIDIA L4", 23_580_639_232)])
    assert gpu.visible_gpus() == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mib": 81_105},
                                  {"index": 1, "name": "NVIDIA L4", "memory_mib": 22_488}]


def test_a_cpu_worker_lists_no_gpu_and_a_card_the_driver_refuses_is_left_out(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fake_cards(monkeypatch, [])
    assert gpu.visible_gpus() == []
    fake_cards(monkeypatch, [None, ("NVIDIA A100-SXM4-40GB", 42_298_834_944)])
    assert gpu.visible_gpus() == [{"index": 1, "name": "NVIDIA A100-SXM4-40GB", "memory_mib": 40_339}]
    assert "cuda:0" in caplog.text and "unspecified launch failure" in caplog.text
