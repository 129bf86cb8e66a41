"""The token cache on a real Redis: shared between instances, encrypted by default with a key
derived from the app's credential (or configured, and rotated), nothing in Redis that reveals a
token, no pickle read back, and the Redis backends built from configuration alone.
"""

from __future__ import annotations

import base64
import logging
import os
import pickle
import re
import time
from typing import Any

import pytest
from flask import Flask
from flask_caching import Cache
from support.apps import MIDDLE_SECRET, MakeMiddle, middle_settings
from support.redis import leaks, raw_values, redis_client
from support.servers import free_port

from flask_obo.cache._codec import EntryCodec, key_id
from flask_obo.cache._keys import derive_cache_key
from flask_obo.cache._redis_store import DEFAULT_SOCKET_TIMEOUT, RedisEntryStore
from flask_obo.errors import ConfigError
from flask_obo.extension import FlaskOBO
from flask_obo.testing import DownstreamStandIn, make_client_certificate
from flask_obo.testing.redis_server import RedisServer

pytestmark = pytest.mark.redis


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_instances_share_one_encrypted_entry_per_user_and_scope(
        make_redis_middle: MakeMiddle, redis_server: RedisServer, entra: Any) -> None:
    first, second = make_redis_middle(redis_server.url), make_redis_middle(redis_server.url)
    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    tokens = {user.oid: first.token_for(user) for user in (alice, bob)}

    for user in (alice, bob):
        answer = first.profile(tokens[user.oid])
        assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == user.oid
    assert len(first.obo_calls()) == 2

    # Another process of the same app (an empty in-process cache) finds both users' tokens.
    for user in (alice, bob):
        answer = second.profile(tokens[user.oid])
        assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == user.oid
    assert len(first.obo_calls()) == 2

    keys = sorted(raw_values(redis_server.url))
    assert len(keys) == 2, keys  # one entry per user and scope set; no lock left behind
    assert all(re.fullmatch(rb"flask_obo:[0-9a-f]{64}", key) for key in keys)
    assert first.cache.shared and first.cache.codec.encrypts


def test_redis_values_reveal_no_token(make_redis_middle: MakeMiddle,
                                      redis_server: RedisServer, entra: Any,
                                      downstream_tokens: list[str]) -> None:
    middle = make_redis_middle(redis_server.url)
    users = [entra.add_user(f"user{i}") for i in range(3)]
    assertions = [middle.token_for(user) for user in users]
    seen_before = len(downstream_tokens)
    for assertion in assertions:
        assert middle.profile(assertion).status_code == 200
    assert middle.client.get("/as-app", headers={
        "Authorization": f"Bearer {assertions[0]}"}).status_code == 200
    issued = downstream_tokens[seen_before:]  # the three OBO tokens and the app token
    assert len(set(issued)) == 4

    values = raw_values(redis_server.url)
    assert len(values) == 4
    for key, value in values.items():
        assert leaks(key + value, issued + assertions) == [], key

    # The detector does find a token in what an unencrypted cache would have written.
    plain = EntryCodec().encode("k", (issued[0], time.time() + 60, 0.0, ("s",)))
    assert leaks(b"!" + pickle.dumps(plain), issued) != []
    assert leaks(base64.b64encode(plain), issued) != []


