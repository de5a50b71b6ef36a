"""Plotly figures of the dashboard. Each modality keeps its colour everywhere; fused is bold."""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.series import (
    Balance,
    Band,
    RunSeries,
    component_at,
    difference,
    evaluated_on_improvement,
    smooth,
    wall_clock,
    whole_model,
)
from ui.style import (
    COMPONENT_DASH,
    FUSED_COLOR,
    FUSED_WIDTH,
    LINE_WIDTH,
    RUN_COLORS,
    RUN_DASHES,
    modality_color,
)
from ui.words import Words

# Fixed margins, wide enough for tick labels and axis titles: Plotly's automatic margins measure every label and
# lay the plot out again (a sixth of a page's drawing time in bench/ui_render.py's probes). Streamlit's theme styles
# the rest.
MARGIN = {"l": 60, "r": 10, "t": 40, "b": 50}
# A legend swatch long enough to show a dash pattern: at Plotly's 30 px a line's marker covers the gaps of
# `dash` and `dashdot`, and alt, joint and fused all read as solid black.
LEGEND_ITEM_PX = 60
LEGEND = {"orientation": "h", "y": -0.18, "itemwidth": LEGEND_ITEM_PX}
LAYOUT = {"margin": MARGIN, "legend": LEGEND, "hovermode": "x unified"}


def lay_out(fig: go.Figure, **layout: Any) -> None:
    """The dashboard's layout on a figure, its margins fixed (no automatic margin on any axis); every legend
    (legend, legend2, ...) keeps the long swatch whatever else it sets."""
    legends = {k: {**LEGEND, **v} for k, v in layout.items() if k.startswith("legend") and isinstance(v, dict)}
    fig.update_layout(**{**LAYOUT, **layout, **legends})
    fig.update_xaxes(automargin=False)
    fig.update_yaxes(automargin=False)


PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def label_log_axes(fig: go.Figure) -> None:
    """Log axes labelled so that 0.5, 5 and 50 can be told apart: Plotly's own labels between two powers of ten
    are bare digits ("3, 2, 10, 9, ... 1"). Every label is written in full ("~g"); within a decade Plotly spaces
    them linearly, over a few decades at 1, 2 and 5 of each ("D2": its "D1" puts 8 and 9 on top of each other),
    over more only at the powers of ten."""
    log_axes = [axis for axis in fig.select_yaxes() if axis.type == "log"]
    if not log_axes:
        return
    # The values of every log axis together: Compare's panels share one range, whichever panel holds the extremes.
    refs = {"y" + axis.plotly_name.removeprefix("yaxis") for axis in log_axes}
    values = [v for t in fig.data if isinstance(t, go.Scatter) and (t.yaxis or "y") in refs and t.y is not None
              for v in t.y if isinstance(v, int | float) and v > 0]
    decades = math.log10(max(values) / min(values)) if values else 0.0
    ticks: dict[str, Any] = {"tickformat": "~g"}
    if 0.9 < decades <= 4:
        ticks["dtick"] = "D2"
    elif decades > 4:
        ticks["dtick"] = 1
    for axis in log_axes:
        axis.update(ticks)


def curve_label(component: str, modality: str | None) -> str:
    return f"{component} · {modality}" if modality else component


def shown(epochs: list[int]) -> list[int]:
    """Epochs as people count them: the first epoch is epoch 1, as in the header's "Epoch 1/5" (the API and the
    CSV count from 0)."""
    return [e + 1 for e in epochs]


def line_mode(epochs: list[Any], sparse: bool = False) -> str:
    """Markers while a curve is short (one epoch is a point, not a line), lines alone once it is long; always
    markers on a `sparse` curve (evaluated only at some epochs: each marker is an evaluation, the line between
    them is not)."""
    return "lines+markers" if len(epochs) <= 12 or sparse else "lines"


def sparse_note(words: Words) -> str:
    """What a split evaluated only when the model improved says next to its name (evaluated_on_improvement)."""
    return f"(at {words.eval_splits[0]} improvements)"


def x_values(epochs: list[int], clock: dict[int, float] | None) -> list[Any] | None:
    """Where a curve's points go: its epochs (counted from 1), or with a wall `clock` the seconds at each epoch's
    end. None when the clock knows none of them: a run without epoch times is left off a wall-time axis rather
    than drawn at its epochs under a title that says seconds."""
    if clock is None:
        return shown(epochs)
    xs = [clock.get(e) for e in epochs]
    return xs if any(x is not None for x in xs) else None


