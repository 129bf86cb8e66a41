"""Microsoft's own resources, present in every tenant: Microsoft Graph and Azure Storage.

In Entra they are Microsoft's apps, with a service principal in every tenant; an app asks for
their delegated scopes (``User.Read``, ``https://storage.azure.com/user_impersonation``, or
``<resource>/.default``) after consent, as for any other resource. Both accept only v1.0 access
tokens, so theirs are v1-shaped: ``iss`` ``https://sts.windows.net/<tid>/``, ``aud`` the
resource as the request named it (``https://graph.microsoft.com``), ``appid``, ``ver`` "1.0".
"""

from __future__ import annotations

from dataclasses import dataclass

from .directory import App, Directory

__all__ = ["FIRST_PARTY", "GRAPH", "MICROSOFT_SERVICES_TENANT", "STORAGE", "FirstParty",
           "register_first_party"]

#: The tenant Microsoft's own apps are registered in (their home tenant, never a user's).
MICROSOFT_SERVICES_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"


@dataclass(frozen=True)
class FirstParty:
    """One of Microsoft's resources, as every tenant sees it."""

    name: str
    client_id: str
    app_id_uri: str
    scopes: tuple[str, ...]  # delegated permissions
    roles: tuple[str, ...] = ()  # application permissions

    def app(self) -> App:
        return App(name=self.name, client_id=self.client_id, tenant_id=MICROSOFT_SERVICES_TENANT,
                   app_id_uri=self.app_id_uri, scopes=self.scopes, roles=self.roles,
                   access_token_version=1, multi_tenant=True)


GRAPH = FirstParty(
    "Microsoft Graph", "00000003-0000-0000-c000-000000000000", "https://graph.microsoft.com",
    scopes=("User.Read", "User.ReadWrite", "User.ReadBasic.All", "User.Read.All", "Mail.Read",
            "Mail.ReadWrite", "Mail.Send", "Calendars.Read", "Calendars.ReadWrite",
            "Contacts.Read", "Files.Read", "Files.ReadWrite", "Files.Read.All", "Sites.Read.All",
            "Group.Read.All", "Directory.Read.All", "People.Read"),
    roles=("User.Read.All", "Mail.Read", "Calendars.Read", "Files.Read.All", "Sites.Read.All",
           "Group.Read.All", "Directory.Read.All"),
)
# Storage has no application permissions: an app's access is an Azure RBAC role assignment,
# which the storage service checks, not a claim in the token.
STORAGE = FirstParty("Azure Storage", "e406a681-f3d4-42a8-90b6-c2b029497af1",
                     "https://storage.azure.com", scopes=("user_impersonation",))
FIRST_PARTY = (GRAPH, STORAGE)


def register_first_party(directory: Directory) -> dict[str, App]:
    """Add Microsoft Graph and Azure Storage to ``directory``; returns them by App ID URI."""
    return {spec.app_id_uri: directory.add_app(spec.app()) for spec in FIRST_PARTY}
