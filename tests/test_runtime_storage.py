"""In Azure (identity-based storage) the request path creates no tables or queues: the infra
templates created them. With a connection string (Azurite, CI, local runs) they are created on
first use, so an empty emulator needs no set-up step."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueServiceClient

from sync.runtime import get_services, reset_services
from sync.state.tables import TABLES
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
