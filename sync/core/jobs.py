"""The job contract: the one message shape that travels on the jobs queue.

A job is a *reference*, never a payload: which mailbox, which stream, what kind of work and why.
The worker re-reads everything else (delta links, links, records) from state and the APIs, which
is what makes duplicated or replayed jobs harmless.  Messages are JSON, base64-encoded as the
Functions queue trigger expects (a non-base64 message is silently dead-lettered by the host), and
kept far below the 64 KiB queue limit (48 KiB of raw payload once base64-encoded).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_JOB_BYTES = 4096  # a job is a few hundred bytes; anything near this is a bug, not data


class Stream(StrEnum):
    """A unit of incremental sync inside one mailbox, each with its own cursor and lease."""

    SENT = "sent"  # Outlook sent items -> Workbooks emails
    CONTACTS = "contacts"  # Outlook contacts <-> Workbooks people
    EVENTS = "events"  # Outlook calendar <-> Workbooks meetings
    TODO = "todo"  # Outlook To Do <-> Workbooks tasks / phone calls
    PEOPLE = "people"  # Workbooks people changes (feeds contacts + retroactive linking)
    ACTIVITIES = "activities"  # Workbooks activity changes
    SUBSCRIPTIONS = "subscriptions"  # Graph subscription upkeep for the mailbox
    ALL = "all"  # every stream: a manual sync that fans out per stream


class JobKind(StrEnum):
    DIRTY = "dirty"  # a notification said the Outlook stream changed
    PUSH = "push"  # timer: Outlook -> Workbooks
    RECONCILE = "reconcile"  # timer: both directions + retroactive linking
    RESYNC = "resync"  # full re-enumeration (expired delta, missed, manual)
    LIFECYCLE = "lifecycle"  # Graph lifecycle event for a subscription
    RENEW = "renew"  # subscription renewal sweep
    MANUAL = "manual"  # operator-requested sync (carries a job id for progress)
    ATTACH = "attach"  # attach one message to one record on request


class Job(BaseModel):
    """One unit of queued work. Frozen so a handler cannot mutate what it was given."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    v: int = Field(default=1, description="Contract version; bump on incompatible change.")
    mailbox: str = Field(min_length=3, max_length=320)
    stream: Stream
    kind: JobKind
    reason: str = Field(default="", max_length=200)
    job_id: str = Field(default_factory=lambda: uuid.uuid4().hex, max_length=64)
    subscription_id: str | None = Field(default=None, max_length=128)
    lifecycle_event: str | None = Field(default=None, max_length=64)
    mode: str | None = Field(default=None, max_length=32, description="push | full | resync")
    args: dict[str, str] = Field(default_factory=dict, description="Small extra arguments.")
    enqueued_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    marker_etag: str | None = Field(
        default=None,
        max_length=256,
        description="ETag of the 'job pending' marker its sender set, so the run takes the "
        "marker with one conditional delete (stale or absent: the run reads it instead).",
    )
    attempt: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description="Times this job was re-queued after a transient failure (RetryLater); its "
        "back-off grows with it (sync.core.backoff). 0 for a new job.",
    )

    @field_validator("mailbox")
    @classmethod
    def _mailbox(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("args")
    @classmethod
    def _args(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 16 or any(len(k) > 64 or len(v) > 1024 for k, v in value.items()):
            raise ValueError("job args must stay small: at most 16 keys, values up to 1 KiB")
        return value


class JobDecodeError(ValueError):
    """A queue message is not a valid job (not base64, not JSON, or not the contract)."""


def job_payload(job: Job) -> str:
    """The job as JSON text, refusing anything that is not a small reference."""
    text = job.model_dump_json()
    if len(text.encode("utf-8")) > MAX_JOB_BYTES:
        raise ValueError(f"job is {len(text)} bytes; jobs are references and must stay small")
    return text


def encode_job(job: Job) -> str:
    """JSON -> base64 text, as the Functions queue trigger and queue output expect."""
    return base64.b64encode(job_payload(job).encode("utf-8")).decode("ascii")


def decode_job(body: str | bytes) -> Job:
    """Accept either the base64 text on the wire or the decoded JSON the trigger hands over."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    text = data.strip()
    if not text.startswith(b"{"):
        try:
            text = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise JobDecodeError("queue message is neither JSON nor base64") from exc
    try:
        payload: Any = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JobDecodeError("queue message is not valid JSON") from exc
    if not isinstance(payload, dict):
        raise JobDecodeError("queue message must be a JSON object")
    try:
        return Job.model_validate(payload)
    except ValidationError as exc:
        raise JobDecodeError(f"queue message is not a job: {exc.error_count()} problem(s)") from exc
