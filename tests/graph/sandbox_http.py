"""Talking to the Graph sandbox as a plain HTTP client (no SDK): a token, and a sandbox with one
mailbox plus an authorised client, for the protocol tests of the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx

from devkit.sandbox.graph import SandboxHandle, running_sandbox
from tests.graph.conftest import UPN, fast_config


async def token(handle: SandboxHandle, http: httpx.AsyncClient) -> str:
    resp = await http.post(
        handle.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": "sandbox-client",
            "client_secret": "sandbox-secret",
            "scope": "https://graph.microsoft.com/.default",
        },
    )
    assert resp.status_code == 200
    return str(resp.json()["access_token"])


@asynccontextmanager
async def sandbox_http(**overrides: Any) -> AsyncIterator[tuple[SandboxHandle, httpx.AsyncClient]]:
    """A sandbox (`fast_config(**overrides)`) with the mailbox `UPN` and a client holding a
    valid token."""
    async with (
        running_sandbox(fast_config(**overrides)) as handle,
        httpx.AsyncClient(base_url=handle.origin) as http,
    ):
        handle.sandbox.state.add_mailbox(UPN)
        http.headers["Authorization"] = f"Bearer {await token(handle, http)}"
        yield handle, http


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def wall(text: str, zone: str = "UTC") -> dict[str, str]:
    """A `dateTimeTimeZone` as a client writes it."""
    return {"dateTime": text, "timeZone": zone}
