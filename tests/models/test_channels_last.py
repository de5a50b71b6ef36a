"""`model.channels_last` (auto | true | false): which layout the convolutional encoders train in, and the
narrow channels-last encoders that crash PyTorch's CPU convolutions (oneDNN, torch 2.11) never run by default.
The crash kills the process (SIGSEGV / SIGABRT in the backward pass), so what might crash runs in a child."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods import build_method
from tests.kit.tiny import tiny_config

NARROW_WIDTHS = (4, 8)
NARROW_AUDIO_RUNS = """
import torch
from amst_core.config import load_config
from amst_core.engine import Trainer
torch.set_num_threads(1)
for width in %r:
    cfg = load_config(base={"method": "naive", "device": "cpu", "epochs": 1, "batch_size": 4,
        "dataset": {"name": "synthetic", "synthetic": {"modalities": ["audio"], "audio_shape": [512, 128],
                    "samples": {"train": 8, "val": 4, "test": 4}}},
        "model": {"width": width}})
    print("training", width, flush=True)
    Trainer(cfg, progress=False).fit()
    print("trained", width, flush=True)
"""


@pytest.mark.slow  # a child process (torch imported again) training on reference-sized audio
def test_a_narrow_encoder_on_reference_sized_audio_trains_by_default() -> None:
    """Issue 21, finding 1: this legal config (widths 4 and 8) killed the process while channels-last was always
    on. Both widths in one child: a crash stops it at the width it was training (its last line says which)."""
    done = subprocess.run([sys.executable, "-c", NARROW_AUDIO_RUNS % (NARROW_WIDTHS,)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stdout[-200:], done.stderr[-2000:])
    assert all(f"trained {width}" in done.stdout for width in NARROW_WIDTHS), done.stdout


@pytest.mark.parametrize("width", [1, 4, 8, 15])
def test_channels_last_on_a_narrow_encoder_is_refused_naming_the_field(width: int) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"method": "naive", "dataset": {"name": "synthetic"},
                          "model": {"width": width, "channels_last": True}})
    assert str(err.value).startswith("model.channels_last: true needs model.width >= 16"), str(err.value)


@pytest.mark.parametrize("setting", ["auto", False, True])
def test_the_layout_each_setting_gives_on_a_cpu(setting: bool | str) -> None:
    cfg = tiny_config("naive", model={"width": 16, "channels_last": setting})
    method = build_method(cfg, 4, torch.device("cpu"))
    conv = method.nets["model"].net.encoders["audio"].trunk[4][0].conv1.weight  # 16 -> 16 channels
    assert conv.is_contiguous(memory_format=torch.channels_last) is (setting is True)
    assert conv.is_contiguous() is (setting is not True), "auto is the default layout on a CPU"


def test_the_setting_reads_from_yaml_and_set_overrides() -> None:
    base = {"method": "naive", "dataset": {"name": "synthetic"}}
    assert load_config(base=base).model.channels_last == "auto"
    assert load_config(base=base, overrides=["model.channels_last=false"]).model.channels_last is False
    assert load_config(base=base, overrides=["model.channels_last=true"]).model.channels_last is True
    with pytest.raises(ConfigError, match=r"model\.channels_last"):
        load_config(base=base, overrides=["model.channels_last=sometimes"])
