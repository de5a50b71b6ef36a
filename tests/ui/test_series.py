"""ui.series: the incremental metrics cache and the views drawn from it (pure; no Streamlit, no network)."""

from __future__ import annotations

import csv
import io
from typing import Any

import pandas as pd
import pytest

from amst_core.vocab import vocabulary
from tests.kit.series import make, metrics_body
from ui import series as S
from ui.series import RunSeries
from ui.words import Words

WORDS = Words.of(vocabulary())  # what GET /vocabulary serves


class FakeClient:
    """Stands in for ApiClient: answers metrics() from a function of (since_epoch, call number)."""

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[tuple[str, int]] = []

    def metrics(self, run_id: str, since_epoch: int = -1, **only: str) -> dict[str, Any]:
        self.calls.append((run_id, since_epoch, only) if only else (run_id, since_epoch))
        return self.answer(since_epoch, len(self.calls))


# ---- merge and refresh --------------------------------------------------------------------------------------

def test_merge_of_two_incremental_answers():
    rs = RunSeries("r1")
    rs.merge(metrics_body(epochs_done=2, series=[("val", "fused", None, "acc", [0, 1], [0.5, 0.6]),
                                                 ("val", "branch", "audio", "acc", [0, 1], [0.4, None])]))
    assert rs.next_since == 1
    rs.merge(metrics_body(epochs_done=4, series=[("val", "fused", None, "acc", [2, 3], [0.7, 0.8]),
                                                 ("train", "run", "audio", "skip", [3], [0.0])]))
    assert rs.next_since == 3
    assert rs.series(("val", "fused", None, "acc")) == ([0, 1, 2, 3], [0.5, 0.6, 0.7, 0.8])
    assert rs.series(("val", "branch", "audio", "acc")) == ([0, 1], [0.4, None])
    assert rs.series(("train", "run", "audio", "skip")) == ([3], [0.0])
    assert rs.series(("test", "fused", None, "acc")) == ([], [])
    assert rs.run["epochs_done"] == 4
    assert rs.series_keys() == [("train", "run", "audio", "skip"), ("val", "branch", "audio", "acc"),
                                ("val", "fused", None, "acc")]
    assert rs.modalities() == ["audio"]
    assert rs.components(WORDS) == ["branch", "fused"]


def test_merge_never_moves_next_since_back():
    rs = RunSeries("r1")
    rs.merge(metrics_body(epochs_done=3, series=[("val", "fused", None, "acc", [0, 1, 2], [0.1, 0.2, 0.3])]))
    rs.merge(metrics_body(epochs_done=3, series=[], next_since=2))  # nothing new: the API echoes since_epoch
    assert rs.next_since == 2
    rs.merge(metrics_body(epochs_done=3, series=[], next_since=-1))  # an answer to since_epoch=-1 with nothing
    assert rs.next_since == 2
    assert rs.series(("val", "fused", None, "acc")) == ([0, 1, 2], [0.1, 0.2, 0.3])


def test_merge_overwrites_an_epoch_sent_again():
    rs = RunSeries("r1")
    rs.merge(metrics_body(epochs_done=2, series=[("val", "fused", None, "acc", [0, 1], [0.1, 0.2])]))
    rs.merge(metrics_body(epochs_done=2, series=[("val", "fused", None, "acc", [1], [0.25])]))
    assert rs.series(("val", "fused", None, "acc")) == ([0, 1], [0.1, 0.25])


def test_settled_means_terminal_and_complete():
    done = make(series=[("val", "fused", None, "acc", [0, 1, 2], [0.1, 0.2, 0.3])], status="succeeded")
    assert done.settled(WORDS.terminal) is True
    running = make(series=[("val", "fused", None, "acc", [0, 1, 2], [0.1, 0.2, 0.3])], status="running")
    assert running.settled(WORDS.terminal) is False
    incomplete = make(series=[("val", "fused", None, "acc", [0, 1], [0.1, 0.2])], status="failed", epochs_done=3)
    assert incomplete.settled(WORDS.terminal) is False
    never_started = make(series=[], status="cancelled", epochs_done=0)
    assert never_started.settled(WORDS.terminal) is True


