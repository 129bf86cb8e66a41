"""Fixtures of the Azure SDK suites: a Microsoft Graph stand-in, Azurite, a middle tier.

- ``graph``: a stand-in for Microsoft Graph (session scope), itself protected by FlaskOBO as
  Graph would be (v1 tokens, audience ``https://graph.microsoft.com``, issuer
  ``https://sts.windows.net/<tid>/``), served over HTTPS (for azure-core, which sends bearer
  tokens over TLS only) and over plain HTTP on loopback (which msgraph-sdk allows). ``/v1.0/me``
  answers as Graph does; ``/cae`` refuses the first token each user presents with a continuous
  access evaluation challenge.
- ``azurite``: Microsoft's Azure Storage emulator (npm package ``azurite``, pinned in
  ``tests/azurite/package-lock.json``), started with HTTPS and ``--oauth basic``. Installed
  with ``npm ci`` when missing; without Node.js and npm the tests skip (fail with CI=true).
- ``azure_middle``: a middle tier (``make_middle``) with consent for Graph and Storage.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure_helpers import GRAPH_SCOPES, cae_challenge_header
from flask import Flask, Response, jsonify, request
from obo_helpers import LoopbackServer, token_hash

from flask_obo import FlaskOBO, current_token, requires_scopes
from flask_obo.testing import EntraEmulator
from flask_obo.testing.tls import ServerTLS

AZURITE_DIR = Path(__file__).parent / "azurite"
AZURITE_ACCOUNT = "devstoreaccount1"


@dataclass
class GraphStandIn:
    """The running Graph stand-in and what it has seen."""

    https_url: str  # https://127.0.0.1:PORT (trust ``ca_bundle``)
    http_url: str  # http://127.0.0.1:PORT
    ca_bundle: str
    seen: list[tuple[str, str]] = field(default_factory=list)  # (oid, token hash), in order
    cae_first: dict[str, str] = field(default_factory=dict)  # oid -> first token hash on /cae
    lock: threading.Lock = field(default_factory=threading.Lock)

    def oids_seen(self) -> list[str]:
        with self.lock:
            return [oid for oid, _ in self.seen]


def _graph_app(emu: EntraEmulator, state: dict[str, GraphStandIn]) -> Flask:
    app = Flask("graph-stand-in")
    graph = emu.graph
    app.config.update(OBO_AUTHORITY=emu.authority(), OBO_CLIENT_ID=graph.client_id,
                      OBO_AUDIENCES=[graph.app_id_uri, graph.client_id],
                      OBO_CA_BUNDLE=emu.ca_bundle)
    FlaskOBO(app)

    def seen() -> str:
        raw = request.headers["Authorization"].split(" ", 1)[1]
        stand_in = state["graph"]
        with stand_in.lock:
            stand_in.seen.append((str(current_token.oid), token_hash(raw)))
        return token_hash(raw)

    @app.get("/v1.0/me")
    @requires_scopes("User.Read")
    def me() -> Any:
        seen()
        return jsonify({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "id": current_token.oid, "displayName": current_token.get("name"),
            "userPrincipalName": current_token.get("upn"),
        })

    @app.get("/cae")
    def cae() -> Any:
        token = seen()
        stand_in = state["graph"]
        with stand_in.lock:
            first = stand_in.cae_first.setdefault(str(current_token.oid), token)
        if first == token:
            return Response(status=401, headers={"WWW-Authenticate": cae_challenge_header()})
        return jsonify(oid=current_token.oid, token=token, ver=current_token.version,
                       iss=current_token.get("iss"))

    return app


@pytest.fixture(scope="session")
def graph(entra_emulator: EntraEmulator) -> Iterator[GraphStandIn]:
    state: dict[str, GraphStandIn] = {}
    app = _graph_app(entra_emulator, state)
    with tempfile.TemporaryDirectory(prefix="graph-stand-in-") as directory:
        tls = ServerTLS(directory)
        secure = LoopbackServer(app, ssl_context=tls.server_context())
        plain = LoopbackServer(app)
        state["graph"] = GraphStandIn(secure.url.rstrip("/"), plain.url.rstrip("/"),
                                      tls.ca_bundle)
        try:
            yield state["graph"]
        finally:
            secure.stop()
            plain.stop()


# Azurite -------------------------------------------------------------------------------------
@dataclass
class Azurite:
    """A running Azurite blob service."""

    url: str  # https://127.0.0.1:PORT/devstoreaccount1
    ca_bundle: str
    startup_seconds: float


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the Azure Storage tests must run)")
    pytest.skip(reason)


def _azurite_binary() -> Path:
    binary = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
    installed = AZURITE_DIR / "node_modules" / ".package-lock.json"
    lock = AZURITE_DIR / "package-lock.json"
    if binary.exists() and installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return binary
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _unavailable("Node.js and npm are needed to run Azurite (the Azure Storage emulator)")
    result = subprocess.run([str(npm), "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                            cwd=AZURITE_DIR, capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not binary.exists():
        _unavailable(f"npm ci in {AZURITE_DIR} failed: {result.stderr[-500:]}")
    return binary


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    binary = _azurite_binary()
    if shutil.which("node") is None:
        _unavailable("Node.js is needed to run Azurite (the Azure Storage emulator)")
    with tempfile.TemporaryDirectory(prefix="azurite-") as directory:
        tls = ServerTLS(directory)
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(binary), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
             "--oauth", "basic", "--cert", tls.cert_file, "--key", tls.key_file,
             "--disableTelemetry", "--skipApiVersionCheck", "--silent"],
            cwd=directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        listening = threading.Event()
        output: list[str] = []

        def read() -> None:  # drains Azurite's output, and spots the line with its address
            assert proc.stdout is not None
            for line in proc.stdout:
                output.append(line.rstrip())
                if re.search(r"listens on https://127\.0\.0\.1:\d+", line):
                    listening.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            if not listening.wait(timeout=120) or proc.poll() is not None:
                pytest.fail("Azurite did not start: " + " | ".join(output[-10:]))
            seconds = time.monotonic() - started
            match = next(m for line in output
                         if (m := re.search(r"(https://127\.0\.0\.1:\d+)", line)))
            yield Azurite(f"{match.group(1)}/{AZURITE_ACCOUNT}", tls.ca_bundle, seconds)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            reader.join(timeout=5)


# the middle tier -----------------------------------------------------------------------------
MakeAzureMiddle = Callable[..., Any]


@pytest.fixture
def azure_middle(make_middle: Callable[..., Any], entra: Any) -> MakeAzureMiddle:
    """``azure_middle(**config)``: ``make_middle`` with admin consent for Graph and Storage."""

    def make(*, graph_scopes: list[str] = GRAPH_SCOPES, **config: Any) -> Any:
        middle = make_middle(**config)
        entra.grant_consent(client=middle.api, resource=entra.graph, scopes=graph_scopes)
        entra.grant_consent(client=middle.api, resource=entra.storage,
                            scopes=["user_impersonation"])
        return middle

    return make
