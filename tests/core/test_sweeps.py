"""Sweeps as a library: grid expansion and validation, the results matrix, paired tests, table exports."""

from __future__ import annotations

import csv
import io
import math
import re
from types import SimpleNamespace

import pytest

from amst_core.sweeps import (
    MIN_PAIRS,
    RunResult,
    SweepError,
    expand,
    is_amst,
    matrix,
    modality_measures,
    pair_baselines,
    paired_by,
    paired_test,
    table,
    to_csv,
    to_latex,
    to_markdown,
)

BASE = {"dataset": {"name": "synthetic"}, "method": "amst_full", "epochs": 2, "device": "cpu"}


def test_a_grid_expands_to_one_validated_config_per_combination() -> None:
    runs = expand(BASE, {"method": ["amst_alt", "amst_full"], "skip.audio": [1, 3], "seed": [0, 1]})
    assert len(runs) == 8
    assert [r.cell for r in runs[:2]] == [{"method": "amst_alt", "skip.audio": 1, "seed": 0},
                                          {"method": "amst_alt", "skip.audio": 1, "seed": 1}]
    last = runs[-1].config
    assert (last.method, last.skip.audio, last.seed, last.epochs) == ("amst_full", 3, 1, 2)


def test_auto_among_skip_factors_means_skip_auto() -> None:
    runs = expand(BASE, {"skip.audio": [2, "auto"]})
    assert [r.cell["skip.audio"] for r in runs] == [2, "auto"]
    assert runs[0].config.skip.auto is None and runs[1].config.skip.auto is not None


def test_skip_keys_do_not_multiply_a_method_that_does_not_skip() -> None:
    runs = expand(BASE, {"method": ["naive", "amst_full"], "skip.audio": [1, 2, 5], "seed": [0, 1]})
    naive = [r for r in runs if r.cell["method"] == "naive"]
    assert [r.cell for r in naive] == [{"method": "naive", "skip.audio": "-", "seed": s} for s in (0, 1)]
    assert all(r.config.skip.audio == 1 for r in naive) and len(runs) == 2 + 3 * 2
    with_auto = expand(BASE, {"method": ["naive", "amst_alt"], "skip.audio": [3, "auto"]})
    assert [r.cell for r in with_auto] == [{"method": "naive", "skip.audio": "-"},
                                           {"method": "amst_alt", "skip.audio": 3},
                                           {"method": "amst_alt", "skip.audio": "auto"}]


@pytest.mark.parametrize(("grid", "field", "cell"), [
    ({"method": ["naive", "amst_full"], "skip.audio": [1, 0]}, "skip.audio", "method=amst_full, skip.audio=0"),
    ({"optim.lr": [0.1, -1]}, "optim.lr", "optim.lr=-1"),
    ({"epochs": [1], "nonsense.field": [1]}, "nonsense", "nonsense.field=1"),
    ({"method": ["amst_full", "no_such"]}, "method", "method=no_such"),
])
def test_an_invalid_combination_names_its_cell_and_field(grid: dict, field: str, cell: str) -> None:
    with pytest.raises(SweepError) as err:
        expand(BASE, grid)
    assert err.value.field == field and cell in str(err.value), str(err.value)


@pytest.mark.parametrize("grid", [{}, {"seed": []}, {"seed": 3}, {"seed": [1, 1]}, {"": [1]}, {"a..b": [1]}])
def test_a_malformed_grid_is_refused(grid: dict) -> None:
    with pytest.raises(SweepError):
        expand(BASE, grid)


def test_the_paired_tests_match_scipy_and_hand_computation() -> None:
    from scipy import stats

    a = [0.91, 0.93, 0.90, 0.95, 0.92, 0.94]
    b = [0.88, 0.90, 0.89, 0.91, 0.90, 0.90]
    t_p, w_p = paired_test(a, b)
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean, sd = sum(d) / len(d), math.sqrt(sum((x - sum(d) / len(d)) ** 2 for x in d) / (len(d) - 1))
    t = mean / (sd / math.sqrt(len(d)))
    assert t_p == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1), rel=1e-9)
    assert t_p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-12)
    assert w_p == pytest.approx(2 / 2**6)  # every difference positive: the exact two-sided p is 2 / 2^n
    assert paired_test([0.5, 0.6], [0.5, 0.6]) == (None, None)  # nothing differs: no test
    assert paired_test([0.5], [0.4]) == (None, None)


def results() -> list[RunResult]:
    values = {("naive", 0): 0.80, ("naive", 1): 0.82, ("naive", 2): 0.81,
              ("amst_full", 0): 0.86, ("amst_full", 1): 0.85, ("amst_full", 2): 0.88}
    return [RunResult({"method": m, "seed": s}, {"best_val_acc": v, "test_acc_at_best": v - 0.01,
                                                 "helper:audio": 0.7 + s / 100})
            for (m, s), v in values.items()]


def test_the_matrix_has_mean_std_count_and_paired_differences() -> None:
    rows = matrix(results(), baseline={"method": "naive"})
    assert [r.cell for r in rows] == [{"method": "naive"}, {"method": "amst_full"}]
    full = rows[1].stats["best_val_acc"]
    assert full.mean == pytest.approx(0.8633333333) and full.std == pytest.approx(0.0152752523) and full.count == 3
    assert rows[1].stats["helper:audio"].mean == pytest.approx(0.71)
    paired = rows[1].paired["best_val_acc"]
    assert paired.seeds == [0, 1, 2] and paired.differences == pytest.approx([0.06, 0.03, 0.07])
    assert paired.mean == pytest.approx(0.0533333333) and not paired.meaningful and MIN_PAIRS > 3
    assert rows[0].paired == {}
    with pytest.raises(SweepError, match="baseline"):
        matrix(results(), baseline={"method": "mla"})


