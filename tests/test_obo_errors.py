"""Entra's refusals and failures, as the answers a client can act on.

MFA (a claims challenge), consent, a revoked assertion, this app's own bad credential, and
every injected identity-provider fault: each with its status, header and problem+json body,
nothing cached, nothing of a token in the logs, and recovery on the next request.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from support.apps import MakeMiddle
from support.checks import assert_unavailable, decode_claims, parse_challenge
from support.timing import wait_for

from flask_obo.signals import downstream_token_acquired, obo_failed
from flask_obo.testing import DownstreamStandIn


def test_mfa_challenge_end_to_end(make_middle: MakeMiddle, entra: Any,
                                  downstream: DownstreamStandIn) -> None:
    middle = make_middle()
    alice = entra.add_user("alice", mfa_required_for=[downstream.registration])

    refused = middle.get("/profile", middle.token_for(alice, mfa=False))
    assert refused.status_code == 401
    assert refused.content_type == "application/problem+json"
    params = parse_challenge(refused.headers["WWW-Authenticate"])
    assert params["realm"] == f"api://{middle.api.client_id}"  # OBO_REALM's default
    assert params["error"] == "insufficient_claims"
    assert params["authorization_uri"] == f"{entra.authority()}/oauth2/v2.0/authorize"
    claims = decode_claims(params["claims"])
    assert claims["access_token"]["capolids"]["essential"] is True
    assert refused.get_json()["status"] == 401
    assert decode_claims(params["claims"]) == json.loads(refused.get_json()["claims"])

    # The client signs the user in again with the challenge and comes back with MFA.
    passed = middle.get("/profile", middle.token_for(alice, mfa=True))
    assert passed.status_code == 200, passed.get_json()
    assert "mfa" in passed.get_json()["downstream"]["amr"]
    assert passed.get_json()["downstream"]["oid"] == alice.oid


def test_consent_required_then_granted(make_middle: MakeMiddle, entra: Any,
                                       downstream: DownstreamStandIn) -> None:
    middle = make_middle(consent=False)
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    failures: list[dict[str, Any]] = []

    def record(sender: Any, **kwargs: Any) -> None:
        failures.append(kwargs)

    with obo_failed.connected_to(record, sender=middle.app):
        refused = middle.get("/profile", token)
    assert refused.status_code == 403
    params = parse_challenge(refused.headers["WWW-Authenticate"])
    assert params["proposedAction"] == "consent"
    assert params["scopes"] == downstream.scope("read")
    assert params["consentUri"].startswith(f"{entra.authority()}/oauth2/v2.0/authorize?")
    assert f"client_id={middle.api.client_id}" in params["consentUri"]
    body = refused.get_json()
    assert body["scopes"] == [downstream.scope("read")]
    assert body["aadsts"] == [65001]
    assert failures == [{"error": "invalid_grant", "codes": [65001],
                         "scopes": (downstream.scope("read"),)}]

    # An admin consents: the next request succeeds (no refusal was cached).
    entra.grant_consent(client=middle.api, resource=downstream.registration, scopes=["read"])
    assert middle.get("/profile", token).status_code == 200


def test_revoked_assertion_is_invalid_token(make_middle: MakeMiddle, entra: Any) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    entra.revoke_user_sessions(alice)
    refused = middle.get("/profile", token)
    assert refused.status_code == 401
    params = parse_challenge(refused.headers["WWW-Authenticate"])
    assert params["error"] == "invalid_token"
    assert refused.get_json()["aadsts"] == [50173]


def test_app_only_caller_cannot_be_exchanged(make_middle: MakeMiddle, entra: Any) -> None:
    middle = make_middle()
    other = entra.register_app("other client", secret="x")
    entra.grant_consent(client=other, resource=middle.api, roles=[])
    app_token = entra.issue_app_token(other, resource=middle.api, roles=["Anything"])
    refused = middle.get("/profile", app_token)
    assert refused.status_code == 403
    assert middle.obo_calls() == []


def test_wrong_client_secret_is_502(make_middle: MakeMiddle, entra: Any) -> None:
    api = entra.register_app("middle", secret="the-real-one", scopes=["access_as_user"])
    middle = make_middle(api=api, secret="not-the-secret")
    refused = middle.get("/profile", middle.token_for(entra.add_user("alice")))
    assert refused.status_code == 502
    assert refused.content_type == "application/problem+json"
    assert refused.get_json()["reason"] == "invalid_client"


FAULTS = [
    pytest.param({"kind": "status", "status": 500}, None, id="500"),
    pytest.param({"kind": "status", "status": 503, "retry_after": 7}, "7", id="503-retry-after"),
    pytest.param({"kind": "status", "status": 429, "retry_after": 3}, "3", id="429"),
    pytest.param({"kind": "delay", "delay": 1.5}, None, id="timeout"),
    pytest.param({"kind": "drop"}, None, id="dropped-connection"),
    pytest.param({"kind": "malformed"}, None, id="malformed-json"),
]


@pytest.mark.parametrize(("fault", "retry_after"), FAULTS)
def test_identity_provider_fault_is_503_then_recovers(
        make_middle: MakeMiddle, entra: Any, fault: dict[str, Any], retry_after: str | None,
        caplog: pytest.LogCaptureFixture) -> None:
    middle = make_middle(OBO_HTTP_TIMEOUT=0.5)
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    middle.get("/health-does-not-exist", token)  # warm up: discovery fetched, no OBO yet
    middle.acquirer.client(middle.app.extensions["obo"].config.tenant)
    entra.faults.inject("token", **fault)

    with caplog.at_level(logging.DEBUG):
        failed = middle.get("/profile", token)
    assert failed.status_code == 503
    assert failed.content_type == "application/problem+json"
    assert int(failed.headers["Retry-After"]) >= 1
    if retry_after is not None:
        assert failed.headers["Retry-After"] == retry_after
    assert "WWW-Authenticate" not in failed.headers
    assert token not in caplog.text
    assert token[-40:] not in caplog.text
    assert any("on_behalf_of" in r.getMessage() and "503" in r.getMessage()
               for r in caplog.records if r.name == "flask_obo.obo")
    if fault["kind"] == "malformed":  # MSAL logs an unparsable body verbatim: withheld
        assert "withheld by flask-obo" in caplog.text

    sources: list[str] = []
    with downstream_token_acquired.connected_to(
            lambda sender, **kw: sources.append(kw["source"]), sender=middle.app):
        recovered = middle.get("/profile", token)
    assert recovered.status_code == 200, recovered.get_json()
    assert recovered.get_json()["downstream"]["oid"] == alice.oid
    assert sources == ["identity_provider"]  # nothing was cached: a fresh OBO succeeded


@pytest.mark.parametrize(("sent", "expected"), [
    ("7", "7"), ("100000", "300"), ("9" * 5000, "300"),  # int() of > 4300 digits would raise
    ("\u0663".encode().decode("latin-1"), "5"),  # a non-ASCII digit, as HTTP delivers it
    ("soon", "5"),
], ids=["seconds", "too-long", "5000-digits", "non-ascii-digit", "not-a-number"])
def test_retry_after_is_bounded_whatever_the_identity_provider_sends(
        make_middle: MakeMiddle, entra: Any, sent: str, expected: str) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("alice"))
    entra.faults.inject("token", "status", status=503, retry_after=sent)
    assert_unavailable(middle.get("/profile", token), expected)


def test_aadsts_codes_from_any_error_description_never_raise(make_middle: MakeMiddle,
                                                             entra: Any) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("alice"))
    entra.faults.inject("token", "json", status=400, body={
        "error": "invalid_grant", "error_description": "AADSTS" + "9" * 5000})
    refused = middle.get("/profile", token)
    assert refused.status_code == 401, refused.get_json()
    assert refused.get_json()["reason"] == "invalid_grant"
    assert refused.get_json()["aadsts"] == [999999999]
    entra.faults.inject("token", "json", status=400, body={
        "error": "invalid_grant", "error_description": "AADSTS50013: assertion expired"})
    assert middle.get("/profile", token).get_json()["aadsts"] == [50013]


@pytest.mark.parametrize("expires_in", [float("inf"), float("nan"), "soon", -5, 0])
def test_a_token_answer_without_a_usable_lifetime_is_a_503_not_a_500(
        make_middle: MakeMiddle, entra: Any, expires_in: Any) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("alice"))
    entra.faults.inject("token", "json", body={"access_token": "eyJ.x.y", "token_type": "Bearer",
                                               "expires_in": expires_in})
    failed = middle.get("/profile", token)
    assert assert_unavailable(failed)["reason"] == "malformed_response"
    assert middle.get("/profile", token).status_code == 200  # nothing was cached


def test_discovery_outage_at_first_use_is_503_then_recovers(make_middle: MakeMiddle,
                                                             entra: Any) -> None:
    middle = make_middle()
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    assert middle.get("/nothing", token).status_code == 404  # validator has its keys
    entra.faults.inject("discovery", "status", status=503)
    failures: list[dict[str, Any]] = []
    with obo_failed.connected_to(lambda sender, **kw: failures.append(kw), sender=middle.app):
        failed = middle.get("/profile", token)
    assert failed.status_code == 503
    assert failures[0]["error"] == "metadata_http_503"
    assert middle.obo_calls() == []
    assert middle.get("/profile", token).status_code == 200


def test_concurrent_waiters_share_the_leaders_failure(make_middle: MakeMiddle,
                                                      entra: Any) -> None:
    middle = make_middle(OBO_HTTP_TIMEOUT=0.3)
    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    middle.acquirer.client(middle.app.extensions["obo"].config.tenant)
    hold = entra.faults.hold("token")  # the one call times out while the emulator holds it
    barrier = threading.Barrier(8)

    def call(_: int) -> int:
        client = middle.app.test_client()
        barrier.wait()
        return client.get("/profile", headers={"Authorization": f"Bearer {token}"}).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(8)))
    assert statuses == [503] * 8
    hold.release()  # the emulator answers (and records) the abandoned call
    assert wait_for(lambda: middle.obo_calls())
    assert len(middle.obo_calls()) == 1
    assert middle.get("/profile", token).status_code == 200