def test_refresh_of_a_running_run_is_one_incremental_call():
    rs = make(series=[("val", "fused", None, "acc", [0, 1, 2], [0.1, 0.2, 0.3])], status="running")
    cache = {"r1": rs}
    client = FakeClient(lambda since, n: metrics_body(
        epochs_done=4, series=[("val", "fused", None, "acc", [3], [0.4])]))
    out = S.refresh(client, cache, "r1", WORDS)
    assert client.calls == [("r1", 2)]
    assert out is rs and cache["r1"] is rs
    assert out.series(("val", "fused", None, "acc")) == ([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])
    assert out.next_since == 3


def test_refresh_of_an_unknown_run_reads_it_from_the_start():
    client = FakeClient(lambda since, n: metrics_body(
        epochs_done=2, series=[("val", "fused", None, "acc", [0, 1], [0.1, 0.2])]))
    cache: dict[str, RunSeries] = {}
    out = S.refresh(client, cache, "r1", WORDS)
    assert client.calls == [("r1", -1)]
    assert cache == {"r1": out}
    assert out.series(("val", "fused", None, "acc")) == ([0, 1], [0.1, 0.2])


def test_refresh_of_a_settled_run_fetched_recently_makes_no_call():
    rs = make(series=[("val", "fused", None, "acc", [0, 1, 2], [0.1, 0.2, 0.3])], status="succeeded")
    client = FakeClient(lambda since, n: pytest.fail("a settled run was asked again"))
    assert S.refresh(client, {"r1": rs}, "r1", WORDS) is rs
    assert client.calls == []


def test_refresh_of_a_settled_run_asks_again_after_a_while():
    rs = make(series=[("val", "fused", None, "acc", [0, 1, 2], [0.1, 0.2, 0.3])], status="succeeded")
    rs.fetched_at -= S.SETTLED_RECHECK_S + 1
    client = FakeClient(lambda since, n: metrics_body(status="succeeded", epochs_done=3, series=[], next_since=2))
    S.refresh(client, {"r1": rs}, "r1", WORDS)
    assert client.calls == [("r1", 2)]


def test_refresh_rereads_everything_when_the_attempt_changes():
    rs = make(series=[("val", "fused", None, "acc", [0, 1, 2], [0.1, 0.2, 0.3])], status="running")

    def answer(since, n):
        if since == -1:
            return metrics_body(attempt=2, epochs_done=4, series=[("val", "fused", None, "acc", [0, 1, 2, 3],
                                                                  [0.1, 0.2, 0.35, 0.45])])
        return metrics_body(attempt=2, epochs_done=4, series=[("val", "fused", None, "acc", [3], [0.45])])

    client = FakeClient(answer)
    cache = {"r1": rs}
    out = S.refresh(client, cache, "r1", WORDS)
    assert client.calls == [("r1", 2), ("r1", -1)]
    assert out is not rs and cache["r1"] is out
    assert out.series(("val", "fused", None, "acc")) == ([0, 1, 2, 3], [0.1, 0.2, 0.35, 0.45])
    assert out.run["attempt"] == 2


def test_refresh_rereads_everything_when_epochs_done_goes_back():
    rs = make(series=[("val", "fused", None, "acc", [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4]),
                      ("val", "branch", "audio", "acc", [3], [0.9])], status="running")

    def answer(since, n):  # resumed from the checkpoint of epoch 1 (same attempt number)
        return metrics_body(epochs_done=2, series=[("val", "fused", None, "acc", [0, 1], [0.1, 0.2])],
                            next_since=max(since, 1))

    client = FakeClient(answer)
    out = S.refresh(client, {"r1": rs}, "r1", WORDS)
    assert client.calls == [("r1", 3), ("r1", -1)]
    assert out.series(("val", "fused", None, "acc")) == ([0, 1], [0.1, 0.2])
    assert ("val", "branch", "audio", "acc") not in out.points
    assert out.next_since == 1


# ---- smoothing and time -------------------------------------------------------------------------------------

def test_smooth_weight_zero_is_identity():
    values = [0.1, None, 0.5, 0.2]
    out = S.smooth(values, 0.0)
    assert out == [0.1, None, 0.5, 0.2]
    assert out is not values


def test_smooth_is_an_exact_ema():
    assert S.smooth([1.0, 2.0, 4.0], 0.5) == [1.0, 1.5, 2.75]
    out = S.smooth([0.0, 10.0, 10.0], 0.9)
    assert out[0] == 0.0
    assert out[1] == pytest.approx(1.0)
    assert out[2] == pytest.approx(1.9)