def parse_number(text: str) -> float | None:
    text = text.rstrip("*")
    return None if text == "-" else float(text)


def test_the_exports_parse_back_into_the_same_numbers() -> None:
    header, body = table(matrix(results(), baseline={"method": "naive"}))
    assert header[:4] == ["method", "best_val_acc mean", "best_val_acc std", "best_val_acc n"]
    back_csv = list(csv.reader(io.StringIO(to_csv(header, body))))
    assert back_csv == [header, *body]
    md_lines = to_markdown(header, body).splitlines()
    back_md = [[c.strip() for c in line.strip("|").split(" | ")] for line in md_lines if not line.startswith("|-")]
    assert back_md == [header, *body]
    tex = to_latex(header, body)
    rows = [line.removesuffix(r" \\") for line in tex.splitlines() if line.endswith(r" \\")]
    back_tex = [[re.sub(r"\\(.)", r"\1", c.strip()) for c in row.split(" & ")] for row in rows]
    assert back_tex == [header, *body]
    assert tex.startswith("\\begin{tabular}{l") and "\\_" in tex  # underscores escaped
    numbers = [[parse_number(c) for c in row[1:]] for row in body]
    assert numbers[1][0] == pytest.approx(0.8633, abs=1e-4) and numbers[0][-1] is None


def test_modality_measures_come_from_the_summary_at_the_best_epoch() -> None:
    assert modality_measures({"alt_helper": {"audio": 0.7, "visual": 0.5}, "alt_branch": {"audio": 0.6},
                              "joint_branch": {"audio": 0.1}}) == {
        "helper:audio": 0.7, "helper:visual": 0.5, "branch:audio": 0.6}
    assert modality_measures(None) == {}


def test_grid_values_may_be_lists_and_mappings() -> None:
    runs = expand(BASE, {"skip": [{"audio": 2}, "auto"], "seed": [0, 1]})
    assert [r.config.skip.audio for r in runs] == [2, 2, 1, 1] and runs[2].config.skip.auto is not None
    rows = matrix([RunResult(r.cell, {"best_val_acc": 0.5, "test_acc_at_best": 0.5}) for r in runs],
                  baseline={"skip": "auto"})
    assert [r.cell for r in rows] == [{"skip": '{"audio": 2}'}, {"skip": "auto"}] and rows[0].paired
    with pytest.raises(SweepError, match="Extra inputs"):  # any JSON in a grid: refused with words, no crash
        expand(BASE, {"b": [[], [None], [{"x": 1}, {}]]})


def test_junk_in_a_grid_is_an_error_naming_the_cell() -> None:
    with pytest.raises(SweepError) as err:
        expand(BASE, {"b": [[], "x"]})
    assert "cell b=[]" in str(err.value)


def r(run_id: str, method: str, dataset: str = "synthetic", seed: int = 0, status: str = "succeeded"
      ) -> SimpleNamespace:
    return SimpleNamespace(id=run_id, method=method, dataset=dataset, seed=seed, status=status)


# AMST against a baseline (Compare, through GET /pairs)

def test_pair_baselines_prefers_a_selected_baseline():
    amst, selected, other = r("a", "amst_alt"), r("n1", "naive", status="failed"), r("n2", "naive")
    pairs = pair_baselines([amst, selected], [other, selected])
    assert pairs == [(amst, selected)]


def test_pair_baselines_prefers_succeeded_candidates_newest_first():
    amst = r("a", "amst_full", seed=3)
    candidates = [r("n0", "naive", seed=3, status="failed"), r("n1", "naive", seed=3),
                  r("n2", "naive", seed=3), r("x", "amst_alt", seed=3)]
    assert pair_baselines([amst], candidates) == [(amst, candidates[1])]
    only_failed = [r("n0", "naive", seed=3, status="failed"), r("n1", "naive", seed=3, status="running")]
    assert pair_baselines([amst], only_failed) == [(amst, only_failed[0])]


def test_pair_baselines_matches_dataset_and_seed():
    a0, a1, a2 = r("a0", "amst_alt", seed=0), r("a1", "amst_joint", seed=1), r("a2", "amst_alt", dataset="avdigits")
    n_seed0, n_other_ds = r("n0", "naive", seed=0), r("n9", "naive", seed=1, dataset="avdigits")
    pairs = pair_baselines([a0, a1, a2], [n_other_ds, n_seed0])
    assert pairs == [(a0, n_seed0)]


def test_pair_baselines_none_without_a_naive_match():
    assert pair_baselines([r("a", "amst_alt")], [r("b", "amst_joint"), r("n", "naive", seed=7)]) == []
    assert pair_baselines([r("n", "naive")], [r("n2", "naive")]) == []  # a baseline gets no baseline


def test_pair_baselines_with_any_baseline_method():
    amst = r("a", "amst_full", seed=1)
    runs = [r("n", "naive", seed=1), r("o", "ogm_ge", seed=1), r("m", "mla", seed=1)]
    assert pair_baselines([amst], runs, "ogm_ge") == [(amst, runs[1])]
    assert pair_baselines([amst], runs, "mla") == [(amst, runs[2])]
    assert pair_baselines([amst], runs, "pmr") == []


def test_an_amst_method_is_one_that_skips() -> None:
    from amst_core.catalog import METHODS

    assert {m for m in METHODS if is_amst(m)} == {m for m, info in METHODS.items() if info.uses_skip}
    assert not is_amst("no_such_method")


def test_paired_by_takes_the_first_baseline_of_each_key() -> None:
    items, baselines = [(1, "a"), (2, "b"), (3, "c")], [(2, "x"), (1, "y"), (2, "z")]
    assert paired_by(items, baselines, lambda t: t[0]) == [((1, "a"), (1, "y")), ((2, "b"), (2, "x"))]
