"""ARL's rule on tiny tensors against hand computations: the coefficients from logit magnitudes and entropies,
the entropy floor, the gradient scale at the encoders' outputs, the inactive epochs (plain fused plus unimodal
losses) and params refused."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.arl import GradScale, coefficients
from tests.kit.training import batches, method_for

AV = ("audio", "visual")


def test_coefficients_by_hand() -> None:
    # audio: softmax(ln 3, 0) = (0.75, 0.25), |logits| summed 1.0986; visual: (0.5, 0.5), magnitude 0.
    branches = {"audio": torch.tensor([[math.log(3.0), 0.0]]), "visual": torch.zeros(1, 2)}
    h_a = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))  # 0.5623
    h_v = math.log(2)  # 0.6931
    share_a = h_a / (h_a + h_v)  # 0.4479: audio's share of the entropy; 1 / share normalised swaps the shares
    # magnitudes normalised: audio 1, visual 0; score_audio = c_visual * v_audio = 0, score_visual = 1 * share_a.
    k_visual = 1 / (1 + math.exp(-8 * share_a))  # softmax([0, 8 * 0.4479]) = 0.9730
    k = coefficients(branches, AV, temperature=8.0, entropy_floor=0.3)
    assert k.tolist() == pytest.approx([1 - k_visual, k_visual], abs=1e-6)
    assert k_visual == pytest.approx(0.97297, abs=1e-5)


def test_the_entropy_share_is_floored() -> None:
    # audio is certain (entropy ~ 0, share floored to 0.3), visual uniform (share ~ 1): inverse shares 1/0.3 and 1,
    # normalised 0.7692 and 0.2308; visual's score is audio's magnitude share (1) times 0.2308.
    branches = {"audio": torch.tensor([[20.0, 0.0]]), "visual": torch.zeros(1, 2)}
    v_visual = 1 / (1 / 0.3 + 1)
    k = coefficients(branches, AV, temperature=1.0, entropy_floor=0.3)
    assert k[1].item() == pytest.approx(1 / (1 + math.exp(-v_visual)), abs=1e-5)  # 0.5574


def test_balanced_modalities_get_equal_coefficients() -> None:
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, 0.1]])
    k = coefficients({"audio": logits, "visual": logits.clone()}, AV, temperature=8.0, entropy_floor=0.3)
    assert k.tolist() == pytest.approx([0.5, 0.5])


def test_grad_scale_is_identity_forward_and_scales_backward() -> None:
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = GradScale.apply(x, torch.tensor(1.25))
    assert torch.equal(y, x.detach())
    (y * torch.tensor([3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == pytest.approx([3.75, 5.0])


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float32 rounding of sums taken in another order, relative to the tensor's scale."""
    return (a - b).abs().max().item() <= 1e-5 * b.abs().max().item() + 1e-7


def grads_of(method, batch: dict, epoch: int) -> dict[str, torch.Tensor]:
    """The gradients the method's update leaves (its optimizer step replaced by a plain backward)."""
    method.train_mode(True)
    method.step = lambda loss, trained, parts: loss.backward()
    torch.manual_seed(1)
    net = method.nets["model"].net
    method.update({"model": net.embed(batch, method.modalities)}, batch["label"], epoch)
    return {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}


def manual_grads(method, batch: dict, unimodal_weight: float) -> dict[str, torch.Tensor]:
    """CE(fused) + weight * sum CE(branch), no scaling at all."""
    method.train_mode(True)
    torch.manual_seed(1)
    net = method.nets["model"].net
    embs = net.embed(batch, method.modalities)
    labels = batch["label"]
    loss = method.loss(net.head(embs), labels)
    loss = loss + unimodal_weight * sum(method.loss(net.head.branch(m, embs[m]), labels) for m in method.modalities)
    loss.backward()
    return {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}


def test_inactive_epochs_train_fused_plus_unimodal_losses_of_weight_one() -> None:
    params = {"start": 5, "gamma": 4.0, "max_grad_norm": 0}
    batch = batches(method_for("arl", method_params=params).cfg, 1)[0]
    got = grads_of(method_for("arl", method_params=params), batch, epoch=5)  # epoch 5 is not after start 5
    want = manual_grads(method_for("arl", method_params=params), batch, unimodal_weight=1.0)
    assert got.keys() == want.keys()
    for name in want:
        assert close(got[name], want[name]), name


def test_active_epochs_scale_each_encoders_gradient_by_one_plus_its_coefficient() -> None:
    params = {"start": 0, "gamma": 2.0, "max_grad_norm": 0}
    probe = method_for("arl", method_params=params)
    batch = batches(probe.cfg, 1)[0]
    probe.train_mode(True)
    torch.manual_seed(1)
    with torch.no_grad():
        net = probe.nets["model"].net
        k = coefficients(net.head.branches(net.embed(batch, AV)), AV, 8.0, 0.3)
    got = grads_of(method_for("arl", method_params=params), batch, epoch=1)
    want = manual_grads(method_for("arl", method_params=params), batch, unimodal_weight=2.0)
    assert k[0] != k[1]
    for name in want:
        factor = next((1 + k[i].item() for i, m in enumerate(AV) if name.startswith(f"encoders.{m}.")), 1.0)
        assert close(got[name], want[name] * factor), name  # the head: unscaled


def test_the_series_is_one_before_start_and_one_plus_k_after() -> None:
    method = method_for("arl", method_params={"start": 3})
    batch = batches(method.cfg, 1)[0]
    grads_of(method, batch, epoch=2)
    assert {p.modality: p.value for p in method.after_validation(2, [])} == {"audio": 1.0, "visual": 1.0}
    method.begin_epoch(4, None)
    grads_of(method, batch, epoch=4)
    scales = {p.modality: p.value for p in method.after_validation(4, [])}
    assert sum(scales.values()) == pytest.approx(3.0)  # 1 + k_a + 1 + k_v, k summing to 1
    assert all(1 < s < 2 for s in scales.values())


@pytest.mark.parametrize(("params", "field"), [
    ({"temperature": 0}, "temperature"),
    ({"gamma": -1}, "gamma"),
    ({"entropy_floor": 1.5}, "entropy_floor"),
    ({"start": -1}, "start"),
    ({"max_grad_norm": -1}, "max_grad_norm"),
])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "arl", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: ")


def test_gradients_are_clipped_to_the_global_norm() -> None:
    method = method_for("arl", method_params={"max_grad_norm": 1.0})
    trained = method.nets["model"]
    for p in trained.net.head.parameters():
        p.grad = torch.full_like(p, 3.0)
    method.on_gradients(trained, ("head",))
    norm = torch.cat([p.grad.flatten() for p in trained.net.head.parameters()]).norm()
    assert norm.item() == pytest.approx(1.0, rel=1e-5)
