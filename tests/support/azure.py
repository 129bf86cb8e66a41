"""What the Azure SDK suites run against: a Microsoft Graph stand-in and Azurite.

- ``GraphStandIn`` (``start_graph``): a stand-in for Microsoft Graph, itself protected by
  FlaskOBO as Graph would be (v1 tokens, audience ``https://graph.microsoft.com``, issuer
  ``https://sts.windows.net/<tid>/``), served over HTTPS (for azure-core, which sends bearer
  tokens over TLS only) and over plain HTTP on loopback (which msgraph-sdk allows).
  ``/v1.0/me`` answers as Graph does; ``/cae`` refuses the first token each user presents with
  a continuous access evaluation challenge.
- ``Azurite`` (``start_azurite``): Microsoft's Azure Storage emulator (npm package
  ``azurite``, pinned in ``tests/azurite/package-lock.json``), started with HTTPS and
  ``--oauth basic``. Installed with ``npm ci`` when missing (``make azurite`` does it first);
  without Node.js and npm the tests skip (fail with CI=true).

This module imports no Azure package: conftest loads it whether or not the extra is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest
from flask import Flask, Response, jsonify, request

from flask_obo import FlaskOBO, current_token, requires_scopes
from flask_obo.testing import EntraEmulator, LoopbackServer, fingerprint
from flask_obo.testing.tls import ServerTLS

from .checks import cae_challenge
from .processes import stop_process

__all__ = [
    "GRAPH_DEFAULT",
    "GRAPH_SCOPES",
    "STORAGE_SCOPE",
    "Azurite",
    "GraphStandIn",
    "azurite_args",
    "start_azurite",
    "start_graph",
]

GRAPH_SCOPES = ["User.Read", "Mail.Read"]
STORAGE_SCOPE = "https://storage.azure.com/.default"
GRAPH_DEFAULT = "https://graph.microsoft.com/.default"

AZURITE_DIR = Path(__file__).resolve().parents[1] / "azurite"
AZURITE_ACCOUNT = "devstoreaccount1"


# Microsoft Graph -----------------------------------------------------------------------------
@dataclass
class GraphStandIn:
    """The running Graph stand-in and what it has seen."""

    https_url: str  # https://127.0.0.1:PORT (trust ``ca_bundle``)
    http_url: str  # http://127.0.0.1:PORT
    ca_bundle: str
    seen: list[tuple[str, str]] = field(default_factory=list)  # (oid, token fingerprint)
    cae_first: dict[str, str] = field(default_factory=dict)  # oid -> first token on /cae
    lock: threading.Lock = field(default_factory=threading.Lock)

    def oids_seen(self) -> list[str]:
        with self.lock:
            return [oid for oid, _ in self.seen]

    def record(self) -> str:
        """Record the validated caller of this request; its token's fingerprint."""
        token = fingerprint(request.headers["Authorization"].split(" ", 1)[1])
        with self.lock:
            self.seen.append((str(current_token.oid), token))
        return token

    def first_cae_token(self, token: str) -> bool:
        """Whether ``token`` is the first the caller presents to ``/cae``."""
        with self.lock:
            return self.cae_first.setdefault(str(current_token.oid), token) == token


def _graph_app(emu: EntraEmulator, graph: list[GraphStandIn]) -> Flask:
    app = Flask("graph-stand-in")
    registration = emu.graph
    app.config.update(OBO_AUTHORITY=emu.authority(), OBO_CLIENT_ID=registration.client_id,
                      OBO_AUDIENCES=[registration.app_id_uri, registration.client_id],
                      OBO_CA_BUNDLE=emu.ca_bundle)
    FlaskOBO(app)

    @app.get("/v1.0/me")
    @requires_scopes("User.Read")
    def me() -> Any:
        graph[0].record()
        return jsonify({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "id": current_token.oid, "displayName": current_token.get("name"),
            "userPrincipalName": current_token.get("upn"),
        })

    @app.get("/cae")
    def cae() -> Any:
        token = graph[0].record()
        if graph[0].first_cae_token(token):
            return Response(status=401,
                            headers={"WWW-Authenticate": cae_challenge(graph_form=True)})
        return jsonify(oid=current_token.oid, token=token, ver=current_token.version,
                       iss=current_token.get("iss"))

    return app


@contextmanager
def start_graph(emu: EntraEmulator) -> Iterator[GraphStandIn]:
    """The Graph stand-in of ``emu``, served over HTTPS and HTTP until the block ends."""
    graph: list[GraphStandIn] = []
    app = _graph_app(emu, graph)
    with tempfile.TemporaryDirectory(prefix="graph-stand-in-") as directory:
        tls = ServerTLS(directory)
        secure = LoopbackServer(app, ssl_context=tls.server_context()).start()
        plain = LoopbackServer(app).start()
        graph.append(GraphStandIn(secure.url.rstrip("/"), plain.url.rstrip("/"), tls.ca_bundle))
        try:
            yield graph[0]
        finally:
            secure.stop()
            plain.stop()
            app.extensions["obo"].close()


# Azurite -------------------------------------------------------------------------------------
@dataclass
class Azurite:
    """A running Azurite blob service."""

    url: str  # https://127.0.0.1:PORT/devstoreaccount1
    ca_bundle: str


def _unavailable(reason: str) -> NoReturn:
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
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                            cwd=AZURITE_DIR, capture_output=True, text=True, timeout=900)
    if result.returncode != 0 or not binary.exists():
        _unavailable(f"npm ci in {AZURITE_DIR} failed: {result.stderr[-500:]}")
    return binary


def azurite_args(cert_file: str, key_file: str) -> list[str]:
    """``azurite-blob``'s arguments here (the guide's command uses these options)."""
    return ["--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
            "--oauth", "basic", "--cert", cert_file, "--key", key_file,
            "--disableTelemetry", "--skipApiVersionCheck", "--silent"]


@contextmanager
def start_azurite() -> Iterator[Azurite]:
    """Azurite's blob service over HTTPS with ``--oauth basic``, until the block ends."""
    binary = _azurite_binary()
    if shutil.which("node") is None:
        _unavailable("Node.js is needed to run Azurite (the Azure Storage emulator)")
    with tempfile.TemporaryDirectory(prefix="azurite-") as directory:
        tls = ServerTLS(directory)
        proc = subprocess.Popen(
            [str(binary), *azurite_args(tls.cert_file, tls.key_file)],
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
            match = next(m for line in output
                         if (m := re.search(r"(https://127\.0\.0\.1:\d+)", line)))
            yield Azurite(f"{match.group(1)}/{AZURITE_ACCOUNT}", tls.ca_bundle)
        finally:
            stop_process(proc)
            reader.join(timeout=5)
