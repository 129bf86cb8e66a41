"""Blinker signals, in Flask's way. Receivers get the app as sender; no payload holds a token."""

from __future__ import annotations

from blinker import Namespace

__all__ = ["downstream_token_acquired", "obo_failed", "token_rejected", "token_validated"]

_signals = Namespace()

#: A bearer token passed validation. kwargs: claims (the validated claims), cached (bool).
token_validated = _signals.signal("obo-token-validated")
#: A bearer token was refused. kwargs: reason (a short code such as "expired"), status.
token_rejected = _signals.signal("obo-token-rejected")
#: A downstream token was obtained. kwargs: scopes, source ("cache" or "identity_provider"),
#: app_only (bool).
downstream_token_acquired = _signals.signal("obo-downstream-token-acquired")
#: OBO or an app-token request failed. kwargs: error (Entra's error), codes (AADSTS numbers),
#: scopes.
obo_failed = _signals.signal("obo-failed")
