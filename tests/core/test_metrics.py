"""ClassificationMeter, EpochMeters and imbalance points against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from amst_core.metrics import ClassificationMeter, EpochMeters, MetricPoint, imbalance_points

CPU = torch.device("cpu")

# Three batches of different sizes (4, 2, 1); (label, prediction) pairs:
# (0,0) (1,1) (1,2) (0,1) | (2,2) (2,0) | (1,1)  -> 4 of 7 correct.
BATCHES = [
    ([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.0]], [0, 1, 1, 0]),
    ([[0.0, 0.0, 1.0], [3.0, 0.0, 0.0]], [2, 2]),
    ([[0.0, 5.0, 0.0]], [1]),
]


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def ce(row: list[float], label: int) -> float:
    return -math.log(softmax(row)[label])


def pad(row: list[float], classes: int) -> list[float]:
    return row + [-1e9] * (classes - len(row))  # an extra class that is never predicted and has ~0 probability


def fill(meter: ClassificationMeter, classes: int = 3) -> None:
    for rows, labels in BATCHES:
        meter.update(torch.tensor([pad(r, classes) for r in rows]), torch.tensor(labels))


def test_accuracy_rounded_to_four_places():
    meter = ClassificationMeter(3, CPU)
    fill(meter)
    assert meter.compute()["acc"] == 0.5714  # 4/7 = 0.571428...


def test_loss_is_mean_of_batch_means():
    meter = ClassificationMeter(3, CPU)
    fill(meter)
    batch_means = [sum(ce(r, y) for r, y in zip(rows, labels, strict=True)) / len(rows) for rows, labels in BATCHES]
    expected = sum(batch_means) / len(batch_means)
    sample_weighted = sum(ce(r, y) for rows, labels in BATCHES for r, y in zip(rows, labels, strict=True)) / 7
    assert abs(expected - sample_weighted) > 0.05  # the data tell the two definitions apart
    assert meter.compute()["loss"] == pytest.approx(expected, rel=1e-6)


def test_acc_prob_per_true_class_over_all_classes():
    meter = ClassificationMeter(3, CPU)
    fill(meter)
    # correct samples: class 0 -> [2,0,0]; class 1 -> [0,1,0] and [0,5,0]; class 2 -> [0,0,1]
    p0 = max(softmax([2, 0, 0]))
    p1 = (max(softmax([0, 1, 0])) + max(softmax([0, 5, 0]))) / 2
    p2 = max(softmax([0, 0, 1]))
    assert meter.compute()["acc_prob"] == pytest.approx((p0 + p1 + p2) / 3, rel=1e-6)


def test_acc_prob_counts_classes_without_correct_samples_as_zero():
    # Four classes; class 3 never occurs and is never predicted: it adds a 0 and still counts in the mean.
    meter = ClassificationMeter(4, CPU)
    fill(meter, classes=4)
    p0 = max(softmax([2, 0, 0]))
    p1 = (max(softmax([0, 1, 0])) + max(softmax([0, 5, 0]))) / 2
    p2 = max(softmax([0, 0, 1]))
    assert meter.compute()["acc_prob"] == pytest.approx((p0 + p1 + p2 + 0.0) / 4, rel=1e-6)


def test_acc_prob_wrong_predictions_do_not_count():
    meter = ClassificationMeter(2, CPU)
    # class 0: one correct (conf p), one wrong; class 1: only wrong predictions -> 0
    meter.update(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]), torch.tensor([0, 0, 1]))
    p = max(softmax([1, 0]))
    out = meter.compute()
    assert out["acc_prob"] == pytest.approx((p + 0.0) / 2, rel=1e-6)
    assert out["acc"] == 0.3333


def test_macro_f1_against_hand_computation():
    meter = ClassificationMeter(3, CPU)
    fill(meter)
    # class 0: tp 1, 2 labels, 2 predictions -> 0.5; class 1: tp 2, 3 labels, 3 predictions -> 2/3;
    # class 2: tp 1, 2 labels, 2 predictions -> 0.5
    assert meter.compute()["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3, rel=1e-6)


def test_macro_f1_ignores_classes_absent_from_labels_and_predictions():
    meter = ClassificationMeter(4, CPU)
    fill(meter, classes=4)
    assert meter.compute()["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3, rel=1e-6)


def test_macro_f1_counts_a_class_only_predicted():
    meter = ClassificationMeter(3, CPU)
    # labels {0, 1}; class 2 is predicted once (wrongly) so it counts with F1 0.
    meter.update(torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]]), torch.tensor([0, 1, 1]))
    # class 0: f1 1; class 1: tp 1, 2 labels, 1 prediction -> 2/3; class 2: 0
    assert meter.compute()["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3, rel=1e-6)


def test_perfect_predictions():
    meter = ClassificationMeter(3, CPU)
    logits = torch.eye(3) * 20
    meter.update(logits, torch.arange(3))
    out = meter.compute()
    assert out["acc"] == 1.0
    assert out["macro_f1"] == pytest.approx(1.0)
    assert out["acc_prob"] == pytest.approx(1.0, abs=1e-6)
    assert out["loss"] == pytest.approx(0.0, abs=1e-6)


def test_empty_meter():
    out = ClassificationMeter(3, CPU).compute()
    assert math.isnan(out["loss"])
    assert out["acc"] == 0.0
    assert out["macro_f1"] == 0.0


def test_half_precision_logits_accepted():
    meter = ClassificationMeter(3, CPU)
    fill(meter)
    other = ClassificationMeter(3, CPU)
    for rows, labels in BATCHES:
        other.update(torch.tensor(rows, dtype=torch.bfloat16), torch.tensor(labels))
    assert other.compute()["acc"] == meter.compute()["acc"]


# ---- EpochMeters -----------------------------------------------------------------------------------------------


KEYS = [("fused", None), ("branch", "audio"), ("branch", "visual"), ("helper", "audio"), ("helper", "visual")]


def test_epoch_meters_one_point_per_component_modality_name():
    meters = EpochMeters(3, CPU)
    for rows, labels in BATCHES:
        logits = torch.tensor(rows)
        outputs = {key: logits * (i + 1) for i, key in enumerate(KEYS)}
        meters.update(outputs, torch.tensor(labels))
    points = meters.points("val", epoch=4)
    assert len(points) == len(KEYS) * 4
    ids = {(p.component, p.modality, p.name) for p in points}
    assert len(ids) == len(points)
    assert ids == {(c, m, n) for c, m in KEYS for n in ("loss", "acc", "acc_prob", "macro_f1")}
    assert all(p.split == "val" and p.epoch == 4 for p in points)
    assert all(isinstance(p, MetricPoint) for p in points)
    # Each key's values are those of a meter fed with the same logits.
    ref = ClassificationMeter(3, CPU)
    for rows, labels in BATCHES:
        ref.update(torch.tensor(rows) * 2, torch.tensor(labels))  # index 1 = ("branch", "audio")
    values = {p.name: p.value for p in points if (p.component, p.modality) == ("branch", "audio")}
    assert values == pytest.approx(ref.compute())


def test_epoch_meters_keys_are_separate():
    meters = EpochMeters(2, CPU)
    labels = torch.tensor([0, 1])
    meters.update({("branch", "audio"): torch.tensor([[5.0, 0.0], [0.0, 5.0]]),
                   ("branch", "visual"): torch.tensor([[0.0, 5.0], [5.0, 0.0]])}, labels)
    acc = {p.modality: p.value for p in meters.points("train", 0) if p.name == "acc"}
    assert acc == {"audio": 1.0, "visual": 0.0}


def test_metric_point_dict_has_the_design_fields():
    p = MetricPoint("val", "branch", "audio", "acc", 3, 0.5, step=10, run_id="r", attempt=2)
    d = p.to_dict()
    assert set(d) == {"run_id", "attempt", "split", "component", "modality", "name", "epoch", "step", "value",
                      "recorded_at"}
    assert p.series == ("val", "branch", "audio", "acc")


# ---- imbalance ---------------------------------------------------------------------------------------------------


def test_imbalance_strongest_minus_weakest_per_component():
    points = [
        MetricPoint("val", "fused", None, "acc", 1, 0.9),
        MetricPoint("val", "branch", "audio", "acc", 1, 0.8),
        MetricPoint("val", "branch", "visual", "acc", 1, 0.5),
        MetricPoint("val", "branch", "text", "acc", 1, 0.65),
        MetricPoint("val", "branch", "audio", "loss", 1, 9.0),      # not an accuracy
        MetricPoint("val", "helper", "audio", "acc", 1, 0.7),
        MetricPoint("val", "helper", "visual", "acc", 1, 0.75),
        MetricPoint("val", "alt_helper", "audio", "acc", 1, 0.7),   # one modality only: no gap
        MetricPoint("test", "branch", "audio", "acc", 1, 0.1),      # other split
        MetricPoint("test", "branch", "visual", "acc", 1, 0.95),
    ]
    gaps = imbalance_points(points, "val", 1)
    assert {p.component: p.value for p in gaps} == pytest.approx({"branch": 0.3, "helper": 0.05})
    assert all(p.name == "acc_gap" and p.modality is None and p.split == "val" and p.epoch == 1 for p in gaps)
    test_gaps = imbalance_points(points, "test", 1)
    assert [(p.component, p.split) for p in test_gaps] == [("branch", "test")]
    assert test_gaps[0].value == pytest.approx(0.85)


def test_imbalance_empty_without_modalities():
    assert imbalance_points([MetricPoint("val", "fused", None, "acc", 0, 0.5)], "val", 0) == []
