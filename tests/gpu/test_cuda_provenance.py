"""What a run on the GPU records (amst_core.provenance): the card's name, CUDA and cuDNN, in provenance.json and
in a checkpoint that loads weights-only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from amst_core.execute import execute_run
from amst_core.runfolder import RunFolder, load_checkpoint
from tests.kit.gpu import cuda_only
from tests.kit.tiny import tiny_config

pytestmark = pytest.mark.gpu


def test_a_gpu_run_records_its_card_cuda_and_cudnn(device: torch.device, tmp_path: Path) -> None:
    cuda_only(device, "the card, CUDA and cuDNN of a CUDA run")
    execute_run(tiny_config(device=str(device), epochs=1), tmp_path, [], run_id="gpu-provenance", progress=False)
    env = json.loads(RunFolder(tmp_path).provenance.read_text())["environment"]
    assert env["device"] == str(device) and env["device_name"] == torch.cuda.get_device_name(device)
    assert env["cuda"] == torch.version.cuda and env["cudnn"] == str(torch.backends.cudnn.version())
    assert load_checkpoint(RunFolder(tmp_path).checkpoint("best"))["provenance"]["environment"] == env
