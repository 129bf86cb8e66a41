"""A hostile or broken downstream API cannot crash or stall the middle tier.

A 401's ``WWW-Authenticate`` header is parsed in one linear pass and only up to 8 KiB; the
``claims`` of a challenge are refused when nested deeper than a claims request can be. What
cannot be read as a challenge reaches the view as the 401 it is (never a 500, never a worker
held for a minute with the GIL). The timeouts below are only failure guards: with a parser of
quadratic cost these answers took over a minute each.
"""

from __future__ import annotations

import base64

import pytest
from support.apps import MakeMiddle

from flask_obo.testing import DownstreamStandIn
from flask_obo.testing.pytest_plugin import EntraTestHelper

LONG = 65_000  # under http.client's 64 KiB limit on one header line


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SANE = 'Bearer error="insufficient_claims", claims="' + _b64(
    '{"access_token":{"nbf":{"essential":true}}}') + '"'
CHALLENGES: dict[str, str] = {
    "one-long-token": "Bearer error=insufficient_claims " + "a" * LONG,
    "unclosed-quote": 'Bearer error="insufficient_claims", claims="' + "A" * LONG,
    "many-names": "Bearer error=insufficient_claims " + "a=" * (LONG // 2),
    "many-spaces": 'Bearer error="insufficient_claims", a' + " " * LONG,
    "padded-valid": SANE + ', x="' + "y" * LONG + '"',
    "deep-array": 'Bearer error="insufficient_claims", claims="' + _b64(
        "[" * 3000 + "]" * 3000) + '"',
    "deep-object": 'Bearer error="insufficient_claims", claims="' + _b64(
        '{"access_token":' + '{"a":' * 1500 + "1" + "}" * 1501) + '"',
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(CHALLENGES))
def test_an_unreadable_challenge_reaches_the_view_as_a_401(
        make_middle: MakeMiddle, entra: EntraTestHelper, downstream: DownstreamStandIn,
        name: str) -> None:
    middle = make_middle()
    token = middle.token_for(entra.add_user("alice"))
    downstream.answer_next(status=401, headers={"WWW-Authenticate": CHALLENGES[name]})
    response = middle.get("/call/down/me", token)
    assert response.status_code == 401, response.get_data(as_text=True)[:300]
    assert "WWW-Authenticate" not in response.headers  # the view's answer, passed on as it came
    assert len(middle.obo_calls()) == 1  # no second token for a challenge not understood


def test_a_readable_challenge_in_a_header_of_sane_size_still_works(
        make_middle: MakeMiddle, entra: EntraTestHelper, downstream: DownstreamStandIn) -> None:
    # The well-formed challenge of padded-valid, without the padding: one retry with a fresh
    # token, refused again, then the challenge goes back to the client as 401 insufficient_claims.
    middle = make_middle()
    token = middle.token_for(entra.add_user("bob"))
    downstream.answer_next(status=401, headers={"WWW-Authenticate": SANE}, count=2)
    response = middle.get("/call/down/me", token)
    assert response.status_code == 401
    assert 'error="insufficient_claims"' in response.headers["WWW-Authenticate"]
    assert len(middle.obo_calls()) == 2
