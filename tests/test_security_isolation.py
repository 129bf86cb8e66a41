"""Cache isolation under concurrency: many users, many threads, one shared token cache.

A middle-tier API calls a real downstream API (FlaskOBO-protected, served on loopback) on
behalf of 100 users from 16 threads, each user several times in a shuffled order (so one user's
first requests race each other). Every response must carry its own user's oid, as the downstream
API saw it in the token it received: a token that crossed users would show another oid.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from support.apps import build_middle
from support.checks import bearer

from flask_obo.testing import DownstreamCall, DownstreamStandIn

USERS = 100
CALLS_PER_USER = 4
THREADS = 16


@dataclass
class Run:
    users: list[Any]
    tokens: list[str]
    results: list[tuple[int, int, dict[str, Any] | None]]  # (user index, status, body)
    downstream_calls: list[DownstreamCall]
    obo_calls: list[dict[str, Any]]
    middle_client_id: str


@pytest.fixture(scope="module")
def run(entra_emulator: Any) -> Iterator[Run]:
    emu = entra_emulator
    tag = uuid.uuid4().hex[:8]
    secret = f"iso-{uuid.uuid4()}"
    middle = emu.register_app(f"iso-middle-{tag}", secret=secret, scopes=["access_as_user"])
    down = emu.register_app(f"iso-down-{tag}", scopes=["read"])
    emu.grant_consent(client=middle, resource=down, scopes=["read"])
    with DownstreamStandIn(emu, down) as stand_in:
        app = build_middle(emu, middle, stand_in, secret=secret)
        users = [emu.add_user(f"iso-{i}-{tag}@contoso.test") for i in range(USERS)]
        tokens = [emu.issue_user_token(u, resource=middle, scopes=["access_as_user"])
                  for u in users]
        order = [i for i in range(USERS) for _ in range(CALLS_PER_USER)]
        random.Random(20240607).shuffle(order)

        def call(index: int) -> tuple[int, int, dict[str, Any] | None]:
            response = app.test_client().get("/call/down/echo", headers=bearer(tokens[index]))
            return index, response.status_code, response.get_json(silent=True)

        with ThreadPoolExecutor(THREADS) as pool:
            results = list(pool.map(call, order))
        obo_calls = [c for c in emu.calls("on_behalf_of") if c.get("client_id") == middle.client_id]
        yield Run(users, tokens, results, list(stand_in.calls), obo_calls, middle.client_id)


def test_every_response_carries_its_own_users_oid(run: Run) -> None:
    assert len(run.results) == USERS * CALLS_PER_USER
    wrong = [(i, status, body) for i, status, body in run.results
             if status != 200 or body is None or body.get("oid") != run.users[i].oid]
    assert not wrong, f"{len(wrong)} responses were refused or carried another user's oid: " \
                      f"{wrong[:5]}"


def test_every_downstream_token_belongs_to_one_user(run: Run) -> None:
    """Each token the downstream API received (and validated) names one user, and a user it was
    obtained for."""
    oids = {u.oid for u in run.users}
    owners: dict[str | None, set[str]] = defaultdict(set)
    for call in run.downstream_calls:
        assert call.status == 200 and call.claims is not None, call
        assert call.claims["azp"] == run.middle_client_id  # obtained by the middle tier (OBO)
        owners[call.token].add(call.claims["oid"])
    assert len(run.downstream_calls) == USERS * CALLS_PER_USER
    assert all(len(o) == 1 for o in owners.values())
    assert {next(iter(o)) for o in owners.values()} == oids


def test_one_obo_call_per_user_under_concurrency(run: Run) -> None:
    """Cached per user and single-flight per key: 400 requests, 100 identity-provider calls,
    every one of them a success."""
    assert len(run.obo_calls) == USERS, Counter(c.get("status") for c in run.obo_calls)
    assert all(c.get("status") == 200 for c in run.obo_calls)
    downstream_tokens = {call.token for call in run.downstream_calls}
    assert len(downstream_tokens) == USERS
