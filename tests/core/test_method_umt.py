"""UMT against hand computations: the feature distillation term, the loss of phase 2, which network each phase
trains (the teachers frozen in eval mode after phase 1), each network's learning-rate schedule, the phase
series, an exact resume inside phase 2, and bad params refused naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.base import Method
from amst_core.methods.umt import feature_distance
from tests.kit.tiny import tiny_config
from tests.kit.training import batches, method_for, read_jsonl, stopped_and_resumed


def test_feature_distance_is_the_mean_squared_difference() -> None:
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert float(feature_distance(student, teacher)) == pytest.approx((0 + 4 + 9 + 0) / 4)


def captured_loss(method: Method, embeddings: dict[str, dict[str, torch.Tensor]], labels: torch.Tensor,
                  epoch: int) -> torch.Tensor:
    losses = []
    method.step = lambda loss, trained, parts: losses.append(loss)
    method.update(embeddings, labels, epoch)
    return losses[0]


def test_phase_two_adds_weighted_feature_mse_to_the_fused_ce() -> None:
    method = method_for("umt", method_params={"teacher_epochs": 1, "distill_weight": 0.5})
    dim = method.nets["model"].net.head.linears["audio"].in_features
    zeros = torch.zeros(3, dim)
    student = {"audio": zeros, "visual": zeros}
    teacher = {"audio": torch.ones(3, dim), "visual": torch.full((3, dim), 2.0)}  # MSE 1 and 4
    labels = torch.tensor([0, 1, 2])
    loss = captured_loss(method, {"model": student, "teacher": teacher}, labels, epoch=1)
    ce = method.loss(method.nets["model"].net.head(student), labels)
    assert float((loss - ce).detach()) == pytest.approx(0.5 * (1 + 4))
    neutral = method_for("umt", method_params={"teacher_epochs": 1, "distill_weight": 0.0})
    loss = captured_loss(neutral, {"model": student, "teacher": teacher}, labels, epoch=1)
    ce = neutral.loss(neutral.nets["model"].net.head(student), labels)
    assert float(loss.detach()) == pytest.approx(float(ce.detach()))


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items() if v.is_floating_point()}


def moved(before: dict[str, torch.Tensor], net: torch.nn.Module, prefix: str) -> bool:
    now = net.state_dict()
    return any(not torch.equal(v, now[k]) for k, v in before.items()
               if k.startswith(prefix) and "running" not in k and "num_batches" not in k)


def test_phase_one_trains_the_teachers_phase_two_the_student() -> None:
    method = method_for("umt", method_params={"teacher_epochs": 2}, epochs=3)
    batch = batches(method.cfg, 1)[0]
    for epoch, teaching in ((0, True), (1, True), (2, False)):
        method.begin_epoch(epoch, None)
        method.train_mode(True)
        assert method.nets["teacher"].net.training is teaching  # frozen teachers stay in eval mode
        student, teacher = snapshot(method.nets["model"].net), snapshot(method.nets["teacher"].net)
        method.train_batch(batch, epoch)
        for prefix in ("encoders.", "head."):
            assert moved(teacher, method.nets["teacher"].net, prefix) is teaching, (epoch, prefix)
            assert moved(student, method.nets["model"].net, prefix) is not teaching, (epoch, prefix)
        if not teaching:  # no BatchNorm statistic of a frozen teacher moves either
            now = method.nets["teacher"].net.state_dict()
            assert all(torch.equal(v, now[k]) for k, v in teacher.items() if not k.startswith("helpers."))
        assert moved(student, method.nets["model"].net, "helpers.")  # every network's probes, every epoch
        assert moved(teacher, method.nets["teacher"].net, "helpers.")
        method.scheduler_step()
    # StepLR counts each network's own phase: two teacher epochs, one student epoch (helpers: all three)
    assert method.nets["teacher"].schedulers["encoders"].last_epoch == 2
    assert method.nets["model"].schedulers["encoders"].last_epoch == 1
    assert method.nets["model"].schedulers["helpers"].last_epoch == 3


def test_the_teachers_predict_as_their_own_components() -> None:
    method = method_for("umt", method_params={"teacher_epochs": 1})
    outputs = method.eval_batch(batches(method.cfg, 1)[0])
    assert {("teacher", None), ("teacher_branch", "audio"), ("teacher_helper", "visual")} <= set(outputs)
    assert torch.allclose(outputs[("teacher", None)],
                          outputs[("teacher_branch", "audio")] + outputs[("teacher_branch", "visual")])


def test_a_run_resumed_inside_phase_two_is_exact(tmp_path: Path) -> None:
    small = {"name": "synthetic", "synthetic": {"samples": {"train": 32, "val": 16, "test": 16}}}
    cfg = tiny_config("umt", epochs=3, dataset=small, method_params={"teacher_epochs": 1})
    stopped_and_resumed(tmp_path, cfg, stop=2)  # teachers of epoch 0 and the student of epoch 1 from last.pt
    points = read_jsonl(tmp_path / "split" / "metrics.jsonl")
    phase = {p["epoch"]: p["value"] for p in points if p["name"] == "phase"}
    assert phase == {0: 1.0, 1: 2.0, 2: 2.0}
    distance = [p for p in points if p["name"] == "umt_distill"]
    assert {(p["epoch"], p["modality"]) for p in distance} == {(e, m) for e in range(3) for m in ("audio", "visual")}


@pytest.mark.parametrize(("params", "field"), [
    ({"teacher_epochs": 0}, "teacher_epochs"),
    ({"distill_weight": -1}, "distill_weight"),
    ({"alpha": 1}, "alpha"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "umt", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: "), str(err.value)


@pytest.mark.parametrize("method", ["umt", "g2d"])
def test_a_run_whose_teachers_take_every_epoch_is_refused_and_recipes_leave_the_student_epochs(method: str) -> None:
    """Teachers for all of a run's epochs would train no multimodal model: refused, naming the field; the datasets
    whose recipes run fewer epochs than the default 50 teacher epochs give the student as many as the teachers."""
    from amst_core.config import ConfigError, load_config

    with pytest.raises(ConfigError) as refused:
        load_config(base={"method": method, "dataset": {"name": "avdigits"}, "epochs": 20})
    assert str(refused.value).startswith("method_params.teacher_epochs: 20 teacher epochs leave none of the run's 20 "
                                         "epochs to the multimodal student")
    cfg = load_config(base={"method": method, "dataset": {"name": "avdigits"}})
    assert (cfg.epochs, cfg.params.teacher_epochs) == (40, 20), "avdigits' recipe, as configs/avdigits/<method>.yaml"
    assert load_config(base={"method": method, "dataset": {"name": "avdigits"}, "recipe": "reference"}).epochs == 100
