"""ui.charts: the figures' traces, colours, widths and axes (built from hand-made metrics; nothing rendered)."""

from __future__ import annotations

from typing import Any

import pytest

from amst_core.vocab import vocabulary
from ui import charts
from ui.series import Band, RunSeries, balance, skip_strip
from ui.style import FUSED_WIDTH, LINE_WIDTH, MODALITY_COLORS, RUN_COLORS
from ui.words import Words

WORDS = Words.of(vocabulary())  # what GET /vocabulary serves


def metrics_body(run_id: str, series: list[tuple]) -> dict[str, Any]:
    """A GET /runs/{id}/metrics answer; `series` holds (split, component, modality, name, epochs, values)."""
    out = [{"split": sp, "component": c, "modality": m, "name": n, "epochs": list(e), "values": list(v)}
           for sp, c, m, n, e, v in series]
    newest = max((s["epochs"][-1] for s in out if s["epochs"]), default=-1)
    run = {"id": run_id, "name": run_id, "status": "succeeded", "method": "amst_alt", "dataset": "synthetic",
           "seed": 0, "tags": [], "attempt": 1, "epochs_done": newest + 1, "epochs_total": newest + 1}
    return {"run_id": run_id, "status": "succeeded", "epochs_done": newest + 1, "run": run, "series": out,
            "next_since_epoch": newest}


def make(run_id: str, series: list[tuple]) -> RunSeries:
    rs = RunSeries(run_id)
    rs.merge(metrics_body(run_id, series))
    return rs


E = [0, 1, 2]


def two_modality_run(run_id: str = "a", shift: float = 0.0) -> RunSeries:
    series = []
    for split in ("train", "val"):
        series += [(split, "fused", None, "acc", E, [0.5 + shift, 0.6 + shift, 0.7 + shift]),
                   (split, "branch", "audio", "acc", E, [0.4 + shift, 0.5 + shift, 0.6 + shift]),
                   (split, "branch", "visual", "acc", E, [0.2 + shift, 0.3 + shift, 0.35 + shift]),
                   (split, "helper", "audio", "acc", E, [0.3, 0.4, 0.5]),
                   (split, "fused", None, "loss", E, [1.0, 0.5, 0.25])]
    series += [("train", "run", None, "epoch_time", E, [2.0, 3.0, 1.5]),
               ("train", "run", "audio", "skip", E, [1.0, 0.0, 1.0]),
               ("train", "run", "visual", "skip", E, [1.0, 1.0, None])]
    return make(run_id, series)


def by_name(fig) -> dict[str, list]:
    out: dict[str, list] = {}
    for trace in fig.data:
        out.setdefault(trace.name, []).append(trace)
    return out


def test_curves_figure_one_trace_per_component_and_modality_per_split():
    fig = charts.curves_figure(two_modality_run(), ["acc"], ["train", "val"], ["fused", "branch", "helper"], WORDS)
    assert len(fig.data) == 8
    traces = by_name(fig)
    assert sorted(traces) == ["branch · audio", "branch · visual", "fused", "helper · audio"]
    assert all(len(t) == 2 for t in traces.values())
    assert [t.xaxis for t in traces["fused"]] == ["x", "x2"]
    for label, modality in (("fused", "fused"), ("branch · audio", "audio"), ("branch · visual", "visual"),
                            ("helper · audio", "audio")):
        assert [t.line.color for t in traces[label]] == [MODALITY_COLORS[modality]] * 2
    assert [t.line.width for t in traces["fused"]] == [FUSED_WIDTH, FUSED_WIDTH] == [3.5, 3.5]
    assert [t.line.width for t in traces["branch · audio"]] == [LINE_WIDTH, LINE_WIDTH]
    assert traces["helper · audio"][0].line.dash == "dot"
    assert traces["branch · audio"][0].line.dash == "solid"
    assert list(traces["branch · visual"][1].y) == [0.2, 0.3, 0.35]
    assert list(traces["branch · visual"][1].x) == [1, 2, 3]  # epochs counted from 1, as the header counts


def test_curves_figure_legend_only_in_the_first_panel():
    fig = charts.curves_figure(two_modality_run(), ["acc"], ["train", "val"], ["fused", "branch"], WORDS)
    assert [(t.xaxis, t.showlegend) for t in fig.data] == [("x", True)] * 3 + [("x2", False)] * 3
    assert [a.text for a in fig.layout.annotations] == ["train acc", "val acc"]


