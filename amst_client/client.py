"""`Client`: the AMST Studio REST API from Python, for people and for our own tools (the dashboard, `amst up`'s
demo run, `amst sweep --api`). One method per thing to do; answers are the API's JSON as typed dictionaries
(amst_client.types); every refusal is an `ApiError` carrying the API's status, message and field."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

from amst_client.curves import Curves
from amst_client.errors import ApiError, ApiUnavailable, error_of
from amst_client.types import (
    Dataset,
    Differences,
    Health,
    Log,
    Method,
    Metrics,
    Rerun,
    Run,
    Sweep,
    Vocabulary,
    Worker,
)

# Mutating calls say they are JSON even without a body: an API without a token refuses anything else (CSRF).
JSON = {"Content-Type": "application/json"}
PAGE = 200  # the most runs GET /runs returns at once
Filter = str | Iterable[str] | None


class Client:
    """A client of one AMST Studio server.

    `token`: the server's AMST_API_TOKEN (mutating routes need it when the server sets one). `transport`: an
    httpx transport to use instead of the network (tests pass the in-process app's). `retries`: how often a
    request that is safe to repeat (a GET, or a POST with an idempotency key) is sent again after a connection
    failure or a timeout. `calls` counts the requests made (the dashboard keeps a budget per page refresh)."""

    def __init__(self, url: str, token: str | None = None, transport: httpx.BaseTransport | None = None,
                 timeout_s: float = 30.0, retries: int = 0):
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s, transport=transport)
        self.retries = retries
        self.calls = 0
        self._terminal: frozenset[str] | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # ---- requests -----------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, allow: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """The response; a status >= 400 (except those in `allow`) raises ApiError."""
        response = self.send_repeating(method, path, **kwargs)
        if response.status_code >= 400 and response.status_code not in allow:
            raise error_of(response)
        return response

    def send_repeating(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Sent again (up to `retries` times, after 0.5, 1, 2 s) when no answer came and repeating is safe: a GET,
        or a POST with an idempotency key (the server answers a repeat with what the first one did)."""
        repeatable = method == "GET" or "Idempotency-Key" in kwargs.get("headers", {})
        attempt = 0
        while True:
            try:
                return self.send(method, path, **kwargs)
            except ApiUnavailable:
                if not repeatable or attempt >= self.retries:
                    raise
                time.sleep(min(4.0, 0.5 * 2**attempt))
                attempt += 1

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        self.calls += 1
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ApiUnavailable(f"The AMST API at {self.url} did not answer within {self.http.timeout.read:g} s. "
                                 "It may be overloaded; try again in a moment.") from None
        except httpx.HTTPError as err:
            raise ApiUnavailable(f"Cannot reach the AMST API at {self.url} ({type(err).__name__}). "
                                 "Is it running? Start everything with `amst up`, or set AMST_API_URL.") from None

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ApiUnavailable(f"The API at {self.url} answered {path} with something that is not JSON; "
                                 "is AMST_API_URL pointing at the AMST API?") from None

    def post(self, path: str, body: Any = None, idempotency_key: str | None = None) -> Any:
        headers = {**JSON, **({"Idempotency-Key": idempotency_key} if idempotency_key else {})}
        return self.json("POST", path, headers=headers, **({"json": body} if body is not None else {}))

    # ---- the server ---------------------------------------------------------------------------------------------

    def health(self) -> Health:
        """The API's health; 503 is an answer too (the database or the broker is down, and it says which)."""
        return self.json("GET", "/health", allow=(503,))

    def vocabulary(self) -> Vocabulary:
        """The product's words: modalities, splits, components, run-level series, run and sweep statuses."""
        return self.json("GET", "/vocabulary")

    def methods(self) -> list[Method]:
        return self.json("GET", "/methods")

    def datasets(self) -> list[Dataset]:
        return self.json("GET", "/datasets")

    def workers(self) -> list[Worker]:
        """Every worker that registered, latest heartbeat first: where it runs (host, Slurm job, Kubernetes pod),
        its GPUs, queues, the run it trains and its state (alive, lost, stopped)."""
        return self.json("GET", "/workers")

    # ---- runs ---------------------------------------------------------------------------------------------------

    def submit(self, config: Mapping[str, Any], idempotency_key: str | None = None) -> Run:
        """Queue a run (a RunConfig as a dict: what a YAML config holds). With an `idempotency_key`, sending the
        same request again (after a timeout, say) returns the run the first one created instead of a second."""
        return self.post("/runs", dict(config), idempotency_key)

    def run(self, run_id: str) -> Run:
        return self.json("GET", f"/runs/{run_id}")

    def runs(self, limit: int = PAGE, *, status: Filter = None, method: Filter = None, dataset: Filter = None,
             tag: Filter = None, q: str | None = None, archived: str | None = None,
             with_config: bool = False) -> list[Run]:
        """Newest first, following the cursor until `limit` runs (one request per 200). Each filter takes one
        value or several (any of them matches). `q`: search terms (Doc/service.md, e.g. "optim.lr<0.01");
        `archived`: hide (the API's default), only or all; `with_config`: each run with its config."""
        params: dict[str, Any] = {k: v for k, v in (("status", status), ("method", method), ("dataset", dataset),
                                                    ("tag", tag), ("q", q), ("archived", archived)) if v}
        if with_config:
            params["with_config"] = "true"
        items: list[Run] = []
        cursor = None
        while len(items) < limit:
            page = self.json("GET", "/runs", params={**params, "limit": min(PAGE, limit - len(items)),
                                                      **({"cursor": cursor} if cursor else {})})
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        return items

    def wait(self, run_id: str, on_progress: Callable[[Run], None] | None = None, every_s: float = 2.0,
             timeout_s: float | None = None) -> Run:
        """Poll the run until it ends (succeeded, failed, cancelled or lost) and return it. `on_progress` is called
        with the run each time its status or epoch count changed. A timeout raises TimeoutError."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen = None
        while True:
            run = self.run(run_id)
            if on_progress is not None and (run["status"], run["epochs_done"]) != seen:
                on_progress(run)
                seen = (run["status"], run["epochs_done"])
            if self.ended(run):
                return run
            if deadline is not None and time.monotonic() + every_s > deadline:
                raise TimeoutError(f"run {run_id} is still {run['status']} after {timeout_s:g} s")
            time.sleep(every_s)

    def ended(self, run: Run) -> bool:
        """Whether the run has ended, by the server's own list of terminal statuses (a server older than GET
        /vocabulary: by its end time, which only an ended run has)."""
        if self._terminal is None:
            try:
                self._terminal = frozenset(self.vocabulary()["statuses"]["terminal"])
            except ApiError:
                self._terminal = frozenset()
        return run["status"] in self._terminal if self._terminal else run["finished_at"] is not None

    def metrics(self, run_id: str, since_epoch: int = -1, **only: str) -> Metrics:
        """The points after `since_epoch`, per series; `only` filters them (split, component, modality, name)."""
        return self.json("GET", f"/runs/{run_id}/metrics", params={"since_epoch": since_epoch, **only})

    def curves(self, run_id: str, since: Curves | None = None, **only: str) -> Curves:
        """The run's curves; given the curves of an earlier call (`since`), only the epochs after them are asked
        for and added to them (when another attempt resumed the run meanwhile, the epochs it replaced are dropped
        and read again). `only` filters the series as in `metrics`; pass the same filters on every call."""
        curves = since if since is not None else Curves(run_id)
        body = self.metrics(run_id, curves.next_since_epoch, **only)
        replaced = curves.replaced_from(body)
        if replaced is not None and replaced <= curves.next_since_epoch:
            curves.drop_from(replaced)
            body = self.metrics(run_id, curves.next_since_epoch, **only)
        curves.merge(body)
        return curves

    def logs(self, run_id: str, offset: int | None = None, tail_bytes: int = 65536) -> Log:
        """The run's log: its last `tail_bytes`, or from `offset` on (follow a live run with next_offset)."""
        params = {"offset": offset} if offset is not None else {"tail_bytes": tail_bytes}
        return self.json("GET", f"/runs/{run_id}/logs", params=params)

    def cancel(self, run_id: str) -> Run:
        return self.post(f"/runs/{run_id}/cancel")

    def retry(self, run_id: str) -> Run:
        """Start a failed, cancelled or lost run again from its last checkpoint."""
        return self.post(f"/runs/{run_id}/retry")

    def rerun(self, run_id: str, force: bool = False, idempotency_key: str | None = None) -> Rerun:
        """A new run from the run's record (its recorded config, on the data it trained on). Where those data
        changed since, an ApiError 409 says what changed; `force` re-runs on the data as they are, and the answer's
        `warnings` say so. With an `idempotency_key`, a repeat (an answer lost) makes no second run."""
        return self.post(f"/runs/{run_id}/rerun", {"force": force}, idempotency_key)

    def differences(self, run_ids: Iterable[str]) -> list[str]:
        """How these runs differ in code, environment or data, one line per aspect; [] when they agree."""
        answer: Differences = self.json("GET", "/differences", params={"run": list(run_ids)})
        return answer["differences"]

    def update_run(self, run_id: str, **fields: Any) -> Run:
        """Change any of name, notes (None clears), tags (replaced) and archived; the run as it is now."""
        return self.json("PATCH", f"/runs/{run_id}", json=fields)

    def delete(self, run_id: str) -> None:
        """Delete a run that is not running (a queued one too), with its points and files."""
        self.request("DELETE", f"/runs/{run_id}")

    def config_yaml(self, run_id: str) -> bytes:
        return self.request("GET", f"/runs/{run_id}/config", params={"format": "yaml"}).content

    def checkpoint(self, run_id: str, which: str = "best") -> bytes:
        """The run's best (or last) checkpoint, in memory; `download_checkpoint` writes a large one to a file."""
        return self.request("GET", f"/runs/{run_id}/checkpoint", params={"which": which}).content

    def download_checkpoint(self, run_id: str, path: str | Path, which: str = "best") -> Path:
        """Stream the checkpoint into `path` (written whole or not at all); returns the path."""
        path = Path(path)
        partial = path.with_name(path.name + ".part")
        self.calls += 1
        try:
            with self.http.stream("GET", f"/runs/{run_id}/checkpoint", params={"which": which}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response)
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
        except httpx.HTTPError as err:
            partial.unlink(missing_ok=True)
            raise ApiUnavailable(f"The checkpoint download from {self.url} broke off ({type(err).__name__}).") \
                from None
        partial.replace(path)
        return path

    # ---- sweeps -------------------------------------------------------------------------------------------------

    def create_sweep(self, base: Mapping[str, Any], grid: Mapping[str, list[Any]], name: str | None = None,
                     baseline: Mapping[str, Any] | None = None, max_concurrent: int | None = None,
                     idempotency_key: str | None = None) -> Sweep:
        """Queue one run per combination of the grid's values (dotted run-config fields, e.g. {"method": [...],
        "seed": [0, 1, 2]}) over the `base` config; `baseline`: the cell the others are paired with."""
        body: dict[str, Any] = {"base": dict(base), "grid": dict(grid), "name": name,
                                "baseline": dict(baseline) if baseline is not None else None}
        if max_concurrent is not None:
            body["max_concurrent"] = max_concurrent
        return self.post("/sweeps", body, idempotency_key)

    def sweep(self, sweep_id: str, baseline: str | None = None) -> Sweep:
        """The sweep with its runs and results matrix. `baseline`: key=value,... of the cell to pair with; ""
        for none; None for the sweep's own."""
        params = {"baseline": baseline} if baseline is not None else {}
        return self.json("GET", f"/sweeps/{sweep_id}", params=params)

    def sweeps(self, limit: int = 100) -> list[Sweep]:
        """The newest sweeps (at most 200), with their progress."""
        return self.json("GET", "/sweeps", params={"limit": limit})["items"]

    def sweep_table(self, sweep_id: str, fmt: str = "csv", baseline: str | None = None) -> bytes:
        """The results matrix against the sweep's own baseline cell (`baseline`: key=value,... of another; "" for
        none): `csv`, every number in its own column and the significance in words; `markdown` (`md`) or `latex`
        (`tex`), the compact table for a paper (mean ± std, the best bold, Δ and p against the baseline)."""
        params = {"format": fmt, **({"baseline": baseline} if baseline is not None else {})}
        return self.request("GET", f"/sweeps/{sweep_id}/table", params=params).content

    def cancel_sweep(self, sweep_id: str) -> Sweep:
        return self.post(f"/sweeps/{sweep_id}/cancel")

    def wait_sweep(self, sweep_id: str, on_progress: Callable[[Sweep], None] | None = None, every_s: float = 5.0,
                   timeout_s: float | None = None) -> Sweep:
        """Poll the sweep until every run of it has ended; `on_progress` gets the sweep at each poll."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            sweep = self.sweep(sweep_id)
            if on_progress is not None:
                on_progress(sweep)
            if sweep["progress"]["done"] >= sweep["progress"]["total"]:
                return sweep
            if deadline is not None and time.monotonic() + every_s > deadline:
                raise TimeoutError(f"sweep {sweep_id} is still {sweep['status']} after {timeout_s:g} s")
            time.sleep(every_s)
