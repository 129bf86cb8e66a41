"""A multi-tenant API acts as the app only in the tenants OBO_ALLOWED_TENANTS allows.

``acquire_token_for_app(tenant=...)``, ``get_app_session(tenant=...)`` and the decorator form
refuse any other tenant with a 403, before a call to the identity provider, whatever the
tenant came from (a view that passes request input on, say).
"""

from __future__ import annotations

from typing import Any

import pytest

from flask_obo import acquire_token_for_app, get_app_session

pytest_plugins = ["obo_fixtures"]


@pytest.fixture
def multi(make_middle: Any, entra: Any) -> Any:
    middle = make_middle(OBO_AUTHORITY=entra.authority("organizations"),
                         OBO_ALLOWED_TENANTS=[entra.tenant_id])
    app = middle.app

    @app.get("/app-token/<tenant>")
    def app_token(tenant: str) -> Any:
        token = acquire_token_for_app(api="down", tenant=tenant)
        return {"expires_on": token.expires_on}

    @app.get("/app-session/<tenant>")
    def app_session(tenant: str) -> Any:
        answer = get_app_session("down", tenant=tenant).get("me")
        return {"status": answer.status_code}

    return middle


def test_the_allowed_tenant_gets_an_app_token(multi: Any, entra: Any) -> None:
    token = multi.token_for(entra.add_user("alice"))
    for path in (f"/app-token/{entra.tenant_id}", f"/app-session/{entra.tenant_id}", "/as-app"):
        assert multi.get(path, token).status_code == 200, path
    assert {c["tenant"] for c in entra.calls("client_credentials")} <= {entra.tenant_id}


@pytest.mark.parametrize("form", ["app-token", "app-session"])
def test_a_tenant_outside_the_allowed_list_is_refused(multi: Any, entra: Any, form: str) -> None:
    other = entra.add_tenant()
    token = multi.token_for(entra.add_user("alice"))
    for tenant in (other, other.upper()):
        response = multi.get(f"/{form}/{tenant}", token)
        assert response.status_code == 403, response.get_data(as_text=True)
        assert response.json["reason"] == "tenant_not_allowed"
    assert entra.calls("client_credentials") == []
