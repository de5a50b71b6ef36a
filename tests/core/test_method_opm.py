"""OPM's rule on tiny tensors against hand computations: the drop probability from the discrepancy ratio, the
dropped and rescaled embeddings, no drop for balanced modalities or outside the window, bad params refused."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.data import make_loader, to_device
from amst_core.engine import Trainer
from amst_core.methods.ogm_ge import modulation
from amst_core.methods.opm import drop_features, drop_probabilities
from tests.kit.tiny import tiny_config

CPU = torch.device("cpu")


def test_only_the_dominant_modality_gets_a_drop_probability() -> None:
    labels = torch.tensor([0, 1])
    # audio puts 0.9 and 0.8 on the right classes (score 1.7), visual 0.5 and 0.5 (score 1.0): ratios 1.7, 1/1.7
    audio = torch.log(torch.tensor([[0.9, 0.1], [0.2, 0.8]]))
    visual = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    _, ratios = modulation({"audio": audio, "visual": visual}, labels, 0.0, ("audio", "visual"))
    q = drop_probabilities(ratios, q_base=0.5, lam=0.5)
    assert q.tolist() == pytest.approx([0.5 * (1 + 0.5 * math.tanh(0.7)), 0.0])  # 0.65144..., 0


def test_drop_probability_is_clipped_to_one_and_zero_when_balanced() -> None:
    q = drop_probabilities(torch.tensor([3.0, 1.0, 0.2]), q_base=0.9, lam=1.0)
    assert q.tolist() == [1.0, 0.0, 0.0]  # 0.9 * (1 + tanh 2) = 1.77 -> 1; ratio 1 (balanced): no drop


def test_dropped_rows_are_zeroed_and_everything_rescaled_by_the_dimension_weighted_q() -> None:
    audio = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    visual = torch.tensor([[5.0, 6.0], [7.0, 8.0]])
    q = torch.tensor([0.5, 0.0])  # theta = (2 * 0.5 + 2 * 0) / 4 = 0.25: scale 1 / 0.75
    keep = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # sample 0 loses its audio
    (a, v), flags = drop_features([audio, visual], keep, q, torch.tensor(True))
    assert torch.allclose(a, torch.tensor([[0.0, 0.0], [4.0, 16 / 3]]))
    assert torch.allclose(v, torch.tensor([[20 / 3, 8.0], [28 / 3, 32 / 3]]))
    assert flags.tolist() == [True, True]
    (a, v), flags = drop_features([audio, visual], torch.tensor([[0.0, 1.0], [0.0, 1.0]]), q, torch.tensor(True))
    assert flags.tolist() == [False, True], "a sample with every modality dropped leaves the loss"
    (a, v), flags = drop_features([audio, visual], keep, q, torch.tensor(False))
    assert torch.equal(a, audio) and torch.equal(v, visual) and flags.all(), "a batch that does not drop"


def one_batch_weights(method: str, epoch: int, **params) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    trainer = Trainer(tiny_config(method, fusion="concat", method_params=params), progress=False)
    batch = to_device(next(iter(make_loader(trainer.datasets["train"], 16, shuffle=False))), CPU)
    trainer.method.train_mode(True)
    trainer.method.train_batch(batch, epoch=epoch)
    return trainer.method.nets["model"].net.state_dict()


@pytest.mark.parametrize(("epoch", "params"), [(0, {}), (7, {"p_exe": 0.0})])
def test_no_drop_is_naive_concat_fusion(epoch: int, params: dict) -> None:
    """Before the window (epoch 0 of 6..1000), or with p_exe 0, a batch moves every weight as naive fusion does."""
    opm, naive = one_batch_weights("opm", epoch, **params), one_batch_weights("naive", epoch)
    for name, value in opm.items():
        assert torch.allclose(value, naive[name], atol=1e-6), name


def test_a_batch_that_drops_trains_otherwise() -> None:
    opm = one_batch_weights("opm", 7, p_exe=1.0, q_base=1.0, lam=0.0)
    naive = one_batch_weights("naive", 7)
    assert any(not torch.allclose(v, naive[k]) for k, v in opm.items() if k.startswith("encoders."))


@pytest.mark.parametrize(("params", "field"), [({"q_base": 1.5}, "q_base"), ({"p_exe": -0.1}, "p_exe"),
                                               ({"lam": -1}, "lam"), ({"modulation_start": 9, "modulation_end": 8},
                                                                      "modulation_end")])
def test_bad_params_are_refused_naming_the_field(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "opm", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: "), str(err.value)
