"""Records kept in state, as plain pydantic models (no storage SDK here).

``sync.state.store`` maps these to Table Storage entities; the pure core (planning, matching)
works on them directly.  Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from sync.core.keys import normalise_address

SECRET_REF = re.compile(r"^(env|keyvault):[A-Za-z0-9_.\-]{1,127}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


# Filter operators the scope decides on (``sync.core.mapping.scope.matches``, with the Workbooks
# API's meanings).  Any other (``today``, ``between``, a typo) would match nothing.
FILTER_OPERATORS: tuple[str, ...] = (
    "eq",
    "xeq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "bg",
    "nbg",
    "ct",
    "nct",
    "blank",
    "not_blank",
    "true",
    "false",
)


def _stored(info: ValidationInfo) -> bool:
    """Validating a row read back from storage: what an earlier version accepted (unknown keys,
    which were dropped, and unknown operators, which match nothing) must still load, or one
    mailbox's old policy would stop the whole registry from loading."""
    return bool(info.context and info.context.get("stored"))


def _refuse_unknown(model: type[BaseModel], data: Any, info: ValidationInfo, what: str) -> Any:
    if isinstance(data, dict) and not _stored(info):
        unknown = sorted(str(k) for k in data if k not in model.model_fields)
        if unknown:
            raise ValueError(
                f"unknown {what} key(s) {', '.join(unknown)}; the known keys are "
                f"{', '.join(model.model_fields)}"
            )
    return data


STORED = {"stored": True}  # validation context for rows read from storage


