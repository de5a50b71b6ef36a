"""The points-per-run limit is known at submission: the estimate from the config (epochs, the method's
predictions and declared series, the dataset's modalities, the splits) is what a real run writes in an epoch
whose test split runs, for every method, and POST /runs refuses a run over AMST_MAX_POINTS_PER_RUN with a 422
naming `epochs` (the store's writer keeps its check as the backstop)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from amst_core import selection
from amst_core.catalog import METHODS
from amst_core.cli import main
from amst_core.limits import SELECTION_POINTS, Limits, check_limits, points_per_epoch, run_points
from tests.kit.tiny import tiny_config
from tests.kit.training import PARAMS


def written_per_epoch(out: Path) -> Counter:
    """Distinct points (the store's unique key) per epoch of the metrics file a CLI run wrote."""
    points = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keys = {(p["split"], p["component"], p["modality"], p["name"], p["epoch"]) for p in points}
    return Counter(key[-1] for key in keys)


@pytest.mark.parametrize("method", list(METHODS))
def test_the_estimate_is_what_a_cli_run_writes(tmp_path: Path, method: str) -> None:
    cfg = tiny_config(method, epochs=2, test_every_epoch=True, method_params=PARAMS.get(method, {}))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    per_epoch = written_per_epoch(tmp_path / "run")
    assert set(per_epoch.values()) == {points_per_epoch(cfg)}, (dict(per_epoch), points_per_epoch(cfg))
    assert run_points(cfg) == sum(per_epoch.values())


@pytest.mark.parametrize("method", ["mla", "amst_full"])
def test_the_estimate_is_what_a_three_modality_run_writes(tmp_path: Path, method: str) -> None:
    """Three modalities change MLA's combinations (one weighted and the gate) and every per-modality count."""
    from tests.kit.tiny import write_tiny_roberta

    roberta = write_tiny_roberta(tmp_path / "roberta")
    three = {"modalities": ["audio", "text", "visual"], "samples": {"train": 32, "val": 16, "test": 16}}
    cfg = tiny_config(method, epochs=1, test_every_epoch=True, dataset={"name": "synthetic", "synthetic": three},
                      model={"frames": 1, "width": 8, "text_model": str(roberta), "text_max_length": 8,
                             "text_trainable_layers": 1})
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert written_per_epoch(tmp_path / "run") == Counter({0: points_per_epoch(cfg)})


def test_the_estimate_counts_the_selection_points_the_engine_writes() -> None:
    assert len(selection.NAMES) == SELECTION_POINTS


def test_a_run_over_the_limit_is_refused_naming_epochs() -> None:
    cfg = tiny_config("amst_full", epochs=100)
    check_limits(cfg, Limits(points_per_run=run_points(cfg)))  # exactly at the limit: fine
    with pytest.raises(ValueError, match="AMST_MAX_POINTS_PER_RUN") as err:
        check_limits(cfg, Limits(points_per_run=run_points(cfg) - 1))
    assert err.value.field == "epochs"
