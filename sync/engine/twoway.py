"""One run of a two-way stream (contacts, calendar, To Do): two sides, read in chunks, each
chunk planned and applied, then the links and the cursors.

The Outlook side (``outlook_side``) reads one delta round and the Workbooks side
(``workbooks_side``) the changed records, both in mapped form, never holding raw pages.  The run:

1. **Outlook, streamed.**  New shared items (no link, no stamp) come out a chunk at a time
   while the round is read.  Those that already own a record (a stamp the delta cannot carry,
   fetched per item for contacts and events, or a record whose ``created_through_reference``
   names them, left by a run that died before linking) are kept for the final plan.  The rest
   are looked up by address (contacts: the records holding their emails, one resolution per
   chunk), then planned and applied at once: linked to the one record found, reported as
   ambiguous or duplicate, or given a new Workbooks record; the item stamped, the link made
   and added to the run's link index, so a later page showing the item again pairs it.
2. **Workbooks, streamed** (two-way jobs only).  Records nothing can pair with (not linked,
   not stamped on an item of this round) are planned and applied a chunk at a time: an Outlook
   item each when in scope.
3. **The final chunk**: what needs both sides or the mass-change brake's totals: changed
   linked pairs, stamped unlinked items, removals (a full round also treats linked items it
   did not return as removed), and linked records a full Workbooks read did not return; with
   the records of stamped unlinked items and of pairs a one-way run left unsettled, read by id
   when the changes did not include them.  The brake is decided on it, over the run's changes
   to linked items (the chunks before it only create or link new items).  Records whose write
   hit a stale ``lock_version`` are re-read, planned again and written once more.

Every chunk goes the same way: ``plan`` (``sync.core.reconcile``, pure) -> apply (one
Workbooks batch, then the Graph writes in waves, each action's link kept only if all its writes
succeeded) -> links saved (in the background while the next wave runs, and always before the
run ends, also when it fails), with the identity state of the stream: removals the user made
(remembered before their link goes, forgotten after a new link is stored) and items left
ambiguous or duplicate.  Cursors advance last, and only when nothing needs replaying.

Order of durability (design-examples §3.2): writes first, then the links that record them,
and only then the cursors.  A run killed anywhere repeats the same delta next time; every step
is idempotent because

* a Workbooks record created from an Outlook item carries the item's id in
  ``created_through_reference`` and is found again before creating (no duplicate records);
* an Outlook item created for a Workbooks record carries the stamped Workbooks id and is
  re-matched by it when it shows up unlinked in the Outlook delta (no duplicate items);
* items equal to their snapshot write nothing.

Direction: notification and push jobs write Outlook -> Workbooks only (Workbooks changes are
not read, so the Workbooks cursor stays put); reconcile, manual (full) and resync jobs read
both.  A resync with ``restore_removed`` first forgets the stream's removals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.core.errors import InvalidRequest, NotFound
from sync.core.identity import Candidate
from sync.core.jobs import JobKind
from sync.core.reconcile import (
    Action,
    ActionKind,
    Direction,
    Identity,
    Issue,
    LinkIndex,
    OutlookItem,
    OutlookRemoval,
    Plan,
    SyncPolicy,
    WorkbooksRecord,
    plan,
)
from sync.core.state_models import (
    MAX_CANDIDATES,
    Cursor,
    IdentityIssue,
    Link,
    Mailbox,
    MailboxPolicy,
    MatchCandidate,
    Removal,
    RemovalHow,
    identity_counts,
    utcnow,
)
from sync.engine.clients import mailbox_time_zone, workbooks_client
from sync.engine.links import RunLinks, look_up
from sync.engine.outlook_side import GRAPH_WAVE, OutlookMapping, OutlookRound, OutlookSide, run_wave
from sync.engine.registry import RunContext
from sync.engine.workbooks_side import (
    Saved,
    WorkbooksChanges,
    WorkbooksMapping,
    WorkbooksSide,
    needs_write,
)
from sync.graph.items import OutlookItems
from sync.workbooks.reads import MAX_SEEN_FILTERS, Watermark

# New items are created this many at a time while their side is still read: enough to keep
# the Graph limiter busy, few enough that memory stays flat.
CREATE_CHUNK = 500
TWO_WAY_KINDS = (JobKind.RECONCILE, JobKind.MANUAL, JobKind.RESYNC)
# Actions that end a pair: no link is stored after them, the old one is removed.
REMOVALS = (ActionKind.UNLINK, ActionKind.DELETE_WORKBOOKS, ActionKind.DELETE_OUTLOOK)


@dataclass(frozen=True)
class Spec:
    """What differs between the two-way streams: each side's field map, and for events the
    calendar window (a field check; outside it a pair is unlinked, never deleted)."""

    workbooks: WorkbooksMapping
    outlook: OutlookMapping
    in_window: Callable[[Mapping[str, Any]], bool] | None = None
    # Builds the stream's Outlook side (the calendar's own one folds recurring series).
    side: Callable[[OutlookItems, OutlookMapping, str, RunContext], OutlookSide] = OutlookSide

    @property
    def workbooks_type(self) -> str:
        return self.workbooks.record.type_name

    @property
    def slots(self) -> tuple[str, ...]:
        return self.workbooks.slots


@dataclass(frozen=True)
class Chunk:
    """Changes planned and applied together.  ``again``: a re-plan after a stale write (forced
    past the brake; only its conflicts are counted, its actions were the first time)."""

    items: Sequence[OutlookItem] = ()
    removals: Sequence[OutlookRemoval] = ()
    records: Sequence[WorkbooksRecord] = ()
    categories: Mapping[str, list[str]] = field(default_factory=dict)  # of items we may stamp
    matches: Mapping[str, Sequence[Candidate]] = field(default_factory=dict)  # by address
    force: bool = False
    again: bool = False


@dataclass
class Outcome:
    """What applying plans did: links to store/remove and whether cursors may advance."""

    links: list[Link] = field(default_factory=list)
    removed: list[Link] = field(default_factory=list)
    replay: bool = False  # a stale write: keep the cursors so the next run re-reads and merges
    stale: list[Action] = field(default_factory=list)
    saving: asyncio.Future[None] | None = None  # the links save running in the background
    index: LinkIndex | None = None  # the run's links, kept up to date as links are made
    # Removals to record (True) or forget (False), by record; the later event wins.
    removals: dict[int, tuple[bool, Removal]] = field(default_factory=dict)
    issues: list[IdentityIssue] = field(default_factory=list)  # ambiguous / duplicate items
    cleared: list[str] = field(default_factory=list)  # items whose recorded issue is over

    def pending(self) -> bool:
        return bool(self.links or self.removed or self.removals or self.issues or self.cleared)


@dataclass
class IdentityRows:
    """The stream's identity rows (removals remembered, issues recorded) as the run leaves
    them, kept in step with what it saves and drops, so the stream's health row gets their
    counts without reading them again (``sync.engine.health``)."""

    kinds: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, removals: Iterable[Removal], issues: Iterable[IdentityIssue]) -> IdentityRows:
        out = cls()
        out.saved(removals, issues)
        return out

    def saved(self, removals: Iterable[Removal], issues: Iterable[IdentityIssue]) -> None:
        for removal in removals:
            self.kinds[_removal_key(removal)] = "removed"
        for issue in issues:
            self.kinds[("issue", issue.outlook_id)] = issue.kind

    def dropped(self, removals: Iterable[Removal], issues: Iterable[str]) -> None:
        for removal in removals:
            self.kinds.pop(_removal_key(removal), None)
        for oid in issues:
            self.kinds.pop(("issue", oid), None)

    def counts(self) -> dict[str, int]:
        """As ``IdentityStore.counts`` reads them."""
        return identity_counts(self.kinds.values())


def _removal_key(removal: Removal) -> tuple[str, str]:
    return ("removal", f"{removal.workbooks_type}:{removal.workbooks_id}")


def direction_for(kind: JobKind) -> Direction:
    return Direction.BOTH if kind in TWO_WAY_KINDS else Direction.OUTLOOK_TO_WORKBOOKS


def full_round(cursor: Cursor, kind: JobKind) -> bool:
    """A new Outlook delta round: no stored delta link, a requested resync, or a RESYNC job."""
    return cursor.delta_link is None or cursor.resync_requested or kind == JobKind.RESYNC


def full_workbooks(
    cursor: Cursor, kind: JobKind, extra_cursor: Mapping[str, Any], policy: MailboxPolicy
) -> bool:
    """A full scoped read instead of changed-since: the first, a resync, a new calendar
    window, and every ``scope_refresh_hours``, since watching or unwatching a record may not
    move its ``updated_at`` (workbooks-api.md §2.8, [INF])."""
    return (
        cursor.watermark is None
        or kind == JobKind.RESYNC
        or bool(extra_cursor.get("rebaseline_workbooks"))
        or scope_refresh_due(cursor, policy)
    )


def scope_refresh_due(cursor: Cursor, policy: MailboxPolicy) -> bool:
    hours = policy.scope_refresh_hours
    if not hours:
        return False
    last = cursor.extra.get("workbooks_full_at")
    try:
        when = datetime.fromisoformat(str(last)) if last else None
    except ValueError:
        when = None
    return when is None or utcnow() - when >= timedelta(hours=hours)


def calendar_window(now: datetime, past_days: int, future_days: int) -> tuple[datetime, datetime]:
    """Whole UTC days, so the window (and its delta token) changes once a day at most."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=past_days), today + timedelta(days=future_days + 1)


