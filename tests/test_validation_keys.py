"""Signing keys: rotation without a restart, the rate-limited refetch on unknown kids, an
authority outage before and after start, scheduled refresh, and the validated-token cache.

These tests rotate keys and break the authority, so they use an emulator of their own."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import bearer, build_app
from flask import Flask
from test_validation_claims import assert_invalid

from flask_obo.signals import token_validated
from flask_obo.state import get_state
from flask_obo.testing import App, EntraEmulator, User
from flask_obo.validation import TokenValidator


@pytest.fixture
def emu(private_emulator: EntraEmulator) -> Iterator[EntraEmulator]:
    yield private_emulator
    private_emulator.faults.clear()


@pytest.fixture
def api(emu: EntraEmulator) -> App:
    return emu.register_app(f"api-{uuid.uuid4().hex[:6]}", scopes=["access_as_user"])


@pytest.fixture
def alice(emu: EntraEmulator) -> User:
    return emu.add_user(f"alice-{uuid.uuid4().hex[:6]}")


def status(app: Flask, token: str) -> int:
    return app.test_client().get("/me", headers=bearer(token)).status_code


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_key_rotation_without_restart(emu: EntraEmulator, api: App, alice: User) -> None:
    app = build_app(emu, api)
    before = emu.issue_user_token(alice, resource=api)
    assert status(app, before) == 200
    fetches = emu.call_count("jwks")
    emu.rotate_keys()
    after = emu.issue_user_token(alice, resource=api)
    assert status(app, after) == 200  # the unknown kid triggered one refetch
    assert emu.call_count("jwks") == fetches + 1
    assert status(app, before) == 200  # the old key is still published
    assert status(app, after) == 200
    assert emu.call_count("jwks") == fetches + 1


def test_flood_of_unknown_kids_is_one_refetch(emu: EntraEmulator, api: App,
                                              alice: User) -> None:
    app = build_app(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=300)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    fetches = emu.call_count("jwks")
    for _ in range(40):
        forged = emu.sign({"aud": api.client_id}, {"kid": uuid.uuid4().hex})
        response = app.test_client().get("/me", headers=bearer(forged))
        assert_invalid(response, api, "unknown_key")
    assert emu.call_count("jwks") <= fetches + 1


def test_concurrent_unknown_kid_is_fetched_once(emu: EntraEmulator, api: App,
                                                alice: User) -> None:
    app = build_app(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    emu.rotate_keys()
    tokens = [emu.issue_user_token(alice, resource=api) for _ in range(8)]
    fetches = emu.call_count("jwks")
    emu.faults.inject("jwks", "delay", delay=0.3)
    results: list[int] = []
    threads = [threading.Thread(target=lambda t=t: results.append(status(app, t)))
               for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert emu.call_count("jwks") == fetches + 1


def test_retired_key_invalidates_cached_tokens(emu: EntraEmulator, api: App,
                                               alice: User) -> None:
    app = build_app(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    old = emu.issue_user_token(alice, resource=api)
    assert status(app, old) == 200
    assert status(app, old) == 200  # now in the validated-token cache
    emu.rotate_keys()
    emu.retire_old_keys()
    new = emu.issue_user_token(alice, resource=api)
    assert status(app, new) == 200  # refetch: the key set changed, the cache is dropped
    response = app.test_client().get("/me", headers=bearer(old))
    assert_invalid(response, api, "unknown_key")


def test_outage_after_start_keeps_validating(emu: EntraEmulator, api: App,
                                             alice: User) -> None:
    app = build_app(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    emu.faults.inject("*", "status", count=1000, status=503)
    # New tokens signed with a key already held: validated without the authority.
    for _ in range(3):
        assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    # A key that appeared during the outage cannot be fetched: a clean 401, never a 500.
    emu.rotate_keys()
    rotated = emu.issue_user_token(alice, resource=api)
    assert_invalid(app.test_client().get("/me", headers=bearer(rotated)), api, "unknown_key")
    emu.faults.clear()
    assert status(app, rotated) == 200  # back: the next unknown kid refetches


def test_failed_scheduled_refresh_keeps_the_keys(emu: EntraEmulator, api: App,
                                                 alice: User) -> None:
    app = build_app(emu, api, OBO_METADATA_REFRESH_INTERVAL=1)
    token = emu.issue_user_token(alice, resource=api)
    assert status(app, token) == 200
    emu.faults.inject("*", "drop", count=1000)
    time.sleep(1.05)
    attempts = emu.faults.pending()
    assert status(app, token) == 200  # due: a background refresh starts, and fails
    assert wait_for(lambda: emu.faults.pending() < attempts)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200


def test_scheduled_refresh_picks_up_new_keys(emu: EntraEmulator, api: App,
                                             alice: User) -> None:
    app = build_app(emu, api, OBO_METADATA_REFRESH_INTERVAL=1,
                    OBO_JWKS_MIN_REFETCH_INTERVAL=3600)
    token = emu.issue_user_token(alice, resource=api)
    assert status(app, token) == 200
    new_kid = emu.rotate_keys()
    time.sleep(1.05)
    assert status(app, token) == 200  # served from the cache; starts the refresh
    authority = get_state(app).validator.authority
    assert wait_for(lambda: new_kid in (authority.metadata.keys if authority.metadata else {}))


def test_authority_down_at_start_gives_503_then_recovers(emu: EntraEmulator, api: App,
                                                         alice: User) -> None:
    emu.faults.inject("discovery", "status", status=500)
    app = build_app(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=0)  # the app starts anyway
    token = emu.issue_user_token(alice, resource=api)
    response = app.test_client().get("/me", headers=bearer(token))
    assert response.status_code == 503
    assert "WWW-Authenticate" not in response.headers
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json["reason"] == "authority_unavailable"
    # A token that is malformed is still refused as such, without the authority.
    emu.faults.inject("*", "status", status=500)
    assert app.test_client().get("/me", headers=bearer("x.y")).status_code == 401
    emu.faults.clear()
    assert status(app, token) == 200


def test_initial_fetch_failures_are_rate_limited(emu: EntraEmulator, api: App,
                                                 alice: User) -> None:
    emu.faults.inject("*", "status", count=1000, status=503)
    app = build_app(emu, api, OBO_JWKS_MIN_REFETCH_INTERVAL=300)
    token = emu.issue_user_token(alice, resource=api)
    before = emu.faults.pending()
    for _ in range(20):
        assert status(app, token) == 503
    assert before - emu.faults.pending() == 1  # one attempt, then 503 without trying


def test_no_network_call_per_request(emu: EntraEmulator, api: App, alice: User) -> None:
    app = build_app(emu, api)
    assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    calls = emu.call_count()
    for _ in range(10):
        assert status(app, emu.issue_user_token(alice, resource=api)) == 200
    assert emu.call_count() == calls


def test_repeated_token_is_served_from_the_cache(emu: EntraEmulator, api: App,
                                                 alice: User) -> None:
    app = build_app(emu, api)
    token = emu.issue_user_token(alice, resource=api)
    seen: list[tuple[bool, str]] = []

    def receiver(sender: Flask, claims: Any, cached: bool) -> None:
        seen.append((cached, claims.oid))

    with token_validated.connected_to(receiver, app):
        assert status(app, token) == 200
        assert status(app, token) == 200
    assert seen == [(False, alice.oid), (True, alice.oid)]


def test_cached_token_still_expires(emu: EntraEmulator, api: App, alice: User) -> None:
    app = build_app(emu, api, OBO_CLOCK_SKEW=30)
    state = get_state(app)
    now = [time.time()]
    validator = TokenValidator(state.config, state.validator.authority, clock=lambda: now[0])
    token = emu.issue_user_token(alice, resource=api, lifetime=60)
    assert validator.validate_cached(token)[1] is False
    assert validator.validate_cached(token)[1] is True
    now[0] += 60 + 31
    with pytest.raises(Exception, match="expired") as caught:
        validator.validate(token)
    assert getattr(caught.value, "reason", None) == "expired"


def test_cache_is_bounded(emu: EntraEmulator, api: App, alice: User) -> None:
    app = build_app(emu, api, OBO_VALIDATED_TOKEN_CACHE_SIZE=3)
    validator = get_state(app).validator
    tokens = [emu.issue_user_token(alice, resource=api) for _ in range(5)]
    for token in tokens:
        validator.validate(token)
    assert validator.validate_cached(tokens[-1])[1] is True
    assert validator.validate_cached(tokens[0])[1] is False  # evicted (least recently used)


def test_an_endless_authority_answer_is_cut_off_not_read_whole() -> None:
    """A misbehaving or hostile authority cannot make the API read an unbounded document."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from flask_obo._http import build_session
    from flask_obo.config import OboConfig
    from flask_obo.errors import AuthorityError
    from flask_obo.validation import Authority

    sent = []

    class Endless(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(16 * 1024):  # up to 1 GiB unless the client hangs up first
                    self.wfile.write(chunk)
                    sent.append(len(chunk))
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = OboConfig.from_mapping({"OBO_AUTHORITY": "https://login.example/tenant",
                                         "OBO_CLIENT_ID": "client", "OBO_ALLOWED_TENANTS": ["*"]})
        authority = Authority(config, build_session())
        url = f"http://127.0.0.1:{server.server_address[1]}/doc"
        with pytest.raises(AuthorityError, match="more than"):
            authority._get_json(url, "the test document")
    finally:
        server.shutdown()
        server.server_close()
    assert sum(sent) < 64 * 1024 * 1024  # it stopped reading near the 1 MiB cap
