"""JSON errors: `{"error": {"status", "message", "field", "details"}}` for every failure, with a message a person
can act on and the field it is about. Bad input is a 4xx; a 500 means a bug (and is logged)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from amst_core.config import PRINTABLE
from amst_core.extras import MissingExtra

log = logging.getLogger("amst.api")

# A validator message that starts with its own dotted field path ("dataset.preset: unknown preset ...").
_PATH_PREFIX = re.compile(r"^([A-Za-z_]\w*(?:\.\w+)*): (.+)$", re.DOTALL)
HEAD_AS_GET = "amst.head_as_get"  # in the scope of a HEAD request routed as a GET (api.guards.HeadAsGet)
# Where FastAPI puts an input; not part of the field name a person would look for.
_LOCATIONS = ("body", "query", "path", "header", "cookie")


class ApiError(StarletteHTTPException):
    """An error answered as JSON; `field` names the input it is about (dotted path, parameter or header)."""

    def __init__(self, status: int, message: str, field: str | None = None,
                 details: Sequence[Mapping[str, Any]] = (), headers: Mapping[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=dict(headers) if headers else None)
        self.message = message
        self.field = field
        self.details = [dict(d) for d in details]


def error_body(status: int, message: str, field: str | None = None,
               details: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    return {"error": {"status": status, "message": message, "field": field, "details": list(details)}}


def problems(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as [{field, message, type}]: no raw input echoed back (it can be huge)."""
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        if loc and loc[0] in _LOCATIONS:
            # A body path is dotted (dataset.name); a query, header or path parameter is named as it is sent
            # (`status`, not `status.0` for the first value of a repeated parameter).
            loc = loc[1:] if loc[0] == "body" else loc[1:2]
        field = ".".join(loc) or None
        message = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
        match = _PATH_PREFIX.match(message)
        if match and (field is None or match.group(1) == field or match.group(1).startswith(field + ".")):
            field, message = match.group(1), match.group(2)  # the validator knew the exact field
        if field is None and e.get("type") in ("model_type", "dict_type", "model_attributes_type"):
            message = "the body must be a JSON object of RunConfig fields"
        if e.get("type") == "string_pattern_mismatch" and (e.get("ctx") or {}).get("pattern") == PRINTABLE:
            message = ("must be visible text: no control characters (NUL, newlines, tabs, ...), line separators "
                       "or bidirectional overrides, and not only spaces or zero-width characters")
        out.append({"field": field, "message": message, "type": str(e.get("type", "value_error"))})
    return out


def validation_error(errors: Sequence[Mapping[str, Any]], status: int = 422) -> ApiError:
    """One ApiError for a list of problems: the message lists them, `field` is the first one."""
    found = problems(errors)
    lines = [f"{p['field']}: {p['message']}" if p["field"] else p["message"] for p in found]
    message = "; ".join(lines[:5]) + (f"; and {len(lines) - 5} more" if len(lines) > 5 else "")
    return ApiError(status, message or "invalid request", found[0]["field"] if found else None, found)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.status_code, exc.message, exc.field, exc.details), exc.status_code,
                        headers=exc.headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method the API documents at this path, so that `Allow` says what the OpenAPI schema says (Starlette
    would name only the methods of the first route that matched)."""
    table = getattr(request.app.state, "allow_table", None)
    if table is None:
        table = request.app.state.allow_table = [
            (compile_path(path)[0], {m.upper() for m in operations})
            for path, operations in request.app.openapi()["paths"].items()]
    methods = {"OPTIONS"}
    for pattern, declared in table:
        if pattern.match(request.url.path):
            methods |= declared
    if "GET" in methods:  # api.guards.HeadAsGet: implicit in the schema, as in most frameworks
        methods.add("HEAD")
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, ApiError):
        return await _api_error(request, exc)
    if exc.status_code == 405:
        allow = ", ".join(allowed_methods(request))
        if request.method == "OPTIONS":  # a question about the resource, answered (RFC 9110 9.3.7)
            return Response(status_code=204, headers={"Allow": allow})
        method = "HEAD" if request.scope.get(HEAD_AS_GET) else request.method
        message = f"{method} is not allowed on {request.url.path}; it allows {allow}"
        return JSONResponse(error_body(405, message), 405, headers={"Allow": allow})
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":  # routing, not a run
        message = f"no route for {request.method} {request.url.path}; the API is described at /docs"
    return JSONResponse(error_body(exc.status_code, message), exc.status_code, headers=exc.headers)


async def _request_invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if bad_json is not None:
        reason = (bad_json.get("ctx") or {}).get("error", "cannot be parsed")
        return JSONResponse(error_body(400, f"malformed JSON: {reason}", "body"), 400)
    err = validation_error(errors)
    return JSONResponse(error_body(err.status_code, err.message, err.field, err.details), err.status_code)


async def _database_down(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database error: %s", exc)
    return JSONResponse(error_body(503, "the database is unavailable; try again shortly"), 503)


async def _database_busy(_request: Request, exc: Exception) -> JSONResponse:
    """Every connection of the pool stayed busy (amst_core.store.db sizes it to the API's threads, so this
    means a stuck database): a 503 to retry, with the same Idempotency-Key where the request had one."""
    log.error("no database connection within the pool's timeout: %s", exc)
    return JSONResponse(error_body(503, "the database is busy; try again shortly"), 503)


async def _missing_extra(_request: Request, exc: Exception) -> JSONResponse:
    """A route that needs an optional package this server was installed without (amst_core.extras)."""
    log.error("%s", exc)
    return JSONResponse(error_body(501, str(exc)), 501)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(error_body(500, "internal error; the server log has the details"), 500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(PoolTimeout, _database_busy)
    app.add_exception_handler(MissingExtra, _missing_extra)
    app.add_exception_handler(Exception, _unexpected)