def epoch_dtick(last: int, most: int = 8) -> int:
    """A whole number of epochs between ticks (1, 2, 5, 10, 20, 50, ...) so at most `most` ticks show: never a
    fractional epoch, and few enough for a phone's width."""
    step, factors = 1, (2, 2.5, 2)
    i = 0
    while last / step > most:
        step = int(step * factors[i % 3])
        i += 1
    return step


def epoch_axis(last: int) -> dict[str, Any]:
    """An x axis of whole epochs from 1 to `last` (shown count), with a half epoch of air on each side. A figure
    with it must say `autorange=True` on its y axes: Plotly turns their autorange off once an x range is given
    (and draws them from -1 to 4)."""
    return {"tickmode": "linear", "tick0": 0, "dtick": epoch_dtick(last), "tickformat": "d",
            "range": [0.5, max(1, last) + 0.5], "title_text": "epoch"}


def value_axis(name: str, log_y: bool, words: Words) -> dict[str, Any]:
    """Log scale only where it means something (a loss); bounded metrics (the vocabulary's, and any *_acc) never
    autoscale past [0, 1]."""
    return kind_axis(metric_kind(name, words), log_y)


def metric_kind(name: str, words: Words) -> str:
    """A prediction metric's kind, in the vocabulary's terms of run-level series: bounded, loss or quantity."""
    if name in words.bounded or name in words.gaps or name.endswith("_acc"):
        return "bounded"
    return "loss" if name in words.losses or "loss" in name else "quantity"


def kind_axis(kind: str, log_y: bool) -> dict[str, Any]:
    """A y axis for a series of this kind: bounded on [0, 1], a loss on a log scale when asked."""
    if kind == "bounded":
        return {"autorangeoptions": {"clipmin": 0, "clipmax": 1}, "tickformat": ".2f"}
    return {"type": "log"} if log_y and kind == "loss" else {}


def raw_line(x: list[Any], y: list[float | None], color: str, group: str) -> go.Scatter:
    """The unsmoothed values as a faint line under the smoothed one, so smoothing never hides a dip."""
    return go.Scatter(x=x, y=y, mode="lines", line={"color": color, "width": 1}, opacity=0.25, hoverinfo="skip",
                      showlegend=False, legendgroup=group)


def curves_figure(rs: RunSeries, names: list[str], splits: list[str], components: list[str], words: Words,
                  x: str = "epoch",
                  smoothing: float = 0.0, log_y: bool = False, row_height: int = 330) -> go.Figure:
    """A row per metric, a column per split; one line per (component, modality). One figure, so that the
    browser lays out and redraws one Plotly plot instead of one per metric (the Run page draws one per split,
    side by side, so that a phone stacks them). A split evaluated only when the model improved says so in its
    panels' titles, each evaluation marked. The epoch axis runs to the run's last epoch in every figure."""
    rows, cols = max(1, len(names)), max(1, len(splits))
    note = {s: f" {sparse_note(words)}" if evaluated_on_improvement(rs, s, words) else "" for s in splits}
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, shared_xaxes=True, horizontal_spacing=0.03,
                        vertical_spacing=0.08, subplot_titles=[f"{s} {n}{note[s]}" for n in names for s in splits])
    clock = wall_clock(rs) if x == "wall" else None
    in_legend: set[str] = set()
    last = max((e + 1 for values in rs.points.values() for e in values), default=0)
    traces: list[go.Scatter] = []
    cells: list[tuple[int, int]] = []
    for row, name in enumerate(names, start=1):
        for col, split in enumerate(splits, start=1):
            for key in rs.series_keys():
                s, component, modality, n = key
                if s != split or n != name or component not in components:
                    continue
                epochs, values = rs.series(key)
                label, color = curve_label(component, modality), modality_color(modality)
                xs = x_values(epochs, clock)
                if xs is None:
                    continue
                if smoothing > 0:
                    traces.append(raw_line(xs, values, color, label))
                    cells.append((row, col))
                traces.append(go.Scatter(
                    x=xs, y=smooth(values, smoothing), mode=line_mode(epochs, bool(note[split])), name=label,
                    legendgroup=label,
                    showlegend=label not in in_legend,
                    line={"color": color, "width": FUSED_WIDTH if modality is None else LINE_WIDTH,
                          "dash": COMPONENT_DASH.get(component, "solid")},
                    hovertemplate=f"{label}: %{{y:.4f}}<extra></extra>"))
                cells.append((row, col))
                in_legend.add(label)
    if traces:  # one call: adding thirty traces one by one to a grid of subplots costs more than building them
        fig.add_traces(traces, rows=[r for r, _ in cells], cols=[c for _, c in cells])
    for row, name in enumerate(names, start=1):
        fig.update_yaxes(title_text=name, row=row, col=1)
        fig.update_yaxes(row=row, autorange=True, **value_axis(name, log_y, words))
    lay_out(fig, height=row_height * rows + 60)
    if x == "wall":
        fig.update_xaxes(title_text="wall time (s)", rangemode="tozero", row=rows)
    else:
        fig.update_xaxes(**{k: v for k, v in epoch_axis(last).items() if k != "title_text"})
        fig.update_xaxes(title_text="epoch", row=rows)
    label_log_axes(fig)
    return fig


