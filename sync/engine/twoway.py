"""One run of a two-way stream (contacts, calendar, To Do): two sides, read in chunks, each
chunk planned and applied, then the links and the cursors.

The Outlook side (``outlook_side``) reads one delta round and the Workbooks side
(``workbooks_side``) the changed records, both in mapped form, never holding raw pages.  The run:

1. **Outlook, streamed.**  New shared items (no link, no stamp) come out a chunk at a time
   while the round is read.  Those that already own a record (a stamp the delta cannot carry,
   fetched per item for contacts and events, or a record whose ``created_through_reference``
   names them, left by a run that died before linking) are kept for the final plan; the rest
   are planned and applied at once: a Workbooks record each, the item stamped, the link made
   and added to the run's link index, so a later page showing the item again pairs it.
2. **Workbooks, streamed** (two-way jobs only).  Records nothing can pair with (not linked,
   not stamped on an item of this round) are planned and applied a chunk at a time: an Outlook
   item each when in scope.
3. **The final chunk**: what needs both sides or the mass-change brake's totals: changed
   linked pairs, stamped unlinked items, removals (a full round also treats linked items it
   did not return as removed), and linked records a full Workbooks read did not return.  The
   brake is decided on it, over the run's changes to linked items (the chunks before it only
   create).  Records whose write hit a stale ``lock_version`` are re-read, planned again and
   written once more.

Every chunk goes the same way: ``plan`` (``sync.core.reconcile``, pure) -> apply (one
Workbooks batch, then the Graph writes in waves, each action's link kept only if all its writes
succeeded) -> links saved (in the background while the next wave runs, and always before the
run ends, also when it fails).  Cursors advance last, and only when nothing needs replaying.

Order of durability (design-examples §3.2): writes first, then the links that record them,
and only then the cursors.  A run killed anywhere repeats the same delta next time; every step
is idempotent because

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
from collections.abc import Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.core.errors import InvalidRequest, NotFound
from sync.core.jobs import JobKind
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
from sync.engine.clients import mailbox_time_zone, workbooks_client
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

    @property
    def workbooks_type(self) -> str:
        return self.workbooks.record.type_name


@dataclass(frozen=True)
class Chunk:
    """Changes planned and applied together.  ``again``: a re-plan after a stale write (forced
    past the brake; only its conflicts are counted, its actions were the first time)."""

    items: Sequence[OutlookItem] = ()
    removals: Sequence[OutlookRemoval] = ()
    records: Sequence[WorkbooksRecord] = ()
    categories: Mapping[str, list[str]] = field(default_factory=dict)  # of items we may stamp
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
    store = ctx.services.store.links
    links = LinkIndex([link async for link in store.list(ctx.mailbox.id, ctx.job.stream)])
    policy = ctx.mailbox.policy
    wb = await workbooks_client(ctx.services, ctx.mailbox)
    tz = await mailbox_time_zone(ctx.services, ctx.mailbox)
    run = TwoWayRun(
        ctx,
        spec,
        cursor,
        full,
        OutlookSide(items, spec.outlook, tz, ctx),
        WorkbooksSide(wb, spec.workbooks, policy, spec.in_window, ctx, tz),
        links,
        extra_cursor=dict(extra_cursor or {}),
    )
    await run.execute()


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
    linked: int = field(init=False)  # the brake's base: the items linked before this run

    def __post_init__(self) -> None:
        self.linked = len(self.links)

    @property
    def mailbox(self) -> Mailbox:
        return self.ctx.mailbox

    @property
    def direction(self) -> Direction:
        return direction_for(self.ctx.job.kind)

    async def execute(self) -> None:
        """Stream both sides, settle each chunk, then the rest; save links; advance cursors."""
        outcome = Outcome(index=self.links)
        try:
            view = await self.read_outlook(outcome)
            records: list[WorkbooksRecord] = []
            mark: Watermark | None = None
            if self.direction == Direction.BOTH:
                records, mark = await self.read_workbooks(view, outcome)
            items = list(view.items.values())
            deletes = self.mailbox.policy.outlook_delete == "delete"
            removals = await self.outlook.removals(view.removed, self.links, deletes=deletes)
            if self.full:
                removals += self.outlook.unseen(self.links, view.seen(), self.spec.in_window)
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

    def note_held(self, n: int) -> None:
        """The most items this run held in memory at once (reported, and benchmarked)."""
        self.ctx.counts["held_max"] = max(self.ctx.counts.get("held_max", 0), n)

    # --- reading both sides --------------------------------------------------------------
    async def read_outlook(self, outcome: Outcome) -> OutlookRound:
        """One delta round; its new shared items become Workbooks records a chunk at a time."""
        view = OutlookRound()
        link = None if self.full else self.cursor.delta_link
        chunks = self.outlook.read(link, self.links, view, CREATE_CHUNK, self.note_held)
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
        before linking) are held for the final plan; the rest become Workbooks records now."""
        owners = await self.outlook.fetch_stamps(list(new))
        owners.update(await self.workbooks.created_from([o for o in new if o not in owners]))
        for oid, wid in owners.items():
            view.items[oid] = replace(new.pop(oid), stamped_id=wid)
        if not new:
            return
        self.ctx.count("create_chunks")
        chunk = Chunk(items=list(new.values()), categories=view.categories)
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
        run would make to them; the chunks before it only create."""
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
        )
        if chunk.again:
            self.record_conflicts(the_plan)
        else:
            self.record_plan(the_plan)
        if the_plan.brake is None:
            await self.apply(the_plan, chunk.categories, outcome)
        return the_plan

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
            return
        if a.kind in REMOVALS:
            if a.previous is not None:
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
            updated_at=utcnow(),
        )
        outcome.links.append(link)
        if a.kind == ActionKind.CREATE_WORKBOOKS and outcome.index is not None:
            # Made while the Outlook round is still read: a later page may show the item
            # again, and the Workbooks read will return the record; both must find the pair.
            outcome.index.add(link)

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
        elif a.kind == ActionKind.CREATE_WORKBOOKS:
            cats = list(categories.get(outlook_id) or [])
            stamp = await self.outlook.stamp(outlook_id, workbooks_id, a.fields, cats)
            change_key = stamp or change_key
        elif a.to_outlook:
            update = await self.outlook.update(outlook_id, a.fields, a.to_outlook)
            change_key = update or change_key
        return outlook_id, change_key

    # --- persist -------------------------------------------------------------------------
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
