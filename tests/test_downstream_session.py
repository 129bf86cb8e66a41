"""``DownstreamSession``: this user's header on a shared pool, the CAE retry, transient retries,
a downstream API that does not answer or cannot be read, a session that always acts for its own
user, URL handling, app-only sessions, async views and trust of ``OBO_CA_BUNDLE`` over HTTPS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
from flask import Flask
from support.apps import MakeMiddle
from support.checks import CAE_CLAIMS, bearer, cae_challenge, decode_claims, parse_challenge
from support.servers import free_port

from flask_obo.downstream import (
    DownstreamSession,
    get_user_session,
    requires_downstream,
    requires_downstream_for_app,
)
from flask_obo.extension import public
from flask_obo.testing import DownstreamStandIn, LoopbackServer


def test_cae_challenge_gets_one_fresh_token_and_one_retry(make_middle: MakeMiddle, entra: Any,
                                                          downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    downstream.answer_next(status=401, headers={"WWW-Authenticate": cae_challenge()})
    answer = middle.get("/call/down/cae", token)  # the first token is "revoked" (CAE)
    assert answer.status_code == 200
    assert answer.get_json()["oid"] == alice.oid
    calls = middle.obo_calls()
    assert len(calls) == 2
    assert "claims" not in calls[0]["params"]
    assert json.loads(calls[1]["params"]["claims"]) == json.loads(CAE_CLAIMS)
    refused, retried = downstream.calls
    assert (refused.status, retried.status) == (401, 200) and refused.token != retried.token
    # The fresh token replaced the revoked one in the cache: no third OBO, no challenge.
    again = middle.get("/call/down/cae", token)
    assert again.status_code == 200
    assert again.get_json()["token"] == answer.get_json()["token"]
    assert len(middle.obo_calls()) == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cae_refused_twice_goes_back_to_the_client(make_middle: MakeMiddle, entra: Any,
                                                   downstream: DownstreamStandIn,
                                                   method: str) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    downstream.answer_next(status=401, headers={"WWW-Authenticate": cae_challenge()}, count=2)
    answer = middle.client.open("/call/down/cae", method=method, headers=bearer(token))
    assert answer.status_code == 401
    params = parse_challenge(answer.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_claims"
    assert decode_claims(params["claims"]) == json.loads(CAE_CLAIMS)
    assert params["authorization_uri"] == f"{entra.authority()}/oauth2/v2.0/authorize"
    assert len(middle.obo_calls()) == 2  # one OBO, one OBO with the challenge, no more
    assert [call.method for call in downstream.calls] == [method, method]


def test_idempotent_requests_retry_on_503_and_posts_do_not(make_middle: MakeMiddle,
                                                           entra: Any,
                                                           downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("alice"))
    downstream.answer_next(status=503)
    answer = middle.get("/call/down/flaky", token)
    assert answer.status_code == 200
    assert [call.status for call in downstream.calls] == [503, 200]  # the second attempt
    downstream.answer_next(status=503)
    posted = middle.client.post("/call/down/flaky", headers=bearer(token))
    assert posted.status_code == 503
    assert [call.method for call in downstream.calls[2:]] == ["POST"]  # sent once


def test_no_answer_from_downstream_is_a_gateway_error(make_middle: MakeMiddle, entra: Any,
                                                     downstream: DownstreamStandIn) -> None:
    closed = f"http://127.0.0.1:{free_port()}/"  # a port nobody listens on
    middle = make_middle(OBO_DOWNSTREAM_APIS={
        "down": {"base_url": downstream.url, "scopes": [downstream.scope("read")],
                 "timeout": 0.3, "retries": 0},
        "gone": {"base_url": closed, "scopes": [downstream.scope("read")], "retries": 0}})
    token = middle.token_for(entra.add_user("alice"))
    refused = middle.get("/call/gone/me", token)
    assert refused.status_code == 502
    assert refused.content_type == "application/problem+json"
    assert refused.get_json()["reason"] == "downstream_unreachable"
    downstream.answer_next(delay=1.0)  # longer than the API's timeout
    slow = middle.get("/call/down/slow", token)
    assert slow.status_code == 504
    assert slow.get_json()["reason"] == "downstream_timeout"
    assert middle.get("/call/down/me", token).status_code == 200
    assert len(middle.obo_calls()) == 1  # the token stayed cached throughout


def test_nothing_of_one_user_reaches_the_next(make_middle: MakeMiddle, entra: Any,
                                              downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    downstream.answer_next(headers={"Set-Cookie": f"session={alice.oid}; Path=/"})
    first = middle.get("/call/down/set-cookie", middle.token_for(alice)).get_json()
    assert first["oid"] == alice.oid
    seen_by_bob = middle.get("/call/down/me", middle.token_for(bob)).get_json()
    assert seen_by_bob["oid"] == bob.oid
    assert seen_by_bob["cookies"] == {}
    pool = middle.app.extensions["obo"].pools.by_api["down"]
    assert "Authorization" not in pool.headers
    assert len(pool.cookies) == 0
    assert pool.auth is None


def test_a_session_kept_past_its_request_acts_for_its_own_user_only(
        make_middle: MakeMiddle, entra: Any) -> None:
    # A session stashed by one request and used in another must not exchange the second
    # caller's assertion and file the result under the first caller's cache key.
    middle = make_middle()
    kept: dict[str, DownstreamSession] = {}

    @middle.app.get("/keep")
    @requires_downstream(api="down")
    def keep(downstream: DownstreamSession) -> Any:
        kept["session"] = downstream
        return {}

    @middle.app.get("/use-kept")
    def use_kept() -> Any:
        return kept["session"].get("me").json()

    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    alice_token, bob_token = middle.token_for(alice), middle.token_for(bob)
    assert middle.get("/keep", alice_token).status_code == 200
    used = middle.get("/use-kept", bob_token)
    assert used.status_code == 200
    assert used.json["oid"] == alice.oid  # the session's own user, never the current caller
    again = middle.get("/profile", alice_token)
    assert again.status_code == 200
    assert again.json["downstream"]["oid"] == alice.oid
    assert middle.get("/profile", bob_token).json["downstream"]["oid"] == bob.oid


def _unreadable_api(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """A downstream API whose answers cannot be read: a body that is not the gzip it claims
    to be, and a redirect loop."""
    if environ["PATH_INFO"] == "/gzip":
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Encoding", "gzip"), ("Content-Length", "12")])
        return [b"not gzip at all"[:12]]
    start_response("302 Found", [("Location", "/loop"), ("Content-Length", "0")])
    return [b""]


@pytest.mark.parametrize("path", ["gzip", "loop"])
def test_an_unreadable_downstream_answer_is_a_502_problem_not_a_500(
        make_middle: MakeMiddle, entra: Any, downstream: DownstreamStandIn, path: str) -> None:
    with LoopbackServer(_unreadable_api) as server:
        middle = make_middle(OBO_DOWNSTREAM_APIS={
            "down": {"base_url": downstream.url, "scopes": [downstream.scope("read")]},
            "bad": {"base_url": server.url, "scopes": [downstream.scope("read")]}})
        response = middle.get(f"/call/bad/{path}", middle.token_for(entra.add_user("carol")))
    assert response.status_code == 502
    assert response.content_type == "application/problem+json"
    assert response.json["reason"] == "downstream_bad_response"


def test_requires_downstream_validates_the_caller_even_for_an_app_only_api(
        make_middle: MakeMiddle, entra: Any, downstream: DownstreamStandIn) -> None:
    # @requires_downstream promises a validated caller; an API configured app_only must not
    # turn it into an unauthenticated app-token proxy on a view marked public.
    middle = make_middle(OBO_DOWNSTREAM_APIS={
        "down": {"base_url": downstream.url, "scopes": [downstream.scope("read")]},
        "as-app": {"base_url": downstream.url, "scopes": [downstream.scope("read")],
                   "app_only": True}})

    @middle.app.get("/open")
    @public
    @requires_downstream(api="as-app")
    def open_view(downstream: DownstreamSession) -> Any:
        return downstream.get("me").json()

    assert middle.client.get("/open").status_code == 401
    assert entra.calls("client_credentials") == []
    answer = middle.get("/open", middle.token_for(entra.add_user("dave")))
    assert answer.status_code == 200 and answer.json["app_only"] is True


def test_urls_join_the_base_and_stay_on_its_origin(make_middle: MakeMiddle, entra: Any,
                                                   downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("alice"))
    with middle.app.test_request_context(headers={"Authorization": f"Bearer {token}"}):
        session = get_user_session("down")
        assert session.get("/me").json()["oid"]  # leading slash: still under base_url
        assert session.get(downstream.url + "me").status_code == 200
        for elsewhere in ("http://127.0.0.2:1/steal", "//127.0.0.2:1/steal",
                          downstream.url.replace("http:", "https:") + "me"):
            with pytest.raises(ValueError, match="origin"):
                session.get(elsewhere)
        assert session.get("me?next=http://127.0.0.2/x").status_code == 200
        assert session.authorization not in repr(session)
        adhoc = get_user_session(scopes=[downstream.scope("read")])
        with pytest.raises(ValueError, match="absolute"):
            adhoc.get("me")
        assert adhoc.get(downstream.url + "me").status_code == 200
    assert len(middle.obo_calls()) == 1  # same user, same scopes: one token for both


def test_app_only_session(make_middle: MakeMiddle, entra: Any,
                          downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("alice"))
    for _ in range(20):
        answer = middle.get("/as-app", token).get_json()
        assert answer["status"] == 200
        seen = answer["downstream"]
        assert seen["app_only"] is True
        assert seen["roles"] == ["Reader"]
        assert seen["azp"] == middle.api.client_id
    assert len(entra.calls("client_credentials")) == 1
    assert middle.obo_calls() == []


def test_async_view(make_middle: MakeMiddle, entra: Any) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")

    @middle.app.get("/async")
    @requires_downstream(api="down")
    async def async_view(downstream: DownstreamSession) -> Any:
        return {"oid": downstream.get("me").json()["oid"]}

    assert middle.get("/async", middle.token_for(alice)).get_json() == {"oid": alice.oid}


def test_decorator_misuse_is_caught_early() -> None:
    # (An api= name the configuration lacks: tests/test_config_mistakes.py.)
    with pytest.raises(TypeError):
        requires_downstream()
    with pytest.raises(TypeError, match="parentheses"):
        requires_downstream_for_app(lambda: None)  # type: ignore[arg-type]


@pytest.fixture
def https_downstream(downstream: DownstreamStandIn, entra: Any,
                     tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The downstream API again, over HTTPS with its own CA; a bundle with both CAs."""
    with DownstreamStandIn(entra.emulator, downstream.registration, tls=True) as https:
        assert https.ca_bundle is not None
        bundle = tmp_path / "bundle.pem"
        bundle.write_text(Path(entra.ca_bundle).read_text() + Path(https.ca_bundle).read_text())
        yield https.url, str(bundle)


