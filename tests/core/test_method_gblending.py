"""Gradient-Blending: the weights from the window's losses, when they are re-estimated, the weighted loss (the
fused head alone is naive fusion), an estimate that leaves the network alone, and bad params refused."""

from __future__ import annotations

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.engine import EpochData, Trainer
from amst_core.methods.gblending import blend_weights
from tests.kit.tiny import tiny_config
from tests.kit.training import batches


def test_weights_are_generalization_over_squared_overfitting_normalized() -> None:
    # (train loss, val loss) after the first and the last epoch of the window
    first = {"audio": (2.0, 2.2), "visual": (2.0, 2.1), "fused": (2.0, 2.1)}
    last = {"audio": (1.0, 1.6), "visual": (1.8, 1.95), "fused": (0.5, 1.5)}
    # audio: |G| = 0.6, O = 0.6 - 0.2 = 0.4 -> 3.75; visual: 0.15 / 0.05^2 = 60; fused: 0.6 / 0.9^2 = 0.740740...
    raw = {"audio": 3.75, "visual": 60.0, "fused": 0.6 / 0.81}
    total = sum(raw.values())
    weights = blend_weights(first, last)
    assert weights == pytest.approx({k: v / total for k, v in raw.items()})
    assert sum(weights.values()) == pytest.approx(1.0)


def test_no_change_at_all_gives_equal_weights() -> None:
    same = {"audio": (1.0, 1.0), "visual": (1.0, 1.0), "fused": (1.0, 1.0)}
    assert blend_weights(same, same) == pytest.approx({"audio": 1 / 3, "visual": 1 / 3, "fused": 1 / 3})


def test_weights_are_re_estimated_at_each_super_epoch_only() -> None:
    trainer = Trainer(tiny_config("gblending", method_params={"super_epoch": 3}), progress=False)
    method, calls = trainer.method, []
    method.estimate = lambda data: calls.append(data.epoch) or {"audio": 0.2, "visual": 0.3, "fused": 0.5}
    for epoch in range(7):
        method.before_epoch(epoch, EpochData(trainer, epoch))
    assert calls == [0, 3, 6]
    state = method.extra_state()
    method.weights = {}
    method.load_extra_state(state)
    assert method.weights == {"audio": 0.2, "visual": 0.3, "fused": 0.5}


def test_fused_weight_one_is_naive_fusion() -> None:
    trainers = {}
    for name, extra in (("gblending", {}), ("naive", {"fusion": "concat"})):
        torch.manual_seed(0)
        trainers[name] = Trainer(tiny_config(name, **extra), progress=False)
    gb, naive = trainers["gblending"].method, trainers["naive"].method
    naive.nets["model"].net.load_state_dict(gb.nets["model"].net.state_dict())
    gb.weights = {"audio": 0.0, "visual": 0.0, "fused": 1.0}
    batch = batches(gb.cfg, 1)[0]
    for method in (gb, naive):
        method.train_mode(True)
        method.train_batch(batch, epoch=0)
    for (name, a), (_, b) in zip(gb.nets["model"].net.state_dict().items(),
                                 naive.nets["model"].net.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_estimate_trains_copies_and_leaves_the_network_alone() -> None:
    trainer = Trainer(tiny_config("gblending", method_params={"super_epoch": 2}), progress=False)
    method = trainer.method
    before = {k: v.clone() for k, v in method.nets["model"].net.state_dict().items()}
    weights = method.estimate(EpochData(trainer, 0))
    assert set(weights) == {"audio", "visual", "fused"} and sum(weights.values()) == pytest.approx(1.0)
    assert all(w >= 0 for w in weights.values())
    for k, v in method.nets["model"].net.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("value", [1, 0])
def test_a_super_epoch_under_two_is_refused(value: int) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "gblending",
                          "method_params": {"super_epoch": value}})
    assert str(err.value).startswith("method_params.super_epoch: ")
