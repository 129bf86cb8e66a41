"""``flask_obo.azure``: azure-core credentials over flask-obo's acquirer, as the caller or as
the app: the protocols, the shared cache, claims, MFA, tenants, and the request binding.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from azure.core.credentials import AccessToken, SupportsTokenInfo, TokenCredential
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential
from flask import Response, copy_current_request_context, jsonify, stream_with_context
from support.apps import MIDDLE_SECRET, MakeMiddle
from support.azure import GRAPH_DEFAULT, STORAGE_SCOPE
from support.checks import CAE_CLAIMS, decode_claims, parse_challenge
from support.jose import claims_of

from flask_obo import InsufficientScope, acquire_token_for_user
from flask_obo.azure import (
    get_app_credential,
    get_async_app_credential,
    get_async_user_credential,
    get_user_credential,
)
from flask_obo.testing import fingerprint


def test_credentials_satisfy_the_azure_core_protocols(azure_middle: MakeMiddle,
                                                      entra: Any) -> None:
    middle = azure_middle()

    @middle.app.get("/kinds")
    def kinds() -> Any:
        user, app = get_user_credential(), get_app_credential()
        async_user, async_app = get_async_user_credential(), get_async_app_credential()
        return {
            "sync": all(isinstance(c, (TokenCredential)) and isinstance(c, SupportsTokenInfo)
                        for c in (user, app)),
            "async": all(isinstance(c, AsyncTokenCredential)
                         and isinstance(c, AsyncSupportsTokenInfo)
                         for c in (async_user, async_app)),
            "one_per_request": get_user_credential() is user
                               and get_async_user_credential() is async_user,
        }

    answer = middle.get("/kinds", middle.token_for(entra.add_user("alice")))
    assert answer.get_json() == {"sync": True, "async": True, "one_per_request": True}


def test_storage_token_is_entras_v1_shape_and_shares_the_cache(azure_middle: MakeMiddle,
                                                               entra: Any) -> None:
    middle = azure_middle()

    @middle.app.get("/tokens")
    def tokens() -> Any:
        credential = get_user_credential()
        plain = credential.get_token(STORAGE_SCOPE)
        info = credential.get_token_info(STORAGE_SCOPE)
        flask_obo_token = acquire_token_for_user([STORAGE_SCOPE])
        asynchronous = asyncio.run(get_async_user_credential().get_token(STORAGE_SCOPE))
        return {
            "same": len({plain.token, info.token, flask_obo_token.token,
                         asynchronous.token}) == 1,
            "access_token_type": isinstance(plain, AccessToken),
            "expires_on": [plain.expires_on, info.expires_on],
            "refresh_on": info.refresh_on, "claims": claims_of(plain.token),
        }

    alice = entra.add_user("alice")
    assertion = middle.token_for(alice)
    body = middle.get("/tokens", assertion).get_json()
    # The next request of the same caller: the cache again, no identity-provider call.
    assert middle.get("/tokens", assertion).get_json()["same"]
    assert body["same"] and body["access_token_type"]
    claims = body["claims"]
    assert claims["iss"] == f"https://sts.windows.net/{entra.tenant_id}/"
    assert (claims["aud"], claims["ver"], claims["appid"]) == (
        "https://storage.azure.com", "1.0", middle.api.client_id)
    assert (claims["oid"], claims["scp"]) == (alice.oid, "user_impersonation")
    assert body["expires_on"][0] == body["expires_on"][1] > time.time() + 3000
    # Past: an SDK asks again before each call, and flask-obo's cache answers.
    assert body["refresh_on"] < time.time() - 60
    calls = middle.obo_calls()
    assert len(calls) == 1 and calls[0]["scope"].split()[0] == STORAGE_SCOPE


def test_no_repr_shows_a_token_or_the_assertion(azure_middle: MakeMiddle,
                                                entra: Any) -> None:
    middle = azure_middle()

    @middle.app.get("/reprs")
    def reprs() -> Any:
        credential = get_user_credential()
        token = credential.get_token(STORAGE_SCOPE)
        shown = " ".join(repr(x) for x in (
            credential, get_async_user_credential(), token,
            credential.get_token_info(STORAGE_SCOPE), get_app_credential(),
            get_app_credential().get_token(STORAGE_SCOPE)))
        return {"shown": shown, "leaks": token.token in shown}

    assertion = middle.token_for(entra.add_user("alice"))
    body = middle.get("/reprs", assertion).get_json()
    assert body["leaks"] is False and assertion not in body["shown"]
    assert "withheld" in body["shown"]


def test_claims_get_one_fresh_token_that_replaces_the_cached_one(azure_middle: MakeMiddle,
                                                                entra: Any) -> None:
    middle = azure_middle()

    @middle.app.get("/claims")
    def claims() -> Any:
        credential = get_user_credential()
        first = credential.get_token(GRAPH_DEFAULT)
        fresh = credential.get_token_info(GRAPH_DEFAULT, options={"claims": CAE_CLAIMS})
        after = credential.get_token(GRAPH_DEFAULT)
        return {"fresh": fresh.token != first.token, "kept": after.token == fresh.token}

    answer = middle.get("/claims", middle.token_for(entra.add_user("alice")))
    assert answer.get_json() == {"fresh": True, "kept": True}
    calls = middle.obo_calls()
    assert len(calls) == 2
    assert "claims" not in calls[0]["params"]
    assert json.loads(calls[1]["params"]["claims"]) == json.loads(CAE_CLAIMS)


@pytest.mark.parametrize("claims", [
    '{"access_token":' + '{"a":' * 1500 + "1" + "}" * 1501,  # a RecursionError in a parser
    "[" * 3000 + "]" * 3000,
    '{"access_token":{"nbf":{"essential":true,"pad":"' + "x" * 9000 + '"}}}',  # too long
    "not json at all",
], ids=["deep-object", "deep-array", "too-long", "not-json"])
def test_claims_that_cannot_be_read_are_a_502_not_a_crash(azure_middle: MakeMiddle, entra: Any,
                                                         claims: str) -> None:
    # What a hostile resource's challenge makes an SDK pass on: never sent to Entra ID.
    middle = azure_middle()

    @middle.app.get("/claims")
    def bad_claims() -> Any:
        get_user_credential().get_token(GRAPH_DEFAULT, claims=claims)
        return {}

    answer = middle.get("/claims", middle.token_for(entra.add_user("alice")))
    assert answer.status_code == 502, answer.get_data(as_text=True)[:300]
    assert answer.get_json()["reason"] == "downstream_bad_response"
    assert middle.obo_calls() == []


def test_mfa_requirement_reaches_the_client_as_a_claims_challenge(azure_middle: MakeMiddle,
                                                                  entra: Any) -> None:
    middle = azure_middle()

    @middle.app.get("/storage-token")
    def storage_token() -> Any:
        return {"expires_on": get_user_credential().get_token(STORAGE_SCOPE).expires_on}

    alice = entra.add_user("alice", mfa_required_for=[entra.storage])
    answer = middle.get("/storage-token", middle.token_for(alice))
    assert answer.status_code == 401
    params = parse_challenge(answer.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_claims"
    assert params["authorization_uri"].startswith(entra.authority())
    assert "capolids" in decode_claims(params["claims"])["access_token"]
    assert answer.get_json()["error"] == "insufficient_claims"
    # With MFA done, the same view works.
    assert middle.get("/storage-token", middle.token_for(alice, mfa=True)).status_code == 200


def test_tenant_id_is_honoured_only_where_allowed(azure_middle: MakeMiddle,
                                                  entra: Any) -> None:
    middle = azure_middle()
    other = entra.add_tenant()

    @middle.app.get("/tenant/<tid>")
    def tenant(tid: str) -> Any:
        return {"token": fingerprint(get_user_credential().get_token(STORAGE_SCOPE,
                                                                    tenant_id=tid).token)}

    token = middle.token_for(entra.add_user("alice"))
    same = middle.get(f"/tenant/{entra.tenant_id.upper()}", token)
    assert same.status_code == 200
    refused = middle.get(f"/tenant/{other}", token)
    assert refused.status_code == 403  # as acquire_token_for_app(tenant=...) refuses it
    assert refused.get_json()["reason"] == "tenant_not_allowed"
    assert other not in refused.get_data(as_text=True)
    assert len(middle.obo_calls()) == 1


def test_multi_tenant_app_tokens_for_listed_tenants_only(make_middle: Any, entra: Any) -> None:
    fabrikam, elsewhere = entra.add_tenant(), entra.add_tenant()
    api = entra.register_app("multi", secret=MIDDLE_SECRET, scopes=["access_as_user"],
                             multi_tenant=True)
    middle = make_middle(api=api, OBO_AUTHORITY=entra.authority("organizations"),
                         OBO_ALLOWED_TENANTS=[entra.tenant_id, fabrikam])

    @middle.app.get("/app-token/<tid>")
    def app_token(tid: str) -> Any:
        credential = get_app_credential()  # the caller's tenant by default
        token = credential.get_token(GRAPH_DEFAULT, tenant_id=tid).token
        return {"tid": claims_of(token)["tid"]}

    token = middle.token_for(entra.add_user("alice"))
    assert middle.get(f"/app-token/{fabrikam}", token).get_json() == {"tid": fabrikam}
    assert middle.get(f"/app-token/{entra.tenant_id}", token).get_json() == {
        "tid": entra.tenant_id}
    refused = middle.get(f"/app-token/{elsewhere}", token)
    assert (refused.status_code, refused.get_json()["reason"]) == (403, "tenant_not_allowed")
    with middle.app.app_context(), pytest.raises(InsufficientScope) as raised:
        get_app_credential(tenant=elsewhere)
    assert raised.value.reason == "tenant_not_allowed"
    assert [c["tenant"] for c in entra.calls("client_credentials")] == [fabrikam,
                                                                       entra.tenant_id]


def test_app_credential_is_not_bound_to_a_request(azure_middle: MakeMiddle,
                                                  entra: Any) -> None:
    middle = azure_middle()
    with middle.app.app_context():
        credential = get_app_credential()
        async_credential = get_async_app_credential()
    # Used where no request (nor app context) exists: a background job, a module-level client.
    info = credential.get_token_info(STORAGE_SCOPE)
    again = asyncio.run(async_credential.get_token_info(STORAGE_SCOPE))
    assert info.token == again.token
    claims = claims_of(info.token)
    assert (claims["idtyp"], claims["aud"], claims["ver"]) == ("app",
                                                               "https://storage.azure.com", "1.0")
    assert time.time() < info.refresh_on < info.expires_on  # the cache's own refresh-ahead time
    assert len(entra.calls("client_credentials")) == 1


def test_user_credential_refuses_after_its_request(azure_middle: MakeMiddle,
                                                   entra: Any) -> None:
    middle = azure_middle()
    kept: list[Any] = []

    @middle.app.get("/keep")
    def keep() -> Any:
        kept.extend([get_user_credential(), get_async_user_credential()])
        kept[0].get_token(STORAGE_SCOPE)
        return {}

    middle.get("/keep", middle.token_for(entra.add_user("alice")))
    with pytest.raises(RuntimeError, match="request that has ended"):
        kept[0].get_token(STORAGE_SCOPE)
    with pytest.raises(RuntimeError, match="request that has ended"):
        asyncio.run(kept[1].get_token_info(STORAGE_SCOPE))
    with middle.app.test_request_context("/"), pytest.raises(RuntimeError):
        kept[0].get_token_info(STORAGE_SCOPE)


def test_user_credential_refuses_in_another_users_request(azure_middle: MakeMiddle,
                                                          entra: Any) -> None:
    middle = azure_middle()
    kept: list[Any] = []

    @middle.app.get("/use-kept")
    def use_kept() -> Any:
        if not kept:
            kept.append(get_user_credential())
        try:
            return {"oid": claims_of(kept[0].get_token(STORAGE_SCOPE).token)["oid"]}
        except RuntimeError as exc:
            return {"refused": str(exc)}

    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    with middle.app.app_context():  # one app context, shared by both requests
        assert middle.get("/use-kept", middle.token_for(alice)).get_json() == {"oid": alice.oid}
        answer = middle.get("/use-kept", middle.token_for(bob)).get_json()
    assert "refused" in answer and "oid" not in answer
    assert len(middle.obo_calls()) == 1


def test_user_credential_works_in_threads_its_request_started(azure_middle: MakeMiddle,
                                                              entra: Any) -> None:
    middle = azure_middle()

    @middle.app.get("/threads")
    def threads() -> Any:
        credential = get_user_credential()
        results: list[str] = []

        def plain_worker() -> None:  # no request context: an SDK's own thread pool
            results.append(credential.get_token(STORAGE_SCOPE).token)

        @copy_current_request_context
        def copied_worker() -> None:  # its context's teardown must not end the credential
            results.append(get_user_credential().get_token(STORAGE_SCOPE).token)

        for target in (plain_worker, copied_worker):
            worker = threading.Thread(target=target)
            worker.start()
            worker.join(timeout=30)
        results.append(credential.get_token(STORAGE_SCOPE).token)
        return jsonify(count=len(results), distinct=len(set(results)))

    answer = middle.get("/threads", middle.token_for(entra.add_user("alice")))
    assert answer.get_json() == {"count": 3, "distinct": 1}
    assert len(middle.obo_calls()) == 1


def test_user_credential_works_while_its_response_streams(azure_middle: MakeMiddle,
                                                          entra: Any) -> None:
    middle = azure_middle()

    @middle.app.get("/stream")
    def stream() -> Any:
        credential = get_user_credential()

        def chunk() -> str:
            return fingerprint(credential.get_token(STORAGE_SCOPE).token) + "\n"

        def chunks() -> Any:  # a blob streamed to the client: the SDK asks again per chunk
            yield chunk()
            fetched: list[str] = []  # and its parallel downloads, in threads of their own
            worker = threading.Thread(target=lambda: fetched.append(chunk()))
            worker.start()
            worker.join(timeout=30)
            yield from fetched
            yield chunk()

        return Response(stream_with_context(chunks()))

    answer = middle.get("/stream", middle.token_for(entra.add_user("alice")))
    lines = answer.get_data(as_text=True).split()
    assert len(lines) == 3 and len(set(lines)) == 1


def test_enable_cae_without_cp1_gets_an_ordinary_token_and_a_hint(
        azure_middle: MakeMiddle, entra: Any, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import flask_obo.azure as azure_module

    monkeypatch.setattr(azure_module, "_cae_hint_logged", False)  # the hint is once a process
    middle = azure_middle()

    @middle.app.get("/cae-token")
    def cae_token() -> Any:
        credential = get_user_credential()
        first = credential.get_token(STORAGE_SCOPE, enable_cae=True)
        second = credential.get_token_info(STORAGE_SCOPE, options={"enable_cae": True})
        return {"same": first.token == second.token}

    with caplog.at_level(logging.INFO, logger="flask_obo.azure"):
        answer = middle.get("/cae-token", middle.token_for(entra.add_user("alice")))
    assert answer.get_json() == {"same": True}
    hints = [r for r in caplog.records if "OBO_CLIENT_CAPABILITIES" in r.getMessage()]
    assert len(hints) == 1
    assert "claims" not in middle.obo_calls()[0]["params"]  # no CP1 declared to Entra


def test_core_never_imports_azure_core() -> None:
    script = ("import sys\n"
              "class Block:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'azure' or name.startswith('azure.'):\n"
              "            raise ImportError('blocked: ' + name)\n"
              "sys.meta_path.insert(0, Block())\n"
              "import flask_obo, flask_obo.testing, flask_obo.cli\n"
              "try:\n"
              "    import flask_obo.azure\n"
              "except ImportError as exc:\n"
              "    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pip install 'flask-obo[azure]'" in result.stdout
