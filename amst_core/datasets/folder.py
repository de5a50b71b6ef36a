"""folder: the user's own files, <root>/<split>/<label>/<id>.wav|.jpg|.mp4|.txt|... (Doc/datasets.md); a modality
is present where its file is. Decoded once into the feature cache (`amst cache folder`, or a run's first use)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from amst_core.datasets.base import DatasetSpec
from amst_core.vocab import AUDIO, TEXT, VISUAL

if TYPE_CHECKING:
    from amst_core.config import RunConfig
    from amst_core.datafiles import DataRoots, DatasetState


def check(cfg: RunConfig, roots: DataRoots) -> RunConfig:
    """Usable, the run's modalities those it has (unless dataset.modalities_used says), its audio rate the most
    common one of its files (unless dataset.audio_rate says)."""
    from pydantic import ValidationError

    from amst_core.config import ConfigError, format_validation_error
    from amst_core.layouts import folder

    dataset = cfg.dataset
    found = folder.check(roots.dataset_dir(dataset), dataset.modalities_used and tuple(dataset.modalities),
                         dataset.on_bad_sample, roots)
    resolved: dict[str, object] = {}
    if not dataset.modalities_used:
        resolved["modalities_used"] = list(found.modalities)
    if dataset.audio_rate is None and AUDIO in (dataset.modalities_used or found.modalities):
        resolved["audio_rate"] = folder.common_rate(found, roots)
    if not resolved:
        return cfg
    data = cfg.model_dump(mode="json")
    data["dataset"].update(resolved)
    try:
        return type(cfg).model_validate(data)
    except ValidationError as err:
        raise ConfigError(None, format_validation_error(err)) from None


def describe(spec: DatasetSpec, roots: DataRoots) -> DatasetState:
    """Ready when some folder under the data root holds a train/ tree; a run names which."""
    from amst_core.datafiles import DatasetState

    try:
        folders = tuple(sorted(e.name for e in os.scandir(roots.root) if e.is_dir() and
                               (Path(e.path) / "train").is_dir() and not e.name.startswith(".")))
    except OSError:
        folders = ()
    return DatasetState(ready=bool(folders), folders=folders, modalities=spec.modalities,
                        problem=None if folders else f"no folder under AMST_DATA_ROOT ({roots.root}) holds a "
                                                     "train/<label>/ tree yet")


def cache(cfg: RunConfig, progress: bool) -> str:
    from amst_core.data.folder import cached_features

    folder = cached_features(cfg, progress=progress)
    meta = json.loads((folder / "meta.json").read_text())["splits"]
    counts = ", ".join(f"{split} {len(m['samples'])}" + (f" ({len(m['bad'])} bad)" if m["bad"] else "")
                       for split, m in meta.items())
    return f"features of {cfg.dataset.root} ({', '.join(cfg.modalities)}): {counts}; cached in {folder}"


SPEC = DatasetSpec(
    "folder", "your own files: <root>/<split>/<label>/<id>.wav|.jpg|.mp4|.txt|... (Doc/datasets.md)",
    (AUDIO, TEXT, VISUAL), check=check, describe=describe, cache=cache, source="amst_core.data.folder:Folder",
    knobs=("audio_rate",), always_cached=True, called="the folder layout",
    command="amst cache folder --set dataset.root=FOLDER",
    defaults={"model": {"frames": 1, "image_size": 112, "audio_frames": 512, "width": 32}},
    recipe={"optim": {"lr": 0.01}, "epochs": 30},
    # UMT and G2D: the recipe's 30 epochs for the unimodal teachers, as many again for the student
    method_recipes={m: {"epochs": 60, "method_params": {"teacher_epochs": 30}} for m in ("umt", "g2d")},
)