def test_smooth_keeps_gaps_and_carries_over_them():
    assert S.smooth([None, 2.0, None, 4.0, None], 0.5) == [None, 2.0, None, 3.0, None]
    assert S.smooth([None, None], 0.5) == [None, None]


def test_wall_clock_is_the_cumulative_epoch_time():
    rs = make(series=[("train", "run", None, "epoch_time", [0, 1, 2, 3], [2.0, 1.5, None, 0.25])])
    assert S.wall_clock(rs) == {0: 2.0, 1: 3.5, 2: 3.5, 3: 3.75}
    assert S.wall_clock(make(series=[("val", "fused", None, "acc", [0], [0.5])])) == {}


# ---- balance ------------------------------------------------------------------------------------------------

def test_balance_rows_lagging_and_gap():
    rs = make(series=[
        ("val", "branch", "audio", "acc", [0, 1, 2], [0.5, 0.7, 0.8]),
        ("val", "branch", "visual", "acc", [0, 1, 2], [0.3, 0.4, 0.45]),
        ("val", "helper", "audio", "acc", [0, 1, 2], [0.45, 0.6, 0.75]),
        ("val", "helper", "visual", "acc", [0, 1, 2], [0.2, 0.35, 0.5]),
        ("val", "branch", None, "acc_gap", [0, 1, 2], [0.2, 0.3, 0.35]),
        ("val", "helper", None, "acc_gap", [0, 1, 2], [0.25, 0.25, 0.25]),
        ("val", "run", "audio", "epochs_to_plateau", [0, 1, 2], [1, 2, 3]),
        ("val", "run", "visual", "epochs_to_plateau", [0, 1, 2], [1, 1, 1]),
        ("test", "branch", "audio", "acc", [0, 1, 2], [0.1, 0.1, 0.1]),
    ])
    b = S.balance(rs, WORDS, "val")
    assert b.split == "val"
    assert b.epoch == 2
    assert b.rows == [{"modality": "audio", "branch": 0.8, "helper": 0.75, "plateau": 3},
                      {"modality": "visual", "branch": 0.45, "helper": 0.5, "plateau": 1}]
    assert (b.helper_gap_epochs, b.helper_gap_values) == ([0, 1, 2], [0.25, 0.25, 0.25])
    assert b.lagging == "visual"
    assert b.leading == "audio"
    assert b.gap == pytest.approx(0.35)
    assert b.gap_epochs == [0, 1, 2]
    assert b.gap_values == [0.2, 0.3, 0.35]


def test_balance_uses_amst_full_components_when_plain_ones_are_absent():
    rs = make(series=[
        ("val", "alt_branch", "audio", "acc", [0, 1], [0.3, 0.4]),
        ("val", "alt_branch", "visual", "acc", [0, 1], [0.6, 0.7]),
        ("val", "alt_helper", "audio", "acc", [0, 1], [0.25, 0.35]),
        ("val", "joint_helper", "visual", "acc", [0, 1], [0.5, 0.55]),
        ("val", "alt_branch", None, "acc_gap", [0, 1], [0.3, 0.3]),
    ])
    b = S.balance(rs, WORDS)
    assert b.rows == [{"modality": "audio", "branch": 0.4, "helper": 0.35, "plateau": None},
                      {"modality": "visual", "branch": 0.7, "helper": 0.55, "plateau": None}]
    assert (b.lagging, b.leading) == ("audio", "visual")
    assert b.gap == pytest.approx(0.3)
    assert (b.gap_epochs, b.gap_values) == ([0, 1], [0.3, 0.3])


def test_balance_prefers_plain_branch_over_alt_branch():
    rs = make(series=[
        ("val", "branch", "audio", "acc", [0], [0.9]), ("val", "alt_branch", "audio", "acc", [0], [0.1]),
        ("val", "branch", "visual", "acc", [0], [0.2]), ("val", "alt_branch", "visual", "acc", [0], [0.95]),
    ])
    b = S.balance(rs, WORDS)
    assert [r["branch"] for r in b.rows] == [0.9, 0.2]
    assert b.lagging == "visual"


def test_balance_with_one_modality_or_nothing_has_no_lagging():
    one = S.balance(make(series=[("val", "branch", "audio", "acc", [0, 1], [0.4, 0.5])]), WORDS)
    assert one.rows == [{"modality": "audio", "branch": 0.5, "helper": None, "plateau": None}]
    assert (one.lagging, one.leading, one.gap, one.epoch) == (None, None, None, 1)
    empty = S.balance(make(series=[]), WORDS)
    assert empty.rows == [] and empty.epoch is None and empty.gap_epochs == [] and empty.gap_values == []


