"""InfoReg: the acquisition rate from the Fisher-trace history, the prime learning window, the strength of the
proximal term on the leading modality, the gradient it adds, the Fisher trace, and bad params refused."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from amst_core.config import ConfigError, load_config
from amst_core.methods.inforeg import acquisition_rate, fisher_trace, regulation_strengths
from tests.kit.training import batches, method_for


def test_acquisition_rate_compares_moving_averages_of_the_trace() -> None:
    assert acquisition_rate([], 2) == 1.0  # epoch 0: inside the window, as the authors' k = 1
    assert acquisition_rate([1.0], 2) == pytest.approx(1.0)  # padded [0, 0, 1]: (0.5 - 0) / 0.5
    assert acquisition_rate([1.0, 3.0], 2) == pytest.approx(0.75)  # [0, 0, 1, 3]: (2 - 0.5) / 2
    assert acquisition_rate([4.0, 4.0, 4.0], 2) == 0.0  # levelled off
    assert acquisition_rate([0.0, 0.0], 2) == 0.0  # nothing acquired: no division by zero


def test_only_the_leading_active_modality_is_regulated() -> None:
    betas = torch.tensor([0.95, 0.1])
    both = torch.tensor([True, True])
    out = regulation_strengths(torch.tensor([1.7, 1.0]), betas, both)
    assert out.tolist() == pytest.approx([0.95 * math.exp(math.tanh(0.7)), 0.0])
    out = regulation_strengths(torch.tensor([1.0, 1.7]), betas, both)
    assert out.tolist() == pytest.approx([0.0, 0.1 * math.exp(math.tanh(0.7))])
    # audio leads but its window has closed: nobody is regulated
    assert regulation_strengths(torch.tensor([1.7, 1.0]), betas, torch.tensor([False, True])).tolist() == [0, 0]
    assert regulation_strengths(torch.tensor([1.0, 1.0]), betas, both).tolist() == [0, 0]  # a tie: no leader
    # three modalities: the gap is to the mean of the others, (1 + 2) / 2
    out = regulation_strengths(torch.tensor([3.0, 1.0, 2.0]), torch.tensor([0.5, 0.1, 0.1]), torch.ones(3, dtype=bool))
    assert out.tolist() == pytest.approx([0.5 * math.exp(math.tanh(1.5)), 0.0, 0.0])


def test_fisher_trace_sums_mean_squared_gradients_of_conv_and_linear_weights() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 1))
    for p in net.parameters():
        p.grad = torch.full_like(p, 5.0)  # biases and BatchNorm: not counted
    net[0].weight.grad = torch.full_like(net[0].weight, 3.0)  # mean 9
    net[3].weight.grad = torch.tensor([[1.0, 2.0]])  # mean (1 + 4) / 2 = 2.5
    assert fisher_trace(net).item() == pytest.approx(11.5)


def test_proximal_gradient_pulls_the_regulated_encoder_to_its_epoch_start() -> None:
    method = method_for("inforeg")
    trained = method.nets["model"]
    method.before_epoch(0, None)  # epoch 0: every modality in its window, anchors taken
    encoders = trained.net.encoders
    with torch.no_grad():
        for p in encoders.parameters():
            p.add_(0.5)  # theta - theta_0 = 0.5 everywhere
    for p in trained.net.parameters():
        p.grad = torch.ones_like(p)
    method.strength = torch.tensor([2.0, 0.0])  # audio regulated
    method.on_gradients(trained, ("head", "encoders"))
    for p in encoders["audio"].parameters():
        assert torch.allclose(p.grad, torch.full_like(p, 1.0 + 2.0 * 0.5))
    for p in encoders["visual"].parameters():
        assert torch.equal(p.grad, torch.ones_like(p))
    assert method.trace_sum[1].item() == pytest.approx(fisher_trace(encoders["visual"]).item())


def test_outside_the_window_nothing_is_regulated_and_the_trace_is_recorded() -> None:
    method = method_for("inforeg", method_params={"rate_window": 2})
    method.history = {"audio": [4.0, 4.0, 4.0], "visual": [1.0, 3.0]}  # rates 0 and 0.75
    method.before_epoch(3, None)
    assert method.rates == pytest.approx([0.0, 0.75]) and set(method.anchors) == {"visual"}
    method.strength = torch.tensor([0.0, 0.0])
    batch = batches(method.cfg, 1)[0]
    method.train_mode(True)
    method.train_batch(batch, epoch=3)
    assert method.beta_sum[0].item() == 0.0, "audio's window has closed"
    points = method.after_validation(3, [])
    values = {(p.modality, p.name): p.value for p in points}
    assert values[("audio", "inforeg_rate")] == 0.0 and values[("visual", "inforeg_rate")] == pytest.approx(0.75)
    assert values[("audio", "inforeg_trace")] > 0 and method.history["audio"][-1] == values[("audio", "inforeg_trace")]
    state = method.extra_state()
    method.history = {}
    method.load_extra_state(state)
    assert method.history["visual"][-1] == values[("visual", "inforeg_trace")]



def test_an_overflowed_fp16_batch_adds_nothing_to_the_trace() -> None:
    """The scaler skips a step whose gradients hold inf; the trace must not become inf for the whole epoch."""
    method = method_for("inforeg")
    trained = method.nets["model"]
    method.before_epoch(0, None)
    for p in trained.net.parameters():
        p.grad = torch.ones_like(p)
    method.strength = torch.tensor([0.0, 0.0])
    method.on_gradients(trained, ("head", "encoders"))
    once = method.trace_sum.clone()
    next(p for p in trained.net.encoders["audio"].parameters() if p.dim() == 4).grad[0, 0, 0, 0] = float("inf")
    method.on_gradients(trained, ("head", "encoders"))
    assert method.trace_sum[0].item() == once[0].item() and method.trace_sum[1].item() == 2 * once[1].item()

@pytest.mark.parametrize(("params", "field"), [({"threshold": -0.1}, "threshold"), ({"rate_window": 0}, "rate_window"),
                                               ({"beta_audio": -1}, "beta_audio")])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "inforeg", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: ")
