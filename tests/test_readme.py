"""The README's quick start is real code: it runs here against the emulator and a downstream API.

(Its own test file, with the product's test helpers, runs against the installed wheel in
``tests/test_packaging.py``; this one needs nothing but the emulator.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doc_blocks import example_projects
from werkzeug.serving import make_server

from flask_obo.testing.pytest_plugin import EntraTestHelper
from samples.downstream_api import create_app as create_downstream

README = Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    return example_projects()[README]["myapi.py"]


@pytest.fixture
def downstream(entra: EntraTestHelper) -> Iterator[tuple[Any, str]]:
    down = entra.register_app("graph-like", scopes=["read"])
    app = create_downstream({"OBO_AUTHORITY": entra.authority(), "OBO_CLIENT_ID": down.client_id,
                             "OBO_CA_BUNDLE": entra.ca_bundle})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield down, f"http://127.0.0.1:{server.server_port}/v1.0/"
    server.shutdown()


def test_readme_example_calls_downstream_as_the_user(
    entra: EntraTestHelper, downstream: tuple[Any, str]
) -> None:
    down, base_url = downstream
    api = entra.register_app("readme-api", secret="s3cret", scopes=["access_as_user"])
    entra.grant_consent(client=api, resource=down, scopes=["read"])
    alice = entra.add_user("alice", password="pw")
    namespace: dict[str, Any] = {"__name__": "myapi"}
    exec(compile(_example(), f"{README}: myapi.py", "exec"), namespace)
    app = namespace["create_app"]({
        "OBO_AUTHORITY": entra.authority(), "OBO_CLIENT_ID": api.client_id,
        "OBO_CLIENT_SECRET": "s3cret", "OBO_CA_BUNDLE": entra.ca_bundle,
        "OBO_DOWNSTREAM_APIS": {"graph": {"base_url": base_url,
                                          "scopes": [f"{down.app_id_uri}/read"]}},
    })
    token = entra.issue_user_token(alice, resource=api, scopes=["access_as_user"])
    client = app.test_client()

    response = client.get("/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["caller"] == alice.oid
    assert body["graph"]["oid"] == alice.oid
    assert body["graph"]["azp"] == api.client_id
    assert client.get("/me").status_code == 401
