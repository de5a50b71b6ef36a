"""Model selection, decided in one place (amst_core.selection): the reference's rule, and more than one
selected prediction for a method that has them (MLA's combinations)."""

from __future__ import annotations

from amst_core.metrics import MetricPoint
from amst_core.selection import ModelSelection, selected


def epoch(e: int, val: float, test: float | None = None, **more: float) -> list[MetricPoint]:
    points = [MetricPoint("val", "fused", None, "acc", e, val), MetricPoint("val", "branch", "audio", "acc", e, 0.1)]
    if test is not None:
        points += [MetricPoint("test", "fused", None, "acc", e, test), MetricPoint("test", "branch", "audio", "acc",
                                                                                  e, test / 2)]
    points += [MetricPoint("val", component, None, "acc", e, v) for component, v in more.items()]
    return points


def test_only_a_strictly_greater_val_accuracy_improves() -> None:
    sel = ModelSelection()
    history = [(0.5, 0.40), (0.5, 0.45), (0.6, 0.55), (0.6, 0.65), (0.4, 0.9)]
    improved = []
    for e, (val, test) in enumerate(history):
        improved.append(sel.improves(epoch(e, val)))
        sel.update(e, epoch(e, val, test))
    assert improved == [True, False, True, False, False]
    assert (sel.best.epoch, sel.best.val_acc, sel.best.test_acc) == (2, 0.6, 0.55), "ties keep the first"
    assert sel.best.test_modalities == {"branch": {"audio": 0.275}}
    assert selected(sel.update(5, [MetricPoint("train", "fused", None, "loss", 5, 0.1)])) == {
        "best_epoch": 2.0, "best_val_acc": 0.6, "test_acc_at_best": 0.55}, "an epoch without val keeps the best"


def test_each_selected_prediction_has_its_own_best() -> None:
    sel = ModelSelection(["combo:a30_v70"])
    combo_test = MetricPoint("test", "combo:a30_v70", None, "acc", 0, 0.66)
    sel.update(0, [*epoch(0, 0.5, 0.5, **{"combo:a30_v70": 0.7}), combo_test])
    sel.update(1, epoch(1, 0.6, 0.55, **{"combo:a30_v70": 0.65}))
    assert sel.best.epoch == 1
    assert sel.summary() == {"combo:a30_v70": {"best_epoch": 0, "best_val_acc": 0.7, "test_acc_at_best": 0.66}}
    names = {p.name: p.value for p in sel.points(1)}
    assert names["best_epoch@combo:a30_v70"] == 0 and names["best_epoch"] == 1
    restored = ModelSelection(["combo:a30_v70"])
    restored.load_state_dict(sel.state_dict())
    assert restored.summary() == sel.summary() and restored.best == sel.best