Strip = tuple[list[str], list[int], list[list[float | None]], dict[str, dict[int, float]]]  # ui.series.skip_strip


def balance_figure(b: Balance, strip: Strip | None = None) -> go.Figure:
    """Left: branch (solid) and helper (hatched) accuracy per modality at the latest epoch. Right: the gap between
    the strongest and the weakest modality over epochs, of the branches (solid) and of the probes (dotted), on an
    axis from zero so a flat line stays flat. Below, across, the skip schedule when there is one. One figure: the
    browser draws one Plotly instance instead of two. Each side is named by its y-axis title, which runs up its
    own edge, so the names cannot run into each other at a phone's width."""
    skips = len(strip[0]) if strip else 0
    strip_px = 50 + 34 * skips if skips else 0
    height = 320 + strip_px + (60 if skips else 0)
    specs = [[{}, {}]] + ([[{"colspan": 2}, None]] if skips else [])
    fig = make_subplots(rows=len(specs), cols=2, specs=specs, horizontal_spacing=0.2, vertical_spacing=60 / height,
                        row_heights=[320, strip_px] if skips else None)
    modalities = [r["modality"] for r in b.rows]
    colors = [modality_color(m) for m in modalities]
    # Values above the bars, never on them: on the helper's hatching (or a dark modality colour) a label inside
    # cannot be read.
    value_label = {"texttemplate": "%{y:.3f}", "textposition": "outside", "cliponaxis": False}
    fig.add_trace(go.Bar(x=modalities, y=[r["branch"] for r in b.rows], name="branch", marker={"color": colors},
                         **value_label), row=1, col=1)
    fig.add_trace(go.Bar(x=modalities, y=[r["helper"] for r in b.rows], name="helper (linear probe)",
                         marker={"color": colors, "pattern": {"shape": "/"}, "opacity": 0.6}, **value_label),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=shown(b.gap_epochs), y=b.gap_values, mode=line_mode(b.gap_epochs), name="gap",
                             line={"color": FUSED_COLOR}, hovertemplate="gap %{y:.4f}<extra></extra>"),
                  row=1, col=2)
    if b.helper_gap_epochs:
        fig.add_trace(go.Scatter(x=shown(b.helper_gap_epochs), y=b.helper_gap_values,
                                 mode=line_mode(b.helper_gap_epochs), name="gap of the probes",
                                 line={"color": FUSED_COLOR, "dash": "dot"},
                                 hovertemplate="probe gap %{y:.4f}<extra></extra>"), row=1, col=2)
    at = f"epoch {b.epoch + 1}" if b.epoch is not None else "no epoch yet"
    top = max([v for v in [*b.gap_values, *b.helper_gap_values] if v is not None], default=0.0)
    # The legend above the plots: below, it would sit on the skip strip's epochs.
    lay_out(fig, barmode="group", height=height, legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    # Headroom above 1 for a label over a bar at 1.0; the ticks stop at 1.
    fig.update_yaxes(range=[0, 1.12], tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0], tickformat=".1f",
                     title_text=f"{b.split} acc, {at}", row=1, col=1)
    fig.update_yaxes(range=[0, max(0.1, round(top * 1.25, 2))], tickformat=".2f", title_text="strongest − weakest",
                     row=1, col=2)
    fig.update_xaxes(**epoch_axis(max([0, *shown(b.gap_epochs), *shown(b.helper_gap_epochs)])), row=1, col=2)
    if skips:
        fig.add_traces(skip_traces(*strip), rows=2, cols=1)
        fig.update_xaxes(**epoch_axis(max(shown(strip[1]), default=0)), row=2, col=1)
        fig.update_yaxes(autorange=True, title_text="skip", row=2, col=1)
    return fig


