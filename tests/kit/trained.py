"""Tiny runs trained through `amst train` on a tiny folder dataset, for the commands that read a trained run
(`amst export-model`, `amst predict`), and what evaluation computes for them (the reference those commands must
equal)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml

from amst_core.cli import main
from amst_core.config import RunConfig
from amst_core.datafiles import any_data_path, check_dataset
from amst_core.engine import Trainer
from amst_core.runfolder import RunFolder
from tests.kit.tiny import folder_run, write_tiny_folder, write_tiny_roberta


@contextmanager
def own_data_root(base: Path) -> Iterator[None]:
    """AMST_DATA_ROOT and AMST_CACHE under `base` for a module-scoped fixture (the autouse ones are per test)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMST_DATA_ROOT", str(base / "data"))
        patch.setenv("AMST_CACHE", str(base / "cache"))
        yield


def trained_folder_run(base: Path, method: str = "naive", text: bool = False, **overrides) -> Path:
    """A 2-epoch run on a tiny folder dataset (audio and visual; text with a tiny RoBERTa), trained by the CLI;
    its folder. The dataset is <base>/data/mine."""
    data = with_texture(write_tiny_folder(base / "data" / "mine", text=text))
    roberta = write_tiny_roberta(base / "models" / "tiny-roberta") if text else None
    config = base / f"{method}.yaml"
    body = folder_run(str(data), roberta, method=method, **{"optim": {"lr": 0.01}, **overrides})
    config.write_text(yaml.safe_dump(body))
    run = base / "runs" / method
    assert main(["train", str(config), "--out", str(run), "--no-progress"]) == 0
    return run


def with_texture(root: Path) -> Path:
    """The tiny folder's solid-colour images with pixel noise: a constant image leaves the visual encoder's
    BatchNorm statistics degenerate, and its logits in the billions."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for path in sorted(root.rglob("*.png")):
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.float32)
        noisy = np.clip(pixels + rng.normal(0, 40, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(path)
    return root


def evaluation_probabilities(run: Path, split: str = "test") -> tuple[list[str], torch.Tensor, list[int]]:
    """(sample ids, softmax of the fused logits, labels) of a split as `amst evaluate` computes them
    (amst_core.evaluation: the trainer's evaluation batches, the method's eval_batch)."""
    state = RunFolder(run).load_checkpoint("best")
    with any_data_path():
        trainer = Trainer(check_dataset(RunConfig.model_validate(state["config"])), progress=False)
        trainer.method.load_model_state_dict(state["method"])
        trainer.method.train_mode(False)
        probs, labels = [], []
        for batch, _ in trainer.batches(split, state["epoch"], split):
            probs.append(torch.softmax(trainer.method.eval_batch(batch)[("fused", None)].float(), dim=-1))
            labels += batch["label"].tolist()
    return list(trainer.datasets[split].ids), torch.cat(probs), labels
