"""An offline Microsoft Entra ID for tests and demos: ``EntraEmulator`` and its pytest plugin.

::

    from flask_obo.testing import EntraEmulator

    with EntraEmulator() as emu:        # EntraEmulator(port=..., token_lifetime=..., ...)
        api = emu.register_app("middle-tier", secret="s3cret", scopes=["access_as_user"])
        down = emu.register_app("downstream", scopes=["read", "write"], roles=["Reader"])
        emu.grant_consent(client=api, resource=down, scopes=["read"], roles=["Reader"])
        cli = emu.register_app("cli", public_client_redirect_uris=["http://localhost"])
        alice = emu.add_user("alice@contoso.test", password="pw", mfa_required_for=[down])
        token = emu.issue_user_token(alice, resource=api, scopes=["access_as_user"])
        cca = emu.confidential_client(api, "s3cret")   # a real msal app, wired to the emulator
        cca.acquire_token_on_behalf_of(token, [f"{down.app_id_uri}/read"])
        emu.calls("on_behalf_of")                      # what reached the token endpoint
        flow = emu.public_client(cli).initiate_auth_code_flow(          # interactive sign-in:
            [f"{api.app_id_uri}/access_as_user"], redirect_uri="http://localhost:8400")
        done = emu.interactive_sign_in().complete(flow["auth_uri"], username=alice.username,
                                                  password="pw")        # or a real browser
        emu.public_client(cli).acquire_token_by_auth_code_flow(flow, done.params)

Clients trust ``emu.ca_bundle`` (build sessions with ``flask_obo.build_session``).
See :mod:`~flask_obo.testing.emulator` for the whole API,
:mod:`~flask_obo.testing.pytest_plugin` for the ``entra_emulator`` and ``entra`` fixtures,
:mod:`~flask_obo.testing.faults` for fault injection, :mod:`~flask_obo.testing.grants` for the
grants and their errors, :mod:`~flask_obo.testing.downstream` for a downstream API stand-in, and
``python -m flask_obo.testing serve`` for a standalone server.
"""

from .authorize import DEFAULT_ONE_TIME_CODE
from .calls import fingerprint
from .clients import EmulatorHttpClient
from .directory import App, RegisteredCertificate, Tenant, User
from .downstream import DownstreamCall, DownstreamStandIn
from .emulator import EntraEmulator
from .errors import EntraError
from .faults import Fault, FaultInjector, Hold
from .interactive import InteractiveSignIn, Page, SignInIncomplete
from .loopback import LoopbackServer
from .tls import ClientCertificate, make_client_certificate

__all__ = [
    "DEFAULT_ONE_TIME_CODE",
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
    "InteractiveSignIn",
    "LoopbackServer",
    "Page",
    "RegisteredCertificate",
    "SignInIncomplete",
    "Tenant",
    "User",
    "fingerprint",
    "make_client_certificate",
]
