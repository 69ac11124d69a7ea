"""Fixtures: a fresh sandbox per test (over real HTTP on 127.0.0.1) and a client for Ann."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from devkit.sandbox.workbooks import RunningSandbox, SandboxConfig, running_sandbox
from sync.workbooks import ClientConfig, WorkbooksClient, WorkbooksIdentity

UA = "WireTest/1.0 (gzip)"
ANN_KEY, BOB_KEY = "ann-api-key", "bob-api-key"
FAST = ClientConfig(backoff_base_seconds=0.01, backoff_max_seconds=0.05, timeout_seconds=10)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with running_sandbox(SandboxConfig(sim_controls=True)) as running:
        yield running


@pytest.fixture
async def client(sandbox: RunningSandbox) -> AsyncIterator[WorkbooksClient]:
    identity = WorkbooksIdentity(sandbox.base_url, SecretStr(ANN_KEY), "ann@example.com")
    async with WorkbooksClient(identity, FAST) as wb:
        yield wb


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A bare HTTP session for hand-built, binding-style requests."""
    async with aiohttp.ClientSession(
        headers={"User-Agent": UA}, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:
        yield session


class Wire:
    """Hand-built requests in the exact shape the public bindings send."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base = http, base
        self.cookie = ""
        self.token = ""

    async def login(self, key: str = ANN_KEY, **extra: str) -> dict[str, Any]:
        form = [("api_key", key), ("client", "api"), ("api_version", "1"), *extra.items()]
        async with self.http.post(f"{self.base}/login.api", data=form) as resp:
            body: dict[str, Any] = await resp.json()
            assert resp.status == 200, body
            self.cookie = resp.cookies["Workbooks-Session"].value
            self.token = body["authenticity_token"]
            return body

    async def php(
        self, path: str, verb: str, pairs: list[tuple[str, str]], query: str = ""
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        """PHP binding: always POST, ``_method`` and ``client=api`` in the form body."""
        form = [("_method", verb), ("client", "api")]
        if verb != "GET" and self.token:
            form.append(("_authenticity_token", self.token))
        url = f"{self.base}/{path}?_dc=1732713600123{query}"
        headers = {"Cookie": f"Workbooks-Session={self.cookie}"} if self.cookie else {}
        async with self.http.post(
            url, data=form + pairs, headers=headers, allow_redirects=False
        ) as resp:
            text = await resp.text()
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = text
            return resp.status, body, resp


@pytest.fixture
async def wire(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> Wire:
    w = Wire(http, sandbox.base_url)
    await w.login(_application_name="WireTest", _fast_login="false")
    return w
