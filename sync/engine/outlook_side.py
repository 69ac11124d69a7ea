"""The Outlook half of a two-way stream: one delta round read as mapped items, and item writes.

Reading keeps only the mapped form of a round (``OutlookRound``): the JSON of a page is dropped
once read, items neither shared nor linked are only counted, and new shared items (no link, no
stamp) are handed out a chunk at a time while the round goes on, for the run to create their
Workbooks records.  Writing maps canonical fields to Graph JSON and goes through
``sync.graph.items``, which knows where items live and how they are stamped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Mapping, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync.core.mapping.contacts import is_shared
from sync.core.reconcile import LinkIndex, OutlookItem, OutlookRemoval
from sync.engine.links import look_up
from sync.engine.registry import RunContext
from sync.graph.items import OutlookItems

Fields = dict[str, Any]
GRAPH_WAVE = 256  # coroutines started at once; the client's limiter keeps ≤4 per mailbox in flight


@dataclass(frozen=True)
class OutlookMapping:
    """How one Outlook item kind maps to canonical fields (``sync.core.mapping``)."""

    read: Callable[[Mapping[str, Any], str], Fields]  # Graph JSON, time zone -> fields
    write: Callable[[Mapping[str, Any], str, Iterable[str] | None], Fields]  # -> Graph JSON
    title: Callable[[Mapping[str, Any]], str]  # the name a To Do linkedResource shows


@dataclass
class OutlookRound:
    """One delta round in mapped form: shared or linked items (the last occurrence of an id
    wins), the categories of items we may stamp, removed ids, and how many were skipped."""

    items: dict[str, OutlookItem] = field(default_factory=dict)  # held for the final plan
    pending: dict[str, OutlookItem] = field(default_factory=dict)  # new: created a chunk at a time
    done: set[str] = field(default_factory=set)  # created during the round
    categories: dict[str, list[str]] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    delta_link: str = ""
    unshared: int = 0  # neither shared nor linked: nothing to do but count them
    changes: int = 0  # entries the round returned

    @property
    def held(self) -> int:
        return len(self.items) + len(self.pending)

    def seen(self) -> Set[str]:
        """The ids this round returned that still exist."""
        return self.items.keys() | self.done

    def claimed(self) -> set[int]:
        """Workbooks ids stamped on items held for the plan: those records pair with them."""
        return {i.stamped_id for i in self.items.values() if i.stamped_id is not None}

    def take_pending(self) -> dict[str, OutlookItem]:
        pending, self.pending = self.pending, {}
        return pending

    def created(self, outlook_ids: Iterable[str]) -> None:
        """These items got their Workbooks records (and stamps) during the round."""
        for oid in outlook_ids:
            self.done.add(oid)
            self.categories.pop(oid, None)


class OutlookSide:
    """Reads and writes one mailbox's items of one kind, in canonical fields."""

    # Whether a round goes through every linked series of the stream (``after_round``), so
    # the run needs them named (``sync.engine.links.series_ends``).
    needs_series = False

    def __init__(
        self, items: OutlookItems, mapping: OutlookMapping, time_zone: str, ctx: RunContext
    ) -> None:
        self.items, self.mapping, self.tz = items, mapping, time_zone
        self.ctx = ctx  # where counts go

    # --- reading -------------------------------------------------------------------------
    async def read(
        self,
        link: str | None,
        links: LinkIndex,
        into: OutlookRound,
        chunk: int,
        note: Callable[[int], None],
        watch: Set[str] = frozenset(),
    ) -> AsyncGenerator[dict[str, OutlookItem]]:
        """Read one delta round from ``link`` (None: a new round) into ``into``, page by page;
        yield the new shared items each time ``chunk`` of them have gathered after a page, and
        the rest at the end.  ``note`` gets the number of items held after every page.  The
        links are looked up as each page is read, so an item the caller linked in the meantime
        is paired, not created twice, when a later page shows it again.  Items in ``watch``
        (unlinked, with a recorded identity issue) are kept like linked ones when unshared, so
        the plan can clear their issue."""
        reader = self.items.delta(link)
        unshared: set[str] = set()
        category = self.items.category
        async for page in reader:
            entries = page.get("value", [])
            await look_up(links, outlook=[str(e["id"]) for e in entries if "id" in e])
            for entry in entries:
                oid = str(entry["id"])
                into.changes += 1
                into.items.pop(oid, None)  # the last occurrence wins
                into.pending.pop(oid, None)
                into.categories.pop(oid, None)
                unshared.discard(oid)
                if "@removed" in entry:
                    into.removed.append(oid)
                    continue
                shared = is_shared(entry, category)
                linked = oid in links.by_outlook
                if not shared and not linked and oid not in watch:
                    unshared.add(oid)
                    continue
                item = self.to_item(oid, entry, shared)
                if shared and not linked:  # may be stamped later: keep its categories
                    into.categories[oid] = list(entry.get("categories") or [])
                    if item.stamped_id is None:
                        into.pending[oid] = item
                        continue
                into.items[oid] = item
            note(into.held)
            if len(into.pending) >= chunk:
                yield into.take_pending()
        if into.pending:
            yield into.take_pending()
        into.delta_link = reader.delta_link
        present = into.items.keys() | unshared
        into.removed = [r for r in dict.fromkeys(into.removed) if r not in present]
        into.unshared = len(unshared)
        await self.after_round(link is None, links, into)

    async def after_round(self, full: bool, links: LinkIndex, into: OutlookRound) -> None:
        """A stream's own step once its round is read (``full``: a new round); the calendar
        moves linked series on to their next occurrence here (``sync.engine.series``)."""

    def to_item(self, oid: str, entry: Mapping[str, Any], shared: bool) -> OutlookItem:
        return OutlookItem(
            oid,
            self.mapping.read(entry, self.tz),
            shared=shared,
            stamped_id=self.items.stamped_id(entry),
            change_key=str(entry.get("changeKey") or ""),
            modified=_graph_time(entry.get("lastModifiedDateTime")),
        )

    async def fetch_stamps(self, need: list[str]) -> dict[str, int]:
        """Our stamp on items where the delta cannot carry it (contacts, events): a GET each."""
        if self.items.stamp_in_delta or not need:
            return {}
        found = await gather_in_waves(self.items.fetch_stamp(oid) for oid in need)
        self.ctx.count("graph_stamp_reads", len(need))
        return {oid: wid for oid, wid in zip(need, found, strict=True) if wid}

    async def removals(
        self, removed: list[str], links: LinkIndex, *, deletes: bool
    ) -> list[OutlookRemoval]:
        """A removal of a linked item is a delete unless the item still exists (an event that
        left the calendarView window is reported removed too; graph.md §2.4).  Checked only
        when ``deletes`` (the policy deletes in Workbooks, or remembers the user's deletes),
        where it matters."""
        linked = [oid for oid in removed if oid in links.by_outlook]
        if not deletes or not self.items.removed_may_exist:
            return [OutlookRemoval(oid) for oid in linked]
        alive = await gather_in_waves(self.items.exists(oid) for oid in linked)
        return [OutlookRemoval(oid, deleted=not a) for oid, a in zip(linked, alive, strict=True)]

    def unseen(
        self,
        links: LinkIndex,
        seen: Set[str],
        in_window: Callable[[Mapping[str, Any]], bool] | None,
    ) -> list[OutlookRemoval]:
        """After a complete new round (initial, resync, new window): a linked item the round
        did not return was deleted while we were not looking, unless it merely lies outside
        the calendar window, which only unlinks."""
        out: list[OutlookRemoval] = []
        for oid, link in links.by_outlook.items():
            if oid in seen:
                continue
            inside = in_window(link.snapshot) if in_window is not None else True
            out.append(OutlookRemoval(oid, deleted=inside))
        self.ctx.count("outlook_unseen", len(out))
        return out

    # --- writing: each returns the item's new changeKey ("" when Graph gave none) ---------
    async def create(self, fields: Mapping[str, Any], workbooks_id: int) -> tuple[str, str]:
        """A new item for a Workbooks record, stamped; returns (its id, its changeKey)."""
        body = self.mapping.write(fields, self.tz, None)
        created = await self.items.create(body, workbooks_id, self.mapping.title(fields))
        self.ctx.count("outlook_create")
        return str(created["id"]), str(created.get("changeKey") or "")

    async def stamp(
        self,
        outlook_id: str,
        workbooks_id: int,
        fields: Mapping[str, Any],
        categories: list[str],
        changed: Set[str] = frozenset(),
    ) -> str:
        """Put the id of the record just created from this item, or just linked to it, on it;
        with ``changed`` also write those fields (a first link: one PATCH where the stamp is
        a property, the stamp then the update where it is a linkedResource)."""
        title = self.mapping.title(fields)
        if changed and not self.items.stamp_in_delta:
            body = {**self.mapping.write(fields, self.tz, changed), "categories": categories}
            stamped = await self.items.update(
                outlook_id, self.items.stamped_body(body, workbooks_id, title)
            )
            self.ctx.count("outlook_stamp")
            self.ctx.count("outlook_update")
            return str(stamped.get("changeKey") or "")
        stamped = await self.items.stamp(outlook_id, workbooks_id, title, categories)
        self.ctx.count("outlook_stamp")
        if changed:
            return await self.update(outlook_id, fields, changed)
        return str(stamped.get("changeKey") or "")

    async def update(self, outlook_id: str, fields: Mapping[str, Any], changed: Set[str]) -> str:
        body = self.mapping.write(fields, self.tz, changed)
        updated = await self.items.update(outlook_id, body)
        self.ctx.count("outlook_update")
        return str(updated.get("changeKey") or "")

    async def delete(self, outlook_id: str) -> None:
        await self.items.delete(outlook_id)
        self.ctx.count("outlook_delete")


def _graph_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def gather_in_waves(coros: Iterable[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run in waves so 10,000 Graph calls do not become 10,000 pending tasks at once."""
    out: list[Any] = []
    wave: list[Coroutine[Any, Any, Any]] = []
    for coro in coros:
        wave.append(coro)
        if len(wave) >= GRAPH_WAVE:
            out += await run_wave(wave)
            wave = []
    if wave:
        out += await run_wave(wave)
    return out


async def run_wave(coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run one wave together.  A failure cancels the rest of its wave (TaskGroup) and is
    re-raised as itself, so the runner sees ``RetryLater`` etc. rather than an exception group."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coros]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [t.result() for t in tasks]