def skip_traces(modalities: list[str], epochs: list[int], grid: list[list[float | None]],
                factors: dict[str, dict[int, float]] | None = None) -> list[go.Scatter]:
    """A strip per modality: a filled square where it was updated, a hollow one where it was skipped; the hover
    says the skip factor in force where the run logged it."""
    traces = []
    for m, row in zip(modalities, grid, strict=True):
        for updated, symbol, label in ((1.0, "square", "updated"), (0.0, "square-open", "skipped")):
            xs = [e for e, v in zip(epochs, row, strict=True) if v == updated]
            k = (factors or {}).get(m, {})
            text = [f" (skip factor {k[e]:.0f})" if e in k else "" for e in xs]
            hover = f"{m}: {label} in epoch %{{x}}%{{text}}<extra></extra>"
            traces.append(go.Scatter(x=shown(xs), y=[m] * len(xs), mode="markers", name=f"{m} {label}", text=text,
                                     showlegend=False, hovertemplate=hover,
                                     marker={"symbol": symbol, "size": 11, "color": modality_color(m)}))
    return traces


def skip_figure(modalities: list[str], epochs: list[int], grid: list[list[float | None]],
                factors: dict[str, dict[int, float]] | None = None) -> go.Figure:
    """The skip schedule alone (a run with a schedule but no per-modality accuracy to balance)."""
    fig = go.Figure(skip_traces(modalities, epochs, grid, factors))
    lay_out(fig, height=80 + 40 * max(1, len(modalities)), showlegend=False,
            margin={"l": 60, "r": 10, "t": 10, "b": 45})
    fig.update_xaxes(**epoch_axis(max(shown(epochs), default=0)))
    fig.update_yaxes(autorange=True)
    return fig