# ---- skip strip, tables, pairs ------------------------------------------------------------------------------

def test_skip_strip_grid():
    rs = make(series=[
        ("train", "run", "audio", "skip", [0, 1, 2, 3], [1.0, 0.0, 0.0, 1.0]),
        ("train", "run", "visual", "skip", [1, 2, 3], [1.0, 1.0, 1.0]),
        ("val", "branch", "text", "acc", [0], [0.3]),  # text has no skip series: no row
    ])
    modalities, epochs, grid = S.skip_strip(rs)
    assert modalities == ["audio", "visual"]
    assert epochs == [0, 1, 2, 3]
    assert grid == [[1.0, 0.0, 0.0, 1.0], [None, 1.0, 1.0, 1.0]]


def test_final_and_best_is_one_row_per_run_with_a_column_pair_per_modality_and_fused():
    a = make("a", series=[
        ("val", "fused", None, "acc", [0, 1, 2], [0.5, 0.9, 0.7]),
        ("val", "branch", "audio", "acc", [0, 1, 2], [0.2, None, 0.3]),
        ("val", "branch", "visual", "acc", [0, 1], [0.1, 0.15]),
        ("val", "helper", "audio", "acc", [0, 1, 2], [0.6, 0.6, 0.6]),   # other component
        ("test", "fused", None, "acc", [0, 1, 2], [0.4, 0.6, 0.65]),     # split not asked for
        ("val", "fused", None, "loss", [0, 1, 2], [1.0, 0.5, 0.8]),      # other metric
        ("train", "run", None, "epoch_time", [0], [1.0]),
    ])
    b = make("b", series=[("val", "fused", None, "acc", [0], [0.4]),
                          ("val", "alt_branch", "audio", "acc", [0], [0.35])])   # AMST-FULL's branch
    frame = S.final_and_best([a, b], {"a": "run A", "b": "run B"}, WORDS)
    assert list(frame.columns) == ["run", "epochs", "audio final", "audio best", "visual final", "visual best",
                                   "fused final", "fused best"]
    assert frame.to_dict("records")[0] == {"run": "run A", "epochs": 3, "audio final": 0.3, "audio best": 0.3,
                                           "visual final": 0.15, "visual best": 0.15, "fused final": 0.7,
                                           "fused best": 0.9}
    second = frame.to_dict("records")[1]
    assert second["audio final"] == 0.35 and second["epochs"] == 1 and pd.isna(second["visual final"])
    loss = S.final_and_best([a], {"a": "run A"}, WORDS, name="loss")
    assert loss.to_dict("records")[0]["fused final"] == 0.8 and loss.to_dict("records")[0]["fused best"] == 0.5


def test_final_and_best_of_nothing_is_an_empty_table():
    frame = S.final_and_best([], {}, WORDS)
    assert frame.empty and list(frame.columns) == ["run", "epochs", "fused final", "fused best"]


def test_uneven_lengths_warns_only_when_runs_differ():
    long = {"name": "long", "epochs_done": 30, "epochs_total": 30}
    short = {"name": "short", "epochs_done": 1, "epochs_total": 30}
    assert S.uneven_lengths([long, dict(long, name="other")]) is None
    assert S.uneven_lengths([long, short]) == ("These runs have different lengths (epochs done/planned): long 30/30, "
                                               "short 1/30.")


def test_best_of():
    assert S.best_of("acc", [0.1, None, 0.3, 0.2]) == 0.3
    assert S.best_of("loss", [0.5, None, 0.3, 0.4]) == 0.3
    assert S.best_of("acc", [None, None]) is None


def test_difference_over_common_finite_epochs():
    key = ("val", "fused", None, "acc")
    a = make("a", series=[(*key, [0, 1, 2, 3, 4], [0.5, 0.6, None, 0.8, 0.9])])
    b = make("b", series=[(*key, [1, 2, 3, 5], [0.5, 0.4, None, 0.1])])
    epochs, diff = S.difference(a, b, key, WORDS)
    assert epochs == [1]
    assert diff == [pytest.approx(0.1)]
    c = make("c", series=[(*key, [0, 3, 4], [0.25, 0.5, 1.0])])
    epochs, diff = S.difference(a, c, key, WORDS)
    assert epochs == [0, 3, 4]
    assert diff == [pytest.approx(0.25), pytest.approx(0.3), pytest.approx(-0.1)]
    assert S.difference(a, b, ("val", "branch", "audio", "acc"), WORDS) == ([], [])


