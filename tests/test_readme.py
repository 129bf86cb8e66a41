"""The README's quick start is real code: it runs here against the emulator and a downstream API.

(Its own test file, with the product's test helpers, runs against the installed wheel in
``tests/test_packaging.py``; this one needs nothing but the emulator.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.doc_blocks import example_projects

from flask_obo.testing import DownstreamStandIn
from flask_obo.testing.pytest_plugin import EntraTestHelper

README = Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    return example_projects()[README]["myapi.py"]


def test_readme_example_calls_downstream_as_the_user(
    entra: EntraTestHelper, downstream_api: DownstreamStandIn
) -> None:
    api = entra.register_app("readme-api", secret="s3cret", scopes=["access_as_user"])
    entra.grant_consent(client=api, resource=downstream_api.registration, scopes=["read"])
    alice = entra.add_user("alice", password="pw")
    namespace: dict[str, Any] = {"__name__": "myapi"}
    exec(compile(_example(), f"{README}: myapi.py", "exec"), namespace)
    app = namespace["create_app"]({
        "OBO_AUTHORITY": entra.authority(), "OBO_CLIENT_ID": api.client_id,
        "OBO_CLIENT_SECRET": "s3cret", "OBO_CA_BUNDLE": entra.ca_bundle,
        "OBO_DOWNSTREAM_APIS": {"graph": {"base_url": downstream_api.url + "v1.0/",
                                          "scopes": [downstream_api.scope("read")]}},
    })
    client = app.test_client()

    response = client.get("/me", headers=entra.auth_header(alice, api, scopes=["access_as_user"]))

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["caller"] == alice.oid
    assert body["graph"]["oid"] == alice.oid
    assert body["graph"]["azp"] == api.client_id
    (call,) = downstream_api.calls
    assert call.path == "/v1.0/me" and call.claims is not None
    assert call.claims["scp"] == "read"  # the stand-in checked the token as Graph would
    assert client.get("/me").status_code == 401
