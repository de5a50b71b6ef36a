"""A container health check with the standard library alone (the image has no curl; importing torch for a check
every 10 s would cost seconds of CPU each time):

    python -m launch.health http://127.0.0.1:8000/health        healthy when the URL answers 2xx within 3 s
    python -m launch.health --file /tmp/amst-worker.alive --max-age 60
                                                                healthy when the file was touched in the last 60 s

Plain words only in the compose file's `test` lists: podman-compose 1.0 re-quotes a `CMD` argument that holds a
space or a quote, and the check it hands podman no longer runs."""

from __future__ import annotations

import argparse
import time
import urllib.request
from pathlib import Path


def url_answers(url: str, timeout_s: float = 3.0) -> str | None:
    """None when healthy, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return None if 200 <= resp.status < 300 else f"{url} answered {resp.status}"
    except OSError as err:  # URLError, HTTPError (4xx/5xx) and timeouts are all OSErrors
        return f"{url}: {err}"


def file_is_fresh(path: Path, max_age_s: float) -> str | None:
    try:
        age = time.time() - path.stat().st_mtime
    except OSError as err:
        return f"{path}: {err.strerror or err}"
    return None if age <= max_age_s else f"{path} last touched {age:.0f} s ago (more than {max_age_s:g} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launch.health", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="healthy when it answers 2xx")
    parser.add_argument("--file", type=Path, help="healthy when touched within --max-age seconds")
    parser.add_argument("--max-age", type=float, default=60.0)
    args = parser.parse_args(argv)
    if (args.url is None) == (args.file is None):
        parser.error("give a URL or --file, one of them")
    problem = url_answers(args.url) if args.url else file_is_fresh(args.file, args.max_age)
    if problem:
        print(f"unhealthy: {problem}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
