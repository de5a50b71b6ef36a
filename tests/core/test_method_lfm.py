"""LFM's rule on tiny tensors against hand computations: the epoch's alignment weight, the contrastive and
divergence losses, the neutral case (weight 0: the fused CE alone, as naive fusion) and params refused."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.lfm import alignment_weight, contrastive_loss, js_loss
from tests.kit.training import assert_same_weights, batches, method_for, one_update


def test_the_alignment_weight_decays_per_epoch_and_is_clipped() -> None:
    assert alignment_weight(0, 0.3, 0.05, 0.95) == pytest.approx(0.95)  # exp(0) = 1, clipped
    assert alignment_weight(1, 0.3, 0.05, 0.95) == pytest.approx(0.7408182)  # exp(-0.3)
    assert alignment_weight(2, 0.3, 0.05, 0.95) == pytest.approx(0.5488116)  # exp(-0.6)
    assert alignment_weight(10, 0.3, 0.05, 0.95) == pytest.approx(0.05)  # exp(-3) = 0.0498, clipped
    assert alignment_weight(5, 0.0, 0.05, 0.95) == pytest.approx(0.95)  # no decay: the upper bound throughout


def test_contrastive_loss_by_hand() -> None:
    eye = torch.eye(2)
    # Matched pairs, unit similarity 1 on the diagonal, 0 off it: each row's CE is log(1 + e^-1/t).
    assert contrastive_loss(eye, eye, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert contrastive_loss(eye, eye, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2)))
    # Lengths do not matter (the embeddings are L2-normalised).
    scaled = torch.tensor([[3.0, 0.0], [0.0, 2.0]])
    assert contrastive_loss(scaled, eye, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)))
    # b's rows both point along x: S = [[1, 1], [0, 0]]. Rows of S: log 2 and log 2; rows of S^T ([1, 0] twice,
    # targets 0 and 1): log(1 + e^-1) = 0.31326 and log(1 + e) = 1.31326. Loss (0.69315 + 0.81326) / 2.
    b = torch.tensor([[1.0, 0.0], [5.0, 0.0]])
    expected = (math.log(2) + (math.log(1 + math.exp(-1)) + math.log(1 + math.e)) / 2) / 2  # 0.7532045
    assert contrastive_loss(eye, b, 1.0).item() == pytest.approx(expected, abs=1e-6)


def test_js_loss_by_hand() -> None:
    # p = softmax([0, 0]) = (0.5, 0.5), q = softmax([ln 3, 0]) = (0.75, 0.25), m = (0.625, 0.375).
    a, b = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])
    kl_m_p = 0.625 * math.log(0.625 / 0.5) + 0.375 * math.log(0.375 / 0.5)  # 0.0204
    kl_m_q = 0.625 * math.log(0.625 / 0.75) + 0.375 * math.log(0.375 / 0.25)  # 0.0381
    assert js_loss(a, b).item() == pytest.approx((kl_m_p + kl_m_q) / 2, abs=1e-6)
    assert js_loss(b, b).item() == pytest.approx(0.0, abs=1e-7)
    # Far apart: softmax([200, 0]) underflows to (1, 0) in float32, log p = (0, -200) all the same. m = (0.5, 0.5),
    # KL(m || p) = 0.5 log 0.5 + 0.5 (log 0.5 + 200) = 99.306853, and KL(m || q) the same: finite, not inf.
    far = js_loss(torch.tensor([[200.0, 0.0]]), torch.tensor([[0.0, 200.0]]))
    assert far.item() == pytest.approx(100 + math.log(0.5), rel=1e-6)


def test_with_weight_zero_a_step_is_naive_fusion_with_lsum() -> None:
    lfm = method_for("lfm", method_params={"min_weight": 0.0, "max_weight": 0.0})
    naive = method_for("naive", fusion="lsum")
    batch = batches(lfm.cfg, 1)[0]
    for method in (lfm, naive):
        torch.manual_seed(1)
        one_update(method, batch)
    assert_same_weights(lfm, naive)
    untrained = method_for("naive", fusion="lsum").nets["model"].net.head
    assert not all(torch.equal(p, q) for p, q in zip(untrained.parameters(), naive.nets["model"].net.head.parameters(),
                                                       strict=True)), "the step moved the head"


def test_the_epoch_series_are_the_weight_and_the_mean_alignment_loss() -> None:
    method = method_for("lfm", method_params={"alignment": "js"})
    batch = batches(method.cfg, 1)[0]
    method.begin_epoch(1, None)
    method.train_mode(True)
    embs = method.nets["model"].net.embed(batch, method.modalities)
    expected = js_loss(embs["audio"].detach(), embs["visual"].detach()).item()
    method.update({"model": embs}, batch["label"], 1)
    points = {p.name: p.value for p in method.after_validation(1, [])}
    assert points["lfm_weight"] == pytest.approx(math.exp(-0.3))
    assert points["lfm_align_loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("params", "field"), [
    ({"temperature": 0}, "temperature"),
    ({"decay": -1}, "decay"),
    ({"min_weight": 0.5, "max_weight": 0.4}, "max_weight"),
    ({"alignment": "cosine"}, "alignment"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "lfm", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: ")
