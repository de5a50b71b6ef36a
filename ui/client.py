"""The dashboard's only way to the data: a small client of the REST API.

Every failure becomes one of two exceptions with a message a person can act on, so that a page can show it
instead of a traceback: `ApiUnavailable` (the API is down, slow or answered garbage) and `ApiError` (the API
refused the request; `field` names the input it is about, as in the API's error body).
"""

from __future__ import annotations

from typing import Any

import httpx

# Mutating calls say they are JSON even without a body: an API without a token refuses anything else (CSRF).
JSON = {"Content-Type": "application/json"}


class ApiUnavailable(Exception):
    pass


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, details: list | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.details = status, message, field, details or []


class ApiClient:
    def __init__(self, base_url: str, token: str = "", timeout_s: float = 5.0,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)
        self.calls = 0  # requests made, for the per-refresh budget (tests and the benchmark read it)

    def request(self, method: str, path: str, allow: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """The response; a status >= 400 (except those in `allow`) raises ApiError."""
        self.calls += 1
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiUnavailable(f"The AMST API at {self.base_url} did not answer within {self.http.timeout.read:g} s."
                                 " It may be overloaded; try again in a moment.") from None
        except httpx.HTTPError as err:
            raise ApiUnavailable(f"Cannot reach the AMST API at {self.base_url} ({type(err).__name__}). "
                                 "Is it running? Start everything with `amst up`, or set AMST_API_URL.") from None
        if response.status_code >= 400 and response.status_code not in allow:
            raise error_of(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ApiUnavailable(f"The API at {self.base_url} answered {path} with something that is not JSON; "
                                 "is AMST_API_URL pointing at the AMST API?") from None

    # ---- routes ---------------------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The API's health; 503 is an answer too (the database or the broker is down, and it says which)."""
        return self.json("GET", "/health", allow=(503,))

    def runs(self, limit: int = 200, *, q: str | None = None, archived: str | None = None, with_config: bool = False,
             **filters: list[str] | None) -> list[dict[str, Any]]:
        """Newest first, following the cursor until `limit` runs (one call per 200). `q`: search terms (Doc/
        service.md); `archived`: hide (the API's default), only or all; `with_config`: each run with its config."""
        params: dict[str, Any] = {k: v for k, v in filters.items() if v}
        params.update({k: v for k, v in (("q", q), ("archived", archived)) if v})
        if with_config:
            params["with_config"] = "true"
        items: list[dict[str, Any]] = []
        cursor = None
        while len(items) < limit:
            page = self.json("GET", "/runs", params={**params, "limit": min(200, limit - len(items)),
                                                      **({"cursor": cursor} if cursor else {})})
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        return items

    def run(self, run_id: str) -> dict[str, Any]:
        return self.json("GET", f"/runs/{run_id}")

    def metrics(self, run_id: str, since_epoch: int = -1, **only: str) -> dict[str, Any]:
        """Points after `since_epoch`; `only` filters the series (split, component, modality, name)."""
        return self.json("GET", f"/runs/{run_id}/metrics", params={"since_epoch": since_epoch, **only})

    def logs(self, run_id: str, offset: int | None = None, tail_bytes: int = 65536) -> dict[str, Any]:
        """The run's log: its last `tail_bytes`, or from `offset` on (follow a live run with next_offset)."""
        params = {"offset": offset} if offset is not None else {"tail_bytes": tail_bytes}
        return self.json("GET", f"/runs/{run_id}/logs", params=params)

    def submit(self, config: dict[str, Any]) -> dict[str, Any]:
        return self.json("POST", "/runs", json=config)

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self.json("POST", f"/runs/{run_id}/cancel", headers=JSON)

    def retry(self, run_id: str) -> dict[str, Any]:
        return self.json("POST", f"/runs/{run_id}/retry", headers=JSON)

    def update_run(self, run_id: str, **fields: Any) -> dict[str, Any]:
        """Change any of name, notes (None clears), tags (replaced) and archived; the run as it is now."""
        return self.json("PATCH", f"/runs/{run_id}", json=fields)

    def delete(self, run_id: str) -> None:
        self.request("DELETE", f"/runs/{run_id}")

    def config_yaml(self, run_id: str) -> bytes:
        return self.request("GET", f"/runs/{run_id}/config", params={"format": "yaml"}).content

    def checkpoint(self, run_id: str, which: str = "best") -> bytes:
        return self.request("GET", f"/runs/{run_id}/checkpoint", params={"which": which}).content

    def sweeps(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.json("GET", "/sweeps", params={"limit": limit})["items"]

    def sweep(self, sweep_id: str, baseline: str | None = None) -> dict[str, Any]:
        """`baseline`: key=value,... of the cell to pair with; "" for none; None for the sweep's own."""
        params = {"baseline": baseline} if baseline is not None else {}
        return self.json("GET", f"/sweeps/{sweep_id}", params=params)

    def sweep_table(self, sweep_id: str, fmt: str, baseline: str | None = None) -> bytes:
        params = {"format": fmt, **({"baseline": baseline} if baseline is not None else {})}
        return self.request("GET", f"/sweeps/{sweep_id}/table", params=params).content

    def cancel_sweep(self, sweep_id: str) -> dict[str, Any]:
        return self.json("POST", f"/sweeps/{sweep_id}/cancel", headers=JSON)

    def methods(self) -> list[dict[str, Any]]:
        return self.json("GET", "/methods")

    def datasets(self) -> list[dict[str, Any]]:
        return self.json("GET", "/datasets")

    def workers(self) -> list[dict[str, Any]]:
        return self.json("GET", "/workers")


def error_of(response: httpx.Response) -> ApiError:
    """The API's JSON error body, or a plain description of whatever else answered."""
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error["message"], error.get("field"), error.get("details"))
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
        return ApiError(response.status_code, f"HTTP {response.status_code} from {response.request.url.path}: {text}")
