"""The identity side of the benchmarks: an Entra emulator with a middle tier, a downstream API
and N users, each with a token for the middle tier.

Tokens are test tokens of a throwaway emulator; they are written to a private temporary file
(mode 0600, deleted on exit) only because the load generators run in other processes.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from flask_obo.testing import EntraEmulator

__all__ = ["BenchIdentity"]

SECRET = "bench-middle-tier-secret"


@dataclass
class BenchIdentity:
    """``with BenchIdentity(users=50) as ident: ident.settings, ident.tokens, ident.oids``."""

    users: int = 50
    token_lifetime: int = 3600
    #: seconds the downstream tokens the emulator issues by OBO live (None: token_lifetime)
    obo_token_lifetime: int | None = None
    settings: dict[str, Any] = field(default_factory=dict, init=False)
    tokens: list[str] = field(default_factory=list, init=False, repr=False)
    oids: list[str] = field(default_factory=list, init=False)
    wrong_audience_token: str = field(default="", init=False, repr=False)
    tokens_file: str = field(default="", init=False)
    workdir: str = field(default="", init=False)  # private, removed on exit: logs, tokens
    emulator: EntraEmulator = field(init=False, repr=False)
    _stack: ExitStack = field(default_factory=ExitStack, init=False, repr=False)

    def __enter__(self) -> BenchIdentity:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _setup(self) -> None:
        emu = self._stack.enter_context(EntraEmulator(
            token_lifetime=self.token_lifetime, obo_token_lifetime=self.obo_token_lifetime))
        self.emulator = emu
        middle = emu.register_app("bench-middle-tier", secret=SECRET, scopes=["access_as_user"])
        down = emu.register_app("bench-downstream", scopes=["read"])
        emu.grant_consent(client=middle, resource=down, scopes=["read"])
        for i in range(self.users):
            user = emu.add_user(f"bench-user-{i:03d}@contoso.test")
            self.tokens.append(emu.issue_user_token(user, resource=middle,
                                                    scopes=["access_as_user"]))
            self.oids.append(user.oid)
        # Signed by the real key, for another API: every protected scenario must refuse it.
        self.wrong_audience_token = emu.issue_user_token(user, resource=down, scopes=["read"])
        self.settings = {
            "OBO_AUTHORITY": emu.authority(),
            "OBO_CLIENT_ID": middle.client_id,
            "OBO_CA_BUNDLE": emu.ca_bundle,
            "OBO_CLIENT_SECRET": SECRET,
            "OBO_DOWNSTREAM_APIS": {"down": {"scopes": [f"{down.app_id_uri}/read"]}},
        }
        tmp = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="flask-obo-bench-"))
        path = Path(tmp) / "tokens.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(self.tokens) + "\n")
        self.tokens_file = str(path)
        self.workdir = tmp

    def obo_calls(self) -> int:
        """On-behalf-of requests the identity provider answered so far."""
        return len(self.emulator.calls("on_behalf_of"))

    def idp_calls(self) -> int:
        """Every request the identity provider answered so far (discovery, keys, tokens)."""
        return self.emulator.call_count()
