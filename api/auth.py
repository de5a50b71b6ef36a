"""Bearer-token check for the routes that change something (POST, DELETE); reads stay open."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError

# auto_error=False: we answer the missing-token case ourselves, as JSON; the scheme also puts the
# "Authorize" button on /docs.
bearer = HTTPBearer(auto_error=False, description="AMST_API_TOKEN, when the server sets one")


def require_token(request: Request,
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    expected: str = request.app.state.settings.api_token
    if not expected:
        return
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "this route needs the API token: send the header 'Authorization: Bearer <token>'",
                       "Authorization", headers={"WWW-Authenticate": "Bearer"})
    # Bytes, because compare_digest refuses non-ASCII str; constant time, so the token cannot be guessed by timing.
    if not secrets.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(403, "the bearer token is not valid for this server", "Authorization")
