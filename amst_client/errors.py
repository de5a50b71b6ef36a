"""The client's two failures: the API answered with an error (`ApiError`: its status, and the message and field of
the API's JSON error body), or no usable answer came at all (`ApiUnavailable`: down, too slow, not the AMST API)."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(Exception):
    """The API refused the request. `message` is the API's own (it starts with the field it is about); `field`
    names that input (a dotted body path, a parameter or a header); `details` lists every problem found."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.details = status, message, field, details or []


class ApiUnavailable(Exception):
    """No answer to act on: the API is not running, did not answer in time, or something else answered."""


def error_of(response: httpx.Response) -> ApiError:
    """The API's JSON error body, or a plain description of whatever else answered."""
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error["message"], error.get("field"), error.get("details"))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(response.status_code, f"HTTP {response.status_code} from {response.request.url.path}: {text}")
