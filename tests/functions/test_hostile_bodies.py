"""Every route that reads JSON, sent every hostile body over HTTP through the local host (the
project's ``function_app`` as the Functions host runs it): each gets a 4xx with a JSON error,
``X-Content-Type-Options: nosniff``, no traceback and no state change.

Routes: the anonymous webhook and lifecycle routes, the manual sync route and attach.  Inputs:
JSON nested 5,000 and 100,000 deep, 5,000-digit numbers in every numeric and id position of each
route's body, huge strings, wrong types, NaN/Infinity, duplicate keys, non-UTF-8, a byte-order
mark, an empty body, and content types that are not JSON.  Every hostile body is built from a
body the route accepts, so what is refused is the hostile part alone.
"""

from __future__ import annotations

import codecs
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from devkit.host.localhost import LocalHost
from sync.runtime import Services, get_services, reset_services
from tests.functions.helpers import notification, register
from tests.support.local import patched_environ
from tests.support.world import drop_services

MAILBOX = "ann@example.com"
SUB, SECRET = "sub-hostile-1", "secret-hostile-1"
HUGE_INT = "1" * 5_000
HOLE = "__HOSTILE__"  # replaced by raw JSON text (json.dumps cannot write a 5,000-digit int)


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    template: dict[str, Any]  # a body the route accepts
    positions: tuple[tuple[str | int, ...], ...]  # every numeric and id position in it
    content_type: str = "application/json"


def _webhook_template(lifecycle: bool) -> dict[str, Any]:
    item = notification(SUB, SECRET, event="missed" if lifecycle else None)
    item["sequenceNumber"] = 7  # a numeric field Graph may add; we do not read it
    return {"value": [item]}


_ITEM_POSITIONS: tuple[tuple[str | int, ...], ...] = (
    ("value",),
    ("value", 0),
    ("value", 0, "subscriptionId"),
    ("value", 0, "clientState"),
    ("value", 0, "changeType"),
    ("value", 0, "tenantId"),
    ("value", 0, "subscriptionExpirationDateTime"),
    ("value", 0, "sequenceNumber"),
)
ROUTES = (
    Route(
        "notifications",
        "/api/graph/notifications",
        _webhook_template(False),
        (
            *_ITEM_POSITIONS,
            ("value", 0, "resource"),
            ("value", 0, "resourceData"),
            ("value", 0, "resourceData", "id"),
        ),
    ),
    Route(
        "lifecycle",
        "/api/graph/lifecycle",
        _webhook_template(True),
        (*_ITEM_POSITIONS, ("value", 0, "lifecycleEvent")),
    ),
    Route("manual_sync", f"/api/sync/{MAILBOX}", {"kind": "push"}, (("kind",),)),
    Route(
        "attach",
        f"/api/emails/{MAILBOX}/attach",
        {"message_id": "AAMkAD1=", "record_type": "Private::Crm::Case", "record_id": 12},
        (("message_id",), ("record_type",), ("record_id",)),
    ),
    Route(
        "attach_by_reference",
        f"/api/emails/{MAILBOX}/attach",
        {"message_id": "<a@b>", "record": "CASE-12"},
        (("record",),),
    ),
)


def _with(template: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(template))
    node: Any = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


def _raw(template: dict[str, Any], path: tuple[str | int, ...], raw: str) -> bytes:
    """``template`` with the JSON text ``raw`` (written as is) at ``path``."""
    return json.dumps(_with(template, path, HOLE)).replace(f'"{HOLE}"', raw).encode()


def _wrong_types(path: tuple[str | int, ...]) -> tuple[str, ...]:
    """JSON values of a type the position does not take."""
    if path[-1] == "sequenceNumber":
        return ()  # a field we do not read: Graph decides its type
    if path[-1] == "resourceData":
        return ("true", "[1]", "12.5", '"AAMk"')  # an object, any object, is its type
    if path == ("value", 0):
        return ("true", "[1]", "12.5", '"x"')
    return ("true", "[1]", '{"a": 1}', "12.5")


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# (id, body, content type or None for the route's, expected status)
Case = tuple[str, bytes, str | None, int]


