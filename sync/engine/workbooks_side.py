"""The Workbooks half of a two-way stream: changed records read as mapped records, and writes.

Reading decides each record's scope on its row (``sync.core.mapping.scope``) and hands out, a
chunk at a time while the read goes on, the records no Outlook item can pair with (not linked,
not stamped on an item of this round): those are new or out of scope whatever else happens,
so the run can create their Outlook items at once.  The others are kept for the final plan.
Before a newly shared Outlook item becomes a record, ``candidates`` looks up the records that
already hold its addresses (one resolution pass per chunk of items), read with their scope.
Writing is one batch per plan.  The queries and endpoints are in ``sync.workbooks.records``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from sync.core import identity
from sync.core.errors import Conflict, NotFound, RetryLater
from sync.core.identity import Candidate
from sync.core.mapping.scope import activity_in_scope, is_deleted, person_in_scope, scope_columns
from sync.core.reconcile import Action, ActionKind, LinkIndex, OutlookItem, WorkbooksRecord
from sync.core.state_models import MailboxPolicy
from sync.engine.links import RunLinks, look_up
from sync.engine.registry import RunContext
from sync.workbooks import WorkbooksClient, WriteOp, records
from sync.workbooks.reads import Watermark
from sync.workbooks.records import RecordType
from sync.workbooks.wire import parse_datetime as parse_wb_datetime

Fields = dict[str, Any]
Saved = tuple[int, int]  # (record id, lock_version) after a write


@dataclass(frozen=True)
class WorkbooksMapping:
    """How one record type maps to canonical fields (``sync.core.mapping``)."""

    record: RecordType
    columns: tuple[str, ...]  # the columns the field map reads
    read: Callable[[Mapping[str, Any], str], Fields]  # row, time zone -> fields
    write: Callable[[Mapping[str, Any], str, Iterable[str] | None], Fields]  # -> row
    create_defaults: Mapping[str, Any] = field(default_factory=dict)
    # Fields holding the addresses a new shared item is matched by before a record is created
    # (contacts: their three emails); empty: no address matching (activities).
    slots: tuple[str, ...] = ()
    name: Callable[[Mapping[str, Any]], str] = lambda f: ""  # a record's name for reports


@dataclass
class WorkbooksChanges:
    """One read of Workbooks changes: the records kept for the final plan and the watermark
    after the last record read."""

    mark: Watermark
    held: list[WorkbooksRecord] = field(default_factory=list)


@dataclass
class Written:
    """What a batch write did: index of the action -> (id, lock_version) for each record written
    (or found already deleted), and the indexes that hit a stale ``lock_version``."""

    saved: dict[int, Saved] = field(default_factory=dict)
    stale: list[int] = field(default_factory=list)


class WorkbooksSide:
    """Reads and writes one record type for one mailbox, in canonical fields."""

    def __init__(
        self,
        client: WorkbooksClient,
        mapping: WorkbooksMapping,
        policy: MailboxPolicy,
        in_window: Callable[[Mapping[str, Any]], bool] | None,
        ctx: RunContext,  # where counts and messages go
        time_zone: str = "UTC",  # the mailbox's zone (``sync.engine.clients.mailbox_time_zone``)
    ) -> None:
        self.client, self.mapping, self.policy = client, mapping, policy
        self.in_window, self.ctx, self.time_zone = in_window, ctx, time_zone
        # Canonical fields this tenant cannot carry (``records.TenantColumns.unsynced``).
        self.unsynced: Mapping[str, str] = {}

    async def _tenant_columns(self) -> None:
        """What the tenant's schema leaves out of this record type: noted in the run's status,
        and those fields are left as they are on both sides (``records.pinned``)."""
        cols = await records.tenant_columns(self.client, self.record)
        self.unsynced = cols.unsynced
        for note in cols.notes:
            if note not in self.ctx.messages:
                self.ctx.messages.append(note)

    @property
    def record(self) -> RecordType:
        return self.mapping.record

    # --- scope ---------------------------------------------------------------------------
    def rules(self) -> tuple[list[Any], Any]:
        if self.record.activity:
            return list(self.policy.activity_filters), self.policy.activity_filter_mode
        return list(self.policy.people_filters), self.policy.people_filter_mode

    async def queues(self) -> list[int]:
        extra = self.policy.activity_queues if self.record.activity else self.policy.people_queues
        return await records.my_queues(self.client, self.record, extra)

    def columns(self, rules: list[Any]) -> list[str]:
        """The field map's columns, what the scope is decided on, and the create reference."""
        extra = ["activity_status"] if self.record.activity else []
        names = [*self.mapping.columns, *scope_columns(rules), *extra, records.REFERENCE]
        return list(dict.fromkeys(names))

    # --- reading -------------------------------------------------------------------------
    async def read(
        self,
        into: WorkbooksChanges,
        links: LinkIndex,
        claimed: Set[int],
        *,
        full: bool,
        chunk: int,
        note: Callable[[int], None],
        watch: Iterable[int] = (),
    ) -> AsyncGenerator[list[WorkbooksRecord]]:
        """Read the changes since ``into.mark`` (a full scoped read when ``full``) into
        ``into``; yield the records nothing pairs with, ``chunk`` at a time as they arrive, and
        the rest at the end.  ``note`` gets the number of records held after every row.  After
        a full read, a linked record it did not return is kept as having left the scope.
        ``watch``: other records to read the changes of wherever they are (the removals the
        stream remembers: a deleted one is forgotten)."""
        await self._tenant_columns()
        rules, mode = self.rules()
        queues = await self.queues()
        returned: set[int] = set()  # linked records a full read returned
        free: list[WorkbooksRecord] = []
        read = 0
        linked = sorted({*linked_ids(links, self.record.type_name), *watch})
        rows = records.changes(
            self.client, self.record, into.mark, self.columns(rules), queues, linked
        )
        async for row, after in rows:
            await look_up(links, workbooks=[int(row["id"])])
            record = self.to_record(row, queues, rules, mode, links)
            into.mark, read = after, read + 1
            wid = record.workbooks_id
            if wid in links.by_workbooks:
                returned.add(wid)
            if wid in links.by_workbooks or wid in claimed:
                into.held.append(record)
            else:
                free.append(record)
            note(len(into.held) + len(free))
            if len(free) >= chunk:
                yield free
                free = []
        if free:
            yield free
        self.ctx.count("workbooks_changes", read)
        if full:
            into.held += await self.out_of_scope(links, returned)

    async def out_of_scope(self, links: LinkIndex, returned: set[int]) -> list[WorkbooksRecord]:
        """After a full scoped read, a linked record it did not return has left the scope
        without its ``updated_at`` moving (unwatched, [INF]) or been deleted.  For an item the
        service created that is all the planner needs (it removes the item, under the brake);
        an item the user shared stays linked out of scope, so its record is read by id to
        tell a record out of scope (merged as usual) from one deleted (unlinked)."""
        gone: list[WorkbooksRecord] = []
        shared: list[int] = []
        for wid, link in links.by_workbooks.items():
            if wid in returned or link.workbooks_type != self.record.type_name:
                continue
            if not link.created_by_service:
                shared.append(wid)
                continue
            gone.append(
                WorkbooksRecord(
                    wid,
                    link.workbooks_type,
                    link.workbooks_lock_version,
                    dict(link.snapshot),
                    in_scope=False,
                )
            )
        if gone or shared:
            self.ctx.count("workbooks_unseen", len(gone) + len(shared))
        return gone + await self.fetch(shared, links)

    async def reread(self, ids: Sequence[int], links: LinkIndex) -> list[WorkbooksRecord]:
        """These records as they are now (those deleted meanwhile are missing)."""
        await self._tenant_columns()
        rules, mode = self.rules()
        queues = await self.queues()
        columns = [*self.columns(rules), "updated_at"]
        await look_up(links, workbooks=ids)
        return [
            self.to_record(row, queues, rules, mode, links)
            async for row in records.by_ids(self.client, self.record, ids, columns)
        ]

    async def fetch(self, ids: Iterable[int], links: LinkIndex) -> list[WorkbooksRecord]:
        """These records as they are now; one that no longer exists comes back deleted."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        found = {r.workbooks_id: r for r in await self.reread(wanted, links)}
        return [
            found.get(wid) or WorkbooksRecord(wid, self.record.type_name, 0, {}, deleted=True)
            for wid in wanted
        ]

    async def candidates(
        self, items: Mapping[str, OutlookItem], links: LinkIndex
    ) -> dict[str, list[Candidate]]:
        """Outlook id -> the records holding one of the item's addresses (``mapping.slots``),
        read with their scope: one address resolution for all the items, then their records
        by id (deleted ones drop out).  Only this record type counts (a Person for a contact,
        not a Sales Lead)."""
        wanted = {oid: identity.addresses(i.fields, self.mapping.slots) for oid, i in items.items()}
        addresses = sorted({a for found in wanted.values() for a in found})
        if not addresses:
            return {oid: [] for oid in items}
        found = await records.by_addresses(self.client, self.record, addresses)
        self.ctx.count("identity_lookups", len(addresses))
        ids = {m.record_id for matches in found.values() for m in matches}
        rows = {r.workbooks_id: r for r in await self.fetch(ids, links) if not r.deleted}
        out: dict[str, list[Candidate]] = {}
        for oid, mine in wanted.items():
            out[oid] = [
                Candidate(
                    m.record_id,
                    self.record.type_name,
                    rows[m.record_id].lock_version,
                    rows[m.record_id].fields,
                    rows[m.record_id].in_scope,
                    address,
                    m.field,
                    self.mapping.name(rows[m.record_id].fields),
                )
                for address in mine
                for m in found.get(address, [])
                if m.record_id in rows
            ]
        return out

    async def created_from(self, outlook_ids: Sequence[str]) -> dict[str, int]:
        """Records a run that died before linking created from these Outlook items."""
        return await records.created_from(self.client, self.record, outlook_ids)

    def to_record(
        self,
        row: Mapping[str, Any],
        queues: list[int],
        rules: list[Any],
        mode: Any,
        links: LinkIndex,
    ) -> WorkbooksRecord:
        wid = int(row["id"])
        if self.record.activity:
            in_scope = activity_in_scope(
                row,
                queues,
                rules,
                mode,
                include_completed=self.policy.include_completed_activities,
                linked=wid in links.by_workbooks,
            )
        else:
            in_scope = person_in_scope(row, queues, rules, mode)
        link = links.by_workbooks.get(wid)
        fields = records.pinned(
            self.mapping.read(row, self.time_zone),
            self.unsynced,
            link.snapshot if link is not None else None,
        )
        return WorkbooksRecord(
            wid,
            self.record.type_name,
            int(row.get("lock_version") or 0),
            fields,
            deleted=is_deleted(row),
            in_scope=in_scope,
            in_window=self.in_window(fields) if self.in_window else True,
            modified=parse_wb_datetime(row.get("updated_at")),
            reference=str(row.get(records.REFERENCE) or ""),
        )

    # --- writing -------------------------------------------------------------------------
    async def write(self, actions: Sequence[Action]) -> Written:
        """One batched write for every Workbooks change among ``actions``.  Throttling raises
        ``RetryLater``; any other failure leaves that action's pair as it was for the next run
        (counted as ``item_errors``, or ``workbooks_stale`` for a stale ``lock_version``)."""
        ops: list[tuple[int, WriteOp]] = []
        queue = await records.own_queue(self.client, self.record)
        for i, a in enumerate(actions):
            op = self.op(a, queue)
            if op is not None:
                ops.append((i, op))
        out = Written()
        if not ops:
            return out
        results = await records.write(self.client, self.record, [op for _, op in ops])
        for (i, op), res in zip(ops, results, strict=True):
            if res.ok:
                lock = res.lock_version if res.lock_version is not None else op.lock_version
                out.saved[i] = (int(res.id or op.id), int(lock))
                self.ctx.count(f"workbooks_{op.action}")
            elif isinstance(res.error, Conflict):
                out.stale.append(i)
                self.ctx.count("workbooks_stale")
            elif isinstance(res.error, RetryLater):
                raise res.error
            elif isinstance(res.error, NotFound) and op.action == "delete":
                out.saved[i] = (op.id, op.lock_version)  # already gone
            else:
                self.ctx.count("item_errors")
                self.ctx.messages.append(f"{op.action} {self.record.endpoint} {op.id}: {res.error}")
        return out

    def op(self, a: Action, queue: int | None) -> WriteOp | None:
        if a.kind == ActionKind.CREATE_WORKBOOKS:
            row = dict(self.mapping.write(a.fields, self.time_zone, None))
            row.update(self.mapping.create_defaults)
            row[records.REFERENCE] = records.reference_to(a.outlook_id or "")
            if queue is not None:
                row["assigned_to"] = queue
            return WriteOp.create(row)
        if a.kind == ActionKind.DELETE_WORKBOOKS and a.workbooks_id:
            return WriteOp.delete(a.workbooks_id, a.lock_version)
        if a.kind == ActionKind.UPDATE and a.to_workbooks and a.workbooks_id:
            fields = self.mapping.write(a.fields, self.time_zone, a.to_workbooks)
            return WriteOp.update(a.workbooks_id, a.lock_version, fields)
        return None


def linked_ids(links: LinkIndex, workbooks_type: str) -> list[int]:
    """The records of this type the stream links (a superset while links are written)."""
    if isinstance(links, RunLinks):
        return links.linked_ids(workbooks_type)
    return sorted(w for w, x in links.by_workbooks.items() if x.workbooks_type == workbooks_type)


def needs_write(a: Action) -> bool:
    """Does this action write Workbooks (so its Outlook half waits for that write)?"""
    return a.kind in (ActionKind.CREATE_WORKBOOKS, ActionKind.DELETE_WORKBOOKS) or (
        a.kind == ActionKind.UPDATE and bool(a.to_workbooks)
    )
