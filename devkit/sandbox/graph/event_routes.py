"""`/users/{id}/events...` and `/users/{id}/calendarView`: single events, series masters,
occurrences and exceptions (by their own ids), `instances`, and the calendar view.

Occurrence ids are resolved to their master and original date; a PATCH turns an occurrence
into an exception, a DELETE cancels it; both change (and notify) the master, as in Exchange.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from devkit.sandbox.graph import calendar
from devkit.sandbox.graph.mailbox_routes import NOT_FOUND, MailboxApi
from devkit.sandbox.graph.state import CALENDAR, Container, Item
from devkit.sandbox.graph.wire import GraphFailure, json_body, max_page_size

DEFAULT_VIEW_PAGE = 10  # calendarView pages hold 10 events unless $top / maxpagesize say more
MAX_VIEW_PAGE = 1000


def _failure(exc: calendar.EventError) -> GraphFailure:
    return GraphFailure(exc.status, exc.code, exc.message)


class EventRoutes:
    def __init__(self, api: MailboxApi) -> None:
        self.api = api
        self.sb, self.box, self.request = api.sb, api.box, api.request
        self.cont: Container = api.folder("event", CALENDAR)

    async def events(self, rest: list[str]) -> web.StreamResponse:
        method = self.request.method
        try:
            if not rest:
                return await self.api.collection(self.cont, [])
            if rest[0].lower() == "delta" and len(rest) == 1:
                return await self.api.collection(self.cont, rest)
            target = self._resolve(rest[0])
            if len(rest) == 2 and rest[1].lower() == "instances" and method == "GET":
                return self._instances(target)
            if len(rest) == 1 and isinstance(target, calendar.Instance):
                return await self._occurrence_op(target)
            if len(rest) == 1 and isinstance(target, Item):
                return await self.api.item_op(self.cont, target)
        except calendar.EventError as exc:
            raise _failure(exc) from exc
        raise GraphFailure(405, "ErrorInvalidRequest", "The OData request is not supported.")

    def _resolve(self, event_id: str) -> Item | calendar.Instance:
        """An event id: a stored event, or an occurrence of a stored series master."""
        state = self.sb.state
        imm = state.rest_index.get(event_id, event_id)
        if imm in self.cont.items:
            return self.cont.items[imm]
        parts = calendar.split_occurrence_id(event_id)
        if parts is not None:
            master_id, key = parts
            master = self.cont.items.get(state.rest_index.get(master_id, master_id))
            inst = calendar.find_instance(master, key) if master is not None else None
            if inst is not None:
                return inst
        raise GraphFailure(*NOT_FOUND)

    async def _occurrence_op(self, inst: calendar.Instance) -> web.StreamResponse:
        method = self.request.method
        if method == "GET":
            return self.api.respond(self._render(inst))
        if method == "PATCH":
            data = await json_body(self.request)
            edited = self.sb.edit_occurrence(
                self.box, self.cont, inst.master, inst.key, data, strict=True
            )
            return self.api.respond(self._render(edited))
        if method == "DELETE":
            self.sb.cancel_occurrence(self.box, self.cont, inst.master, inst.key)
            return web.Response(status=204)
        raise GraphFailure(405, "ErrorInvalidRequest", "The OData request is not supported.")

    def _render(self, inst: calendar.Instance) -> dict[str, Any]:
        q = self.request.query
        return calendar.render_instance(
            inst,
            immutable=self.api.immutable,
            zone=self.api.event_zone(),
            select=q.get("$select", ""),
            expand=q.get("$expand", ""),
        )

    def _instances(self, target: Item | calendar.Instance) -> web.StreamResponse:
        """`events/{id}/instances`: a master's occurrences and exceptions in the window.  For an
        event that is not a series master the sandbox answers an empty list (unconfirmed)."""
        lo, hi = calendar.parse_window(self.request.query)
        found = calendar.instances(target, lo, hi) if isinstance(target, Item) else []
        found.sort(key=lambda i: (i.start, i.key))
        return self.api.respond({"value": [self._render(i) for i in found]})

    async def calendar_view(self) -> web.StreamResponse:
        """`calendarView`: single instances, occurrences and exceptions in the window (never
        series masters), by start, in pages linked by `@odata.nextLink` ($skip)."""
        if self.request.method != "GET":
            raise GraphFailure(405, "ErrorInvalidRequest", "The OData request is not supported.")
        q = self.request.query
        try:
            lo, hi = calendar.parse_window(q)
        except calendar.EventError as exc:
            raise _failure(exc) from exc
        rows: list[tuple[Any, str, dict[str, Any]]] = []
        for item in self.cont.items.values():
            if item.series is not None:
                for inst in calendar.instances(item, lo, hi):
                    rows.append((inst.start, inst.key, self._render(inst)))
                continue
            span = calendar.single_span(item)
            if span is not None and calendar.overlaps(span[0], span[1], lo, hi):
                rows.append((span[0], item.immutable_id, self.api.render(item)))
        rows.sort(key=lambda r: (r[0], r[1]))
        size = self._page_size()
        skip = _int(calendar.query_value(q, "$skip"), 0)
        body: dict[str, Any] = {"value": [r[2] for r in rows[skip : skip + size]]}
        if skip + size < len(rows):
            params = {k: v for k, v in q.items() if k.lower() != "$skip"}
            params["$skip"] = str(skip + size)
            origin = f"{self.request.url.origin()}{self.request.path}"
            body["@odata.nextLink"] = f"{origin}?{urlencode(params)}"
        return self.api.respond(body)

    def _page_size(self) -> int:
        top = _int(calendar.query_value(self.request.query, "$top"), 0)
        asked = max_page_size(self.request)
        if asked and not top:
            self.api.applied.insert(0, f"odata.maxpagesize={min(asked, MAX_VIEW_PAGE)}")
        return min(top or asked or DEFAULT_VIEW_PAGE, MAX_VIEW_PAGE)


def _int(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit():
        raise GraphFailure(400, "BadRequest", f"Invalid value '{value}' for a query option.")
    return int(value)
