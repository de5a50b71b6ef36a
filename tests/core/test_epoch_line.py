"""The per-epoch line of the console and the run's log (amst_core.sinks.epoch_line): what the Run page's worker
output shows, so short and complete: the fused numbers and each modality's validation branch accuracy."""

from __future__ import annotations

from amst_core.metrics import MetricPoint
from amst_core.sinks import epoch_line


def test_the_epoch_line_names_each_modalitys_val_accuracy_next_to_the_fused_one() -> None:
    points = [MetricPoint("train", "fused", None, "loss", 2, 1.23), MetricPoint("val", "fused", None, "acc", 2, 0.61),
              MetricPoint("val", "alt_branch", "audio", "acc", 2, 0.55),  # AMST-FULL's two modules: the better one
              MetricPoint("val", "joint_branch", "audio", "acc", 2, 0.50),
              MetricPoint("val", "branch", "visual", "acc", 2, 0.40),
              MetricPoint("val", "helper", "visual", "acc", 2, 0.90),  # a probe is not the branch
              MetricPoint("train", "branch", "visual", "acc", 2, 0.99),  # nor is another split
              MetricPoint("test", "fused", None, "acc", 2, 0.60),
              MetricPoint("train", "run", None, "epoch_time", 2, 12.31)]
    assert epoch_line(points, 2, 8) == ("epoch 3/8  train loss 1.230  val acc 0.610 (audio 0.550 · visual 0.400)  "
                                        "test acc 0.600  12.3 s")


def test_a_run_without_branches_keeps_the_fused_numbers_only() -> None:
    points = [MetricPoint("val", "fused", None, "acc", 0, 0.625), MetricPoint("val", "fused", None, "loss", 0, 0.9)]
    assert epoch_line(points, 0, 2) == "epoch 1/2  val acc 0.625 loss 0.900"