def test_curves_figure_a_row_per_metric_in_one_figure():
    fig = charts.curves_figure(two_modality_run(), ["acc", "loss"], ["train", "val"], ["fused"], WORDS)
    assert [a.text for a in fig.layout.annotations] == ["train acc", "val acc", "train loss", "val loss"]
    assert [t.xaxis for t in fig.data] == ["x", "x2", "x3", "x4"]
    assert [t.showlegend for t in fig.data] == [True, False, False, False]  # one legend entry per curve
    assert fig.layout.yaxis.title.text == "acc" and fig.layout.yaxis3.title.text == "loss"


def test_curves_figure_filters_components_and_metric():
    fig = charts.curves_figure(two_modality_run(), ["loss"], ["val"], ["branch", "fused"], WORDS)
    assert [(t.name, list(t.y)) for t in fig.data] == [("fused", [1.0, 0.5, 0.25])]
    assert fig.layout.yaxis.title.text == "loss"
    assert fig.layout.xaxis.title.text == "epoch"


def test_curves_figure_smoothing_keeps_the_raw_line_faint_behind():
    fig = charts.curves_figure(two_modality_run(), ["loss"], ["val"], ["fused"], WORDS, smoothing=0.5)
    raw, smoothed = fig.data
    assert list(smoothed.y) == [1.0, 0.75, 0.5] and smoothed.showlegend
    assert list(raw.y) == [1.0, 0.5, 0.25] and raw.opacity == 0.25 and raw.showlegend is False
    assert raw.line.color == smoothed.line.color and raw.hoverinfo == "skip"
    assert len(charts.curves_figure(two_modality_run(), ["loss"], ["val"], ["fused"], WORDS).data) == 1  # no smoothing


def test_curves_figure_log_scale_applies_to_losses_only():
    fig = charts.curves_figure(two_modality_run(), ["acc", "loss"], ["train", "val"], ["fused"], WORDS, log_y=True)
    assert fig.layout.yaxis.type is None and fig.layout.yaxis2.type is None  # accuracy stays linear
    assert fig.layout.yaxis3.type == "log" and fig.layout.yaxis4.type == "log"
    assert charts.curves_figure(two_modality_run(), ["loss"], ["val"], ["fused"], WORDS).layout.yaxis.type is None


def test_accuracy_axes_never_autoscale_past_zero_and_one():
    run = make("a", [("val", "fused", None, "acc", [0], [0.5])])
    fig = charts.curves_figure(run, ["acc"], ["val"], ["fused"], WORDS)
    assert fig.layout.yaxis.autorangeoptions.clipmin == 0 and fig.layout.yaxis.autorangeoptions.clipmax == 1


def integer_ticks(axis) -> bool:
    """An epoch axis whose ticks can only fall on whole epochs, starting from epoch 1."""
    return (axis.tickmode == "linear" and float(axis.dtick).is_integer() and axis.tickformat == "d"
            and axis.range[0] == 0.5)


@pytest.mark.parametrize("epochs", [1, 2, 5, 12, 30, 100, 1000])
def test_epoch_axes_tick_whole_epochs_and_few_of_them(epochs: int):
    run = make("a", [("val", "fused", None, "acc", list(range(epochs)), [0.5] * epochs),
                     ("val", "branch", "audio", "acc", list(range(epochs)), [0.4] * epochs),
                     ("val", "branch", None, "acc_gap", list(range(epochs)), [0.5933] * epochs),
                     ("train", "run", "audio", "skip", list(range(epochs)), [1.0] * epochs)])
    figures = [charts.curves_figure(run, ["acc"], ["val"], ["fused"], WORDS),
               charts.compare_figure([run], {"a": "A"}, "val", "branch", "acc", WORDS),
               charts.skip_figure(*skip_strip(run)), charts.difference_figure([(run, run, "A")], "val", "branch",
                                                                              "acc", WORDS)]
    for fig in figures:
        assert integer_ticks(fig.layout.xaxis), fig.layout.xaxis
        # An x range turns Plotly's y autorange off (y from -1 to 4) unless it is asked for again.
        assert fig.layout.yaxis.autorange is True or fig.layout.yaxis.range is not None
        assert fig.layout.xaxis.range[1] == epochs + 0.5
        assert epochs / fig.layout.xaxis.dtick <= 8  # room on a phone
    gap_axis = charts.balance_figure(balance(run, WORDS)).layout.xaxis2
    assert integer_ticks(gap_axis) and gap_axis.range[1] == epochs + 0.5


