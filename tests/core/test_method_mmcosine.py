"""MMCosine's rule on tiny tensors: cosine logits against a hand computation, their indifference to the
embedding's and the weight row's norms and to the head's bias, the fused prediction at evaluation, its series and
its parameter check."""

from __future__ import annotations

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.mmcosine import cosine_logits, true_class_cosine
from tests.kit.training import batches, method_for


def test_cosine_logits_by_hand() -> None:
    # e = (3, 4) has norm 5: (0.6, 0.8); the rows (1, 0) and (0, 2) normalise to the unit vectors
    logits = cosine_logits(torch.tensor([[3.0, 4.0], [0.0, -2.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]]), 10.0)
    assert logits.flatten().tolist() == pytest.approx([6.0, 8.0, 0.0, -10.0])
    assert true_class_cosine(logits, torch.tensor([1, 0]), 10.0).item() == pytest.approx(0.8 + 0.0)


def test_norms_do_not_matter_balanced_by_construction() -> None:
    """A modality with larger features or a larger weight row gets no larger logits: only directions count."""
    e, w = torch.tensor([[1.0, 2.0, 2.0]]), torch.tensor([[2.0, 1.0, 2.0], [0.0, 0.0, 1.0]])
    assert torch.allclose(cosine_logits(100 * e, w, 5.0), cosine_logits(e, 7 * w, 5.0))
    assert cosine_logits(e, w, 5.0).flatten().tolist() == pytest.approx([5 * 8 / 9, 5 * 2 / 3])


def test_head_outputs_sum_the_cosine_branches_and_ignore_the_bias() -> None:
    method = method_for("mmcosine", method_params={"scaling": 4.0})
    head = method.nets["model"].net.head
    torch.manual_seed(1)
    embs = {m: torch.randn(5, head.linears[m].in_features) for m in method.modalities}
    with torch.no_grad():
        for linear in head.linears.values():
            linear.bias.fill_(100.0)
        out = method.head_outputs({"model": embs})
    for m in method.modalities:
        assert torch.allclose(out[("branch", m)], cosine_logits(embs[m], head.linears[m].weight, 4.0))
    assert torch.allclose(out[("fused", None)], sum(out[("branch", m)] for m in method.modalities))
    assert out[("fused", None)].abs().max() <= 4.0 * len(method.modalities) + 1e-5


def test_one_batch_trains_and_logs_the_true_class_cosine() -> None:
    method = method_for("mmcosine")
    batch = batches(method.cfg, 1)[0]
    method.train_mode(True)
    before = {k: v.clone() for k, v in method.nets["model"].net.state_dict().items()}
    method.begin_epoch(0, None)
    method.train_batch(batch, epoch=0)
    after = method.nets["model"].net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("encoders."))
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("head.") and k.endswith("bias"))
    points = method.after_validation(0, [])
    assert {(p.modality, p.name) for p in points} == {(m, "mmcosine_true_cos") for m in method.modalities}
    assert all(-1.0 <= p.value <= 1.0 for p in points)


@pytest.mark.parametrize(("params", "field"), [({"scaling": 0}, "method_params.scaling"),
                                               ({"s": 10}, "method_params.s")])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "mmcosine", "method_params": params})
    assert str(err.value).startswith(f"{field}: "), str(err.value)


def test_its_head_is_fixed() -> None:
    with pytest.raises(ConfigError):
        load_config(base={"dataset": {"name": "synthetic"}, "method": "mmcosine", "fusion": "concat"})
