"""Run the sandbox in-process on a free 127.0.0.1 port (tests, demo, benchmarks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from devkit.sandbox.graph.config import SandboxConfig
from devkit.sandbox.graph.server import SANDBOX_KEY, create_app
from devkit.sandbox.graph.service import Sandbox


@dataclass(frozen=True)
class SandboxHandle:
    """Where the sandbox listens and its live state (for seeding and assertions)."""

    origin: str  # http://127.0.0.1:PORT  (token authority host)
    sandbox: Sandbox

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1.0"

    @property
    def tenant_id(self) -> str:
        return self.sandbox.state.tenant_id

    @property
    def token_url(self) -> str:
        return f"{self.origin}/{self.tenant_id}/oauth2/v2.0/token"


@asynccontextmanager
async def running_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[SandboxHandle]:
    """Start the app on `host:port` (0 = a free port); stop it on exit."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    try:
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        bound = sockets[0].getsockname()[1]
        yield SandboxHandle(origin=f"http://{host}:{bound}", sandbox=app[SANDBOX_KEY])
    finally:
        await runner.cleanup()
