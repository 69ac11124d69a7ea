"""A development sign-in for the console, in the part App Service Authentication plays in Azure.

In Azure, App Service Authentication (Easy Auth) signs people in with Entra ID, removes any
``X-MS-CLIENT-PRINCIPAL*`` header a client sent, and adds its own for a signed-in session.  The
local host does the same with a form instead of Entra ID:

* ``GET/POST /.auth/login/dev`` asks for an address (and whether to hold the
  ``SyncCenter.Admin`` role) and sets a session cookie signed with a key that lives only in this
  host process;
* ``/.auth/logout`` clears it; ``/.auth/me`` shows the principal, like Easy Auth's;
* every request to a function loses the client's principal headers and, with a valid cookie,
  gets the platform-shaped ones (base64 JSON of the claims).

The host sets ``SYNC_CONSOLE_DEV_LOGIN=1`` for the app while it runs, which is how the console
knows a trusted front door is there.  The console refuses that setting in Azure, and this
module refuses to start where the Azure markers are present.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import os
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from sync.console.auth import ADMIN_ROLE, AZURE_MARKERS, DEV_LOGIN_SETTING, encode_principal

COOKIE = "devkit-auth"
PRINCIPAL_PREFIX = "x-ms-client-principal"
LOGIN_PATH = "/.auth/login/dev"


class DevSignInRefused(RuntimeError):
    """The development sign-in cannot run here (an Azure environment)."""


def strip_principal(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """What Easy Auth does first: no client may send its own identity."""
    return [(k, v) for k, v in headers if not k.lower().startswith(PRINCIPAL_PREFIX)]


def _safe_target(value: str | None) -> str:
    """A path on this host only (no open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/api/console"


class DevSignIn:
    def __init__(self, tenant_id: str = "", environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        if any(env.get(name) for name in AZURE_MARKERS):
            raise DevSignInRefused("the development sign-in never runs in Azure")
        self.tenant_id = tenant_id
        self._key = secrets.token_bytes(32)
        self._saved: str | None = None
        self._active = False

    # -- the app setting -----------------------------------------------------------------------

    def activate(self) -> None:
        self._saved = os.environ.get(DEV_LOGIN_SETTING)
        os.environ[DEV_LOGIN_SETTING] = "1"
        self._active = True

    def deactivate(self) -> None:
        if not self._active:
            return
        if self._saved is None:
            os.environ.pop(DEV_LOGIN_SETTING, None)
        else:
            os.environ[DEV_LOGIN_SETTING] = self._saved
        self._active = False

    # -- sessions --------------------------------------------------------------------------------

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def session(self, identity: Mapping[str, Any]) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(dict(identity)).encode())
        return f"{payload.decode()}.{self._sign(payload)}"

    def identity(self, cookie: str | None) -> dict[str, Any] | None:
        if not cookie or "." not in cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        if not hmac.compare_digest(self._sign(payload.encode()), signature):
            return None
        try:
            found = json.loads(base64.urlsafe_b64decode(payload.encode()))
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def principal_headers(self, request: web.Request) -> list[tuple[str, str]]:
        """The platform's headers for the request's session, if it has one."""
        who = self.identity(request.cookies.get(COOKIE))
        if who is None:
            return []
        name = str(who.get("name", ""))
        header = encode_principal(
            name,
            display_name=str(who.get("display_name", "")),
            object_id=str(who.get("object_id", "")),
            tenant_id=self.tenant_id,
            roles=tuple(str(r) for r in who.get("roles", [])),
        )
        return [
            ("X-MS-CLIENT-PRINCIPAL", header),
            ("X-MS-CLIENT-PRINCIPAL-NAME", name),
            ("X-MS-CLIENT-PRINCIPAL-ID", str(who.get("object_id", ""))),
            ("X-MS-CLIENT-PRINCIPAL-IDP", "dev"),
        ]

    # -- pages -----------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(LOGIN_PATH, self._login_form),
            web.post(LOGIN_PATH, self._login),
            web.get("/.auth/login/aad", self._to_dev),
            web.get("/.auth/logout", self._logout),
            web.get("/.auth/me", self._me),
        ]

    async def _to_dev(self, request: web.Request) -> web.StreamResponse:
        target = _safe_target(request.query.get("post_login_redirect_uri"))
        raise web.HTTPFound(f"{LOGIN_PATH}?post_login_redirect_uri={target}")

    async def _login_form(self, request: web.Request) -> web.StreamResponse:
        target = html.escape(_safe_target(request.query.get("post_login_redirect_uri")))
        body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Development sign-in</title>
<link rel="stylesheet" href="/api/console/static/console.css"></head>
<body><main id="main">
<h1>Development sign-in</h1>
<p>This page exists only on the local development host; in Azure, people sign in with
Microsoft Entra ID.</p>
<form method="post" action="{LOGIN_PATH}" class="stack">
  <input type="hidden" name="post_login_redirect_uri" value="{target}">
  <div class="field"><label for="name">Email address</label>
    <input id="name" name="name" type="email" required autocomplete="username"></div>
  <div class="field"><label for="display_name">Display name (optional)</label>
    <input id="display_name" name="display_name" autocomplete="name"></div>
  <div class="field"><label for="object_id">Entra object id (optional)</label>
    <input id="object_id" name="object_id" autocomplete="off"></div>
  <div class="field check"><input id="admin" name="admin" type="checkbox" value="1">
    <label for="admin">Administrator (app role {ADMIN_ROLE})</label></div>
  <button type="submit">Sign in</button>
</form></main></body></html>"""
        return web.Response(text=body, content_type="text/html", headers=_headers())

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name = str(form.get("name", "")).strip().lower()
        if "@" not in name:
            raise web.HTTPBadRequest(text="an email address is required")
        object_id = str(form.get("object_id", "")).strip() or str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"devkit:{name}")
        )
        identity = {
            "name": name,
            "display_name": str(form.get("display_name", "")).strip() or name.split("@")[0].title(),
            "object_id": object_id,
            "roles": [ADMIN_ROLE] if form.get("admin") else [],
        }
        target = _safe_target(str(form.get("post_login_redirect_uri", "")))
        response = web.HTTPSeeOther(target)
        response.set_cookie(COOKIE, self.session(identity), httponly=True, samesite="Lax", path="/")
        raise response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        target = _safe_target(request.query.get("post_logout_redirect_uri"))
        response = web.HTTPFound(target)
        response.del_cookie(COOKIE, path="/")
        raise response

    async def _me(self, request: web.Request) -> web.StreamResponse:
        who = self.identity(request.cookies.get(COOKIE))
        return web.json_response([who] if who else [], headers=_headers())


def _headers() -> dict[str, str]:
    return {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }
