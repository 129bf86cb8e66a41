"""App tokens act only in the tenants this API may act in, checked in one place.

A multi-tenant API's ``acquire_token_for_app(tenant=...)``, ``get_app_session(tenant=...)`` and
the decorator form refuse a tenant that ``OBO_ALLOWED_TENANTS`` does not list; a single-tenant
API's refuse any tenant but its own. Either way with a 403 ``tenant_not_allowed`` before a call
to the identity provider, whatever the tenant came from (a view that passes request input on,
say), and with a line in the log that says why (rate-limited, as every refusal). Azure SDK
credentials go through the same check (``test_azure_credential``), and long-running sessions
(``test_long_running``).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from support.apps import MakeMiddle, Middle

from flask_obo import acquire_token_for_app, get_app_session
from flask_obo.testing.pytest_plugin import EntraTestHelper


def _with_tenant_views(middle: Middle) -> Middle:
    """``/app-token/<tenant>`` and ``/app-session/<tenant>``: the tenant from the request."""
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


@pytest.fixture
def multi(make_middle: MakeMiddle, entra: EntraTestHelper) -> Middle:
    return _with_tenant_views(make_middle(OBO_AUTHORITY=entra.authority("organizations"),
                                          OBO_ALLOWED_TENANTS=[entra.tenant_id]))


def test_the_allowed_tenant_gets_an_app_token(multi: Middle, entra: EntraTestHelper) -> None:
    token = multi.token_for(entra.add_user("alice"))
    for path in (f"/app-token/{entra.tenant_id}", f"/app-session/{entra.tenant_id}", "/as-app"):
        assert multi.get(path, token).status_code == 200, path
    assert {c["tenant"] for c in entra.calls("client_credentials")} <= {entra.tenant_id}


@pytest.mark.parametrize("form", ["app-token", "app-session"])
def test_a_tenant_outside_the_allowed_list_is_refused(multi: Middle, entra: EntraTestHelper,
                                                      form: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="flask_obo")
    other = entra.add_tenant()
    token = multi.token_for(entra.add_user("alice"))
    for tenant in (other, other.upper()):
        response = multi.get(f"/{form}/{tenant}", token)
        assert response.status_code == 403, response.get_data(as_text=True)
        assert response.json["reason"] == "tenant_not_allowed"
        assert other not in response.get_data(as_text=True).lower()  # the log names it
    assert entra.calls("client_credentials") == []
    explained = [r.getMessage() for r in caplog.records
                 if "(tenant_not_allowed)" in r.getMessage()]
    assert len(explained) == 2 and f"GET /{form}/" in explained[0]
    assert "OBO_ALLOWED_TENANTS does not list it" in explained[0]


@pytest.mark.parametrize("tenant", ["not-a-tenant-id", "contoso.onmicrosoft.com", "common"])
def test_a_tenant_that_is_no_tenant_id_is_refused(multi: Middle, entra: EntraTestHelper,
                                                  tenant: str) -> None:
    response = multi.get(f"/app-token/{tenant}", multi.token_for(entra.add_user("alice")))
    assert (response.status_code, response.json["reason"]) == (403, "tenant_not_allowed")
    assert entra.calls("client_credentials") == []


def test_a_single_tenant_api_acts_only_in_its_own_tenant(make_middle: MakeMiddle,
                                                         entra: EntraTestHelper) -> None:
    middle = _with_tenant_views(make_middle())
    token = middle.token_for(entra.add_user("alice"))
    for same in (entra.tenant_id, entra.tenant_id.upper()):
        assert middle.get(f"/app-token/{same}", token).status_code == 200
    other = entra.add_tenant()
    for form in ("app-token", "app-session"):
        response = middle.get(f"/{form}/{other}", token)
        assert (response.status_code, response.json["reason"]) == (403, "tenant_not_allowed")
    assert {c["tenant"] for c in entra.calls("client_credentials")} == {entra.tenant_id}
