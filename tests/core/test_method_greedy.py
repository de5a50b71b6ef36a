"""Greedy's rule on tiny tensors against hand computations: the relative gradient norm, the conditional learning
speeds and which modality gets re-balanced, the alternation of normal and re-balancing steps (a re-balancing step
moves only its modality's encoder), the neutral case (threshold never crossed: naive fusion), resume state and
params refused."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.greedy import conditional_speeds, rebalanced_modality, relative_gradient
from tests.kit.training import batches, method_for


def test_relative_gradient_by_hand() -> None:
    p, q, frozen = torch.tensor([1.0, 2.0]), torch.tensor([[2.0]]), torch.tensor([100.0])
    p.grad, q.grad = torch.tensor([3.0, 4.0]), torch.tensor([[0.0]])
    # (9 + 16 + 0) / (1 + 4 + 4); a parameter without a gradient counts in neither sum
    assert relative_gradient([p, q, frozen]).item() == pytest.approx(25 / 9)


def test_speeds_and_the_modality_rebalanced_by_hand() -> None:
    speeds = conditional_speeds(torch.tensor([1.0, 100.0], dtype=torch.float64))
    assert speeds.tolist() == pytest.approx([2.0, -2.0])  # log10(100 / 1), log10(1 / 100)
    assert rebalanced_modality(speeds, 0.001) == 0  # encoder 0 learns 100x slower
    assert rebalanced_modality(conditional_speeds(torch.tensor([100.0, 1.0], dtype=torch.float64)), 0.001) == 1
    # d = 2 log10(1.001) = 0.000868: under the threshold 0.001, over 0.0008
    close = conditional_speeds(torch.tensor([1.0, 1.001], dtype=torch.float64))
    assert float(close[0] - close[1]) == pytest.approx(2 * math.log10(1.001))
    assert rebalanced_modality(close, 0.001) is None
    assert rebalanced_modality(close, 0.0008) == 0
    assert rebalanced_modality(conditional_speeds(torch.ones(2, dtype=torch.float64)), 0.0) is None  # balanced


def run(method, n: int) -> list[int | None]:
    """Train n batches; returns which modality each batch re-balanced (None: a normal step)."""
    method.train_mode(True)
    steps = []
    for batch in batches(method.cfg, n):
        net = method.nets["model"].net
        steps.append(getattr(method, "caring", None))
        method.update({"model": net.embed(batch, method.modalities)}, batch["label"], 0)
    return steps


def test_normal_and_rebalancing_steps_alternate_and_rebalancing_moves_one_encoder() -> None:
    method = method_for("greedy", method_params={"alpha": 0.0, "window_size": 2})
    method.train_mode(True)
    (batch,) = batches(method.cfg, 1)
    net = method.nets["model"].net
    method.update({"model": net.embed(batch, method.modalities)}, batch["label"], 0)  # normal: measures, decides
    caring = method.caring
    assert caring is not None and method.accumulated.gt(0).all()
    low, high = method.accumulated.tolist()
    assert caring == (0 if high > low else 1)  # the encoder with the smaller accumulated relative gradient
    other = method.modalities[1 - caring]
    before = {n: p.clone() for n, p in net.named_parameters()}
    measured = method.accumulated.clone()
    method.update({"model": net.embed(batch, method.modalities)}, batch["label"], 0)
    for name, p in net.named_parameters():
        moved = not torch.equal(p, before[name])
        if name.startswith(f"encoders.{other}") or name.startswith(f"head.linears.{other}"):
            assert not moved, name
    assert any(not torch.equal(p, before[n]) for n, p in net.named_parameters()
               if n.startswith(f"encoders.{method.modalities[caring]}"))
    assert torch.equal(method.accumulated, measured)  # re-balancing steps are not measured
    method.update({"model": net.embed(batch, method.modalities)}, batch["label"], 0)
    assert method.caring is None  # window of 2 done: the next step is a normal one
    points = {(p.modality, p.name): p.value for p in method.after_validation(0, [])}
    assert points[(method.modalities[caring], "greedy_rebalanced")] == pytest.approx(2 / 3)
    assert points[(other, "greedy_rebalanced")] == 0.0
    assert points[("audio", "greedy_speed")] == pytest.approx(-points[("visual", "greedy_speed")])


def test_never_crossing_the_threshold_is_naive_fusion() -> None:
    greedy = method_for("greedy", method_params={"alpha": 1e9})
    naive = method_for("naive", fusion="lsum")
    assert run(greedy, 2) == [None, None]
    run(naive, 2)
    for (name, p), q in zip(greedy.nets["model"].net.named_parameters(), naive.nets["model"].net.parameters(),
                            strict=True):
        assert torch.allclose(p, q, atol=1e-7), name
    points = {(p.modality, p.name): p.value for p in greedy.after_validation(0, [])}
    assert points[("audio", "greedy_rebalanced")] == 0.0 and points[("visual", "greedy_rebalanced")] == 0.0


def test_state_round_trips_inside_a_rebalancing_window() -> None:
    method = method_for("greedy")
    method.accumulated, method.caring, method.curation_step = torch.tensor([0.5, 2.0], dtype=torch.float64), 1, 3
    other = method_for("greedy")
    other.load_extra_state(method.extra_state())
    assert other.accumulated.tolist() == [0.5, 2.0] and other.caring == 1 and other.curation_step == 3


@pytest.mark.parametrize(("params", "field"), [({"alpha": -1}, "alpha"), ({"window_size": 0}, "window_size")])
def test_bad_params_are_refused(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "greedy", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: ")


def test_three_modalities_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic", "synthetic": {"modalities": ["audio", "text", "visual"]}},
                          "method": "greedy"})
    assert str(err.value).startswith("method: ")
