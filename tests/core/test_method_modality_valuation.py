"""Modality valuation (modality-level) on tiny tensors against hand computations: per-sample Shapley
contributions from subset correctness, the re-sampled share from the contribution gap, the copies each draw adds,
the epoch's valuation and window, the neutral case (equal contributions: naive fusion) and params refused."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.config import ConfigError, load_config
from amst_core.methods.modality_valuation import copy_subsets, resample_share, sample_shapley, subset_correctness
from tests.kit.training import assert_same_weights, batches, method_for, one_update

A, V = frozenset({"audio"}), frozenset({"visual"})


def test_sample_shapley_by_hand() -> None:
    # samples: (v(a), v(v), v(av)) = (1, 0, 1), (0, 0, 1), (1, 1, 0), (0, 1, 1)
    correct = {A: torch.tensor([1, 0, 1, 0]).bool(), V: torch.tensor([0, 0, 1, 1]).bool(),
               A | V: torch.tensor([1, 1, 0, 1]).bool()}
    phi = sample_shapley(correct, ("audio", "visual"))
    # phi_a = 1/2 (v(a) - 0) + 1/2 (v(av) - v(v))
    assert phi[0].tolist() == [1.0, 0.5, 0.0, 0.0]
    assert phi[1].tolist() == [0.0, 0.5, 0.0, 1.0]
    # three modalities, audio decides alone: weights 1/3 (alone), 1/6 and 1/6, 1/3 (with both others)
    t = frozenset({"text"})
    one, zero = torch.tensor([True]), torch.tensor([False])
    three = sample_shapley({A: one, t: zero, V: zero, A | t: one, A | V: one, t | V: zero, A | t | V: one},
                           ("audio", "text", "visual"))
    assert three[:, 0].tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_subset_correctness_uses_the_head_without_the_absent_branches() -> None:
    audio = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    visual = torch.tensor([[0.0, 3.0], [0.0, 1.0]])
    correct = subset_correctness({"audio": audio, "visual": visual}, torch.tensor([0, 1]),
                                 lambda b: torch.stack(b).sum(0))
    assert correct[A].tolist() == [True, True]
    assert correct[V].tolist() == [False, True]
    assert correct[A | V].tolist() == [False, True]  # (2, 3): class 1


def test_resample_share_by_hand() -> None:
    # gaps 0.2 and 0.8: 2/3 * (|0.2 - 0.8| + |0.8 - 0.2|) / 2! = 0.4
    assert resample_share(torch.tensor([0.8, 0.2])) == pytest.approx(0.4)
    # gaps 0.5, 0.7, 0.8: ordered pairs sum 2 * (0.2 + 0.3 + 0.1) = 1.2; / 3! = 0.2; * 2/3
    assert resample_share(torch.tensor([0.5, 0.3, 0.2])) == pytest.approx(0.4 / 3)
    assert resample_share(torch.tensor([0.6, 0.6])) == 0.0  # balanced: nothing re-sampled


def test_each_draw_copies_the_weak_modality_alone_and_the_strong_with_all() -> None:
    assert copy_subsets(torch.tensor([0.8, 0.2]), ("audio", "visual")) == [("audio", "visual"), ("visual",)]
    assert copy_subsets(torch.tensor([0.1, 0.5, 0.3]), ("audio", "text", "visual")) == [
        ("audio",), ("audio", "text", "visual"), ("audio", "visual")]


class Data:
    """What before_epoch reads: a few train batches."""

    def __init__(self, items: list[dict]):
        self.items = items

    def num_batches(self, split: str) -> int:
        return len(self.items)

    def batches(self, split: str):
        yield from self.items


def test_the_epoch_valuation_and_the_window() -> None:
    method = method_for("modality_valuation", method_params={"part_ratio": 0.5, "modulation_start": 1})
    items = batches(method.cfg, 3)
    method.before_epoch(0, Data(items))  # ceil(0.5 * 3) = 2 batches valued
    net, expected = method.nets["model"].net, torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for batch in items[:2]:
            branches = net.head.branches(net.embed(batch, method.modalities))
            for m, o in branches.items():
                other = next(k for k in branches if k != m)
                alone = (o.argmax(1) == batch["label"]).double()
                both = ((o + branches[other]).argmax(1) == batch["label"]).double()
                without = (branches[other].argmax(1) == batch["label"]).double()
                expected[method.modalities.index(m)] += (0.5 * alone + 0.5 * (both - without)).sum()
    count = sum(len(b["label"]) for b in items[:2])
    assert method.contributions.tolist() == pytest.approx((expected / count).tolist())
    assert method.resample == 0.0  # epoch 0 is before the window
    method.before_epoch(1, Data(items))
    phi = method.contributions.tolist()  # two modalities: 2/3 * (|gap_a - gap_v| + |gap_v - gap_a|) / 2!
    assert method.resample == pytest.approx(2 / 3 * abs((1 - phi[0]) - (1 - phi[1])))
    points = {(p.modality, p.name): p.value for p in method.after_validation(1, [])}
    assert points[("audio", "mv_shapley")] == pytest.approx(method.contributions[0].item())
    assert points[(None, "mv_resample")] == pytest.approx(method.resample)


def test_a_step_adds_one_copy_per_modality_for_each_draw() -> None:
    method = method_for("modality_valuation")
    method.train_mode(True)
    method.contributions, method.resample = torch.tensor([0.8, 0.2]), 0.25
    method.copies = copy_subsets(method.contributions, method.modalities)
    (batch,) = batches(method.cfg, 1)
    seen = []
    loss = method.loss
    method.loss = lambda logits, labels: seen.append((logits.shape[0], labels)) or loss(logits, labels)
    net = method.nets["model"].net
    torch.manual_seed(3)
    method.update({"model": net.embed(batch, method.modalities)}, batch["label"], 0)
    b = len(batch["label"])
    k = math.floor(0.25 * b + 0.5)
    torch.manual_seed(3)
    idx = torch.randint(b, (k,))
    ((rows, labels),) = seen
    assert rows == b + 2 * k
    assert labels.tolist() == [*batch["label"].tolist(), *batch["label"][idx].tolist() * 2]


def test_equal_contributions_are_naive_fusion() -> None:
    valuation = method_for("modality_valuation")
    naive = method_for("naive", fusion="lsum")
    valuation.contributions, valuation.resample = torch.tensor([0.5, 0.5]), resample_share(torch.tensor([0.5, 0.5]))
    batch = batches(valuation.cfg, 1)[0]
    for method in (valuation, naive):
        one_update(method, batch)
    assert_same_weights(valuation, naive)


@pytest.mark.parametrize(("params", "field"), [({"part_ratio": 0}, "part_ratio"), ({"part_ratio": 1.5}, "part_ratio"),
                                               ({"modulation_start": 5, "modulation_end": 2}, "modulation_end")])
def test_bad_params_are_refused(params: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(base={"dataset": {"name": "synthetic"}, "method": "modality_valuation", "method_params": params})
    assert str(err.value).startswith(f"method_params.{field}: ")
