"""Calling the console's functions the way the worker would, as a signed-in person."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import azure.functions as func

from sync.console.auth import ADMIN_ROLE, encode_principal
from sync.console.routes import console_action, console_page

TENANT = "00000000-0000-0000-0000-000000000001"  # tests/conftest.py BASE_ENV
ORIGIN = "http://127.0.0.1:7071"


def principal(name: str, *, admin: bool = False, object_id: str = "", tenant: str = TENANT) -> str:
    return encode_principal(
        name,
        display_name=name.split("@")[0].title(),
        object_id=object_id,
        tenant_id=tenant,
        roles=(ADMIN_ROLE,) if admin else (),
    )


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")


@dataclass
class Browser:
    """One person: their principal header and the CSRF cookie pages give them."""

    name: str
    admin: bool = False
    object_id: str = ""
    tenant: str = TENANT
    cookies: dict[str, str] = field(default_factory=dict)

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"host": "127.0.0.1:7071"}
        if self.name:
            headers["x-ms-client-principal"] = principal(
                self.name, admin=self.admin, object_id=self.object_id, tenant=self.tenant
            )
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        headers.update(extra or {})
        return headers

    def _keep(self, resp: func.HttpResponse) -> Answer:
        headers = dict(resp.headers)
        cookie = headers.get("Set-Cookie", "")
        if cookie:
            name, _, rest = cookie.partition("=")
            self.cookies[name] = rest.split(";")[0]
        return Answer(resp.status_code, headers, (resp.get_body() or b"").decode())

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        parts = urlsplit(path)
        rest = parts.path.removeprefix("/api/console").strip("/")
        req = func.HttpRequest(
            method="GET",
            url=f"{ORIGIN}{path}",
            headers=self._headers(headers),
            params=dict(parse_qsl(parts.query)),
            route_params={"path": rest},
            body=b"",
        )
        return self._keep(await console_page.build().get_user_function()(req))

    async def post(
        self,
        path: str,
        form: dict[str, str] | list[tuple[str, str]] | None = None,
        *,
        csrf: bool = True,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        pairs = list(form.items()) if isinstance(form, dict) else list(form or [])
        if csrf:
            token = next((v for k, v in self.cookies.items() if k.endswith("sync-csrf")), "")
            pairs.append(("csrf_token", token))
        req = func.HttpRequest(
            method="POST",
            url=f"{ORIGIN}{path}",
            headers=self._headers(
                {"content-type": "application/x-www-form-urlencoded", **(headers or {})}
            ),
            params={},
            route_params={"path": path.removeprefix("/api/console").strip("/")},
            body=urlencode(pairs).encode(),
        )
        return self._keep(await console_action.build().get_user_function()(req))


def text_of(html: str) -> str:
    """The page's visible text, roughly (tags dropped, whitespace squeezed)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def as_admin(name: str = "admin@contoso.example") -> Browser:
    return Browser(name, admin=True)


def as_user(name: str, **kw: Any) -> Browser:
    return Browser(name, **kw)