def test_to_csv_header_and_rows():
    rs = make("run-9", series=[
        ("val", "fused", None, "acc", [0, 1], [0.5, None]),
        ("train", "run", "audio", "skip", [0, 1, 2], [1.0, 0.0, 1.0]),
    ])
    data = S.to_csv(rs)
    assert isinstance(data, bytes)
    rows = list(csv.reader(io.StringIO(data.decode())))
    assert rows[0] == ["run_id", "split", "component", "modality", "name", "epoch", "value"]
    assert len(rows) == 1 + 5
    assert all(row[0] == "run-9" for row in rows[1:])
    assert rows[1:] == [["run-9", "train", "run", "audio", "skip", "0", "1.0"],
                        ["run-9", "train", "run", "audio", "skip", "1", "0.0"],
                        ["run-9", "train", "run", "audio", "skip", "2", "1.0"],
                        ["run-9", "val", "fused", "", "acc", "0", "0.5"],
                        ["run-9", "val", "fused", "", "acc", "1", ""]]


def test_frame_of_an_empty_run_has_the_columns():
    frame = make(series=[]).frame()
    assert list(frame.columns) == S.COLUMNS and len(frame) == 0


def test_refresh_of_only_some_series_is_cached_apart_from_the_whole_run():
    body = metrics_body(epochs_done=3, series=[("val", "fused", None, "acc", [0, 1, 2], [0.1, 0.2, 0.3])])
    client, cache = FakeClient(lambda since, n: body), {}
    S.refresh(client, cache, "r1", WORDS, split="val", name="acc")
    S.refresh(client, cache, "r1", WORDS)
    S.refresh(client, cache, "r1", WORDS, name="acc", split="val")  # the same filter in another order: the same entry
    assert client.calls == [("r1", -1, {"split": "val", "name": "acc"}), ("r1", -1),
                            ("r1", 2, {"split": "val", "name": "acc"})]
    assert sorted(cache) == ["r1", "r1&name=acc&split=val"]


def test_automatic_skip_decisions_and_factors():
    rs = make(series=[
        ("train", "run", "audio", "skip_factor", [0, 1, 2, 3], [1.0, 1.0, 4.0, 4.0]),
        ("train", "run", "visual", "skip_factor", [0, 1, 2, 3], [1.0, 1.0, 1.0, 1.0]),
        ("train", "run", "audio", "skip_speed", [1], [0.2]),
        ("train", "run", "visual", "skip_speed", [1], [0.05]),
    ])
    assert S.skip_factors(rs)["audio"] == {0: 1.0, 1: 1.0, 2: 4.0, 3: 4.0}
    assert S.skip_decisions(rs) == [{"after epoch": 1, "audio speed": 0.2, "audio factor": 4.0,
                                     "visual speed": 0.05, "visual factor": 1.0}]
    assert S.skip_decisions(make(series=[])) == []


def test_runs_group_by_the_config_keys_that_differ():
    configs = {"a": S.flatten({"method": "naive", "seed": 0, "skip": {"audio": 1}, "tags": ["x"]}),
               "b": S.flatten({"method": "naive", "seed": 1, "skip": {"audio": 1}, "tags": []}),
               "c": S.flatten({"method": "amst_full", "seed": 0, "skip": {"audio": 3}, "tags": []})}
    assert configs["c"]["skip.audio"] == 3
    assert S.differing_keys(list(configs.values())) == ["method", "skip.audio"]  # seed and tags never group
    runs = [{"id": i} for i in configs]
    assert S.group_runs(runs, configs, ["method"]) == {"method=naive": ["a", "b"], "method=amst_full": ["c"]}


# ---- the words come from the API ------------------------------------------------------------------------------

def test_the_balance_gap_is_the_one_the_library_computed_not_recomputed():
    """amst_core.metrics.imbalance_points computes the gap and the API serves it: the page draws that value."""
    rs = make(series=[
        ("val", "branch", "audio", "acc", [0, 1], [0.5, 0.8]),
        ("val", "branch", "visual", "acc", [0, 1], [0.3, 0.4]),
        ("val", "branch", None, "acc_gap", [0, 1], [0.2, 0.375]),  # as served (0.4 if the page subtracted)
    ])
    b = S.balance(rs, WORDS)
    assert (b.lagging, b.leading) == ("visual", "audio") and b.gap == 0.375
    no_gap = S.balance(make(series=[("val", "branch", m, "acc", [0], [v]) for m, v in (("audio", 0.9),
                                                                                       ("visual", 0.2))]), WORDS)
    assert no_gap.lagging == "visual" and no_gap.gap is None  # none served: none shown, never made up