def run_style(i: int) -> dict[str, Any]:
    """The i-th run's line on Compare: a colour that is no modality's, then a dash once the colours run out."""
    return {"color": RUN_COLORS[i % len(RUN_COLORS)], "dash": RUN_DASHES[i // len(RUN_COLORS) % len(RUN_DASHES)]}


def run_styles(run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each run's line by its place in the Compare link's run list: a run keeps its colour whatever is drawn
    (a split, a metric, a grouping, a run without the series) as long as the link lists it in the same place."""
    return {run_id: run_style(i) for i, run_id in enumerate(dict.fromkeys(run_ids))}


Pairs = list[tuple[RunSeries, RunSeries, str]]  # (AMST run, its baseline, label)
Clocks = dict[str, dict[int, float]]  # run id -> seconds since its start at the end of each epoch (wall_clock)


def run_clock(rs: RunSeries, clocks: Clocks | None) -> dict[int, float]:
    """A run's wall clock: given (a page that fetched the epoch times apart), or from its own points."""
    return clocks.get(rs.run_id, {}) if clocks is not None else wall_clock(rs)


def compare_figure(runs: list[RunSeries], labels: dict[str, str], split: str, component: str, name: str,
                   words: Words, smoothing: float = 0.0, height: int = 420, x: str = "epoch", log_y: bool = False,
                   pairs: Pairs | None = None, clocks: Clocks | None = None,
                   styles: dict[str, dict[str, Any]] | None = None) -> go.Figure:
    """A panel per modality (its title in the modality's colour) and the whole model (fused, or the combination
    chosen); one colour per run (no modality's colour; `styles`, by default by place in `runs`); markers while a
    run is short, so a one-epoch run is a visible point. The runs' legend sits above the panels, next to their
    curves at any width. With `pairs`, a row below, across the panels: each AMST run minus its baseline
    (difference_traces), with its own legend under it. On a wall-time axis (`x="wall"`), a run without epoch
    times is left out. One figure: one Plotly instance to draw."""
    whole = whole_model(words, component)
    styles = styles or run_styles([rs.run_id for rs in runs])
    panels = [*sorted({m for rs in runs for m in rs.modalities()}), whole]
    cols = len(panels)
    diff_px = 340 if pairs else 0
    specs = [[{}] * cols] + ([[{"colspan": cols}] + [None] * (cols - 1)] if pairs else [])
    titles = [*panels, f"AMST minus baseline ({split} {name})"] if pairs else panels
    total = height + diff_px + (70 if pairs else 0)
    fig = make_subplots(rows=len(specs), cols=cols, specs=specs, shared_yaxes=False, subplot_titles=titles,
                        horizontal_spacing=0.03, vertical_spacing=110 / total if pairs else 0.0,
                        row_heights=[height, diff_px] if pairs else None)
    sparse = any(evaluated_on_improvement(rs, split, words) for rs in runs)
    in_legend: set[str] = set()
    last = 0
    for col, panel in enumerate(panels, start=1):
        modality = None if panel == whole else panel
        for rs in runs:
            comp = component_at(words, rs, split, component, modality, name)
            epochs, values = rs.series((split, comp, modality, name))
            xs = x_values(epochs, run_clock(rs, clocks) if x == "wall" else None)
            if not epochs or xs is None:
                continue
            last = max([last, *shown(epochs)])
            style = styles[rs.run_id]
            if smoothing > 0:
                fig.add_trace(raw_line(xs, values, style["color"], rs.run_id), row=1, col=col)
            fig.add_trace(go.Scatter(x=xs, y=smooth(values, smoothing), mode=line_mode(epochs, sparse),
                                     name=labels[rs.run_id], legendgroup=rs.run_id,
                                     showlegend=rs.run_id not in in_legend,
                                     line={**style, "width": FUSED_WIDTH if modality is None else LINE_WIDTH},
                                     hovertemplate=f"{labels[rs.run_id]}: %{{y:.4f}}<extra></extra>"),
                          row=1, col=col)
            in_legend.add(rs.run_id)
    for annotation, panel in zip(fig.layout.annotations, panels, strict=False):
        annotation.font = {"color": modality_color(None if panel == whole else panel), "size": 15}
    lay_out(fig, height=total, **compare_legends(total, bool(pairs)))
    for col in range(2, cols + 1):  # one y range across the modality panels, as shared axes would give
        fig.update_yaxes(matches="y", showticklabels=False, row=1, col=col)
    if x == "wall":
        fig.update_xaxes(title_text="wall time (s)", rangemode="tozero", row=1)
    else:
        fig.update_xaxes(**epoch_axis(last), row=1)
    if pairs and x != "wall":  # the row below says "epoch": above, the title would crowd that row's own title
        fig.update_xaxes(title_text=None, row=1)
    fig.update_yaxes(autorange=True, **value_axis(name, log_y, words), row=1)
    fig.update_yaxes(title_text=f"{split} {name}" + (f" {sparse_note(words)}" if sparse else ""), row=1, col=1)
    if pairs:
        traces, diff_last = difference_traces(pairs, split, component, name, words, legend="legend2")
        if traces:
            fig.add_traces(traces, rows=2, cols=1)
        fig.add_hline(y=0, line={"color": "#999999", "width": 1}, row=2, col=1)
        fig.update_xaxes(**epoch_axis(diff_last), row=2, col=1)
        fig.update_yaxes(autorange=True, tickformat="+.2f", title_text=f"Δ {split} {name}", row=2, col=1)
    label_log_axes(fig)
    return fig


def compare_legends(total: int, pairs: bool) -> dict[str, dict[str, Any]]:
    """Compare's legends, each next to what it names: the runs' above the panels (over their titles), the
    pairs' under the difference row (below its epoch axis). Below the whole figure, the runs' legend sat under
    the difference row, far from its curves on a phone. Offsets are in pixels, turned into the plot's fractions."""
    plot_px = total - MARGIN["t"] - MARGIN["b"]
    legends = {"legend": {"x": 0, "y": 1 + 30 / plot_px, "yanchor": "bottom"}}
    if pairs:
        legends["legend2"] = {"x": 0, "y": -50 / plot_px, "yanchor": "top"}
    return legends


def difference_traces(pairs: Pairs, split: str, component: str, name: str, words: Words,
                      legend: str = "legend") -> tuple[list[go.Scatter], int]:
    """AMST run minus its baseline, per modality (its colour) and the whole model (bold); one dash per pair, each
    line its own legend entry (on `legend`), a pair's lines toggled together. Also the last epoch drawn (for
    the axis)."""
    whole = whole_model(words, component)
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    traces, last = [], 0
    for i, (amst, base, label) in enumerate(pairs):
        for modality in [*amst.modalities(), None]:
            comp = whole if modality is None else component
            epochs, diff = difference(amst, base, (split, comp, modality, name), words)
            if epochs:
                last = max([last, *shown(epochs)])
                traces.append(go.Scatter(
                    x=shown(epochs), y=diff, mode=line_mode(epochs), name=f"{label} − baseline · {modality or whole}",
                    legendgroup=f"pair{i}", legend=legend,
                    line={"color": modality_color(modality), "dash": dashes[i % len(dashes)],
                          "width": FUSED_WIDTH if modality is None else LINE_WIDTH},
                    hovertemplate=f"{label} · {modality or whole}: %{{y:+.4f}}<extra></extra>"))
    return traces, last


def difference_figure(pairs: Pairs, split: str, component: str, name: str, words: Words) -> go.Figure:
    """The differences alone, on one axis with a zero line."""
    traces, last = difference_traces(pairs, split, component, name, words)
    fig = go.Figure(traces)
    fig.add_hline(y=0, line={"color": "#999999", "width": 1})
    lay_out(fig, height=380, yaxis_title=f"Δ {split} {name} (AMST − baseline)")
    fig.update_xaxes(**epoch_axis(last))
    fig.update_yaxes(autorange=True, tickformat="+.2f")
    return fig


def resource_figure(rs: RunSeries) -> go.Figure | None:
    """The worker's GPU over the run: mean utilisation (%) and peak memory (GiB) per epoch; None without a GPU."""
    util = rs.series(("train", "run", None, "gpu_util"))
    memory = rs.series(("train", "run", None, "gpu_mem_gib"))
    if not util[0] and not memory[0]:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=["GPU utilisation (%)", "GPU memory (GiB)"],
                        horizontal_spacing=0.12)
    for col, (epochs, values), name, top in ((1, util, "utilisation", 100.0), (2, memory, "memory", None)):
        fig.add_trace(go.Scatter(x=shown(epochs), y=values, mode=line_mode(epochs), name=name,
                                 line={"color": FUSED_COLOR},
                                 hovertemplate=f"{name} %{{y:.1f}}<extra></extra>"), row=1, col=col)
        peak = max([v for v in values if v is not None], default=1.0)
        fig.update_yaxes(range=[0, top or max(1.0, peak * 1.2)], row=1, col=col)
    lay_out(fig, height=260, showlegend=False)
    fig.update_xaxes(**epoch_axis(max([0, *shown(util[0]), *shown(memory[0])])))
    return fig


def logged(rs: RunSeries, series: dict[str, Any], words: Words) -> list[tuple[str, str, str | None, str]]:
    """The keys of a declared run-level series in this run's points: one per modality, or one for the run."""
    return [k for k in rs.series_keys() if k[1] == words.run and k[0] == series["split"] and k[3] == series["name"]]


def run_series_figure(rs: RunSeries, declared: list[dict[str, Any]], words: Words,
                      log_y: bool = False) -> go.Figure | None:
    """Run-level series as declared (GET /vocabulary's engine series, GET /methods' series of the run's method),
    those the run logged: a row each, a line per modality in its colour (or one for the whole run); bounded ones on
    [0, 1], losses on a log scale when asked. A method's new series appear here with no edit of the dashboard.
    None when the run logged none of them."""
    present = [(s, keys) for s in declared if (keys := logged(rs, s, words))]
    if not present:
        return None
    fig = make_subplots(rows=len(present), cols=1, shared_xaxes=True, vertical_spacing=0.5 / (len(present) + 1),
                        subplot_titles=[s["name"] for s, _ in present])
    traces, rows, last = [], [], 0
    for row, (s, keys) in enumerate(present, start=1):
        for key in keys:
            epochs, values = rs.series(key)
            last = max([last, *shown(epochs)])
            label = curve_label(s["name"], key[2])
            traces.append(go.Scatter(x=shown(epochs), y=values, mode=line_mode(epochs), name=label, legendgroup=label,
                                     showlegend=False, line={"color": modality_color(key[2]), "width": LINE_WIDTH},
                                     hovertemplate=f"{label}: %{{y:.4g}}<extra>{s['description']}</extra>"))
            rows.append(row)
        fig.update_yaxes(row=row, col=1, autorange=True, **kind_axis(s["kind"], log_y))
    fig.add_traces(traces, rows=rows, cols=[1] * len(rows))
    lay_out(fig, height=60 + 190 * len(present), showlegend=False)
    fig.update_xaxes(**{k: v for k, v in epoch_axis(last).items() if k != "title_text"})
    fig.update_xaxes(title_text="epoch", row=len(present))
    label_log_axes(fig)
    return fig


def band_figure(bands: dict[str, dict[str, Band]], split: str, name: str, whole: str, height: int = 420,
                styles: dict[str, dict[str, Any]] | None = None, x: str = "epoch", log_y: bool = False,
                words: Words | None = None) -> go.Figure:
    """Grouped curves: a panel per modality and fused, each group its mean line over a +-1 std band, one colour
    per group (seeds collapse into the band, groups stay separate lines): `styles` by group (Compare gives each
    group its first run's), else by the groups' order. On a wall-time axis (`x="wall"`) a group's points sit at
    its runs' mean wall clock; a loss on a log scale with `log_y` (and `words`, which say what a loss is)."""
    panels = list(bands)
    fig = make_subplots(rows=1, cols=max(1, len(panels)), shared_yaxes=True, subplot_titles=panels,
                        horizontal_spacing=0.03)
    groups = sorted({g for by_group in bands.values() for g in by_group})
    styles = styles or {label: run_style(i) for i, label in enumerate(groups)}
    for col, panel in enumerate(panels, start=1):
        for label, band in bands[panel].items():
            style = styles[label]
            color = style["color"]
            first = col == 1
            xs = band.seconds if x == "wall" else shown(band.epochs)
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=band.high + band.low[::-1], fill="toself",
                                     fillcolor=color, opacity=0.18, line={"width": 0}, hoverinfo="skip",
                                     legendgroup=label, showlegend=False), row=1, col=col)
            fig.add_trace(go.Scatter(x=xs, y=band.mean, mode=line_mode(band.epochs),
                                     name=f"{label} (n={band.runs})", legendgroup=label, showlegend=first,
                                     line={**style, "width": FUSED_WIDTH if panel == whole else LINE_WIDTH}),
                          row=1, col=col)
    for annotation, panel in zip(fig.layout.annotations, panels, strict=False):
        annotation.font = {"color": modality_color(None if panel == whole else panel), "size": 15}
    lay_out(fig, height=height)
    last = max((e + 1 for by_group in bands.values() for b in by_group.values() for e in b.epochs), default=0)
    if x == "wall":
        fig.update_xaxes(title_text="mean wall time (s)", rangemode="tozero")
    else:
        fig.update_xaxes(**epoch_axis(last))
    fig.update_yaxes(autorange=True, **(value_axis(name, log_y, words) if words else {}))
    fig.update_yaxes(title_text=f"{split} {name} (mean +- 1 std)", col=1)
    label_log_axes(fig)
    return fig


