"""The calendar's Outlook side: recurring series as one pair each (``sync.core.series``).

``sync.graph.items.Events`` folds every series of a delta round into one row keyed by its
master, so the planner sees one item per series.  This side adds what the round alone cannot
give (docs/two-way-sync.md, "Recurring meetings"):

* **time passing**: a linked series whose tracked occurrence ended since the last check is
  read again (master + ``instances``) and moves on to its next occurrence; checked once per
  occurrence, so an ended series costs nothing on later runs.  A full round re-reads every
  series anyway;
* **the description stays Workbooks'**: after a series-backed meeting is created its
  description is not copied from Outlook again (notes added in Workbooks are kept), so a linked
  series reports the snapshot's body;
* **removals**: a removed (or, in a full round, unseen) linked series is looked up: still there
  means it left the window (unlink); gone means deleted, and its Workbooks meeting goes too
  when the service created it from the series and it had not yet taken place;
* **nothing is written to a series**: no update and no delete from Workbooks reaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import replace
from datetime import datetime
from typing import Any

from sync.core import series
from sync.core.mapping.contacts import is_shared
from sync.core.reconcile import LinkIndex, OutlookRemoval
from sync.engine.links import correct_series, look_up, series_ends
from sync.engine.outlook_side import (
    OutlookMapping,
    OutlookRound,
    OutlookSide,
    gather_in_waves,
)
from sync.engine.registry import RunContext
from sync.graph.items import Events


class SeriesSide(OutlookSide):
    """Reads and writes the calendar, one pair per recurring series.  ``now`` places series
    on their next occurrence; ``since`` is when the previous run checked them."""

    needs_series = True  # every linked series is checked for time passing (``series_ends``)

    def __init__(
        self,
        items: Events,
        mapping: OutlookMapping,
        time_zone: str,
        ctx: RunContext,
        *,
        now: datetime,
        since: datetime | None,
    ) -> None:
        super().__init__(items, mapping, time_zone, ctx)
        self.events, self.now, self.since = items, now, since
        self.series_ids: set[str] = set()  # pairs that are series: never written from Workbooks
        self.handled: set[str] = set()  # series removals decided here, not by ``unseen``

    # --- reading -------------------------------------------------------------------------
    async def after_round(self, full: bool, links: LinkIndex, into: OutlookRound) -> None:
        ends = series_ends(links)
        self.series_ids = set(ends)
        self.series_ids |= {k for k, v in self.events.kinds.items() if v == series.MASTER}
        if self.events.recurring != "next":
            return
        if full:
            seen = into.seen()
            into.removed += [oid for oid in ends if oid not in seen]
        else:
            await self.advance(links, ends, into)
        self.keep_descriptions(links, into)

    async def advance(self, links: LinkIndex, ends: Mapping[str, str], into: OutlookRound) -> None:
        """Linked series the round did not carry whose tracked occurrence has passed: read
        each again and hold it for the plan, on its next occurrence.  ``ends`` names the
        candidates; each one's own link decides."""
        skip = into.items.keys() | into.done | set(into.removed)
        maybe = [
            oid
            for oid, text in ends.items()
            if oid not in skip and series.due_at(series.end_of(text, self.tz), self.since, self.now)
        ]
        await look_up(links, outlook=maybe)
        fixed = await correct_series(links, {oid: ends[oid] for oid in maybe})
        if fixed:
            self.ctx.count("series_summary_corrected", fixed)
        due = [
            oid
            for oid in maybe
            if (link := links.by_outlook.get(oid)) is not None
            and series.due(link.snapshot, self.since, self.now, self.tz)
        ]
        if not due:
            return
        rows = await gather_in_waves(self.events.current(oid, self.now) for oid in due)
        for oid, row in zip(due, rows, strict=True):
            if row is not None:  # gone or no longer a series: the next delta says so
                into.items[oid] = self.to_item(oid, row, is_shared(row, self.items.category))
        self.ctx.count("series_read_again", len(due))

    def keep_descriptions(self, links: LinkIndex, into: OutlookRound) -> None:
        """A linked series reports its snapshot's body: the description belongs to Workbooks
        once the meeting exists (see the module docstring)."""
        for oid, item in list(into.items.items()):
            link = links.by_outlook.get(oid)
            if link is None or not series.is_series(item.fields):
                continue
            body = link.snapshot.get("body", item.fields.get("body"))
            if body != item.fields.get("body"):
                into.items[oid] = replace(item, fields={**item.fields, "body": body})

    async def removals(
        self, removed: list[str], links: LinkIndex, *, deletes: bool
    ) -> list[OutlookRemoval]:
        """Series are looked up whatever the policy: a series that still exists only left the
        window; a deleted one may take its meeting with it (``series.deletes_record``)."""
        linked = [oid for oid in removed if oid in links.by_outlook]
        mine = [oid for oid in linked if series.is_series(links.by_outlook[oid].snapshot)]
        others = [oid for oid in removed if oid not in set(mine)]
        out = await super().removals(others, links, deletes=deletes)
        if not mine:
            return out
        alive = await gather_in_waves(self.items.exists(oid) for oid in mine)
        for oid, exists in zip(mine, alive, strict=True):
            link = links.by_outlook[oid]
            end = series.tracked_end(link.snapshot, self.tz)
            wipe = not exists and series.deletes_record(link.created_by_service, end, self.now)
            out.append(OutlookRemoval(oid, deleted=not exists, delete_record=wipe))
        self.handled.update(mine)
        return out

    def unseen(
        self,
        links: LinkIndex,
        seen: Set[str],
        in_window: Callable[[Mapping[str, Any]], bool] | None,
    ) -> list[OutlookRemoval]:
        return super().unseen(links, set(seen) | self.handled, in_window)

    # --- writing -------------------------------------------------------------------------
    def is_series_pair(self, outlook_id: str, fields: Mapping[str, Any]) -> bool:
        return outlook_id in self.series_ids or series.is_series(fields)

    async def update(self, outlook_id: str, fields: Mapping[str, Any], changed: Set[str]) -> str:
        """Nothing flows from Workbooks into a series: its pattern, times, subject and body
        stay as the organiser set them, and its attendees get no update."""
        if self.is_series_pair(outlook_id, fields):
            self.ctx.count("series_not_written")
            return ""
        return await super().update(outlook_id, fields, changed)

    async def delete(self, outlook_id: str) -> None:
        """A series is never deleted for a Workbooks change (its attendees would get
        cancellations); the pair is only unlinked."""
        if outlook_id in self.series_ids:
            self.ctx.count("series_not_deleted")
            return
        await super().delete(outlook_id)