def test_a_status_the_library_adds_is_followed_without_a_dashboard_edit():
    served = vocabulary()
    served["statuses"] = {**served["statuses"], "terminal": [*served["statuses"]["terminal"], "expired"]}
    words = Words.of(served)
    rs = make(series=[("val", "fused", None, "acc", [0, 1], [0.5, 0.6])], status="expired", epochs_done=2)
    assert rs.settled(words.terminal) and not rs.settled(WORDS.terminal)


def test_components_are_predictions_only():
    """`lr` points name an optimizer's part (encoders, head, helpers) as their component: not a prediction."""
    rs = make(series=[("val", "fused", None, "acc", [0], [0.5]), ("train", "encoders", None, "lr", [0], [0.1]),
                      ("train", "head", None, "lr", [0], [0.1]), ("train", "run", "audio", "skip", [0], [1.0])])
    assert rs.components(WORDS) == ["fused"]


def test_compare_offers_every_family_present_and_mla_combinations():
    mla = make("m", series=[("val", "branch", "audio", "acc", [0], [0.5]), ("val", "fused", None, "acc", [0], [0.6]),
                            ("val", "combo:entropy", None, "acc", [0], [0.7]),
                            ("val", "combo:a30_v70", None, "acc", [0], [0.65])])
    full = make("f", series=[("val", "alt_branch", "audio", "acc", [0], [0.5]), ("val", "alt", None, "acc", [0], [0.5]),
                             ("val", "joint_helper", "audio", "acc", [0], [0.4])])
    pmr = make("p", series=[("val", "prototype", "audio", "acc", [0], [0.3])])
    assert S.compare_components([mla, full, pmr], WORDS) == [
        "branch", "helper", "alt_branch", "combo:a30_v70", "combo:entropy", "joint_helper", "prototype"]
    assert S.compare_components([], WORDS) == ["branch", "helper"]


def test_a_combination_takes_the_whole_models_panel():
    mla = make("m", series=[("val", "branch", "audio", "acc", [0, 1], [0.5, 0.55]),
                            ("val", "fused", None, "acc", [0, 1], [0.6, 0.62]),
                            ("val", "combo:entropy", None, "acc", [0, 1], [0.7, 0.69])])
    table = S.final_and_best([mla], {"m": "MLA"}, WORDS, component="combo:entropy")
    assert list(table.columns) == ["run", "epochs", "audio final", "audio best", "combo:entropy final",
                                   "combo:entropy best"]
    assert table.iloc[0]["combo:entropy final"] == 0.69 and table.iloc[0]["combo:entropy best"] == 0.7
    assert table.iloc[0]["audio final"] is None or pd.isna(table.iloc[0]["audio final"])  # no combo per modality
    assert list(S.final_and_best([mla], {"m": "MLA"}, WORDS).iloc[0][["fused final", "fused best"]]) == [0.62, 0.62]
    bands = S.group_bands([mla], {"all": ["m"]}, "val", "combo:entropy", "acc", WORDS)
    assert list(bands) == ["combo:entropy"] and bands["combo:entropy"]["all"].mean == [0.7, 0.69]


def test_words_of_the_served_vocabulary():
    assert WORDS.family("branch") == ("branch", "alt_branch", "joint_branch", "teacher_branch")
    assert WORDS.family("fused") == ("fused",) and WORDS.family("prototype") == ("prototype",)
    assert WORDS.families["fused"] == ("fused", "alt", "joint", "teacher")
    assert WORDS.judged_first() == ["val", "test", "train"] and WORDS.eval_splits[0] == "val"
    assert WORDS.is_combo("combo:entropy") and not WORDS.is_prediction("run") and WORDS.is_prediction("alt_helper")
    ogm = {"name": "ogm_ge", "series": [{"name": "ogm_coeff", "kind": "bounded", "per_modality": True,
                                         "description": "", "split": "train"}]}
    assert [s["name"] for s in WORDS.series_of(ogm)][-1] == "ogm_coeff" and WORDS.series_of(None)


