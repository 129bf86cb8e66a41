"""An offline Microsoft Entra ID for tests and demos: ``EntraEmulator`` and its pytest plugin.

::

    from flask_obo.testing import EntraEmulator

    with EntraEmulator() as emu:        # EntraEmulator(port=..., token_lifetime=..., ...)
        api = emu.register_app("middle-tier", secret="s3cret", scopes=["access_as_user"])
        down = emu.register_app("downstream", scopes=["read", "write"], roles=["Reader"])
        emu.grant_consent(client=api, resource=down, scopes=["read"], roles=["Reader"])
        cli = emu.register_app("cli")  # no credential: a public client
        alice = emu.add_user("alice@contoso.test", password="pw", mfa_required_for=[down])
        token = emu.issue_user_token(alice, resource=api, scopes=["access_as_user"])
        cca = emu.confidential_client(api, "s3cret")   # a real msal app, wired to the emulator
        cca.acquire_token_on_behalf_of(token, [f"{down.app_id_uri}/read"])
        emu.calls("on_behalf_of")                      # what reached the token endpoint

Clients trust ``emu.ca_bundle`` (build sessions with ``flask_obo.build_session``).
See :mod:`~flask_obo.testing.emulator` for the whole API,
:mod:`~flask_obo.testing.pytest_plugin` for the ``entra_emulator`` and ``entra`` fixtures,
:mod:`~flask_obo.testing.faults` for fault injection, :mod:`~flask_obo.testing.grants` for the
grants and their errors, :mod:`~flask_obo.testing.downstream` for a downstream API stand-in, and
``python -m flask_obo.testing serve`` for a standalone server.
"""

from .calls import fingerprint
from .clients import EmulatorHttpClient
from .directory import App, RegisteredCertificate, Tenant, User
from .downstream import DownstreamCall, DownstreamStandIn
from .emulator import EntraEmulator
from .errors import EntraError
from .faults import Fault, FaultInjector, Hold
from .loopback import LoopbackServer
from .tls import ClientCertificate, make_client_certificate

__all__ = [
    "App",
    "ClientCertificate",
    "DownstreamCall",
    "DownstreamStandIn",
    "EmulatorHttpClient",
    "EntraEmulator",
    "EntraError",
    "Fault",
    "FaultInjector",
    "Hold",
    "LoopbackServer",
    "RegisteredCertificate",
    "Tenant",
    "User",
    "fingerprint",
    "make_client_certificate",
]
