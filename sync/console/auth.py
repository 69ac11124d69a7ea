"""Who is asking: the signed-in person from the platform's principal header, and whether that
header can be trusted at all.

In Azure, App Service Authentication (Easy Auth) with Microsoft Entra ID sits in front of the
app: it signs the user in, strips any ``X-MS-CLIENT-PRINCIPAL*`` header a client sent and adds
its own, base64 JSON of the ID token's claims.  The header is trusted only when the platform
says authentication is on (``WEBSITE_AUTH_ENABLED``); without it anyone could send one.

Locally, the development host (``python -m devkit serve``) plays the same part: it offers a
development sign-in page, strips and injects the same header, and sets ``SYNC_CONSOLE_DEV_LOGIN``
for the app.  That setting is refused when the app runs in Azure (``WEBSITE_INSTANCE_ID`` or
``WEBSITE_SITE_NAME`` present): the console then answers 503 rather than trusting anything.

Admins hold the app role ``SyncCenter.Admin``; everyone else sees only their own mailbox,
found from their sign-in (``owns``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import quote

from sync.core.keys import normalise_address
from sync.core.state_models import Mailbox

ADMIN_ROLE = "SyncCenter.Admin"
PRINCIPAL_HEADER = "x-ms-client-principal"
DEV_LOGIN_SETTING = "SYNC_CONSOLE_DEV_LOGIN"
AZURE_MARKERS = ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME")
AUTH_ENABLED = "WEBSITE_AUTH_ENABLED"
MAX_PRINCIPAL_CHARS = 32 * 1024  # an ID token's claims; anything bigger is not the platform's

# Claim types, short (v2 tokens) and long (the SAML-style names App Service also uses).
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
NAME_CLAIMS = ("preferred_username", "upn", "email")
LONG_NAME_CLAIMS = (
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
)
OID_CLAIMS = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")
TID_CLAIMS = ("tid", "http://schemas.microsoft.com/identity/claims/tenantid")
DISPLAY_CLAIMS = ("name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class PrincipalError(ValueError):
    """The principal header is not what the platform sends."""


class Mode(Enum):
    AZURE = "azure"  # App Service Authentication in front of the app
    DEV = "dev"  # the development host's sign-in
    OFF = "off"  # nobody can be trusted: the console refuses every request


@dataclass(frozen=True)
class FrontDoor:
    """How people sign in here, or why they cannot."""

    mode: Mode
    problem: str = ""

    def login_url(self, back_to: str) -> str:
        provider = "aad" if self.mode is Mode.AZURE else "dev"
        return f"/.auth/login/{provider}?post_login_redirect_uri={quote(back_to, safe='/')}"

    @property
    def logout_url(self) -> str:
        return "/.auth/logout?post_logout_redirect_uri=/api/console"


def front_door(environ: Mapping[str, str] | None = None) -> FrontDoor:
    """Whether the principal header can be trusted in this process, and who set it."""
    env = os.environ if environ is None else environ
    in_azure = any(env.get(name) for name in AZURE_MARKERS)
    dev = env.get(DEV_LOGIN_SETTING, "").strip().lower() in ("1", "true", "yes")
    if in_azure:
        if dev:
            return FrontDoor(
                Mode.OFF,
                f"{DEV_LOGIN_SETTING} is set, and this app runs in Azure: the development "
                "sign-in is refused here. Remove the setting.",
            )
        if env.get(AUTH_ENABLED, "").strip().lower() != "true":
            return FrontDoor(
                Mode.OFF,
                "App Service Authentication is not enabled on this function app, so nobody "
                "can be signed in. Deploy infra/main.bicep with consoleClientId set "
                "(docs/console.md).",
            )
        return FrontDoor(Mode.AZURE)
    if dev:
        return FrontDoor(Mode.DEV)
    return FrontDoor(
        Mode.OFF,
        "No sign-in is configured. Locally, run the development host (python -m devkit serve), "
        "which offers a development sign-in; in Azure, App Service Authentication.",
    )


@dataclass(frozen=True)
class Viewer:
    """The signed-in person."""

    name: str  # sign-in name, normalised (their UPN / email address)
    display_name: str
    object_id: str
    tenant_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    def owns(self, mailbox: Mailbox) -> bool:
        """Is ``mailbox`` this person's own?  When the mailbox was registered with its Entra
        object id as its Graph user, only that id matches (a sign-in name can be reassigned);
        otherwise the sign-in name must be the mailbox's address."""
        graph_user = mailbox.graph_user.strip()
        if GUID.match(graph_user):
            return bool(self.object_id) and self.object_id.lower() == graph_user.lower()
        return bool(self.name) and self.name == mailbox.id