def test_refresh_keeps_what_the_resumed_attempt_did_not_supersede():
    """The API says where the current attempt resumed (superseded_from, decided by the store): points before it
    stay, the rest is read again from there instead of from the start."""
    rs = make(series=[("val", "fused", None, "acc", [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4])], status="running")

    def answer(since, n):
        body = metrics_body(attempt=2, epochs_done=4, series=[("val", "fused", None, "acc", [2, 3][since - 1:],
                                                               [0.35, 0.45][since - 1:])])
        return {**body, "superseded_from": 2}

    client = FakeClient(answer)
    out = S.refresh(client, {"r1": rs}, "r1", WORDS)
    assert client.calls == [("r1", 3), ("r1", 1)]
    assert out.series(("val", "fused", None, "acc")) == ([0, 1, 2, 3], [0.1, 0.2, 0.35, 0.45])
    assert out.run["attempt"] == 2 and out.next_since == 3


# ---- issue 23: Compare's wall clock, coinciding runs, tests at improvements ----

def test_fetch_clock_reads_the_epoch_times_alone():
    """Finding 1: Compare fetches only the series it draws; the wall clock is one more filtered call."""
    client = FakeClient(lambda since, n: metrics_body("r1", "succeeded", 3, series=[
        ("train", "run", None, "epoch_time", [0, 1, 2], [40.0, 41.0, 39.5])]))
    assert S.fetch_clock(client, {}, "r1", WORDS) == {0: 40.0, 1: 81.0, 2: 120.5}
    assert client.calls == [("r1", -1, {"split": "train", "name": "epoch_time"})]


def test_coinciding_runs_are_grouped_by_label():
    """Finding 5: a run with the same values as another (same seed and config) is hidden under it."""
    curve = [("val", "branch", "audio", "acc", [0, 1], [0.4, 0.5]), ("val", "fused", None, "acc", [0, 1], [0.6, 0.7])]
    a, twin = make("a", curve), make("t", curve)
    other = make("o", [curve[0], ("val", "fused", None, "acc", [0, 1], [0.6, 0.71])])
    empty = make("e", [("train", "fused", None, "acc", [0], [0.1])])
    empty_too = make("e2", [("train", "fused", None, "acc", [0], [0.1])])
    labels = {"a": "A", "t": "T", "o": "O", "e": "E", "e2": "E2"}
    assert S.coinciding([a, other, twin, empty, empty_too], labels, WORDS, "val", "branch", "acc") == [["A", "T"]]
    assert S.coinciding([a, other], labels, WORDS, "val", "branch", "acc") == []


def test_evaluated_on_improvement_from_the_points():
    """Finding 11: the test split evaluated at fewer epochs than the run trained (only when val improved)."""
    rs = make("r", [("val", "fused", None, "acc", [0, 1, 2, 3], [0.5, 0.4, 0.6, 0.5]),
                    ("test", "fused", None, "acc", [0, 2], [0.45, 0.58])])
    assert S.evaluated_on_improvement(rs, "test", WORDS) and not S.evaluated_on_improvement(rs, "val", WORDS)
    assert not S.evaluated_on_improvement(rs, "train", WORDS)  # no points: nothing to say
    every = make("r", [("val", "fused", None, "acc", [0, 1], [0.5, 0.4]),
                       ("test", "fused", None, "acc", [0, 1], [0.45, 0.4])])  # test_every_epoch
    assert not S.evaluated_on_improvement(every, "test", WORDS)


def test_group_bands_place_each_group_at_its_runs_mean_wall_clock():
    """Finding 5: grouped curves keep the wall-time axis (each epoch at its runs' mean time)."""
    a = make("a", [("val", "fused", None, "acc", [0, 1], [0.5, 0.7])])
    b = make("b", [("val", "fused", None, "acc", [0, 1, 2], [0.6, 0.8, 0.9])])
    bands = S.group_bands([a, b], {"g": ["a", "b"]}, "val", "fused", "acc", WORDS,
                          clocks={"a": {0: 10.0, 1: 20.0}, "b": {0: 30.0, 1: 60.0, 2: 90.0}})
    assert bands["fused"]["g"].seconds == [20.0, 40.0, 90.0]
    assert S.group_bands([a, b], {"g": ["a", "b"]}, "val", "fused", "acc", WORDS)["fused"]["g"].seconds == []