class FilterRule(BaseModel):
    """One per-user scope criterion, applied as a Workbooks filter (field, operator, value)."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(min_length=1, max_length=200)
    op: str = Field(default="eq", min_length=2, max_length=20)
    value: str = Field(default="", max_length=1000)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any, info: ValidationInfo) -> Any:
        return _refuse_unknown(cls, data, info, "filter")

    @field_validator("op")
    @classmethod
    def _op(cls, value: str, info: ValidationInfo) -> str:
        op = value.strip().lower()
        if op not in FILTER_OPERATORS and not _stored(info):
            raise ValueError(
                f"unknown filter operator {value!r}; use one of {', '.join(FILTER_OPERATORS)}"
            )
        return op if op in FILTER_OPERATORS else value


# What deleting a linked item in Outlook does (docs/two-way-sync.md, "Removals"):
# ``unlink`` keeps the Workbooks record and remembers that the user removed it, so no later run
# puts it back; ``restore`` unlinks without remembering (Outlook mirrors My People: the item
# comes back at the next full read); ``delete`` deletes the Workbooks record too.
OutlookDelete = Literal["unlink", "restore", "delete"]


class MailboxPolicy(BaseModel):
    """Per-mailbox behaviour. Defaults follow the Workbooks Outlook Connector."""

    email_policy: Literal["shared", "auto"] = "shared"
    category: str = Field(default="Workbooks", min_length=1, max_length=255)
    create_from_outlook: bool = True
    outlook_delete: OutlookDelete = "unlink"
    conflict_policy: Literal["latest", "workbooks", "outlook"] = "latest"
    mass_change_share: float = Field(default=0.2, gt=0, le=1)
    mass_change_min_items: int = Field(default=10, ge=0)
    people_filters: list[FilterRule] = Field(default_factory=list)
    people_filter_mode: Literal["and", "or"] = "and"
    activity_filters: list[FilterRule] = Field(default_factory=list)
    activity_filter_mode: Literal["and", "or"] = "and"
    include_completed_activities: bool = False
    # Team queues whose records also count as the user's (the login names only the personal
    # queue of each type): Person queue ids and Activity queue ids.
    people_queues: list[int] = Field(default_factory=list, max_length=50)
    activity_queues: list[int] = Field(default_factory=list, max_length=50)
    # A full scoped Workbooks read this often (0 = never): catches records watched or
    # unwatched without their updated_at moving.
    scope_refresh_hours: int = Field(default=24, ge=0, le=24 * 365)
    # How often the timers run each kind of periodic work for this mailbox, in minutes: at a
    # stable point of each interval, its own (``sync.core.schedule``).  A reconcile does what
    # a push does and a push polls To Do, so a push due with a reconcile is not sent twice.
    reconcile_interval_minutes: int = Field(default=30, ge=5, le=24 * 60)
    push_interval_minutes: int = Field(default=120, ge=15, le=24 * 60)
    todo_poll_minutes: int = Field(default=5, ge=2, le=24 * 60)
    calendar_past_days: int = Field(default=30, ge=0, le=3650)
    calendar_future_days: int = Field(default=365, ge=1, le=3650)
    # A recurring Outlook series: one Workbooks meeting for its next occurrence ("next"), or
    # not synced ("skip").  Never one meeting per occurrence (docs/two-way-sync.md).
    recurring_events: Literal["next", "skip"] = "next"
    internal_domains: list[str] = Field(default_factory=list)
    blocklist: list[str] = Field(default_factory=list)
    retro_lookback_days: int = Field(default=90, ge=1, le=3650)
    # None: the mailbox's zone is derived: the Workbooks user's zone (reported at login), else
    # the mailbox's Outlook setting, else UTC (``sync.engine.clients.mailbox_time_zone``).
    time_zone: str | None = Field(default=None, max_length=64)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any, info: ValidationInfo) -> Any:
        return _refuse_unknown(cls, data, info, "policy")

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone, e.g. Europe/London") from None
        return value.strip()

    @field_validator("recurring_events", mode="before")
    @classmethod
    def _recurring(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("internal_domains", "blocklist")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return sorted({v.strip().lower().lstrip("@") for v in value if v.strip()})


def merge_policy(current: MailboxPolicy, changes: Any) -> MailboxPolicy:
    """``current`` with the keys of ``changes`` (a JSON object) replaced, validated as a whole:
    unknown keys and filter operators are refused (``pydantic.ValidationError``); a key set to
    null goes back to its default.  Lists are replaced, not appended to."""
    if not isinstance(changes, dict):
        raise ValueError('the policy is a JSON object, e.g. \'{"email_policy": "auto"}\'')
    merged = current.model_dump(mode="json")
    for key, value in changes.items():
        if value is None and key in MailboxPolicy.model_fields:
            merged.pop(key, None)
        else:
            merged[key] = value
    return MailboxPolicy.model_validate(merged)


class Mailbox(BaseModel):
    """A mailbox that syncs, with its Workbooks identity. Never holds the API key itself,
    only a reference (``env:NAME`` or ``keyvault:secret-name``) resolved at run time."""

    id: str = Field(min_length=3, max_length=320, description="Normalised UPN / SMTP address")
    graph_user: str = Field(default="", max_length=320, description="Graph user id or UPN")
    workbooks_url: str = Field(min_length=8, max_length=500)
    workbooks_user: str = Field(default="", max_length=320)
    api_key_ref: str
    enabled: bool = True
    policy: MailboxPolicy = Field(default_factory=MailboxPolicy)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    disabled_reason: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        value = normalise_address(value)
        if "@" not in value:
            raise ValueError("mailbox id must be an email address / UPN")
        return value

    @field_validator("workbooks_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("expected an absolute http(s) URL, e.g. https://secure.workbooks.com")
        return value.rstrip("/")

    @field_validator("api_key_ref")
    @classmethod
    def _ref(cls, value: str) -> str:
        if not SECRET_REF.match(value):
            raise ValueError(
                "expected a secret reference 'env:VARIABLE' or 'keyvault:secret-name', "
                "never the API key itself"
            )
        return value

    @property
    def graph_id(self) -> str:
        return self.graph_user or self.id


class SubscriptionRecord(BaseModel):
    """A Graph subscription we created. Only a hash of its clientState is stored."""

    subscription_id: str = Field(min_length=1, max_length=128)
    mailbox: str
    stream: str
    resource: str
    client_state_hash: str = Field(description="sha256 hex of the clientState secret")
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    renewed_at: datetime | None = None


class Lease(BaseModel):
    """Proof that ``owner`` holds a stream until ``until``; carries the ETag it was won with."""

    mailbox: str
    stream: str
    owner: str
    until: datetime
    etag: str


class Cursor(BaseModel):
    """Incremental-sync position and health of one (mailbox, stream)."""

    mailbox: str
    stream: str
    delta_link: str | None = None
    watermark: str | None = Field(default=None, description="Workbooks changed-since watermark")
    resync_requested: bool = False
    resync_reason: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str = ""
    consecutive_failures: int = 0
    extra: dict[str, Any] = Field(default_factory=dict)
    etag: str | None = Field(default=None, exclude=True)


class Link(BaseModel):
    """An Outlook item paired with a Workbooks record, and the fields as last synced."""

    mailbox: str
    stream: str  # contacts | events | todo
    outlook_id: str
    workbooks_type: str
    workbooks_id: int
    workbooks_lock_version: int = 0
    outlook_change_key: str = ""
    snapshot: dict[str, Any] = Field(default_factory=dict)
    created_by_service: bool = False
    # Linked by a one-way run that could not write Workbooks' values into Outlook yet (the
    # snapshot holds Outlook's): the next two-way run re-reads the record and settles the pair.
    unsettled: bool = False
    updated_at: datetime = Field(default_factory=utcnow)


IDENTITY_KINDS = ("ambiguous", "duplicate", "removed")  # the kinds of a stream's identity rows


def identity_counts(kinds: Iterable[str]) -> dict[str, int]:
    """How many identity rows of each kind (``IDENTITY_KINDS``) these are, as status shows."""
    out = dict.fromkeys(IDENTITY_KINDS, 0)
    for kind in kinds:
        if kind in out:
            out[kind] += 1
    return out


MAX_CANDIDATES = 20  # candidates kept on an ambiguous item (enough to act on, bounded in state)


class MatchCandidate(BaseModel):
    """A Workbooks record an Outlook item's address belongs to."""

    model_config = ConfigDict(frozen=True)

    workbooks_type: str
    workbooks_id: int
    name: str = ""
    in_scope: bool = False  # in the user's scope (My People and filters) when looked up
    address: str = ""  # the item's address that matched
    via: str = ""  # the Workbooks field it matched, e.g. "main_location[email]"


