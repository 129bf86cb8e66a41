"""Populate an emulator from a JSON-like dict (``python -m flask_obo.testing serve --config``).

::

    {
      "tenant_id": "<GUID, optional>", "tenant_domain": "contoso.test",
      "token_lifetime": 3600, "obo_token_lifetime": null,
      "refresh_token_lifetime": 7776000, "refresh_token_max_age": null,
      "tenants": [{"tenant_id": "<GUID>", "domain": "fabrikam.test", "name": "Fabrikam"}],
      "apps": [{"name": "middle-tier", "client_id": "<GUID, optional>", "secret": "s3cret",
                "scopes": ["access_as_user"], "roles": [], "access_token_version": 2,
                "tenant": "<tenant id or domain>", "app_id_uri": "api://...",
                "multi_tenant": false, "pre_authorized": ["cli"],
                "certificate_file": "client-cert.pem",
                "spa_redirect_uris": ["http://localhost:5173/"], "web_redirect_uris": [],
                "public_client_redirect_uris": ["http://localhost"]}],
      "users": [{"username": "alice@contoso.test", "password": "pw", "name": "Alice",
                 "mfa_required_for": ["downstream"], "roles": {"downstream": ["Reader"]},
                 "oid": "<GUID, optional>", "mfa_passes": true, "one_time_code": "123456"}],
      "consents": [{"client": "middle-tier", "resource": "downstream", "scopes": ["read"],
                    "roles": ["Reader"], "tenant": "<optional>"}]
    }

Apps are referred to by name (or client id, or App ID URI). Unknown keys are refused, so a
typo does not silently do nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .directory import App, User
from .emulator import EntraEmulator

__all__ = ["DEMO_CONFIG", "apply_config", "emulator_options"]

_TOP = {"tenant_id", "tenant_domain", "token_lifetime", "obo_token_lifetime",
        "refresh_token_lifetime", "refresh_token_max_age", "tenants", "apps", "users", "consents"}
_APP = {"name", "client_id", "secret", "scopes", "roles", "access_token_version", "tenant",
        "app_id_uri", "multi_tenant", "pre_authorized", "certificate_file", "spa_redirect_uris",
        "web_redirect_uris", "public_client_redirect_uris"}
_USER = {"username", "password", "name", "mfa_required_for", "roles", "oid", "mfa_passes",
         "tenant", "one_time_code"}
_CONSENT = {"client", "resource", "scopes", "roles", "tenant"}

DEMO_CONFIG: dict[str, Any] = {
    "tenant_id": "7f3c1f2e-4b1a-4c55-9f0e-1d2c3b4a5e6f",
    "tenant_domain": "contoso.test",
    "apps": [
        {"name": "demo-cli", "client_id": "0c1e2d3f-0000-4000-8000-00000000c11e"},
        {"name": "middle-tier", "client_id": "5a1b2c3d-0000-4000-8000-0000000000a1",
         "secret": "middle-tier-secret", "scopes": ["access_as_user"],
         "pre_authorized": ["demo-cli"]},
        {"name": "downstream", "client_id": "d0e1f2a3-0000-4000-8000-0000000000d1",
         "scopes": ["read", "write"], "roles": ["Reader"]},
    ],
    "users": [
        {"username": "alice@contoso.test", "password": "alice-pw", "name": "Alice"},
        {"username": "bob@contoso.test", "password": "bob-pw", "name": "Bob",
         "mfa_required_for": ["downstream"]},
    ],
    "consents": [
        {"client": "middle-tier", "resource": "downstream", "scopes": ["read"],
         "roles": ["Reader"]},
    ],
}


def _check_keys(kind: str, item: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = set(item) - allowed
    if unknown:
        raise ValueError(f"unknown {kind} keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def emulator_options(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``EntraEmulator(...)`` keyword arguments a config asks for."""
    _check_keys("top-level", data, _TOP)
    names = ("tenant_id", "tenant_domain", "token_lifetime", "obo_token_lifetime",
             "refresh_token_lifetime", "refresh_token_max_age")
    return {k: data[k] for k in names if data.get(k) is not None}


def apply_config(emu: EntraEmulator, data: Mapping[str, Any],
                 base_dir: str | Path = ".") -> dict[str, App]:
    """Create the tenants, apps, users and consents of ``data``; returns apps by name."""
    _check_keys("top-level", data, _TOP)
    for tenant in data.get("tenants", []):
        emu.add_tenant(tenant_id=tenant.get("tenant_id"), domain=tenant.get("domain"),
                       name=tenant.get("name"))
    apps: dict[str, App] = {}

    def ref(name: str) -> App:
        return apps.get(name) or emu.get_app(name)

    for spec in data.get("apps", []):
        _check_keys("app", spec, _APP)
        cert = spec.get("certificate_file")
        app = emu.register_app(
            spec["name"], client_id=spec.get("client_id"), secret=spec.get("secret"),
            scopes=spec.get("scopes", ()), roles=spec.get("roles", ()),
            access_token_version=spec.get("access_token_version", 2),
            tenant=spec.get("tenant"), app_id_uri=spec.get("app_id_uri"),
            multi_tenant=spec.get("multi_tenant", False),
            pre_authorized=[ref(p) for p in spec.get("pre_authorized", [])],
            certificate=(Path(base_dir) / cert).read_text() if cert else None,
            spa_redirect_uris=spec.get("spa_redirect_uris", ()),
            web_redirect_uris=spec.get("web_redirect_uris", ()),
            public_client_redirect_uris=spec.get("public_client_redirect_uris", ()),
        )
        apps[app.name] = app
    for spec in data.get("users", []):
        _check_keys("user", spec, _USER)
        user: User = emu.add_user(
            spec["username"], password=spec.get("password"), name=spec.get("name"),
            tenant=spec.get("tenant"), oid=spec.get("oid"),
            mfa_passes=spec.get("mfa_passes", True),
            mfa_required_for=[ref(r) for r in spec.get("mfa_required_for", [])],
            **({"one_time_code": spec["one_time_code"]} if "one_time_code" in spec else {}),
        )
        for resource, roles in spec.get("roles", {}).items():
            emu.assign_app_role(user, ref(resource), *roles)
    for spec in data.get("consents", []):
        _check_keys("consent", spec, _CONSENT)
        emu.grant_consent(client=ref(spec["client"]), resource=ref(spec["resource"]),
                          scopes=spec.get("scopes", ()), roles=spec.get("roles", ()),
                          tenant=spec.get("tenant"))
    return apps
