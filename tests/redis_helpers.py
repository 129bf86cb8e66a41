"""Helpers of the Redis suites (no fixtures here; those are in ``redis_fixtures``).

- ``middle_settings``/``add_routes``: the middle tier's OBO_ settings and its views, shared by
  the in-process tests and the gunicorn app of the multi-process test (``multiproc_app``);
- ``raw_values``: every key of a Redis server with its raw value;
- ``leaks(value, tokens)``: the tokens a raw value reveals, directly or once decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import pickle
import re
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask, jsonify

from flask_obo.downstream import DownstreamSession, requires_downstream, requires_downstream_for_app
from flask_obo.extension import public

SECRET = "s3cret-of-the-middle-tier"


# -- the middle tier -------------------------------------------------------------------------------

def middle_settings(entra: Any, api: Any, down: Any, redis_url: str | None,
                    **config: Any) -> dict[str, Any]:
    """OBO_ settings of the middle tier ``api`` calling ``down`` (its ``url`` and
    ``read_scope``), its cache on ``redis_url``; ``None`` values are left out."""
    settings: dict[str, Any] = {
        "OBO_AUTHORITY": entra.authority(), "OBO_CLIENT_ID": api.client_id,
        "OBO_CA_BUNDLE": entra.ca_bundle, "OBO_CLIENT_SECRET": SECRET,
        "OBO_DOWNSTREAM_APIS": {"down": {"base_url": down.url, "scopes": [down.read_scope]}},
    }
    if redis_url is not None:
        settings["OBO_CACHE"] = {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_url}
    settings.update(config)
    return {k: v for k, v in settings.items() if v is not None}


def add_routes(app: Flask) -> None:
    """``/profile`` (on behalf of the caller), ``/as-app`` (app token), public ``/health``."""

    @app.get("/profile")
    @requires_downstream(api="down")
    def profile(downstream: DownstreamSession) -> Any:
        answer = downstream.get("me")
        return jsonify(status=answer.status_code, oid=answer.json()["oid"], pid=os.getpid())

    @app.get("/as-app")
    @requires_downstream_for_app(api="down")
    def as_app(downstream: DownstreamSession) -> Any:
        answer = downstream.get("me")
        return jsonify(status=answer.status_code, azp=answer.json()["azp"], pid=os.getpid())

    @app.get("/health")
    @public
    def health() -> Any:
        return {"pid": os.getpid()}


# -- Redis ---------------------------------------------------------------------------------------

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
