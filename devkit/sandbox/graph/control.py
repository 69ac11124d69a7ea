"""`/_sim/` control endpoints: seed mailboxes, act as a user, break things, look inside.

Only mounted in sandbox mode (`SandboxConfig.controls`).  No authentication: they exist for
local runs, tests and the demo, and must never be exposed.

    POST   /_sim/mailboxes                        {"upn", "id"?}            -> {"id", "upn"}
    POST   /_sim/users/{u}/send                   {"subject","to":[...],"cc"?,"categories"?}
    POST   /_sim/users/{u}/items/{kind}           {"folder"?, "data": {...}}  kind: message|
                                                   contact|event|task (task needs "folder")
    PATCH  /_sim/users/{u}/items/{kind}/{id}      {"data": {...}}   (categorise, edit)
    DELETE /_sim/users/{u}/items/{kind}/{id}
    POST   /_sim/users/{u}/items/message/{id}/move {"destination": "inbox"}
    POST   /_sim/users/{u}/todo/lists             {"displayName"}
    POST   /_sim/users/{u}/series                 {"data": {... "recurrence": {...}}}  a series
    GET    /_sim/users/{u}/series/{id}/occurrences[?startDateTime&endDateTime]
                                                   -> {"value": [{"date","id","restId","type",
                                                   "start","end"}]}  (default: its first year)
    PATCH  /_sim/users/{u}/series/{id}/occurrences/{date}  {"data": {...}}  edit one (exception)
    DELETE /_sim/users/{u}/series/{id}/occurrences/{date}  cancel one occurrence
    POST   /_sim/users/{u}/series/{id}/reschedule {"start"?, "end"?, "recurrence"?}
    POST   /_sim/expire-delta                     {"mailbox"?}     -> {"expired": n}
    POST   /_sim/stale-next-links                 {"mailbox"?}     -> {"stale": n}  old nextLinks
                                                   answer 410 SyncStateNotFound
    POST   /_sim/lifecycle                        {"subscriptionId", "event"}
    POST   /_sim/faults                           {"status","count","path","method",
                                                   "retryAfter","delay","code"}
    DELETE /_sim/faults
    POST   /_sim/config                           any SandboxConfig field (latency_seconds, ...)
    POST   /_sim/revoke-tokens
    GET    /_sim/state                            full dump
    GET    /_sim/deliveries                       notification POSTs made so far
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from devkit.sandbox.graph import calendar
from devkit.sandbox.graph.service import Fault, Sandbox
from devkit.sandbox.graph.state import (
    CALENDAR,
    DEFAULT_CONTACT_FOLDER,
    Container,
    Item,
    Kind,
    Mailbox,
    iso,
    utcnow,
)
from devkit.sandbox.graph.timezones import format_dtz

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KINDS: tuple[Kind, ...] = ("message", "contact", "event", "task")
DEFAULT_FOLDER = {"message": "sentitems", "contact": DEFAULT_CONTACT_FOLDER, "event": CALENDAR}


def _err(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


class Controls:
    def __init__(self, sb: Sandbox) -> None:
        self.sb = sb

    def _box(self, request: web.Request) -> Mailbox:
        box = self.sb.state.mailbox(request.match_info["user"])
        if box is None:
            raise web.HTTPNotFound(text="unknown mailbox")
        return box

    def _kind(self, request: web.Request) -> Kind:
        kind = request.match_info["kind"]
        if kind not in KINDS:
            raise web.HTTPBadRequest(text=f"kind must be one of {KINDS}")
        return kind

    def _cont(self, box: Mailbox, kind: Kind, folder: str | None) -> Container:
        cid = folder or DEFAULT_FOLDER.get(kind, "")
        cont = self.sb.state.container(box, kind, cid)
        if cont is None:
            raise web.HTTPNotFound(text=f"no {kind} folder/list {cid!r}")
        return cont

    async def add_mailbox(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        box = self.sb.state.add_mailbox(str(body["upn"]), body.get("id"))
        return web.json_response({"id": box.user_id, "upn": box.upn}, status=201)

    async def send(self, request: web.Request) -> web.StreamResponse:
        """Act as the user sending an email: the message lands in Sent Items."""
        box = self._box(request)
        body = await request.json()
        data = sent_message(box.upn, body)
        item = self.sb.create_item(box, self._cont(box, "message", "sentitems"), data)
        return web.json_response({"id": item.immutable_id, "restId": item.rest_id}, status=201)

    async def create(self, request: web.Request) -> web.StreamResponse:
        box, kind = self._box(request), self._kind(request)
        body = await request.json()
        cont = self._cont(box, kind, body.get("folder"))
        item = self.sb.create_item(box, cont, dict(body.get("data", {})))
        return web.json_response({"id": item.immutable_id, "restId": item.rest_id}, status=201)

    async def modify(self, request: web.Request) -> web.StreamResponse:
        box, kind = self._box(request), self._kind(request)
        found = self.sb.state.find(box, kind, request.match_info["id"])
        if found is None:
            return _err(404, "no such item")
        cont, item = found
        if request.method == "DELETE":
            self.sb.delete_item(box, cont, item)
            return web.Response(status=204)
        body = await request.json()
        self.sb.update_item(box, cont, item, dict(body.get("data", {})))
        return web.json_response({"id": item.immutable_id, "restId": item.rest_id})

    async def move(self, request: web.Request) -> web.StreamResponse:
        box = self._box(request)
        found = self.sb.state.find(box, "message", request.match_info["id"])
        if found is None:
            return _err(404, "no such item")
        body = await request.json()
        dst = self._cont(box, "message", str(body["destination"]))
        item = self.sb.move_item(box, found[0], found[1], dst)
        return web.json_response({"id": item.immutable_id, "restId": item.rest_id})

    async def add_list(self, request: web.Request) -> web.StreamResponse:
        box = self._box(request)
        body = await request.json()
        cont = self.sb.state.add_container(box, "task", str(body.get("displayName", "Tasks")))
        return web.json_response({"id": cont.key.split(":", 1)[1]}, status=201)

    # --- series ---------------------------------------------------------------------------
    def _master(self, request: web.Request) -> tuple[Mailbox, Container, Item]:
        box = self._box(request)
        found = self.sb.state.find(box, "event", request.match_info["id"])
        if found is None or found[1].series is None:
            raise web.HTTPNotFound(text="no such series")
        return box, found[0], found[1]

    async def create_series(self, request: web.Request) -> web.StreamResponse:
        box = self._box(request)
        data = dict((await request.json()).get("data", {}))
        if not data.get("recurrence"):
            return _err(400, "a series needs data.recurrence")
        item = self.sb.create_item(box, self._cont(box, "event", None), data)
        return web.json_response({"id": item.immutable_id, "restId": item.rest_id}, status=201)

    async def occurrences(self, request: web.Request) -> web.StreamResponse:
        _box, _cont, master = self._master(request)
        if calendar.query_value(request.query, "startDateTime"):
            lo, hi = calendar.parse_window(request.query)
        else:
            lo, _end = calendar.first_span(master)
            hi = lo + timedelta(days=366)
        out = []
        for inst in calendar.instances(master, lo, hi):
            out.append(
                {
                    "date": inst.key,
                    "id": calendar.occurrence_id(master.immutable_id, inst.key),
                    "restId": calendar.occurrence_id(master.rest_id, inst.key),
                    "type": inst.kind,
                    "start": format_dtz(inst.start, "UTC"),
                    "end": format_dtz(inst.end, "UTC"),
                }
            )
        return web.json_response({"value": out})

    async def occurrence(self, request: web.Request) -> web.StreamResponse:
        box, cont, master = self._master(request)
        key = request.match_info["date"]
        if calendar.find_instance(master, key) is None:
            return _err(404, "no such occurrence")
        if request.method == "DELETE":
            self.sb.cancel_occurrence(box, cont, master, key)
            return web.Response(status=204)
        data = dict((await request.json()).get("data", {}))
        inst = self.sb.edit_occurrence(box, cont, master, key, data)
        return web.json_response({"date": inst.key, "type": inst.kind})

    async def reschedule(self, request: web.Request) -> web.StreamResponse:
        box, cont, master = self._master(request)
        body = await request.json()
        data = {k: body[k] for k in ("start", "end", "recurrence") if k in body}
        if not data:
            return _err(400, "give start, end and/or recurrence")
        self.sb.update_item(box, cont, master, data)
        return web.json_response({"id": master.immutable_id, "restId": master.rest_id})

    async def stale_next_links(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else {}
        box = self.sb.state.mailbox(body["mailbox"]) if body.get("mailbox") else None
        return web.json_response(
            {"stale": self.sb.state.stale_next_links(box.user_id if box else None)}
        )

    async def expire_delta(self, request: web.Request) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else {}
        box = self.sb.state.mailbox(body["mailbox"]) if body.get("mailbox") else None
        count = self.sb.state.expire_tokens(box.user_id if box else None)
        return web.json_response({"expired": count})

    async def lifecycle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        sub = self.sb.state.subscriptions.get(str(body["subscriptionId"]))
        if sub is None:
            return _err(404, "no such subscription")
        event = str(body["event"])
        if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
            return _err(400, "unknown lifecycle event")
        if not self.sb.notifier.lifecycle(sub, event):
            return _err(400, "subscription has no lifecycleNotificationUrl")
        if event == "subscriptionRemoved":
            del self.sb.state.subscriptions[sub.id]
        return web.json_response({"sent": event})

    async def faults(self, request: web.Request) -> web.StreamResponse:
        if request.method == "DELETE":
            self.sb.faults.clear()
            return web.Response(status=204)
        body = await request.json()
        self.sb.faults.append(
            Fault(
                status=body.get("status", 503),
                count=int(body.get("count", 1)),
                path=str(body.get("path", "")),
                method=str(body.get("method", "")),
                retry_after=body.get("retryAfter"),
                delay=float(body.get("delay", 0.0)),
                code=str(body.get("code", "")),
            )
        )
        return web.json_response({"faults": len(self.sb.faults)}, status=201)

    async def config(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        names = {f.name for f in dataclasses.fields(self.sb.config)}
        unknown = sorted(set(body) - names)
        if unknown:
            return _err(400, f"unknown settings: {unknown}")
        for key, value in body.items():
            setattr(self.sb.config, key, value)
        return web.json_response({k: getattr(self.sb.config, k) for k in body})

    async def revoke(self, _request: web.Request) -> web.StreamResponse:
        self.sb.state.access_tokens.clear()
        self.sb.state.token_roles.clear()
        return web.Response(status=204)

    async def dump(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(self.sb.state.dump())

    async def deliveries(self, _request: web.Request) -> web.StreamResponse:
        out = [dataclasses.asdict(d) for d in self.sb.notifier.deliveries]
        return web.json_response({"value": out})


def sent_message(upn: str, body: dict[str, Any]) -> dict[str, Any]:
    """Graph message JSON for an email the user sent."""

    def rcpts(key: str) -> list[dict[str, Any]]:
        return [{"emailAddress": {"address": a, "name": a}} for a in body.get(key, [])]

    me = {"emailAddress": {"address": upn, "name": upn}}
    sent = body.get("sentDateTime") or iso(utcnow())
    return {
        "subject": body.get("subject", ""),
        "bodyPreview": str(body.get("body", ""))[:255],
        "body": {"contentType": "text", "content": body.get("body", "")},
        "from": me,
        "sender": me,
        "toRecipients": rcpts("to"),
        "ccRecipients": rcpts("cc"),
        "bccRecipients": rcpts("bcc"),
        "categories": list(body.get("categories", [])),
        "internetMessageId": body.get("internetMessageId")
        or f"<{abs(hash((upn, body.get('subject'))))}.{id(body)}@sandbox.local>",
        "conversationId": body.get("conversationId", ""),
        "sentDateTime": sent,
        "receivedDateTime": sent,
        "isDraft": False,
        "isRead": True,
    }


def add_routes(app: web.Application, sb: Sandbox) -> None:
    c = Controls(sb)
    routes: list[tuple[str, str, Handler]] = [
        ("POST", "/_sim/mailboxes", c.add_mailbox),
        ("POST", "/_sim/users/{user}/send", c.send),
        ("POST", "/_sim/users/{user}/items/{kind}", c.create),
        ("PATCH", "/_sim/users/{user}/items/{kind}/{id}", c.modify),
        ("DELETE", "/_sim/users/{user}/items/{kind}/{id}", c.modify),
        ("POST", "/_sim/users/{user}/items/message/{id}/move", c.move),
        ("POST", "/_sim/users/{user}/todo/lists", c.add_list),
        ("POST", "/_sim/users/{user}/series", c.create_series),
        ("GET", "/_sim/users/{user}/series/{id}/occurrences", c.occurrences),
        ("PATCH", "/_sim/users/{user}/series/{id}/occurrences/{date}", c.occurrence),
        ("DELETE", "/_sim/users/{user}/series/{id}/occurrences/{date}", c.occurrence),
        ("POST", "/_sim/users/{user}/series/{id}/reschedule", c.reschedule),
        ("POST", "/_sim/expire-delta", c.expire_delta),
        ("POST", "/_sim/stale-next-links", c.stale_next_links),
        ("POST", "/_sim/lifecycle", c.lifecycle),
        ("POST", "/_sim/faults", c.faults),
        ("DELETE", "/_sim/faults", c.faults),
        ("POST", "/_sim/config", c.config),
        ("POST", "/_sim/revoke-tokens", c.revoke),
        ("GET", "/_sim/state", c.dump),
        ("GET", "/_sim/deliveries", c.deliveries),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _refusing(handler))


def _refusing(handler: Handler) -> Handler:
    """A control asked for something Graph would refuse (a bad recurrence, a moved occurrence
    crossing its neighbour): a 400 with Graph's code, not a crash."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except calendar.EventError as exc:
            return web.json_response({"error": exc.message, "code": exc.code}, status=exc.status)

    return wrapped
