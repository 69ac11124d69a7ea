"""The Outlook half of a two-way stream: delta reads as raw JSON, and item writes.

Raw wire dicts (not the ``graph_models`` pydantic models) because the field maps need
properties those models leave out (contact addresses, home phones); everything still goes
through ``GraphClient.request``, the one request path with the per-mailbox limiter (≤4 in
flight), retries and error translation.  One class per Outlook item kind says where items live
and how our Workbooks id is stamped on them (graph.md §4.4-4.5).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sync.core.errors import InvalidRequest, NotFound
from sync.core.graph_models import WORKBOOKS_ID_PROPERTY
from sync.core.mapping import activities, contacts
from sync.graph.client import IMMUTABLE_IDS, UTC_TIMEZONE, GraphClient

Raw = dict[str, Any]
EXPAND_STAMP = f"singleValueExtendedProperties($filter=id eq '{WORKBOOKS_ID_PROPERTY}')"


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


class OutlookSide:
    """Contacts (default folder).  Subclasses: events (calendar), To Do tasks (one list)."""

    kind = "contact"
    page_size = 100
    prefer_extra: tuple[str, ...] = ()
    stamp_in_delta = False  # the contact/event delta cannot $expand extended properties
    expand_stamp = EXPAND_STAMP  # what a GET must $expand to return our stamp

    def __init__(self, client: GraphClient, user: str, category: str) -> None:
        self.client, self.user, self.category = client, user, category
        self.base = f"/users/{quote(user)}"

    # --- reading -------------------------------------------------------------------------
    def collection(self) -> str:
        return f"{self.base}/contacts"

    def delta_start(self) -> str:
        return f"{self.collection()}/delta"

    def prefer(self) -> tuple[str, ...]:
        return (IMMUTABLE_IDS, f"odata.maxpagesize={self.page_size}", *self.prefer_extra)

    async def delta(self, link: str | None) -> AsyncIterator[Raw]:
        """Yield every page of one round (raw JSON) starting at ``link`` or a new round."""
        url, seen = link or self.delta_start(), set[str]()
        while True:
            resp = await self.client.request("GET", url, mailbox=self.user, prefer=self.prefer())
            page: Raw = json.loads(resp.content)
            yield page
            if page.get("@odata.deltaLink"):
                return
            nxt = page.get("@odata.nextLink")
            if not nxt or nxt in seen:
                raise InvalidRequest(
                    "delta page without a new nextLink or deltaLink", source="graph"
                )
            seen.add(nxt)
            url = nxt

    def item_path(self, outlook_id: str) -> str:
        return f"{self.collection()}/{quote(outlook_id, safe='')}"

    def stamped_id(self, item: Mapping[str, Any]) -> int | None:
        return contacts.stamped_id(item)

    async def fetch_stamp(self, outlook_id: str) -> int | None:
        """Our stamped Workbooks id on one item (a GET; delta does not return it)."""
        url = f"{self.item_path(outlook_id)}?$expand={self.expand_stamp}"
        try:
            resp = await self.client.request("GET", url, mailbox=self.user)
        except NotFound:
            return None
        return self.stamped_id(resp.json())

    async def exists(self, outlook_id: str) -> bool:
        try:
            await self.client.request(
                "GET", f"{self.item_path(outlook_id)}?$select=id", mailbox=self.user
            )
        except NotFound:
            return False
        return True

    # --- writing -------------------------------------------------------------------------
    def stamped_body(self, body: Mapping[str, Any], workbooks_id: int, title: str) -> Raw:
        return contacts.stamp(body, workbooks_id, self.category)

    async def create(self, body: Mapping[str, Any], workbooks_id: int, title: str) -> Raw:
        resp = await self.client.request(
            "POST",
            self.collection(),
            mailbox=self.user,
            body=self.stamped_body(body, workbooks_id, title),
        )
        created: Raw = resp.json()
        return created

    async def update(self, outlook_id: str, body: Mapping[str, Any]) -> Raw:
        resp = await self.client.request(
            "PATCH", self.item_path(outlook_id), mailbox=self.user, body=dict(body)
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
            await self.client.request("DELETE", self.item_path(outlook_id), mailbox=self.user)


class EventSide(OutlookSide):
    """The primary calendar through calendarView delta, over a fixed window (graph.md §2.4)."""

    kind = "event"
    prefer_extra = (UTC_TIMEZONE,)

    def __init__(
        self, client: GraphClient, user: str, category: str, window: tuple[datetime, datetime]
    ) -> None:
        super().__init__(client, user, category)
        self.window = window

    def collection(self) -> str:
        return f"{self.base}/events"

    def delta_start(self) -> str:
        lo, hi = self.window
        return f"{self.base}/calendarView/delta?startDateTime={_iso(lo)}&endDateTime={_iso(hi)}"


class TodoSide(OutlookSide):
    """One To Do list; the stamp is a linkedResource, which the task delta can expand."""

    kind = "task"
    stamp_in_delta = True
    expand_stamp = "linkedResources"

    def __init__(self, client: GraphClient, user: str, category: str, list_id: str) -> None:
        super().__init__(client, user, category)
        self.list_id = list_id

    def collection(self) -> str:
        return f"{self.base}/todo/lists/{quote(self.list_id, safe='')}/tasks"

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
        resource = activities.task_linked_resource(workbooks_id, title)
        await self.client.request(
            "POST",
            f"{self.item_path(outlook_id)}/linkedResources",
            mailbox=self.user,
            body=resource,
        )
        return {}


async def default_todo_list(client: GraphClient, user: str) -> str:
    """The user's default To Do list ("Tasks"), created when the mailbox has none."""
    lists = await client.request("GET", f"/users/{quote(user)}/todo/lists", mailbox=user)
    values = lists.json().get("value", [])
    for entry in values:
        if entry.get("wellknownListName") == "defaultList":
            return str(entry["id"])
    if values:
        return str(values[0]["id"])
    made = await client.request(
        "POST", f"/users/{quote(user)}/todo/lists", mailbox=user, body={"displayName": "Tasks"}
    )
    return str(made.json()["id"])
