"""Helpers of the OBO, downstream, credential and token-cache suites (no fixtures here)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

CAE_CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cae_challenge(claims: str = CAE_CLAIMS) -> str:
    encoded = base64.b64encode(claims.encode()).decode()
    return (f'Bearer realm="", authorization_uri="https://login.example/authorize", '
            f'error="insufficient_claims", claims="{encoded}"')


def challenge_params(header: str) -> dict[str, str]:
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def decode_claims(encoded: str) -> Any:
    return json.loads(base64.b64decode(encoded))


class LoopbackServer:
    """A WSGI app served by werkzeug on 127.0.0.1 from a daemon thread."""

    def __init__(self, app: Any, ssl_context: Any = None) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True,
                                                  ssl_context=ssl_context)
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
