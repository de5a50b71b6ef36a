"""AMCo's rule on tiny tensors against hand computations: the sine mask ratio, the feature mask and its
rescaling, the softmax shares that flag the dependent modality, the per-epoch progress; no masking outside the
window or before a modality is flagged; bad params refused."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.data import make_loader, to_device
from amst_core.engine import Trainer
from amst_core.methods.amco import dependence_shares, feature_mask, first_true, flag_dependent, mask_ratio
from tests.kit.tiny import tiny_config

CPU = torch.device("cpu")


def test_mask_ratio_follows_a_quarter_sine_up_to_eps() -> None:
    assert mask_ratio(0.0, 0.3) == 0.0
    assert mask_ratio(0.15, 0.3) == pytest.approx(math.sqrt(0.5))  # sin(pi/4)
    assert mask_ratio(0.6, 0.3) == pytest.approx(1.0)  # saturated


def test_feature_mask_zeroes_int_ratio_times_dim_and_rescales_the_rest() -> None:
    torch.manual_seed(0)
    mask = feature_mask(10, 0.5)
    assert (mask == 0).sum() == 5 and set(mask[mask != 0].tolist()) == {2.0}  # 1 / (1 - 0.5)
    mask = feature_mask(10, 0.95)
    assert (mask == 0).sum() == 9 and set(mask[mask != 0].tolist()) == {10.0}, "|p - 1| <= 0.1: times 10"
    assert torch.equal(feature_mask(4, 0.0), torch.ones(4)), "p = 0: nothing masked, nothing rescaled"


def test_shares_are_the_softmax_mass_of_each_modality_in_the_concatenated_logits() -> None:
    # sample 0: exp -> audio (3, 1), visual (1, 1): audio 4/6; sample 1: all equal: 1/2 each
    audio = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    visual = torch.zeros(2, 2)
    shares = dependence_shares([audio, visual]) / 2
    assert shares.tolist() == pytest.approx([(4 / 6 + 1 / 2) / 2, (2 / 6 + 1 / 2) / 2])


def test_the_first_modality_reaching_sigma_is_flagged_for_good_and_the_first_flagged_is_masked() -> None:
    none = torch.tensor([False, False])
    flags = flag_dependent(none, torch.tensor([0.6, 0.4]), 0.5)
    assert flags.tolist() == [True, False]
    flags = flag_dependent(flags, torch.tensor([0.3, 0.7]), 0.5)
    assert flags.tolist() == [True, True], "flags are never cleared within an epoch"
    assert first_true(flags).tolist() == [True, False], "the first flagged one (sorted order) is masked"
    both = flag_dependent(torch.tensor([False, False, False]), torch.tensor([0.2, 0.6, 0.7]), 0.5)
    assert both.tolist() == [False, True, False], "one new flag per batch: the first reaching sigma"
    assert flag_dependent(none, torch.tensor([0.5, 0.5]), 0.6).tolist() == [False, False], "balanced: none"


def trainer_for(method: str, **params) -> Trainer:
    torch.manual_seed(0)
    return Trainer(tiny_config(method, fusion="concat", method_params=params), progress=False)


def first_batch(trainer: Trainer) -> dict[str, torch.Tensor]:
    return to_device(next(iter(make_loader(trainer.datasets["train"], 16, shuffle=False))), CPU)


def test_outside_the_window_it_is_naive_fusion_and_nothing_is_flagged() -> None:
    amco, naive = trainer_for("amco"), trainer_for("naive")  # window 10..80
    batch = first_batch(amco)
    for t in (amco, naive):
        t.method.train_mode(True)
        t.method.train_batch(batch, epoch=3)
    for (name, a), (_, b) in zip(amco.method.nets["model"].net.state_dict().items(),
                                 naive.method.nets["model"].net.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not amco.method.dependent.any() and amco.method.progress == pytest.approx(0.3)  # epoch 3 * 0.1


def test_inside_the_window_a_modality_is_flagged_then_masked_with_a_growing_ratio() -> None:
    trainer = trainer_for("amco", modulation_start=0, sigma=0.5)
    method, batch = trainer.method, first_batch(trainer)
    method.train_mode(True)
    method.begin_epoch(1, None)
    method.train_batch(batch, epoch=1)  # p = 0: nothing masked; two modalities' shares sum to 1: one flagged
    assert method.dependent.sum() == 1 and method.means.sums["amco_mask"].sum() == 0
    flagged = int(method.dependent.nonzero()[0])
    method.train_batch(batch, epoch=1)  # progress 0.1: p = sin(pi/6) = 0.5 of the flagged one's features
    dim = method.nets["model"].net.head.weights[method.modalities[flagged]].in_features
    assert method.means.sums["amco_mask"][flagged] == pytest.approx(int(0.5 * dim) / dim)
    assert method.means.sums["amco_mask"][1 - flagged] == 0
    method.begin_epoch(2, None)
    assert method.progress == 0 and not method.dependent.any(), "every epoch starts afresh"


@pytest.mark.parametrize(("params", "field"), [({"sigma": 0}, "sigma"), ({"eps": 0}, "eps"),
                                               ({"progress_rate": -1}, "progress_rate")])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "amco", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: "), str(err.value)
