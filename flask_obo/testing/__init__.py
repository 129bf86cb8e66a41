"""An offline Microsoft Entra ID for tests and demos: ``EntraEmulator`` and its pytest plugin.

See :mod:`flask_obo.testing.emulator` for the emulator, :mod:`flask_obo.testing.pytest_plugin`
for the ``entra_emulator`` and ``entra`` fixtures, and :mod:`flask_obo.testing.faults` for
fault injection.
"""

from .calls import fingerprint
from .clients import EmulatorHttpClient
from .directory import App, RegisteredCertificate, Tenant, User
from .emulator import EntraEmulator
from .errors import EntraError
from .faults import Fault, FaultInjector
from .tls import ClientCertificate, make_client_certificate

__all__ = [
    "App",
    "ClientCertificate",
    "EmulatorHttpClient",
    "EntraEmulator",
    "EntraError",
    "Fault",
    "FaultInjector",
    "RegisteredCertificate",
    "Tenant",
    "User",
    "fingerprint",
    "make_client_certificate",
]
