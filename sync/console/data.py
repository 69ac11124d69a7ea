"""What the console pages read, in a number of storage queries that does not grow with the
number of mailboxes.

``/api/status`` reads three queries per mailbox, one after another; a list of 1,000 mailboxes
that way is 3,000 round trips.  The list page instead reads, whatever the number of mailboxes,
side by side:

1. every mailbox's registry row, only the columns the list shows (id, enabled, the reason it
   is paused, the Workbooks user), not each whole record;
2. the runs that failed or were stopped in the last day, across mailboxes (few: a healthy
   tenant has none);
3. the manual sync jobs touched in the last day (their progress);
4. cursor rows that matter for health, only their timestamp columns: each mailbox's
   sent-items stream (which every sync runs); streams whose last success is older than two
   reconciliation intervals or that a worker holds now; and, after 2, the streams of the
   failed runs (to tell a failure from a later success), seven (mailbox, stream) pairs per
   query and at most four queries, else every mailbox's row of those streams in one;
5. the queue depth and 6. the poison queue depth;
7. the stream health rows that say failing (``status``'s rule: a failed run or one retried for
   an outage, and no success since), across mailboxes (few);
8. after filtering and paging, the cursor rows of the mailboxes on the page: their partitions,
   fifteen to a query (two queries for a page of 25), side by side.

A stream is overdue past two of its mailbox's reconciliations; the registry row's
``reconcile_minutes`` column says how often that is, and a row written before the column
existed is read whole (one point read) only when one of its streams is overdue by the timer's
shorter interval.

The reads go straight to the state tables (``StateStore.service``, prefix and table names, the
rows' own encoding), read-only; every write goes through the engine and the store.
``Reads.queries`` counts the round trips, so tests and the benchmark can hold the count down.
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables.aio import TableClient

from sync.core.doctor import DoctorReport
from sync.core.health import (
    MIN_STALE,
    TIMED_STREAMS,
    StreamHealth,
    is_stale,
    stale_after,
    stale_for,
)
from sync.core.keys import encode_key, normalise_address
from sync.core.state_models import EmailRecord, JobStatus, Mailbox, RunRecord, utcnow
from sync.runtime import Services
from sync.state.health import PARTITION as HEALTH_PARTITION
from sync.state.limits import unpack_json
from sync.state.store import EmailStore

from .health import SENT, Health, StreamState, active_job, classify, stream_state

PROBLEM_WINDOW = timedelta(hours=24)
JOB_WINDOW = timedelta(hours=24)
MAX_FILTER_COMPARISONS = 15  # Azure Table Storage's limit per $filter
PAIRS_PER_QUERY = MAX_FILTER_COMPARISONS // 2  # (PartitionKey eq and RowKey eq) per pair
MAX_PAIR_QUERIES = 4  # beyond 28 failing streams, one query by stream name instead
CURSOR_COLUMNS = ["PartitionKey", "RowKey", "last_success_at", "lease_until", "resync_requested"]
SENT_COLUMNS = ["PartitionKey", "RowKey", "last_success_at"]
LIST_COLUMNS = [
    "RowKey",
    "mailbox",
    "enabled",
    "disabled_reason",
    "workbooks_user",
    "reconcile_minutes",
]


@dataclass(frozen=True)
class Listed:
    """A mailbox as the list shows it: the registry row's own columns, not the whole record."""

    id: str
    enabled: bool
    disabled_reason: str = ""
    workbooks_user: str = ""
    key: str = ""  # its RowKey, which is also its cursors' PartitionKey (encode_key(id))
    # Its policy's reconcile_interval_minutes (None: a row written before that column existed)
    reconcile_minutes: int | None = None


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Reads:
    """Read-only queries on the state tables, counted."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.queries = 0

    def table(self, name: str) -> TableClient:
        store = self.services.store
        return store.service.get_table_client(f"{store.prefix}{name}")

    async def rows(
        self,
        name: str,
        flt: str,
        params: Mapping[str, Any] | None = None,
        *,
        select: list[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """One query; with ``limit``, only its first page (newest first where keys say so)."""
        self.queries += 1
        pager = self.table(name).query_entities(
            flt, parameters=dict(params or {}), select=select, results_per_page=limit or 1000
        )
        out: list[dict[str, Any]] = []
        async for row in pager:
            out.append(dict(row))
            if limit is not None and len(out) >= limit:
                break
        return out

    async def queue_depths(self) -> tuple[int, int]:
        self.queries += 2
        queue = self.services.queue
        depth, poison = await asyncio.gather(queue.depth(), queue.poison_depth())
        return depth, poison

    # ---------------------------------------------------------------- rows of each kind

    async def mailboxes(self) -> list[Mailbox]:
        """The registry's own read (it loads rows an earlier version wrote, ``STORED``)."""
        self.queries += 1
        found = await self.services.store.mailboxes.list()
        return sorted(found, key=lambda m: encode_key(m.id))

    async def problem_runs(self, since: datetime) -> list[RunRecord]:
        flt = "Timestamp ge @since and (status eq 'failed' or status eq 'stopped')"
        return [_run(r) for r in await self.rows("runs", flt, {"since": since})]

    async def recent_jobs(self, since: datetime) -> list[JobStatus]:
        rows = await self.rows(
            "jobs", "PartitionKey eq 'job' and Timestamp ge @since", {"since": since}
        )
        return [JobStatus.model_validate_json(r["data"]) for r in rows]

    async def listed(self) -> list[Listed]:
        """Every mailbox, the list's columns only, in key order.  A row written before those
        columns existed is read whole (one point read; its next write adds them)."""
        rows = await self.rows("mailboxes", "PartitionKey eq 'mailbox'", select=LIST_COLUMNS)
        old = [r for r in rows if r.get("workbooks_user") is None]
        full = {}
        if old:
            store = self.services.store.mailboxes
            found = await asyncio.gather(*(store.get(str(r["mailbox"])) for r in old))
            self.queries += len(old)
            full = {m.id: m for m in found if m is not None}
        out = []
        for row in sorted(rows, key=lambda r: str(r["RowKey"])):
            name = str(row["mailbox"])
            record = full.get(name)
            key = str(row["RowKey"])
            if record is not None:
                out.append(_listed(record, key))
            elif row.get("workbooks_user") is not None:
                minutes = row.get("reconcile_minutes")
                out.append(
                    Listed(
                        name,
                        bool(row.get("enabled")),
                        str(row.get("disabled_reason") or ""),
                        str(row.get("workbooks_user") or ""),
                        key,
                        int(minutes) if isinstance(minutes, int) else None,
                    )
                )
        return out

    async def intervals(self, mailboxes: Iterable[Listed]) -> dict[str, int]:
        """The reconcile interval of mailboxes whose registry row predates its column: a point
        read each (the list asks only for those with an overdue stream, usually none)."""
        wanted = [m.id for m in mailboxes if m.reconcile_minutes is None]
        if not wanted:
            return {}
        found = await asyncio.gather(*(self.services.store.mailboxes.get(m) for m in wanted))
        self.queries += len(wanted)
        return {m.id: m.policy.reconcile_interval_minutes for m in found if m is not None}

    async def failing_health(self) -> list[StreamHealth]:
        """The health rows that say failing (``status``'s rule), across mailboxes: few."""
        rows = await self.rows(
            "runs",
            "PartitionKey eq @pk and failing eq true",
            {"pk": HEALTH_PARTITION},
            select=["data"],
        )
        return [StreamHealth.model_validate_json(r["data"]) for r in rows]

    async def health_cursors(self, now: datetime, stale: datetime) -> list[dict[str, Any]]:
        """Cursor rows for health that do not depend on the failed runs (module docstring,
        item 4): every sent-items row, and the overdue or held rows of any stream."""
        sent, other = await asyncio.gather(
            # a thousand rows: only what health reads of them (held rows come from the other)
            self.rows("cursors", "RowKey eq @sent", {"sent": SENT}, select=SENT_COLUMNS),
            self.rows(
                "cursors",
                "last_success_at lt @stale or lease_until gt @now",
                {"stale": stale, "now": now},
                select=CURSOR_COLUMNS,
            ),
        )
        return [*sent, *other]

    async def problem_cursors(self, problems: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
        """The cursor rows of the streams with a failed or stopped run."""
        pairs = sorted(set(problems))
        if not pairs:
            return []
        groups = _chunks(pairs, PAIRS_PER_QUERY)
        if len(groups) > MAX_PAIR_QUERIES:  # many failing streams: those streams of everyone
            streams = sorted({s for _, s in pairs})[:MAX_FILTER_COMPARISONS]
            flt = " or ".join(f"RowKey eq @s{i}" for i in range(len(streams)))
            params = {f"s{i}": s for i, s in enumerate(streams)}
            return await self.rows("cursors", flt, params, select=CURSOR_COLUMNS)

        async def group(chunk: list[tuple[str, str]]) -> list[dict[str, Any]]:
            # the SDK wants the spaces inside the brackets
            flt = " or ".join(
                f"( PartitionKey eq @p{i} and RowKey eq @s{i} )" for i in range(len(chunk))
            )
            params: dict[str, Any] = {}
            for i, (mailbox, stream) in enumerate(chunk):
                params[f"p{i}"], params[f"s{i}"] = encode_key(mailbox), stream
            return await self.rows("cursors", flt, params, select=CURSOR_COLUMNS)

        found = await asyncio.gather(*(group(chunk) for chunk in groups))
        return [row for rows in found for row in rows]

    async def page_cursors(self, mailboxes: list[str]) -> list[dict[str, Any]]:
        """Every cursor row of these mailboxes: their partitions, fifteen to a query."""

        async def group(chunk: list[str]) -> list[dict[str, Any]]:
            flt = " or ".join(f"PartitionKey eq @p{i}" for i in range(len(chunk)))
            params = {f"p{i}": encode_key(m) for i, m in enumerate(chunk)}
            return await self.rows("cursors", flt, params, select=CURSOR_COLUMNS)

        chunks = _chunks(sorted(set(mailboxes)), MAX_FILTER_COMPARISONS)
        found = await asyncio.gather(*(group(chunk) for chunk in chunks))
        return [row for rows in found for row in rows]

    async def mailbox_cursors(self, mailbox: str) -> list[dict[str, Any]]:
        flt = "PartitionKey eq @pk"
        return await self.rows("cursors", flt, {"pk": encode_key(mailbox)}, select=CURSOR_COLUMNS)

    async def runs(
        self, mailbox: str, *, stream: str | None = None, limit: int = 60
    ) -> list[RunRecord]:
        """The newest runs of a mailbox (of one stream), newest first."""
        flt = "PartitionKey eq @pk" + (" and stream eq @stream" if stream else "")
        params = {"pk": encode_key(mailbox), "stream": stream or ""}
        return [_run(r) for r in await self.rows("runs", flt, params, limit=limit)]

    async def emails(self, mailbox: str, since: datetime, limit: int = 1000) -> list[EmailRecord]:
        """Sent messages processed since ``since``, newest first (at most ``limit`` read)."""
        flt = "PartitionKey eq @pk and Timestamp ge @since"
        rows = await self.rows(
            "emails", flt, {"pk": encode_key(mailbox), "since": since}, limit=limit
        )
        records = [
            EmailRecord.model_validate(unpack_json("data", r))
            for r in rows
            if EmailStore.is_record(r)
        ]
        return sorted(records, key=lambda r: r.sent_at or r.processed_at, reverse=True)

    async def mailbox_for_viewer(self, name: str, object_id: str) -> Mailbox | None:
        """The mailbox of a signed-in person: by address, else by Graph user (object id)."""
        self.queries += 1
        mailbox = await self.services.store.mailboxes.get(normalise_address(name))
        if mailbox is not None or not object_id:
            return mailbox
        wanted = object_id.lower()
        return next((m for m in await self.mailboxes() if m.graph_user.lower() == wanted), None)


def _listed(mailbox: Mailbox, key: str) -> Listed:
    return Listed(
        mailbox.id,
        mailbox.enabled,
        mailbox.disabled_reason,
        mailbox.workbooks_user,
        key,
        mailbox.policy.reconcile_interval_minutes,
    )


def _run(row: Mapping[str, Any]) -> RunRecord:
    return RunRecord.model_validate(unpack_json("data", row))


def _dt(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


# ------------------------------------------------------------------------ the list page


@dataclass
class MailboxRow:
    mailbox: Mailbox | Listed
    streams: dict[str, StreamState]
    job: JobStatus | None
    health: Health = Health.OK
    stale: timedelta = MIN_STALE  # how old a last success may get: this mailbox's own

    @property
    def last_sync(self) -> datetime | None:
        sent = self.streams.get(SENT)
        return sent.last_success_at if sent else None

    @property
    def problem(self) -> StreamState | None:
        """The stream to name when the mailbox is not ok."""
        bad = [s for s in self.streams.values() if s.failing or s.braked]
        return bad[0] if bad else None


@dataclass
class Snapshot:
    rows: list[MailboxRow]
    queue_depth: int
    poison_depth: int
    now: datetime
    stale: timedelta
    problems: list[RunRecord] = field(default_factory=list)
    reads: Reads | None = None
    failing: dict[str, dict[str, StreamHealth]] = field(default_factory=dict)  # health rows

    def counts(self) -> dict[Health, int]:
        out = dict.fromkeys(Health, 0)
        for row in self.rows:
            out[row.health] += 1
        return out


def _streams(
    mailbox: str,
    cursor_rows: Iterable[Mapping[str, Any]],
    runs: Iterable[RunRecord],
    now: datetime,
    stale: timedelta,
    failing: Mapping[str, StreamHealth] | None = None,
) -> dict[str, StreamState]:
    """``failing``: the mailbox's health rows that say failing, by stream."""
    failing = failing or {}
    by_stream: dict[str, list[RunRecord]] = {}
    for run in runs:
        by_stream.setdefault(run.stream, []).append(run)
    out: dict[str, StreamState] = {}
    for row in cursor_rows:
        stream = str(row["RowKey"])
        out[stream] = stream_state(
            stream,
            last_success_at=_dt(row.get("last_success_at")),
            lease_until=_dt(row.get("lease_until")),
            resync_requested=bool(row.get("resync_requested")),
            runs=by_stream.get(stream, []),
            now=now,
            stale=stale,
            health=failing.get(stream),
        )
    # A failing stream without a cursor row read (or none yet): from its runs and health.
    for stream in sorted({*by_stream, *failing}):
        if stream not in out and stream in (*TIMED_STREAMS, "people", "subscriptions"):
            out[stream] = stream_state(
                stream,
                last_success_at=None,
                lease_until=None,
                resync_requested=False,
                runs=by_stream.get(stream, []),
                now=now,
                stale=stale,
                health=failing.get(stream),
            )
    return out


def _by_mailbox(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        out.setdefault(str(row["PartitionKey"]), []).append(row)
    return out


async def list_snapshot(services: Services, *, now: datetime | None = None) -> Snapshot:
    """Every mailbox with its health, in a number of queries that does not grow with the
    number of mailboxes (the module docstring; ``fill_page`` completes one page)."""
    now = now or utcnow()
    reads = Reads(services)
    stale = stale_after(services.settings.app.reconcile_schedule)  # the timer's: the shortest

    async def problems_then_cursors() -> tuple[list[RunRecord], list[dict[str, Any]]]:
        problems = await reads.problem_runs(now - PROBLEM_WINDOW)
        pairs = [(r.mailbox, r.stream) for r in problems]
        return problems, await reads.problem_cursors(pairs)

    (
        mailboxes,
        (problems, failing),
        cursors,
        jobs,
        (depth, poison),
        unhealthy,
    ) = await asyncio.gather(
        reads.listed(),
        problems_then_cursors(),
        reads.health_cursors(now, now - stale),
        reads.recent_jobs(now - JOB_WINDOW),
        reads.queue_depths(),
        reads.failing_health(),
    )
    cursors_of = _by_mailbox(_unique([*cursors, *failing]))
    runs_of: dict[str, list[RunRecord]] = {}
    for run in problems:
        runs_of.setdefault(run.mailbox, []).append(run)
    health_of: dict[str, dict[str, StreamHealth]] = {}
    for h in unhealthy:
        health_of.setdefault(h.mailbox, {})[h.stream] = h

    def key(mailbox: Listed) -> str:
        return mailbox.key or encode_key(mailbox.id)

    # The row does not say the mailbox's own interval, and a stream is overdue by the timer's:
    # read the mailbox (rows written before the column; usually none).
    minutes = await reads.intervals(
        m
        for m in mailboxes
        if m.reconcile_minutes is None
        and any(
            is_stale(str(r["RowKey"]), _dt(r.get("last_success_at")), now, stale)
            for r in cursors_of.get(key(m), [])
        )
    )
    rows = []
    for mailbox in mailboxes:
        own = stale_for(stale, mailbox.reconcile_minutes or minutes.get(mailbox.id))
        streams = _streams(
            mailbox.id,
            cursors_of.get(key(mailbox), []),
            runs_of.get(mailbox.id, []),
            now,
            own,
            health_of.get(mailbox.id),
        )
        row = MailboxRow(mailbox, streams, active_job(jobs, mailbox.id), stale=own)
        row.health = classify(mailbox, streams)
        rows.append(row)
    return Snapshot(rows, depth, poison, now, stale, problems, reads, health_of)


def _unique(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Cursor rows once each (a stream can be both overdue and failing)."""
    seen: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        seen[(str(row["PartitionKey"]), str(row["RowKey"]))] = row
    return list(seen.values())


async def fill_page(services: Services, snapshot: Snapshot, page: list[MailboxRow]) -> None:
    """Complete the streams of the mailboxes on one page (their cursor partitions)."""
    if not page:
        return
    reads = snapshot.reads or Reads(services)
    cursors_of = _by_mailbox(await reads.page_cursors([r.mailbox.id for r in page]))
    runs_of: dict[str, list[RunRecord]] = {}
    for run in snapshot.problems:
        runs_of.setdefault(run.mailbox, []).append(run)
    for row in page:
        rows = cursors_of.get(encode_key(row.mailbox.id), [])
        full = _streams(
            row.mailbox.id,
            rows,
            runs_of.get(row.mailbox.id, []),
            snapshot.now,
            row.stale,
            snapshot.failing.get(row.mailbox.id),
        )
        row.streams = {**row.streams, **full}


def select(snapshot: Snapshot, *, text: str = "", health: str = "") -> list[MailboxRow]:
    """The rows matching a search text (address, Workbooks user) and a health; most urgent
    first, then by address."""
    needle = text.strip().lower()
    rows = [
        r
        for r in snapshot.rows
        if (not health or r.health.value == health)
        and (
            not needle
            or needle in r.mailbox.id
            or needle in r.mailbox.workbooks_user.lower()
            or needle in r.mailbox.disabled_reason.lower()
        )
    ]
    return sorted(rows, key=lambda r: (r.health.severity, r.mailbox.id))


# ------------------------------------------------------------------------ one mailbox


@dataclass
class Conflict:
    """A field both sides changed, as a two-way run recorded it."""

    at: datetime
    stream: str
    record: str
    field: str
    workbooks: str
    outlook: str
    winner: str


# RecordedConflict.describe() in sync.core.reconcile writes exactly this.
CONFLICT = re.compile(
    r"conflict on (?P<record>[^/\s;]+)/(?P<field>[^:\s;]+): workbooks=(?P<workbooks>.*?) "
    r"outlook=(?P<outlook>.*?) -> (?P<winner>workbooks|outlook)(?=; |$)"
)


def _value(text: str) -> str:
    """A recorded value (a Python literal) as plain text; unchanged when it is not one."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    return "(empty)" if value in (None, "") else str(value)


def conflicts_in(runs: Iterable[RunRecord]) -> list[Conflict]:
    out = []
    for run in runs:
        if not run.counts.get("conflicts"):
            continue
        for found in CONFLICT.finditer(run.message):
            out.append(
                Conflict(
                    at=run.started_at,
                    stream=run.stream,
                    record=found["record"],
                    field=found["field"],
                    workbooks=_value(found["workbooks"]),
                    outlook=_value(found["outlook"]),
                    winner=found["winner"],
                )
            )
    return out


@dataclass
class Detail:
    row: MailboxRow
    runs: list[RunRecord]
    jobs: list[JobStatus]
    subscriptions: int
    items: dict[str, dict[str, int]]
    conflicts: list[Conflict]
    doctor: DoctorReport | None = None  # the last live checks
    queries: int = 0


async def mailbox_detail(
    services: Services, mailbox: Mailbox, *, now: datetime | None = None, runs: int = 60
) -> Detail:
    """One mailbox: its streams and health (as the list decides it), recent runs, manual
    jobs, subscriptions, two-way items needing a person and recorded conflicts."""
    from sync.status import TWO_WAY_STREAMS

    async def identity_counts() -> dict[str, dict[str, int]]:
        found = await asyncio.gather(
            *(services.store.identity.counts(mailbox.id, s) for s in TWO_WAY_STREAMS)
        )
        return dict(zip(TWO_WAY_STREAMS, found, strict=True))

    now = now or utcnow()
    reads = Reads(services)
    stale = stale_after(
        services.settings.app.reconcile_schedule, mailbox.policy.reconcile_interval_minutes
    )

    async def streams_read() -> tuple[list[dict[str, Any]], list[StreamHealth]]:
        cursors, health = await asyncio.gather(
            reads.mailbox_cursors(mailbox.id), services.store.health.for_mailbox(mailbox.id)
        )
        return cursors, health

    (cursor_rows, health), recent, jobs, subs, items, doctor = await asyncio.gather(
        streams_read(),
        reads.runs(mailbox.id, limit=runs),
        reads.recent_jobs(now - JOB_WINDOW),
        services.store.subscriptions.list_for_mailbox(mailbox.id),
        identity_counts(),
        services.store.doctor.get(mailbox.id),
    )
    # subscriptions (1), identity counts (3), the last doctor report (1), health rows (1)
    reads.queries += 6
    problems = [r for r in recent if now - r.started_at <= PROBLEM_WINDOW]
    failing = {h.stream: h for h in health if h.failing}
    streams = _streams(mailbox.id, cursor_rows, problems, now, stale, failing)
    mine = [j for j in jobs if j.mailbox == mailbox.id]
    row = MailboxRow(mailbox, streams, active_job(mine, mailbox.id), stale=stale)
    row.health = classify(mailbox, streams)
    return Detail(
        row=row,
        runs=recent,
        jobs=sorted(mine, key=lambda j: j.requested_at, reverse=True),
        subscriptions=len(subs),
        items=items,
        conflicts=conflicts_in(recent),
        doctor=doctor,
        queries=reads.queries,
    )