def test_gap_axis_starts_at_zero_so_a_flat_gap_is_flat():
    run = make("a", [("val", "branch", "audio", "acc", E, [0.8] * 3), ("val", "branch", "visual", "acc", E, [0.2] * 3),
                     ("val", "branch", None, "acc_gap", E, [0.5933, 0.5933, 0.5933])])
    axis = charts.balance_figure(balance(run, WORDS)).layout.yaxis2
    assert axis.range[0] == 0 and axis.range[1] >= 0.5933 * 1.2
    assert axis.tickformat == ".2f"  # never "0.5932999999999999385"


def test_compare_draws_a_one_epoch_run_as_a_point_and_runs_in_no_modality_colour():
    short = make("s", [("val", "fused", None, "acc", [0], [0.4]), ("val", "branch", "audio", "acc", [0], [0.3])])
    fig = charts.compare_figure([two_modality_run("a"), short], {"a": "A", "s": "S"}, "val", "branch", "acc", WORDS)
    assert all("markers" in t.mode for t in fig.data if t.name == "S")
    diff = charts.difference_figure([(short, short, "S")], "val", "branch", "acc", WORDS)
    assert diff.data and all("markers" in t.mode for t in diff.data)


def hue(color: str) -> tuple[float, float]:
    import colorsys

    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    h, _, s = colorsys.rgb_to_hls(r, g, b)
    return h * 360, s


@pytest.mark.parametrize("run_color", RUN_COLORS)
def test_run_colours_are_no_modalitys(run_color: str):
    h, s = hue(run_color)
    for modality, color in MODALITY_COLORS.items():
        mh, _ = hue(color)
        if modality == "fused" or s < 0.1:
            assert color != run_color
            continue
        assert min(abs(h - mh), 360 - abs(h - mh)) >= 25, (run_color, modality)


def test_runs_beyond_the_palette_are_dashed():
    assert charts.run_style(0) == {"color": RUN_COLORS[0], "dash": "solid"}
    assert charts.run_style(len(RUN_COLORS)) == {"color": RUN_COLORS[0], "dash": "dot"}


def test_balance_panel_names_its_sides_along_their_own_axes_so_they_cannot_collide():
    """One figure, two sides: no subplot titles (which sit side by side above the plots and ran into each other
    at a phone's width); each side's name is its y-axis title, drawn up that side's own left edge."""
    b = balance(make("a", [("val", "branch", "audio", "acc", E, [0.5] * 3),
                           ("val", "branch", "visual", "acc", E, [0.4] * 3),
                           ("val", "branch", None, "acc_gap", E, [0.1] * 3)]), WORDS)
    fig = charts.balance_figure(b)
    assert not fig.layout.annotations and not fig.layout.title.text
    assert fig.layout.yaxis.title.text == "val acc, epoch 3"
    assert fig.layout.yaxis2.title.text == "strongest − weakest"
    assert fig.layout.xaxis.domain[1] < fig.layout.xaxis2.domain[0]  # the right side's title has its own gutter


def test_balance_and_gap_figures():
    rs = make("a", [("val", "branch", "audio", "acc", E, [0.5, 0.6, 0.8]),
                    ("val", "branch", "visual", "acc", E, [0.2, 0.3, 0.4]),
                    ("val", "helper", "audio", "acc", E, [0.4, 0.5, 0.7]),
                    ("val", "branch", None, "acc_gap", E, [0.3, 0.3, 0.4])])
    fig = charts.balance_figure(balance(rs, WORDS))
    assert [t.name for t in fig.data] == ["branch", "helper (linear probe)", "gap"], "no probe gap: no line"
    assert list(fig.data[0].y) == [0.8, 0.4]
    assert list(fig.data[1].y) == [0.7, None]
    assert list(fig.data[0].marker.color) == [MODALITY_COLORS["audio"], MODALITY_COLORS["visual"]]
    gap = fig.data[2]
    assert gap.xaxis == "x2" and list(gap.x) == [1, 2, 3] and list(gap.y) == [0.3, 0.3, 0.4]
    rs.merge({"series": [{"split": "val", "component": "helper", "modality": None, "name": "acc_gap", "epochs": E,
                          "values": [0.1, 0.2, 0.2]}], "run": rs.run, "next_since_epoch": 2})
    with_probes = charts.balance_figure(balance(rs, WORDS))
    assert with_probes.data[3].name == "gap of the probes" and list(with_probes.data[3].y) == [0.1, 0.2, 0.2]


