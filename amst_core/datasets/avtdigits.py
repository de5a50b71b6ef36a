"""avtdigits: avdigits plus a short text naming the digit (40 % of them name another one): three modalities."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from amst_core.datasets import avdigits
from amst_core.datasets.base import DatasetSpec
from amst_core.vocab import AUDIO, TEXT, VISUAL

if TYPE_CHECKING:
    from amst_core.config import RunConfig
    from amst_core.datafiles import DataRoots

TEXT_MODEL = "avtdigits/text_model"  # under AMST_DATA_ROOT, written by `amst prepare avtdigits`


def check(cfg: RunConfig, roots: DataRoots) -> None:
    from amst_core.config import ConfigError

    avdigits.check(cfg, roots)
    if TEXT in cfg.modalities and cfg.model.text_model == TEXT_MODEL and not (roots.root / TEXT_MODEL).is_dir():
        raise ConfigError("model.text_model", f"{roots.root / TEXT_MODEL} does not exist; run `amst prepare "
                                              "avtdigits` first")


def prepare(out: Path | None, seed: int = 0, force: bool = False, log: Callable[[str], None] = print) -> None:
    """avdigits' audio and images (in their own folder), then the small text model and its tokenizer."""
    from amst_core.config import data_root
    from amst_core.data import avdigits as audio_visual
    from amst_core.data import avtdigits

    audio_visual.prepare(None, seed=seed, force=False, log=log)
    out = Path(out) if out else data_root() / "avtdigits"
    if (out / "text_model").is_dir() and not force:
        log(f"avtdigits text model already in {out / 'text_model'} (use --force to rebuild)")
        return
    avtdigits.prepare_text_model(out / "text_model")
    log(f"avtdigits: the text model and tokenizer written to {out / 'text_model'}")


SPEC = DatasetSpec(
    "avtdigits", "avdigits plus a text naming the digit in one of many ways (40 % name another digit): three "
    "modalities", (AUDIO, TEXT, VISUAL), check=check, sizes=avdigits.sizes,
    source="amst_core.data.avtdigits:AVTDigits", classes=avdigits.DIGITS, knobs=avdigits.AV_KNOBS,
    prepare="amst_core.datasets.avtdigits:prepare",
    defaults={"dataset": {"root": "avdigits"},
              "model": {**avdigits.MODEL, "text_model": TEXT_MODEL, "text_max_length": 12,
                        "text_trainable_layers": 2}},
    recipe={"dataset": {"preset": "hard"}, "skip": {AUDIO: 3, TEXT: 2}, "optim": {"lr": 0.01, "lr_step": 15},
                 "epochs": 20},
    method_recipes={"umt": avdigits.TEACHERS_FIRST, "g2d": avdigits.TEACHERS_FIRST},
)
