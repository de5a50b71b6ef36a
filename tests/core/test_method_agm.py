"""AGM's rule on tiny tensors against hand computations: the Shapley mono-modal responses, the coefficients
from the scores and their running averages (with the cap), the running average, the encoder gradients scaled
(biases and the head not) and the clip, the neutral case (outside the window: naive fusion) and params refused."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.agm import agm_coefficients, running_average, shapley_responses
from amst_core.methods.subsets import shapley_weight
from amst_core.models.fusion import SharedMeanHead
from tests.kit.training import assert_same_weights, batches, method_for, one_update


def test_shapley_responses_by_hand() -> None:
    a, v = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 0.0]])
    summed = shapley_responses({"audio": a, "visual": v}, lambda b: torch.stack(b).sum(0))
    # lsum: 1/2 (o_a - 0) + 1/2 ((o_a + o_v) - o_v) = o_a
    assert summed["audio"].tolist() == [[1.0, 2.0]] and summed["visual"].tolist() == [[3.0, 0.0]]
    # msum: 1/2 o_a + 1/2 ((o_a + o_v) / 2 - o_v) = 3/4 o_a - 1/4 o_v
    mean = shapley_responses({"audio": a, "visual": v}, SharedMeanHead.combine.__get__(object()))
    assert mean["audio"].tolist() == [[0.0, 1.5]] and mean["visual"].tolist() == [[2.0, -0.5]]
    # three modalities, mean head: weights 1/3 (alone), 1/6 and 1/6 (with one other), 1/3 (with both)
    t = torch.tensor([[0.0, 6.0]])
    three = shapley_responses({"audio": a, "text": t, "visual": v}, SharedMeanHead.combine.__get__(object()))
    # audio: 1/3 a + 1/6 ((a+t)/2 - t) + 1/6 ((a+v)/2 - v) + 1/3 ((a+t+v)/3 - (t+v)/2)
    #      = (1/3, 2/3) + (1/12, -1/3) + (-1/6, 1/6) + (-1/18, -1/9) = (7/36, 7/18)
    assert three["audio"][0].tolist() == pytest.approx([7 / 36, 7 / 18], abs=1e-6)
    # the responses add up to the full prediction (efficiency)
    total = three["audio"] + three["text"] + three["visual"]
    assert total[0].tolist() == pytest.approx([4 / 3, 8 / 3], abs=1e-6)


def test_shapley_weights_by_hand() -> None:
    assert [shapley_weight(k, 2) for k in range(2)] == [0.5, 0.5]
    assert [shapley_weight(k, 3) for k in range(3)] == pytest.approx([1 / 3, 1 / 6, 1 / 3])  # 0!2!/3!, 1!1!/3!


def test_coefficients_by_hand() -> None:
    # audio learns faster (lower CE) than its running average says: its ratio e^(s_v - s_a) = e exceeds the
    # target 1, so it is slowed; visual's e^-1 is below 1, so it is sped up.
    coeffs = agm_coefficients(torch.tensor([0.5, 1.5]), torch.zeros(2), alpha=0.1)
    assert coeffs.tolist() == pytest.approx([math.exp(0.1 * (1 - math.e)), math.exp(0.1 * (1 - math.exp(-1)))])
    assert coeffs.tolist() == pytest.approx([0.8421239, 1.0652527], rel=1e-6)
    # the target from the running averages: running (0, 12): eta_a = e^12, eta_a - r_a capped at 10
    capped = agm_coefficients(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 12.0]), alpha=0.1)
    assert capped[0].item() == pytest.approx(math.e)
    assert capped[1].item() == pytest.approx(math.exp(0.1 * (math.exp(-12) - 1)))
    # three modalities: k = 3/2, r_m = exp(3/2 (mean - s_m))
    three = agm_coefficients(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3), alpha=1.0)
    assert three.tolist() == pytest.approx([math.exp(1 - math.exp(1.5)), 1.0, math.exp(1 - math.exp(-1.5))])


def test_balanced_modalities_get_coefficient_one() -> None:
    assert agm_coefficients(torch.tensor([0.7, 0.7]), torch.tensor([0.3, 0.3]), alpha=0.5).tolist() == [1.0, 1.0]


def test_running_average_is_the_mean_of_every_batch() -> None:
    first = running_average(torch.zeros(2), torch.tensor([1.0, 1.0]), 1)
    second = running_average(first, torch.tensor([2.0, 4.0]), 2)
    third = running_average(second, torch.tensor([3.0, 1.0]), 3)
    assert third.tolist() == pytest.approx([2.0, 2.0])


def test_encoder_gradients_are_scaled_but_biases_and_head_are_not() -> None:
    method = method_for("agm", method_params={"clip": 0.0})
    trained = method.nets["model"]
    for p in trained.net.parameters():
        p.grad = torch.ones_like(p)
    method.coeffs = torch.tensor([0.5, 2.0], dtype=torch.float64)
    method.on_gradients(trained, ("head", "encoders"))
    for name, p in trained.net.named_parameters():
        expected = 1.0
        if name.startswith("encoders.") and p.dim() > 1:
            expected = 0.5 if name.startswith("encoders.audio") else 2.0
        assert torch.all(p.grad == expected), name


def test_clip_applies_only_when_a_head_weight_gradient_exceeds_it() -> None:
    method = method_for("agm", method_params={"clip": 5.0})
    trained = method.nets["model"]
    params = [*trained.net.encoders.parameters(), *trained.net.head.parameters()]
    numel = sum(p.numel() for p in params)
    for p in trained.net.parameters():
        p.grad = torch.full_like(p, 0.01)
    method.coeffs = torch.ones(2, dtype=torch.float64)
    method.on_gradients(trained, ("head", "encoders"))
    assert all(torch.allclose(p.grad, torch.full_like(p, 0.01)) for p in params)  # head gradients below 5
    head_weight = next(p for p in trained.net.head.parameters() if p.dim() > 1)
    head_weight.grad.view(-1)[0] = 6.0
    method.on_gradients(trained, ("head", "encoders"))
    norm = math.sqrt(36 + 1e-4 * (numel - 1))
    assert head_weight.grad.view(-1)[0].item() == pytest.approx(6.0 * 5 / norm, rel=1e-4)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert total.item() == pytest.approx(5.0, rel=1e-4)
    helper = next(trained.net.helpers.parameters())
    assert torch.allclose(helper.grad, torch.full_like(helper, 0.01))  # helpers untouched


def test_outside_the_window_a_step_is_naive_fusion_and_logs_coefficient_one() -> None:
    agm = method_for("agm", method_params={"modulation_start": 3, "modulation_end": 5})
    naive = method_for("naive", fusion="lsum")
    batch = batches(agm.cfg, 1)[0]
    for method in (agm, naive):
        one_update(method, batch)
    assert_same_weights(agm, naive)
    points = {(p.modality, p.name): p.value for p in agm.after_validation(0, [])}
    assert points[("audio", "agm_coeff")] == 1.0 and points[("visual", "agm_coeff")] == 1.0
    assert points[("audio", "agm_score")] > 0
    assert agm.iteration == 1 and agm.running.tolist() == pytest.approx(
        [points[("audio", "agm_score")], points[("visual", "agm_score")]])  # the first batch's scores


def test_running_state_round_trips() -> None:
    method = method_for("agm")
    method.running, method.iteration = torch.tensor([0.25, 1.5], dtype=torch.float64), 7
    other = method_for("agm")
    other.load_extra_state(method.extra_state())
    assert other.running.tolist() == [0.25, 1.5] and other.iteration == 7


@pytest.mark.parametrize(("params", "field"), [({"alpha": -1}, "alpha"), ({"clip": -0.5}, "clip"),
                                               ({"modulation_start": 5, "modulation_end": 2}, "modulation_end")])
def test_bad_params_are_refused(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "agm", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: ")
