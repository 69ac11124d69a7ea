"""HTTP plumbing of the console: cookies, form bodies, CSRF tokens and the answers' headers.

CSRF: a double-submit token.  Every page sets a random token in a cookie (``__Host-`` prefixed
on HTTPS, so no sibling site can plant one; ``SameSite=Strict``, ``HttpOnly``) and puts the same
token in each form; a POST must carry both, equal (constant-time compare).  Cross-site requests
are also refused outright when the browser says so (``Sec-Fetch-Site``) or the ``Origin`` is
another host.

Every answer carries a Content Security Policy without inline scripts or styles, refuses
framing, and is not cached (pages hold personal data).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from sync.blueprints.responses import SECURITY_HEADERS

MAX_FORM_BYTES = 32 * 1024  # the policy form with its filter rows is the largest
MAX_FORM_FIELDS = 400
MAX_FIELD_CHARS = 4000
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS: Mapping[str, str] = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class FormError(ValueError):
    """A form body we do not accept; ``status`` is the answer's HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_https(req: func.HttpRequest) -> bool:
    """Behind App Service the app sees HTTP; the front end names the scheme it was called with."""
    forwarded = (req.headers.get("x-forwarded-proto") or "").split(",")[0].strip().lower()
    return forwarded == "https" or urlsplit(req.url).scheme == "https"


def csrf_cookie_name(req: func.HttpRequest) -> str:
    # __Host- cookies must be Secure, which a plain-HTTP development host cannot set.
    return "__Host-sync-csrf" if is_https(req) else "sync-csrf"


def cookies(req: func.HttpRequest) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(req.headers.get("cookie") or "")
    except CookieError:
        return {}
    return {key: morsel.value for key, morsel in jar.items()}


@dataclass
class Csrf:
    """The request's token: the cookie's, or a new one to set with the answer."""

    token: str
    new: bool
    cookie_name: str

    def set_cookie(self, https: bool) -> str:
        parts = [f"{self.cookie_name}={self.token}", "Path=/", "HttpOnly", "SameSite=Strict"]
        if https:
            parts.append("Secure")
        return "; ".join(parts)


def csrf_for(req: func.HttpRequest) -> Csrf:
    name = csrf_cookie_name(req)
    token = cookies(req).get(name, "")
    if len(token) == 43 and token.replace("-", "").replace("_", "").isalnum():
        return Csrf(token, False, name)
    return Csrf(secrets.token_urlsafe(32), True, name)


def cross_site(req: func.HttpRequest) -> bool:
    """Did another site make the browser send this request?"""
    fetch_site = str(req.headers.get("sec-fetch-site") or "").lower()
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return True
    origin = str(req.headers.get("origin") or "")
    if origin and origin != "null":
        host = str(req.headers.get("x-forwarded-host") or req.headers.get("host") or "")
        return urlsplit(origin).netloc.lower() != host.split(",")[0].strip().lower()
    return origin == "null"  # a sandboxed or privacy-sensitive context: not ours


def csrf_ok(req: func.HttpRequest, form: Mapping[str, str]) -> bool:
    """The POST carries the cookie's token in its form (or header), and is not cross-site."""
    if cross_site(req):
        return False
    expected = cookies(req).get(csrf_cookie_name(req), "")
    supplied = form.get(CSRF_FIELD) or req.headers.get(CSRF_HEADER) or ""
    return bool(expected) and hmac.compare_digest(expected.encode(), supplied.encode())


@dataclass
class Form:
    """A parsed form: the last value of each field, and every value (for repeated fields)."""

    values: dict[str, str] = field(default_factory=dict)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, default)

    def all(self, name: str) -> list[str]:
        return self.lists.get(name, [])

    def __contains__(self, name: str) -> bool:
        return name in self.values


def read_form(req: func.HttpRequest) -> Form:
    """An ``application/x-www-form-urlencoded`` body, bounded in size, fields and lengths."""
    body = req.get_body() or b""
    if len(body) > MAX_FORM_BYTES:
        raise FormError(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    ctype = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
    if body and ctype != "application/x-www-form-urlencoded":
        raise FormError(415, "expected a form (application/x-www-form-urlencoded)")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormError(400, f"the form cannot be read: {exc}") from None
    form = Form()
    for key, value in pairs:
        if len(key) > 200 or len(value) > MAX_FIELD_CHARS:
            raise FormError(400, "a form field is too long")
        form.values[key] = value
        form.lists.setdefault(key, []).append(value)
    return form


def page(
    body: str,
    status: int = 200,
    *,
    csrf: Csrf | None = None,
    https: bool = False,
    headers: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    extra = dict(headers or {})
    if csrf is not None and csrf.new:
        extra["Set-Cookie"] = csrf.set_cookie(https)
    return func.HttpResponse(
        body,
        status_code=status,
        mimetype="text/html",
        charset="utf-8",
        headers={**PAGE_HEADERS, **extra},
    )


def redirect(location: str, status: int = 303) -> func.HttpResponse:
    """To a path of ours only (never an absolute URL: no open redirect)."""
    if not location.startswith("/") or location.startswith("//"):
        location = "/api/console"
    return func.HttpResponse("", status_code=status, headers={**PAGE_HEADERS, "Location": location})
