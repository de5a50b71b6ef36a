"""`amst sweep --api URL` and `amst reproduce --api URL`: the grid submitted to a server through amst_client, and
with --wait its progress and results table; `amst rerun RUN_ID --api URL`: the server's re-run of one of its runs.
The library's CLI (amst_core.cli) talks no HTTP: launch.cli hands these commands the functions for --api."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from amst_client import ApiError, ApiUnavailable, Client, Sweep
from amst_core.config import ConfigError

# A POST /sweeps whose answer was lost is sent again this often; its idempotency key makes the server answer the
# repeat with the sweep the first one queued, never a second sweep.
RETRIES = 3
POLL_S = 5.0


@contextlib.contextmanager
def server(args: argparse.Namespace) -> Iterator[Client]:
    """A client of `--api` (AMST_API_TOKEN); the server's refusals and silence as the CLI's one-line errors."""
    try:
        with Client(args.api, token=os.environ.get("AMST_API_TOKEN") or None, timeout_s=60.0,
                    retries=RETRIES) as client:
            yield client
    except ApiError as err:
        raise ConfigError(err.field, err.message) from None
    except ApiUnavailable as err:
        raise ConfigError("--api", str(err)) from None


def submit_rerun(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """POST /runs/{id}/rerun with a key of its own; print the new run's id, and what the server warns of."""
    with server(args) as client:
        run = client.rerun(body["run"], force=body["force"], idempotency_key=uuid.uuid4().hex)
        print(f"run {run['id']} queued on {client.url}: a re-run of {body['run']}", file=sys.stderr)
    for warning in run["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps({"run": run["id"]}))
    return 0


def submit_study(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """POST /sweeps with a key of its own; print the sweep's id, or with --wait its results table (--table: the
    compact Markdown or LaTeX, or the numeric CSV) against the sweep's baseline."""
    with server(args) as client:
        sweep = client.create_sweep(body["base"], body["grid"], name=body["name"], baseline=body["baseline"],
                                    max_concurrent=args.max_concurrent or None, idempotency_key=uuid.uuid4().hex)
        print(f"sweep {sweep['id']}: {sweep['progress']['total']} runs queued on {client.url}", file=sys.stderr)
        if not args.wait:
            print(json.dumps({"sweep": sweep["id"]}))
            return 0
        client.wait_sweep(sweep["id"], print_progress, every_s=POLL_S)
        print(client.sweep_table(sweep["id"], args.table).decode())
    return 0


def print_progress(sweep: Sweep) -> None:
    p = sweep["progress"]
    print(f"  {p['done']}/{p['total']} ended ({p['succeeded']} succeeded)", file=sys.stderr)
