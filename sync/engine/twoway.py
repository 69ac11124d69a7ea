"""One run of a two-way stream (contacts, calendar, To Do): fetch -> plan -> apply -> persist ->
advance.  The decisions are in ``sync.core.reconcile`` (pure); this module only does I/O.

Order of durability (design-examples §3.2): Workbooks and Graph writes first, then the links
that record them, and only then the cursors.  A run killed anywhere repeats the same delta next
time; every step is idempotent because

* a Workbooks record created from an Outlook item carries the item's id in
  ``created_through_reference`` and is found again before creating (no duplicate records);
* an Outlook item created for a Workbooks record carries the stamped Workbooks id and is
  re-matched by it when it shows up unlinked in the Outlook delta (no duplicate items);
* items equal to their snapshot write nothing.

Direction: notification and push jobs write Outlook -> Workbooks only (Workbooks changes are
not read, so the Workbooks cursor stays put); reconcile, manual and resync jobs read both.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.core.errors import Conflict, InvalidRequest, NotFound, RetryLater
from sync.core.jobs import JobKind
from sync.core.mapping.contacts import is_shared
from sync.core.mapping.scope import (
    activity_in_scope,
    is_deleted,
    person_in_scope,
    scope_columns,
)
from sync.core.reconcile import (
    Action,
    ActionKind,
    Direction,
    LinkIndex,
    OutlookItem,
    OutlookRemoval,
    Plan,
    SyncPolicy,
    WorkbooksRecord,
    plan,
)
from sync.core.state_models import Cursor, Link, Mailbox, utcnow
from sync.engine.clients import workbooks_client
from sync.engine.outlook_side import OutlookSide, Raw
from sync.engine.registry import RunContext
from sync.workbooks import Cond, Watermark, WorkbooksClient, WriteOp, changed_since, iter_records
from sync.workbooks import write_batch as wb_write_batch
from sync.workbooks.reads import MAX_SEEN_FILTERS
from sync.workbooks.wire import chunked, in_list
from sync.workbooks.wire import parse_datetime as parse_wb_datetime

log = logging.getLogger("sync.engine.twoway")
Fields = dict[str, Any]
GRAPH_WAVE = 256  # coroutines started at once; the client's limiter keeps ≤4 per mailbox in flight
# New Workbooks records are turned into Outlook items this many at a time while the reader
# pages on: enough to keep the Graph limiter busy, few enough that memory stays flat.
CREATE_CHUNK = 500
REF_PREFIX = "OL:"  # created_through_reference = "OL:" + Outlook immutable id (§3.9)
TWO_WAY_KINDS = (JobKind.RECONCILE, JobKind.MANUAL, JobKind.RESYNC)


@dataclass(frozen=True)
class Spec:
    """What differs between the two-way streams."""

    endpoint: str  # Workbooks endpoint, e.g. crm/people
    workbooks_type: str
    queue_class: str  # the user's queue for "assigned to me"
    columns: tuple[str, ...]  # Workbooks columns the field map reads
    from_workbooks: Callable[[Mapping[str, Any], str], Fields]
    to_workbooks: Callable[[Mapping[str, Any], str, Iterable[str] | None], Fields]
    from_graph: Callable[[Mapping[str, Any], str], Fields]
    to_graph: Callable[[Mapping[str, Any], str, Iterable[str] | None], Fields]
    title: Callable[[Mapping[str, Any]], str]
    activity: bool = False
    create_defaults: Mapping[str, Any] = field(default_factory=dict)
    in_window: Callable[[Mapping[str, Any]], bool] | None = None


@dataclass
class Outcome:
    """What applying a plan did: links to store/remove and whether cursors may advance."""

    links: list[Link] = field(default_factory=list)
    removed: list[Link] = field(default_factory=list)
    replay: bool = False  # a stale write: keep the cursors so the next run re-reads and merges
    stale: list[Action] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    saving: asyncio.Future[None] | None = None  # the links save running in the background
    index: LinkIndex | None = None  # the run's links, kept up to date as links are made


@dataclass
class OutlookView:
    """One Outlook delta round in mapped form: shared or linked items (the last occurrence
    wins), the categories of items we may stamp, removed ids, and how many were skipped."""

    items: dict[str, OutlookItem] = field(default_factory=dict)  # held for the plan
    pending: dict[str, OutlookItem] = field(default_factory=dict)  # new: created a chunk at a time
    done: set[str] = field(default_factory=set)  # created during the round
    categories: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    delta_link: str = ""
    unshared: int = 0  # neither shared nor linked: nothing to do but count them
    changes: int = 0  # entries the round returned


def direction_for(kind: JobKind) -> Direction:
    return Direction.BOTH if kind in TWO_WAY_KINDS else Direction.OUTLOOK_TO_WORKBOOKS


def full_round(cursor: Cursor, kind: JobKind) -> bool:
    """A new Outlook delta round: no stored delta link, a requested resync, or a RESYNC job."""
    return cursor.delta_link is None or cursor.resync_requested or kind == JobKind.RESYNC


def calendar_window(now: datetime, past_days: int, future_days: int) -> tuple[datetime, datetime]:
    """Whole UTC days, so the window (and its delta token) changes once a day at most."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=past_days), today + timedelta(days=future_days + 1)


