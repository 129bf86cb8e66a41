"""OpenID Connect discovery documents with the fields Entra publishes, v2 and v1.

Endpoints are on the emulator's host. The v1 issuer is Entra's own,
``https://sts.windows.net/{tid}/`` (why: ``claims.py``), the v2 issuer is on the emulator's host,
``https://127.0.0.1:PORT/{tid}/v2.0``. For
``/common`` and ``/organizations`` the issuer holds the literal placeholder ``{tenantid}``, and
``tenant_region_scope`` is null, as Entra's are. Entra's v2 ``userinfo_endpoint`` is on Microsoft
Graph; the emulator serves that API itself at ``{base}/oidc/userinfo`` (see ``userinfo.py``).
"""

from __future__ import annotations

from typing import Any

from .claims import V1_ISSUER_BASE

__all__ = ["TENANT_PLACEHOLDER", "userrealm_document", "v1_configuration", "v2_configuration"]

TENANT_PLACEHOLDER = "{tenantid}"
_CLOUD = {
    "tenant_region_scope": "NA",
    "cloud_instance_name": "microsoftonline.com",
    "cloud_graph_host_name": "graph.windows.net",
    "msgraph_host": "graph.microsoft.com",
    "rbac_url": "https://pas.windows.net",
}
_AUTH_METHODS = ["client_secret_post", "private_key_jwt", "client_secret_basic"]


def _cloud(issuer_tenant: str) -> dict[str, Any]:
    cloud: dict[str, Any] = dict(_CLOUD)
    if issuer_tenant == TENANT_PLACEHOLDER:  # /common and /organizations have no region
        cloud["tenant_region_scope"] = None
    return cloud


def v2_configuration(base: str, tenant_segment: str, issuer_tenant: str) -> dict[str, Any]:
    """``/{tenant}/v2.0/.well-known/openid-configuration``."""
    root = f"{base}/{tenant_segment}"
    doc: dict[str, Any] = {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": _AUTH_METHODS,
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{issuer_tenant}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email",
        ],
        "kerberos_endpoint": f"{root}/kerberos",
    }
    doc.update(_cloud(issuer_tenant))
    return doc


def v1_configuration(base: str, tenant_segment: str, issuer_tenant: str) -> dict[str, Any]:
    """``/{tenant}/.well-known/openid-configuration`` (the v1 endpoint)."""
    root = f"{base}/{tenant_segment}"
    doc: dict[str, Any] = {
        "token_endpoint": f"{root}/oauth2/token",
        "token_endpoint_auth_methods_supported": _AUTH_METHODS,
        "jwks_uri": f"{root}/discovery/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": [
            "code", "id_token", "code id_token", "token id_token", "token",
        ],
        "scopes_supported": ["openid"],
        "issuer": f"{V1_ISSUER_BASE}/{issuer_tenant}/",
        "microsoft_multi_refresh_token": True,
        "authorization_endpoint": f"{root}/oauth2/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{root}/oauth2/logout",
        "claims_supported": [
            "sub", "iss", "cloud_instance_name", "cloud_instance_host_name",
            "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr",
            "amr", "nonce", "email", "given_name", "family_name", "nickname",
        ],
        "check_session_iframe": f"{root}/oauth2/checksession",
        "userinfo_endpoint": f"{root}/openid/userinfo",
        "kerberos_endpoint": f"{root}/kerberos",
    }
    doc.update(_cloud(issuer_tenant))
    return doc


def userrealm_document(username: str, domain_known: bool) -> dict[str, Any]:
    """``/common/userrealm/{user}``: every known user is a managed (cloud) user."""
    doc: dict[str, Any] = {
        "ver": "1.0",
        "account_type": "Managed" if domain_known else "Unknown",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    }
    if domain_known:
        doc["domain_name"] = username.rpartition("@")[2].lower()
    return doc
