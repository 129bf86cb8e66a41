"""``LongRunningSessions``: one app's long-running sessions, their refresh tokens and tokens.

- Start: on-behalf-of with ``offline_access`` (the acquirer's second MSAL app per tenant), the
  refresh token sealed into the session's entry (``_store``), the access token cached.
- Use: the entry is read first (a stopped, refused or idle session fails at once, whatever
  token is cached), then the access token comes as for OBO: the in-process front, Redis,
  single flight and the cross-process lock per token key, refresh-ahead. A miss redeems the
  refresh token under the session's own lock, re-reading the entry inside it, and stores the
  rotated one by compare-and-set: two workers make one identity-provider call between them,
  and the newest refresh token is never lost.
- A refused refresh token turns the entry into an ended one that says why, so later uses fail
  the same way without asking the identity provider again.

Session keys are never logged or stored: logs carry the first 12 hex digits of their digest.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from ..acquisition import user_hash
from ..cache import AccessToken, RedisEntryStore
from ..errors import (
    ConfigError,
    LongRunningSessionExpired,
    SessionKeyInUse,
    TokenCacheUnavailable,
)
from ._store import SessionRecord, SessionStore, key_digest

if TYPE_CHECKING:
    from ..acquisition import TokenAcquirer
    from ..config import OboConfig
    from ..validation import TokenClaims

__all__ = ["LongRunningSessions", "build_sessions"]

log = logging.getLogger("flask_obo.long_running")

_MIN_KEY, _MAX_KEY = 16, 512
# Compare-and-set attempts before giving up on an entry other processes keep changing.
_WRITE_ATTEMPTS = 10

_UNKNOWN = ("No long-running session has this key: it was never started, it expired after "
            "OBO_LONG_RUNNING_IDLE_TTL unused, or the token cache lost it. Start a new one from "
            "a request of the user.")
_STOPPED = "This long-running session was stopped."


def build_sessions(config: OboConfig, acquirer: TokenAcquirer | None) -> LongRunningSessions:
    """The app's sessions; ``ConfigError`` unless the token cache is on Redis, encrypted."""
    if acquirer is None:
        raise ConfigError("Long-running sessions call downstream APIs as the user, so the app "
                          "needs a credential: set OBO_CLIENT_SECRET, OBO_CLIENT_CERTIFICATE "
                          "or OBO_CLIENT_ASSERTION.")
    backend = acquirer.cache.backend
    if not isinstance(backend, RedisEntryStore) or not acquirer.cache.codec.encrypts:
        name = getattr(backend, "backend_name", type(backend).__name__)
        raise ConfigError(
            "Long-running sessions keep each user's refresh token in the token cache, which "
            "every worker must share and which must outlive a process; the cache is now "
            f"{name}. Set OBO_CACHE to Redis, e.g. {{'CACHE_TYPE': 'RedisCache', "
            "'CACHE_REDIS_URL': 'redis://redis:6379/0'}, with persistence (appendonly yes) "
            "for sessions to survive a Redis restart.")
    return LongRunningSessions(config, acquirer, SessionStore(
        acquirer.cache, backend, config.client_id, config.long_running_idle_ttl))


def checked_key(session_key: str | None) -> str:
    """A session key given to start a session: a string of 16 to 512 characters."""
    if not isinstance(session_key, str) or not _MIN_KEY <= len(session_key) <= _MAX_KEY:
        raise ValueError(f"session_key must be a string of {_MIN_KEY} to {_MAX_KEY} "
                         "characters that nobody can guess (it is a capability); or leave it "
                         "out and flask-obo makes one")
    return session_key


def _key_id(digest: str) -> str:
    return digest[:12]


