"""A hostile or broken downstream API cannot crash or stall the middle tier.

A 401's ``WWW-Authenticate`` header is parsed in one linear pass and only up to 8 KiB; the
``claims`` of a challenge are refused when nested deeper than a claims request can be. What
cannot be read as a challenge reaches the view as the 401 it is (never a 500, never a worker
held for a minute with the GIL). The timeouts below are only failure guards: with a parser of
quadratic cost these answers took over a minute each.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, Response
from obo_helpers import LoopbackServer

pytest_plugins = ["obo_fixtures"]

LONG = 65_000  # under http.client's 64 KiB limit on one header line


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


CHALLENGES: dict[str, str] = {
    "one-long-token": "Bearer error=insufficient_claims " + "a" * LONG,
    "unclosed-quote": 'Bearer error="insufficient_claims", claims="' + "A" * LONG,
    "many-names": "Bearer error=insufficient_claims " + "a=" * (LONG // 2),
    "many-spaces": 'Bearer error="insufficient_claims", a' + " " * LONG,
    "padded-valid": 'Bearer error="insufficient_claims", claims="' + _b64(
        '{"access_token":{"nbf":{"essential":true}}}') + '", x="' + "y" * LONG + '"',
    "deep-array": 'Bearer error="insufficient_claims", claims="' + _b64(
        "[" * 3000 + "]" * 3000) + '"',
    "deep-object": 'Bearer error="insufficient_claims", claims="' + _b64(
        '{"access_token":' + '{"a":' * 1500 + "1" + "}" * 1501) + '"',
}


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    """A downstream API that answers every request with the 401 its path names."""
    app = Flask("hostile-downstream")

    @app.get("/challenge/<name>")
    def challenge(name: str) -> Response:
        return Response("no", status=401, headers={"WWW-Authenticate": CHALLENGES[name]})

    server = LoopbackServer(app)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def middle(make_middle: Any, hostile: str, downstream: Any) -> Any:
    return make_middle(OBO_DOWNSTREAM_APIS={"down": {"base_url": hostile,
                                                     "scopes": [downstream.read_scope]}})


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(CHALLENGES))
def test_an_unreadable_challenge_reaches_the_view_as_a_401(middle: Any, entra: Any,
                                                           name: str) -> None:
    token = middle.token_for(entra.add_user("alice"))
    response = middle.get(f"/call/challenge/{name}", token)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.json["status"] == 401
    assert len(middle.obo_calls()) == 1  # no second token for a challenge not understood


def test_a_readable_challenge_in_a_header_of_sane_size_still_works(middle: Any, entra: Any,
                                                                    hostile: str) -> None:
    # The well-formed challenge of padded-valid, without the padding: one retry, then the
    # challenge goes back to the client as a 401 insufficient_claims.
    CHALLENGES["sane"] = CHALLENGES["padded-valid"].split(', x="')[0]
    token = middle.token_for(entra.add_user("bob"))
    response = middle.get("/call/challenge/sane", token)
    assert response.status_code == 401
    assert 'error="insufficient_claims"' in response.headers["WWW-Authenticate"]
    assert len(middle.obo_calls()) == 2
