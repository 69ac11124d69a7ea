"""The jobs queue: one contract (``sync.core.jobs.Job``), base64 on the wire, and its poison
queue.  Producers outside the Functions host (webhook via this module, CLI, local host) all go
through ``JobQueue`` so every message is encoded the way the queue trigger expects."""

from __future__ import annotations

import base64
import binascii
import contextlib
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from sync.core.jobs import Job, JobDecodeError, decode_job, job_payload
from sync.state.tables import POISON_SUFFIX


@dataclass(frozen=True)
class PoisonMessage:
    id: str
    pop_receipt: str | None
    dequeue_count: int
    inserted_on: str
    body: str  # decoded text
    job: Job | None  # None if the body is not a valid job
    problem: str


class JobQueue:
    """Send jobs; inspect, requeue or purge the poison queue."""

    def __init__(self, service: Any, name: str) -> None:
        from azure.storage.queue import TextBase64EncodePolicy

        self._service = service
        self.name = name
        self.poison_name = f"{name}{POISON_SUFFIX}"
        # Policies must be given per queue client: QueueServiceClient does not pass its own on.
        # Reads stay raw (no decode policy): we decode base64 ourselves, because the SDK's
        # decoder crashes on a non-base64 message instead of raising DecodeError.
        self._queue = service.get_queue_client(name, message_encode_policy=TextBase64EncodePolicy())
        self._raw = service.get_queue_client(name)
        self._poison = service.get_queue_client(self.poison_name)

    async def ensure(self) -> None:
        for client in (self._queue, self._poison):
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()

    async def send(self, job: Job, *, delay_seconds: int | None = None) -> None:
        # The queue client's TextBase64EncodePolicy does the base64 step.
        await self._queue.send_message(job_payload(job), visibility_timeout=delay_seconds)

    async def depth(self) -> int:
        props = await self._queue.get_queue_properties()
        return int(props.approximate_message_count or 0)

    async def poison_depth(self) -> int:
        try:
            props = await self._poison.get_queue_properties()
        except ResourceNotFoundError:
            return 0
        return int(props.approximate_message_count or 0)

    async def peek_poison(self, limit: int = 32) -> list[PoisonMessage]:
        out: list[PoisonMessage] = []
        try:
            messages = await self._poison.peek_messages(max_messages=min(limit, 32))
        except ResourceNotFoundError:
            return []
        for m in messages:
            out.append(_poison(m))
        return out

    async def requeue_poison(self, limit: int = 1000) -> int:
        """Move poison messages back to the jobs queue (after fixing what poisoned them)."""
        moved = 0
        while moved < limit:
            batch = [
                m
                async for m in self._poison.receive_messages(max_messages=32, visibility_timeout=60)
            ]
            if not batch:
                break
            for m in batch:
                # Raw in, raw out: the body is already base64 as the trigger expects.
                await self._raw.send_message(_text(m.content))
                await self._poison.delete_message(m)
                moved += 1
        return moved

    async def purge_poison(self) -> int:
        count = await self.poison_depth()
        try:
            await self._poison.clear_messages()
        except ResourceNotFoundError:
            return 0
        return count

    async def close(self) -> None:
        await self._queue.close()
        await self._raw.close()
        await self._poison.close()
        await self._service.close()


def _text(content: Any) -> str:
    if isinstance(content, bytes):
        return content.decode("utf-8", "replace")
    return str(content)


def _poison(m: Any) -> PoisonMessage:
    raw = _text(m.content)
    job: Job | None = None
    problem = ""
    try:
        body = b64_text(raw)
    except JobDecodeError as exc:
        body, problem = raw, str(exc)
    else:
        try:
            job = decode_job(body)
        except JobDecodeError as exc:
            problem = str(exc)
    return PoisonMessage(
        id=str(m.id),
        pop_receipt=getattr(m, "pop_receipt", None),
        dequeue_count=int(getattr(m, "dequeue_count", 0) or 0),
        inserted_on=str(getattr(m, "inserted_on", "")),
        body=body[:2000],
        job=job,
        problem=problem,
    )


def b64_text(body: str) -> str:
    """Decode a raw base64 queue body to text (for hosts reading without a decode policy)."""
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise JobDecodeError("queue message is not base64 text") from exc
