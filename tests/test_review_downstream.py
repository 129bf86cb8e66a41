"""Review findings in the downstream session: who a session acts for, and downstream faults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from obo_helpers import LoopbackServer

from flask_obo.downstream import DownstreamSession, requires_downstream
from flask_obo.extension import public

if TYPE_CHECKING:
    from obo_fixtures import Downstream, MakeMiddle

pytest_plugins = ["obo_fixtures"]


def test_a_session_kept_past_its_request_acts_for_its_own_user_only(
        make_middle: MakeMiddle, entra: Any, downstream: Downstream) -> None:
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
        make_middle: MakeMiddle, entra: Any, downstream: Downstream, path: str) -> None:
    server = LoopbackServer(_unreadable_api)
    try:
        middle = make_middle(OBO_DOWNSTREAM_APIS={
            "down": {"base_url": downstream.url, "scopes": [downstream.read_scope]},
            "bad": {"base_url": server.url, "scopes": [downstream.read_scope]}})

        @middle.app.get("/bad/<path:path>")
        @requires_downstream(api="bad")
        def bad(path: str, downstream: DownstreamSession) -> Any:
            return {"status": downstream.get(path).status_code}

        response = middle.get(f"/bad/{path}", middle.token_for(entra.add_user("carol")))
        assert response.status_code == 502
        assert response.content_type == "application/problem+json"
        assert response.json["reason"] == "downstream_bad_response"
    finally:
        server.stop()


def test_requires_downstream_validates_the_caller_even_for_an_app_only_api(
        make_middle: MakeMiddle, entra: Any, downstream: Downstream) -> None:
    # @requires_downstream promises a validated caller; an API configured app_only must not
    # turn it into an unauthenticated app-token proxy on a view marked public.
    middle = make_middle(OBO_DOWNSTREAM_APIS={
        "down": {"base_url": downstream.url, "scopes": [downstream.read_scope]},
        "as-app": {"base_url": downstream.url, "scopes": [downstream.read_scope],
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
