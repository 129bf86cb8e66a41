"""Whether a claims challenge (the JSON a downstream API's ``insufficient_claims`` 401 carries)
is one flask-obo will act on.

It comes from a downstream API, directly (``DownstreamSession``) or through an Azure SDK's
``get_token(claims=...)``, and goes to the identity provider: a hostile or broken API must not
crash a worker with nesting deep enough for a ``RecursionError`` in a JSON parser (MSAL's
included), nor send megabytes on. Entra's challenges are a few hundred bytes, 3 or 4 deep.
"""

from __future__ import annotations

import json

__all__ = ["MAX_CLAIMS_CHARS", "MAX_CLAIMS_DEPTH", "readable_claims"]

MAX_CLAIMS_CHARS = 8192
MAX_CLAIMS_DEPTH = 16


def readable_claims(text: str) -> bool:
    """Whether ``text`` is a JSON object, short and shallow enough to act on."""
    if not isinstance(text, str) or len(text) > MAX_CLAIMS_CHARS:
        return False
    if _nesting(text) > MAX_CLAIMS_DEPTH:  # checked before parsing: no RecursionError
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _nesting(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings not counted)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest
