"""Real MSAL clients wired to the emulator, and the HTTP client they share.

Trust: the session pins the emulator's CA bundle even when REQUESTS_CA_BUNDLE is set (see
``flask_obo._http``). The user-realm quirk: MSAL's username/password flow asks
``https://<authority host>/common/userrealm/<user>`` without the authority's port, i.e. on port
443. :class:`EmulatorHttpClient` sends any port-less ``https://127.0.0.1/...`` (or
``localhost``) request to the emulator's port instead, where the emulator answers that the user
is a managed (cloud) user, so MSAL goes on with a plain ROPC request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from flask_obo._http import build_session

from .directory import App
from .tls import ClientCertificate

__all__ = ["EmulatorHttpClient", "msal_credential"]

_EMULATOR_HOSTS = frozenset({"127.0.0.1", "localhost"})


class EmulatorHttpClient:
    """A requests-based HTTP client for MSAL (``get``/``post``/``close``) that trusts the
    emulator's CA and redirects port-less emulator URLs (MSAL's user-realm lookup) to its port.
    """

    def __init__(self, ca_bundle: str, port: int) -> None:
        self.session = build_session(ca_bundle)
        self.port = port

    def rewrite(self, url: str) -> str:
        """``https://127.0.0.1/x`` -> ``https://127.0.0.1:<port>/x``; other URLs unchanged."""
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname in _EMULATOR_HOSTS and parts.port is None:
            return urlunsplit(parts._replace(netloc=f"{parts.hostname}:{self.port}"))
        return url

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.request(method, self.rewrite(url), **kwargs)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self.session.close()


def msal_credential(
    credential: str | Mapping[str, Any] | ClientCertificate,
) -> str | dict[str, Any]:
    """MSAL's ``client_credential`` from a secret, an MSAL dict, or a :class:`ClientCertificate`."""
    if isinstance(credential, ClientCertificate):
        return dict(credential.msal_credential())
    if isinstance(credential, str):
        return credential
    return dict(credential)


def confidential_client(app: App, credential: str | Mapping[str, Any] | ClientCertificate,
                        *, authority: str, http_client: EmulatorHttpClient, **kwargs: Any) -> Any:
    import msal

    return msal.ConfidentialClientApplication(
        app.client_id,
        client_credential=msal_credential(credential),
        authority=authority,
        instance_discovery=False,
        http_client=http_client,
        **kwargs,
    )


def public_client(app: App, *, authority: str, http_client: EmulatorHttpClient,
                  **kwargs: Any) -> Any:
    import msal

    return msal.PublicClientApplication(
        app.client_id,
        authority=authority,
        instance_discovery=False,
        http_client=http_client,
        **kwargs,
    )
