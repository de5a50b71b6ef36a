"""`skip: auto`: factors chosen from the helpers' learning speed, logged, resumable, and refused where nothing skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from amst_core.config import ConfigError, RunConfig, dump_config, load_config
from amst_core.engine import Trainer
from amst_core.sinks import MemorySink
from amst_core.skip import MIN_SPEED, AutoSkipSchedule, SkipSchedule, slope
from tests.kit.tiny import tiny_config


def feed(schedule: SkipSchedule, curves: dict[str, list[float]]) -> list[dict[str, float]]:
    epochs = len(next(iter(curves.values())))
    return [schedule.observe(e, {m: c[e] for m, c in curves.items()}) for e in range(epochs)]


def test_the_faster_modality_gets_the_larger_factor_from_the_ratio_of_speeds() -> None:
    schedule = AutoSkipSchedule(("audio", "visual"), warmup=3, every=2, max_factor=8)
    evidence = feed(schedule, {"audio": [0.30, 0.50, 0.70], "visual": [0.10, 0.14, 0.18]})
    assert evidence[:2] == [{}, {}]  # warm-up: no decision, every modality trained
    assert evidence[2] == pytest.approx({"audio": 0.20, "visual": 0.04})
    assert schedule.decisions == [(0, {"audio": 1, "visual": 1}), (3, {"audio": 5, "visual": 1})]
    assert [schedule.is_updated("audio", e) for e in range(10)] == [True, True, True, True, False, False, False,
                                                                    False, True, False]
    assert all(schedule.is_updated("visual", e) for e in range(10))
    assert schedule.factors_at(2) == {"audio": 1, "visual": 1} and schedule.factors == {"audio": 5, "visual": 1}


def test_factors_are_re_estimated_bounded_and_flat_curves_count_as_slowest() -> None:
    schedule = AutoSkipSchedule(("audio", "text", "visual"), warmup=2, every=2, max_factor=4)
    curves = {"audio": [0.2, 0.9, 0.9, 0.9], "text": [0.1, 0.3, 0.5, 0.7], "visual": [0.5, 0.5, 0.5, 0.4]}
    evidence = feed(schedule, curves)
    assert schedule.decisions[1] == (2, {"audio": 4, "text": 4, "visual": 1})  # 0.7 / MIN_SPEED, capped at 4
    assert evidence[1]["visual"] == 0.0 and MIN_SPEED > 0
    # two epochs later the curves say otherwise: audio has stopped, text still climbs
    assert evidence[3] == pytest.approx({"audio": slope(curves["audio"]), "text": 0.2,
                                         "visual": slope(curves["visual"])})
    assert schedule.decisions[2][0] == 4 and schedule.decisions[2][1]["text"] == 4
    assert slope([1.0]) == 0.0 and slope([0.0, 1.0, 2.0]) == pytest.approx(1.0)


def test_the_schedule_state_round_trips() -> None:
    schedule = AutoSkipSchedule(("audio", "visual"), warmup=2, every=1, max_factor=8)
    feed(schedule, {"audio": [0.2, 0.6, 0.9], "visual": [0.1, 0.15, 0.2]})
    again = AutoSkipSchedule(("audio", "visual"), warmup=2, every=1, max_factor=8)
    again.load_state_dict(json.loads(json.dumps(schedule.state_dict())))
    assert again.decisions == schedule.decisions and again.curves == schedule.curves
    assert again.observe(3, {"audio": 0.95, "visual": 0.3}) == schedule.observe(3, {"audio": 0.95, "visual": 0.3})


def test_skip_auto_in_a_config_and_its_refusal_by_methods_that_do_not_skip() -> None:
    cfg = tiny_config("amst_full", skip="auto")
    assert cfg.skip.auto is not None and cfg.skip.auto.warmup == 3
    assert RunConfig.model_validate(yaml.safe_load(dump_config(cfg))) == cfg
    for method in ("naive", "ogm_ge", "mla"):
        with pytest.raises(ConfigError, match=f"skip.auto: {method} does not skip"):
            tiny_config(method, skip="auto")
    with pytest.raises(ConfigError, match=r"skip\.auto\.warmup"):
        load_config(base={"method": "amst_alt", "dataset": {"name": "synthetic"}, "skip": {"auto": {"warmup": 1}}})


def test_a_run_logs_every_factor_and_each_decision_with_its_evidence() -> None:
    sink = MemorySink()
    cfg = tiny_config("amst_full", epochs=5, skip={"auto": {"warmup": 2, "every": 2}})
    summary = Trainer(cfg, sinks=[sink], progress=False).fit()
    factor = {(p.modality, p.epoch): p.value for p in sink.points if p.name == "skip_factor"}
    speed = {(p.modality, p.epoch): p.value for p in sink.points if p.name == "skip_speed"}
    trained = {(p.modality, p.epoch): p.value for p in sink.points if p.name == "skip"}
    assert sorted({e for _, e in speed}) == [1, 3]  # decisions after epochs 2 and 4 (warm-up 2, every 2)
    decisions = summary["skip_decisions"]
    assert [d["from_epoch"] for d in decisions] == [0, 2, 4]
    for d in decisions:
        for m, k in d["factors"].items():
            assert factor[(m, d["from_epoch"])] == k  # the factor logged in the epoch a decision starts
            assert trained[(m, d["from_epoch"])] == 1.0  # and the first epoch under it trains the modality
    assert all(factor[(m, e)] == 1 for m in ("audio", "visual") for e in (0, 1))


def test_skip_auto_resumes_exactly(tmp_path: Path) -> None:
    from tests.kit.training import stopped_and_resumed

    full, split = stopped_and_resumed(tmp_path, tiny_config("amst_alt", epochs=6,
                                                            skip={"auto": {"warmup": 2, "every": 1}}), stop=3)
    assert split["skip_decisions"] == full["skip_decisions"] and len(full["skip_decisions"]) == 6  # 0, then 2-6
