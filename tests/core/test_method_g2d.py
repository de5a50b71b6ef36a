"""G2D against hand computations: the logit distillation at a temperature, SMP's choice of the dominant modality
(ties suppress none), its gradient suppression (conv kernels, or every encoder parameter), the neutral cases
(phase 1, outside the window), the priority series, an exact resume inside phase 2, and bad params refused naming
the field."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.base import TrainedNet
from amst_core.methods.g2d import logit_distillation, prioritised, smp_coefficients
from tests.kit.tiny import tiny_config
from tests.kit.training import batches, method_for, read_jsonl, stopped_and_resumed

AV = ("audio", "visual")


def test_logit_distillation_is_kl_from_the_teacher_times_t_squared() -> None:
    teacher = torch.zeros(1, 2)  # q = (0.5, 0.5)
    student = torch.log(torch.tensor([[0.8, 0.2]]))
    # KL(q || p) = 0.5 ln(0.5 / 0.8) + 0.5 ln(0.5 / 0.2) = 0.5 ln(0.625 * 2.5) = ln 1.25
    assert float(logit_distillation(student, teacher, 1.0)) == pytest.approx(math.log(1.25), rel=1e-6)
    # at T = 2 the same distributions come from logits twice as large; the KL is scaled by T^2 = 4
    assert float(logit_distillation(2 * student, teacher, 2.0)) == pytest.approx(4 * math.log(1.25), rel=1e-6)


def test_smp_suppresses_the_modality_whose_teacher_is_more_confident() -> None:
    labels = torch.tensor([0, 1])
    audio = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))  # teacher score 0.9 + 0.8 = 1.7
    visual = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))  # 1.0
    coeffs, scores = smp_coefficients({"audio": audio, "visual": visual}, labels, AV)
    assert scores.tolist() == pytest.approx([1.7, 1.0])
    assert coeffs.tolist() == [0.0, 1.0]
    assert prioritised(coeffs).tolist() == [0.0, 1.0]  # visual, the weaker, is prioritised
    coeffs, _ = smp_coefficients({"audio": visual, "visual": audio}, labels, AV)
    assert coeffs.tolist() == [1.0, 0.0]
    tie, _ = smp_coefficients({"audio": visual, "visual": visual}, labels, AV)
    assert tie.tolist() == [1.0, 1.0] and prioritised(tie).tolist() == [0.0, 0.0]  # balanced: none suppressed


def unit_grads(trained: TrainedNet) -> dict[str, torch.Tensor]:
    for p in trained.net.parameters():
        p.grad = torch.ones_like(p)
    return {name: p.grad for name, p in trained.net.named_parameters()}


def test_phase_two_loss_is_ce_plus_logit_and_feature_distillation() -> None:
    method = method_for("g2d", method_params={"teacher_epochs": 1, "logit_weight": 2.0, "feature_weight": 0.5})
    dim = method.nets["model"].net.head.linears["audio"].in_features
    with torch.no_grad():  # teachers whose logits do not depend on the embedding: audio uniform, visual 0.4/0.2
        for m, probs in (("audio", [0.25] * 4), ("visual", [0.4, 0.2, 0.2, 0.2])):
            linear = method.nets["teacher"].net.head.linears[m]
            linear.weight.zero_()
            linear.bias.copy_(torch.log(torch.tensor(probs)))
    student = {"audio": torch.zeros(2, dim), "visual": torch.zeros(2, dim)}  # zero biases: uniform fused logits
    teacher = {"audio": torch.ones(2, dim), "visual": torch.full((2, dim), 2.0)}  # feature MSE 1 and 4
    losses = []
    method.step = lambda loss, trained, parts: losses.append(loss.detach())
    method.update({"model": student, "teacher": teacher}, torch.tensor([0, 1]), epoch=1)
    kl_visual = 0.4 * math.log(0.4 / 0.25) + 3 * 0.2 * math.log(0.2 / 0.25)  # audio's KL is 0
    assert float(losses[0]) == pytest.approx(math.log(4) + 2.0 * kl_visual + 0.5 * (1 + 4), rel=1e-5)


@pytest.mark.parametrize("suppress", ["conv", "all"])
def test_the_dominant_encoders_gradients_are_zeroed(suppress: str) -> None:
    method = method_for("g2d", method_params={"teacher_epochs": 1, "suppress": suppress})
    grads = unit_grads(method.nets["model"])
    method.coeffs = torch.tensor([0.0, 1.0])  # audio dominant
    method.on_gradients(method.nets["model"], ("head", "encoders"))
    for name, g in grads.items():
        suppressed = name.startswith("encoders.audio") and (suppress == "all" or g.dim() == 4)
        assert float(g.abs().sum()) == (0.0 if suppressed else float(g.numel())), name
    assert any(g.dim() == 4 for n, g in grads.items() if n.startswith("encoders.audio"))
    teacher = unit_grads(method.nets["teacher"])
    method.on_gradients(method.nets["teacher"], ("head", "encoders"))  # phase 1's steps are never modulated
    assert all(float(g.abs().sum()) == g.numel() for g in teacher.values())


def test_no_suppression_in_phase_one_or_outside_the_window() -> None:
    method = method_for("g2d", method_params={"teacher_epochs": 1, "modulation_start": 0, "modulation_end": 1})
    batch = batches(method.cfg, 1)[0]
    for epoch, expected in ((0, None), (1, "set"), (2, None)):
        method.begin_epoch(epoch, None)
        method.train_mode(True)
        method.train_batch(batch, epoch)
        assert (method.coeffs is None) is (expected is None), epoch
        points = {p.modality: p.value for p in method.after_validation(epoch, []) if p.name == "g2d_priority"}
        assert set(points) == set(AV)
        if expected is None:
            assert points == {"audio": 0.0, "visual": 0.0}
        else:  # one modality suppressed, the other prioritised, unless the teachers tie exactly
            assert sorted(points.values()) in ([0.0, 1.0], [0.0, 0.0])


def test_a_run_resumed_inside_phase_two_is_exact(tmp_path: Path) -> None:
    small = {"name": "synthetic", "synthetic": {"samples": {"train": 32, "val": 16, "test": 16}}}
    cfg = tiny_config("g2d", epochs=3, dataset=small, method_params={"teacher_epochs": 1})
    stopped_and_resumed(tmp_path, cfg, stop=2)
    points = read_jsonl(tmp_path / "split" / "metrics.jsonl")
    assert {p["epoch"]: p["value"] for p in points if p["name"] == "phase"} == {0: 1.0, 1: 2.0, 2: 2.0}
    priority = {(p["epoch"], p["modality"]): p["value"] for p in points if p["name"] == "g2d_priority"}
    assert priority[(0, "audio")] == priority[(0, "visual")] == 0.0  # phase 1: nothing prioritised


@pytest.mark.parametrize(("params", "field"), [
    ({"teacher_epochs": 0}, "teacher_epochs"),
    ({"temperature": 0}, "temperature"),
    ({"feature_weight": -1}, "feature_weight"),
    ({"suppress": "head"}, "suppress"),
    ({"modulation_start": 10, "modulation_end": 5}, "modulation_end"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "g2d", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: "), str(err.value)
