"""Transactions framed by ``sync.state.batch`` against Azurite: the rows they leave are those
``submit_transaction`` leaves, all or nothing, and a failure raises the SDK's own error."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.core.pipeline.transport import AioHttpTransport
from azure.data.tables import TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient

from sync.state.batch import frame, statuses, submit

STAMP = datetime(2030, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


@pytest.fixture
async def tables(azurite_connection: str) -> AsyncIterator[tuple[TableClient, TableClient]]:
    service = TableServiceClient.from_connection_string(
        azurite_connection, transport=AioHttpTransport(use_env_settings=False)
    )
    names = [f"b{uuid.uuid4().hex[:12]}" for _ in range(2)]
    clients = [service.get_table_client(n) for n in names]
    for c in clients:
        await c.create_table()
    try:
        yield clients[0], clients[1]
    finally:
        for n in names:
            await service.delete_table(n)
        await service.close()


def _ops() -> list[Any]:
    return [
        ("create", {"PartitionKey": "p", "RowKey": "a%b'c é", "n": 5, "d": STAMP}),
        ("upsert", {"PartitionKey": "p", "RowKey": "u", "s": "x" * 300, "f": 1.5, "b": True}),
        ("upsert", {"PartitionKey": "p", "RowKey": "m", "s": "merged"}, {"mode": UpdateMode.MERGE}),
        (
            "upsert",
            {"PartitionKey": "p", "RowKey": "r", "s": "line\r\n--x"},
            {"mode": UpdateMode.REPLACE},
        ),
        ("delete", {"PartitionKey": "p", "RowKey": "gone"}),
    ]


def _count_batches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ``$batch`` requests sent from now on (to tell the framed path from the SDK's)."""
    sent: list[str] = []
    original = AioHttpTransport.send

    async def send(self: AioHttpTransport, request: Any, **kwargs: Any) -> Any:
        if str(request.url).endswith("/$batch"):
            sent.append(str(request.headers.get("Content-Type", "")))
        return await original(self, request, **kwargs)

    monkeypatch.setattr(AioHttpTransport, "send", send)
    return sent


async def _rows(client: TableClient) -> list[dict[str, Any]]:
    rows = [dict(e) async for e in client.list_entities()]
    return sorted(rows, key=lambda r: r["RowKey"])


async def test_framed_transaction_leaves_what_the_sdk_leaves(
    tables: tuple[TableClient, TableClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, sdks = tables
    for client in tables:
        await client.upsert_entity({"PartitionKey": "p", "RowKey": "gone"})
        await client.upsert_entity({"PartitionKey": "p", "RowKey": "m", "kept": 1})
    sent = _count_batches(monkeypatch)
    await submit(ours, _ops())
    assert len(sent) == 1  # one request, framed here: no second try through the SDK
    await sdks.submit_transaction(_ops())
    mine, theirs = await _rows(ours), await _rows(sdks)
    assert mine == theirs
    assert [r["RowKey"] for r in mine] == ["a%b'c é", "m", "r", "u"]
    assert mine[0]["d"] == STAMP
    assert mine[1] == {"PartitionKey": "p", "RowKey": "m", "kept": 1, "s": "merged"}


async def test_a_failing_operation_applies_nothing_and_raises_the_sdks_error(
    tables: tuple[TableClient, TableClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, _ = tables
    sent = _count_batches(monkeypatch)
    await ours.upsert_entity({"PartitionKey": "p", "RowKey": "taken", "v": 1})
    ops: list[Any] = [
        ("upsert", {"PartitionKey": "p", "RowKey": "first", "v": 2}),
        ("create", {"PartitionKey": "p", "RowKey": "taken", "v": 3}),
    ]
    with pytest.raises(TableTransactionError) as failed:
        await submit(ours, ops)
    assert failed.value.index == 1
    assert getattr(failed.value, "error_code", "") == "EntityAlreadyExists"
    assert len(sent) == 2  # framed here, then again through the SDK for its error
    rows = await _rows(ours)
    assert [(r["RowKey"], r["v"]) for r in rows] == [("taken", 1)]  # "first" was not written


def test_framing_and_status_reading() -> None:
    class Req:
        def __init__(self, method: str, url: str, body: str) -> None:
            self.method, self.url, self.content = method, url, body
            self.headers = {"Content-Type": "application/json", "Content-Length": "999"}

    boundary, body = frame([Req("PUT", "http://h/t(PartitionKey='p',RowKey='r')", '{"é": 1}')])
    text = body.decode("utf-8")
    assert text.startswith(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary=changeset_")
    assert "PUT http://h/t(PartitionKey='p',RowKey='r') HTTP/1.1\r\n" in text
    assert "Content-Length: 9\r\n" in text and "999" not in text  # bytes, not characters
    assert text.endswith(f"--{boundary}--\r\n")
    answer = b"--r\r\nHTTP/1.1 201 Created\r\nETag: x\r\n\r\n--r\r\nHTTP/1.1 204 No Content\r\n"
    assert statuses(answer) == [201, 204]
    assert statuses(b'{"value":"HTTP/1.1 500 in a body"}') == []