class IdentityIssue(BaseModel):
    """A shared Outlook item the service neither linked nor created anything for.

    ``ambiguous``: its addresses belong to several records (``candidates``); ``duplicate``: the
    record it stands for is already linked to another item of the mailbox
    (``linked_outlook_id``), found by our stamp, by the record's creation reference or by
    address (``matched_by``)."""

    mailbox: str
    stream: str
    outlook_id: str
    kind: Literal["ambiguous", "duplicate"]
    title: str = ""
    addresses: list[str] = Field(default_factory=list)
    candidates: list[MatchCandidate] = Field(default_factory=list, max_length=MAX_CANDIDATES)
    workbooks_type: str = ""
    workbooks_id: int | None = None
    linked_outlook_id: str = ""
    matched_by: Literal["stamp", "reference", "email"] = "email"
    first_seen: datetime = Field(default_factory=utcnow)
    last_seen: datetime = Field(default_factory=utcnow)


RemovalHow = Literal["deleted", "unshared"]


class Removal(BaseModel):
    """A linked item the user removed from Outlook (deleted, or unshared): its record is kept
    in Workbooks and no run puts it back into this mailbox until the user shares an item for
    it again or an operator restores removed items (resync with ``restore_removed``)."""

    mailbox: str
    stream: str
    workbooks_type: str
    workbooks_id: int
    outlook_id: str = ""
    title: str = ""
    how: RemovalHow = "deleted"
    removed_at: datetime = Field(default_factory=utcnow)


class EmailRecord(BaseModel):
    """A processed sent message: what was written to Workbooks and why."""

    mailbox: str
    message_key: str = Field(description="Graph immutable id")
    internet_message_id: str = ""
    state: Literal["linked", "not_shared", "no_match", "excluded", "pending", "failed"] = "pending"
    workbooks_email_id: int | None = None
    linked: list[str] = Field(default_factory=list, description="'Type:id' of linked records")
    explanation: dict[str, Any] = Field(default_factory=dict)
    subject: str = ""
    sent_at: datetime | None = None
    processed_at: datetime = Field(default_factory=utcnow)


class PendingAddress(BaseModel):
    """A recipient of a shared message that matched nobody yet (for retroactive linking)."""

    address: str
    mailbox: str
    message_key: str
    internet_message_id: str = ""
    sent_at: datetime | None = None
    added_at: datetime = Field(default_factory=utcnow)


class RunRecord(BaseModel):
    """One job run, for status and audit."""

    mailbox: str
    stream: str
    job_id: str
    kind: str
    reason: str = ""
    # Names this run in the logs (the ``run_id`` field of every record it wrote).
    run_id: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    status: Literal["running", "ok", "failed", "skipped", "retry", "stopped"] = "running"
    counts: dict[str, int] = Field(default_factory=dict)
    message: str = ""
    errors: list[str] = Field(default_factory=list)
    # A two-way run's identity rows as it left them ({"ambiguous", "duplicate", "removed"}), for
    # its stream's health row without reading them again; not stored with the run.
    identity_counts: dict[str, int] | None = Field(default=None, exclude=True)


class JobStatus(BaseModel):
    """Progress of a manually requested sync, readable through HTTP and the CLI."""

    job_id: str
    mailbox: str
    kind: str
    state: Literal["queued", "running", "done", "failed"] = "queued"
    requested_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    streams_total: int = 0
    streams_done: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    message: str = ""
