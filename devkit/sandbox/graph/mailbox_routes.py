"""`/v1.0/users/{id}/...`: mail, contacts, calendar, To Do and master categories.

One catch-all route parses the path itself, because Graph accepts `mailFolders('x')` and
`mailFolders/x`, `delta` and `delta()`, and is case-insensitive in segment names.  Events
(series, occurrences, calendarView) are served by `event_routes.EventRoutes`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from devkit.sandbox.graph import calendar
from devkit.sandbox.graph.service import Entry, Sandbox
from devkit.sandbox.graph.state import (
    CALENDAR,
    DEFAULT_CONTACT_FOLDER,
    Container,
    DeltaState,
    Item,
    Kind,
    Mailbox,
    new_id,
)
from devkit.sandbox.graph.timezones import prefer_timezone, resolve_zone
from devkit.sandbox.graph.wire import (
    GraphFailure,
    failure_response,
    json_body,
    max_page_size,
    render,
    wants_immutable,
)

NOT_FOUND = (404, "ErrorItemNotFound", "The specified object was not found in the store.")
_body = json_body  # subscription routes read bodies through this name
__all__ = ["NOT_FOUND", "GraphFailure", "MailboxApi", "failure_response"]


class MailboxApi:
    """Resolves one request under `/users/{id}` to a container (and item) and serves it."""

    def __init__(self, sandbox: Sandbox, request: web.Request, box: Mailbox) -> None:
        self.sb, self.request, self.box = sandbox, request, box
        self.immutable = wants_immutable(request)
        self.applied: list[str] = []  # Preference-Applied values of the answer
        self._zone = prefer_timezone(request)

    async def dispatch(self, segs: list[str]) -> web.StreamResponse:
        from devkit.sandbox.graph.event_routes import EventRoutes

        low = [s.lower() for s in segs]
        head = low[0] if low else ""
        if head == "calendar" and low[1:2] in (["events"], ["calendarview"]):
            segs, low, head = segs[1:], low[1:], low[1]  # the primary calendar by its own path
        if head in ("events", "calendarview"):
            self.event_zone()  # an unsupported outlook.timezone fails before any work
        if head == "mailfolders" and len(segs) >= 3 and low[2] == "messages":
            return await self.collection(self.folder("message", segs[1]), segs[3:])
        if head == "mailfolders" and len(segs) == 2 and self.request.method == "GET":
            return self.respond(self._mail_folder(self.folder("message", segs[1])))
        if head == "messages":
            return await self._loose_item("message", segs[1:])
        if head == "contacts":
            return await self.collection(self.folder("contact", DEFAULT_CONTACT_FOLDER), segs[1:])
        if head == "contactfolders" and len(segs) >= 3 and low[2] == "contacts":
            return await self.collection(self.folder("contact", segs[1]), segs[3:])
        if head == "contactfolders" and len(segs) == 1:
            return await self._list_containers("contact")
        if head == "calendarview" and low[1:] == ["delta"]:
            return await self._delta(self.folder("event", CALENDAR))
        if head == "calendarview" and len(segs) == 1:
            return await EventRoutes(self).calendar_view()
        if head == "events":
            return await EventRoutes(self).events(segs[1:])
        if head == "todo" and low[1:2] == ["lists"]:
            return await self._todo(segs[2:])
        if head == "outlook" and low[1:2] == ["mastercategories"]:
            return await self._categories(segs[2:])
        if head == "mailboxsettings":
            return self._mailbox_settings(low[1:])
        raise GraphFailure(400, "BadRequest", f"Resource not found for the segment '{segs[0]}'.")

    # --- answers ------------------------------------------------------------------------------
    def respond(self, body: Any, status: int = 200) -> web.Response:
        headers = {"Preference-Applied": ", ".join(self.applied)} if self.applied else None
        return web.json_response(body, status=status, headers=headers)

    def event_zone(self) -> str:
        """The zone event times are written in: `Prefer: outlook.timezone`, else UTC."""
        if self._zone is None:
            return "UTC"
        if resolve_zone(self._zone) is None:
            raise GraphFailure(
                400,
                "TimeZoneNotSupportedException",
                "A valid TimeZone value must be specified. The following TimeZone value is "
                f"not supported: '{self._zone}'.",
            )
        applied = f'outlook.timezone="{self._zone}"'
        if applied not in self.applied:
            self.applied.append(applied)
        return self._zone

    # --- containers ---------------------------------------------------------------------------
    def folder(self, kind: Kind, cid: str) -> Container:
        cont = self.sb.state.container(self.box, kind, cid)
        if cont is None:
            cont = self.sb.state.container(self.box, kind, cid.lower())
        if cont is None:
            raise GraphFailure(404, "ErrorItemNotFound", "The specified folder was not found.")
        return cont

    async def _list_containers(self, kind: Kind) -> web.StreamResponse:
        if self.request.method == "POST":
            body = await json_body(self.request)
            cont = self.sb.state.add_container(self.box, kind, str(body.get("displayName", "")))
            return web.json_response(self._container_json(cont), status=201)
        conts = [c for c in self.box.containers.values() if c.kind == kind]
        return web.json_response({"value": [self._container_json(c) for c in conts]})

    def _listing(self, items: list[Item]) -> dict[str, Any]:
        """A collection GET: every item, or with ``$top`` (and ``$skip``) one page of them and
        a nextLink to the rest, as Graph pages lists."""
        q = self.request.query
        top, skip = q.get("$top", ""), q.get("$skip", "0")
        if not top.isdigit():
            return {"value": [self.render(i) for i in items]}
        start = int(skip) if skip.isdigit() else 0
        end = start + int(top)
        body: dict[str, Any] = {"value": [self.render(i) for i in items[start:end]]}
        if end < len(items):
            body["@odata.nextLink"] = str(self.request.url.update_query({"$skip": str(end)}))
        return body

    def _mail_folder(self, cont: Container) -> dict[str, Any]:
        """``GET mailFolders/{id}`` (a well-known name works): the mailFolder resource."""
        items = list(cont.items.values())
        out: dict[str, Any] = {
            "id": cont.key.split(":", 1)[1],
            "displayName": cont.display_name,
            "parentFolderId": "msgfolderroot",
            "childFolderCount": 0,
            "unreadItemCount": sum(1 for i in items if not i.data.get("isRead", True)),
            "totalItemCount": len(items),
            "isHidden": False,
        }
        chosen = [f.strip() for f in self.request.query.get("$select", "").split(",") if f]
        return {k: v for k, v in out.items() if k == "id" or not chosen or k in chosen}

    @staticmethod
    def _container_json(cont: Container) -> dict[str, Any]:
        out: dict[str, Any] = {"id": cont.key.split(":", 1)[1], "displayName": cont.display_name}
        if cont.kind == "task":  # todoTaskList (docs: resources/todotasklist.md)
            out = {
                "@odata.type": "#microsoft.graph.todoTaskList",
                **out,
                "isOwner": True,
                "isShared": False,
                "wellknownListName": cont.wellknown,
            }
        return out

    async def _todo(self, segs: list[str]) -> web.StreamResponse:
        if not segs:
            return await self._list_containers("task")
        cont = self.folder("task", segs[0])
        low = [s.lower() for s in segs]
        if len(segs) >= 2 and low[1] == "tasks":
            if len(segs) == 4 and low[3] == "linkedresources":
                return await self._linked(cont, segs[2])
            return await self.collection(cont, segs[2:])
        raise GraphFailure(400, "BadRequest", "Unsupported To Do path.")

    # --- items ----------------------------------------------------------------------------
    async def collection(self, cont: Container, rest: list[str]) -> web.StreamResponse:
        method = self.request.method
        if not rest:
            if method == "POST":
                data = await json_body(self.request)
                item = self.sb.create_item(self.box, cont, data, strict=True)
                return self.respond(self.render(item), status=201)
            if method == "GET":
                return self.respond(self._listing(list(cont.items.values())))
        elif rest[0].lower() == "delta" and len(rest) == 1 and method == "GET":
            return await self._delta(cont)
        else:
            found = self._item(cont, rest[0])
            if len(rest) == 1:
                return await self.item_op(cont, found)
            if rest[1].lower() == "move" and method == "POST":
                return await self._move(cont, found)
        raise GraphFailure(405, "ErrorInvalidRequest", "The OData request is not supported.")

    async def _loose_item(self, kind: Kind, rest: list[str]) -> web.StreamResponse:
        if not rest:
            raise GraphFailure(400, "BadRequest", "Listing all messages is not supported here.")
        found = self.sb.state.find(self.box, kind, rest[0])
        if found is None:
            raise GraphFailure(*NOT_FOUND)
        cont, item = found
        if len(rest) == 2 and rest[1].lower() == "move" and self.request.method == "POST":
            return await self._move(cont, item)
        return await self.item_op(cont, item)

    def _item(self, cont: Container, item_id: str) -> Item:
        imm = self.sb.state.rest_index.get(item_id, item_id)
        if imm not in cont.items:
            raise GraphFailure(*NOT_FOUND)
        return cont.items[imm]

    async def item_op(self, cont: Container, item: Item) -> web.StreamResponse:
        method = self.request.method
        if method == "GET":
            return self.respond(self.render(item))
        if method == "PATCH":
            data = await json_body(self.request)
            self.sb.update_item(self.box, cont, item, data, strict=True)
            return self.respond(self.render(item))
        if method == "DELETE":
            self.sb.delete_item(self.box, cont, item)
            return web.Response(status=204)
        raise GraphFailure(405, "ErrorInvalidRequest", "The OData request is not supported.")

    async def _move(self, src: Container, item: Item) -> web.StreamResponse:
        body = await json_body(self.request)
        # Action parameters are case-insensitive in Graph (docs: concepts/call-api.md), and
        # msgraph-sdk serialises this one as "DestinationId".
        target = next((v for k, v in body.items() if k.lower() == "destinationid"), "")
        dst = self.folder(item.kind, str(target))
        self.sb.move_item(self.box, src, item, dst)
        return self.respond(self.render(item), status=201)

    async def _linked(self, cont: Container, task_id: str) -> web.StreamResponse:
        item = self._item(cont, task_id)
        if self.request.method == "POST":
            data = await json_body(self.request)
            self.sb.update_item(self.box, cont, item, {"linkedResources": [data]})
            return web.json_response(item.linked[-1], status=201)
        return web.json_response({"value": item.linked})

    def render(self, item: Item, *, select: str | None = None) -> dict[str, Any]:
        q = self.request.query
        chosen = q.get("$select", "") if select is None else select
        if item.kind == "event":
            return calendar.render_event(
                item,
                immutable=self.immutable,
                zone=self.event_zone(),
                select=chosen,
                expand=q.get("$expand", ""),
            )
        return render(item, immutable=self.immutable, select=chosen, expand=q.get("$expand", ""))

    # --- delta ----------------------------------------------------------------------------
    async def _delta(self, cont: Container) -> web.StreamResponse:
        q = self.request.query
        state = self.sb.state
        if "$deltatoken" in q or "$skiptoken" in q:
            token = q.get("$deltatoken") or q.get("$skiptoken") or ""
            st = state.tokens.get(token)
            if st is None or st.expired or st.container != cont.key:
                # 410 with Location = the initial request (empty token): start over (§2.6).
                initial = f"{self.request.url.origin()}{self.request.path}?$deltatoken="
                raise GraphFailure(
                    410,
                    "syncStateNotFound",
                    "The sync state generation is not found.",
                    {"Location": initial},
                )
            if "$skiptoken" in q and self.sb.stale_skip_token(st):
                raise self._stale(st)
            if "$deltatoken" in q:
                token = self.sb.start_round(self.box, cont, st.since, st.params, initial=False)
            params = st.params
        else:
            params = self._initial_params(cont)
            token = self.sb.start_round(self.box, cont, 0, params, initial=True)
        asked = max_page_size(self.request)
        size = min(asked, self.sb.config.max_page_size) if asked else None
        size = size or self.sb.config.page_sizes[cont.kind]
        entries, skip, delta = self.sb.page(token, size)
        params = state.tokens[skip or delta or token].params
        if asked:
            self.applied.insert(0, f"odata.maxpagesize={size}")
        return self.respond(self._delta_body(entries, skip, delta, params))

    def _stale(self, st: DeltaState) -> GraphFailure:
        """Exchange's answer for a nextLink whose sync-state generation it dropped (observed:
        410 with code SyncStateNotFound and no Location; see docs/graph.md)."""
        newest = self.sb.rounds.get(st.round_id, st.generation)
        kept = "".join(f"[{g}]" for g in range(newest, max(newest - 3, 0), -1))
        message = (
            f"The sync state generation is not found; generation={st.generation};"
            f"[highest={newest}]{kept}."
        )
        return GraphFailure(410, "SyncStateNotFound", message)

    def _initial_params(self, cont: Container) -> dict[str, str]:
        q = self.request.query
        params = {k: v for k, v in q.items() if k in ("$select", "$expand")}
        if cont.kind == "message" and "$top" in q:
            # Message delta reads $top as a cap on the round, not a page size: the round ends
            # after that many changes and its delta link skips the rest (graph.md §2.2).
            if not q["$top"].isdigit() or int(q["$top"]) < 1:
                raise GraphFailure(400, "BadRequest", f"Invalid $top value '{q['$top']}'.")
            params["$top"] = q["$top"]
        if cont.kind == "event":
            if "$select" in q or "$expand" in q or "$filter" in q or "$top" in q:
                used = ", ".join(k for k in ("$select", "$expand", "$filter", "$top") if k in q)
                raise GraphFailure(
                    400,
                    "ErrorInvalidUrlQuery",
                    "The following parameters are not supported "
                    f"with change tracking over the 'CalendarView' resource: '{used}'.",
                )
            try:
                calendar.parse_window(q)
            except calendar.EventError as exc:
                raise GraphFailure(exc.status, exc.code, exc.message) from exc
            params = {
                "startDateTime": str(calendar.query_value(q, "startDateTime")),
                "endDateTime": str(calendar.query_value(q, "endDateTime")),
            }
        return params

    def _delta_body(
        self,
        entries: list[Entry],
        skip: str | None,
        delta: str | None,
        params: dict[str, str],
    ) -> dict[str, Any]:
        values: list[dict[str, Any]] = []
        for _kind, entry in entries:
            if isinstance(entry, Item) and entry.kind == "event":
                lo, hi = calendar.parse_window(params)
                values += calendar.delta_rows(
                    entry, lo, hi, immutable=self.immutable, zone=self.event_zone()
                )
            elif isinstance(entry, Item):
                values.append(
                    render(
                        entry,
                        immutable=self.immutable,
                        select=params.get("$select", ""),
                        expand=params.get("$expand", ""),
                    )
                )
            else:
                eid = entry.immutable_id if self.immutable else entry.rest_id
                values.append({"id": eid, "@removed": {"reason": entry.reason}})
        base = f"{self.request.url.origin()}{self.request.path.replace('delta()', 'delta')}"
        body: dict[str, Any] = {"@odata.context": f"{self.request.url.origin()}/v1.0/$metadata"}
        if skip:
            body["@odata.nextLink"] = f"{base}?$skiptoken={skip}"
        else:
            body["@odata.deltaLink"] = f"{base}?$deltatoken={delta}"
        body["value"] = values
        return body

    # --- categories -----------------------------------------------------------------------
    def _mailbox_settings(self, rest: list[str]) -> web.StreamResponse:
        """`GET mailboxSettings` (the time zone part of it) and `GET mailboxSettings/timeZone`,
        which Graph answers as a primitive: `{"@odata.context": ..., "value": "..."}`."""
        if self.request.method != "GET":
            raise GraphFailure(405, "ErrorInvalidRequest", "Only GET is served here.")
        context = f"{self.request.url.origin()}/v1.0/$metadata#users('{self.box.upn}')"
        if rest == ["timezone"]:
            return web.json_response(
                {
                    "@odata.context": f"{context}/mailboxSettings/timeZone",
                    "value": self.box.time_zone,
                }
            )
        if rest:
            raise GraphFailure(
                400, "BadRequest", f"Resource not found for the segment '{rest[0]}'."
            )
        return web.json_response(
            {"@odata.context": f"{context}/mailboxSettings", "timeZone": self.box.time_zone}
        )

    async def _categories(self, rest: list[str]) -> web.StreamResponse:
        cats = self.box.categories
        if not rest and self.request.method == "GET":
            return web.json_response({"value": cats})
        if not rest and self.request.method == "POST":
            body = await json_body(self.request)
            name = str(body.get("displayName", ""))
            if any(c["displayName"].lower() == name.lower() for c in cats):
                raise GraphFailure(
                    409, "ErrorDuplicateObject", "An object with the same key already exists."
                )
            cat = {"id": new_id("C"), "displayName": name, "color": body.get("color", "none")}
            cats.append(cat)
            return web.json_response(cat, status=201)
        match = [c for c in cats if rest and c["id"] == rest[0]]
        if not match:
            raise GraphFailure(*NOT_FOUND)
        if self.request.method == "DELETE":
            cats.remove(match[0])
            return web.Response(status=204)
        if self.request.method == "PATCH":
            body = await json_body(self.request)
            if "displayName" in body:  # graph.md §4.6: only the colour can change
                raise GraphFailure(400, "ErrorInvalidRequest", "displayName cannot be changed.")
            match[0]["color"] = str(body.get("color", match[0]["color"]))
        return web.json_response(match[0])