def test_resource_figure_only_where_the_worker_had_a_gpu():
    assert charts.resource_figure(two_modality_run()) is None
    rs = make("g", [("train", "run", None, "gpu_util", E, [80.0, 95.0, 90.0]),
                    ("train", "run", None, "gpu_mem_gib", E, [10.0, 12.5, 12.5])])
    fig = charts.resource_figure(rs)
    assert [list(t.y) for t in fig.data] == [[80.0, 95.0, 90.0], [10.0, 12.5, 12.5]]
    assert fig.layout.yaxis.range == (0, 100.0) and fig.layout.yaxis2.range[1] == pytest.approx(15.0)


def test_skip_figure_says_the_factor_in_force_on_hover():
    fig = charts.skip_figure(["audio"], [0, 1, 2], [[1.0, 0.0, 1.0]], {"audio": {0: 1.0, 1: 2.0, 2: 2.0}})
    updated = next(t for t in fig.data if t.name == "audio updated")
    assert list(updated.text) == [" (skip factor 1)", " (skip factor 2)"]


def test_curves_figure_wall_clock_x():
    fig = charts.curves_figure(two_modality_run(), ["acc"], ["val"], ["fused"], WORDS, x="wall")
    assert list(fig.data[0].x) == [2.0, 5.0, 6.5]
    assert fig.layout.xaxis.title.text == "wall time (s)"


def test_skip_figure_filled_where_updated_open_where_skipped():
    fig = charts.skip_figure(*skip_strip(two_modality_run()))
    assert [t.name for t in fig.data] == ["audio updated", "audio skipped", "visual updated", "visual skipped"]
    assert [t.marker.symbol for t in fig.data] == ["square", "square-open", "square", "square-open"]
    assert [t.marker.color for t in fig.data] == [MODALITY_COLORS["audio"]] * 2 + [MODALITY_COLORS["visual"]] * 2
    assert [list(t.x) for t in fig.data] == [[1, 3], [2], [1, 2], []]
    assert [list(t.y) for t in fig.data] == [["audio", "audio"], ["audio"], ["visual", "visual"], []]
    assert fig.layout.showlegend is False
    assert fig.layout.height == 80 + 40 * 2


def test_compare_figure_a_panel_per_modality_and_fused():
    a, b = two_modality_run("a"), two_modality_run("b", shift=0.1)
    fig = charts.compare_figure([a, b], {"a": "run A", "b": "run B"}, "val", "branch", "acc", WORDS)
    assert [ann.text for ann in fig.layout.annotations] == ["audio", "visual", "fused"]
    assert [ann.font.color for ann in fig.layout.annotations] == [MODALITY_COLORS["audio"],
                                                                   MODALITY_COLORS["visual"],
                                                                   MODALITY_COLORS["fused"]]
    assert [(t.name, t.xaxis, t.line.color, t.line.width, t.showlegend) for t in fig.data] == [
        ("run A", "x", RUN_COLORS[0], LINE_WIDTH, True), ("run B", "x", RUN_COLORS[1], LINE_WIDTH, True),
        ("run A", "x2", RUN_COLORS[0], LINE_WIDTH, False), ("run B", "x2", RUN_COLORS[1], LINE_WIDTH, False),
        ("run A", "x3", RUN_COLORS[0], FUSED_WIDTH, False), ("run B", "x3", RUN_COLORS[1], FUSED_WIDTH, False),
    ]
    assert list(fig.data[3].y) == pytest.approx([0.3, 0.4, 0.45])  # run B, visual branch
    assert list(fig.data[4].y) == [0.5, 0.6, 0.7]  # run A, fused
    assert fig.layout.yaxis.title.text == "val acc"


