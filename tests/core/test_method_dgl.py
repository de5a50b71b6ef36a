"""DGL's disentangled gradients: by hand on scalars, then on a tiny network (encoders from the unimodal losses
only, the head from the fused loss only), the neutral case alpha 0 (no encoder learns), the clipping, the series
and the parameter check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.optim import SGD

from amst_core.config import ConfigError, load_config
from amst_core.methods.base import TrainedNet
from amst_core.methods.dgl import disentangled_backward
from tests.kit.training import batches, method_for


def test_gradients_by_hand() -> None:
    w_enc, w_head = torch.tensor(2.0, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    trained = TrainedNet(None, {"encoders": SGD([w_enc], lr=0.1), "head": SGD([w_head], lr=0.1)}, {}, "")
    e = w_enc * 3.0  # the "embedding": 6
    unimodal = 4.0 * (w_head * e) ** 2  # alpha 4 times a unimodal loss of the branch w_head * e = 3
    fused = w_head * e.detach()
    disentangled_backward(trained, fused, unimodal)
    assert w_enc.grad.item() == pytest.approx(4.0 * 2 * 3.0 * 0.5 * 3.0)  # 36: d/dw_enc of the unimodal loss
    assert w_head.grad.item() == pytest.approx(6.0)  # the fused loss's only: not + 4 * 2 * 3 * 6 from the unimodal


def grads_after_one_batch(**params):
    """One DGL batch with lr 0 (the weights stay, their gradients are left on them), and the batch's embeddings."""
    method = method_for("dgl", method_params={"clip_norm": 0.0, **params})
    for optimizer in method.nets["model"].optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = 0.0
    method.train_mode(True)
    batch = batches(method.cfg, 1)[0]
    method.begin_epoch(0, None)
    method.train_batch(batch, epoch=0)
    return method, batch


def test_encoders_learn_from_their_unimodal_loss_and_the_head_from_the_fused_loss_only() -> None:
    method, batch = grads_after_one_batch(alpha=3.0)
    net = method.nets["model"].net
    labels = batch["label"]
    enc_params = [p for m in method.modalities for p in net.encoders[m].parameters()]
    head_params = list(net.head.parameters())
    was = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in enc_params + head_params]
    embs = net.embed(batch, method.modalities)  # train mode, as in the batch (no dropout in these encoders)
    unimodal = 3.0 * sum(F.cross_entropy(net.head.branch(m, e), labels) for m, e in embs.items())
    expected_enc = torch.autograd.grad(unimodal, enc_params, allow_unused=True)
    fused = F.cross_entropy(net.head({m: e.detach() for m, e in embs.items()}), labels)
    expected_head = torch.autograd.grad(fused, head_params)
    expected = [g if g is not None else torch.zeros_like(p) for p, g in zip(enc_params, expected_enc, strict=True)]
    for got, g in zip(was, [*expected, *expected_head], strict=True):
        assert torch.allclose(got, g, atol=1e-6)
    points = method.after_validation(0, [])
    assert {(p.modality, p.name) for p in points} == {(m, "dgl_unimodal_loss") for m in method.modalities}
    assert all(p.value > 0 for p in points)


def test_alpha_zero_no_encoder_learns() -> None:
    method, _ = grads_after_one_batch(alpha=0.0)
    net = method.nets["model"].net
    assert all(p.grad is None or not p.grad.any() for p in net.encoders.parameters())
    assert any(p.grad is not None and p.grad.any() for p in net.head.parameters())


def test_gradients_are_clipped_to_clip_norm() -> None:
    method, _ = grads_after_one_batch(alpha=4.0, clip_norm=1e-3)
    net = method.nets["model"].net
    grads = [p.grad for p in [*net.encoders.parameters(), *net.head.parameters()] if p.grad is not None]
    assert torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) <= 1e-3 * 1.001


@pytest.mark.parametrize(("params", "field"), [({"alpha": -1}, "method_params.alpha"),
                                               ({"clip_norm": -1}, "method_params.clip_norm")])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "dgl", "method_params": params})
    assert str(err.value).startswith(f"{field}: "), str(err.value)
