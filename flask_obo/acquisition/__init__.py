"""Token acquisition: downstream tokens on behalf of the caller (OBO) or for the app itself.

- ``acquirer.py``: ``TokenAcquirer`` (one MSAL app per tenant, single flight, Entra's answers
  as client-facing errors) over the token cache;
- ``credentials.py``: the app's own credential (secret, certificate, client assertion);
- ``_msal.py``: MSAL's plumbing (its HTTP client, caches that keep nothing, error mapping).
"""

from .acquirer import TokenAcquirer, app_scopes, check_credential, create_acquirer, user_hash
from .credentials import ClientCredential, load_credential

__all__ = [
    "ClientCredential",
    "TokenAcquirer",
    "app_scopes",
    "check_credential",
    "create_acquirer",
    "load_credential",
    "user_hash",
]
