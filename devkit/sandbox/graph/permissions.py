"""What an app-only token may touch: the application permissions (``roles``) Entra ID puts in
the token, and Exchange's scoping of mailboxes (RBAC for Applications / an application access
policy).  Graph checks both on every Outlook request (graph.md §5).

* **Roles.** A client-credentials token lists the app's consented application permissions in
  its ``roles`` claim (none consented: no claim at all).  A request whose resource needs a
  permission the token lacks answers 403 ``ErrorAccessDenied`` "Access is denied. Check
  credentials and try again." (the answer public reports quote for Outlook resources); a
  write needs the ReadWrite permission.  ``SandboxConfig.app_roles`` is what is consented;
  a change applies to tokens issued after it, as a consent change does.
* **Mailbox scope.** With ``SandboxConfig.access_policy`` set (UPNs or user ids), a mailbox
  outside it answers 403 ``ErrorAccessDenied`` "Access to OData is disabled." for Mail,
  Calendars, Contacts and MailboxSettings, the permissions Exchange scopes; To Do (Tasks.*) is
  not scoped by either Exchange mechanism, so it stays reachable.
* **Subscriptions** need the read permission of their resource.  The refusal's wording for
  Outlook resources is not in a public source; the sandbox answers 403 ``ExtensionError`` with
  the text public reports quote for other resources ("Operation: Create; Exception: [Status
  Code: Forbidden; Reason: The caller does not have permission to perform the action.]").
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

from aiohttp import web

from devkit.sandbox.graph.wire import GraphFailure

# Request key: the `roles` of the request's token.
ROLES_KEY: web.RequestKey[frozenset[str]] = web.RequestKey("graph_token_roles", frozenset)
Family = Literal["mail", "contacts", "calendars", "tasks", "mailboxsettings"]

# Permissions granting read (any of) and write (any of) per resource family.
READ: dict[Family, tuple[str, ...]] = {
    "mail": ("Mail.Read", "Mail.ReadWrite"),
    "contacts": ("Contacts.Read", "Contacts.ReadWrite"),
    "calendars": ("Calendars.Read", "Calendars.ReadWrite"),
    "tasks": ("Tasks.Read.All", "Tasks.ReadWrite.All"),
    "mailboxsettings": ("MailboxSettings.Read", "MailboxSettings.ReadWrite"),
}
WRITE: dict[Family, tuple[str, ...]] = {
    "mail": ("Mail.ReadWrite",),
    "contacts": ("Contacts.ReadWrite",),
    "calendars": ("Calendars.ReadWrite",),
    "tasks": ("Tasks.ReadWrite.All",),
    "mailboxsettings": ("MailboxSettings.ReadWrite",),
}
# What Exchange's mailbox scoping covers (graph.md §5): not Tasks.*.
EXCHANGE_SCOPED: frozenset[Family] = frozenset({"mail", "contacts", "calendars", "mailboxsettings"})
# A tenant where an administrator consented everything the service could use.
DEFAULT_APP_ROLES = (
    "Mail.ReadWrite",
    "Contacts.ReadWrite",
    "Calendars.ReadWrite",
    "Tasks.ReadWrite.All",
    "MailboxSettings.ReadWrite",
)
_SEGMENT_FAMILY: dict[str, Family] = {
    "mailfolders": "mail",
    "messages": "mail",
    "contacts": "contacts",
    "contactfolders": "contacts",
    "calendar": "calendars",
    "calendars": "calendars",
    "calendarview": "calendars",
    "events": "calendars",
    "todo": "tasks",
    "mailboxsettings": "mailboxsettings",
    "outlook": "mailboxsettings",  # outlook/masterCategories
}
KIND_FAMILY: dict[str, Family] = {"message": "mail", "contact": "contacts", "event": "calendars"}
ACCESS_DENIED = "Access is denied. Check credentials and try again."
ODATA_DISABLED = "Access to OData is disabled."
SUBSCRIPTION_DENIED = (
    "Operation: Create; Exception: [Status Code: Forbidden; Reason: The caller does not have "
    "permission to perform the action.]"
)


def family_of(segments: Sequence[str]) -> Family | None:
    """The resource family of a path under ``/users/{id}`` (None: not an Outlook resource)."""
    return _SEGMENT_FAMILY.get(segments[0].lower()) if segments else None


def in_scope(policy: Collection[str] | None, upn: str, user_id: str) -> bool:
    if policy is None:
        return True
    allowed = {p.lower() for p in policy}
    return upn.lower() in allowed or user_id.lower() in allowed


def check_request(
    family: Family | None,
    write: bool,
    roles: Collection[str],
    policy: Collection[str] | None,
    upn: str,
    user_id: str,
) -> None:
    """Raise Graph's 403 when the token or the mailbox scope does not allow the request."""
    if family is None:
        return
    granted = WRITE[family] if write else READ[family]
    if not any(role in roles for role in granted):
        raise GraphFailure(403, "ErrorAccessDenied", ACCESS_DENIED)
    if family in EXCHANGE_SCOPED and not in_scope(policy, upn, user_id):
        raise GraphFailure(403, "ErrorAccessDenied", ODATA_DISABLED)


def check_subscription(
    kind: str, roles: Collection[str], policy: Collection[str] | None, upn: str, user_id: str
) -> None:
    """A subscription needs its resource's read permission and a mailbox in scope."""
    family = KIND_FAMILY.get(kind)
    if family is None:
        return
    if not any(role in roles for role in READ[family]):
        raise GraphFailure(403, "ExtensionError", SUBSCRIPTION_DENIED)
    if not in_scope(policy, upn, user_id):
        raise GraphFailure(
            403,
            "ExtensionError",
            f"Operation: Create; Exception: [Status Code: Forbidden; Reason: {ODATA_DISABLED}]",
        )