def test_compare_figure_skips_a_run_without_the_series():
    a = two_modality_run("a")
    c = make("c", [("val", "fused", None, "acc", E, [0.1, 0.2, 0.3])])
    fig = charts.compare_figure([a, c], {"a": "A", "c": "C"}, "val", "helper", "acc", WORDS)
    assert [ann.text for ann in fig.layout.annotations] == ["audio", "visual", "fused"]
    assert [(t.name, t.xaxis) for t in fig.data] == [("A", "x"), ("A", "x3"), ("C", "x3")]


def test_difference_figure_zero_line_and_modality_colours():
    amst, base = two_modality_run("a", shift=0.1), two_modality_run("n")
    other = two_modality_run("b", shift=-0.1)
    fig = charts.difference_figure([(amst, base, "A"), (other, base, "B")], "val", "branch", "acc", WORDS)
    # Every line has a legend entry (the modalities' orange and blue ones too); a pair's lines toggle together.
    assert [t.name for t in fig.data] == [f"{p} − baseline · {m}" for p in "AB" for m in ("audio", "visual", "fused")]
    assert all(t.showlegend is not False for t in fig.data)
    assert [t.legendgroup for t in fig.data] == ["pair0"] * 3 + ["pair1"] * 3
    assert [t.hovertemplate.split(":")[0] for t in fig.data] == ["A · audio", "A · visual", "A · fused", "B · audio",
                                                                 "B · visual", "B · fused"]
    assert [t.line.color for t in fig.data] == [MODALITY_COLORS[m] for m in ("audio", "visual", "fused") * 2]
    assert [t.line.width for t in fig.data] == [LINE_WIDTH, LINE_WIDTH, FUSED_WIDTH] * 2
    assert [t.line.dash for t in fig.data] == ["solid"] * 3 + ["dash"] * 3
    assert list(fig.data[0].y) == pytest.approx([0.1, 0.1, 0.1])
    assert list(fig.data[5].y) == pytest.approx([-0.1, -0.1, -0.1])
    zero = [s for s in fig.layout.shapes if s.type == "line" and s.y0 == 0 and s.y1 == 0]
    assert len(zero) == 1
    assert zero[0].line.color == "#999999"


def test_difference_figure_without_common_epochs_has_only_the_zero_line():
    a = make("a", [("val", "fused", None, "acc", [0, 1], [0.5, 0.6])])
    b = make("b", [("val", "fused", None, "acc", [2, 3], [0.5, 0.6])])
    fig = charts.difference_figure([(a, b, "A")], "val", "branch", "acc", WORDS)
    assert len(fig.data) == 0
    assert len(fig.layout.shapes) == 1


def test_the_skip_strip_is_a_row_of_the_balance_figure():
    """One Plotly instance for the balance and the schedule (each instance costs the browser a draw)."""
    run = two_modality_run()
    b = balance(run, WORDS)
    modalities, epochs, grid = skip_strip(run)
    fig = charts.balance_figure(b, (modalities, epochs, grid, {"audio": {1: 2.0}}))
    strip = [t for t in fig.data if t.name.endswith(("updated", "skipped"))]
    assert [t.name for t in strip] == ["audio updated", "audio skipped", "visual updated", "visual skipped"]
    assert {t.xaxis for t in strip} == {"x3"} and not any(t.showlegend for t in strip)
    assert [list(t.x) for t in strip] == [[1, 3], [2], [1, 2], []]
    assert list(strip[1].text) == [" (skip factor 2)"]
    assert integer_ticks(fig.layout.xaxis3) and fig.layout.yaxis3.autorange is True
    assert fig.layout.xaxis3.domain == (0.0, 1.0)  # across both sides
    assert fig.layout.height > charts.balance_figure(b).layout.height


