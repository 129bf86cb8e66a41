"""Long-running sessions in Redis: one sealed entry per session, changed only by compare-and-set.

- Name: ``<OBO_CACHE_KEY_PREFIX>`` + SHA-256 over (client id, SHA-256 of the session key):
  never the key, and another app's name for the same key is another name.
- Value: the token cache's AES-GCM seal (associated data: the name) of a JSON record, bound
  to the client id, the user (tenant and ``oid``), the scopes and a digest of the key; a live
  session holds its refresh token, an ended one (stopped, or its refresh token refused) says
  why and holds none. Anything that does not open and parse is no session at all.
- TTL: ``OBO_LONG_RUNNING_IDLE_TTL``, renewed by every write.
- Writes are compare-and-set against the bytes read (a Lua script): a redemption that lost a
  race never overwrites the newer refresh token, nor a stop.

Redis failing is ``TokenCacheUnavailable`` (retry later), never "no session": only an entry
that is really gone (stopped, expired, lost with a Redis that kept no data) ends a session.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

from ..cache import OboTokenCache, RedisEntryStore, cache_key
from ..errors import TokenCacheUnavailable

__all__ = ["SessionRecord", "SessionStore", "key_digest"]

log = logging.getLogger("flask_obo.long_running")

# Set KEYS[1] to ARGV[2] (for ARGV[3] ms) if it still holds ARGV[1] ('' for "absent").
_COMPARE_AND_SET = """
local current = redis.call('get', KEYS[1])
if (current or '') == ARGV[1] then
    redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
"""


def key_digest(session_key: str) -> str:
    """Hex SHA-256 of a session key: what is stored, compared and logged (a prefix) instead."""
    return hashlib.sha256(b"flask-obo long-running session\x00" + session_key.encode()).hexdigest()


@dataclass(frozen=True)
class SessionRecord:
    """One session as stored. Its repr never shows the refresh token."""

    client_id: str
    tenant: str  # the tenant asked for tokens (the configured one, or the user's)
    user_tid: str  # the user's own tid and oid: who may start, use and stop it in a request
    oid: str
    scopes: tuple[str, ...]
    key_digest: str
    started: float
    last_used: float
    refresh_token: str = field(default="", repr=False)  # "" once ended
    ended: str | None = None  # a LongRunningSessionExpired reason
    message: str = ""
    codes: tuple[int, ...] = ()

    def to_json(self) -> bytes:
        data: dict[str, Any] = {
            "v": 1, "c": self.client_id, "t": self.tenant, "tid": self.user_tid, "o": self.oid,
            "s": list(self.scopes), "h": self.key_digest, "st": self.started,
            "u": self.last_used}
        if self.ended is None:
            data["rt"] = self.refresh_token
        else:
            data.update(end=self.ended, m=self.message, x=list(self.codes))
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, plain: bytes) -> SessionRecord | None:
        try:
            data = json.loads(plain)
            record = cls(
                client_id=data["c"], tenant=data["t"], user_tid=data["tid"], oid=data["o"],
                scopes=tuple(data["s"]), key_digest=data["h"], started=float(data["st"]),
                last_used=float(data["u"]), refresh_token=data.get("rt", ""),
                ended=data.get("end"), message=data.get("m", ""),
                codes=tuple(data.get("x", ())))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        texts = (record.client_id, record.tenant, record.user_tid, record.oid,
                 record.key_digest, record.refresh_token, record.message, *record.scopes)
        if (data.get("v") != 1 or not all(isinstance(t, str) for t in texts)
                or not all(isinstance(c, int) for c in record.codes)
                or not (math.isfinite(record.started) and math.isfinite(record.last_used))
                or (record.ended is None) == (not record.refresh_token)
                or not (record.ended is None or isinstance(record.ended, str))):
            return None
        return record


class SessionStore:
    """Reads and compare-and-set writes of session entries on the token cache's Redis."""

    def __init__(self, cache: OboTokenCache, backend: RedisEntryStore, client_id: str,
                 ttl: int) -> None:
        self.cache = cache
        self.backend = backend
        self.client_id = client_id
        self.ttl_ms = ttl * 1000
        self._cas: Any = None  # the registered script, made on first use

    def name(self, digest: str) -> str:
        """The cache key of the session whose key has ``digest``."""
        return cache_key(self.cache.prefix, "long_running_session", self.client_id, "", digest,
                         ())

    def read(self, name: str) -> tuple[bytes | None, SessionRecord | None]:
        """The raw entry (for a later compare-and-set) and the record it holds, if any."""
        raw = self._redis("get", lambda client: client.get(self.backend.name(name)))
        if not isinstance(raw, bytes):
            return None, None
        plain = self.cache.codec.open(name, raw)
        record = SessionRecord.from_json(plain) if plain is not None else None
        if record is None:
            log.warning("flask-obo: long-running session entry %s did not open: treated as "
                        "no session", name[-12:])
        return raw, record

    def write(self, name: str, expected: bytes | None, record: SessionRecord) -> bytes | None:
        """Store ``record`` if the entry still is ``expected`` (None: absent). Returns the new
        raw entry, or None when the entry changed meanwhile (nothing was written)."""
        raw = self.cache.codec.seal(name, record.to_json())

        def cas(client: Any) -> Any:
            if self._cas is None:
                self._cas = client.register_script(_COMPARE_AND_SET)
            return self._cas(keys=[self.backend.name(name)],
                             args=[expected or b"", raw, self.ttl_ms])

        return raw if self._redis("write", cas) == 1 else None

    def _redis(self, op: str, call: Any) -> Any:
        try:
            return call(self.backend.client)
        except Exception as exc:
            self.backend.note_failure()
            log.error("flask-obo: long-running sessions: %s on %s failed (%s)", op,
                      self.backend.backend_name, type(exc).__name__)
            raise TokenCacheUnavailable(
                "The token cache, where long-running sessions are kept, could not be reached; "
                "try again shortly.") from None
