"""The product's words as the API serves them (GET /vocabulary, GET /methods), for the dashboard's pure functions.

The dashboard keeps no list of modalities, splits, statuses or components of its own: a page fetches these once
per browser session (ui.common.words) and hands them to what it draws, so a word the library adds (a status, a
method's run-level series) reaches every page with no edit here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Words:
    modalities: tuple[str, ...]
    splits: tuple[str, ...]
    eval_splits: tuple[str, ...]  # the splits a model is judged on, the one it is chosen on first
    statuses: tuple[str, ...]
    active: tuple[str, ...]  # may still change by itself
    terminal: tuple[str, ...]  # ended (a retry may start it again)
    live: tuple[str, ...]  # a worker holds it
    pending: tuple[str, ...]  # no epoch under way yet
    retryable: tuple[str, ...]
    sweep_active: tuple[str, ...]
    fused: str
    branch: str
    helper: str
    run: str  # the component of run-level series
    combo_prefix: str
    families: dict[str, tuple[str, ...]]  # fused/branch/helper -> every member, the plain one first
    optimizer_parts: tuple[str, ...]  # components of learning-rate points
    bounded: tuple[str, ...]  # metrics in [0, 1]
    losses: tuple[str, ...]
    gaps: tuple[str, ...]  # imbalance gaps (strongest minus weakest modality), in [0, 1]
    engine_series: tuple[dict[str, Any], ...] = field(default=())

    @classmethod
    def of(cls, served: dict[str, Any]) -> Words:
        """From GET /vocabulary's body."""
        c, st, m = served["components"], served["statuses"], served["metrics"]
        return cls(
            modalities=tuple(served["modalities"]), splits=tuple(served["splits"]),
            eval_splits=tuple(served["eval_splits"]), statuses=tuple(st["all"]),
            active=tuple(st["active"]), terminal=tuple(st["terminal"]), live=tuple(st["live"]),
            pending=tuple(st["pending"]), retryable=tuple(st["retryable"]),
            sweep_active=tuple(served["sweep_statuses"]["active"]),
            fused=c["fused"], branch=c["branch"], helper=c["helper"], run=c["run"], combo_prefix=c["combo_prefix"],
            families={k: tuple(v) for k, v in c["families"].items()}, optimizer_parts=tuple(c["optimizer_parts"]),
            bounded=tuple(m["bounded"]), losses=tuple(m["loss"]), gaps=tuple(m["gap"]),
            engine_series=tuple(served["engine_series"]))

    def family(self, component: str) -> tuple[str, ...]:
        """What a family's name stands for (branch -> branch, alt_branch, joint_branch: AMST-FULL has no plain
        branch); any other component stands for itself."""
        return self.families.get(component, (component,)) if component != self.fused else (component,)

    def is_prediction(self, component: str) -> bool:
        """A component whose points measure a prediction (not run-level series, not an optimizer's part)."""
        return component != self.run and component not in self.optimizer_parts

    def is_combo(self, component: str) -> bool:
        return component.startswith(self.combo_prefix)

    def judged_first(self) -> list[str]:
        """Every split, those a model is judged on first (a split choice's options, the default first)."""
        return [*self.eval_splits, *(s for s in self.splits if s not in self.eval_splits)]

    def series_of(self, method: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The run-level series a run of this method logs: the engine's, then the method's own (GET /methods)."""
        return [*self.engine_series, *((method or {}).get("series") or [])]


def amst_methods(methods: Iterable[dict[str, Any]]) -> list[str]:
    """The AMST methods: those that skip (GET /methods' uses_skip)."""
    return [m["name"] for m in methods if m["uses_skip"]]