# ------------------------------------------------------------------------------ the run


@dataclass
class TwoWayRun:
    ctx: RunContext
    spec: Spec
    side: OutlookSide
    cursor: Cursor
    full: bool  # no Outlook delta link: a new round (initial sync, resync, new window)
    extra_cursor: dict[str, Any] = field(default_factory=dict)

    @property
    def mailbox(self) -> Mailbox:
        return self.ctx.mailbox

    @property
    def tz(self) -> str:
        return self.mailbox.policy.time_zone

    async def execute(self) -> None:
        """Stream both sides; create new items as their pages arrive, and hold back only what
        needs both sides or the brake: changed linked pairs and stamped items."""
        direction = direction_for(self.ctx.job.kind)
        links = LinkIndex(
            [
                link
                async for link in self.ctx.services.store.links.list(
                    self.mailbox.id, self.ctx.job.stream
                )
            ]
        )
        linked = len(links)  # the brake's base: the items linked before this run
        wb = await workbooks_client(self.ctx.services, self.mailbox)
        outcome = Outcome(index=links)
        try:
            link = None if self.full else self.cursor.delta_link
            view = await self.read_outlook(wb, link, links, outcome)
            self.ctx.count("outlook_changes", view.changes)
            if view.unshared:
                self.ctx.count("skipped_not_shared", view.unshared)
            records: list[WorkbooksRecord] = []
            mark: Watermark | None = None
            if direction == Direction.BOTH:
                records, mark = await self.stream_workbooks(wb, links, view, outcome)
            items = list(view.items.values())
            removals = await self.outlook_removals(view.removed, links)
            if self.full:
                removals += self.unseen(links, view.items.keys() | view.done)
            self.note_held(len(items) + len(removals) + len(records))
            the_plan = plan(
                outlook_items=items,
                outlook_removals=removals,
                workbooks_records=records,
                links=links,
                policy=SyncPolicy.from_mailbox(self.mailbox.policy),
                direction=direction,
                workbooks_type=self.spec.workbooks_type,
                force=self.ctx.job.args.get("force") == "1",
                linked=linked,
            )
            self.record_plan(the_plan)
            if the_plan.brake is not None:
                created = self.ctx.counts.get("outlook_create", 0)
                created += self.ctx.counts.get("workbooks_create", 0)
                if created:  # creates are not what the brake guards (see stream_workbooks)
                    self.ctx.messages.append(f"new items created before the brake: {created}")
                return  # no change or delete written, cursors kept; counted as brake_stopped
            await self.apply(wb, the_plan, view.categories, outcome)
            if outcome.stale:
                await self.retry_stale(wb, outcome, items, links, direction, view.categories)
        finally:
            # Whatever was written is recorded, even when the run fails half-way (the
            # cursors stay put, so the rest is redone next time).
            await self.save_links(outcome)
        if outcome.replay:
            self.ctx.messages.append("stale Workbooks versions: changes kept for the next run")
            return
        await self.advance(view.delta_link, mark)

    def note_held(self, n: int) -> None:
        """The most items this run held in memory at once (reported, and benchmarked)."""
        self.ctx.counts["held_max"] = max(self.ctx.counts.get("held_max", 0), n)

    # --- Outlook read --------------------------------------------------------------------
    async def read_outlook(
        self, wb: WorkbooksClient, link: str | None, links: LinkIndex, outcome: Outcome
    ) -> OutlookView:
        """One delta round, page by page, kept in mapped form only: the raw JSON of a page is
        dropped once read, items that are neither shared nor linked are only counted, and new
        shared items are turned into Workbooks records a chunk at a time (``new_in_workbooks``)
        while the round goes on.  A later occurrence of such an item in the same round finds
        its link, so it is paired, not created twice."""
        view = OutlookView()
        unshared: set[str] = set()
        category = self.mailbox.policy.category
        async for page in self.side.delta(link):
            for entry in page.get("value", []):
                oid = str(entry["id"])
                view.changes += 1
                view.items.pop(oid, None)  # the last occurrence wins
                view.pending.pop(oid, None)
                view.categories.pop(oid, None)
                unshared.discard(oid)
                if "@removed" in entry:
                    view.removed.append(oid)
                    continue
                shared = is_shared(entry, category)
                linked = oid in links.by_outlook
                if not shared and not linked:
                    unshared.add(oid)
                    continue
                item = self.to_item(oid, entry, shared)
                if shared and not linked:  # may be stamped later: keep its categories
                    view.categories[oid] = list(entry.get("categories") or [])
                    if item.stamped_id is None:
                        view.pending[oid] = item
                        continue
                view.items[oid] = item
            view.delta_link = str(page.get("@odata.deltaLink") or "")
            self.note_held(len(view.items) + len(view.pending))
            if len(view.pending) >= CREATE_CHUNK:
                await self.new_in_workbooks(wb, view, links, outcome)
        if view.pending:
            await self.new_in_workbooks(wb, view, links, outcome)
        present = view.items.keys() | unshared
        view.removed = [r for r in dict.fromkeys(view.removed) if r not in present]
        view.unshared = len(unshared)
        return view

    async def new_in_workbooks(
        self, wb: WorkbooksClient, view: OutlookView, links: LinkIndex, outcome: Outcome
    ) -> None:
        """Shared items with neither link nor stamp: those that turn out to own a record
        (a stamp the delta could not carry, or a record created from them by a run that died
        before linking) are held for the plan; the rest become Workbooks records now."""
        pending, view.pending = view.pending, {}
        owners = await self.fetch_stamps(list(pending))
        owners.update(await self.reference_stamps(wb, [o for o in pending if o not in owners]))
        for oid, wid in owners.items():
            view.items[oid] = replace(pending.pop(oid), stamped_id=wid)
        if not pending:
            return
        part = plan(
            outlook_items=pending.values(),
            links=links,
            policy=SyncPolicy.from_mailbox(self.mailbox.policy),
            direction=direction_for(self.ctx.job.kind),
            workbooks_type=self.spec.workbooks_type,
        )
        self.record_plan(part)
        self.ctx.count("create_chunks")
        await self.apply(wb, part, view.categories, outcome)
        view.done.update(pending)
        for oid in pending:
            view.categories.pop(oid, None)

    def to_item(self, oid: str, entry: Raw, shared: bool) -> OutlookItem:
        return OutlookItem(
            oid,
            self.spec.from_graph(entry, self.tz),
            shared=shared,
            stamped_id=self.side.stamped_id(entry),
            change_key=str(entry.get("changeKey") or ""),
            modified=_graph_time(entry.get("lastModifiedDateTime")),
        )

    async def fetch_stamps(self, need: list[str]) -> dict[str, int]:
        """Our stamp on items where the delta cannot carry it (contacts, events): a GET each."""
        if self.side.stamp_in_delta or not need:
            return {}
        found = await _gather(self.side.fetch_stamp(oid) for oid in need)
        self.ctx.count("graph_stamp_reads", len(need))
        return {oid: wid for oid, wid in zip(need, found, strict=True) if wid}

    # --- Workbooks read ------------------------------------------------------------------
    def rules(self) -> tuple[list[Any], Any]:
        policy = self.mailbox.policy
        if self.spec.activity:
            return list(policy.activity_filters), policy.activity_filter_mode
        return list(policy.people_filters), policy.people_filter_mode

    async def stream_workbooks(
        self, wb: WorkbooksClient, links: LinkIndex, view: OutlookView, outcome: Outcome
    ) -> tuple[list[WorkbooksRecord], Watermark]:
        """Read Workbooks changes page by page.  A record no Outlook item can pair with (not
        linked, not stamped on an item of this round) is new or out of
        scope whatever else happens: those are applied in chunks as they arrive.  The rest
        is returned for the plan, which needs both sides and the brake's totals.

        Creating Outlook items never writes Workbooks, so the reader's paging is undisturbed.
        """
        full = self.full_workbooks()
        mark = Watermark() if full else Watermark.from_json(self.cursor.watermark)
        rules, mode = self.rules()
        queues = await self.queues(wb)
        scope = _scope_filter(queues) if mark.updated_at is None else None
        returned: set[int] = set()  # linked records a full read returned
        # An unlinked item held for the plan always carries a stamp by now (fetched, or
        # found by created_through_reference in new_in_workbooks), so stamps say it all.
        claimed = {i.stamped_id for i in view.items.values() if i.stamped_id is not None}
        held: list[WorkbooksRecord] = []
        free: list[WorkbooksRecord] = []
        read = 0
        async for row, after in changed_since(
            wb, self.spec.endpoint, mark, self.read_columns(rules), scope
        ):
            record = self.to_record(row, queues, rules, mode, links)
            mark, read = after, read + 1
            wid = record.workbooks_id
            if wid in links.by_workbooks:
                returned.add(wid)
            if wid in links.by_workbooks or wid in claimed:
                held.append(record)
            else:
                free.append(record)
            self.note_held(len(view.items) + len(held) + len(free))
            if len(free) >= CREATE_CHUNK:
                await self.create_outlook(wb, free, links, outcome)
                free = []
        if free:
            await self.create_outlook(wb, free, links, outcome)
        self.ctx.count("workbooks_changes", read)
        if full:
            held += self.out_of_scope(links, returned)
            self.extra_cursor["workbooks_full_at"] = utcnow().isoformat()
        return held, mark

    def out_of_scope(self, links: LinkIndex, returned: set[int]) -> list[WorkbooksRecord]:
        """After a full scoped read, a linked record it did not return has left the scope
        without its ``updated_at`` moving (unwatched, [INF]) or been deleted: the planner
        removes the Outlook item the service created and unlinks the rest, under the brake."""
        gone = [
            WorkbooksRecord(
                wid,
                link.workbooks_type,
                link.workbooks_lock_version,
                dict(link.snapshot),
                in_scope=False,
            )
            for wid, link in links.by_workbooks.items()
            if wid not in returned and link.workbooks_type == self.spec.workbooks_type
        ]
        if gone:
            self.ctx.count("workbooks_unseen", len(gone))
        return gone

    async def queues(self, wb: WorkbooksClient) -> list[int]:
        """The user's queues for this record type: the personal one from the login, and the
        team queues the mailbox's policy adds (the API does not say which teams a user is in)."""
        login = await wb.ensure_login()
        mine = [q for k, q in login.my_queues.items() if k == self.spec.queue_class]
        policy = self.mailbox.policy
        extra = policy.activity_queues if self.spec.activity else policy.people_queues
        return list(dict.fromkeys([*mine, *extra]))

    async def create_outlook(
        self,
        wb: WorkbooksClient,
        records: list[WorkbooksRecord],
        links: LinkIndex,
        outcome: Outcome,
    ) -> None:
        """Records nothing pairs with: an Outlook item each when in scope (the plan creates
        or skips, nothing else), their links saved as the Graph writes finish."""
        part = plan(
            workbooks_records=records,
            links=links,
            policy=SyncPolicy.from_mailbox(self.mailbox.policy),
            direction=Direction.BOTH,
            workbooks_type=self.spec.workbooks_type,
        )
        self.record_plan(part)
        self.ctx.count("create_chunks")
        await self.apply(wb, part, {}, outcome)

    def read_columns(self, rules: list[Any]) -> list[str]:
        """The field map's columns, what the scope is decided on, and the create reference."""
        extra = ["activity_status"] if self.spec.activity else []
        names = [*self.spec.columns, *scope_columns(rules), *extra, "created_through_reference"]
        return list(dict.fromkeys(names))

    def full_workbooks(self) -> bool:
        """A full scoped read instead of changed-since: the first, a resync, a new calendar
        window, and every ``scope_refresh_hours``, since watching or unwatching a record
        may not move its ``updated_at`` (workbooks-api.md §2.8, [INF])."""
        return (
            self.cursor.watermark is None
            or self.ctx.job.kind == JobKind.RESYNC
            or bool(self.extra_cursor.get("rebaseline_workbooks"))
            or self.scope_refresh_due()
        )

    def scope_refresh_due(self) -> bool:
        hours = self.mailbox.policy.scope_refresh_hours
        if not hours:
            return False
        last = self.cursor.extra.get("workbooks_full_at")
        try:
            when = datetime.fromisoformat(str(last)) if last else None
        except ValueError:
            when = None
        return when is None or utcnow() - when >= timedelta(hours=hours)

    def to_record(
        self,
        row: Mapping[str, Any],
        queues: list[int],
        rules: list[Any],
        mode: Any,
        links: LinkIndex,
    ) -> WorkbooksRecord:
        wid = int(row["id"])
        deleted = is_deleted(row)
        if self.spec.activity:
            linked = wid in links.by_workbooks
            in_scope = activity_in_scope(
                row,
                queues,
                rules,
                mode,
                include_completed=self.mailbox.policy.include_completed_activities,
                linked=linked,
            )
        else:
            in_scope = person_in_scope(row, queues, rules, mode)
        fields = self.spec.from_workbooks(row, self.tz)
        window = self.spec.in_window(fields) if self.spec.in_window else True
        return WorkbooksRecord(
            wid,
            self.spec.workbooks_type,
            int(row.get("lock_version") or 0),
            fields,
            deleted=deleted,
            in_scope=in_scope,
            in_window=window,
            modified=parse_wb_datetime(row.get("updated_at")),
            reference=str(row.get("created_through_reference") or ""),
        )

    async def reference_stamps(self, wb: WorkbooksClient, need: list[str]) -> dict[str, int]:
        """Records whose created_through_reference names one of these items (a run that died
        between creating the record and storing the link), by IN-list of 50."""
        stamps: dict[str, int] = {}
        for chunk in chunked(need, 50):
            refs = in_list(REF_PREFIX + oid for oid in chunk)
            async for row in iter_records(
                wb,
                self.spec.endpoint,
                ["created_through_reference"],
                Cond("created_through_reference", "eq", refs),
            ):
                ref = str(row.get("created_through_reference") or "")
                if ref.startswith(REF_PREFIX):
                    stamps[ref[len(REF_PREFIX) :]] = int(row["id"])
        return stamps

    def unseen(self, links: LinkIndex, seen: Set[str]) -> list[OutlookRemoval]:
        """After a complete new round (initial, resync, new window): a linked item the round
        did not return was deleted while we were not looking, unless it merely lies outside
        the calendar window, which only unlinks."""
        check = self.spec.in_window
        out: list[OutlookRemoval] = []
        for oid, link in links.by_outlook.items():
            if oid in seen:
                continue
            inside = check(link.snapshot) if check is not None else True
            out.append(OutlookRemoval(oid, deleted=inside))
        self.ctx.count("outlook_unseen", len(out))
        return out

    async def outlook_removals(self, removed: list[str], links: LinkIndex) -> list[OutlookRemoval]:
        """A removal is a delete unless the item still exists (an event that left the
        calendarView window is reported removed too; graph.md §2.4).  Checked only when the
        policy would delete in Workbooks, the one case where the difference matters."""
        linked = [oid for oid in removed if oid in links.by_outlook]
        if self.mailbox.policy.outlook_delete != "delete" or self.side.kind != "event":
            return [OutlookRemoval(oid) for oid in linked]
        alive = await _gather(self.side.exists(oid) for oid in linked)
        return [OutlookRemoval(oid, deleted=not a) for oid, a in zip(linked, alive, strict=True)]

    async def retry_stale(
        self,
        wb: WorkbooksClient,
        outcome: Outcome,
        items: Sequence[OutlookItem],
        links: LinkIndex,
        direction: Direction,
        categories: Mapping[str, list[str]],
    ) -> None:
        """Someone changed a record since we read it (stale ``lock_version``): re-read those
        records, merge again and write once more (workbooks-api.md §3.7).  What is still stale
        after that is left for the next run, with the cursors kept."""
        ids = sorted({a.workbooks_id for a in outcome.stale if a.workbooks_id})
        oids = {a.outlook_id for a in outcome.stale}
        outcome.stale, outcome.replay = [], False
        rules, mode = self.rules()
        queues = await self.queues(wb)
        columns = [*self.read_columns(rules), "updated_at"]
        fresh: list[WorkbooksRecord] = []
        for chunk in chunked(ids, 50):
            where = Cond("id", "eq", in_list(str(i) for i in chunk))
            async for row in iter_records(wb, self.spec.endpoint, columns, where):
                fresh.append(self.to_record(row, queues, rules, mode, links))
        if len(fresh) < len(ids):
            outcome.replay = True  # deleted meanwhile: the next two-way run sees it
        again = plan(
            outlook_items=[i for i in items if i.outlook_id in oids],
            workbooks_records=fresh,
            links=links,
            policy=SyncPolicy.from_mailbox(self.mailbox.policy),
            direction=direction,
            workbooks_type=self.spec.workbooks_type,
            force=True,
        )
        self.ctx.count("stale_retried", len(ids))
        self.record_conflicts(again)
        second = Outcome()
        try:
            await self.apply(wb, again, categories, second)
        finally:
            await self.save_links(second)
        outcome.replay = outcome.replay or second.replay

    # --- apply ---------------------------------------------------------------------------
    def record_plan(self, the_plan: Plan) -> None:
        for kind in ActionKind:
            n = the_plan.count(kind)
            if n:
                self.ctx.count(kind.value, n)
        for reason, n in the_plan.skipped.items():
            self.ctx.count(f"skipped_{reason}", n)
        self.record_conflicts(the_plan)
        if the_plan.brake is not None:
            self.ctx.count("brake_stopped")
            self.ctx.messages.append(the_plan.brake.reason)

    def record_conflicts(self, the_plan: Plan) -> None:
        for conflict in the_plan.conflicts:
            self.ctx.count("conflicts")
            self.ctx.messages.append(conflict.describe())

    async def apply(
        self,
        wb: WorkbooksClient,
        the_plan: Plan,
        categories: Mapping[str, list[str]],
        outcome: Outcome,
    ) -> None:
        actions = list(the_plan.actions)
        wb_results = await self.write_workbooks(wb, actions, outcome)
        for start in range(0, len(actions), GRAPH_WAVE):
            wave = enumerate(actions[start : start + GRAPH_WAVE], start)
            await _wave([self.finish(a, wb_results.get(i), categories, outcome) for i, a in wave])
            await self.save_links(outcome, background=True)

    async def save_links(self, outcome: Outcome, *, background: bool = False) -> None:
        """Store the links collected so far.  During the Graph writes this runs in the
        background (one save at a time), so table writes overlap the next wave and a run that
        dies keeps what it finished."""
        if outcome.saving is not None:
            task, outcome.saving = outcome.saving, None
            await task
        links, removed = outcome.links, outcome.removed
        outcome.links, outcome.removed = [], []
        if not links and not removed:
            return
        save = self.ctx.services.store.links.put_many(links, removed=removed)
        if background:
            outcome.saving = asyncio.ensure_future(save)
        else:
            await save

    async def write_workbooks(
        self, wb: WorkbooksClient, actions: list[Action], outcome: Outcome
    ) -> dict[int, tuple[int, int] | None]:
        """One batched write for every Workbooks change; index -> (id, lock_version) or None
        when that object failed (its pair is left for the next run)."""
        ops: list[tuple[int, WriteOp]] = []
        login = await wb.ensure_login()
        queue = login.my_queues.get(self.spec.queue_class)
        for i, a in enumerate(actions):
            op = self.workbooks_op(a, queue)
            if op is not None:
                ops.append((i, op))
        if not ops:
            return {}
        results = await wb_write_batch(wb, self.spec.endpoint, [op for _, op in ops])
        out: dict[int, tuple[int, int] | None] = {}
        for (i, op), res in zip(ops, results, strict=True):
            if res.ok:
                out[i] = (
                    int(res.id or op.id),
                    int(res.lock_version if res.lock_version is not None else op.lock_version),
                )
                self.ctx.count(f"workbooks_{op.action}")
                continue
            out[i] = None
            if isinstance(res.error, Conflict):
                outcome.replay = True
                outcome.stale.append(actions[i])
                self.ctx.count("workbooks_stale")
            elif isinstance(res.error, RetryLater):
                raise res.error
            elif isinstance(res.error, NotFound) and op.action == "delete":
                out[i] = (op.id, op.lock_version)  # already gone
            else:
                self.ctx.count("item_errors")
                self.ctx.messages.append(f"{op.action} {self.spec.endpoint} {op.id}: {res.error}")
        return out

    def workbooks_op(self, a: Action, queue: int | None) -> WriteOp | None:
        if a.kind == ActionKind.CREATE_WORKBOOKS:
            row = dict(self.spec.to_workbooks(a.fields, self.tz, None))
            row.update(self.spec.create_defaults)
            row["created_through_reference"] = (REF_PREFIX + (a.outlook_id or ""))[:255]
            if queue is not None:
                row["assigned_to"] = queue
            return WriteOp.create(row)
        if a.kind == ActionKind.DELETE_WORKBOOKS and a.workbooks_id:
            return WriteOp.delete(a.workbooks_id, a.lock_version)
        if a.kind == ActionKind.UPDATE and a.to_workbooks and a.workbooks_id:
            fields = self.spec.to_workbooks(a.fields, self.tz, a.to_workbooks)
            return WriteOp.update(a.workbooks_id, a.lock_version, fields)
        return None

    async def finish(
        self,
        a: Action,
        wb_result: tuple[int, int] | Any | None,
        categories: Mapping[str, list[str]],
        outcome: Outcome,
    ) -> None:
        """The Outlook half of one action, then its link (only if every write succeeded)."""
        needs_wb = self.workbooks_op_needed(a)
        if needs_wb and wb_result is None:
            return  # the Workbooks write failed: leave the pair as it was
        try:
            await self.finish_outlook(a, wb_result, categories, outcome)
        except (NotFound, InvalidRequest) as exc:
            self.ctx.count("item_errors")
            outcome.errors.append(str(exc))
            self.ctx.messages.append(f"{a.kind} {a.outlook_id or a.workbooks_id}: {exc}")
            if a.previous is not None and isinstance(exc, NotFound):
                outcome.removed.append(a.previous)  # the Outlook item is gone: unlink

    def workbooks_op_needed(self, a: Action) -> bool:
        return a.kind in (ActionKind.CREATE_WORKBOOKS, ActionKind.DELETE_WORKBOOKS) or (
            a.kind == ActionKind.UPDATE and bool(a.to_workbooks)
        )

    async def finish_outlook(
        self,
        a: Action,
        wb_result: Any,
        categories: Mapping[str, list[str]],
        outcome: Outcome,
    ) -> None:
        wid, lock = wb_result if wb_result else (a.workbooks_id or 0, a.lock_version)
        change_key = a.change_key
        outlook_id = a.outlook_id or ""
        if a.kind in (ActionKind.UNLINK, ActionKind.DELETE_WORKBOOKS, ActionKind.DELETE_OUTLOOK):
            if a.kind == ActionKind.DELETE_OUTLOOK and a.outlook_id:
                await self.side.delete(a.outlook_id)
                self.ctx.count("outlook_delete")
            if a.previous is not None:
                outcome.removed.append(a.previous)
            return
        if a.kind == ActionKind.CREATE_OUTLOOK:
            body = self.spec.to_graph(a.fields, self.tz, None)
            created = await self.side.create(body, wid, self.spec.title(a.fields))
            outlook_id, change_key = str(created["id"]), str(created.get("changeKey") or "")
            self.ctx.count("outlook_create")
        elif a.kind == ActionKind.CREATE_WORKBOOKS:
            cats = list(categories.get(outlook_id) or [])
            stamped = await self.side.stamp(outlook_id, wid, self.spec.title(a.fields), cats)
            change_key = str(stamped.get("changeKey") or change_key)
            self.ctx.count("outlook_stamp")
        elif a.to_outlook:
            body = self.spec.to_graph(a.fields, self.tz, a.to_outlook)
            updated = await self.side.update(outlook_id, body)
            change_key = str(updated.get("changeKey") or change_key)
            self.ctx.count("outlook_update")
        if a.previous is not None and a.previous.outlook_id != outlook_id:
            outcome.removed.append(a.previous)
        link = Link(
            mailbox=self.mailbox.id,
            stream=self.ctx.job.stream,
            outlook_id=outlook_id,
            workbooks_type=a.workbooks_type or self.spec.workbooks_type,
            workbooks_id=wid,
            workbooks_lock_version=lock,
            outlook_change_key=change_key,
            snapshot=dict(a.fields),
            created_by_service=a.created_by_service,
            updated_at=utcnow(),
        )
        outcome.links.append(link)
        if a.kind == ActionKind.CREATE_WORKBOOKS and outcome.index is not None:
            # Made while the Outlook round is still read: a later page may show the item
            # again, and the Workbooks read will return the record; both must find the pair.
            outcome.index.add(link)

    # --- cursors -------------------------------------------------------------------------
    async def advance(self, delta_link: str, mark: Watermark | None) -> None:
        extra = {k: v for k, v in self.extra_cursor.items() if k != "rebaseline_workbooks"}

        def change(c: Cursor) -> Cursor:
            update: dict[str, Any] = {
                "delta_link": delta_link or c.delta_link,
                "resync_requested": False,
                "resync_reason": "",
                "last_success_at": utcnow(),
                "last_error": "",
                "consecutive_failures": 0,
                "extra": {**c.extra, **extra},
            }
            if mark is not None:
                update["watermark"] = compact(mark).to_json()
            for key in ("window_start", "window_end"):
                if key in self.extra_cursor:
                    update[key] = self.extra_cursor[key]
            update["extra"].pop("window_start", None)
            update["extra"].pop("window_end", None)
            return c.model_copy(update=update)

        await self.ctx.save_cursor(self.ctx.job.stream, change)


