"""What a run's points, config and provenance are called in TensorBoard and MLflow, said once.

A point of a prediction is `<split>/<name>/<modality>/<component>` (`val/acc/audio/branch`), and without a modality
`<split>/<name>/<component>` (`val/acc/fused`, `val/acc_gap/branch`, `train/lr/head`). A run-level series
(component `run`) is `run/<name>[/<modality>]` (`run/skip/audio`, `run/epoch_time`): its split is part of its
declaration (amst_core.vocab.ENGINE_SERIES), not a choice. The step is the epoch (counted from 0).

Both tools take letters, digits, `_`, `-`, `.`, `/` and spaces in a name (MLflow also `:`, but not on Windows);
anything else becomes `_`, so MLA's `combo:entropy` is `combo_entropy`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from amst_core.metrics import MetricPoint
from amst_core.vocab import RUN

UNSAFE = re.compile(r"[^A-Za-z0-9_./ -]")
RUN_PREFIX = "run"
TAG_PREFIX = "amst."  # MLflow tags of ours: amst.run_id, amst.code.commit, amst.summary.best_val_acc, ...


def safe_name(text: str) -> str:
    return UNSAFE.sub("_", text)


def tag_of(point: MetricPoint) -> str:
    """The point's series as one name (the module docstring says how)."""
    if point.component == RUN:
        parts = [RUN_PREFIX, point.name, point.modality]
    else:
        parts = [point.split, point.name, point.modality, point.component]
    return "/".join(safe_name(part) for part in parts if part)


def flattened(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys: {"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flattened(value, dotted))
        else:
            out[dotted] = value
    return out


def as_text(value: Any) -> str:
    """A config or summary value as a parameter's or tag's text: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def shortened(value: str, limit: int) -> tuple[str, bool]:
    """`value` cut to `limit` characters (the last ones say it was cut), and whether it was."""
    if len(value) <= limit:
        return value, False
    mark = "...[cut]"
    return value[:limit - len(mark)] + mark, True