def test_compare_figure_draws_amst_minus_baseline_as_a_row_below():
    amst, base = two_modality_run("a", shift=0.1), two_modality_run("n")
    fig = charts.compare_figure([amst, base], {"a": "A", "n": "N"}, "val", "branch", "acc", WORDS,
                                 pairs=[(amst, base, "A")])
    below = [t for t in fig.data if t.xaxis == "x4"]
    assert [t.hovertemplate.split(":")[0] for t in below] == ["A · audio", "A · visual", "A · fused"]
    assert list(below[0].y) == pytest.approx([0.1, 0.1, 0.1])
    assert fig.layout.annotations[-1].text == "AMST minus baseline (val acc)"
    assert integer_ticks(fig.layout.xaxis4) and fig.layout.xaxis4.domain == pytest.approx((0.0, 1.0))
    assert fig.layout.yaxis2.matches == "y" and fig.layout.yaxis4.matches is None  # panels share, the row not
    assert any(s.y0 == 0 and s.y1 == 0 and s.yref == "y4" for s in fig.layout.shapes)


def test_run_series_figure_draws_what_a_method_declares():
    """OGM-GE's series come from its declaration (GET /methods), not from the dashboard; a new method's series
    appear the same way. Bounded kinds sit on [0, 1]; a loss kind goes to a log scale when asked."""
    declared = [{"name": "ogm_coeff", "kind": "bounded", "per_modality": True, "description": "x", "split": "train"},
                {"name": "my_loss", "kind": "loss", "per_modality": False, "description": "new", "split": "train"},
                {"name": "not_logged", "kind": "count", "per_modality": False, "description": "", "split": "train"}]
    rs = make("a", [("train", "run", "audio", "ogm_coeff", [0, 1], [0.5, 0.7]),
                    ("train", "run", "visual", "ogm_coeff", [0, 1], [1.0, 0.9]),
                    ("train", "run", None, "my_loss", [0, 1], [2.0, 1.0]),
                    ("val", "fused", None, "acc", [0, 1], [0.5, 0.6])])
    fig = charts.run_series_figure(rs, declared, WORDS, log_y=True)
    assert [a.text for a in fig.layout.annotations] == ["ogm_coeff", "my_loss"]  # what the run logged, in order
    assert [t.name for t in fig.data] == ["ogm_coeff · audio", "ogm_coeff · visual", "my_loss"]
    assert [t.line.color for t in fig.data[:2]] == [MODALITY_COLORS["audio"], MODALITY_COLORS["visual"]]
    assert fig.layout.yaxis.autorangeoptions.clipmax == 1 and fig.layout.yaxis2.type == "log"
    assert charts.run_series_figure(rs, declared[2:], WORDS) is None


def test_gap_and_vocabulary_metrics_are_bounded():
    assert charts.metric_kind("acc_gap", WORDS) == "bounded" and charts.metric_kind("macro_f1", WORDS) == "bounded"
    assert charts.metric_kind("loss", WORDS) == "loss" and charts.metric_kind("epoch_time", WORDS) == "quantity"


# ---- issue 23: comparisons a researcher can trust ----

def test_compare_wall_time_axis_plots_seconds_and_leaves_out_a_run_without_epoch_times():
    """Finding 1: Compare reads only the metric it draws; without epoch times its runs were drawn at their epochs
    (1..8) under "wall time (s)". Given their clocks it plots seconds; a run with no clock is left off."""
    drawn_only = make("a", [("val", "fused", None, "acc", E, [0.5, 0.6, 0.7])])
    fig = charts.compare_figure([drawn_only], {"a": "A"}, "val", "branch", "acc", WORDS, x="wall",
                                clocks={"a": {0: 40.0, 1: 80.0, 2: 120.0}})
    assert [list(t.x) for t in fig.data] == [[40.0, 80.0, 120.0]]
    assert fig.layout.xaxis.title.text == "wall time (s)"
    no_clock = charts.compare_figure([drawn_only], {"a": "A"}, "val", "branch", "acc", WORDS, x="wall")
    assert not no_clock.data  # never epochs under a seconds title
    assert [list(t.x) for t in charts.compare_figure([two_modality_run()], {"a": "A"}, "val", "branch", "acc",
                                                     WORDS, x="wall").data][-1] == [2.0, 5.0, 6.5]


def pairs_figure():
    amst, base = two_modality_run("a", shift=0.1), two_modality_run("n")
    return charts.compare_figure([amst, base], {"a": "A", "n": "N"}, "val", "branch", "acc", WORDS,
                                 pairs=[(amst, base, "A")])


