"""CML's regulariser on tiny tensors against a hand computation, its subsets, the neutral case (lam 0 is naive
fusion with the same head, bit for bit), its series and its parameter check."""

from __future__ import annotations

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.cml import calibration_penalty, confidence
from amst_core.methods.subsets import subsets
from tests.kit.training import batches, method_for


def test_penalty_by_hand() -> None:
    full = torch.log(torch.tensor([[0.6, 0.4], [0.5, 0.5]]))  # confidences 0.6 and 0.5
    audio = torch.log(torch.tensor([[0.9, 0.1], [0.5, 0.5]]))  # 0.9 (+0.3), 0.5 (equal: not penalised)
    visual = torch.log(torch.tensor([[0.2, 0.8], [0.4, 0.6]]))  # 0.8 (+0.2), 0.6 (+0.1)
    assert confidence(audio).tolist() == pytest.approx([0.9, 0.5])
    reg, active = calibration_penalty(full, [audio, visual])
    assert reg.item() == pytest.approx((0.3 + 0.0 + 0.2 + 0.1) / 4)
    assert active.item() == pytest.approx(3 / 4)


def test_no_penalty_when_removing_modalities_lowers_the_confidence() -> None:
    full = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    less = [torch.log(torch.tensor([[0.7, 0.3], [0.5, 0.5]])), torch.log(torch.tensor([[0.4, 0.6], [0.6, 0.4]]))]
    reg, active = calibration_penalty(full, less)
    assert reg.item() == 0.0 and active.item() == 0.0


def test_the_penalty_pushes_the_subset_confidence_down_and_the_full_one_up() -> None:
    full = torch.log(torch.tensor([[0.6, 0.4]])).requires_grad_()
    sub = torch.log(torch.tensor([[0.9, 0.1]])).requires_grad_()
    calibration_penalty(full, [sub])[0].backward()
    assert sub.grad[0, 0] > 0 > full.grad[0, 0]  # descent lowers the subset's top logit, raises the full one's


def test_subsets_are_every_non_empty_proper_subset() -> None:
    assert subsets(("audio", "visual"), proper=True) == [("audio",), ("visual",)]
    assert subsets(("visual", "text", "audio"), proper=True) == [
        ("audio", "text"), ("audio", "visual"), ("text", "visual"), ("audio",), ("text",), ("visual",)]
    assert subsets(("visual", "audio")) == [("audio", "visual"), ("audio",), ("visual",)]


def test_lam_zero_is_naive_fusion_with_lsum_and_the_series_are_logged() -> None:
    cml, naive = method_for("cml", method_params={"lam": 0.0}), method_for("naive", fusion="lsum")
    naive.nets["model"].net.load_state_dict(cml.nets["model"].net.state_dict())
    batch = batches(cml.cfg, 1)[0]
    for method in (cml, naive):
        method.train_mode(True)
        method.begin_epoch(0, None)
        method.train_batch(batch, epoch=0)
    for (name, a), (_, b) in zip(cml.nets["model"].net.state_dict().items(),
                                 naive.nets["model"].net.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    points = {p.name: p for p in cml.after_validation(0, [])}
    assert set(points) == {"cml_reg", "cml_active"} and all(p.modality is None for p in points.values())
    assert points["cml_reg"].value >= 0 and 0 <= points["cml_active"].value <= 1


@pytest.mark.parametrize(("params", "field"), [({"lam": -0.1}, "method_params.lam"),
                                               ({"lambda": 1}, "method_params.lambda")])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "cml", "method_params": params})
    assert str(err.value).startswith(f"{field}: "), str(err.value)
