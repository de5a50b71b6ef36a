"""Dashboard settings, from the environment (the dashboard needs nothing but the API's address)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class UiSettings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    api_url: str = Field("http://127.0.0.1:8000", alias="AMST_API_URL", description="where the REST API listens")
    api_token: str = Field("", alias="AMST_API_TOKEN", description="bearer token for submit, cancel and retry")
    refresh_s: float = Field(2.0, alias="AMST_UI_REFRESH_S", gt=0, description="live pages refresh interval")
    timeout_s: float = Field(5.0, alias="AMST_API_TIMEOUT_S", gt=0, description="give up on an API call after this")


@lru_cache
def ui_settings() -> UiSettings:
    return UiSettings()