# ------------------------------------------------------------------------------ the run


async def run_cursor(ctx: RunContext) -> Cursor:
    """The stream's cursor as the run's claim left it (this process wrote it: not read again),
    or as stored when the run holds no lease."""
    store = ctx.services.store.cursors
    if ctx.lease is not None and ctx.lease.stream == ctx.job.stream:
        return await store.for_run(ctx.lease)
    return await store.get(ctx.mailbox.id, ctx.job.stream)


async def run_two_way(
    ctx: RunContext,
    spec: Spec,
    items: OutlookItems,
    cursor: Cursor,
    full: bool,
    extra_cursor: dict[str, Any] | None = None,
) -> None:
    """Run a two-way stream once: its links, both sides, then ``TwoWayRun.execute``.
    ``items``: where the stream's Outlook items live; ``full``: a new Outlook delta round."""
    store = ctx.services.store
    mailbox, stream = ctx.mailbox.id, ctx.job.stream
    if ctx.job.kind == JobKind.RESYNC and ctx.job.args.get("restore_removed") == "1":
        # An operator asked for the items the user removed to come back (docs/two-way-sync.md).
        ctx.count("removals_restored", await store.identity.clear_removals(mailbox, stream))
    removed, unlinked = await store.identity.load(mailbox, stream)
    removals = {r.workbooks_id: r for r in removed}
    issues = {i.outlook_id: i for i in unlinked}
    policy = ctx.mailbox.policy
    wb = await workbooks_client(ctx.services, ctx.mailbox)
    tz = await mailbox_time_zone(ctx.services, ctx.mailbox)
    extra = dict(extra_cursor or {})
    outlook = spec.side(items, spec.outlook, tz, ctx)
    # Every link is read only where the run goes through all of them (``sync.engine.links``).
    whole_read = direction_for(ctx.job.kind) == Direction.BOTH and full_workbooks(
        cursor, ctx.job.kind, extra, policy
    )
    links = await RunLinks.open(
        store.links, mailbox, stream, whole=full or whole_read, series=outlook.needs_series
    )
    run = TwoWayRun(
        ctx,
        spec,
        cursor,
        full,
        outlook,
        WorkbooksSide(wb, spec.workbooks, policy, spec.in_window, ctx, tz),
        links,
        extra_cursor=extra,
        removals=removals,
        issues=issues,
        identity_rows=IdentityRows.of(removed, unlinked),
    )
    try:
        await run.execute()
        ctx.identity_counts = run.identity_rows.counts()
    finally:
        if links.reads:
            ctx.count("link_reads", links.reads)
        ctx.count("links_read_whole" if links.whole else "links_read_by_id")


