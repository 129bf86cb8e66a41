"""Entra's error responses: ``{"error", "error_description": "AADSTSnnnnn: ...", ...}``.

Codes and statuses follow Microsoft's published AADSTS reference; where Entra's exact wording is
not documented the description says plainly what the emulator refused and why.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["EntraError", "entra_error_body"]


class EntraError(Exception):
    """An OAuth error as Entra returns it from the token endpoint.

    ``status`` is Entra's HTTP status: 400 for almost everything, 401 for ``invalid_client``.
    """

    def __init__(
        self,
        error: str,
        code: int,
        message: str,
        *,
        status: int | None = None,
        suberror: str | None = None,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: AADSTS{code}: {message}")
        self.error = error
        self.code = code
        self.message = message
        self.status = status if status is not None else (401 if error == "invalid_client" else 400)
        self.suberror = suberror
        self.claims = dict(claims) if claims is not None else None
        self.headers = dict(headers or {})


def _timestamp(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%d %H:%M:%SZ")


def entra_error_body(
    err: EntraError,
    *,
    correlation_id: str | None,
    trace_id: str | None = None,
    error_uri_base: str = "",
) -> dict[str, Any]:
    """The JSON body Entra sends for ``err``."""
    now = datetime.datetime.now(datetime.UTC)
    trace = trace_id or str(uuid.uuid4())
    correlation = correlation_id or str(uuid.uuid4())
    stamp = _timestamp(now)
    body: dict[str, Any] = {
        "error": err.error,
        "error_description": (
            f"AADSTS{err.code}: {err.message} Trace ID: {trace} "
            f"Correlation ID: {correlation} Timestamp: {stamp}"
        ),
        "error_codes": [err.code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"{error_uri_base}/error?code={err.code}",
    }
    if err.suberror:
        body["suberror"] = err.suberror
    if err.claims is not None:
        # Entra sends the claims challenge as a JSON *string*, ready for the client to echo.
        body["claims"] = json.dumps(err.claims, separators=(",", ":"))
    return body
