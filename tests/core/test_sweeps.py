"""Sweeps as a library: grid expansion and validation, the results matrix, paired tests, table exports."""

from __future__ import annotations

import csv
import io
import math
from types import SimpleNamespace

import pytest

from amst_core.sweeps import (
    MIN_PAIRS,
    RunResult,
    SweepError,
    compact_table,
    expand,
    is_amst,
    matrix,
    modality_measures,
    numeric_table,
    pair_baselines,
    paired_by,
    paired_test,
    render_table,
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


def test_method_all_is_every_registered_method_that_trains_the_base() -> None:
    """One call sweeps the field: `method: [all]` (or "all") is every method in the registry, each with its own
    defaults; the base's parameters stay with the base's method; a method that needs more is left out."""
    from amst_core.catalog import METHODS

    base = {**BASE, "method": "ogm_ge", "method_params": {"alpha": 0.3}, "fusion": "concat"}
    runs = expand(base, {"method": ["all"], "seed": [0, 1]})
    methods = [r.cell["method"] for r in runs[::2]]
    assert methods == [m for m in METHODS if m != "unimodal"]  # unimodal needs method_params.modality
    by_method = {r.config.method: r.config for r in runs}
    assert by_method["ogm_ge"].params.alpha == 0.3 and by_method["ogm_ge"].fusion_head == "concat"
    assert by_method["pmr"].fusion_head == "lsum"  # its own default, not the base's concat
    three = {**BASE, "dataset": {"name": "synthetic", "synthetic": {"modalities": ["audio", "text", "visual"]}}}
    assert "pmr" not in {r.config.method for r in expand(three, {"method": "all"})}  # two modalities only


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


def test_the_compact_table_is_mean_plus_minus_std_with_the_best_of_each_column_bold() -> None:
    from scipy import stats

    header, body = compact_table(matrix(results(), baseline={"method": "naive"}))
    assert header == ["method", "n", "val acc", "test acc", "helper audio", "Δ val acc", "p (val acc)",
                      "Δ test acc", "p (test acc)"]
    text = [[c.text for c in row] for row in body]
    # naive 0.80 0.82 0.81: mean 0.810, sample std 0.010; amst_full 0.86 0.85 0.88: 0.8633, std 0.01528
    assert text[0][:5] == ["naive", "3", "0.810 ± 0.010", "0.800 ± 0.010", "0.710 ± 0.010"]
    assert text[1][:5] == ["amst_full", "3", "0.863 ± 0.015", "0.853 ± 0.015", "0.710 ± 0.010"]
    p = stats.ttest_rel([0.86, 0.85, 0.88], [0.80, 0.82, 0.81]).pvalue
    assert text[1][5:7] == ["+0.053", f"{p:.3f}†"]  # 3 pairs: too few seeds to trust the p-value
    assert text[0][5:] == ["baseline", "-", "baseline", "-"]
    bold = [[c.bold for c in row[2:5]] for row in body]
    assert bold == [[False, False, True], [True, True, True]]  # helper audio: a tie to 3 decimals, both bold


def test_the_numeric_csv_holds_numbers_and_says_significance_in_its_own_column() -> None:
    text = render_table(matrix(results(), baseline={"method": "naive"}), "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["method"] for r in rows] == ["naive", "amst_full"]
    full = rows[1]
    assert float(full["best_val_acc mean"]) == pytest.approx(0.8633333333)
    assert float(full["best_val_acc std"]) == pytest.approx(0.0152752523) and int(full["best_val_acc n"]) == 3
    assert float(full["best_val_acc diff"]) == pytest.approx(0.0533333333) and int(full["best_val_acc pairs"]) == 3
    assert 0 < float(full["best_val_acc t p"]) < 1 and 0 < float(full["best_val_acc wilcoxon p"]) <= 1
    assert full["best_val_acc significance"] == "too few seeds"
    assert rows[0]["best_val_acc significance"] == "baseline" and rows[0]["best_val_acc diff"] == ""
    numbers = [c for r in rows for k, c in r.items() if k != "method" and not k.endswith("significance") and c]
    assert all(math.isfinite(float(c)) for c in numbers)  # every other cell a number, or empty where none
    header, body = numeric_table(matrix(results()))
    assert "best_val_acc diff" not in header  # no baseline: no paired columns
    assert body[0][:4] == ["naive", pytest.approx(0.81), pytest.approx(0.01), 3]


def test_enough_seeds_say_significant_or_not() -> None:
    gains = [0.05, 0.06, 0.04, 0.05, 0.07]
    runs = [RunResult({"method": m, "seed": s}, {"best_val_acc": 0.8 + (g if m == "amst_full" else 0) + s / 100,
                                                 "test_acc_at_best": 0.7 + s / 100})
            for m in ("naive", "amst_full") for s, g in enumerate(gains)]
    rows = list(csv.DictReader(io.StringIO(render_table(matrix(runs, {"method": "naive"}), "csv"))))
    assert rows[1]["best_val_acc significance"] == "significant"
    assert rows[1]["best_val_acc diff"] == "0.054"  # what the measure holds, not 0.054000000000000006
    assert rows[1]["test_acc_at_best significance"] == "not significant"  # every difference zero: no test
    markdown = render_table(matrix(runs, {"method": "naive"}), "markdown")
    assert "†" not in markdown  # five pairs: no mark, and no note about one
    assert "| +0.054 | <0.001 |" in markdown  # a '<' before a number opens no HTML tag: left as written


def test_markdown_and_latex_hold_the_same_compact_table() -> None:
    rows = matrix(results(), baseline={"method": "naive"})
    markdown = render_table(rows, "markdown")
    lines = markdown.splitlines()
    assert lines[0] == ("| method | n | val acc | test acc | helper audio | Δ val acc | p (val acc) | Δ test acc | "
                        "p (test acc) |")
    assert lines[3].startswith("| amst_full | 3 | **0.863 ± 0.015** | **0.853 ± 0.015** | **0.710 ± 0.010** | +0.053 |")
    assert "† fewer than 5 paired seeds" in markdown and "baseline cell (method=naive)" in markdown
    assert render_table(rows, "md") == markdown
    latex = render_table(rows, "latex")
    assert render_table(rows, "tex") == latex
    body = [line for line in latex.splitlines() if line.endswith(r" \\")]
    assert body[0].startswith(r"method & n & val acc & test acc & helper audio & $\Delta$ val acc")
    assert body[2].startswith(r"amst\_full & 3 & \textbf{0.863 $\pm$ 0.015} & \textbf{0.853 $\pm$ 0.015}")
    assert r"$^\dagger$" in body[2] and "\\begin{tabular}{lrrrrrrrr}" in latex and "\\toprule" in latex
    assert latex.startswith("% Mean ± standard deviation")  # the notes, as comments for the caption


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
