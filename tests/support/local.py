"""Local plumbing shared by the tests and the benchmarks: Azurite, free ports, small HTTP
servers on one, and environment variables set for a while."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web


@contextlib.contextmanager
def running_azurite(*, on_disk: bool = False) -> Iterator[tuple[str, int | None]]:
    """Azurite's connection string: ``AZURITE_CONNECTION_STRING``'s (``make test``) when set,
    else one started here and stopped on exit; with its pid when started here.

    ``on_disk``: keep its data in a temporary directory (removed on exit) rather than in
    memory.  Benchmarks that send queue messages at tens or hundreds a second asked for it
    because in memory, Azurite keeps each message in an extent of its own, and its queue
    garbage collector (every 60 s) deleted them one by one, each with a scan of all of them,
    which stopped every request for seconds once a minute (a quadratic pause no Azure queue
    has).  ``devkit/azurite_gc.js`` now makes that sweep one pass, so an Azurite in memory (as
    ``make bench`` and ``make test`` start) no longer pauses either."""
    existing = os.environ.get("AZURITE_CONNECTION_STRING")
    if existing:
        yield existing, None
        return
    import shutil
    import tempfile
    from pathlib import Path

    from devkit import azurite

    location = Path(tempfile.mkdtemp(prefix="azurite-")) if on_disk else None
    try:
        with azurite.running(location) as az:
            yield az.connection_string, az.pid
    finally:
        if location is not None:
            shutil.rmtree(location, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_server(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve ``app`` on a free 127.0.0.1 port: the runner (``cleanup()`` it) and the origin."""
    from aiohttp import web

    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``start_server`` for the length of a block; yields the origin."""
    runner, origin = await start_server(app)
    try:
        yield origin
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ``; on exit put back what those keys were (or unset them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
