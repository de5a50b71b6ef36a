"""What protects the API from a request before a route sees it: a bound on body size, and the rule for routes that
change something (POST, DELETE).

Mutating routes: with AMST_API_TOKEN set, they need `Authorization: Bearer <token>` (a browser never attaches it
by itself). Without a token they are open to any program, but not to other web sites: a request must say
`Content-Type: application/json` when it is a POST (a cross-site form or a "simple" fetch cannot, without a CORS
preflight this server never grants; a DELETE always needs that preflight) and, when a browser sends `Origin`,
come from an origin in AMST_ALLOWED_ORIGINS (the dashboard's). Together they stop cross-site request forgery
from any page the user happens to visit.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import HEAD_AS_GET, ApiError, error_body

# auto_error=False: we answer the missing-token case ourselves, as JSON. The OpenAPI schema declares the scheme
# only when the server has a token (api.main.custom_openapi).
bearer = HTTPBearer(auto_error=False, description="AMST_API_TOKEN, when the server sets one")
JSON = "application/json"


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    settings = request.app.state.settings
    expected: str = settings.api_token
    if not expected:
        same_site_json(request, settings.origins)
        return
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "this route needs the API token: send the header 'Authorization: Bearer <token>'",
                       "Authorization", headers={"WWW-Authenticate": "Bearer"})
    # Bytes, because compare_digest refuses non-ASCII str; constant time, so the token cannot be guessed by timing.
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(403, "the bearer token is not valid for this server", "Authorization")


def same_site_json(request: Request, allowed_origins: frozenset[str]) -> None:
    """Without a token: JSON only, and from an allowed origin when the caller is a browser."""
    origin = request.headers.get("origin")
    if origin is not None and origin.rstrip("/") not in allowed_origins:
        raise ApiError(403, f"requests from the web page at {origin[:200]} may not change runs; if the dashboard "
                            "is served there, add that origin to AMST_ALLOWED_ORIGINS", "Origin")
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # Only POST can be a "simple" cross-site request; a DELETE always needs the preflight this server refuses.
    if request.method == "POST" and media_type != JSON:
        raise ApiError(415, f"{request.method} {request.url.path} needs the header 'Content-Type: {JSON}' "
                            "(without AMST_API_TOKEN that is what tells this server the request is not "
                            "forged by another web site)", "Content-Type")


class BodyLimit:
    """ASGI middleware: a request body larger than `max_bytes` is refused with 413, whether it announces its
    length or streams in chunks, before the application holds more than that in memory."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self.too_large(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # raised inside the route: answered by the ApiError handler
                    raise self.error()
            return message

        await self.app(scope, limited, send)

    def error(self) -> ApiError:
        return ApiError(413, f"the request body is larger than {self.max_bytes:,} bytes, the most this server "
                             "accepts (AMST_MAX_BODY_BYTES); a run config is a few kilobytes", "body")

    async def too_large(self, send: Send) -> None:
        err = self.error()
        response = JSONResponse(error_body(413, err.message, err.field), 413, headers={"Connection": "close"})
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class _HeadersSent(Exception):
    """Stops the GET behind a HEAD once its status and headers are out (an event stream never ends by itself)."""


class HeadAsGet:
    """ASGI middleware: HEAD is answered wherever GET is (RFC 9110 9.3.2), with the GET's status and headers and
    no body. FastAPI's routes answer only the methods they name, and naming HEAD beside GET would put a second
    operation with the same id in the OpenAPI schema; HEAD is implicit there, as in most frameworks."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                await send(message)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                raise _HeadersSent

        with contextlib.suppress(_HeadersSent):
            await self.app({**scope, "method": "GET", HEAD_AS_GET: True}, receive, headers_only)
