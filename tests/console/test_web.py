"""Forms, CSRF and the answers' headers."""

from __future__ import annotations

import azure.functions as func
import pytest

from sync.console.web import (
    MAX_FORM_BYTES,
    FormError,
    csrf_for,
    csrf_ok,
    page,
    read_form,
    redirect,
)


def _req(
    body: bytes = b"",
    *,
    headers: dict[str, str] | None = None,
    url: str = "http://127.0.0.1:7071/api/console",
) -> func.HttpRequest:
    return func.HttpRequest(
        method="POST", url=url, headers=headers or {}, params={}, route_params={}, body=body
    )


FORM = {"content-type": "application/x-www-form-urlencoded", "host": "127.0.0.1:7071"}


def test_forms_keep_repeated_fields_and_refuse_what_is_not_a_form() -> None:
    form = read_form(_req(b"groups=email&groups=people&name=A%26B", headers=FORM))
    assert form.all("groups") == ["email", "people"] and form.get("name") == "A&B"
    with pytest.raises(FormError) as big:
        read_form(_req(b"x=" + b"a" * MAX_FORM_BYTES, headers=FORM))
    assert big.value.status == 413
    with pytest.raises(FormError) as json_body:
        read_form(_req(b'{"a": 1}', headers={"content-type": "application/json"}))
    assert json_body.value.status == 415
    with pytest.raises(FormError, match="too long"):
        read_form(_req(b"x=" + b"a" * 5000, headers=FORM))
    with pytest.raises(FormError) as bad:
        read_form(_req(b"x=%ff%fe", headers=FORM))
    assert bad.value.status == 400


def test_the_csrf_token_is_a_cookie_and_a_field_that_must_match() -> None:
    fresh = csrf_for(_req(headers=FORM))
    assert fresh.new and len(fresh.token) == 43
    cookie = fresh.set_cookie(https=False)
    assert cookie.startswith("sync-csrf=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    with_cookie = {**FORM, "cookie": f"sync-csrf={fresh.token}"}
    assert not csrf_for(_req(headers=with_cookie)).new
    assert csrf_ok(_req(headers=with_cookie), {"csrf_token": fresh.token})
    assert not csrf_ok(_req(headers=with_cookie), {"csrf_token": "x" * 43})
    assert not csrf_ok(_req(headers=with_cookie), {})
    assert not csrf_ok(_req(headers=FORM), {"csrf_token": fresh.token})  # no cookie
    assert csrf_ok(_req(headers={**with_cookie, "x-csrf-token": fresh.token}), {})
    # Same token, but the browser says another site sent it.
    assert not csrf_ok(
        _req(headers={**with_cookie, "sec-fetch-site": "cross-site"}), {"csrf_token": fresh.token}
    )
    assert not csrf_ok(
        _req(headers={**with_cookie, "origin": "https://evil.example"}), {"csrf_token": fresh.token}
    )
    assert not csrf_ok(_req(headers={**with_cookie, "origin": "null"}), {"csrf_token": fresh.token})
    assert csrf_ok(
        _req(
            headers={
                **with_cookie,
                "origin": "http://127.0.0.1:7071",
                "sec-fetch-site": "same-origin",
            }
        ),
        {"csrf_token": fresh.token},
    )


def test_over_https_the_cookie_is_host_only_and_secure() -> None:
    req = _req(headers={**FORM, "x-forwarded-proto": "https"})
    csrf = csrf_for(req)
    assert csrf.cookie_name == "__Host-sync-csrf"
    assert "Secure" in csrf.set_cookie(https=True)


def test_pages_carry_the_security_headers_and_redirects_stay_home() -> None:
    headers = page("<p>x</p>").headers
    csp = headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    )
    assert "unsafe" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["X-Frame-Options"] == "DENY"
    assert redirect("/api/console/me").headers["Location"] == "/api/console/me"
    assert redirect("https://evil.example/").headers["Location"] == "/api/console"
    assert redirect("//evil.example/").headers["Location"] == "/api/console"
