"""The jobs queue against Azurite: base64 on the wire, poison inspection, requeue, purge."""

from __future__ import annotations

import base64
import json
from typing import Any

from sync.core.jobs import Job, JobKind, Stream


async def test_jobs_are_base64_json_on_the_wire(job_queue: Any) -> None:
    job = Job(mailbox="ann@example.com", stream=Stream.SENT, kind=JobKind.DIRTY, reason="t")
    await job_queue.send(job)
    (raw,) = await job_queue._raw.peek_messages()
    payload = json.loads(base64.b64decode(raw.content, validate=True))
    assert payload["job_id"] == job.job_id and payload["kind"] == "dirty"
    assert len(raw.content) < 1024


async def test_poison_list_requeue_and_purge(job_queue: Any) -> None:
    good = Job(mailbox="ann@example.com", stream=Stream.CONTACTS, kind=JobKind.PUSH)
    # What the host moves to -poison: the original base64 body, and once a non-base64 body.
    await job_queue._poison.send_message(base64.b64encode(good.model_dump_json().encode()).decode())
    await job_queue._poison.send_message("{not base64 at all")
    assert await job_queue.poison_depth() == 2
    listed = await job_queue.peek_poison()
    assert sorted((m.job.job_id if m.job else m.problem[:20]) for m in listed) == sorted(
        [good.job_id, "queue message is not"]
    )
    assert await job_queue.requeue_poison() == 2
    assert await job_queue.poison_depth() == 0
    (first, second) = await job_queue._raw.peek_messages(max_messages=2)
    assert base64.b64decode(first.content) == good.model_dump_json().encode()
    assert (
        second.content == "{not base64 at all"
    )  # requeued unchanged, the host will poison it again
    await job_queue._poison.send_message("x")
    assert await job_queue.purge_poison() == 1
    assert await job_queue.poison_depth() == 0


def test_jobs_queue_setting_leaves_room_for_the_poison_queue_name() -> None:
    # Azure queue names have at most 63 characters; the poison queue is the name + "-poison".
    import pytest
    from pydantic import ValidationError

    from sync.settings import AppSettings

    assert AppSettings(jobs_queue="q" * 56).jobs_queue == "q" * 56
    with pytest.raises(ValidationError, match="3-56 lowercase"):
        AppSettings(jobs_queue="q" * 57)
