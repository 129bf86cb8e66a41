"""Token validation: a raw bearer token in, ``TokenClaims`` out, against the authority's keys.

- ``authority.py``: the authority's OpenID metadata and signing keys, fetched, cached and
  refreshed (``Authority``);
- ``validator.py``: every rule a token must pass, and the validated-token cache
  (``TokenValidator``);
- ``claims.py``: the validated claims, immutable and safe to print (``TokenClaims``).

Nothing here needs a Flask request: ``context.py`` ties it to one.
"""

from .authority import Authority, Metadata, UnknownSigningKey
from .claims import TokenClaims
from .validator import REASONS, TokenValidator, create_validator

__all__ = [
    "REASONS",
    "Authority",
    "Metadata",
    "TokenClaims",
    "TokenValidator",
    "UnknownSigningKey",
    "create_validator",
]