def cases(route: Route) -> list[Case]:
    good = json.dumps(route.template).encode()
    out: list[Case] = []
    for path in route.positions:
        where = ".".join(str(p) for p in path)
        out += [
            (f"5000-digit int at {where}", _raw(route.template, path, HUGE_INT), None, 400),
            (
                f"negative 5000-digit at {where}",
                _raw(route.template, path, "-" + HUGE_INT),
                None,
                400,
            ),
            (
                f"5000-digit float at {where}",
                _raw(route.template, path, HUGE_INT + ".5"),
                None,
                400,
            ),
            (f"1e999 at {where}", _raw(route.template, path, "1e999"), None, 400),
            (f"NaN at {where}", _raw(route.template, path, "NaN"), None, 400),
            (f"Infinity at {where}", _raw(route.template, path, "-Infinity"), None, 400),
            (f"5000 deep at {where}", _raw(route.template, path, _nested(5_000)), None, 400),
            (f"lone surrogate at {where}", _raw(route.template, path, '"\\ud800"'), None, 400),
        ]
        for wrong in _wrong_types(path):
            out.append((f"{wrong} at {where}", _raw(route.template, path, wrong), None, 400))
    huge = "x" * 100_000
    limit_route = route.name in ("notifications", "lifecycle")
    first = route.positions[-1]
    out += [
        ("JSON 5000 deep", _nested(5_000).encode(), None, 400),
        ("JSON 100000 deep", _nested(100_000).encode(), None, 400 if limit_route else 413),
        (
            "objects 5000 deep",
            ('{"a":' * 5_000 + "1" + "}" * 5_000).encode(),
            None,
            400 if limit_route else 413,
        ),
        ("5000-digit body", HUGE_INT.encode(), None, 400),
        (
            "huge string",
            json.dumps(_with(route.template, first, huge)).encode(),
            None,
            400 if limit_route else 413,
        ),
        (
            "huge key",
            json.dumps({huge: 1, **route.template}).encode(),
            None,
            400 if limit_route else 413,
        ),
        ("2 MB body", json.dumps(_with(route.template, first, huge * 20)).encode(), None, 413),
        (
            "3000-char string",
            json.dumps(_with(route.template, first, "y" * 3_000)).encode(),
            None,
            400,
        ),
        ("duplicate key", good[:-1] + b", " + good[1:], None, 400),
        ("not UTF-8", good.replace(b'"', b'"\xff', 1), None, 400),
        (
            "Latin-1",
            json.dumps(_with(route.template, first, "café"), ensure_ascii=False).encode("latin-1"),
            None,
            400,
        ),
        ("UTF-16", json.dumps(route.template).encode("utf-16"), None, 400),
        ("BOM", codecs.BOM_UTF8 + good, None, 400),
        ("malformed", good[:-1], None, 400),
        ("trailing data", good + b" {}", None, 400),
        ("array body", b"[" + good + b"]", None, 400),
        ("string body", b'"hello"', None, 400),
        ("null body", b"null", None, 400),
        ("NUL bytes", b"\x00" * 64, None, 400),
        ("form encoded", good, "application/x-www-form-urlencoded", 415),
        ("text/html", good, "text/html", 415),
    ]
    if route.name != "manual_sync":  # its body is optional: empty means "full"
        out += [("empty body", b"", None, 400), ("whitespace body", b" \r\n ", None, 400)]
    if limit_route:
        out += [
            ("text/plain", good, "text/plain", 415),
            ("no content type", good, "", 415),
            ("unknown item shape", json.dumps({"value": [5]}).encode(), None, 400),
        ]
    else:
        out.append(
            ("unknown field", json.dumps({**route.template, "knid": "x"}).encode(), None, 400)
        )
    return out


PARAMS = [
    pytest.param(route, case, id=f"{route.name}: {case[0]}")
    for route in ROUTES
    for case in cases(route)
]


@dataclass
class Host:
    base_url: str
    services: Services
    http: aiohttp.ClientSession


@pytest.fixture(scope="module")
async def host(azurite_connection: str) -> AsyncIterator[Host]:
    tag = uuid.uuid4().hex[:10]
    with patched_environ({"SYNC_TABLE_PREFIX": f"h{tag}", "SYNC_JOBS_QUEUE": f"jobs-{tag}"}):
        await reset_services()
        services = await get_services()
        await register(services, MAILBOX, SUB, SECRET)
        async with (
            LocalHost("function_app", timers=False, queues=False) as local,
            aiohttp.ClientSession() as http,
        ):
            yield Host(local.base_url, services, http)
        await drop_services(services)


async def _unchanged(services: Services) -> None:
    """Nothing queued, marked, run or recorded."""
    assert await services.queue.depth() == 0
    assert not await services.store.dirty.is_marked(MAILBOX, "sent")
    assert await services.store.runs.recent(MAILBOX) == []


@pytest.mark.parametrize(("route", "case"), PARAMS)
async def test_hostile_body_gets_a_4xx_and_changes_nothing(
    host: Host, route: Route, case: Case
) -> None:
    _, body, content_type, status = case
    ctype = route.content_type if content_type is None else content_type
    headers = {"Content-Type": ctype} if ctype else {}
    async with host.http.post(
        f"{host.base_url}{route.path}",
        data=body,
        headers=headers,
        skip_auto_headers=["Content-Type"],
    ) as resp:
        text = await resp.text()
        assert resp.status == status, text
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.content_type == "application/json"
    error = json.loads(text)["error"]
    assert isinstance(error, str) and error and "Traceback" not in error
    assert len(error) < 400  # says what is wrong without echoing the body
    await _unchanged(host.services)


async def test_each_template_is_a_body_the_route_accepts(host: Host) -> None:
    """The hostile bodies differ from these only in their hostile part."""
    for route in ROUTES[:2]:
        async with host.http.post(f"{host.base_url}{route.path}", json=route.template) as resp:
            assert resp.status == 202, await resp.text()
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    jobs = await _drain(host.services)
    assert sorted(j.kind.value for j in jobs) == ["dirty", "lifecycle"]
    await host.services.store.dirty.clear(MAILBOX, "sent")
    await host.services.store.dirty.clear(MAILBOX, f"lifecycle:missed:{SUB}")
    host.services.cache.webhook_memo.forget()
    async with host.http.post(f"{host.base_url}{ROUTES[2].path}", json=ROUTES[2].template) as resp:
        assert resp.status == 202, await resp.text()
    assert [j.mode for j in await _drain(host.services)] == ["push"]
    # attach's templates pass the body reader and reach the engine (which finds no message).
    from sync.blueprints.emails import parse_attach

    for route in ROUTES[3:]:
        assert parse_attach(route.template)[0] == route.template["message_id"]


async def test_validation_echo_is_nosniff(host: Host) -> None:
    url = f"{host.base_url}/api/graph/notifications?validationToken=%3Cb%3Ehi%3C%2Fb%3E"
    async with host.http.post(url) as resp:
        assert resp.status == 200
        assert await resp.text() == "<b>hi</b>"
        assert resp.content_type == "text/plain"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/api/status", f"/api/sync/jobs/{uuid.uuid4().hex}"):
        async with host.http.get(f"{host.base_url}{path}") as resp:
            assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def _drain(services: Services) -> list[Any]:
    from tests.functions.helpers import drain

    return await drain(services)
