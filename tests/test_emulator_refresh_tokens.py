"""The emulator's refresh tokens from on-behalf-of, as long-running sessions meet them in Entra:
each redemption rotates the token for the same user and client; revoked sessions (AADSTS50173)
and a maximum age (AADSTS700082) refuse the whole chain. Through real MSAL."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from flask_obo.testing import App, User
from flask_obo.testing.pytest_plugin import EntraTestHelper


@dataclass
class Chain:
    entra: EntraTestHelper
    api: App
    down: App
    user: User

    @property
    def scopes(self) -> list[str]:
        return [f"{self.down.app_id_uri}/read"]

    def client(self) -> Any:
        return self.entra.confidential_client(self.api, "s3cret")

    def start(self) -> dict[str, Any]:
        """On-behalf-of with offline_access (MSAL asks for it by default)."""
        token = self.entra.issue_user_token(self.user, resource=self.api)
        result: dict[str, Any] = self.client().acquire_token_on_behalf_of(token, self.scopes)
        assert "refresh_token" in result, result
        return result

    def redeem(self, refresh_token: str) -> dict[str, Any]:
        result: dict[str, Any] = self.client().acquire_token_by_refresh_token(refresh_token,
                                                                              self.scopes)
        return result


@pytest.fixture
def chain(entra: EntraTestHelper) -> Chain:
    api = entra.register_app("middle", secret="s3cret", scopes=["access_as_user"])
    down = entra.register_app("down", scopes=["read"])
    entra.grant_consent(client=api, resource=down, scopes=["read"])
    return Chain(entra, api, down, entra.add_user("carol", password="pw"))


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_each_redemption_rotates_the_refresh_token_for_the_same_user_and_client(
        chain: Chain) -> None:
    first = chain.start()
    second = chain.redeem(first["refresh_token"])
    third = chain.redeem(second["refresh_token"])

    tokens = [first["refresh_token"], second["refresh_token"], third["refresh_token"]]
    assert len(set(tokens)) == 3
    for result in (second, third):
        body = claims(result["access_token"])
        assert (body["oid"], body["azp"], body["aud"]) == (
            chain.user.oid, chain.api.client_id, chain.down.client_id)
    calls = chain.entra.calls("refresh_token")
    assert [c["user"] for c in calls] == [chain.user.username] * 2
    assert calls[0]["params"]["refresh_token"] != calls[1]["params"]["refresh_token"]


def test_revoked_sessions_refuse_every_refresh_token_of_the_chain(chain: Chain) -> None:
    rotated = chain.redeem(chain.start()["refresh_token"])["refresh_token"]
    chain.entra.revoke_user_sessions(chain.user)

    refused = chain.redeem(rotated)

    assert (refused["error"], refused["error_codes"]) == ("invalid_grant", [50173])
    assert "The provided grant has expired due to it being revoked" in refused[
        "error_description"]


def test_a_maximum_age_refuses_the_chain_with_aadsts700082(chain: Chain) -> None:
    rotated = chain.redeem(chain.start()["refresh_token"])["refresh_token"]
    chain.entra.emulator.refresh_token_max_age = 0
    try:
        refused = chain.redeem(rotated)
    finally:
        chain.entra.emulator.refresh_token_max_age = None

    assert (refused["error"], refused["error_codes"]) == ("invalid_grant", [700082])
    assert re.search(r"AADSTS700082: The refresh token has expired due to inactivity\. The "
                     r"token was issued on \S+ and was inactive for \d+\.\d\d:\d\d:\d\d\.",
                     refused["error_description"]), refused["error_description"]
    assert "access_token" in chain.redeem(rotated)  # no maximum age again: redeemable
