"""`amst sweep --api URL` and `amst reproduce --api URL`: the grid submitted to a server through amst_client, and
with --wait its progress and results table. The library's CLI (amst_core.cli) talks no HTTP: launch.cli hands
its study commands this function for --api."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

from amst_client import ApiError, ApiUnavailable, Client, Sweep
from amst_core.config import ConfigError

# A POST /sweeps whose answer was lost is sent again this often; its idempotency key makes the server answer the
# repeat with the sweep the first one queued, never a second sweep.
RETRIES = 3
POLL_S = 5.0


def submit_study(args: argparse.Namespace, body: dict[str, Any]) -> int:
    """POST /sweeps with a key of its own; print the sweep's id, or with --wait its results table (--table: the
    compact Markdown or LaTeX, or the numeric CSV) against the sweep's baseline."""
    client = Client(args.api, token=os.environ.get("AMST_API_TOKEN") or None, timeout_s=60.0, retries=RETRIES)
    try:
        with client:
            sweep = client.create_sweep(body["base"], body["grid"], name=body["name"], baseline=body["baseline"],
                                        max_concurrent=args.max_concurrent or None, idempotency_key=uuid.uuid4().hex)
            print(f"sweep {sweep['id']}: {sweep['progress']['total']} runs queued on {client.url}", file=sys.stderr)
            if not args.wait:
                print(json.dumps({"sweep": sweep["id"]}))
                return 0
            client.wait_sweep(sweep["id"], print_progress, every_s=POLL_S)
            print(client.sweep_table(sweep["id"], args.table).decode())
    except ApiError as err:
        raise ConfigError(err.field, err.message) from None
    except ApiUnavailable as err:
        raise ConfigError("--api", str(err)) from None
    return 0


def print_progress(sweep: Sweep) -> None:
    p = sweep["progress"]
    print(f"  {p['done']}/{p['total']} ended ({p['succeeded']} succeeded)", file=sys.stderr)