def compact(mark: Watermark) -> Watermark:
    """Bound the stored watermark: past ``MAX_SEEN_FILTERS`` records in one second (a bulk
    import) the reader continues that second by ``id gt`` the highest seen id anyway, so only
    the highest ids need keeping; without this a 10,000-record import in one second would not
    fit in a 32 KiB table property."""
    if len(mark.seen) <= MAX_SEEN_FILTERS:
        return mark
    keep = sorted(mark.seen)[-(MAX_SEEN_FILTERS + 1) :]
    return Watermark(mark.updated_at, frozenset(keep))


def _scope_filter(queues: list[int]) -> Any:
    """The server-side half of the scope for a first read: my queue or watched.  The user's
    own rules are applied client-side (``sync.core.mapping.scope``) on every row."""
    from sync.workbooks import any_of

    conds = [Cond("assigned_to", "eq", str(q)) for q in queues]
    return any_of(*conds, Cond("watched", "true"))


def _graph_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _gather(coros: Iterable[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run in waves so 10,000 writes do not become 10,000 pending tasks at once.  A failure
    cancels the rest of its wave (TaskGroup) and is re-raised as itself, so the runner sees
    ``RetryLater`` etc. rather than an exception group."""
    out: list[Any] = []
    wave: list[Coroutine[Any, Any, Any]] = []
    for coro in coros:
        wave.append(coro)
        if len(wave) >= GRAPH_WAVE:
            out += await _wave(wave)
            wave = []
    if wave:
        out += await _wave(wave)
    return out


async def _wave(coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coros]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]