def test_legend_swatches_are_long_enough_to_show_a_dash_pattern():
    """Finding 4: at Plotly's 30 px swatch, alt (dash), joint (dashdot) and fused (solid) all read as solid
    black. Every legend of every figure draws its swatches twice as long."""
    full = make("f", [("val", c, None, "acc", E, [0.5, 0.6, 0.7]) for c in ("fused", "alt", "joint")]
                + [("val", "alt_branch", "audio", "acc", E, [0.4, 0.5, 0.6])])
    b = balance(two_modality_run(), WORDS)
    figures = {"curves": charts.curves_figure(full, ["acc"], ["val"], ["fused", "alt", "joint", "alt_branch"], WORDS),
               "compare": pairs_figure(), "balance": charts.balance_figure(b),
               "difference": charts.difference_figure([(full, full, "F")], "val", "branch", "acc", WORDS)}
    for name, fig in figures.items():
        assert fig.layout.legend.itemwidth >= 60, name
    assert pairs_figure().layout.legend2.itemwidth >= 60
    curves = by_name(figures["curves"])
    assert {label: curves[label][0].line.dash for label in ("fused", "alt", "joint", "alt_branch · audio")} == {
        "fused": "solid", "alt": "dash", "joint": "dashdot", "alt_branch · audio": "dash"}


def test_amst_minus_baseline_names_every_line_in_a_legend_under_it():
    """Finding 4: the difference row's orange and blue lines (the modalities) had no legend entry; finding 14:
    its legend sits under the row, the runs' legend above the panels, each next to its curves."""
    fig = pairs_figure()
    below = [t for t in fig.data if t.xaxis == "x4"]
    assert [t.name for t in below] == ["A − baseline · audio", "A − baseline · visual", "A − baseline · fused"]
    assert all(t.showlegend is not False and t.legend == "legend2" for t in below)
    assert [t.line.color for t in below] == [MODALITY_COLORS[m] for m in ("audio", "visual", "fused")]
    assert fig.layout.legend.y > 1 and fig.layout.legend.yanchor == "bottom"  # above the panels
    assert fig.layout.legend2.y < 0 and fig.layout.legend2.yanchor == "top"  # under the difference row
    runs = [t for t in fig.data if t.xaxis != "x4" and t.showlegend]
    assert [t.name for t in runs] == ["A", "N"] and all(t.legend in (None, "legend") for t in runs)


def test_a_run_keeps_its_colour_whatever_the_view():
    """Finding 5: colours follow a run's place in the link's run list, not its place among those drawn."""
    a = two_modality_run("a")  # b is in the link, but draws nothing here (say it lacks the series)
    styles = charts.run_styles(["b", "a"])
    assert styles == {"b": charts.run_style(0), "a": charts.run_style(1)}
    fig = charts.compare_figure([a], {"a": "A"}, "val", "branch", "acc", WORDS, styles=styles)
    assert {t.line.color for t in fig.data} == {styles["a"]["color"]}
    band = Band([0, 1], [0.5, 0.6], [0.4, 0.5], [0.6, 0.7], 1)
    grouped = charts.band_figure({"fused": {"g-a": band, "g-b": band}}, "val", "acc", "fused",
                                 styles={"g-a": styles["a"], "g-b": styles["b"]})
    assert {t.name: t.line.color for t in grouped.data if t.showlegend} == {
        "g-a (n=1)": styles["a"]["color"], "g-b (n=1)": styles["b"]["color"]}


def test_grouped_curves_keep_the_wall_time_axis_and_the_log_scale():
    """Finding 5: the grouped view drew epochs on a linear axis whatever was chosen."""
    band = Band([0, 1, 2], [2.0, 1.0, 0.5], [1.5, 0.8, 0.4], [2.5, 1.2, 0.6], 2, seconds=[30.0, 61.0, 90.0])
    fig = charts.band_figure({"fused": {"g": band}}, "val", "loss", "fused", x="wall", log_y=True, words=WORDS)
    line = next(t for t in fig.data if t.showlegend)
    assert list(line.x) == [30.0, 61.0, 90.0] and "wall time" in fig.layout.xaxis.title.text
    assert fig.layout.yaxis.type == "log"


