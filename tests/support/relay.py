"""A TCP relay in front of Azurite, for storage that misbehaves on the wire: requests held for
a while (a brownout), never answered, or a connection dropped under a request."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass


@dataclass
class Relay:
    port: int  # the relay's own
    drop_next: bool = False  # reset the connection the next request arrives on, once
    # Pass the next request on, then reset its connection instead of answering, once: the
    # server did the work and the client never hears of it.
    lose_next_reply: bool = False


@contextlib.asynccontextmanager
async def relay(port: int, hold: float = 0.0) -> AsyncIterator[Relay]:
    """A TCP relay to ``127.0.0.1:port`` that holds every chunk from the client for ``hold``
    seconds (``hold < 0``: never passes anything on), and resets a connection when told to
    (``Relay.drop_next``: as a server closing a keep-alive socket under a client), or after
    the request has been passed on (``Relay.lose_next_reply``)."""
    control = Relay(0)

    def once(flag: str) -> Callable[[], bool]:
        """Whether ``control.<flag>`` is set, clearing it: each fault happens once."""

        def take() -> bool:
            if getattr(control, flag):
                setattr(control, flag, False)
                return True
            return False

        return take

    async def pump(
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        fault: Callable[[], bool],
        delay: float = 0.0,
    ) -> None:
        """Copy ``src`` to ``dst``; when ``fault()`` says so, reset both ends instead."""
        with contextlib.suppress(ConnectionError):
            while chunk := await src.read(65536):
                if fault():
                    other.transport.abort()
                    dst.transport.abort()
                    return
                if delay:
                    await asyncio.sleep(delay)
                dst.write(chunk)
                await dst.drain()
        dst.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if hold < 0:
            await reader.read()  # swallow the request, answer nothing, until closed
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(
            pump(reader, up_writer, writer, once("drop_next"), hold),
            pump(up_reader, writer, up_writer, once("lose_next_reply")),
            return_exceptions=True,
        )

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    control.port = server.sockets[0].getsockname()[1]
    try:
        yield control
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


def endpoint_port(connection: str, name: str) -> int:
    """The port of Azurite's ``name`` ("Table", "Queue") endpoint in a connection string."""
    found = re.search(rf"{name}Endpoint=http://127\.0\.0\.1:(\d+)", connection)
    assert found, connection
    return int(found.group(1))


def through(connection: str, **ports: int) -> str:
    """The connection string with endpoints moved to other ports (``Table=``, ``Queue=``)."""
    for name, port in ports.items():
        connection = re.sub(
            rf"({name}Endpoint=http://127\.0\.0\.1:)\d+", rf"\g<1>{port}", connection
        )
    return connection