def _claims(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    raw = payload.get("claims")
    if not isinstance(raw, list):
        raise PrincipalError("the principal has no claims")
    out = []
    for claim in raw:
        if isinstance(claim, Mapping):
            typ, val = claim.get("typ"), claim.get("val")
            if isinstance(typ, str) and isinstance(val, str):
                out.append((typ, val))
    return out


def _first(claims: list[tuple[str, str]], types: tuple[str, ...]) -> str:
    for wanted in types:
        for typ, val in claims:
            if typ == wanted and val.strip():
                return val.strip()
    return ""


def parse_principal(header: str) -> Viewer:
    """The person in an ``X-MS-CLIENT-PRINCIPAL`` header (base64 of the platform's JSON)."""
    if len(header) > MAX_PRINCIPAL_CHARS:
        raise PrincipalError("the principal header is too large")
    try:
        padded = header.strip() + "=" * (-len(header.strip()) % 4)
        payload = json.loads(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise PrincipalError("the principal header is not base64 JSON") from exc
    if not isinstance(payload, Mapping):
        raise PrincipalError("the principal header is not a JSON object")
    claims = _claims(payload)
    role_type = payload.get("role_typ")
    role_types = (*ROLE_CLAIMS, *([role_type] if isinstance(role_type, str) else []))
    name_type = payload.get("name_typ")
    name_types = (
        *NAME_CLAIMS,
        *LONG_NAME_CLAIMS,
        *([name_type] if isinstance(name_type, str) else []),
    )
    name = normalise_address(_first(claims, name_types))
    if not name:
        raise PrincipalError("the principal names nobody")
    return Viewer(
        name=name,
        display_name=_first(claims, DISPLAY_CLAIMS) or name,
        object_id=_first(claims, OID_CLAIMS),
        tenant_id=_first(claims, TID_CLAIMS),
        roles=frozenset(val for typ, val in claims if typ in role_types),
    )


def encode_principal(
    name: str,
    *,
    display_name: str = "",
    object_id: str = "",
    tenant_id: str = "",
    roles: tuple[str, ...] = (),
) -> str:
    """A principal header as the platform writes it (used by the development host and tests)."""
    claims = [{"typ": "preferred_username", "val": name}]
    if display_name:
        claims.append({"typ": "name", "val": display_name})
    if object_id:
        claims.append({"typ": OID_CLAIMS[1], "val": object_id})
    if tenant_id:
        claims.append({"typ": TID_CLAIMS[1], "val": tenant_id})
    claims += [{"typ": "roles", "val": role} for role in roles]
    payload = {
        "auth_typ": "aad",
        "claims": claims,
        "name_typ": "preferred_username",
        "role_typ": "roles",
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


def tenant_problem(viewer: Viewer, expected_tenant: str) -> str:
    """Why this person may not use the console of this tenant ("" when they may).  Only a
    GUID tenant id is compared: that is what the sign-in reports."""
    if GUID.match(expected_tenant.strip()) and viewer.tenant_id.lower() != expected_tenant.lower():
        return "You signed in with an account from another organisation."
    return ""
