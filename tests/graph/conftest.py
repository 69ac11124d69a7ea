"""Graph test fixtures: the sandbox on a free port, the real client pointed at it, and a small
webhook receiver that answers validation handshakes and records notifications."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from devkit.sandbox.graph import SandboxConfig, SandboxHandle, running_sandbox
from devkit.sandbox.graph.state import Mailbox
from sync.graph.client import GraphClient
from sync.graph.limiter import RetryPolicy
from sync.settings import GraphSettings
from tests.support.local import serving

UPN = "ann@example.com"


def fast_config(**overrides: Any) -> SandboxConfig:
    cfg = SandboxConfig(
        controls=True,
        validation_timeout_seconds=0.5,
        notify_retry_seconds=0.05,
        concurrency_retry_after=1,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(fast_config()) as handle:
        yield handle


@pytest.fixture
def mailbox(sandbox: SandboxHandle) -> Mailbox:
    return sandbox.sandbox.state.add_mailbox(UPN)


def settings_for(handle: SandboxHandle, **overrides: Any) -> GraphSettings:
    values: dict[str, Any] = {
        "tenant_id": handle.tenant_id,
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "base_url": handle.base_url,
        "authority_host": handle.origin,
        "scope": "https://graph.microsoft.com/.default",
        "max_retry_wait_seconds": 2,
    }
    values.update(overrides)
    return GraphSettings(**values)


FAST_POLICY = RetryPolicy(attempts=4, backoff_base_seconds=0.01, max_wait_seconds=2.0)


@pytest.fixture
async def graph(sandbox: SandboxHandle) -> AsyncIterator[GraphClient]:
    client = GraphClient.create(settings_for(sandbox), policy=FAST_POLICY)
    yield client
    await client.aclose()


@dataclass
class Receiver:
    """Our side of the webhook, as Graph sees it.  `mode`: echo | wrong | error | slow."""

    origin: str = ""
    mode: str = "echo"
    notifications: list[dict[str, Any]] = field(default_factory=list)
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    validations: int = 0
    fail_next: int = 0
    content_types: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("validationToken")
        if token is not None:
            self.validations += 1
            self.content_types.append(request.headers.get("Content-Type", ""))
            if self.mode == "slow":
                await asyncio.sleep(2)
            if self.mode == "error":
                return web.Response(status=500)
            text = token + "x" if self.mode == "wrong" else token
            return web.Response(text=text, content_type="text/plain")
        if self.fail_next > 0:  # our endpoint is briefly down: Graph must retry
            self.fail_next -= 1
            return web.Response(status=503)
        body = await request.json()
        target = self.lifecycle if request.path.endswith("lifecycle") else self.notifications
        target.extend(body["value"])
        self.arrived.set()
        return web.Response(status=202)

    async def wait_for(self, count: int, kind: str = "notifications", timeout: float = 5) -> None:
        async def _wait() -> None:
            while len(getattr(self, kind)) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/api/graph/notifications", rec.handle)
    app.router.add_post("/api/graph/lifecycle", rec.handle)
    async with serving(app) as origin:
        rec.origin = origin
        yield rec


def pytest_configure(config: pytest.Config) -> None:
    # msgraph's generated builders warn about their own deprecated classes at import time.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:msgraph.*")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:kiota_abstractions.*")
