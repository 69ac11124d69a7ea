"""In-memory state of the sandbox: records, sessions, queues, watch sets, clock and fault knobs.

Records are flat dicts of Python values.  Values other views need (``watched`` per caller,
``main_location[...]`` from the Contact Details row, ``assigned_to_name``) are computed on read by
``field_value`` so they can never drift from the rows they come from.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from . import records
from .config import RUNTIME_FIELDS, SandboxConfig, SimUser
from .types import (
    ACTIVITY_PARTS,
    ACTIVITY_UNION,
    EMAIL,
    LINKED_IDS,
    LINKED_TYPES,
    LOCATION_FIELDS,
    PICKLIST_ENTRIES_PATH,
    PICKLISTS_PATH,
    QUEUE_ENDPOINTS,
    RecordType,
    Schema,
    build_schema,
)
from .values import VarDateTime, format_date, format_datetime
from .webhooks import WebhookHub

Record = dict[str, Any]
_PLAIN = frozenset({str, int, bool, type(None)})  # JSON-ready as stored
# ``owner[person_name]`` -> (the record's user-id attribute, the user's attribute)
_USER_COLUMNS = {
    f"{relation}[{attr}]": (key, attr)
    for relation, key in (
        ("owner", "owner_id"),
        ("updated_by_user", "updated_by"),
        ("created_by_user", "created_by"),
    )
    for attr in ("person_name", "login_name")
}


class SimClock:
    """Real UTC time, optionally frozen or shifted, always at one-second resolution."""

    def __init__(self) -> None:
        self.frozen: datetime | None = None
        self.offset = timedelta()
        self._second: tuple[float, datetime] | None = None  # last (whole second, as datetime)

    def now(self) -> datetime:
        if self.frozen is not None:
            return self.frozen.replace(microsecond=0)
        # A float clock read is several times cheaper than ``datetime.now``, and a batch asks
        # for the time a few times per object: reuse the last whole second while the time is
        # still inside it (datetimes are immutable, so sharing one is safe).
        stamp = time.time() + self.offset.total_seconds()
        second = self._second
        if second is not None and second[0] <= stamp < second[0] + 1.0:
            return second[1]
        whole = float(math.floor(stamp))
        value = datetime.fromtimestamp(whole, UTC)
        self._second = (whole, value)
        return value

    def advance(self, seconds: float) -> None:
        if self.frozen is not None:
            self.frozen += timedelta(seconds=seconds)
        else:
            self.offset += timedelta(seconds=seconds)


@dataclass
class Session:
    session_id: str = field(repr=False)
    token: str = field(repr=False)  # the authenticity token
    user: SimUser
    last_used: datetime
    defaults: dict[str, str] = field(default_factory=dict)
    requests: int = 0


@dataclass
class Faults:
    """Test knobs: throttling modes, injected statuses, forced conflicts, latency."""

    throttle_next: int = 0
    throttle_every: int | None = None
    fail_next: list[int] = field(default_factory=list)
    force_conflicts: int = 0
    latency_ms: float = 0.0
    webhook_duplicate: bool = False  # every delivery is sent twice
    webhook_reorder_next: int = 0  # hold the next n deliveries, then send them newest first
    webhook_delay_ms: float = 0.0  # wait before the first attempt of each delivery


@dataclass
class ReadContext:
    """Who is asking, how values must be formatted, and how attribute names are checked."""

    user: SimUser
    datetime_format: str | None = None
    strict: bool = False  # unknown attribute names are errors (_strict_attribute_checking)
    check_filterable: bool = False  # filters on non-filterable fields are errors


class SandboxState:
    """Everything the simulated service knows.  ``reset()`` returns it to a seeded start."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.schema: Schema = build_schema(config)
        self.types: dict[str, RecordType] = self.schema.types
        self.clock = SimClock()
        self.webhooks = WebhookHub(self)
        self.reset()

    def reset(self) -> None:
        self.tables: dict[str, dict[int, Record]] = {}
        self._ensure_tables()
        self.sequences: Counter[str] = Counter()
        self.sessions: dict[str, Session] = {}
        self.watched: set[tuple[int, str, int]] = set()
        self.party_owner: dict[int, tuple[str, int]] = {}  # party id -> (class, record id)
        self.faults = Faults(latency_ms=self.config.latency_ms)
        self.stats: Counter[str] = Counter()  # "VERB path" -> requests answered
        self.request_count: Counter[str] = Counter()  # per credential, for every-k-th throttling
        self.in_flight: Counter[str] = Counter()
        self.peak_in_flight = 0
        self.buckets: dict[str, tuple[float, float]] = {}  # credential -> (tokens, stamp)
        self.queues = self._build_queues()
        self._my_queues: dict[int, dict[str, int]] = {}
        self.webhooks.reset()
        self._seed_picklists()

    def _ensure_tables(self) -> None:
        """A table per writable type, and the email-link table whatever the strategy (links
        written through the email itself land there too)."""
        for endpoint in [*self.types, self.schema.link_type.endpoint]:
            self.tables.setdefault(endpoint, {})

    def configure(self, changes: dict[str, Any]) -> SandboxConfig:
        """Change behaviour on a running sandbox (``RUNTIME_FIELDS`` only); records stay."""
        refused = sorted(set(changes) - RUNTIME_FIELDS)
        if refused:
            raise ValueError(f"not changeable at run time: {', '.join(refused)}")
        self.config = SandboxConfig.model_validate({**self.config.model_dump(), **changes})
        self.schema = build_schema(self.config)
        self.types = self.schema.types
        self._ensure_tables()
        self._seed_picklists()
        return self.config

    def _seed_picklists(self) -> None:
        """The picklists of the schema as ``admin/picklists`` / ``admin/picklist_entries``
        rows, rebuilt whenever the configuration changes."""
        now = self.clock.now()
        lists, entries = self.tables[PICKLISTS_PATH], self.tables[PICKLIST_ENTRIES_PATH]
        lists.clear()
        entries.clear()
        base = {"lock_version": 0, "is_deleted": False, "created_at": now, "updated_at": now}
        entry_id = 0
        for picklist in self.schema.picklists.values():
            lists[picklist.picklist_id] = {
                "id": picklist.picklist_id,
                **base,
                "type": "Private::Picklist",
                "name": picklist.name,
                "descriptor": picklist.name,
            }
            for order, value in enumerate(picklist.values):
                entry_id += 1
                entries[entry_id] = {
                    "id": entry_id,
                    **base,
                    "type": "Private::PicklistEntry",
                    "picklist_id": picklist.picklist_id,
                    "value": value,
                    "display_order": order + 1,
                    "descriptor": value,
                }
        self.sequences["picklist"] = len(lists)
        self.sequences["picklist_entry"] = entry_id

    def picklist_values(self, name: str) -> set[str]:
        """The live entries of a picklist (clients may add entries through the API)."""
        picklist = self.schema.picklists[name]
        return {
            str(e["value"])
            for e in self.tables[PICKLIST_ENTRIES_PATH].values()
            if e.get("picklist_id") == picklist.picklist_id and not e.get("is_deleted")
        }

    # ------------------------------------------------------------ users and queues

    def _build_queues(self) -> dict[str, list[Record]]:
        """Per queue class: Unassigned (id 1) and one personal queue per user (ids 2..)."""
        queues: dict[str, list[Record]] = {}
        for qclass in QUEUE_ENDPOINTS.values():
            rows = [{"id": 1, "name": "Unassigned", "queue_type": "Unassigned", "user_id": None}]
            for offset, user in enumerate(self.config.users):
                rows.append(
                    {
                        "id": offset + 2,
                        "name": user.person_name,
                        "queue_type": "User",
                        "user_id": user.user_id,
                    }
                )
            for row in rows:
                row.update(lock_version=0, is_deleted=False, type=qclass)
            queues[qclass] = rows
        return queues

    def my_queues(self, user: SimUser) -> dict[str, int]:
        cached = self._my_queues.get(user.user_id)
        if cached is None:
            cached = {
                q: next(r["id"] for r in rows if r["user_id"] == user.user_id)
                for q, rows in self.queues.items()
            }
            self._my_queues[user.user_id] = cached
        return dict(cached)

    def my_queue(self, user: SimUser, qclass: str) -> int:
        """``my_queues(user)[qclass]`` without copying the mapping."""
        cached = self._my_queues.get(user.user_id)
        return cached[qclass] if cached is not None else self.my_queues(user)[qclass]

    def user_by_id(self, user_id: int | None) -> SimUser | None:
        return next((u for u in self.config.users if u.user_id == user_id), None)

    def user_by_key(self, api_key: str) -> SimUser | None:
        return next(
            (u for u in self.config.users if secrets.compare_digest(u.api_key, api_key)), None
        )

    def queue_name(self, qclass: str | None, queue_id: object) -> str | None:
        for row in self.queues.get(qclass or "", ()):
            if row["id"] == queue_id:
                name: str | None = row["name"]
                return name
        return None

    # ------------------------------------------------------------ sessions

    def new_session(self, user: SimUser, defaults: dict[str, str]) -> Session:
        session = Session(
            secrets.token_hex(16), secrets.token_hex(20), user, self.clock.now(), defaults
        )
        self.sessions[session.session_id] = session
        return session

    def live_session(self, session_id: str | None) -> Session | None:
        """The session if it exists and has not been idle too long (sandbox clock)."""
        session = self.sessions.get(session_id or "")
        if session is None:
            return None
        idle = (self.clock.now() - session.last_used).total_seconds()
        if idle > self.config.session_idle_seconds:
            self.sessions.pop(session.session_id, None)
            return None
        return session

    def rotate(self, session: Session) -> None:
        """Give the session a new id; the old one keeps working (in-flight requests use it)."""
        session.session_id = secrets.token_hex(16)
        self.sessions[session.session_id] = session

    # ------------------------------------------------------------ records

    def next_id(self, sequence: str) -> int:
        self.sequences[sequence] += 1
        return self.sequences[sequence]

    def rows(self, endpoint: str) -> list[tuple[RecordType, Record]]:
        """Every stored row of an endpoint (the activities union merges tasks and meetings)."""
        qclass = QUEUE_ENDPOINTS.get(endpoint)
        if qclass is not None:
            view = self.schema.views[endpoint]
            return [(view, r) for r in self.queues[qclass]]
        parts = ACTIVITY_PARTS if endpoint == ACTIVITY_UNION else (endpoint,)
        result = [(self.types[p], r) for p in parts for r in self.tables[p].values()]
        if len(parts) > 1:
            result.sort(key=lambda pair: pair[1]["id"])
        return result

    def find(self, endpoint: str, record_id: int) -> Record | None:
        return self.tables.get(endpoint, {}).get(record_id)

    def location_row(self, record: Record, location: str) -> Record | None:
        row_id = record.get(f"{location}_id")
        return None if row_id is None else self.tables["crm/party_locations"].get(row_id)

    def is_watched(self, user: SimUser, rtype: RecordType, record: Record) -> bool:
        return (user.user_id, rtype.class_name, record["id"]) in self.watched

    def field_value(self, rtype: RecordType, record: Record, name: str, ctx: ReadContext) -> Any:
        """A row's value of one (possibly computed or nested) field, as a Python value."""
        if name in record:
            return record[name]
        if name == "watched":
            return self.is_watched(ctx.user, rtype, record)
        if name == "assigned_to_name":
            return self.queue_name(rtype.queue_class, record.get("assigned_to"))
        for location in rtype.locations:
            if name.startswith(f"{location}[") and name.endswith("]"):
                row = self.location_row(record, location)
                return None if row is None else row.get(name[len(location) + 1 : -1])
        return self._derived(rtype, record, name)

    def _derived(self, rtype: RecordType, record: Record, name: str) -> Any:
        for base in rtype.var_dates:
            value = record.get(base)
            if name == f"{base}_date":
                return value.when.date() if isinstance(value, VarDateTime) else None
            if name == f"{base}_datetime":
                return value.when if isinstance(value, VarDateTime) else None
        user_column = _USER_COLUMNS.get(name)
        if user_column is not None:
            user = self.user_by_id(record.get(user_column[0]))
            return None if user is None else getattr(user, user_column[1])
        if name in ("party[type]", "party[id]", "party[name]"):
            return self._party(record, name)
        if name in (LINKED_TYPES, LINKED_IDS) and rtype.class_name == EMAIL:
            return records.linked_value(self, record, name)
        return None

    def owner_deleted(self, location: Record) -> bool:
        """Whether the record owning this Contact Details row is deleted."""
        owner = self.party_owner.get(location.get("party_id") or -1)
        if owner is None:
            return False
        rtype = self.schema.by_class.get(owner[0])
        row = self.find(rtype.endpoint, owner[1]) if rtype else None
        return bool(row and row.get("is_deleted"))

    def _party(self, record: Record, name: str) -> Any:
        """[INF] party_locations columns naming the owning Person / Organisation / Lead."""
        owner = self.party_owner.get(record.get("party_id") or -1)
        if owner is None:
            return None
        if name == "party[type]":
            return owner[0]
        if name == "party[id]":
            return owner[1]
        endpoint = {
            "Private::Crm::Person": "crm/people",
            "Private::Crm::Organisation": "crm/organisations",
        }.get(owner[0])
        row = self.find(endpoint, owner[1]) if endpoint else None
        return None if row is None else row.get("name")

    def output_row(
        self,
        rtype: RecordType,
        record: Record,
        ctx: ReadContext,
        columns: list[str] | None,
        *,
        fresh: bool = False,
    ) -> dict[str, Any]:
        """The JSON form of a row: exactly ``columns`` when given, else every known key.

        ``fresh``: the row was just built from wire text, so every value but the timestamps is
        JSON-ready already (the caller knows; looking at each value costs more than the rest).
        """
        if columns is None:
            return self._full_row(rtype, record, ctx, fresh)
        return {n: self.wire_value(self.field_value(rtype, record, n, ctx), ctx) for n in columns}

    def _full_row(
        self, rtype: RecordType, record: Record, ctx: ReadContext, fresh: bool
    ) -> dict[str, Any]:
        out = record.copy()  # same key order; only non-JSON values and private keys change
        if fresh:
            out["created_at"] = format_datetime(record["created_at"], ctx.datetime_format)
            out["updated_at"] = format_datetime(record["updated_at"], ctx.datetime_format)
        else:
            for k, v in record.items():
                if k[0] == "_":
                    del out[k]
                elif type(v) not in _PLAIN:
                    out[k] = (
                        format_datetime(v, ctx.datetime_format)
                        if type(v) is datetime
                        else self.wire_value(v, ctx)
                    )
        out["watched"] = (ctx.user.user_id, rtype.class_name, record["id"]) in self.watched
        if rtype.queue_class:
            out["assigned_to_name"] = self.queue_name(rtype.queue_class, record.get("assigned_to"))
        if rtype.locations:
            locations = self.tables["crm/party_locations"]
            for id_key, blank, columns in rtype.location_columns:
                row_id = record.get(id_key)
                row = None if row_id is None else locations.get(row_id)
                if row is not None:
                    # Every column, None unless the row has it: a row holds few of them.
                    out.update(blank)
                    for name, value in row.items():
                        column = columns.get(name)
                        if column is not None:
                            out[column] = value
        for base in rtype.var_dates:
            if base in record:
                for name in (f"{base}_date", f"{base}_datetime"):
                    out[name] = self.wire_value(self._derived(rtype, record, name), ctx)
        if LINKED_IDS in rtype.columns:  # email links written through the email (strategy)
            for name in (LINKED_TYPES, LINKED_IDS):
                out[name] = records.linked_value(self, record, name)
        return out

    def all_columns(self, rtype: RecordType, record: Record) -> list[str]:
        names = [k for k in record if not k.startswith("_")]
        names += ["watched"]
        if rtype.queue_class:
            names.append("assigned_to_name")
        for location in rtype.locations:
            if record.get(f"{location}_id") is not None:
                names += [f"{location}[{f}]" for f in LOCATION_FIELDS]
        for base in rtype.var_dates:
            if base in record:
                names += [f"{base}_date", f"{base}_datetime"]
        return names

    def wire_value(self, value: Any, ctx: ReadContext) -> Any:
        if isinstance(value, datetime):
            return format_datetime(value, ctx.datetime_format)
        if isinstance(value, VarDateTime):
            return value.wire()
        if isinstance(value, date):
            return format_date(value)
        return value

    # ------------------------------------------------------------ background jobs

    def tick(self) -> None:
        """Run the due background work: emails in status SEND become SENT after a delay."""
        now = self.clock.now()
        for email in self.tables["email/emails"].values():
            due = email.get("_send_due")
            if email.get("status") == "SEND" and due is not None and due <= now:
                email.update(status="SENT", updated_at=due, _send_due=None)
                email["lock_version"] += 1

    # ------------------------------------------------------------ throttling

    def take_token(self, credential: str) -> bool:
        """Token bucket per credential; True if the request may proceed."""
        rate = self.config.rate_per_second
        if rate is None:
            return True
        tokens, stamp = self.buckets.get(credential, (float(self.config.burst), time.monotonic()))
        now = time.monotonic()
        tokens = min(float(self.config.burst), tokens + (now - stamp) * rate)
        allowed = tokens >= 1.0
        self.buckets[credential] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def should_throttle(self, credential: str) -> bool:
        """Test modes first (next N, every k-th), then the token bucket."""
        self.request_count[credential] += 1
        if self.faults.throttle_next > 0:
            self.faults.throttle_next -= 1
            return True
        every = self.faults.throttle_every
        if every and self.request_count[credential] % every == 0:
            return True
        return not self.take_token(credential)

    # ------------------------------------------------------------ dump

    def dump(self) -> dict[str, Any]:
        ctx = ReadContext(self.config.users[0])
        link_type = self.schema.link_type
        return {
            "now": format_datetime(self.clock.now()),
            "tables": {
                e: [self.output_row(self.types.get(e, link_type), r, ctx, None) for r in t.values()]
                for e, t in self.tables.items()
            },
            "watched": sorted(list(w) for w in self.watched),
            "sessions": len(self.sessions),
            "stats": dict(self.stats),
        }
