"""The emulator's interactive sign-in, at the HTTP level: /authorize and its pages, the
authorization_code grant, sign-in sessions, end-session, and the cross-origin rules a
single-page app lives by. A person is played by ``InteractiveSignIn`` (no browser here; the
browser tests are in test_spa_browser.py, MSAL Python in test_emulator_fidelity_interactive.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from flask_obo._http import build_session
from flask_obo.testing import App, InteractiveSignIn, Page, User
from flask_obo.testing.pytest_plugin import EntraTestHelper

SPA = "http://localhost:5173/"
WEB = "https://webapp.example/signin-oidc"
NATIVE = "http://localhost/callback"
ORIGIN = "http://localhost:5173"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


@dataclass
class Cast:
    entra: EntraTestHelper
    api: App  # the middle tier: exposes access_as_user
    spa: App
    web: App  # a confidential web app
    native: App
    alice: User
    bob: User  # MFA required for the api
    verifier: str = ""

    def scope(self) -> str:
        return f"{self.api.app_id_uri}/access_as_user openid profile offline_access"

    def authorize_url(self, client: App, redirect_uri: str, *, pkce: bool = True,
                      **params: str) -> str:
        query = {"client_id": client.client_id, "response_type": "code",
                 "redirect_uri": redirect_uri, "scope": self.scope(), "state": "st4te",
                 "nonce": "n0nce", **params}
        if pkce:
            self.verifier = secrets.token_urlsafe(48)
            query.setdefault("code_challenge",
                             _b64url(hashlib.sha256(self.verifier.encode()).digest()))
            query.setdefault("code_challenge_method", "S256")
        return f"{self.entra.authority()}/oauth2/v2.0/authorize?{urlencode(query)}"

    def redeem(self, client: App, code: str, redirect_uri: str, *, origin: str | None = None,
               verifier: str | None = None, **extra: str) -> requests.Response:
        form = {"grant_type": "authorization_code", "client_id": client.client_id,
                "code": code, "redirect_uri": redirect_uri, "scope": self.scope(),
                "code_verifier": self.verifier if verifier is None else verifier,
                "client_info": "1", **extra}
        headers = {"Origin": origin} if origin else {}
        return token_post(self.entra, form, headers)

    def sign_in(self, person: InteractiveSignIn, client: App, redirect_uri: str,
                user: User | None = None, **params: str) -> Page:
        user = user or self.alice
        return person.complete(self.authorize_url(client, redirect_uri, **params),
                               username=user.username, password="pw", one_time_code="123456")


def token_post(entra: EntraTestHelper, form: dict[str, str],
               headers: dict[str, str] | None = None) -> requests.Response:
    with build_session(entra.ca_bundle) as session:
        return session.post(entra.token_endpoint(), data=form, headers=headers or {},
                            timeout=10)


def aadsts(text: str) -> int:
    return int(text.split("AADSTS", 1)[1].split(":", 1)[0])


@pytest.fixture
def cast(entra: EntraTestHelper) -> Cast:
    api = entra.register_app("api", scopes=["access_as_user"])
    spa = entra.register_app("spa", spa_redirect_uris=[SPA])
    web = entra.register_app("web", secret="web-secret", web_redirect_uris=[WEB])
    native = entra.register_app("native", public_client_redirect_uris=[NATIVE])
    alice = entra.add_user("alice", password="pw")
    bob = entra.add_user("bob", password="pw", mfa_required_for=[api])
    return Cast(entra, api, spa, web, native, alice, bob)


@pytest.fixture
def person(entra: EntraTestHelper) -> Iterator[InteractiveSignIn]:
    with entra.interactive_sign_in() as browser:
        yield browser


# errors that must not go to the redirect URI ---------------------------------------------------
def test_an_unregistered_redirect_uri_is_shown_on_the_page_not_followed(
        cast: Cast, person: InteractiveSignIn) -> None:
    page = person.open(cast.authorize_url(cast.spa, "https://evil.example/"))
    assert page.kind == "message" and page.response.status_code == 400
    assert "AADSTS50011" in page.response.text and "https://evil.example/" in page.response.text
    assert page.response.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("client_id", ["", "00000000-0000-0000-0000-000000000000"])
def test_an_unknown_client_is_shown_on_the_page(cast: Cast, person: InteractiveSignIn,
                                               client_id: str) -> None:
    url = cast.authorize_url(cast.spa, SPA).replace(cast.spa.client_id, client_id)
    page = person.open(url)
    assert page.response.status_code == 400
    assert ("AADSTS700016" if client_id else "AADSTS900144") in page.response.text


# errors sent back to the app -------------------------------------------------------------------
@pytest.mark.parametrize(("params", "pkce", "error", "code"), [
    ({}, False, "invalid_request", 9002325),  # a SPA without PKCE
    ({"code_challenge": "a" * 43, "code_challenge_method": "plain"}, True,
     "invalid_request", 50149),
    ({"code_challenge": "short"}, True, "invalid_request", 501491),
    ({"response_type": "token"}, True, "unsupported_response_type", 700054),
    ({"prompt": "always"}, True, "invalid_request", 9002313),
    ({"scope": "api://nobody-registered-this/read"}, True, "invalid_resource", 500011),
    ({"claims": "{not json"}, True, "invalid_request", 90019),
])
def test_bad_requests_go_back_to_the_app_with_entras_error_and_the_state(
        cast: Cast, person: InteractiveSignIn, params: dict[str, str], pkce: bool, error: str,
        code: int) -> None:
    page = person.open(cast.authorize_url(cast.spa, SPA, pkce=pkce, **params))
    assert page.kind == "redirect" and page.redirect_uri == SPA
    assert page.params["error"] == error, page.params
    assert aadsts(page.params["error_description"]) == code
    assert page.params["state"] == "st4te"
    assert "code" not in page.params


# signing in ------------------------------------------------------------------------------------
def test_the_sign_in_page_has_entras_fields_and_refuses_a_wrong_password(
        cast: Cast, person: InteractiveSignIn) -> None:
    page = person.open(cast.authorize_url(cast.spa, SPA, login_hint=cast.alice.username,
                                          domain_hint="contoso.test"))
    assert page.kind == "signin"
    assert page.fields["loginfmt"] == cast.alice.username  # login_hint fills it in
    assert {"loginfmt", "passwd"} <= set(page.fields)
    assert 'id="idSIButton9"' in page.response.text
    wrong = person.submit(page, loginfmt=cast.alice.username, passwd="nope")
    assert wrong.kind == "signin" and wrong.error and "AADSTS50126" in wrong.error
    assert cast.entra.session_cookie not in person.session.cookies  # nobody signed in


def test_page_text_from_the_request_is_escaped(cast: Cast, person: InteractiveSignIn) -> None:
    page = person.open(cast.authorize_url(cast.spa, SPA, login_hint='"><script>x()</script>'))
    assert "<script>x()" not in page.response.text
    assert "&lt;script&gt;" in page.response.text or "&#x27;" in page.response.text


@pytest.mark.parametrize("mode", ["query", "fragment", "form_post"])
def test_the_code_comes_back_in_the_response_mode_asked_for(
        cast: Cast, person: InteractiveSignIn, mode: str) -> None:
    done = cast.sign_in(person, cast.spa, SPA, response_mode=mode, client_info="1")
    assert done.redirect_uri == SPA
    location = done.response.headers.get("Location", "")
    if mode == "fragment":
        assert location.startswith(SPA + "#code=")
    elif mode == "query":
        assert location.startswith(SPA + "?code=")
    else:
        assert done.response.status_code == 200 and "script-src 'nonce-" in \
            done.response.headers["Content-Security-Policy"]
    assert done.params["state"] == "st4te" and done.params["code"]
    info = json.loads(base64.urlsafe_b64decode(done.params["client_info"] + "=="))
    assert info == {"uid": cast.alice.oid, "utid": cast.alice.tenant_id}


# redeeming codes: single-page apps, web apps, PKCE ----------------------------------------------
def test_a_spa_code_is_redeemed_cross_origin_with_a_24_hour_refresh_token(
        cast: Cast, person: InteractiveSignIn) -> None:
    code = cast.sign_in(person, cast.spa, SPA).params["code"]
    answer = cast.redeem(cast.spa, code, SPA, origin=ORIGIN)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    body = answer.json()
    assert _claims(body["id_token"])["nonce"] == "n0nce"
    assert _claims(body["access_token"])["scp"] == "access_as_user"
    assert 86_390 <= body["refresh_token_expires_in"] <= 86_400
    renewed = token_post(cast.entra, {"grant_type": "refresh_token", "client_id":
                                      cast.spa.client_id, "refresh_token": body["refresh_token"]},
                         {"Origin": ORIGIN})
    assert renewed.status_code == 200, renewed.text
    # the day does not restart when the refresh token is redeemed
    assert renewed.json()["refresh_token_expires_in"] <= body["refresh_token_expires_in"]
    server_side = token_post(cast.entra, {"grant_type": "refresh_token", "client_id":
                                          cast.spa.client_id,
                                          "refresh_token": renewed.json()["refresh_token"]})
    assert server_side.status_code == 400
    assert server_side.json()["error_codes"] == [9002327]


def test_a_spa_code_redeemed_without_an_origin_is_refused(
        cast: Cast, person: InteractiveSignIn) -> None:
    code = cast.sign_in(person, cast.spa, SPA).params["code"]
    refused = cast.redeem(cast.spa, code, SPA)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert refused.json()["error_codes"] == [9002327]
    assert refused.json()["error_description"].startswith(
        "AADSTS9002327: Tokens issued for the 'Single-Page Application' client-type may only "
        "be redeemed via cross-origin requests.")


def test_a_web_code_is_redeemed_by_the_server_with_its_secret_never_cross_origin(
        cast: Cast, person: InteractiveSignIn) -> None:
    first = cast.sign_in(person, cast.web, WEB).params["code"]
    cross = cast.redeem(cast.web, first, WEB, origin=ORIGIN, client_secret="web-secret")
    assert cross.json()["error_codes"] == [9002326]
    assert f"Request origin: '{ORIGIN}'" in cross.json()["error_description"]
    assert cross.headers["Access-Control-Allow-Origin"] == ORIGIN  # the browser can read why
    second = cast.sign_in(person, cast.web, WEB).params["code"]  # SSO: the session signs in
    no_secret = cast.redeem(cast.web, second, WEB)
    assert no_secret.status_code == 401 and no_secret.json()["error"] == "invalid_client"
    third = cast.sign_in(person, cast.web, WEB).params["code"]
    ok = cast.redeem(cast.web, third, WEB, client_secret="web-secret")
    assert ok.status_code == 200, ok.text
    assert "refresh_token_expires_in" not in ok.json()


def test_other_grants_refuse_cross_origin_requests(cast: Cast) -> None:
    refused = token_post(cast.entra, {"grant_type": "password", "client_id":
                                      cast.native.client_id, "username": cast.alice.username,
                                      "password": "pw", "scope": cast.scope()},
                         {"Origin": ORIGIN})
    assert refused.json()["error_codes"] == [9002326]


@pytest.mark.parametrize(("change", "error", "code"), [
    ({"verifier": "x" * 43}, "invalid_grant", 501481),
    ({"verifier": ""}, "invalid_request", 9002325),
    ({"redirect_uri": "http://localhost:5173/other"}, "invalid_grant", 50011),
    ({"client": "native"}, "invalid_grant", 70000),
])
def test_a_code_is_bound_to_its_verifier_redirect_uri_and_client(
        cast: Cast, person: InteractiveSignIn, change: dict[str, str], error: str,
        code: int) -> None:
    issued = cast.sign_in(person, cast.spa, SPA).params["code"]
    client = cast.native if change.get("client") else cast.spa
    refused = cast.redeem(client, issued, change.get("redirect_uri", SPA), origin=ORIGIN,
                          verifier=change.get("verifier"))
    assert refused.json()["error"] == error, refused.text
    assert refused.json()["error_codes"] == [code]


def test_a_code_is_good_for_one_redemption(cast: Cast, person: InteractiveSignIn) -> None:
    code = cast.sign_in(person, cast.spa, SPA).params["code"]
    assert cast.redeem(cast.spa, code, SPA, origin=ORIGIN).status_code == 200
    again = cast.redeem(cast.spa, code, SPA, origin=ORIGIN)
    assert again.json()["error_codes"] == [54005]
    unknown = cast.redeem(cast.spa, "1.A" + "x" * 40, SPA, origin=ORIGIN)
    assert unknown.json()["error"] == "invalid_grant"


def test_the_call_log_never_holds_a_code_verifier_or_password(
        cast: Cast, person: InteractiveSignIn) -> None:
    code = cast.sign_in(person, cast.spa, SPA).params["code"]
    cast.redeem(cast.spa, code, SPA, origin=ORIGIN)
    logged = json.dumps(cast.entra.requests_log)
    for secret in (code, cast.verifier, person.session.cookies[cast.entra.session_cookie]):
        assert secret not in logged
    assert '"passwd"' not in logged and '"pw"' not in logged


# the session and prompt ------------------------------------------------------------------------
def test_prompt_none_signs_in_silently_only_with_a_session(
        cast: Cast, person: InteractiveSignIn) -> None:
    silent = person.open(cast.authorize_url(cast.spa, SPA, prompt="none"))
    assert silent.params["error"] == "login_required"
    assert aadsts(silent.params["error_description"]) == 50058
    cast.sign_in(person, cast.spa, SPA)
    again = person.open(cast.authorize_url(cast.spa, SPA, prompt="none",
                                           login_hint=cast.alice.username))
    assert again.kind == "redirect" and again.params["code"]
    stranger = person.open(cast.authorize_url(cast.spa, SPA, prompt="none",
                                              login_hint="someone.else@contoso.test"))
    assert stranger.params["error"] == "login_required"


def test_prompt_login_asks_again_and_select_account_offers_the_session(
        cast: Cast, person: InteractiveSignIn) -> None:
    cast.sign_in(person, cast.spa, SPA)
    assert person.open(cast.authorize_url(cast.spa, SPA, prompt="login")).kind == "signin"
    picker = person.open(cast.authorize_url(cast.spa, SPA, prompt="select_account"))
    assert picker.kind == "pick" and cast.alice.username in picker.response.text
    tile = next(b["value"] for b in picker.buttons if cast.alice.username in b["text"])
    assert person.submit(picker, account=tile).params["code"]
    other = person.submit(person.open(cast.authorize_url(cast.spa, SPA,
                                                         prompt="select_account")),
                          account="other")
    assert other.kind == "signin"


def test_prompt_none_needing_consent_or_mfa_says_which(cast: Cast,
                                                      person: InteractiveSignIn) -> None:
    carol = cast.entra.add_user("carol", password="pw")
    cast.sign_in(person, cast.native, NATIVE, user=carol)  # consents for native only
    consent = person.open(cast.authorize_url(cast.spa, SPA, prompt="none"))
    assert consent.params["error"] == "consent_required"
    assert aadsts(consent.params["error_description"]) == 65001
    with cast.entra.interactive_sign_in() as other:
        cast.entra.grant_consent(client=cast.spa, resource=cast.api,
                                 scopes=["access_as_user"], user=cast.bob)
        other.complete(cast.authorize_url(cast.native, NATIVE), username=cast.bob.username,
                       password="pw", one_time_code="123456")
        # bob's MFA is in the session now: prompt=none needs nothing more
        assert other.open(cast.authorize_url(cast.spa, SPA, prompt="none")).params["code"]
    mfa = cast.entra.add_user("mallory", password="pw", mfa_required_for=[cast.api])
    cast.entra.grant_consent(client=cast.spa, resource=cast.api, scopes=["access_as_user"],
                             user=mfa)
    with cast.entra.interactive_sign_in() as third:
        first = third.open(cast.authorize_url(cast.spa, SPA))
        third.submit(first, loginfmt=mfa.username, passwd="pw")  # stops at the code page
        needs = third.open(cast.authorize_url(cast.spa, SPA, prompt="none"))
        assert needs.params["error"] == "interaction_required"


# consent ---------------------------------------------------------------------------------------
def test_consent_is_asked_once_and_declining_tells_the_app(
        cast: Cast, person: InteractiveSignIn) -> None:
    page = person.open(cast.authorize_url(cast.spa, SPA))
    consent = person.submit(page, loginfmt=cast.alice.username, passwd="pw")
    assert consent.kind == "consent"
    assert "Access api" in consent.response.text and "access_as_user" in consent.response.text
    declined = person.submit(consent, consent="decline")
    assert declined.params["error"] == "consent_required"
    assert declined.params["error_description"].startswith(
        "AADSTS65004: User declined to consent to access the app.")
    assert declined.params["state"] == "st4te"
    accepted = person.complete(cast.authorize_url(cast.spa, SPA))  # the session signs in
    assert accepted.params["code"]
    assert person.open(cast.authorize_url(cast.spa, SPA)).kind == "redirect"  # asked once
    assert person.open(cast.authorize_url(cast.spa, SPA, prompt="consent")).kind == "consent"


# MFA -------------------------------------------------------------------------------------------
def test_a_claims_challenge_adds_the_one_time_code_page_and_mfa_to_amr(
        cast: Cast, person: InteractiveSignIn) -> None:
    claims = json.dumps({"access_token": {"capolids": {"essential": True, "values": ["p"]}}})
    page = person.open(cast.authorize_url(cast.spa, SPA, claims=claims))
    otc = person.submit(page, loginfmt=cast.alice.username, passwd="pw")
    assert otc.kind == "otc"
    wrong = person.submit(otc, otc="999999")
    assert wrong.kind == "otc" and wrong.error and "didn't work" in wrong.error
    consent = person.submit(wrong, otc="123456")
    done = person.submit(consent, consent="accept")
    answer = cast.redeem(cast.spa, done.params["code"], SPA, origin=ORIGIN).json()
    assert _claims(answer["access_token"])["amr"] == ["pwd", "mfa"]
    # the session remembers the MFA: the next challenge passes without the page
    again = person.open(cast.authorize_url(cast.spa, SPA, claims=claims))
    assert again.kind == "redirect" and again.params["code"]


def test_a_user_who_cannot_do_mfa_gets_access_denied(cast: Cast,
                                                     person: InteractiveSignIn) -> None:
    nomfa = cast.entra.add_user("nomfa", password="pw", mfa_required_for=[cast.api],
                                mfa_passes=False)
    page = person.open(cast.authorize_url(cast.spa, SPA))
    refused = person.submit(page, loginfmt=nomfa.username, passwd="pw")
    assert refused.params["error"] == "access_denied"
    assert aadsts(refused.params["error_description"]) == 500121


# end-session -----------------------------------------------------------------------------------
def test_sign_out_ends_the_session_and_returns_only_to_registered_uris(
        cast: Cast, person: InteractiveSignIn) -> None:
    cast.sign_in(person, cast.spa, SPA)
    logout = f"{cast.entra.authority()}/oauth2/v2.0/logout"
    query = urlencode({"post_logout_redirect_uri": SPA, "state": "bye"})
    back = person.session.get(f"{logout}?{query}", allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["Location"] == SPA + "?state=bye"
    assert cast.entra.session_cookie not in person.session.cookies
    assert person.open(cast.authorize_url(cast.spa, SPA, prompt="none")).params["error"] == \
        "login_required"
    elsewhere = person.session.get(
        f"{logout}?{urlencode({'post_logout_redirect_uri': 'https://evil.example/'})}",
        allow_redirects=False, timeout=10)
    assert elsewhere.status_code == 200 and "You signed out" in elsewhere.text


# discovery and CORS ----------------------------------------------------------------------------
def test_discovery_points_at_working_interactive_endpoints(cast: Cast) -> None:
    with build_session(cast.entra.ca_bundle) as session:
        doc = session.get(cast.entra.discovery_url(), timeout=10).json()
    assert doc["authorization_endpoint"] == cast.entra.authorization_endpoint()
    assert doc["end_session_endpoint"] == cast.entra.end_session_endpoint()
    assert {"query", "fragment", "form_post"} <= set(doc["response_modes_supported"])


def test_the_token_endpoint_answers_a_browsers_preflight_before_faults_and_the_log(
        cast: Cast) -> None:
    cast.entra.faults.inject("token", "status", status=503)
    with build_session(cast.entra.ca_bundle) as session:
        preflight = session.options(cast.entra.token_endpoint(), headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-anchormailbox"}, timeout=10)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "content-type,x-anchormailbox"
    assert cast.entra.faults.pending("token") == 1  # the request itself gets the fault
    assert not [c for c in cast.entra.requests_log if c.get("method") == "OPTIONS"]
