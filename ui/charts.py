"""Plotly figures of the dashboard. Each modality keeps its colour everywhere; fused is bold."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ui.series import Balance, RunSeries, difference, smooth, wall_clock
from ui.style import COMPONENT_DASH, FUSED_WIDTH, LINE_WIDTH, MODALITY_COLORS, RUN_COLORS, modality_color

LAYOUT = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}, "legend": {"orientation": "h", "y": -0.18},
          "hovermode": "x unified", "template": "plotly_white"}
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def curve_label(component: str, modality: str | None) -> str:
    return f"{component} · {modality}" if modality else component


def curves_figure(rs: RunSeries, name: str, splits: list[str], components: list[str], x: str = "epoch",
                  smoothing: float = 0.0, log_y: bool = False, height: int = 420) -> go.Figure:
    """One panel per split; one line per (component, modality) of metric `name`."""
    fig = make_subplots(rows=1, cols=max(1, len(splits)), shared_yaxes=True, subplot_titles=splits,
                        horizontal_spacing=0.03)
    clock = wall_clock(rs) if x == "wall" else {}
    for col, split in enumerate(splits, start=1):
        for key in rs.series_keys():
            s, component, modality, n = key
            if s != split or n != name or component not in components:
                continue
            epochs, values = rs.series(key)
            xs = [clock.get(e) for e in epochs] if clock else epochs
            label = curve_label(component, modality)
            fig.add_trace(go.Scatter(
                x=xs, y=smooth(values, smoothing), mode="lines", name=label, legendgroup=label,
                showlegend=col == 1, line={"color": modality_color(modality),
                                           "width": FUSED_WIDTH if modality is None else LINE_WIDTH,
                                           "dash": COMPONENT_DASH.get(component, "solid")},
                hovertemplate=f"{label}: %{{y:.4f}}<extra></extra>"), row=1, col=col)
    fig.update_layout(height=height, **LAYOUT)
    fig.update_xaxes(title_text="wall time (s)" if x == "wall" else "epoch")
    fig.update_yaxes(title_text=name, col=1)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def balance_figure(b: Balance) -> go.Figure:
    """Branch (solid) and helper (hatched) accuracy per modality at the latest epoch."""
    modalities = [r["modality"] for r in b.rows]
    colors = [modality_color(m) for m in modalities]
    fig = go.Figure([
        go.Bar(x=modalities, y=[r["branch"] for r in b.rows], name="branch", marker={"color": colors},
               texttemplate="%{y:.3f}"),
        go.Bar(x=modalities, y=[r["helper"] for r in b.rows], name="helper (linear probe)",
               marker={"color": colors, "pattern": {"shape": "/"}, "opacity": 0.6}, texttemplate="%{y:.3f}"),
    ])
    fig.update_layout(barmode="group", height=300, yaxis={"title": f"{b.split} accuracy", "range": [0, 1]},
                      title=f"epoch {b.epoch}" if b.epoch is not None else "no epoch yet", **LAYOUT)
    return fig


def gap_figure(b: Balance) -> go.Figure:
    fig = go.Figure(go.Scatter(x=b.gap_epochs, y=b.gap_values, mode="lines+markers", name="gap",
                               line={"color": MODALITY_COLORS["fused"]}))
    fig.update_layout(height=300, title="strongest − weakest branch accuracy", xaxis_title="epoch",
                      yaxis_title="gap", **LAYOUT)
    return fig


def skip_figure(modalities: list[str], epochs: list[int], grid: list[list[float | None]]) -> go.Figure:
    """A strip per modality: a filled square where it was updated, a hollow one where it was skipped."""
    fig = go.Figure()
    for m, row in zip(modalities, grid, strict=True):
        for updated, symbol, label in ((1.0, "square", "updated"), (0.0, "square-open", "skipped")):
            xs = [e for e, v in zip(epochs, row, strict=True) if v == updated]
            fig.add_trace(go.Scatter(x=xs, y=[m] * len(xs), mode="markers", name=f"{m} {label}",
                                     marker={"symbol": symbol, "size": 11, "color": modality_color(m)},
                                     hovertemplate=f"{m}: {label} in epoch %{{x}}<extra></extra>"))
    fig.update_layout(height=80 + 40 * max(1, len(modalities)), showlegend=False, xaxis_title="epoch",
                      **{**LAYOUT, "margin": {"l": 10, "r": 10, "t": 10, "b": 10}})
    return fig


def compare_figure(runs: list[RunSeries], labels: dict[str, str], split: str, component: str, name: str,
                   smoothing: float = 0.0, height: int = 420) -> go.Figure:
    """A panel per modality (its title in the modality's colour) and fused; one colour per run."""
    panels = [*sorted({m for rs in runs for m in rs.modalities()}), "fused"]
    fig = make_subplots(rows=1, cols=len(panels), shared_yaxes=True, subplot_titles=panels, horizontal_spacing=0.03)
    for col, panel in enumerate(panels, start=1):
        modality = None if panel == "fused" else panel
        comp = "fused" if modality is None else component
        for i, rs in enumerate(runs):
            epochs, values = rs.series((split, comp, modality, name))
            if not epochs:
                continue
            fig.add_trace(go.Scatter(x=epochs, y=smooth(values, smoothing), mode="lines", name=labels[rs.run_id],
                                     legendgroup=rs.run_id, showlegend=col == 1,
                                     line={"color": RUN_COLORS[i % len(RUN_COLORS)],
                                           "width": FUSED_WIDTH if modality is None else LINE_WIDTH}),
                          row=1, col=col)
    for annotation, panel in zip(fig.layout.annotations, panels, strict=False):
        annotation.font = {"color": modality_color(None if panel == "fused" else panel), "size": 15}
    fig.update_layout(height=height, **LAYOUT)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=f"{split} {name}", col=1)
    return fig


def difference_figure(pairs: list[tuple[RunSeries, RunSeries, str]], split: str, component: str,
                      name: str) -> go.Figure:
    """AMST run minus its baseline, per modality (its colour) and fused (bold); one dash per pair."""
    fig = go.Figure()
    dashes = ("solid", "dash", "dot", "dashdot", "longdash")
    for i, (amst, base, label) in enumerate(pairs):
        for modality in [*amst.modalities(), None]:
            comp = "fused" if modality is None else component
            epochs, diff = difference(amst, base, (split, comp, modality, name))
            if epochs:
                fig.add_trace(go.Scatter(
                    x=epochs, y=diff, mode="lines", name=f"{label} · {modality or 'fused'}",
                    line={"color": modality_color(modality), "dash": dashes[i % len(dashes)],
                          "width": FUSED_WIDTH if modality is None else LINE_WIDTH}))
    fig.add_hline(y=0, line={"color": "#999999", "width": 1})
    fig.update_layout(height=380, xaxis_title="epoch", yaxis_title=f"Δ {split} {name} (AMST − baseline)", **LAYOUT)
    return fig
