"""In Azure (identity-based storage) the request path creates no tables or queues: the infra
templates created them. With a connection string (Azurite, CI, local runs) they are created on
first use, so an empty emulator needs no set-up step."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from azure.data.tables.aio import TableServiceClient
from azure.storage.queue.aio import QueueServiceClient

from devkit.host.storage import queue_service_for
from sync.runtime import get_services, reset_services
from sync.settings import AppSettings
from sync.state.tables import TABLES
from sync.storage import queue_service
from tests.support.local import patched_environ
from tests.support.relay import endpoint_port, relay, through


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


@pytest.mark.parametrize("client", ["service", "local host"])
async def test_a_dropped_connection_costs_a_queue_send_a_quick_retry(
    azurite_connection: str, client: str
) -> None:
    """The queue SDK's own retry waits 15-21 s before its first retry (measured: 17.9 s for one
    send), which held a stream's notifications for that long; the service's and the local
    host's queue clients retry within about 2 s."""
    async with relay(endpoint_port(azurite_connection, "Queue")) as queues:
        relayed = through(azurite_connection, Queue=queues.port)
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
                queues.drop_next = True
                started = time.perf_counter()
                await queue.send_message("after a reset")
                took = time.perf_counter() - started
                assert not queues.drop_next  # the fault happened
                messages = [m.content async for m in queue.receive_messages()]
            finally:
                await queue.delete_queue()
    assert messages == ["after a reset"]
    assert took < 3.0, took
