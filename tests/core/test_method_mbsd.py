"""MBSD against hand computations: the per-sample weight (|p_a[y] - p_b[y]| when either modality is right), the
logit and KL terms, the most confident modality, the loss inside and outside the window, the neutral case of two
equally confident modalities, the series, and bad params refused naming the field."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.base import Method
from amst_core.methods.mbsd import distillation, most_confident, pair_terms
from tests.kit.training import batches, method_for

AV = ("audio", "visual")
LABELS = torch.tensor([0, 1])
# sample 0 (label 0): audio 0.8 (right), visual 0.4 (wrong); sample 1 (label 1): audio 0.3, visual 0.1, both wrong
AUDIO = torch.log(torch.tensor([[0.8, 0.2], [0.7, 0.3]]))
VISUAL = torch.log(torch.tensor([[0.4, 0.6], [0.9, 0.1]]))


def test_pair_terms_weight_only_samples_one_modality_gets_right() -> None:
    w, rs, kl, a_stronger = pair_terms(AUDIO, VISUAL, LABELS)
    assert w.tolist() == pytest.approx([0.8 - 0.4, 0.0])
    # RS: mean over the 2 classes of the squared logit difference: (ln 2)^2 and (ln 1/3)^2 for sample 0
    assert float(rs[0]) == pytest.approx((math.log(2) ** 2 + math.log(1 / 3) ** 2) / 2, rel=1e-5)
    # KL as torch's kl_div(input=ps, target=pw) on the true-class probabilities: pw * (ln pw - ps)
    assert float(kl[0]) == pytest.approx(0.4 * (math.log(0.4) - 0.8), rel=1e-5)
    assert a_stronger.tolist() == [1.0, 1.0]
    _, rs_p, _, _ = pair_terms(AUDIO, VISUAL, LABELS, on_probabilities=True)  # three modalities: probabilities
    assert float(rs_p[0]) == pytest.approx((0.4 ** 2 + 0.4 ** 2) / 2, rel=1e-5)


def test_distillation_averages_weighted_terms_over_the_batch() -> None:
    loss, weights = distillation({"audio": AUDIO, "visual": VISUAL}, LABELS, AV)
    rs0 = (math.log(2) ** 2 + math.log(1 / 3) ** 2) / 2
    kl0 = 0.4 * (math.log(0.4) - 0.8)
    assert float(loss) == pytest.approx((0.4 * rs0 + 0.4 * kl0) / 2, rel=1e-5)
    assert float(loss) == pytest.approx(0.031437, abs=1e-5)
    assert weights.tolist() == pytest.approx([0.4 / 2, 0.0])  # audio teaches in sample 0; sample 1 weighs 0
    assert most_confident({"audio": AUDIO, "visual": VISUAL}, LABELS, AV).tolist() == [2, 0]


def test_equally_confident_modalities_distil_nothing() -> None:
    loss, weights = distillation({"audio": AUDIO, "visual": AUDIO.clone()}, LABELS, AV)
    assert float(loss) == 0.0 and weights.tolist() == [0.0, 0.0]


def captured(method: Method, epoch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    batch = batches(method.cfg, 1)[0]
    embs = method.nets["model"].net.embed(batch, method.modalities)
    losses = []
    method.step = lambda loss, trained, parts: losses.append(loss.detach())
    method.update({"model": embs}, batch["label"], epoch)
    head = method.nets["model"].net.head
    with torch.no_grad():
        branches = head.branches(embs)
        terms = {"fused": method.loss(head.combine(list(branches.values())), batch["label"]),
                 "unimodal": sum(method.loss(o, batch["label"]) for o in branches.values()),
                 "distill": distillation(branches, batch["label"], AV)[0]}
    return losses[0], terms


def test_inside_the_window_unimodal_losses_and_distillation_are_added_outside_only_fused_ce() -> None:
    method = method_for("mbsd", method_params={"modulation_start": 1, "modulation_end": 1})
    loss, terms = captured(method, epoch=1)
    assert float(loss) == pytest.approx(float(terms["fused"] + terms["unimodal"] + terms["distill"]), rel=1e-6)
    loss, terms = captured(method, epoch=2)
    assert float(loss) == pytest.approx(float(terms["fused"]), rel=1e-6)
    points = method.after_validation(2, [])
    assert {(p.modality, p.name) for p in points} == {(m, n) for m in AV for n in ("mbsd_weight", "mbsd_confident")}
    confident = sum(p.value for p in points if p.name == "mbsd_confident")
    assert confident == pytest.approx(1.0)  # each sample has one most confident modality


@pytest.mark.parametrize(("params", "field"), [
    ({"modulation_start": 10, "modulation_end": 5}, "modulation_end"),
    ({"modulation_start": -1}, "modulation_start"),
    ({"alpha": 1}, "alpha"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "mbsd", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: "), str(err.value)
