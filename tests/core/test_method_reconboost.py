"""ReconBoost's rule on tiny tensors, against hand computations: the boosting loss (reconcilement term included),
the stage schedule, the ensemble prediction, which parts each phase trains, the fresh momentum of each phase,
the state a resume needs, and bad params refused naming the field."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.reconboost import boosting_loss, members, stage_of
from tests.kit.training import batches, method_for

AV = ("audio", "visual")


def test_boosting_loss_weights_each_sample_by_what_the_others_miss() -> None:
    labels = torch.tensor([0, 1])
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.4, 0.6]]))  # p(y): 0.8 and 0.6
    others = torch.tensor([[0.5, 0.5], [0.9, 0.1]])  # the others give the true class 0.5 and 0.1
    loss = boosting_loss(logits, labels, others, weight1=5.0, weight2=1.0)
    # per sample (-5 + q_y) * log p_y / C, C = 2: (-4.5 * log 0.8 + -4.9 * log 0.6) / 2, averaged over 2
    expected = ((-4.5 * math.log(0.8)) / 2 + (-4.9 * math.log(0.6)) / 2) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(loss) == pytest.approx(0.876797, abs=1e-5)


def test_boosting_loss_without_other_learners_or_reconcilement_is_scaled_cross_entropy() -> None:
    labels = torch.tensor([0, 1])
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.4, 0.6]]))
    ce = -(math.log(0.8) + math.log(0.6)) / 2
    # no ensemble yet: q = 1 (the code's scalar c0 ensemble): (w1 - w2) * CE / C
    assert float(boosting_loss(logits, labels, None, 5.0, 1.0)) == pytest.approx(4 * ce / 2, rel=1e-6)
    # weight2 = 0: the reconcilement term is off, w1 * CE / C whatever the others say
    others = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(boosting_loss(logits, labels, others, 5.0, 0.0)) == pytest.approx(5 * ce / 2, rel=1e-6)


def test_stages_rotate_over_modalities_with_rectification_epochs() -> None:
    # stage_epochs 2, correct_epochs 1: epochs 0-1 boost audio, 2 rectifies, 3-4 boost visual, 5 rectifies, ...
    schedule = [stage_of(e, 2, 1) for e in range(7)]
    assert schedule == [(0, False), (0, False), (0, True), (1, False), (1, False), (1, True), (2, False)]
    assert [stage_of(e, 1, 0) for e in range(3)] == [(0, False), (1, False), (2, False)]  # no rectification
    assert members(0, AV) == ("audio",) and members(1, AV) == AV and members(7, AV) == AV
    assert members(1, ("audio", "text", "visual")) == ("audio", "text")


def reconboost(**params):
    return method_for("reconboost", method_params={"stage_epochs": 1, "correct_epochs": 1, **params})


def embeddings_of(method, batch):
    return {"model": method.nets["model"].net.embed(batch, method.modalities)}


def test_the_prediction_is_the_weighted_ensemble_of_the_added_learners() -> None:
    method = reconboost(boost_rate=0.5)
    batch = batches(method.cfg, 1)[0]
    method.train_mode(False)
    with torch.no_grad():
        embs = embeddings_of(method, batch)
        branches = method.nets["model"].net.head.branches(embs["model"])
        method.before_epoch(0, None)  # stage 0: only the audio learner is in the ensemble
        out = method.head_outputs(embs)
        assert torch.allclose(out[("fused", None)], 0.5 * branches["audio"])
        method.before_epoch(2, None)  # stage 1: both
        out = method.head_outputs(embs)
        assert torch.allclose(out[("fused", None)], 0.5 * (branches["audio"] + branches["visual"]))
        assert torch.equal(out[("branch", "visual")], branches["visual"])


def params_of(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


def test_a_boosting_epoch_trains_only_its_learner_and_rectification_trains_the_ensemble() -> None:
    method = reconboost()
    batch = batches(method.cfg, 1)[0]
    encoders = method.nets["model"].net.encoders
    method.train_mode(True)
    method.before_epoch(2, None)  # stage 1 boosts visual against the audio learner
    audio, visual, rate = params_of(encoders["audio"]), params_of(encoders["visual"]), float(method.boost_rate.detach())
    method.update(embeddings_of(method, batch), batch["label"], 2)
    assert moved(visual, encoders["visual"]) and not moved(audio, encoders["audio"])
    assert float(method.boost_rate.detach()) == rate, "the ensemble weight is trained in rectification only"
    assert method.nets["model"].optimizers["encoders"].state, "momentum gathered in the phase"
    method.before_epoch(3, None)  # stage 1's rectification: a new phase, fresh momentum
    assert not method.nets["model"].optimizers["encoders"].state and not method.nets["model"].optimizers["head"].state
    audio = params_of(encoders["audio"])
    method.update(embeddings_of(method, batch), batch["label"], 3)
    assert moved(audio, encoders["audio"]) and float(method.boost_rate.detach()) != rate
    points = {(p.modality, p.name): p.value for p in method.after_validation(3, [])}
    assert points[(None, "recon_rectify")] == 1.0 and points[("audio", "recon_stage")] == 0.0
    assert points[("visual", "recon_weight")] == pytest.approx(float(method.boost_rate.detach()))


def test_the_phase_and_the_ensemble_weight_survive_a_resume() -> None:
    method = reconboost(boost_rate=0.7)
    method.before_epoch(2, None)
    with torch.no_grad():
        method.boost_rate.fill_(1.25)
    state = method.state_dict()
    resumed = reconboost(boost_rate=0.7)
    resumed.load_state_dict(state)
    assert float(resumed.boost_rate.detach()) == 1.25 and (resumed.stage, resumed.rectifying) == (1, False)
    points = {(p.modality, p.name): p.value for p in resumed.after_validation(2, [])}
    assert points[("visual", "recon_stage")] == 1.0 and points[("audio", "recon_weight")] == 1.25


@pytest.mark.parametrize(("params", "field"), [
    ({"stage_epochs": 0}, "stage_epochs"), ({"correct_epochs": -1}, "correct_epochs"),
    ({"weight2": -1.0}, "weight2"), ({"lambda": 1.0}, "lambda"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "reconboost", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: "), str(err.value)


def test_the_ensemble_weights_group_its_momentum_and_learning_rate_survive_a_resume() -> None:
    method = reconboost()
    batch = batches(method.cfg, 1)[0]
    method.train_mode(True)
    method.before_epoch(1, None)  # stage 0's rectification: the boost rate is trained
    method.update(embeddings_of(method, batch), batch["label"], 1)
    head = method.nets["model"].optimizers["head"]
    for _ in range(method.cfg.optim.lr_step):
        method.nets["model"].schedulers["head"].step()  # one decay of both head groups
    lr = method.cfg.optim.lr * method.cfg.optim.lr_gamma
    assert [g["lr"] for g in head.param_groups] == pytest.approx([lr, lr])
    assert method.nets["model"].schedulers["head"].base_lrs == [method.cfg.optim.lr] * 2
    resumed = reconboost()
    resumed.load_state_dict(method.state_dict())
    again = resumed.nets["model"].optimizers["head"]
    assert [g["lr"] for g in again.param_groups] == pytest.approx([lr, lr])
    momentum = head.state[method.boost_rate]["momentum_buffer"]
    assert torch.equal(again.state[resumed.boost_rate]["momentum_buffer"], momentum)
    assert again.param_groups[1]["params"][0] is resumed.boost_rate, "the optimizer steps the method's own parameter"
    assert float(resumed.boost_rate.detach()) == float(method.boost_rate.detach())
