"""A typed Python client of the AMST Studio REST API (Doc/client.md):

    from amst_client import Client
    client = Client("http://127.0.0.1:8000", token=None)
    run = client.wait(client.submit({"method": "amst_alt", "dataset": {"name": "avdigits"}})["id"])

It depends on httpx and pydantic only, and imports nothing else of AMST Studio: it can be used from any machine
that reaches the server.
"""

from amst_client.client import Client
from amst_client.curves import Curve, Curves, SeriesKey
from amst_client.errors import ApiError, ApiUnavailable
from amst_client.types import (
    Dataset,
    Differences,
    Health,
    Log,
    Method,
    Metrics,
    Rerun,
    Run,
    SeriesPoints,
    Sweep,
    Vocabulary,
    Worker,
)

__all__ = ["ApiError", "ApiUnavailable", "Client", "Curve", "Curves", "Dataset", "Differences", "Health", "Log",
           "Method", "Metrics", "Rerun", "Run", "SeriesKey", "SeriesPoints", "Sweep", "Vocabulary", "Worker"]
