"""Microsoft's SDKs as the signed-in user, against real third-party parts: azure-storage-blob
against Azurite (HTTPS, ``--oauth basic``: it checks each token's issuer, audience and
lifetime), msgraph-sdk against a Graph stand-in, and azure-core's bearer policy answering a
continuous access evaluation challenge.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.storage.blob import BlobServiceClient
from flask import request
from msgraph import GraphServiceClient
from support.apps import MakeMiddle
from support.azure import GRAPH_SCOPES, STORAGE_SCOPE, Azurite, GraphStandIn
from support.checks import CAE_CLAIMS, decode_claims, parse_challenge
from support.jose import claims_of

from flask_obo.azure import get_async_user_credential, get_user_credential

pytestmark = [
    # msgraph-sdk's generated code warns about its own deprecated classes.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:msgraph.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:kiota_abstractions.*"),
]


# Azure Storage (Azurite) -------------------------------------------------------------------
def add_blob_routes(app: Any, azurite: Azurite) -> None:
    @app.put("/files/<container>/<name>")
    def put_file(container: str, name: str) -> Any:
        # connection_verify: a path given per client wins over REQUESTS_CA_BUNDLE.
        service = BlobServiceClient(azurite.url, credential=get_user_credential(),
                                    connection_verify=azurite.ca_bundle)
        box = service.get_container_client(container)
        if not box.exists():
            box.create_container()
        box.upload_blob(name, request.get_data(), overwrite=True)
        return {"read_back": box.download_blob(name).readall().decode()}


def test_blob_upload_and_read_back_as_the_user(azure_middle: MakeMiddle, entra: Any,
                                               azurite: Azurite) -> None:
    middle = azure_middle()
    add_blob_routes(middle.app, azurite)
    token = middle.token_for(entra.add_user("alice"))
    first = middle.client.put("/files/reports/a.txt", data=b"hello",
                              headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == 200, first.get_data(as_text=True)
    assert first.get_json() == {"read_back": "hello"}
    second = middle.client.put("/files/reports/b.txt", data=b"again",
                               headers={"Authorization": f"Bearer {token}"})
    assert second.get_json() == {"read_back": "again"}
    # Two requests, several storage calls each: one on-behalf-of exchange.
    calls = middle.obo_calls()
    assert len(calls) == 1
    assert calls[0]["scope"].split()[0] == STORAGE_SCOPE


def test_async_blob_client_as_the_user(azure_middle: MakeMiddle, entra: Any,
                                      azurite: Azurite) -> None:
    from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient

    middle = azure_middle()

    @middle.app.put("/async-files/<name>")
    async def put_async(name: str) -> Any:
        async with AsyncBlobServiceClient(azurite.url, credential=get_async_user_credential(),
                                          connection_verify=azurite.ca_bundle) as service:
            box = service.get_container_client("async-files")
            if not await box.exists():
                await box.create_container()
            await box.upload_blob(name, request.get_data(), overwrite=True)
            stream = await box.download_blob(name)
            return {"read_back": (await stream.readall()).decode()}

    token = middle.token_for(entra.add_user("alice"))
    for name in ("a.txt", "b.txt"):
        answer = middle.client.put(f"/async-files/{name}", data=name.encode(),
                                   headers={"Authorization": f"Bearer {token}"})
        assert answer.get_json() == {"read_back": name}, answer.get_data(as_text=True)
    assert len(middle.obo_calls()) == 1


def test_azurite_refuses_a_token_whose_issuer_is_not_entras(entra: Any, azurite: Azurite,
                                                            azure_middle: MakeMiddle) -> None:
    """What makes the test above pass is real: Azurite checks the issuer by Entra's prefix."""
    middle = azure_middle()
    alice = entra.add_user("alice")
    with middle.app.test_request_context(headers={
            "Authorization": f"Bearer {middle.token_for(alice)}"}):
        genuine = get_user_credential().get_token(STORAGE_SCOPE)
    claims = claims_of(genuine.token)
    forged = entra.sign({**claims, "iss": f"{entra.base_url}/{entra.tenant_id}/"})

    class Static:
        def __init__(self, token: str) -> None:
            self.token = token

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            return type(genuine)(self.token, genuine.expires_on)

    def list_containers(token: str) -> None:
        service = BlobServiceClient(azurite.url, credential=Static(token),
                                    connection_verify=azurite.ca_bundle)
        list(service.list_containers())

    list_containers(genuine.token)
    with pytest.raises(ClientAuthenticationError, match="issuer"):
        list_containers(forged)