@dataclass
class TwoWayRun:
    ctx: RunContext
    spec: Spec
    cursor: Cursor
    full: bool  # no Outlook delta link: a new round (initial sync, resync, new window)
    outlook: OutlookSide
    workbooks: WorkbooksSide
    links: LinkIndex  # the stream's links, kept up to date as the run makes links
    extra_cursor: dict[str, Any] = field(default_factory=dict)
    removals: dict[int, Removal] = field(default_factory=dict)  # by record, kept up to date
    issues: dict[str, IdentityIssue] = field(default_factory=dict)  # by Outlook id, as loaded
    identity_rows: IdentityRows = field(default_factory=IdentityRows)  # as the run leaves them
    linked: int = field(init=False)  # the brake's base: the items linked before this run
    full_read: bool = field(init=False)  # the Workbooks side reads its whole scope

    def __post_init__(self) -> None:
        self.linked = len(self.links)
        self.full_read = full_workbooks(
            self.cursor, self.ctx.job.kind, self.extra_cursor, self.mailbox.policy
        )

    @property
    def mailbox(self) -> Mailbox:
        return self.ctx.mailbox

    @property
    def direction(self) -> Direction:
        return direction_for(self.ctx.job.kind)

    async def execute(self) -> None:
        """Stream both sides, settle each chunk, then the rest; save links; advance cursors."""
        outcome = Outcome(index=self.links)
        await look_up(self.links, workbooks=self.removals)
        self.forget_stale_removals(outcome)
        try:
            view = await self.read_outlook(outcome)
            records: list[WorkbooksRecord] = []
            mark: Watermark | None = None
            if self.direction == Direction.BOTH:
                records, mark = await self.read_workbooks(view, outcome)
            items = list(view.items.values())
            records += await self.missing_records(items, records)
            # A deleted item can only be told from one that left the view (an event out of
            # the window) by asking; worth it where a delete is remembered or deletes a record.
            checks = self.mailbox.policy.outlook_delete != "restore"
            await look_up(self.links, outlook=view.removed)
            removals = await self.outlook.removals(view.removed, self.links, deletes=checks)
            if self.full:
                removals += self.outlook.unseen(self.links, view.seen(), self.spec.in_window)
            records += await self.records_to_delete(removals, records)
            self.drop_gone_issues(view, outcome)
            self.note_held(len(items) + len(removals) + len(records))
            force = self.ctx.job.args.get("force") == "1"
            final = Chunk(items, removals, records, view.categories, force=force)
            if (await self.settle(final, outcome)).brake is not None:
                created = self.ctx.counts.get("outlook_create", 0)
                created += self.ctx.counts.get("workbooks_create", 0)
                if created:  # creates are not what the brake guards (see the docstring)
                    self.ctx.messages.append(f"new items created before the brake: {created}")
                return  # no change or delete written, cursors kept; counted as brake_stopped
            if outcome.stale:
                await self.retry_stale(outcome, final)
        finally:
            # Whatever was written is recorded, even when the run fails half-way (the
            # cursors stay put, so the rest is redone next time).
            await self.save_links(outcome)
        if outcome.replay:
            self.ctx.messages.append("stale Workbooks versions: changes kept for the next run")
            return
        await self.advance(view.delta_link, mark)

    def forget_stale_removals(self, outcome: Outcome) -> None:
        """A removal whose record was linked again after it (a run stopped between storing
        the new link and forgetting the removal) no longer holds.  One recorded after its
        link (stopped before the link was deleted) does: the replayed delta ends the link."""
        for wid, removal in list(self.removals.items()):
            link = self.links.by_workbooks.get(wid)
            if link is not None and link.updated_at > removal.removed_at:
                self.forget(wid, outcome)

    def forget(self, workbooks_id: int, outcome: Outcome) -> None:
        removal = self.removals.pop(workbooks_id, None)
        if removal is not None:
            outcome.removals[workbooks_id] = (False, removal)

    def drop_gone_issues(self, view: OutlookRound, outcome: Outcome) -> None:
        """Issues of items that are gone: deleted, or (after a full round) not returned."""
        for oid in self.issues:
            if oid in view.removed or (self.full and oid not in view.seen()):
                outcome.cleared.append(oid)

    async def missing_records(
        self, items: Sequence[OutlookItem], records: Sequence[WorkbooksRecord]
    ) -> list[WorkbooksRecord]:
        """Records the final plan needs that the Workbooks changes did not bring: those named
        by stamped unlinked items (linked again only if the record still exists), and in a
        two-way run those of pairs a one-way run linked without giving Outlook Workbooks'
        values (``Link.unsettled``)."""
        have = {r.workbooks_id for r in records}
        want = {
            i.stamped_id
            for i in items
            if i.stamped_id is not None and i.outlook_id not in self.links.by_outlook and i.shared
        }
        if self.direction == Direction.BOTH:
            want |= unsettled(self.links)
        return await self.workbooks.fetch(want - have, self.links)

    async def records_to_delete(
        self, removals: Sequence[OutlookRemoval], records: Sequence[WorkbooksRecord]
    ) -> list[WorkbooksRecord]:
        """Under ``outlook_delete = delete``, the records of items deleted in Outlook, read
        now: only one still in the user's scope is deleted (the planner decides)."""
        if self.mailbox.policy.outlook_delete != "delete":
            return []
        have = {r.workbooks_id for r in records}
        ids = {
            self.links.by_outlook[r.outlook_id].workbooks_id
            for r in removals
            if r.deleted and r.outlook_id in self.links.by_outlook
        }
        return await self.workbooks.fetch(ids - have, self.links)

    def note_held(self, n: int) -> None:
        """The most items this run held in memory at once (reported, and benchmarked)."""
        self.ctx.counts["held_max"] = max(self.ctx.counts.get("held_max", 0), n)

    # --- reading both sides --------------------------------------------------------------
    async def read_outlook(self, outcome: Outcome) -> OutlookRound:
        """One delta round; its new shared items become Workbooks records a chunk at a time."""
        view = OutlookRound()
        link = None if self.full else self.cursor.delta_link
        watch = frozenset(self.issues)
        chunks = self.outlook.read(link, self.links, view, CREATE_CHUNK, self.note_held, watch)
        async with aclosing(chunks):
            async for new in chunks:
                await self.create_in_workbooks(new, view, outcome)
        self.ctx.count("outlook_changes", view.changes)
        if view.unshared:
            self.ctx.count("skipped_not_shared", view.unshared)
        return view

    async def create_in_workbooks(
        self, new: dict[str, OutlookItem], view: OutlookRound, outcome: Outcome
    ) -> None:
        """Shared items with neither link nor stamp: those that turn out to own a record (a
        stamp the delta could not carry, or a record created from them by a run that died
        before linking) are held for the final plan; the rest are looked up by address and
        linked, reported, or given new Workbooks records now."""
        stamped = await self.outlook.fetch_stamps(list(new))
        for oid, wid in stamped.items():
            view.items[oid] = replace(new.pop(oid), stamped_id=wid)
        made = await self.workbooks.created_from(list(new))
        for oid, wid in made.items():
            view.items[oid] = replace(new.pop(oid), stamped_id=wid, found_by="reference")
        if not new:
            return
        self.ctx.count("create_chunks")
        matches = await self.workbooks.candidates(new, self.links) if self.spec.slots else {}
        chunk = Chunk(items=list(new.values()), categories=view.categories, matches=matches)
        await self.settle(chunk, outcome)
        view.created(new)

    async def read_workbooks(
        self, view: OutlookRound, outcome: Outcome
    ) -> tuple[list[WorkbooksRecord], Watermark]:
        """Workbooks changes page by page; records nothing pairs with get their Outlook items a
        chunk at a time (creating Outlook items never writes Workbooks, so the reader's paging
        is undisturbed).  Returns the records held for the final plan and the new watermark.
        An unlinked item held for the plan always carries a stamp by now (fetched, or found by
        created_through_reference), so the stamps name every record an item claims."""
        full = self.full_workbooks()
        changes = WorkbooksChanges(
            Watermark() if full else Watermark.from_json(self.cursor.watermark)
        )
        outlook_held = len(view.items)
        chunks = self.workbooks.read(
            changes,
            self.links,
            view.claimed(),
            watch=self.removals.keys(),
            full=full,
            chunk=CREATE_CHUNK,
            note=lambda n: self.note_held(outlook_held + n),
        )
        async with aclosing(chunks):
            async for free in chunks:
                self.ctx.count("create_chunks")
                await self.settle(Chunk(records=free), outcome)
        if full:
            self.extra_cursor["workbooks_full_at"] = utcnow().isoformat()
        return changes.held, changes.mark

    def full_workbooks(self) -> bool:
        return self.full_read

    async def retry_stale(self, outcome: Outcome, first: Chunk) -> None:
        """Someone changed a record since we read it (stale ``lock_version``): re-read those
        records, merge again and write once more (workbooks-api.md §3.7).  What is still stale
        after that is left for the next run, with the cursors kept."""
        ids = sorted({a.workbooks_id for a in outcome.stale if a.workbooks_id})
        oids = {a.outlook_id for a in outcome.stale}
        outcome.stale, outcome.replay = [], False
        fresh = await self.workbooks.reread(ids, self.links)
        if len(fresh) < len(ids):
            outcome.replay = True  # deleted meanwhile: the next two-way run sees it
        again = Chunk(
            items=[i for i in first.items if i.outlook_id in oids],
            records=fresh,
            categories=first.categories,
            force=True,
            again=True,
        )
        self.ctx.count("stale_retried", len(ids))
        second = Outcome()
        try:
            await self.settle(again, second)
        finally:
            await self.save_links(second)
        outcome.replay = outcome.replay or second.replay

    # --- plan and apply ------------------------------------------------------------------
    async def settle(self, chunk: Chunk, outcome: Outcome) -> Plan:
        """Plan one chunk (pure) and apply it, unless the brake stopped it.  Every plan of the
        run is made here.  Only the final chunk (and its forced retry) holds linked items, so
        the brake, taken of the items linked before the run, sees every change or delete the
        run would make to them; the chunks before it only create or link new items."""
        await look_up(
            self.links,
            outlook=[i.outlook_id for i in chunk.items] + [r.outlook_id for r in chunk.removals],
            workbooks=[r.workbooks_id for r in chunk.records]
            + [i.stamped_id for i in chunk.items if i.stamped_id is not None]
            + [c.workbooks_id for found in chunk.matches.values() for c in found],
        )
        ident = Identity(
            matches=chunk.matches,
            slots=self.spec.slots,
            removed=frozenset(self.removals),
            issues=frozenset(self.issues),
        )
        the_plan = plan(
            outlook_items=chunk.items,
            outlook_removals=chunk.removals,
            workbooks_records=chunk.records,
            links=self.links,
            policy=SyncPolicy.from_mailbox(self.mailbox.policy),
            direction=self.direction,
            workbooks_type=self.spec.workbooks_type,
            force=chunk.force,
            linked=self.linked,
            ident=ident,
        )
        if chunk.again:
            self.record_conflicts(the_plan)
        else:
            self.record_plan(the_plan)
        self.record_identity(the_plan, outcome)
        if the_plan.brake is None:
            await self.apply(the_plan, chunk.categories, outcome)
        return the_plan

    def record_identity(self, the_plan: Plan, outcome: Outcome) -> None:
        """Items left ambiguous or duplicate, issues that are over, removals of deleted
        records: kept with the links (what the run wrote does not change them)."""
        for issue in the_plan.issues:
            outcome.issues.append(self.issue(issue))
            if len(outcome.issues) <= 5:
                self.ctx.messages.append(describe_issue(issue, self.spec.outlook.title))
        outcome.cleared += the_plan.cleared
        for wid in the_plan.forget:
            self.forget(wid, outcome)

    def issue(self, issue: Issue) -> IdentityIssue:
        known = self.issues.get(issue.outlook_id)
        now = utcnow()
        return IdentityIssue(
            mailbox=self.mailbox.id,
            stream=self.ctx.job.stream,
            outlook_id=issue.outlook_id,
            kind=issue.kind,
            title=self.spec.outlook.title(issue.fields),
            addresses=list(_addresses(issue.fields, self.spec.slots)),
            candidates=[
                MatchCandidate(
                    workbooks_type=c.workbooks_type,
                    workbooks_id=c.workbooks_id,
                    name=c.name,
                    in_scope=c.in_scope,
                    address=c.address,
                    via=c.via,
                )
                for c in issue.candidates[:MAX_CANDIDATES]
            ],
            workbooks_type=issue.workbooks_type,
            workbooks_id=issue.workbooks_id,
            linked_outlook_id=issue.linked_outlook_id,
            matched_by=issue.matched_by,
            first_seen=known.first_seen if known is not None else now,
            last_seen=now,
        )

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
        self, the_plan: Plan, categories: Mapping[str, list[str]], outcome: Outcome
    ) -> None:
        """One Workbooks batch for the whole plan, then the Outlook halves in waves, saving the
        links of each wave in the background while the next one runs."""
        actions = list(the_plan.actions)
        written = await self.workbooks.write(actions)
        for i in written.stale:
            outcome.replay = True
            outcome.stale.append(actions[i])
        for start in range(0, len(actions), GRAPH_WAVE):
            wave = enumerate(actions[start : start + GRAPH_WAVE], start)
            await run_wave(
                [self.finish(a, written.saved.get(i), categories, outcome) for i, a in wave]
            )
            await self.save_links(outcome, background=True)

    async def finish(
        self,
        a: Action,
        saved: Saved | None,
        categories: Mapping[str, list[str]],
        outcome: Outcome,
    ) -> None:
        """The Outlook half of one action, then its link (only if every write succeeded)."""
        if needs_write(a) and saved is None:
            return  # the Workbooks write failed: leave the pair as it was
        wid, lock = saved if saved else (a.workbooks_id or 0, a.lock_version)
        try:
            outlook_id, change_key = await self.write_outlook(a, wid, categories)
        except (NotFound, InvalidRequest) as exc:
            self.ctx.count("item_errors")
            self.ctx.messages.append(f"{a.kind} {a.outlook_id or a.workbooks_id}: {exc}")
            if a.previous is not None and isinstance(exc, NotFound):
                outcome.removed.append(a.previous)  # the Outlook item is gone: unlink
                if self.mailbox.policy.outlook_delete == "unlink":
                    self.remember(a.previous, "deleted", outcome)  # the user deleted it
            return
        if a.kind in REMOVALS:
            if a.previous is not None:
                if a.remember is not None:
                    self.remember(a.previous, a.remember, outcome)
                outcome.removed.append(a.previous)
            return
        if a.previous is not None and a.previous.outlook_id != outlook_id:
            outcome.removed.append(a.previous)  # the pair is now another item: drop the old link
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
            unsettled=a.unsettled,
            updated_at=utcnow(),
        )
        outcome.links.append(link)
        self.forget(wid, outcome)  # the record has an item again: the user shared one
        if a.previous is None and a.kind != ActionKind.CREATE_OUTLOOK and outcome.index is not None:
            # Made from an Outlook item while the round is still read: a later page may show
            # the item again, and the Workbooks read will return the record; both must find
            # the pair.  (Items created in Outlook are not added: a full Workbooks read is
            # still running and would take them for linked records it did not return.)
            outcome.index.add(link)

    def remember(self, link: Link, how: RemovalHow, outcome: Outcome) -> None:
        """The user removed this pair's item from Outlook: no run may put it back."""
        removal = Removal(
            mailbox=self.mailbox.id,
            stream=self.ctx.job.stream,
            workbooks_type=link.workbooks_type,
            workbooks_id=link.workbooks_id,
            outlook_id=link.outlook_id,
            title=self.spec.outlook.title(link.snapshot),
            how=how,
        )
        self.removals[link.workbooks_id] = removal
        outcome.removals[link.workbooks_id] = (True, removal)
        self.ctx.count("removals_remembered")

    async def write_outlook(
        self, a: Action, workbooks_id: int, categories: Mapping[str, list[str]]
    ) -> tuple[str, str]:
        """What ``a`` writes in Outlook; returns the item's id and changeKey afterwards."""
        outlook_id, change_key = a.outlook_id or "", a.change_key
        if a.kind == ActionKind.DELETE_OUTLOOK and a.outlook_id:
            await self.outlook.delete(a.outlook_id)
        elif a.kind in REMOVALS:
            pass  # unlinking, or deleting in Workbooks, leaves the Outlook item alone
        elif a.kind == ActionKind.CREATE_OUTLOOK:
            outlook_id, change_key = await self.outlook.create(a.fields, workbooks_id)
        elif a.stamp_outlook:  # a record created from the item, or an existing one just linked
            cats = list(categories.get(outlook_id) or [])
            stamp = await self.outlook.stamp(outlook_id, workbooks_id, a.fields, cats, a.to_outlook)
            change_key = stamp or change_key
        elif a.to_outlook:
            update = await self.outlook.update(outlook_id, a.fields, a.to_outlook)
            change_key = update or change_key
        return outlook_id, change_key

    # --- persist -------------------------------------------------------------------------
    async def save_links(self, outcome: Outcome, *, background: bool = False) -> None:
        """Store the links collected so far, with the identity changes.  During the Graph
        writes this runs in the background (one save at a time), so table writes overlap the
        next wave and a run that dies keeps what it finished."""
        if outcome.saving is not None:
            task, outcome.saving = outcome.saving, None
            await task
        if not outcome.pending():
            return
        taken = Outcome(
            links=outcome.links,
            removed=outcome.removed,
            removals=outcome.removals,
            issues=outcome.issues,
            cleared=outcome.cleared,
        )
        outcome.links, outcome.removed, outcome.removals = [], [], {}
        outcome.issues, outcome.cleared = [], []
        save = self.persist(taken)
        if background:
            outcome.saving = asyncio.ensure_future(save)
        else:
            await save

    async def persist(self, done: Outcome) -> None:
        """Removals are recorded before the links they end are deleted, and forgotten only
        after the new links are stored: a run stopped in between never loses a removal."""
        store = self.ctx.services.store
        mailbox, stream = self.mailbox.id, self.ctx.job.stream
        remember = [r for keep, r in done.removals.values() if keep]
        forget = [r for keep, r in done.removals.values() if not keep]
        await store.identity.save(mailbox, stream, removals=remember, issues=done.issues)
        self.identity_rows.saved(remember, done.issues)
        if done.links or done.removed:
            summary = self.links.persisted if isinstance(self.links, RunLinks) else None
            await store.links.put_many(done.links, removed=done.removed, summary=summary)
        linked = {link.outlook_id for link in done.links}
        cleared = [
            o for o in dict.fromkeys(done.cleared) if o not in {i.outlook_id for i in done.issues}
        ]
        cleared += [o for o in linked if o in self.issues and o not in cleared]
        await store.identity.drop(mailbox, stream, removals=forget, issues=cleared)
        self.identity_rows.dropped(forget, cleared)

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

        # Written with the lease's release (one write, not two); a run cut before it reads
        # the same changes again, which the identity rules settle without creating twice.
        await self.ctx.save_cursor(self.ctx.job.stream, change, at_release=True)


