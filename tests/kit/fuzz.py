"""Random request bodies for the API's fuzz tests, and the one rule they check: no input reaches a 500."""

from __future__ import annotations

import json
import random
from typing import Any

from tests.kit.api import config

STRINGS = ["", " ", "naive", "amst_full", "synthetic", "avdigits", "../..", "/etc", "\u0000", "a\u0000b", "é",
           "\U0001f600", "\ud800", "x" * 5000, "1e999", "-1", "null", "NaN", "%00", "queued", "none", "val,test",
           "🙂" * 300, "\n", "' OR 1=1 --", '"; DROP TABLE runs; --']


NUMBERS = [0, -1, 1, 2**31, 2**63, -(2**64), 10**40, 1e308, -1e-308, 0.5, 3]


FIELDS = ["method", "dataset", "name", "tags", "skip", "optim", "epochs", "seed", "device", "fusion",
          "method_params", "model", "batch_size", "max_restarts", "precision", "bogus", ""]


def junk(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice(STRINGS)
    if kind == 1:
        return rng.choice(NUMBERS)
    if kind == 2:
        return rng.choice([None, True, False])
    if kind == 3:
        return "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randrange(8)))
    if kind == 4:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(FIELDS + STRINGS[:8]): junk(rng, depth + 1) for _ in range(rng.randrange(5))}


def mutate(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    """A valid config with one field replaced by junk: exercises the validators, not only the JSON parser."""
    out = json.loads(json.dumps(body))
    node: Any = out
    path = rng.choice([["method"], ["dataset", "name"], ["dataset", "root"], ["skip", "audio"], ["optim", "lr"],
                       ["epochs"], ["seed"], ["tags"], ["name"], ["method_params", "skip_mode"],
                       ["dataset", "synthetic", "samples"], ["device"], ["fusion"], ["dataset"]])
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node
    if isinstance(node, dict):
        node[path[-1]] = junk(rng)
    return out


def raw_bodies(rng: random.Random, n: int) -> list[bytes]:
    valid = config("amst_alt", dataset={"name": "synthetic", "synthetic": {"num_classes": 3}})
    bodies = [b"", b"{", b"[]", b"null", b"NaN", b'{"method": Infinity}', b"\xff\xfe\x00", b"[" * 50_000,
              b'{"a": ' * 3000, b'"' + b"\\ud800" + b'"', b"1" * 5000, b'{"method": "naive", "dataset": "x"}',
              b'{"method": "naive", "dataset": {"name": "synthetic"}, "seed": 1' + b"0" * 400 + b"}"]
    for i in range(n):
        if i % 3 == 0:
            bodies.append(json.dumps(junk(rng)).encode())
        elif i % 3 == 1:
            bodies.append(json.dumps(mutate(rng, valid)).encode())
        else:
            bodies.append(bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
    return bodies


def check(r: Any, what: str) -> None:
    assert r.status_code < 500, f"{what} -> {r.status_code} {r.text[:300]}"
    if r.status_code >= 400:
        assert r.json()["error"]["message"], what
