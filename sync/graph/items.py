"""Outlook items the two-way streams read and write: contacts, calendar events, To Do tasks.

Raw JSON, not pydantic models: the field maps (``sync.core.mapping``) read properties a model
would have to list one by one (contact addresses, home phones), and an initial sync maps tens
of thousands of them.  Every request goes through ``GraphClient.request`` (the per-mailbox
limiter, retries, error translation) and every delta round through its one pager,
``DeltaReader``.  One class per kind says where the items live and how our Workbooks id is
stamped on them (graph.md §4.4-4.5): contacts and events carry it as a single-value extended
property, which their delta cannot return (a GET with ``$expand`` reads it); a To Do task
carries it as a ``linkedResource``, which the task delta expands.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sync.core.errors import NotFound
from sync.core.graph_models import WORKBOOKS_ID_PROPERTY
from sync.core.mapping import activities, contacts
from sync.graph.client import (
    UTC_TIMEZONE,
    DeltaReader,
    GraphClient,
    Raw,
    delta_prefer,
    iso_utc,
    raw_page,
)
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
        return self.client.delta(self.mailbox, link or self.delta_start(), prefer, raw_page)

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
    Exchange never sends an invitation or a cancellation on our behalf."""

    prefer_extra = (UTC_TIMEZONE,)
    removed_may_exist = True  # an event that left the window is reported removed too

    def __init__(
        self,
        client: GraphClient,
        mailbox: str,
        category: str,
        window: tuple[datetime, datetime],
    ) -> None:
        super().__init__(client, mailbox, category)
        self.window = window

    def collection(self) -> str:
        return f"{self.base}/events"

    def delta_start(self) -> str:
        lo, hi = self.window
        return (
            f"{self.base}/calendarView/delta?startDateTime={iso_utc(lo)}&endDateTime={iso_utc(hi)}"
        )


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
