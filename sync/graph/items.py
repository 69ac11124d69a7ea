"""Outlook items the two-way streams read and write: contacts, calendar events, To Do tasks.

Raw JSON, not pydantic models: the field maps (``sync.core.mapping``) read properties a model
would have to list one by one (contact addresses, home phones), and an initial sync maps tens
of thousands of them.  Every request goes through ``GraphClient.request`` (the per-mailbox
limiter, retries, error translation) and every delta round through its one pager,
``DeltaReader``.  One class per kind says where the items live and how our Workbooks id is
stamped on them (graph.md §4.4-4.5): contacts and events carry it as a single-value extended
property, which their delta cannot return (a GET with ``$expand`` reads it); a To Do task
carries it as a ``linkedResource``, which the task delta expands.

Recurring events (``Events``): calendarView delta returns a series as its master, bare
occurrence stubs and full exceptions (graph.md §2.4 "Series"); the events reader folds each
series into one row keyed by its master (``sync.core.series``), reading a master the round did
not carry with one GET (kept for the run), and ``Events.current`` reads a linked series again
(master + ``instances``) when the occurrence it stands for has passed.  A series is never
rewritten or deleted from here: time and recurrence changes are dropped from an update of a
series item, and deleting one is refused.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sync.core import series
from sync.core.errors import InvalidRequest, NotFound
from sync.core.graph_models import WORKBOOKS_ID_PROPERTY
from sync.core.mapping import activities, contacts
from sync.graph.client import (
    IMMUTABLE_IDS,
    UTC_TIMEZONE,
    DeltaReader,
    GraphClient,
    Raw,
    delta_prefer,
    iso_utc,
    raw_page,
)
from sync.graph.errors import SOURCE
from sync.graph.paths import segment, user_path

EXPAND_STAMP = f"singleValueExtendedProperties($filter=id eq '{WORKBOOKS_ID_PROPERTY}')"


class OutlookItems(ABC):
    """The items of one kind in one mailbox, stamped with our Workbooks id as an extended
    property (contacts, events); To Do tasks override the stamp."""

    page_size = 100
    prefer_extra: tuple[str, ...] = ()
    stamp_in_delta = False  # the contact/event delta cannot $expand extended properties
    removed_may_exist = False  # an @removed entry means deleted
    expand_stamp = EXPAND_STAMP  # what a GET must $expand to return our stamp

    def __init__(self, client: GraphClient, mailbox: str, category: str) -> None:
        self.client, self.mailbox, self.category = client, mailbox, category
        self.base = user_path(mailbox)

    @abstractmethod
    def collection(self) -> str:
        """The folder or list the items live in (POST creates there)."""

    @abstractmethod
    def delta_start(self) -> str:
        """The first request of a new delta round."""

    # --- reading -------------------------------------------------------------------------
    def delta(self, link: str | None) -> DeltaReader[Raw]:
        """One delta round as raw JSON pages, from a stored ``link`` or (None) a new round."""
        prefer = delta_prefer(self.page_size, *self.prefer_extra)
        start = self.delta_start()
        return self.client.delta(self.mailbox, link or start, prefer, raw_page, initial=start)

    def item_path(self, outlook_id: str) -> str:
        return f"{self.collection()}/{segment(outlook_id)}"

    def stamped_id(self, item: Mapping[str, Any]) -> int | None:
        return contacts.stamped_id(item)

    async def fetch_stamp(self, outlook_id: str) -> int | None:
        """Our stamped Workbooks id on one item (a GET; None when it has none or is gone)."""
        url = f"{self.item_path(outlook_id)}?$expand={self.expand_stamp}"
        try:
            resp = await self.client.request("GET", url, mailbox=self.mailbox)
        except NotFound:
            return None
        return self.stamped_id(resp.json())

    async def exists(self, outlook_id: str) -> bool:
        try:
            await self.client.request(
                "GET", f"{self.item_path(outlook_id)}?$select=id", mailbox=self.mailbox
            )
        except NotFound:
            return False
        return True

    # --- writing -------------------------------------------------------------------------
    def stamped_body(self, body: Mapping[str, Any], workbooks_id: int, title: str) -> Raw:
        return contacts.stamp(body, workbooks_id, self.category)

    async def create(self, body: Mapping[str, Any], workbooks_id: int, title: str) -> Raw:
        """Create an item carrying our stamp and the sharing category; returns it as created."""
        resp = await self.client.request(
            "POST",
            self.collection(),
            mailbox=self.mailbox,
            body=self.stamped_body(body, workbooks_id, title),
        )
        created: Raw = resp.json()
        return created

    async def update(self, outlook_id: str, body: Mapping[str, Any]) -> Raw:
        resp = await self.client.request(
            "PATCH", self.item_path(outlook_id), mailbox=self.mailbox, body=dict(body)
        )
        updated: Raw = resp.json() if resp.content else {}
        return updated

    async def stamp(
        self, outlook_id: str, workbooks_id: int, title: str, categories: list[str]
    ) -> Raw:
        """Put our Workbooks id on an item that came from Outlook (it keeps its categories)."""
        body = self.stamped_body({"categories": categories}, workbooks_id, title)
        return await self.update(outlook_id, body)

    async def delete(self, outlook_id: str) -> None:
        with contextlib.suppress(NotFound):  # already gone is what we wanted
            await self.client.request("DELETE", self.item_path(outlook_id), mailbox=self.mailbox)


class Contacts(OutlookItems):
    """The default contacts folder."""

    def collection(self) -> str:
        return f"{self.base}/contacts"

    def delta_start(self) -> str:
        return f"{self.collection()}/delta"


class Events(OutlookItems):
    """The primary calendar, read through calendarView delta over a fixed window (graph.md
    §2.4).  Events are written without attendees (the field map never sends them), so
    Exchange never sends an invitation or a cancellation on our behalf.

    ``now`` (default: the clock) places each series on its next occurrence; ``recurring`` is
    the mailbox's ``recurring_events`` policy.  ``kinds`` remembers the ``type`` of every event
    id seen this run (a series master's pair must never be rewritten), ``masters`` every master
    read with a GET."""

    prefer_extra = (UTC_TIMEZONE,)
    removed_may_exist = True  # an event that left the window is reported removed too
    get_prefer = (IMMUTABLE_IDS, UTC_TIMEZONE)  # single reads: times in UTC, as the delta's
    near = timedelta(days=7)  # the first ``instances`` read looks this far ahead

    def __init__(
        self,
        client: GraphClient,
        mailbox: str,
        category: str,
        window: tuple[datetime, datetime],
        *,
        now: datetime | None = None,
        recurring: series.Policy = "next",
    ) -> None:
        super().__init__(client, mailbox, category)
        self.window, self.now, self.recurring = checked_window(*window), now, recurring
        self.kinds: dict[str, str] = {}
        self.masters: dict[str, Raw | None] = {}

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)

    def collection(self) -> str:
        return f"{self.base}/events"

    def delta_start(self) -> str:
        lo, hi = self.window
        return (
            f"{self.base}/calendarView/delta?startDateTime={iso_utc(lo)}&endDateTime={iso_utc(hi)}"
        )

    # --- reading series ------------------------------------------------------------------
    def delta(self, link: str | None) -> DeltaReader[Raw]:
        prefer = delta_prefer(self.page_size, *self.prefer_extra)
        return SeriesDelta(self, link or self.delta_start(), prefer)

    async def fold(self, rows: series.SeriesFold) -> list[Raw]:
        """The round's series as one row each (masters it did not carry read here)."""
        masters: dict[str, Raw | None] = {}
        if self.recurring == "next":
            for master_id in rows.missing_masters():
                masters[master_id] = await self.master(master_id)
        self.kinds.update(rows.kinds())
        return list(rows.rows(self.clock(), masters, self.recurring))

    async def master(self, master_id: str) -> Raw | None:
        """A series master (None when it is gone), read once per run."""
        if master_id not in self.masters:
            try:
                resp = await self.client.request(
                    "GET", self.item_path(master_id), mailbox=self.mailbox, prefer=self.get_prefer
                )
            except NotFound:
                self.masters[master_id] = None
            else:
                self.masters[master_id] = resp.json()
        return self.masters[master_id]

    async def instances(self, master_id: str, lo: datetime, hi: datetime) -> list[Raw]:
        """A master's occurrences and exceptions overlapping [lo, hi), every page.  An empty
        window holds none, and Graph answers 400 to one: nothing is sent then."""
        if _aware(hi) <= _aware(lo):
            return []
        url: str | None = (
            f"{self.item_path(master_id)}/instances"
            f"?startDateTime={iso_utc(lo)}&endDateTime={iso_utc(hi)}"
        )
        found: list[Raw] = []
        while url:
            resp = await self.client.request(
                "GET", url, mailbox=self.mailbox, prefer=self.get_prefer
            )
            page = resp.json()
            found += page.get("value", [])
            url = page.get("@odata.nextLink")
        return found

    async def current(self, master_id: str, now: datetime) -> Raw | None:
        """A linked series read again at ``now`` (its tracked occurrence has passed): its
        master and the occurrence it stands for now, folded as the delta reader folds it.
        Reads the next week first, then the rest of the window; when nothing is left ahead,
        the past part for the last occurrence.  None when it is gone or no longer a series."""
        master = await self.master(master_id)
        if master is None or master.get("type") != series.MASTER:
            return None
        self.kinds[master_id] = series.MASTER
        lo, hi = self.window
        start = max(lo, now)
        soon = min(hi, start + self.near)
        for a, b in ((start, soon), (soon, hi), (lo, start + timedelta(seconds=1))):
            if a >= b:
                continue
            found = [series.instance_of(r) for r in await self.instances(master_id, a, b)]
            known = [i for i in found if i is not None]
            if any(i.end > now for i in known) or b <= start + timedelta(seconds=1):
                return series.fold_series(master, known, now) if known else None
        return None

    async def kind(self, outlook_id: str) -> str:
        """An event's ``type``: known from this run's reads, else one GET."""
        if outlook_id not in self.kinds:
            resp = await self.client.request(
                "GET", f"{self.item_path(outlook_id)}?$select=type", mailbox=self.mailbox
            )
            self.kinds[outlook_id] = str(resp.json().get("type") or "singleInstance")
        return self.kinds[outlook_id]

    # --- writing: never a series' pattern or times ----------------------------------------
    async def update(self, outlook_id: str, body: Mapping[str, Any]) -> Raw:
        """A PATCH, minus the start, end, all-day flag and recurrence when the item is part of
        a series (moving a master moves every occurrence and drops its exceptions); nothing
        is sent when nothing is left."""
        out = dict(body)
        if any(k in out for k in SERIES_LOCKED) and await self.kind(outlook_id) in (
            series.SERIES_TYPES
        ):
            out = {k: v for k, v in out.items() if k not in SERIES_LOCKED}
        if not out:
            return {}
        return await super().update(outlook_id, out)

    async def delete(self, outlook_id: str) -> None:
        """Delete a single event.  A series is refused: deleting it would cancel every
        occurrence for its attendees too."""
        try:
            kind = await self.kind(outlook_id)
        except NotFound:
            return  # already gone is what we wanted
        if kind in series.SERIES_TYPES:
            raise InvalidRequest(
                f"event {outlook_id} is a recurring series; the service never deletes one",
                source=SOURCE,
            )
        await super().delete(outlook_id)


# What a PATCH of a series item must not carry (graph.md §2.4; docs/two-way-sync.md).
SERIES_LOCKED = ("start", "end", "isAllDay", "recurrence")


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def checked_window(lo: datetime, hi: datetime) -> tuple[datetime, datetime]:
    """A calendarView window Graph accepts: both ends known, the end after the start.  Graph
    answers 400 ``ErrorInvalidParameter`` to an empty or inverted window (and a delta link
    made of one would carry it for good), so the product refuses to build one."""
    if not isinstance(lo, datetime) or not isinstance(hi, datetime):
        raise InvalidRequest("a calendar window needs a start and an end time", source=SOURCE)
    if lo.tzinfo is None or hi.tzinfo is None:
        raise InvalidRequest("a calendar window needs time zone aware times", source=SOURCE)
    if hi <= lo:
        raise InvalidRequest(
            f"empty calendar window {iso_utc(lo)} .. {iso_utc(hi)}: the end must be after the "
            "start (check the mailbox policy's calendar_past_days / calendar_future_days)",
            source=SOURCE,
        )
    return lo, hi


class SeriesDelta(DeltaReader[Raw]):
    """A calendarView delta round with every recurring series folded into one row keyed by
    its master (``sync.core.series``).  Pages hand out single events and removals as Graph
    sent them; one last page, after the round, the folded series (a series is complete only
    then: its rows are held in compact form until the round ends)."""

    def __init__(self, events: Events, start_url: str, prefer: tuple[str, ...]) -> None:
        super().__init__(
            events.client, events.mailbox, start_url, prefer, raw_page, initial=events.delta_start()
        )
        self.events = events

    async def _pages(self) -> AsyncIterator[Raw]:
        rows = series.SeriesFold()
        async for page in super()._pages():
            rest = [entry for entry in page.get("value", []) if not rows.add(entry)]
            for entry in rest:
                if "@removed" not in entry and entry.get("id"):
                    self.events.kinds[str(entry["id"])] = str(entry.get("type") or "")
            yield {**page, "value": rest}
        yield {"value": await self.events.fold(rows)}


class TodoTasks(OutlookItems):
    """One To Do list; the stamp is a linkedResource, which the task delta can expand."""

    stamp_in_delta = True
    expand_stamp = "linkedResources"

    def __init__(self, client: GraphClient, mailbox: str, category: str, list_id: str) -> None:
        super().__init__(client, mailbox, category)
        self.list_id = list_id

    def collection(self) -> str:
        return f"{self.base}/todo/lists/{segment(self.list_id)}/tasks"

    def delta_start(self) -> str:
        return f"{self.collection()}/delta?$expand={self.expand_stamp}"

    def stamped_id(self, item: Mapping[str, Any]) -> int | None:
        return activities.task_stamped_id(item)

    def stamped_body(self, body: Mapping[str, Any], workbooks_id: int, title: str) -> Raw:
        out = dict(body)
        cats = list(out.get("categories") or [])
        if self.category not in cats:
            cats.append(self.category)
        out["categories"] = cats
        out["linkedResources"] = [activities.task_linked_resource(workbooks_id, title)]
        return out

    async def stamp(
        self, outlook_id: str, workbooks_id: int, title: str, categories: list[str]
    ) -> Raw:
        """A linkedResource of its own (POST): the task's categories are left as they are."""
        resource = activities.task_linked_resource(workbooks_id, title)
        await self.client.request(
            "POST",
            f"{self.item_path(outlook_id)}/linkedResources",
            mailbox=self.mailbox,
            body=resource,
        )
        return {}


async def default_todo_list(client: GraphClient, mailbox: str) -> str:
    """The user's default To Do list ("Tasks"), created when the mailbox has none."""
    path = f"{user_path(mailbox)}/todo/lists"
    lists = await client.request("GET", path, mailbox=mailbox)
    values = lists.json().get("value", [])
    for entry in values:
        if entry.get("wellknownListName") == "defaultList":
            return str(entry["id"])
    if values:
        return str(values[0]["id"])
    made = await client.request("POST", path, mailbox=mailbox, body={"displayName": "Tasks"})
    return str(made.json()["id"])