def test_derived_key_is_logged_once_without_the_key(make_redis_middle: MakeMiddle,
                                                    redis_server: RedisServer,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flask_obo"):
        middle = make_redis_middle(redis_server.url)
    derived = derive_cache_key(MIDDLE_SECRET.encode(), middle.api.client_id)
    records = [r for r in caplog.records if "derived" in r.getMessage()]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "client secret" in message and key_id(derived).hex() in message
    for secret in (derived.hex(), base64.urlsafe_b64encode(derived).decode(), MIDDLE_SECRET):
        assert secret not in caplog.text


def test_derived_keys_are_per_app_and_stable() -> None:
    one = derive_cache_key(b"secret", "00000000-0000-0000-0000-000000000001")
    assert one == derive_cache_key(b"secret", "00000000-0000-0000-0000-000000000001")
    assert len(one) == 32
    assert one != derive_cache_key(b"secret", "00000000-0000-0000-0000-000000000002")
    assert one != derive_cache_key(b"secret2", "00000000-0000-0000-0000-000000000001")


def test_certificate_credential_derives_a_shared_key(entra: Any, redis_server: RedisServer,
                                                     downstream: DownstreamStandIn) -> None:
    cert = make_client_certificate("redis-suite middle")
    api = entra.register_app("cert-middle", scopes=["access_as_user"], certificate=cert.cert_pem)
    entra.grant_consent(client=api, resource=downstream.registration, scopes=["read"])
    alice = entra.add_user("alice")
    token = entra.issue_user_token(alice, resource=api)

    def instance() -> Any:
        app = Flask("cert-middle")
        app.config.update(middle_settings(
            entra, api, downstream, secret=None, redis_url=redis_server.url,
            OBO_CLIENT_CERTIFICATE={"private_key": cert.key_pem, "certificate": cert.cert_pem}))
        FlaskOBO(app)
        return app

    from flask_obo.downstream import acquire_token_for_user

    first, second = instance(), instance()
    for app in (first, second):
        with app.test_request_context(headers={"Authorization": f"Bearer {token}"}):
            assert acquire_token_for_user(api="down").token
    assert len(entra.calls("on_behalf_of")) == 1  # the second instance decrypted the first's
    assert first.extensions["obo"].acquirer.cache.codec.encrypts


def test_assertion_credential_needs_a_configured_key_for_redis(
        entra: Any, middle_api: Any, downstream: DownstreamStandIn,
        redis_server: RedisServer) -> None:
    def app_with(redis_url: str | None, **config: Any) -> Flask:
        app = Flask("assertion-middle")
        app.config.update(middle_settings(
            entra, middle_api, downstream, secret=None, redis_url=redis_url,
            OBO_CLIENT_ASSERTION=lambda: "a.b.c", **config))
        return app

    with pytest.raises(ConfigError) as refused:
        FlaskOBO(app_with(redis_server.url))
    message = str(refused.value)
    assert "OBO_CACHE_ENCRYPTION_KEY" in message and "os.urandom(32)" in message
    assert "RedisCache" in message

    configured = app_with(redis_server.url, OBO_CACHE_ENCRYPTION_KEY=new_key())
    FlaskOBO(configured)
    assert configured.extensions["obo"].acquirer.cache.codec.encrypts
    in_process = app_with(None)
    FlaskOBO(in_process)  # nothing shared: nothing to encrypt
    assert not in_process.extensions["obo"].acquirer.cache.codec.encrypts


def test_key_rotation_reads_old_entries_and_unknown_keys_are_misses(
        make_redis_middle: MakeMiddle, redis_server: RedisServer, entra: Any) -> None:
    old, new, unknown = new_key(), new_key(), new_key()
    before = make_redis_middle(redis_server.url, OBO_CACHE_ENCRYPTION_KEY=old)
    alice, bob, carol = (entra.add_user(name) for name in ("alice", "bob", "carol"))
    tokens = {user.oid: before.token_for(user) for user in (alice, bob, carol)}
    for user in (alice, bob):
        assert before.profile(tokens[user.oid]).status_code == 200
    assert len(before.obo_calls()) == 2

    rotated = make_redis_middle(redis_server.url, OBO_CACHE_ENCRYPTION_KEY=[new, old])
    answer = rotated.profile(tokens[alice.oid])
    assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == alice.oid
    assert len(rotated.obo_calls()) == 2  # read under the old key
    assert rotated.profile(tokens[carol.oid]).status_code == 200  # written under the new one
    kids = {value[1:5] for value in raw_values(redis_server.url).values()}
    assert kids == {key_id(base64.urlsafe_b64decode(old)), key_id(base64.urlsafe_b64decode(new))}

    stranger = make_redis_middle(redis_server.url, OBO_CACHE_ENCRYPTION_KEY=unknown)
    answer = stranger.profile(tokens[bob.oid])
    assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == bob.oid
    assert len(stranger.obo_calls()) == 4  # a miss (after carol's OBO), never an error


def test_a_planted_pickle_is_never_unpickled(make_redis_middle: MakeMiddle,
                                             redis_server: RedisServer, entra: Any,
                                             tmp_path: Any) -> None:
    middle = make_redis_middle(redis_server.url)
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    assert middle.profile(token).status_code == 200
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self) -> Any:
            return (os.mkdir, (str(marker),))

    client = redis_client(redis_server.url)
    for key in raw_values(redis_server.url):
        client.set(key, b"!" + pickle.dumps(Payload()))  # Flask-Caching's pickle format
    other = make_redis_middle(redis_server.url)
    answer = other.profile(token)
    assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == alice.oid
    assert not marker.exists()
    assert len(other.obo_calls()) == 2  # the planted value is a miss, and was replaced


def test_redis_clients_get_short_timeouts(make_redis_middle: MakeMiddle,
                                          redis_server: RedisServer) -> None:
    def kwargs_of(middle: Any) -> dict[str, Any]:
        store = middle.cache.backend
        assert isinstance(store, RedisEntryStore)
        return dict(store.client.connection_pool.connection_kwargs)

    built = kwargs_of(make_redis_middle(redis_server.url))
    assert built["socket_timeout"] == built["socket_connect_timeout"] == DEFAULT_SOCKET_TIMEOUT
    assert built["retry"].get_retries() == 1
    chosen = kwargs_of(make_redis_middle(None, OBO_CACHE={
        "CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_server.url,
        "CACHE_OPTIONS": {"socket_timeout": 0.75}}))
    assert chosen["socket_timeout"] == 0.75