def heatmap_figure(rows: list[dict[str, Any]], x_key: str, y_key: str, measure: str) -> go.Figure:
    """A measure's mean over two grid keys (cells that share both values averaged again), its value written in
    each cell with the number of runs."""
    xs = sorted({r["cell"][x_key] for r in rows}, key=sort_key)
    ys = sorted({r["cell"][y_key] for r in rows}, key=sort_key)
    z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    text: list[list[str]] = [[""] * len(xs) for _ in ys]
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            cells = [r["stats"][measure] for r in rows if r["cell"][x_key] == x and r["cell"][y_key] == y
                     and r["stats"].get(measure, {}).get("mean") is not None]
            if cells:
                z[i][j] = sum(c["mean"] for c in cells) / len(cells)
                text[i][j] = f"{z[i][j]:.3f} (n={sum(c['count'] for c in cells)})"
    fig = go.Figure(go.Heatmap(x=[str(x) for x in xs], y=[str(y) for y in ys], z=z, text=text,
                               texttemplate="%{text}", colorscale="Viridis", colorbar={"title": measure}))
    fig.update_layout(height=120 + 60 * len(ys), xaxis_title=x_key, yaxis_title=y_key, xaxis_type="category",
                      yaxis_type="category", **{**LAYOUT, "margin": {"l": 10, "r": 10, "t": 10, "b": 10}})
    return fig


def sort_key(value: Any) -> tuple:
    """Numbers in order, then text (a grid mixes 1, 2, 5 and auto)."""
    return (0, float(value), "") if isinstance(value, int | float) and not isinstance(value, bool) else (1, 0.0,
                                                                                                         str(value))
