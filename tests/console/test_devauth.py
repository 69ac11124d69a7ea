"""The local host's development sign-in plays App Service Authentication: it drops any
principal header a client sends, adds its own for a signed session, never redirects off-site,
and does not run where Azure's markers are."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from yarl import URL

from devkit.host.devauth import DevSignIn, DevSignInRefused
from devkit.host.localhost import LocalHost
from sync.console.auth import ADMIN_ROLE, DEV_LOGIN_SETTING, encode_principal


@pytest.fixture
async def host(services: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LocalHost]:
    monkeypatch.delenv(DEV_LOGIN_SETTING, raising=False)
    async with LocalHost(port=0, timers=False, queues=False) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def sign_in(
    http: aiohttp.ClientSession,
    host: LocalHost,
    name: str,
    *,
    admin: bool = False,
    back: str = "/api/console/me",
) -> aiohttp.ClientResponse:
    form = {"name": name, "post_login_redirect_uri": back, **({"admin": "1"} if admin else {})}
    return await http.post(f"{host.base_url}/.auth/login/dev", data=form, allow_redirects=False)


async def test_the_host_signs_people_in_and_sets_the_setting_only_while_it_runs(
    host: LocalHost, http: aiohttp.ClientSession
) -> None:
    assert os.environ[DEV_LOGIN_SETTING] == "1"
    first = await http.get(f"{host.base_url}/api/console/mailboxes", allow_redirects=False)
    assert first.status == 302
    login = first.headers["Location"]
    assert login == "/.auth/login/dev?post_login_redirect_uri=/api/console/mailboxes"
    form = await http.get(f"{host.base_url}{login}")
    assert 'value="/api/console/mailboxes"' in await form.text()
    signed = await sign_in(http, host, "Ann@Example.com", admin=True, back="/api/console/mailboxes")
    assert signed.status == 303 and signed.headers["Location"] == "/api/console/mailboxes"
    page = await http.get(f"{host.base_url}/api/console/mailboxes", allow_redirects=False)
    assert page.status == 200 and "Ann" in await page.text()
    me = await http.get(f"{host.base_url}/.auth/me")
    [identity] = await me.json()
    assert identity["name"] == "ann@example.com" and identity["roles"] == [ADMIN_ROLE]
    out = await http.get(f"{host.base_url}/.auth/logout", allow_redirects=False)
    assert out.status == 302
    again = await http.get(f"{host.base_url}/api/console/mailboxes", allow_redirects=False)
    assert again.status == 302


async def test_a_principal_header_from_a_client_never_reaches_the_app(
    host: LocalHost, http: aiohttp.ClientSession
) -> None:
    forged = {"X-MS-CLIENT-PRINCIPAL": encode_principal("mallory@example.com", roles=(ADMIN_ROLE,))}
    answer = await http.get(
        f"{host.base_url}/api/console/mailboxes", headers=forged, allow_redirects=False
    )
    assert answer.status == 302  # as if nobody had signed in
    await sign_in(http, host, "user@example.com")
    answer = await http.get(
        f"{host.base_url}/api/console/mailboxes", headers=forged, allow_redirects=False
    )
    assert answer.status == 403  # the session's identity, not the forged admin


async def test_a_tampered_session_is_no_session(
    host: LocalHost, http: aiohttp.ClientSession
) -> None:
    await sign_in(http, host, "user@example.com")
    cookie = next(c for c in http.cookie_jar if c.key == "devkit-auth")
    payload, _, signature = cookie.value.rpartition(".")
    for value, status in ((cookie.value, 404), (f"{payload}x.{signature}", 302)):
        http.cookie_jar.clear()
        http.cookie_jar.update_cookies({"devkit-auth": value}, URL(host.base_url))
        answer = await http.get(f"{host.base_url}/api/console/me", allow_redirects=False)
        assert answer.status == status  # 404: signed in, no mailbox; 302: not signed in


async def test_no_redirect_leaves_the_site(host: LocalHost, http: aiohttp.ClientSession) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        signed = await sign_in(http, host, "user@example.com", back=target)
        assert signed.headers["Location"] == "/api/console", target
    out = await http.get(
        f"{host.base_url}/.auth/logout?post_logout_redirect_uri=https://evil.example",
        allow_redirects=False,
    )
    assert out.headers["Location"] == "/api/console"


async def test_the_setting_is_put_back_after_the_host_stops(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DEV_LOGIN_SETTING, raising=False)
    async with LocalHost(port=0, timers=False, queues=False):
        assert os.environ[DEV_LOGIN_SETTING] == "1"
    assert DEV_LOGIN_SETTING not in os.environ
    async with LocalHost(port=0, timers=False, queues=False, dev_sign_in=False) as plain:
        assert DEV_LOGIN_SETTING not in os.environ and plain.dev_sign_in is None


def test_never_in_azure() -> None:
    with pytest.raises(DevSignInRefused):
        DevSignIn("t", {"WEBSITE_INSTANCE_ID": "abc"})
    with pytest.raises(DevSignInRefused):
        DevSignIn("t", {"WEBSITE_SITE_NAME": "func-sync"})
