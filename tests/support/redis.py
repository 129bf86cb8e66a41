"""Throwaway redis-servers for the Redis suites, and what is inside them.

Without a redis-server binary the Redis tests skip with the reason shown, except in CI
(``CI=true``), where ``.ci/run`` installs one: there a missing binary fails them.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import pickle
import random
import re
import socket
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

import pytest

from flask_obo.testing.redis_server import RedisServer, RedisUnavailable, find_redis_server

__all__ = [
    "leaks",
    "port_with_free_bus",
    "raw_values",
    "redis_client",
    "start_redis",
]


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run installs redis-server, so this must not happen)")
    pytest.skip(f"{reason}: install redis-server (Debian: apt-get install redis-server) or set "
                "REDIS_SERVER to its path to run the Redis tests")


def start_redis(*args: str, port: int | None = None) -> RedisServer:
    """A started redis-server (``args`` first on its command line), or the test skips."""
    if find_redis_server() is None:
        _missing("no redis-server binary found")
    server = RedisServer(port, args=args)
    try:
        return server.start()
    except RedisUnavailable as exc:
        server.close()
        _missing(f"redis-server {' '.join(args)} could not start ({exc})".replace("  ", " "))


def port_with_free_bus() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too: a random free
    port above 55535 would make redis-server refuse to start in cluster mode."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a one-node Redis Cluster")


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=5)


def raw_values(url: str) -> dict[bytes, bytes]:
    """Every key of the server and its raw value (strings only: the cache writes nothing else)."""
    client = redis_client(url)
    values = {}
    for key in client.scan_iter(count=1000):
        assert client.type(key) == b"string", key
        values[key] = client.get(key)
    return values


# -- looking for tokens in raw values --------------------------------------------------------------

_B64_RUN = re.compile(rb"[A-Za-z0-9+/_=-]{16,}")


def _needles(token: str) -> set[bytes]:
    """Pieces only ``token`` contains: its payload and signature, and every 32-character window
    of them at a step of 8 (so any leaked run of 40 characters or more is caught)."""
    body = token.split(".", 1)[1] if token.count(".") == 2 else token
    found = {part.encode() for part in body.split(".") if len(part) >= 16}
    raw = body.encode()
    found.update(raw[i:i + 32] for i in range(0, max(1, len(raw) - 31), 8))
    return found


def _decodings(value: bytes, depth: int = 0) -> Iterator[bytes]:
    """``value`` and what it decodes to as pickle, JSON and base64 (standard and URL-safe)."""
    yield value
    if depth >= 3:
        return
    nested: list[Any] = []
    try:
        nested.append(pickle.loads(value))  # only ever run on the tests' own server
    except Exception:
        pass
    try:
        nested.append(json.loads(value))
    except Exception:
        pass
    for run in _B64_RUN.findall(value):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                nested.append(decode(run + b"=" * (-len(run) % 4)))
            except (binascii.Error, ValueError):
                pass
    for item in nested:
        for piece in _flatten(item):
            if piece != value:
                yield from _decodings(piece, depth + 1)


def _flatten(item: Any) -> Iterator[bytes]:
    if isinstance(item, bytes):
        yield item
    elif isinstance(item, str):
        yield item.encode("utf-8", "replace")
    elif isinstance(item, dict):
        for key, value in item.items():
            yield from _flatten(key)
            yield from _flatten(value)
    elif isinstance(item, (list, tuple, set)):
        for value in item:
            yield from _flatten(value)
    elif item is not None:
        yield repr(item).encode()


def leaks(value: bytes, tokens: Iterable[str]) -> list[str]:
    """The tokens (shown by their first characters) that ``value`` reveals in any decoding."""
    by_needle = {needle: token for token in tokens for needle in _needles(token)}
    found = set()
    for decoded in _decodings(value):
        for needle, token in by_needle.items():
            if needle in decoded:
                found.add(token[:12] + "...")
    return sorted(found)