def unsettled(links: LinkIndex) -> set[int]:
    """Records of pairs a one-way run linked without giving Outlook Workbooks' values."""
    if isinstance(links, RunLinks):
        return links.unsettled()
    return {w for w, link in links.by_workbooks.items() if link.unsettled}


def _addresses(fields: Mapping[str, Any], slots: Sequence[str]) -> list[str]:
    return [str(fields.get(s) or "").strip() for s in slots if str(fields.get(s) or "").strip()]


def describe_issue(issue: Issue, title: Callable[[Mapping[str, Any]], str]) -> str:
    """One line for the run's message."""
    name = title(issue.fields) or issue.outlook_id
    if issue.kind == "ambiguous":
        ids = ", ".join(str(c.workbooks_id) for c in issue.candidates)
        return f"ambiguous: '{name}' matches several records ({ids}); nothing linked or created"
    return (
        f"duplicate: '{name}' stands for record {issue.workbooks_id or '(new)'}, already held "
        f"by Outlook item {issue.linked_outlook_id}; nothing linked or created"
    )


def compact(mark: Watermark) -> Watermark:
    """Bound the stored watermark: past ``MAX_SEEN_FILTERS`` records in one second (a bulk
    import) the reader continues that second by ``id gt`` the highest seen id anyway, so only
    the highest ids need keeping; without this a 10,000-record import in one second would not
    fit in a 32 KiB table property."""
    if len(mark.seen) <= MAX_SEEN_FILTERS:
        return mark
    keep = sorted(mark.seen)[-(MAX_SEEN_FILTERS + 1) :]
    return Watermark(mark.updated_at, frozenset(keep))