class LongRunningSessions:
    """Start, use and stop one app's long-running sessions."""

    def __init__(self, config: OboConfig, acquirer: TokenAcquirer, store: SessionStore) -> None:
        self.config = config
        self.acquirer = acquirer
        self.cache = acquirer.cache
        self.store = store
        self.idle_ttl = config.long_running_idle_ttl
        # A session in use is rewritten (its TTL renewed) at most this often between
        # redemptions: often enough that it never looks idle, rarely enough to cost nothing.
        self.touch_interval = min(self.idle_ttl / 10, 3600.0)

    # start -----------------------------------------------------------------------------------
    def start(self, session_key: str, assertion: str, caller: TokenClaims,
              scopes: tuple[str, ...]) -> None:
        """OBO with offline_access for ``caller``; the refresh token stored under the key."""
        digest = key_digest(session_key)
        name = self.store.name(digest)
        tenant = self.acquirer.tenant_for(caller.tid)
        oid, tid = caller.oid or "", caller.tid or ""
        with self.cache.lock(name):
            raw, record = self.store.read(name)
            self._refuse_foreign(record, tid, oid)
            token, refresh_token = self.acquirer.on_behalf_of_offline(
                assertion, scopes, tenant=tenant, user=oid)
            now = self.cache.clock()
            fresh = SessionRecord(self.config.client_id, tenant, tid, oid, scopes, digest,
                                  started=now, last_used=now, refresh_token=refresh_token)
            for _ in range(_WRITE_ATTEMPTS):
                if self.store.write(name, raw, fresh) is not None:
                    break
                raw, record = self.store.read(name)  # changed since: our lock had expired
                self._refuse_foreign(record, tid, oid)
            else:
                raise SessionKeyInUse("This session key is being changed by another request: "
                                      "try again.")
        self.cache.set(self._token_key(digest, tenant, scopes), token)
        log.info("flask-obo: long-running session %s started for user=%s scopes=%s",
                 _key_id(digest), user_hash(tenant, oid), " ".join(scopes))

    def _refuse_foreign(self, record: SessionRecord | None, tid: str, oid: str) -> None:
        if record is not None and not (record.client_id == self.config.client_id
                                       and record.user_tid == tid and record.oid == oid):
            log.warning("flask-obo: refused to start a long-running session under the key of "
                        "session %s, which belongs to another user", _key_id(record.key_digest))
            raise SessionKeyInUse()

    # use ---------------------------------------------------------------------------------------
    def load(self, session_key: str, caller: TokenClaims | None = None, *,
             idle_ok: bool = False) -> tuple[str, bytes, SessionRecord]:
        """``(name, raw entry, record)`` of a live session; ``LongRunningSessionExpired``
        otherwise. With ``caller`` (a request's user), only that user's session counts."""
        if not isinstance(session_key, str) or not _MIN_KEY <= len(session_key) <= _MAX_KEY:
            raise LongRunningSessionExpired(_UNKNOWN, reason="unknown")  # none can exist
        digest = key_digest(session_key)
        name = self.store.name(digest)
        raw, record = self.store.read(name)
        if raw is None or record is None or not hmac.compare_digest(record.key_digest, digest) \
                or record.client_id != self.config.client_id or (caller is not None and (
                    record.user_tid != caller.tid or record.oid != caller.oid)):
            # Another user's session is, to a request of this user, no session at all.
            raise LongRunningSessionExpired(_UNKNOWN, reason="unknown")
        if record.ended is not None:
            message = _STOPPED if record.ended == "stopped" else record.message
            extra = {"aadsts": list(record.codes)} if record.codes else None
            raise LongRunningSessionExpired(message, reason=record.ended, extra=extra)
        if not idle_ok and self.cache.clock() - record.last_used >= self.idle_ttl:
            raise LongRunningSessionExpired(
                f"This long-running session expired: unused for longer than "
                f"OBO_LONG_RUNNING_IDLE_TTL ({self.idle_ttl} s).", reason="idle")
        return name, raw, record

    def acquire(self, session_key: str, scopes: tuple[str, ...] | None, *,
                claims: str | None = None, caller: TokenClaims | None = None,
                api: str | None = None) -> AccessToken:
        """A token for ``scopes`` (default: the session's) as the session's user; ``api``
        names the configured API for telemetry."""
        name, raw, record = self.load(session_key, caller)
        # Its tenant is checked on every use, not only at the start: a tenant taken out of
        # OBO_ALLOWED_TENANTS since gets a 403 tenant_not_allowed, its cached token included.
        self.acquirer.tenant_for(record.tenant)
        wanted = record.scopes if scopes is None else self.scopes_of(record, scopes)
        if self.cache.clock() - record.last_used >= self.touch_interval:
            self.store.write(name, raw, replace(record, last_used=self.cache.clock()))

        def fetch() -> AccessToken:
            return self._redeem(name, record.key_digest, wanted, claims)

        return self.acquirer.acquire_cached(
            self._token_key(record.key_digest, record.tenant, wanted), fetch, wanted,
            claims=claims, api=api)

    def scopes_of(self, record: SessionRecord, scopes: tuple[str, ...]) -> tuple[str, ...]:
        """``scopes`` normalised, if the session was started for them (a refresh token is
        used only for what the user's session was started for)."""
        wanted = self.acquirer.scope_tuple(scopes)
        outside = sorted(set(wanted) - set(record.scopes))
        if outside:
            raise ValueError(f"this long-running session was started for {list(record.scopes)}"
                             f", not {outside}: start it with every scope the job needs")
        return wanted

    def _redeem(self, name: str, digest: str, scopes: tuple[str, ...],
                claims: str | None) -> AccessToken:
        with self.cache.lock(name):
            # Re-read inside the lock: another process may have rotated it, or stopped it.
            raw, record = self.store.read(name)
            if raw is None or record is None or record.key_digest != digest:
                raise LongRunningSessionExpired(_UNKNOWN, reason="unknown")
            if record.ended is not None:
                raise LongRunningSessionExpired(
                    _STOPPED if record.ended == "stopped" else record.message,
                    reason=record.ended)
            try:
                token, rotated = self.acquirer.redeem_refresh_token(
                    record.refresh_token, scopes, tenant=record.tenant, user=record.oid,
                    claims=claims)
            except LongRunningSessionExpired as exc:
                self._end(name, raw, record, exc)
                raise
            if rotated is not None and self.store.write(name, raw, replace(
                    record, refresh_token=rotated, last_used=self.cache.clock())) is None:
                log.info("flask-obo: long-running session %s changed during a redemption: "
                         "its newer entry is kept", _key_id(digest))
        log.debug("flask-obo: long-running session %s redeemed its refresh token",
                  _key_id(digest))
        return token

    def _end(self, name: str, raw: bytes, record: SessionRecord,
             exc: LongRunningSessionExpired) -> None:
        codes = tuple(c for c in exc.extra.get("aadsts", ()) if isinstance(c, int))
        ended = replace(record, refresh_token="", ended=exc.reason or "refused",
                        message=str(exc.description), codes=codes)
        self.store.write(name, raw, ended)
        log.warning("flask-obo: long-running session %s ended: %s %s", _key_id(record.key_digest),
                    ended.ended, ",".join(f"AADSTS{c}" for c in codes))

    # stop --------------------------------------------------------------------------------------
    def stop(self, session_key: str, caller: TokenClaims | None = None) -> bool:
        """End a session: later uses raise ``LongRunningSessionExpired`` ("stopped"). Returns
        whether a live session was stopped (False: unknown, already ended, or another
        user's, which is left as it was)."""
        for _ in range(_WRITE_ATTEMPTS):
            try:
                name, raw, record = self.load(session_key, caller, idle_ok=True)
            except LongRunningSessionExpired:
                return False
            stopped = replace(record, refresh_token="", ended="stopped", message=_STOPPED,
                              last_used=self.cache.clock())
            if self.store.write(name, raw, stopped) is not None:
                self.cache.delete(self._token_key(record.key_digest, record.tenant,
                                                  record.scopes))
                log.info("flask-obo: long-running session %s stopped",
                         _key_id(record.key_digest))
                return True
        # Never a silent "not stopped" for a session that goes on: the caller tries again.
        raise TokenCacheUnavailable("The long-running session kept changing while it was being "
                                    "stopped; try again.")

    # helpers -----------------------------------------------------------------------------------
    def _token_key(self, digest: str, tenant: str, scopes: tuple[str, ...]) -> str:
        return self.cache.key("long_running", self.config.client_id, tenant, digest, scopes)

