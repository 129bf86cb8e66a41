"""``DownstreamSession``: this user's header on a shared pool, the CAE retry, transient retries,
URL handling, app-only sessions, async views and trust of ``OBO_CA_BUNDLE`` over HTTPS.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import certifi
import pytest
from flask import Flask
from obo_helpers import CAE_CLAIMS, LoopbackServer, challenge_params, decode_claims

from flask_obo.downstream import (
    DownstreamSession,
    get_user_session,
    requires_downstream,
    requires_downstream_for_app,
)
from flask_obo.testing.tls import ServerTLS

if TYPE_CHECKING:
    from obo_fixtures import Downstream, MakeMiddle

pytest_plugins = ["obo_fixtures"]


def test_cae_challenge_gets_one_fresh_token_and_one_retry(make_middle: MakeMiddle, entra: Any,
                                                          downstream: Downstream) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    answer = middle.get("/call/cae", token)
    assert answer.status_code == 200
    assert answer.get_json()["status"] == 200
    assert answer.get_json()["downstream"]["oid"] == alice.oid
    calls = middle.obo_calls()
    assert len(calls) == 2
    assert "claims" not in calls[0]["params"]
    assert json.loads(calls[1]["params"]["claims"]) == json.loads(CAE_CLAIMS)
    # The fresh token replaced the revoked one in the cache: no third OBO, no challenge.
    again = middle.get("/call/cae", token)
    assert again.get_json()["status"] == 200
    assert again.get_json()["downstream"]["token"] == answer.get_json()["downstream"]["token"]
    assert len(middle.obo_calls()) == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cae_refused_twice_goes_back_to_the_client(make_middle: MakeMiddle, entra: Any,
                                                   downstream: Downstream, method: str) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    headers = {"Authorization": f"Bearer {token}"}
    answer = middle.client.open("/call/cae-always", method=method, headers=headers)
    assert answer.status_code == 401
    params = challenge_params(answer.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_claims"
    assert decode_claims(params["claims"]) == json.loads(CAE_CLAIMS)
    assert params["authorization_uri"] == f"{entra.authority()}/oauth2/v2.0/authorize"
    assert len(middle.obo_calls()) == 2  # one OBO, one OBO with the challenge, no more


def test_idempotent_requests_retry_on_503_and_posts_do_not(make_middle: MakeMiddle,
                                                           entra: Any,
                                                           downstream: Downstream) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("alice"))
    key = uuid.uuid4().hex
    answer = middle.get(f"/call/flaky/{key}/1", token).get_json()
    assert answer["status"] == 200
    assert answer["downstream"]["attempt"] == 2
    post_key = uuid.uuid4().hex
    posted = middle.client.post(f"/call/flaky/{post_key}/1",
                                headers={"Authorization": f"Bearer {token}"}).get_json()
    assert posted["status"] == 503
    assert downstream.hits[post_key] == 1


def test_no_answer_from_downstream_is_a_gateway_error(make_middle: MakeMiddle, entra: Any,
                                                     downstream: Downstream) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    middle = make_middle(OBO_DOWNSTREAM_APIS={
        "down": {"base_url": downstream.url, "scopes": [downstream.read_scope],
                 "timeout": 0.3, "retries": 0},
        "gone": {"base_url": closed, "scopes": [downstream.read_scope], "retries": 0}})

    @middle.app.get("/gone")
    @requires_downstream(api="gone")
    def gone(downstream: DownstreamSession) -> Any:
        return {"status": downstream.get("me").status_code}

    token = middle.token_for(entra.add_user("alice"))
    refused = middle.get("/gone", token)
    assert refused.status_code == 502
    assert refused.content_type == "application/problem+json"
    assert refused.get_json()["reason"] == "downstream_unreachable"
    slow = middle.get("/call/slow/1.0", token)
    assert slow.status_code == 504
    assert slow.get_json()["reason"] == "downstream_timeout"
    assert middle.get("/call/me", token).get_json()["status"] == 200
    assert len(middle.obo_calls()) == 1  # the token stayed cached throughout


def test_nothing_of_one_user_reaches_the_next(make_middle: MakeMiddle, entra: Any,
                                              downstream: Downstream) -> None:
    middle = make_middle()
    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    first = middle.get("/call/set-cookie", middle.token_for(alice)).get_json()
    assert first["downstream"]["oid"] == alice.oid
    seen_by_bob = middle.get("/call/me", middle.token_for(bob)).get_json()["downstream"]
    assert seen_by_bob["oid"] == bob.oid
    assert seen_by_bob["cookies"] == {}
    pool = middle.app.extensions["obo"].pools.by_api["down"]
    assert "Authorization" not in pool.headers
    assert len(pool.cookies) == 0
    assert pool.auth is None


def test_urls_join_the_base_and_stay_on_its_origin(make_middle: MakeMiddle, entra: Any,
                                                   downstream: Downstream) -> None:
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
        adhoc = get_user_session(scopes=[downstream.read_scope])
        with pytest.raises(ValueError, match="absolute"):
            adhoc.get("me")
        assert adhoc.get(downstream.url + "me").status_code == 200
    assert len(middle.obo_calls()) == 1  # same user, same scopes: one token for both


def test_app_only_session(make_middle: MakeMiddle, entra: Any, downstream: Downstream) -> None:
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


@pytest.fixture(scope="module")
def https_downstream(downstream: Downstream, entra_emulator: Any,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The downstream API again, over HTTPS with its own CA; a bundle with both CAs."""
    directory = tmp_path_factory.mktemp("downstream-tls")
    tls = ServerTLS(directory)
    bundle = Path(directory) / "bundle.pem"
    bundle.write_text(Path(entra_emulator.ca_bundle).read_text() + Path(tls.ca_bundle).read_text())
    server = LoopbackServer(downstream.flask_app, ssl_context=tls.server_context())
    try:
        yield server.url, str(bundle)
    finally:
        server.stop()


def test_https_downstream_trusts_obo_ca_bundle(make_middle: MakeMiddle, entra: Any,
                                               https_downstream: tuple[str, str],
                                               downstream: Downstream,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, bundle = https_downstream
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # which knows neither CA
    middle = make_middle(OBO_CA_BUNDLE=bundle, OBO_DOWNSTREAM_APIS={
        "down": {"base_url": url, "scopes": [downstream.read_scope]}})
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
        make_middle: MakeMiddle, entra: Any, downstream: Downstream) -> None:
    """OBO_CLIENT_CAPABILITIES=["CP1"] tells Entra this API handles CAE claims challenges."""
    middle = make_middle(OBO_CLIENT_CAPABILITIES=["CP1"])
    alice = entra.add_user("alice")
    answer = middle.get("/call/me", middle.token_for(alice))
    assert answer.status_code == 200
    assert answer.get_json()["downstream"]["oid"] == alice.oid
    (call,) = middle.obo_calls()
    claims = json.loads(call["params"]["claims"])
    assert claims["access_token"]["xms_cc"]["values"] == ["CP1"]
