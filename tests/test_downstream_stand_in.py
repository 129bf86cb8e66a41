"""The ``downstream_api`` stand-in users get for their own suites: it refuses every token a real
resource would refuse (signature, issuer, audience, expiry, scopes or roles), records who called
(claims, never a token), and can be scripted or taken off the network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from support.checks import bearer
from support.jose import (
    attacker_rsa_key,
    authority_signing_key,
    claims_of,
    header_of,
    resign,
    sign_with,
)

from flask_obo import build_session
from flask_obo.testing import DownstreamStandIn
from flask_obo.testing.pytest_plugin import EntraTestHelper


def get(stand_in: DownstreamStandIn, token: str | None, path: str = "me",
        **kwargs: Any) -> requests.Response:
    headers = bearer(token) if token is not None else {}
    return requests.get(stand_in.url + path, headers=headers, timeout=10, **kwargs)


def test_a_valid_token_is_answered_with_the_caller_and_recorded(
        entra: EntraTestHelper, downstream_api: DownstreamStandIn) -> None:
    alice = entra.add_user("alice")
    token = entra.issue_user_token(alice, resource=downstream_api.registration, scopes=["read"])
    answer = get(downstream_api, token, "v1.0/me?x=1")
    assert answer.status_code == 200
    body = answer.json()
    assert (body["oid"], body["scp"], body["app_only"]) == (alice.oid, ["read"], False)
    assert body["path"] == "/v1.0/me" and body["token"].startswith("sha256:")
    (call,) = downstream_api.calls
    assert (call.method, call.path, call.status, call.oid) == ("GET", "/v1.0/me", 200, alice.oid)
    assert call.claims is not None and call.claims["scp"] == "read"
    assert call.token == body["token"]
    assert token not in repr(downstream_api.calls) and token.split(".")[2] not in str(body)


def test_tokens_a_real_resource_would_refuse_are_refused(
        entra: EntraTestHelper, downstream_api: DownstreamStandIn) -> None:
    reg = downstream_api.registration
    alice = entra.add_user("alice")
    good = entra.issue_user_token(alice, resource=reg, scopes=["read"])
    signer, _ = authority_signing_key(entra.emulator)
    other_api = entra.register_app("other", scopes=["read"])
    daemon = entra.register_app("daemon", secret="s")
    entra.grant_consent(client=daemon, resource=reg, roles=[])
    tokens = [
        entra.issue_user_token(alice, resource=other_api, scopes=["read"]),
        entra.issue_user_token(alice, resource=reg, scopes=["read"], lifetime=-3600),
        sign_with(attacker_rsa_key(), "RS256", header_of(good), claims_of(good)),
        resign(signer, good, iss=f"https://login.microsoftonline.com/{alice.tenant_id}/v2.0"),
        resign(signer, good, scp="profile"),  # none of its scopes (read, write)
        entra.issue_app_token(daemon, resource=reg, roles=["Other"]),  # none of its (Reader)
        None,
    ]
    statuses = [get(downstream_api, token).status_code for token in tokens]
    assert statuses == [401, 401, 401, 401, 403, 403, 401]
    assert [call.reason for call in downstream_api.calls] == [
        "audience", "expired", "signature", "issuer", *["missing_scope_or_role"] * 2, "missing"]
    assert [call.claims is None for call in downstream_api.calls] == [True] * 4 + [False] * 2 + [
        True]
    assert downstream_api.calls[-1].token is None
    # The control: the same app, once granted the role, is let in.
    entra.grant_consent(client=daemon, resource=reg, roles=["Reader"])
    app_only = get(downstream_api, entra.issue_app_token(daemon, resource=reg)).json()
    assert app_only["app_only"] is True and app_only["roles"] == ["Reader"]


def test_answers_can_be_scripted(entra: EntraTestHelper,
                                 downstream_api: DownstreamStandIn) -> None:
    token = entra.issue_user_token(entra.add_user("alice"), resource=downstream_api.registration)
    downstream_api.answer_next(status=503, body="busy", count=2)
    downstream_api.answer_next(status=401, body={"error": "claims"},
                               headers={"WWW-Authenticate": 'Bearer error="insufficient_claims"'})
    downstream_api.answer_next(headers={"Set-Cookie": "session=1"})  # the usual answer, and more
    answers = [get(downstream_api, token) for _ in range(5)]
    assert [a.status_code for a in answers] == [503, 503, 401, 200, 200]
    assert answers[0].text == "busy"
    assert answers[2].json() == {"error": "claims"}
    assert answers[2].headers["WWW-Authenticate"] == 'Bearer error="insufficient_claims"'
    assert answers[3].cookies["session"] == "1" and answers[3].json()["oid"]
    assert "session" not in answers[4].cookies
    downstream_api.answer_next(status=500, count=5)
    downstream_api.clear_answers()
    assert get(downstream_api, token).status_code == 200
    assert get(downstream_api, None).status_code == 401  # scripts answer valid tokens only


def test_it_can_be_taken_off_the_network_and_back(entra: EntraTestHelper,
                                                  downstream_api: DownstreamStandIn) -> None:
    token = entra.issue_user_token(entra.add_user("alice"), resource=downstream_api.registration)
    downstream_api.stop()
    with pytest.raises(requests.ConnectionError):
        get(downstream_api, token)
    downstream_api.start()
    assert get(downstream_api, token).status_code == 200


def test_it_serves_https_with_a_ca_of_its_own(entra: EntraTestHelper,
                                              downstream_api: DownstreamStandIn) -> None:
    token = entra.issue_user_token(entra.add_user("alice"), resource=downstream_api.registration)
    with DownstreamStandIn(entra.emulator, downstream_api.registration, tls=True) as https:
        assert https.url.startswith("https://") and https.ca_bundle is not None
        assert Path(https.ca_bundle).exists()
        with build_session(https.ca_bundle) as session:
            assert session.get(https.url + "me", headers=bearer(token),
                               timeout=10).json()["tid"] == entra.tenant_id
    assert not Path(https.ca_bundle).exists()