def test_the_apps_own_redis_cache(entra: Any, middle_api: Any, redis_server: RedisServer,
                                  downstream: DownstreamStandIn) -> None:
    app = Flask("own-cache")
    app.config.update(middle_settings(entra, middle_api, downstream),
                      CACHE_TYPE="RedisCache", CACHE_REDIS_URL=redis_server.url,
                      CACHE_KEY_PREFIX="myapp:")
    cache = Cache(app)
    FlaskOBO(app, cache=cache)
    token_cache = app.extensions["obo"].acquirer.cache
    store = token_cache.backend
    assert isinstance(store, RedisEntryStore) and store.backend is cache.cache
    assert token_cache.shared and token_cache.codec.encrypts
    # redis-py's defaults (5 s, 10 retries) would stall requests: the token cache has its own.
    # (Flask-Caching keeps its client private; this is the one way to tell them apart.)
    assert store.client is not cache.cache._write_client
    assert store.client.connection_pool.connection_kwargs["socket_timeout"] == 0.25

    alice = entra.add_user("alice")
    with app.test_request_context(headers={
            "Authorization": f"Bearer {entra.issue_user_token(alice, resource=middle_api)}"}):
        from flask_obo.downstream import acquire_token_for_user

        acquire_token_for_user(api="down")
    cache.set("the-apps-own", 1)
    keys = set(raw_values(redis_server.url))
    assert b"myapp:the-apps-own" in keys
    assert any(k.startswith(b"myapp:flask_obo:") for k in keys)  # under the app's prefix


@pytest.mark.parametrize("cache_type", ["RedisCache", "RedisSentinelCache", "RedisClusterCache"])
def test_each_redis_backend_from_configuration_even_when_down_at_start(
        make_redis_middle: MakeMiddle, entra: Any, cache_type: str) -> None:
    """Configuration alone picks the backend; none of them stops the app from starting or
    serving when its servers cannot be reached (real Sentinel and Cluster servers:
    test_redis_topologies)."""
    from flask_caching.backends import rediscache

    closed = free_port()  # nothing listens there: this test needs no redis-server
    settings: dict[str, Any] = {"CACHE_TYPE": cache_type}
    if cache_type == "RedisCache":
        settings["CACHE_REDIS_URL"] = f"redis://127.0.0.1:{closed}/0"
    elif cache_type == "RedisSentinelCache":
        settings.update(CACHE_REDIS_SENTINELS=[("127.0.0.1", closed)],
                        CACHE_REDIS_SENTINEL_MASTER="mymaster")
    else:
        settings["CACHE_REDIS_CLUSTER"] = f"127.0.0.1:{closed}"
    middle = make_redis_middle(None, OBO_CACHE=settings)
    store = middle.cache.backend
    assert isinstance(store, RedisEntryStore)
    assert isinstance(store.backend, getattr(rediscache, cache_type))
    assert middle.cache.shared and middle.cache.codec.encrypts

    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    for _ in range(3):
        answer = middle.profile(token)
        assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == alice.oid
    assert len(middle.obo_calls()) == 1  # the in-process front serves while Redis is away


def test_the_in_process_cache_is_not_encrypted(make_redis_middle: MakeMiddle) -> None:
    # Every other backend is (tests/test_cache_backends.py); a cache directory is refused.
    assert not make_redis_middle(None).cache.codec.encrypts  # in-process: nothing to protect


def test_a_redis_user_limited_to_the_documented_acl_is_enough(
        make_redis_middle: MakeMiddle, redis_server: RedisServer, entra: Any) -> None:
    admin = redis_client(redis_server.url)
    admin.execute_command("ACL", "SETUSER", "flask-obo", "on", ">acl-test-password",
                          "~flask_obo:*", "+get", "+set", "+del", "+evalsha", "+script|load")
    url = f"redis://flask-obo:acl-test-password@127.0.0.1:{redis_server.port}/0"
    first, second = make_redis_middle(url), make_redis_middle(url)
    alice = entra.add_user("alice")
    token = first.token_for(alice)
    for middle in (first, second):  # fill under the lock (SET NX, Lua release), then a read
        answer = middle.profile(token)
        assert answer.status_code == 200 and answer.get_json()["downstream"]["oid"] == alice.oid
    assert len(first.obo_calls()) == 1
    assert admin.execute_command("ACL", "LOG") == []  # nothing was refused
    assert len(raw_values(redis_server.url)) == 1  # the entry, its lock released


def test_flask_obo_check_tries_the_redis_cache(make_redis_middle: MakeMiddle,
                                               redis_server: RedisServer) -> None:
    middle = make_redis_middle(redis_server.url)
    result = middle.app.test_cli_runner().invoke(args=["obo", "check"])
    assert "[ok] token cache: RedisCache answers (write, read, delete), encrypted with a key " \
           "derived from the credential" in result.output, result.output
    assert raw_values(redis_server.url) == {}  # the probe is gone

    redis_server.stop()
    result = middle.app.test_cli_runner().invoke(args=["obo", "check"])
    assert result.exit_code == 1
    assert "[FAIL] token cache: RedisCache did not answer (ConnectionError" in result.output
