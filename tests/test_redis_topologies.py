"""RedisSentinelCache and RedisClusterCache for real, by configuration alone: a master found
through a sentinel, and a one-node cluster. Instances share encrypted entries, and the lock
(SET NX, then the Lua release) leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.apps import MakeMiddle
from support.redis import raw_values

from flask_obo.cache._redis_store import RedisEntryStore
from flask_obo.testing.redis_server import RedisServer

pytestmark = pytest.mark.redis


def share_between_instances(make: MakeMiddle, entra: Any, settings: dict[str, Any],
                            url: str) -> None:
    first, second = make(None, OBO_CACHE=settings), make(None, OBO_CACHE=settings)
    alice = entra.add_user("alice")
    token = first.token_for(alice)
    for middle in (first, second):
        answer = middle.profile(token)
        assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == alice.oid
    assert len(first.obo_calls()) == 1
    assert type(first.cache.backend.backend).__name__.endswith(settings["CACHE_TYPE"])
    assert isinstance(first.cache.backend, RedisEntryStore)
    (value,) = raw_values(url).values()  # the entry, and no lock left behind
    assert value[:1] == b"\x01"  # sealed (AES-GCM)


def test_sentinel(make_redis_middle: MakeMiddle, entra: Any,
                  redis_sentinel: tuple[RedisServer, int]) -> None:
    master, sentinel_port = redis_sentinel
    share_between_instances(make_redis_middle, entra, {
        "CACHE_TYPE": "RedisSentinelCache",
        "CACHE_REDIS_SENTINELS": [("127.0.0.1", sentinel_port)],
        "CACHE_REDIS_SENTINEL_MASTER": "mymaster",
    }, master.url)


def test_cluster(make_redis_middle: MakeMiddle, entra: Any, redis_cluster: int) -> None:
    share_between_instances(make_redis_middle, entra, {
        "CACHE_TYPE": "RedisClusterCache",
        "CACHE_REDIS_CLUSTER": f"127.0.0.1:{redis_cluster}",
    }, f"redis://127.0.0.1:{redis_cluster}/0")