def test_https_downstream_trusts_obo_ca_bundle(make_middle: MakeMiddle, entra: Any,
                                               https_downstream: tuple[str, str],
                                               downstream: DownstreamStandIn,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, bundle = https_downstream
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # which knows neither CA
    middle = make_middle(OBO_CA_BUNDLE=bundle, OBO_DOWNSTREAM_APIS={
        "down": {"base_url": url, "scopes": [downstream.scope("read")]}})
    alice = entra.add_user("alice")
    answer = middle.get("/profile", middle.token_for(alice))
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["downstream"]["oid"] == alice.oid


def test_validation_only_app_has_no_acquirer(entra: Any) -> None:
    from flask_obo.extension import FlaskOBO

    api = entra.register_app("validate-only", scopes=["access_as_user"])
    app = Flask("validate-only")
    app.config.update(OBO_AUTHORITY=entra.authority(), OBO_CLIENT_ID=api.client_id,
                      OBO_CA_BUNDLE=entra.ca_bundle)
    FlaskOBO(app)
    assert app.extensions["obo"].acquirer is None

    @app.get("/x")
    def x() -> Any:
        return {"session": repr(get_user_session(scopes=["api://x/read"]))}

    app.testing = True
    token = entra.issue_user_token(entra.add_user("alice"), resource=api)
    response = app.test_client().get("/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 500 and response.json["reason"] == "no_credential"
    assert "OBO_CLIENT_SECRET" in response.json["detail"]


def test_client_capabilities_are_declared_to_the_identity_provider(
        make_middle: MakeMiddle, entra: Any, downstream: DownstreamStandIn) -> None:
    """OBO_CLIENT_CAPABILITIES=["CP1"] tells Entra this API handles CAE claims challenges."""
    middle = make_middle(OBO_CLIENT_CAPABILITIES=["CP1"])
    alice = entra.add_user("alice")
    answer = middle.get("/call/down/me", middle.token_for(alice))
    assert answer.status_code == 200
    assert answer.get_json()["oid"] == alice.oid
    (call,) = middle.obo_calls()
    claims = json.loads(call["params"]["claims"])
    assert claims["access_token"]["xms_cc"]["values"] == ["CP1"]
