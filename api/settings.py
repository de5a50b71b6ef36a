"""API settings: the shared service settings (amst_core.settings) plus the few knobs only the API reads."""

from __future__ import annotations

from pydantic import Field

from amst_core.limits import Limits
from amst_core.settings import Settings, get_settings


class ApiSettings(Settings):
    api_token: str = Field("", alias="AMST_API_TOKEN", description="bearer token for mutating routes, if set")
    sse_poll_s: float = Field(0.25, alias="AMST_SSE_POLL_S", gt=0)
    gc_interval_s: float = Field(3600.0, alias="AMST_GC_INTERVAL_S", ge=0,
                                 description="how often the API applies the retention policy (0: never)")
    sse_keepalive_s: float = Field(15.0, alias="AMST_SSE_KEEPALIVE_S", gt=0,
                                   description="idle seconds before an event stream sends a keep-alive comment")
    limits: Limits = Field(default_factory=Limits, description="what one request may ask (AMST_MAX_*)")
    sweep_max_concurrent: int = Field(2, alias="AMST_SWEEP_MAX_CONCURRENT", ge=1, le=10_000,
                                      description="runs of one sweep dispatched at once at most (a sweep may ask "
                                                  "fewer): single runs never wait behind a whole sweep")
    sweep_max_dataset_checks: int = Field(20, alias="AMST_SWEEP_MAX_DATASET_CHECKS", ge=1, le=10_000,
                                          description="distinct datasets (dataset and model fields) one sweep may "
                                                      "ask the server to check; each may scan a whole folder")
    allowed_origins: str = Field(
        "http://127.0.0.1:8501,http://localhost:8501,http://127.0.0.1:8000,http://localhost:8000",
        alias="AMST_ALLOWED_ORIGINS",
        description="comma-separated web origins (the dashboard's, /docs) whose pages may change runs when no "
                    "token is set")

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/") for o in self.allowed_origins.split(",") if o.strip())


def api_settings(settings: Settings | None = None) -> ApiSettings:
    """ApiSettings from the environment, or from given shared Settings (their values win over the environment)."""
    if isinstance(settings, ApiSettings):
        return settings
    if settings is None:
        return ApiSettings()
    return ApiSettings(**settings.model_dump())


__all__ = ["ApiSettings", "Settings", "api_settings", "get_settings"]
