"""Which cache backends flask-obo keeps downstream tokens in, and how.

- Encrypted unless the backend is known to live in this process: only Flask-Caching's and
  cachelib's own ``SimpleCache`` are. A subclass, a wrapper, a company backend or anything
  else handed to ``FlaskOBO(cache=...)`` may be shared with other processes and hosts, so its
  entries are sealed (AES-GCM), whatever it is called.
- Never a backend that unpickles what it reads (memcached, a cache directory, uWSGI's cache,
  cachelib's DynamoDB and MongoDB caches): whoever can write to such a store would run code
  in the API before flask-obo sees the bytes, and encryption cannot help. They are refused at
  init_app, with what to use instead (Redis stores raw bytes).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cachelib import DynamoDbCache, MongoDbCache
from cachelib.simple import SimpleCache as CachelibSimpleCache
from flask import Flask
from flask_caching import Cache
from flask_caching.backends.simplecache import SimpleCache

from flask_obo import AccessToken, FlaskOBO
from flask_obo.errors import ConfigError

TOKEN = "eyJ0eXAiOiJKV1QifQ.eyJkb3duc3RyZWFtIjoidG9rZW4ifQ.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


def _app(entra: Any, **config: Any) -> Flask:
    app = Flask(f"backends-{uuid.uuid4().hex[:6]}")
    settings: dict[str, Any] = {
        "OBO_AUTHORITY": entra.authority(), "OBO_CLIENT_ID": str(uuid.uuid4()),
        "OBO_CA_BUNDLE": entra.ca_bundle, "OBO_CLIENT_SECRET": "s3cret"}
    settings.update(config)
    app.config.update({k: v for k, v in settings.items() if v is not None})
    return app


def _stored(app: Flask) -> tuple[Any, bytes]:
    """What the backend holds after the token cache stored TOKEN (raw, as another reader
    of the backend would see it)."""
    cache = app.extensions["obo"].acquirer.cache
    key = cache.key("obo", "client", "tid", "hash-of-alice", ("api://down/read",))
    cache.set(key, AccessToken(TOKEN, time.time() + 3600, ("api://down/read",)))
    raw = cache.backend.get(key)
    assert isinstance(raw, bytes)
    return cache, raw


class CompanyCache:
    """A company's own backend: get/set/delete, storage unknown to flask-obo."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.items.get(key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        self.items[key] = value
        return True

    def delete(self, key: str) -> bool:
        return self.items.pop(key, None) is not None


class Wrapper(CompanyCache):
    """A wrapper around an in-process cache is still not known to be in-process."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = SimpleCache()

    def get(self, key: str) -> Any:
        return self.inner.get(key)

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        return bool(self.inner.set(key, value, timeout))


class SharedSimpleCache(SimpleCache):  # a subclass may keep its entries anywhere
    pass


@pytest.mark.parametrize("backend", [CompanyCache, Wrapper, SharedSimpleCache],
                         ids=["company-backend", "wrapper", "subclass"])
def test_a_backend_not_known_to_be_in_process_is_encrypted(entra: Any, backend: type) -> None:
    app = _app(entra)
    FlaskOBO(app, cache=backend())
    cache, raw = _stored(app)
    assert cache.shared and cache.codec.encrypts
    assert raw[:1] == b"\x01"  # sealed
    assert b"c2lnbmF0dXJl" not in raw and b"eyJ0eXAi" not in raw


def test_an_unknown_backend_with_nothing_to_derive_a_key_from_is_refused(entra: Any,
                                                                        tmp_path: Path) -> None:
    assertion = tmp_path / "federated-token"
    assertion.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
    app = _app(entra, OBO_CLIENT_SECRET=None, OBO_CLIENT_ASSERTION=str(assertion))
    with pytest.raises(ConfigError, match="OBO_CACHE_ENCRYPTION_KEY"):
        FlaskOBO(app, cache=CompanyCache())


@pytest.mark.parametrize("make", [
    lambda app: None,  # the default
    lambda app: SimpleCache(),
    lambda app: CachelibSimpleCache(),
    lambda app: Cache(app, config={"CACHE_TYPE": "SimpleCache"}),
], ids=["default", "flask-caching-simple", "cachelib-simple", "apps-simple-cache"])
def test_an_in_process_simple_cache_keeps_plain_entries(entra: Any, make: Any) -> None:
    app = _app(entra)
    FlaskOBO(app, cache=make(app))
    cache, raw = _stored(app)
    assert not cache.shared and not cache.codec.encrypts
    assert raw[:1] == b"\x00"


@pytest.mark.parametrize("cache_type", [
    "MemcachedCache", "SASLMemcachedCache", "SpreadSASLMemcachedCache", "FileSystemCache",
    "flask_caching.backends.filesystemcache.FileSystemCache",
])
def test_obo_cache_on_an_unpickling_backend_is_refused(entra: Any, tmp_path: Path,
                                                       cache_type: str) -> None:
    directory = tmp_path / "shared-cache-dir"
    app = _app(entra, OBO_CACHE={"CACHE_TYPE": cache_type, "CACHE_DIR": str(directory),
                                 "CACHE_MEMCACHED_SERVERS": ["127.0.0.1:11211"]})
    with pytest.raises(ConfigError) as raised:
        FlaskOBO(app)
    message = str(raised.value)
    assert "unpickles" in message and "RedisCache" in message
    assert not directory.exists()  # refused before anything was built
    assert "obo" not in app.extensions


class PlantedDynamoDbCache(DynamoDbCache):  # no AWS here: only its kind matters
    def __init__(self) -> None:
        pass


class PlantedMongoDbCache(MongoDbCache):
    def __init__(self) -> None:
        pass


@pytest.mark.parametrize("make", [
    lambda app, d: Cache(app, config={"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": str(d)}),
    lambda app, d: Cache(app, config={"CACHE_TYPE": "FileSystemCache",
                                      "CACHE_DIR": str(d)}).cache,
    lambda app, d: PlantedDynamoDbCache(),
    lambda app, d: PlantedMongoDbCache(),
], ids=["apps-filesystem-cache", "filesystem-backend", "dynamodb", "mongodb"])
def test_an_unpickling_backend_handed_in_is_refused(entra: Any, tmp_path: Path,
                                                    make: Any) -> None:
    app = _app(entra)
    backend = make(app, tmp_path)
    with pytest.raises(ConfigError, match="unpickles"):
        FlaskOBO(app, cache=backend)
