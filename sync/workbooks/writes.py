"""The batch writer: chunks of at most ``batch_size`` objects, per-object results in request
order, stale ``lock_version`` as ``Conflict`` (workbooks-api.md §3)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sync.core.errors import InvalidRequest, SyncError

from . import errors
from .client import WorkbooksClient
from .wire import FormPairs, chunked, encode_square, working_set

Action = Literal["create", "update", "delete"]
_WIRE_METHOD = {"create": "POST", "update": "PUT", "delete": "DELETE"}
LOOKAHEAD_CHUNKS = 2  # chunks built ahead of the in-flight cap, waiting for a free slot


@dataclass(frozen=True)
class WriteOp:
    """One object of a batch.  ``fields`` use readable names (``main_location[email]``);
    ``None`` clears a field; fields not given are left alone."""

    action: Action
    fields: Mapping[str, object] = field(default_factory=dict)
    id: int = 0
    lock_version: int = 0

    @classmethod
    def create(cls, fields: Mapping[str, object]) -> WriteOp:
        return cls("create", fields)

    @classmethod
    def update(cls, record_id: int, lock_version: int, fields: Mapping[str, object]) -> WriteOp:
        return cls("update", fields, record_id, lock_version)

    @classmethod
    def delete(cls, record_id: int, lock_version: int) -> WriteOp:
        return cls("delete", {}, record_id, lock_version)


@dataclass(frozen=True)
class WriteResult:
    """What happened to one object: new id/lock_version and changed values, or why not."""

    op: WriteOp
    ok: bool
    id: int | None = None
    lock_version: int | None = None
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    error: SyncError | None = None  # Conflict, NotFound, InvalidRequest, RetryLater, ...


def batch_params(ops: Sequence[WriteOp]) -> FormPairs:
    """Working-set filter + full square + per-object transactions (one bad object must not
    sink the other 99)."""
    rows = [(_WIRE_METHOD[op.action], op.id, op.lock_version, dict(op.fields)) for op in ops]
    return [
        *working_set(op.id for op in ops),
        ("_per_object_transactions", "true"),
        *encode_square(rows),
    ]


async def write_batch(
    client: WorkbooksClient, endpoint: str, ops: Sequence[WriteOp]
) -> list[WriteResult]:
    """Write ``ops`` in chunks (concurrently, under the client's in-flight cap).

    Never raises for a failed chunk or object: each result carries its own error, so ids of
    records created by the chunks that did succeed are never lost.
    """
    _check(ops)
    chunks = chunked(list(ops), client.config.batch_size)
    # A chunk is built only shortly before it can be sent: building all of them up front
    # delays the first request, and memory would grow with the batch.  But a few more than the
    # in-flight cap are built ahead and wait for a slot, so a slot freed by a reply is taken at
    # once while that reply is decoded and the next chunk is built.
    prepared = asyncio.Semaphore(client.config.max_concurrency + LOOKAHEAD_CHUNKS)

    async def send(chunk: Sequence[WriteOp]) -> list[WriteResult]:
        async with prepared:
            return await _write_chunk(client, endpoint, chunk)

    results = await asyncio.gather(*(send(c) for c in chunks))
    return [r for chunk in results for r in chunk]


def _check(ops: Sequence[WriteOp]) -> None:
    """Two writes to one record in flight could apply out of order (§5)."""
    ids = [op.id for op in ops if op.action != "create"]
    if len(ids) != len(set(ids)):
        raise InvalidRequest("a batch names the same record twice", source=errors.SOURCE)
    bad = [op for op in ops if (op.action == "create") != (op.id == 0)]
    if bad:
        raise InvalidRequest(
            "creates need id 0; updates and deletes a real id", source=errors.SOURCE
        )


async def _write_chunk(
    client: WorkbooksClient, endpoint: str, ops: Sequence[WriteOp]
) -> list[WriteResult]:
    try:
        body = await client.put(endpoint, batch_params(ops))
    except SyncError as exc:
        return [WriteResult(op, False, op.id or None, op.lock_version, error=exc) for op in ops]
    objects = body.get("affected_objects")
    infos = body.get("affected_object_information")
    if not isinstance(objects, list) or not isinstance(infos, list) or len(infos) != len(ops):
        refused = errors.classify_texts(errors.failure_texts(body), f"PUT {endpoint} refused")
        return [WriteResult(op, False, op.id or None, op.lock_version, error=refused) for op in ops]
    return [
        _result(op, obj if isinstance(obj, dict) else {}, info, endpoint)
        for op, obj, info in zip(
            ops, objects + [{}] * (len(ops) - len(objects)), infos, strict=True
        )
    ]


def _result(op: WriteOp, obj: dict[str, Any], info: Any, endpoint: str) -> WriteResult:
    info = info if isinstance(info, dict) else {}
    raw_errors = info.get("errors")
    by_field = (
        {
            str(k): [str(m) for m in (v if isinstance(v, list) else [v])]
            for k, v in raw_errors.items()
        }
        if isinstance(raw_errors, dict)
        else {}
    )
    ok = bool(info.get("success", True)) and not by_field
    record_id = obj.get("id")
    lock = obj.get("lock_version")
    result_id = int(record_id) if isinstance(record_id, int | str) and str(record_id) else None
    if ok:
        return WriteResult(op, True, result_id, None if lock is None else int(lock), obj)
    texts = [m for messages in by_field.values() for m in messages]
    error = errors.classify_texts(texts, f"{op.action} in {endpoint} failed")
    return WriteResult(
        op,
        False,
        result_id or op.id or None,
        None if lock is None else int(lock),
        obj,
        by_field,
        error,
    )