@pytest.mark.parametrize(("low", "high", "dtick"), [(0.4, 60.0, "D2"), (0.01, 25.0, "D2"), (1e-4, 30.0, 1),
                                                    (0.3, 0.9, None)])
def test_log_axes_label_every_tick_in_full(low: float, high: float, dtick):
    """Finding 6: Plotly labelled a log axis's ticks between powers of ten with bare digits ("3, 2, 10, 9, ...
    1"): 0.5, 5 and 50 all read "5". Every label is a full number; 1, 2 and 5 of each decade over a few decades,
    the powers of ten alone over many, Plotly's linear labels within one."""
    run = make("a", [("val", "fused", None, "loss", E, [high, (low * high) ** 0.5, low]),
                     ("val", "fused", None, "acc", E, [0.5, 0.6, 0.7])])
    figures = [charts.curves_figure(run, ["acc", "loss"], ["val"], ["fused"], WORDS, log_y=True),
               charts.compare_figure([run], {"a": "A"}, "val", "branch", "loss", WORDS, log_y=True)]
    for fig in figures:
        logs = [axis for axis in fig.select_yaxes() if axis.type == "log"]
        assert logs and all(axis.tickformat == "~g" and axis.dtick == dtick for axis in logs)
    assert figures[0].layout.yaxis.tickformat == ".2f"  # accuracy untouched


def sparse_test_run() -> RunSeries:
    """Five epochs; the test split evaluated only where validation improved (epochs 1 and 3, counted from 1)."""
    long = list(range(5))
    return make("t", [("val", "fused", None, "acc", long, [0.5, 0.4, 0.6, 0.55, 0.5]),
                      ("test", "fused", None, "acc", [0, 2], [0.45, 0.58]),
                      ("test", "branch", "audio", "acc", [0, 2], [0.4, 0.5]),
                      ("val", "branch", "audio", "acc", long, [0.4] * 5)])


def test_test_curves_say_they_are_evaluated_only_at_validation_improvements():
    """Finding 11: the test curve stops at the best epoch (the engine tests only when validation improves, as
    the reference does); the Run page's panels and Compare's axis say so, each evaluation a marker."""
    rs = sparse_test_run()
    fig = charts.curves_figure(rs, ["acc"], ["val", "test"], ["fused", "branch"], WORDS)
    assert [a.text for a in fig.layout.annotations] == ["val acc", "test acc (at val improvements)"]
    assert all("markers" in t.mode for t in fig.data if t.xaxis == "x2")
    assert fig.layout.xaxis2.range[1] == 5.5  # the axis runs on to the run's last epoch: the stop shows
    compare = charts.compare_figure([rs], {"t": "T"}, "test", "branch", "acc", WORDS)
    assert compare.layout.yaxis.title.text == "test acc (at val improvements)"
    every_epoch = charts.compare_figure([rs], {"t": "T"}, "val", "branch", "acc", WORDS)
    assert every_epoch.layout.yaxis.title.text == "val acc"


def test_balance_bar_values_sit_above_the_bars_never_on_the_hatching():
    """Finding 10: the helper bar's value label was drawn inside, on its hatching, and could not be read."""
    fig = charts.balance_figure(balance(two_modality_run(), WORDS))
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == ["branch", "helper (linear probe)"]
    assert all(t.textposition == "outside" and t.cliponaxis is False for t in bars)
    assert fig.layout.yaxis.range[1] > 1 and max(fig.layout.yaxis.tickvals) == 1  # room for a label over 1.0


def test_log_ticks_follow_the_log_axes_values_only():
    """A linear row's values (a bounded series at 0.001) do not widen the span a log row's ticks are chosen for."""
    declared = [{"name": "tiny", "kind": "bounded", "per_modality": False, "description": "", "split": "train"},
                {"name": "my_loss", "kind": "loss", "per_modality": False, "description": "", "split": "train"}]
    rs = make("a", [("train", "run", None, "tiny", [0, 1], [0.001, 0.002]),
                    ("train", "run", None, "my_loss", [0, 1], [2.0, 1.0])])
    fig = charts.run_series_figure(rs, declared, WORDS, log_y=True)
    assert fig.layout.yaxis2.type == "log" and fig.layout.yaxis2.tickformat == "~g"
    assert fig.layout.yaxis2.dtick is None  # within a decade: Plotly's linear labels, in full
