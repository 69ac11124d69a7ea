"""In Azure (identity-based storage) the request path creates no tables or queues: the infra
templates created them. With a connection string (Azurite, CI, local runs) they are created on
first use, so an empty emulator needs no set-up step."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueServiceClient

from devkit.host.storage import queue_service_for
from sync.runtime import get_services, reset_services
from sync.settings import AppSettings
from sync.state.tables import TABLES
from sync.storage import queue_service
from tests.support.local import patched_environ


async def test_identity_based_storage_creates_nothing_on_first_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The storage endpoints are a plain TCP listener that counts connections: any create call
    (or any other request) would open one. The SDKs only accept https with a token credential,
    so the endpoints say https; nothing may get as far as a handshake."""
    connections: list[str] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    monkeypatch.delenv("SYNC_STORAGE_CONNECTION", raising=False)
    try:
        with patched_environ(
            {
                "AzureWebJobsStorage__tableServiceUri": f"https://127.0.0.1:{port}/acct",
                "AzureWebJobsStorage__queueServiceUri": f"https://127.0.0.1:{port}/acct",
                "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-0000000000c1",
            }
        ):
            await reset_services()
            try:
                services = await get_services()
                assert not services.settings.app.creates_storage
            finally:
                await reset_services()
    finally:
        server.close()
        await server.wait_closed()
    # Before, the first request made 11 create calls here (9 tables, the queue, its poison queue).
    assert connections == []


async def test_connection_string_creates_tables_and_queues(azurite_connection: str) -> None:
    prefix, queue = f"r{uuid.uuid4().hex[:10]}", f"jobs-{uuid.uuid4().hex[:10]}"
    with patched_environ({"SYNC_TABLE_PREFIX": prefix, "SYNC_JOBS_QUEUE": queue}):
        await reset_services()
        services = await get_services()
        try:
            assert services.settings.app.creates_storage
            async with TableServiceClient.from_connection_string(azurite_connection) as tables:
                names = {t.name async for t in tables.list_tables()}
            async with QueueServiceClient.from_connection_string(azurite_connection) as queues:
                queue_names = {q.name async for q in queues.list_queues(name_starts_with=queue)}
        finally:
            from tests.support.world import drop_services

            await drop_services(services)
    assert {f"{prefix}{t}" for t in TABLES} <= names
    assert queue_names == {queue, f"{queue}-poison"}


@contextlib.asynccontextmanager
async def dropping_relay(port: int) -> AsyncIterator[tuple[int, dict[str, bool]]]:
    """A TCP relay to ``port`` that, when ``drop["next"]`` is set, resets the connection the
    next request arrives on (as when a server closes a keep-alive socket under a client)."""
    drop = {"next": False}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)

        async def up() -> None:
            while data := await reader.read(65536):
                if drop["next"]:
                    drop["next"] = False
                    writer.transport.abort()
                    up_writer.transport.abort()
                    return
                up_writer.write(data)
                await up_writer.drain()

        async def down() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()

        await asyncio.gather(up(), down(), return_exceptions=True)

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], drop
    finally:
        server.close()


def _queue_port(connection: str) -> int:
    endpoint = dict(p.split("=", 1) for p in connection.split(";") if p)["QueueEndpoint"]
    return int(endpoint.rsplit(":", 1)[1].split("/")[0])


@pytest.mark.parametrize("client", ["service", "local host"])
async def test_a_dropped_connection_costs_a_queue_send_a_quick_retry(
    azurite_connection: str, client: str
) -> None:
    """The queue SDK's own retry waits 15-21 s before its first retry (measured: 17.9 s for one
    send), which held a stream's notifications for that long; the service's and the local
    host's queue clients retry within about 2 s."""
    port = _queue_port(azurite_connection)
    async with dropping_relay(port) as (relay_port, drop):
        relayed = azurite_connection.replace(f":{port}/", f":{relay_port}/")
        if client == "service":
            app = AppSettings.model_validate({"storage_connection": relayed})
            service = queue_service(app)
        else:
            service = queue_service_for(None, {"AzureWebJobsStorage": relayed})
        name = f"retry-{uuid.uuid4().hex[:10]}"
        async with service:
            queue = service.get_queue_client(name)
            await queue.create_queue()
            try:
                drop["next"] = True
                started = time.perf_counter()
                await queue.send_message("after a reset")
                took = time.perf_counter() - started
                assert not drop["next"]  # the fault happened
                messages = [m.content async for m in queue.receive_messages()]
            finally:
                await queue.delete_queue()
    assert messages == ["after a reset"]
    assert took < 3.0, took
