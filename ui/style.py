"""One look across the whole dashboard: a stable colour per modality, per status, a dash per component.

These tables style the words the API serves (GET /vocabulary); they are not the lists of those words: a word
without an entry here (a status or a modality the library adds) is drawn in a neutral colour, never left out.
"""

from __future__ import annotations

# Colour-blind-safe (Okabe-Ito); fused (the prediction of all modalities) is near-black and drawn bold.
MODALITY_COLORS: dict[str, str] = {"audio": "#E69F00", "visual": "#0072B2", "text": "#009E73", "fused": "#222222"}
FUSED_COLOR = MODALITY_COLORS["fused"]
NEUTRAL = "#777777"
FUSED_WIDTH, LINE_WIDTH = 3.5, 1.8

STATUS_COLORS: dict[str, str] = {
    "queued": "#8c8c8c", "starting": "#56B4E9", "running": "#0072B2", "succeeded": "#009E73",
    "failed": "#D55E00", "cancelled": "#6c6c6c", "lost": "#CC79A7", "stalled": "#E69F00",
}
STATUS_BADGE: dict[str, str] = {  # st.badge colours
    "queued": "gray", "starting": "blue", "running": "blue", "succeeded": "green", "failed": "red",
    "cancelled": "gray", "lost": "violet", "stalled": "orange",
}
WORKER_BADGE: dict[str, str] = {"alive": "green", "lost": "violet", "stopped": "gray"}  # as the run statuses

COMPONENT_DASH: dict[str, str] = {
    "fused": "solid", "branch": "solid", "helper": "dot", "alt": "dash", "joint": "dashdot",
    "alt_branch": "dash", "joint_branch": "dashdot", "alt_helper": "dot", "joint_helper": "longdashdot",
    "prototype": "longdash",
}
# Run colours on the Compare page, where each panel is one modality: none of them near a modality's hue (no
# blue, orange or green) nor the fused near-black; after five runs the same colours come back dashed.
RUN_COLORS = ("#CC79A7", "#7B3294", "#D62728", "#8C564B", "#7F7F7F")
RUN_DASHES = ("solid", "dot")


def modality_color(modality: str | None) -> str:
    return MODALITY_COLORS.get(modality or "fused", NEUTRAL)


def status_color(status: str) -> str:
    return STATUS_COLORS.get(status, NEUTRAL)


def status_badge(status: str) -> str:
    return STATUS_BADGE.get(status, "gray")


def worker_badge(state: str) -> str:
    return WORKER_BADGE.get(state, "gray")


def status_label(status: str) -> str:
    """For tables, where the cell is coloured by STATUS_COLORS: a dot that needs no emoji font."""
    return f"● {status}"
