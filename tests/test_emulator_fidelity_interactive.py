"""The emulator's interactive sign-in as MSAL Python sees it, unmodified: the auth code flow
(``initiate_auth_code_flow`` + ``acquire_token_by_auth_code_flow``) of public and confidential
clients, ``acquire_token_interactive`` with its own loopback listener, and a claims challenge
answered interactively, then used for OBO. The person at the pages is ``InteractiveSignIn``.
"""

from __future__ import annotations

import threading
import webbrowser
from typing import Any

import pytest
import requests

from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper

pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended")


def _claims(result: dict[str, Any]) -> dict[str, Any]:
    import base64
    import json

    part = result["access_token"].split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


@pytest.fixture
def api(entra: EntraTestHelper) -> App:
    return entra.register_app("api", secret="api-secret", scopes=["access_as_user"])


@pytest.fixture
def alice(entra: EntraTestHelper) -> User:
    return entra.add_user("alice", password="alice-pw")


def test_public_client_auth_code_flow_then_silent_refresh(
        entra: EntraTestHelper, api: App, alice: User) -> None:
    cli = entra.register_app("desktop", public_client_redirect_uris=["http://localhost"])
    pca = entra.public_client(cli)
    scopes = [f"{api.app_id_uri}/access_as_user"]
    flow = pca.initiate_auth_code_flow(scopes, redirect_uri="http://localhost:8400",
                                       login_hint=alice.username)
    with entra.interactive_sign_in() as person:
        done = person.complete(flow["auth_uri"], username=alice.username, password="alice-pw")
    result = pca.acquire_token_by_auth_code_flow(flow, done.params)
    assert "access_token" in result, result
    assert result["id_token_claims"]["oid"] == alice.oid  # MSAL checked nonce, aud and iss
    assert _claims(result)["scp"] == "access_as_user"
    account = pca.get_accounts()[0]  # built from client_info
    assert account["home_account_id"] == f"{alice.oid}.{alice.tenant_id}"
    silent = pca.acquire_token_silent(scopes, account=account, force_refresh=True)
    assert silent and "access_token" in silent, silent
    assert [c["status"] for c in entra.calls("refresh_token")] == [200]


def test_confidential_web_app_with_form_post(entra: EntraTestHelper, api: App,
                                             alice: User) -> None:
    web = entra.register_app("web", secret="web-secret",
                             web_redirect_uris=["https://webapp.example/signin-oidc"])
    cca = entra.confidential_client(web, "web-secret")
    flow = cca.initiate_auth_code_flow([f"{api.app_id_uri}/access_as_user"],
                                       redirect_uri="https://webapp.example/signin-oidc",
                                       response_mode="form_post")
    with entra.interactive_sign_in() as person:
        done = person.complete(flow["auth_uri"], username=alice.username, password="alice-pw")
    assert done.response.status_code == 200  # the self-posting form
    result = cca.acquire_token_by_auth_code_flow(flow, done.params)
    assert "access_token" in result, result
    assert _claims(result)["azp"] == web.client_id
    assert entra.calls("authorization_code")[-1]["client_auth"] == "client_secret_post"


def test_a_claims_challenge_answered_interactively_unblocks_obo(
        entra: EntraTestHelper, api: App) -> None:
    """The chain a SPA runs, with MSAL Python as the client: OBO refuses (MFA), the client
    signs in again with the claims, and OBO with the new token succeeds."""
    down = entra.register_app("down", scopes=["read"])
    entra.grant_consent(client=api, resource=down, scopes=["read"])
    bob = entra.add_user("bob", password="bob-pw", mfa_required_for=[down],
                         one_time_code="246810")
    cli = entra.register_app("desktop", public_client_redirect_uris=["http://localhost"])
    pca, cca = entra.public_client(cli), entra.confidential_client(api, "api-secret")
    scopes, down_scope = [f"{api.app_id_uri}/access_as_user"], [f"{down.app_id_uri}/read"]
    with entra.interactive_sign_in() as person:
        flow = pca.initiate_auth_code_flow(scopes, redirect_uri="http://localhost:8400")
        first = pca.acquire_token_by_auth_code_flow(flow, person.complete(
            flow["auth_uri"], username=bob.username, password="bob-pw").params)
        refused = cca.acquire_token_on_behalf_of(first["access_token"], down_scope)
        assert refused.get("error") == "interaction_required" and refused.get("claims")
        flow = pca.initiate_auth_code_flow(scopes, redirect_uri="http://localhost:8400",
                                           claims_challenge=refused["claims"])
        done = person.complete(flow["auth_uri"], one_time_code="246810")  # the session's bob
        second = pca.acquire_token_by_auth_code_flow(flow, done.params)
    assert _claims(second)["amr"] == ["pwd", "mfa"]
    obo = cca.acquire_token_on_behalf_of(second["access_token"], down_scope)
    assert "access_token" in obo, obo


def test_acquire_token_interactive_with_a_person_in_place_of_the_browser(
        entra: EntraTestHelper, api: App, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = entra.register_app("desktop", public_client_redirect_uris=["http://localhost"])
    entra.grant_consent(client=cli, resource=api, scopes=["access_as_user"])
    errors: list[BaseException] = []

    def person_at_the_browser(url: str, *args: Any, **kwargs: Any) -> bool:
        def sign_in() -> None:
            try:
                with entra.interactive_sign_in() as person:
                    back = person.complete(url, username=alice.username, password="alice-pw")
                    # MSAL asks for form_post: the page posts to MSAL's own loopback listener
                    assert back.redirect_uri is not None
                    requests.post(back.redirect_uri, data=back.params, timeout=10)
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        threading.Thread(target=sign_in, daemon=True).start()
        return True

    monkeypatch.setattr(webbrowser, "open", person_at_the_browser)
    monkeypatch.delenv("BROWSER", raising=False)
    result = entra.public_client(cli).acquire_token_interactive(
        [f"{api.app_id_uri}/access_as_user"], timeout=30)
    assert errors == []
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == alice.username


def test_msal_python_cannot_redeem_a_single_page_apps_code(entra: EntraTestHelper, api: App,
                                                           alice: User) -> None:
    spa = entra.register_app("spa", spa_redirect_uris=["http://localhost:5173/"])
    pca = entra.public_client(spa)
    flow = pca.initiate_auth_code_flow([f"{api.app_id_uri}/access_as_user"],
                                       redirect_uri="http://localhost:5173/")
    with entra.interactive_sign_in() as person:
        done = person.complete(flow["auth_uri"], username=alice.username, password="alice-pw")
    result = pca.acquire_token_by_auth_code_flow(flow, done.params)
    assert result.get("error") == "invalid_request"
    assert result.get("error_codes") == [9002327]
