"""A command-line client: signs a user in with MSAL, then calls the middle-tier API.

    python -m samples.client --authority https://127.0.0.1:PORT/<tenant> --client-id <cli app> \\
        --scope api://<middle-tier>/access_as_user --api http://127.0.0.1:5001 \\
        --username alice@contoso.test --password alice-pw --ca-bundle <emulator CA>

Against real Entra ID, leave out --username/--password: the device-code flow signs the user in
in a browser (username/password sign-in suits demo users only, never real accounts).

When the API answers 401 with a claims challenge (MFA, conditional access), the client signs the
user in again with that challenge, as Microsoft's guidance for OBO APIs asks, and retries once.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import msal
import requests

from flask_obo import build_session

_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_bearer_challenge(header: str) -> dict[str, str]:
    """``Bearer a="1", b="2"`` -> {"a": "1", "b": "2"}."""
    return dict(_PARAM.findall(header)) if header.lower().startswith("bearer") else {}


def claims_from_challenge(header: str) -> str | None:
    """The claims JSON of an ``insufficient_claims`` challenge, or None."""
    params = parse_bearer_challenge(header)
    if params.get("error") != "insufficient_claims" or "claims" not in params:
        return None
    return base64.b64decode(params["claims"]).decode()


def summarise(token: str) -> dict[str, Any]:
    """A few claims of a JWT for display (decoded, not verified); never the token itself."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError):
        return {}
    keep = ("aud", "scp", "roles", "oid", "azp", "appid", "amr", "ver", "preferred_username",
            "exp")
    return {k: claims[k] for k in keep if k in claims}


@dataclass
class SampleClient:
    authority: str
    client_id: str
    scopes: list[str]
    api: str
    ca_bundle: str | None = None
    http_client: Any = None  # MSAL's HTTP client; the emulator's copes with MSAL's quirks
    log: Callable[[str], None] = print
    _app: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.http_client is None and self.ca_bundle and _is_loopback(self.authority):
            from flask_obo.testing import EmulatorHttpClient

            port = urlsplit(self.authority).port or 443
            self.http_client = EmulatorHttpClient(self.ca_bundle, port)
        loopback = _is_loopback(self.authority)
        self._app = msal.PublicClientApplication(
            self.client_id, authority=self.authority, http_client=self.http_client,
            instance_discovery=not loopback, validate_authority=not loopback,
        )
        self._api = build_session(self.ca_bundle)

    def sign_in(self, username: str | None = None, password: str | None = None,
                claims_challenge: str | None = None) -> str:
        """An access token for the middle tier; raises RuntimeError with MSAL's error."""
        if username and password:
            result = self._app.acquire_token_by_username_password(
                username, password, scopes=self.scopes, claims_challenge=claims_challenge)
        else:
            flow = self._app.initiate_device_flow(scopes=self.scopes,
                                                  claims_challenge=claims_challenge)
            self.log(flow.get("message", "device flow failed to start"))
            result = self._app.acquire_token_by_device_flow(flow)
        if "access_token" not in result:
            raise RuntimeError(f"sign-in failed: {result.get('error')}: "
                               f"{str(result.get('error_description', ''))[:160]}")
        token: str = result["access_token"]
        return token

    def call(self, path: str, token: str) -> requests.Response:
        return self._api.get(self.api.rstrip("/") + path,
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def post(self, path: str, token: str, body: dict[str, Any]) -> requests.Response:
        return self._api.post(self.api.rstrip("/") + path, json=body,
                              headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authority", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--scope", action="append", required=True)
    parser.add_argument("--api", default="http://127.0.0.1:5001")
    parser.add_argument("--path", default="/api/profile")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--ca-bundle")
    args = parser.parse_args(argv)
    client = SampleClient(args.authority, args.client_id, args.scope, args.api,
                          ca_bundle=args.ca_bundle)
    token = client.sign_in(args.username, args.password)
    print("signed in:", summarise(token))
    answer = client.call(args.path, token)
    claims = claims_from_challenge(answer.headers.get("WWW-Authenticate", ""))
    if answer.status_code == 401 and claims:
        print("claims challenge received; signing in again with it")
        token = client.sign_in(args.username, args.password, claims_challenge=claims)
        answer = client.call(args.path, token)
    print(answer.status_code, json.dumps(answer.json(), indent=2))
    return 0 if answer.ok else 1


if __name__ == "__main__":
    sys.exit(main())
