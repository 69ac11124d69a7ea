"""Run the sandbox in-process on a free 127.0.0.1 port (tests, the demo, benchmarks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from .config import SandboxConfig
from .server import STATE_KEY, create_app
from .store import SandboxState


@dataclass(frozen=True)
class RunningSandbox:
    """Where the sandbox listens and a handle to its in-memory state."""

    base_url: str  # e.g. "http://127.0.0.1:54321" (no trailing slash)
    state: SandboxState


@asynccontextmanager
async def running_sandbox(config: SandboxConfig | None = None) -> AsyncIterator[RunningSandbox]:
    """Start the sandbox, yield its URL and state, and stop it on exit."""
    app = create_app(config or SandboxConfig(sim_controls=True))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        yield RunningSandbox(f"http://127.0.0.1:{port}", app[STATE_KEY])
    finally:
        await runner.cleanup()
