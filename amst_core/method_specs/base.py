"""What a method is, said once and without torch: `MethodSpec`, and the parameter classes methods share.

A method is its implementation (`amst_core/methods/<name>.py`, torch) plus a spec module here (its summary,
parameters class, config checks and the run-level series it logs) and one line in
`amst_core.method_specs.BUILTIN`; a plugin (AMST_PLUGINS) registers its spec itself. The run config, the
catalog and the API read only the spec (the API never imports torch); the engine imports `implementation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from amst_core.registry import SpecError
from amst_core.vocab import RunSeries

if TYPE_CHECKING:
    from amst_core.config import RunConfig

Fusion = Literal["concat", "lsum", "msum"]
SkipMode = Literal["faithful", "fast"]
# (run config, its validated params) -> None; raises ValueError starting with the field it is about.
MethodCheck = Callable[["RunConfig", Any], None]


class MethodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoParams(MethodParams):
    pass


class SkipParams(MethodParams):
    skip_mode: SkipMode = Field(
        "faithful",
        description="faithful: skipped encoders still run forward in train mode (reference); "
        "fast: a skipped modality's encoder does no work at all in that epoch",
    )


class Window(MethodParams):
    """Epochs [modulation_start, modulation_end], both included, in which a baseline's rule acts."""

    modulation_start: int = Field(0, ge=0, description="first epoch the rule acts in")
    modulation_end: int = Field(50, ge=0, description="last epoch the rule acts in (included)")

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.modulation_end < self.modulation_start:
            raise ValueError(f"modulation_end: {self.modulation_end} is before modulation_start "
                             f"{self.modulation_start}")
        return self

    def active(self, epoch: int) -> bool:
        return self.modulation_start <= epoch <= self.modulation_end


@dataclass(frozen=True)
class MethodSpec:
    name: str
    summary: str
    params: type[MethodParams]
    default_fusion: Fusion
    fusion_fixed: bool  # True when the method forces its own heads
    uses_skip: bool
    implementation: str = ""  # "module:Class" of its torch `Method`
    modalities: int | None = None  # a method for datasets of exactly this many modalities
    # Run-level series (component `run`) the method logs beyond the engine's (vocab.ENGINE_SERIES): the dashboard
    # draws whatever is declared here, and the points-per-run estimate counts them.
    series: tuple[RunSeries, ...] = ()
    check: MethodCheck | None = None  # its own config rules, beyond the generic ones above
    # What it evaluates, for the points-per-run estimate (amst_core.limits): the component prefixes of the networks
    # it trains (vocab.MODULE_PREFIXES: FULL's alt_ and joint_), its predictions per modality beyond the branches
    # and helpers (PMR's prototype), and the names of its combined predictions for a run's modalities (MLA's
    # `combo:<name>`, evaluated on val and test, each tracked by model selection).
    modules: tuple[str, ...] = ("",)
    modality_components: tuple[str, ...] = ()
    combos: Callable[[tuple[str, ...]], tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        if ":" not in self.implementation:
            raise SpecError(f"method {self.name!r}: implementation must name its Method class as 'module:Class'")
        if not (isinstance(self.params, type) and issubclass(self.params, BaseModel)):
            raise SpecError(f"method {self.name!r}: params must be a pydantic model class (NoParams for none)")
