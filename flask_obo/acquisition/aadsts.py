"""What Entra ID's AADSTS codes mean for an API that calls APIs, and what to do about each.

One table: ``flask obo check`` words its findings from it, and the README's and the docs'
troubleshooting tables are generated from it, so the three always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AADSTS_HINTS", "Hint", "hint_for"]


@dataclass(frozen=True)
class Hint:
    """One row of the troubleshooting table."""

    codes: tuple[int, ...]
    meaning: str
    fix: str


AADSTS_HINTS: tuple[Hint, ...] = (
    Hint((50013,), "the assertion's audience is not this app",
         "the client must request a token for *this* API (`api://<client id>/...`)"),
    Hint((50079, 50076), "MFA required",
         "the client handles the 401 claims challenge (see what a client receives)"),
    Hint((53003,), "blocked by conditional access",
         "as above, or the policy forbids the access"),
    Hint((65001,), "consent missing",
         "grant consent for the downstream scopes, or use `knownClientApplications`"),
    Hint((70011,), "invalid scope",
         "use `<resource>/<scope>` or `<resource>/.default`; never mix `.default` with others"),
    Hint((700016,), "application not found in the tenant",
         "check `OBO_CLIENT_ID` and `OBO_AUTHORITY`"),
    Hint((7000215,), "invalid client secret", "the secret is wrong: copy its value (not its id)"),
    Hint((7000222,), "the client secret has expired", "create a new secret and deploy it"),
    Hint((700027,), "certificate assertion not valid",
         "upload the certificate you configured; check the clock"),
    Hint((700024,), "client assertion not within its valid time range",
         "check the clock; a federated token file must be refreshed before it expires"),
    Hint((7000112,), "the application is disabled", "enable it in the tenant (Enterprise apps)"),
    Hint((700025,), "the app registration is a public client",
         "use a confidential app registration for the API (no public client flows)"),
    Hint((500133,), "the assertion has expired", "the client must send a fresh token"),
    Hint((50173,), "the grant was revoked (password change, sessions revoked)",
         "the user signs in again"),
)


def hint_for(codes: Iterable[int]) -> Hint | None:
    """The hint of the first code that has one."""
    wanted = set(codes)
    for hint in AADSTS_HINTS:
        if wanted.intersection(hint.codes):
            return hint
    return None