def test_mfa_for_storage_reaches_the_client_through_the_sdk(azure_middle: MakeMiddle,
                                                            entra: Any, azurite: Azurite) -> None:
    middle = azure_middle()
    add_blob_routes(middle.app, azurite)
    alice = entra.add_user("alice", mfa_required_for=[entra.storage])
    answer = middle.client.put("/files/mfa/a.txt", data=b"x",
                               headers={"Authorization": f"Bearer {middle.token_for(alice)}"})
    assert answer.status_code == 401
    params = parse_challenge(answer.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_claims"
    assert "capolids" in decode_claims(params["claims"])["access_token"]


# Microsoft Graph (msgraph-sdk) -------------------------------------------------------------
def graph_client(credential: Any, graph: GraphStandIn) -> GraphServiceClient:
    client = GraphServiceClient(credentials=credential, scopes=GRAPH_SCOPES)
    # The SDK's base URL setting. msgraph-sdk sends tokens over plain HTTP to loopback only.
    client.request_adapter.base_url = f"{graph.http_url}/v1.0"
    return client


def add_graph_routes(app: Any, graph: GraphStandIn) -> None:
    @app.get("/graph/me")
    async def graph_me() -> Any:
        me = await graph_client(get_async_user_credential(), graph).me.get()
        assert me is not None
        return {"id": me.id, "upn": me.user_principal_name}

    @app.get("/graph/me-sync")
    def graph_me_sync() -> Any:
        me = asyncio.run(graph_client(get_user_credential(), graph).me.get())
        assert me is not None
        return {"id": me.id, "upn": me.user_principal_name}


@pytest.mark.parametrize("path", ["/graph/me", "/graph/me-sync"])
def test_graph_me_answers_with_the_callers_oid(azure_middle: MakeMiddle, entra: Any,
                                                graph: GraphStandIn, path: str) -> None:
    middle = azure_middle()
    add_graph_routes(middle.app, graph)
    alice = entra.add_user("alice")
    answer = middle.get(path, middle.token_for(alice))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json() == {"id": alice.oid, "upn": alice.username}
    [call] = middle.obo_calls()
    assert set(GRAPH_SCOPES) <= set(call["scope"].split())


# azure-core's bearer policy ----------------------------------------------------------------
def graph_pipeline(credential: Any, graph: GraphStandIn, **policy: Any) -> PipelineClient[Any, Any]:
    # The scopes msgraph-sdk asks for too: one cache entry serves both.
    return PipelineClient(graph.https_url, policies=[
        BearerTokenCredentialPolicy(credential, *GRAPH_SCOPES, **policy)],
        transport=RequestsTransport(connection_verify=graph.ca_bundle))


def test_cae_challenge_gets_one_fresh_obo_carrying_the_claims(azure_middle: MakeMiddle,
                                                              entra: Any,
                                                              graph: GraphStandIn) -> None:
    middle = azure_middle(OBO_CLIENT_CAPABILITIES=["CP1"])

    @middle.app.get("/graph/cae")
    def cae() -> Any:
        client = graph_pipeline(get_user_credential(), graph, enable_cae=True)
        answer = client.send_request(HttpRequest("GET", f"{graph.https_url}/cae"))
        return {"status": answer.status_code, "body": answer.json()}

    alice = entra.add_user("alice")
    token = middle.token_for(alice)
    answer = middle.get("/graph/cae", token).get_json()
    assert answer["status"] == 200 and answer["body"]["oid"] == alice.oid
    assert answer["body"]["iss"] == f"https://sts.windows.net/{entra.tenant_id}/"
    first, fresh = middle.obo_calls()
    cp1 = {"access_token": {"xms_cc": {"values": ["CP1"]}}}
    assert json.loads(first["params"]["claims"]) == cp1  # CAE declared to Entra
    carried = json.loads(fresh["params"]["claims"])["access_token"]
    assert carried["nbf"] == json.loads(CAE_CLAIMS)["access_token"]["nbf"]
    assert carried["xms_cc"] == cp1["access_token"]["xms_cc"]
    # The fresh token replaced the refused one: the next request needs no exchange.
    again = middle.get("/graph/cae", token).get_json()
    assert again["body"]["token"] == answer["body"]["token"]
    assert len(middle.obo_calls()) == 2


def test_sdk_client_kept_beyond_its_request_refuses(azure_middle: MakeMiddle, entra: Any,
                                                    graph: GraphStandIn) -> None:
    """A client built with a user credential and kept (a module global, a cache) does not send
    the first user's cached token for the next caller: it asks the credential, which refuses."""
    middle = azure_middle()
    kept: dict[str, Any] = {}

    @middle.app.get("/graph/kept")
    def kept_client() -> Any:
        client = kept.setdefault("client", graph_pipeline(get_user_credential(), graph))
        try:
            answer = client.send_request(HttpRequest("GET", f"{graph.https_url}/v1.0/me"))
        except RuntimeError as exc:
            return {"refused": str(exc)}
        return {"id": answer.json()["id"]}

    alice, bob = entra.add_user("alice"), entra.add_user("bob")
    seen_before = len(graph.oids_seen())
    assert middle.get("/graph/kept", middle.token_for(alice)).get_json() == {"id": alice.oid}
    answer = middle.get("/graph/kept", middle.token_for(bob)).get_json()
    assert "another request" in answer["refused"]
    assert graph.oids_seen()[seen_before:] == [alice.oid]


def test_two_users_in_parallel_each_resource_sees_its_own_user(azure_middle: MakeMiddle,
                                                               entra: Any,
                                                               graph: GraphStandIn) -> None:
    middle = azure_middle()
    add_graph_routes(middle.app, graph)

    @middle.app.get("/graph/core-me")
    def core_me() -> Any:
        answer = graph_pipeline(get_user_credential(), graph).send_request(
            HttpRequest("GET", f"{graph.https_url}/v1.0/me"))
        return {"id": answer.json()["id"], "upn": answer.json()["userPrincipalName"]}

    users = [entra.add_user("alice"), entra.add_user("bob")]
    rounds = 6
    start = threading.Barrier(len(users))
    answers: dict[str, list[Any]] = {u.oid: [] for u in users}

    def caller(user: Any) -> None:
        client, token = middle.app.test_client(), middle.token_for(user)
        start.wait(timeout=30)
        for i in range(rounds):
            path = ("/graph/me", "/graph/core-me")[i % 2]
            answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
            answers[user.oid].append((answer.status_code, answer.get_json()))

    threads = [threading.Thread(target=caller, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for user in users:
        assert answers[user.oid] == [(200, {"id": user.oid, "upn": user.username})] * rounds
    # One exchange per user, Graph's token shared by the SDK and azure-core's policy.
    assert sorted(c["user"] for c in middle.obo_calls()) == sorted(u.username for u in users)
