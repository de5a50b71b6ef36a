"""API settings: the shared service settings (amst_core.settings) plus the few knobs only the API reads."""

from __future__ import annotations

from pydantic import Field

from amst_core.settings import Settings, get_settings


class ApiSettings(Settings):
    sse_keepalive_s: float = Field(15.0, alias="AMST_SSE_KEEPALIVE_S", gt=0,
                                   description="idle seconds before an event stream sends a keep-alive comment")


def api_settings(settings: Settings | None = None) -> ApiSettings:
    """ApiSettings from the environment, or from given shared Settings (their values win over the environment)."""
    if isinstance(settings, ApiSettings):
        return settings
    if settings is None:
        return ApiSettings()
    return ApiSettings(**settings.model_dump())


__all__ = ["ApiSettings", "Settings", "api_settings", "get_settings"]
