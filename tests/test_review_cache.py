"""Review findings in the token cache: entries that must never be served."""

from __future__ import annotations

import json
import time

import pytest
from cachelib import SimpleCache

from flask_obo.cache import OboTokenCache
from flask_obo.cache._codec import EntryCodec


@pytest.mark.parametrize("expiry", ["NaN", '"nan"', "Infinity", '"inf"'])
def test_an_entry_whose_expiry_is_not_a_finite_time_is_a_miss(expiry: str) -> None:
    key = "flask_obo:" + "ab" * 32
    backend = SimpleCache()
    body = '{"v":1,"k":"' + key[-16:] + '","t":"eyJ.x.y","e":' + expiry + ',"r":0,"s":["read"]}'
    backend.set(key, b"\x00" + body.encode(), 300)
    assert EntryCodec().decode(key, backend.get(key)) is None
    cache = OboTokenCache(backend)
    assert cache.get(key) is None


def test_a_well_formed_plain_entry_is_still_served() -> None:
    key = "flask_obo:" + "cd" * 32
    backend = SimpleCache()
    expires = time.time() + 3600
    body = json.dumps({"v": 1, "k": key[-16:], "t": "eyJ.x.y", "e": expires, "r": 0,
                       "s": ["read"]})
    backend.set(key, b"\x00" + body.encode(), 300)
    token = OboTokenCache(backend).get(key)
    assert token is not None and token.token == "eyJ.x.y" and token.expires_on == expires
