"""``/_sim/`` control endpoints (not Workbooks): reset, seed, clock, faults, dump (§7.27).

Each control is also a plain function over ``SandboxState`` so in-process tests can call it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .config import RUNTIME_FIELDS
from .params import wire_text
from .store import ReadContext, SandboxState
from .values import parse_instant
from .writes import Journal, ObjectRequest, WriteContext, _create, _update


def _context(state: SandboxState, user_id: int | None) -> WriteContext:
    user = state.user_by_id(user_id) or state.config.users[0]
    return WriteContext(ReadContext(user), "Sandbox", per_object=True, strict=False)


def seed(
    state: SandboxState, endpoint: str, records: list[dict[str, Any]], user_id: int | None = None
) -> list[dict[str, Any]]:
    """Create records through the same code as an API create; returns id + lock_version."""
    rtype = state.types[endpoint]
    wctx = _context(state, user_id)
    created = []
    try:
        for values in records:
            obj = ObjectRequest("POST", "0", "0", {k: wire_text(v) for k, v in values.items()})
            affected, errors = _create(state, rtype, obj, wctx, Journal())
            if errors:
                raise ValueError(f"cannot seed {endpoint}: {errors}")
            created.append(
                {
                    "id": affected["id"],
                    "lock_version": affected["lock_version"],
                    "object_ref": affected.get("object_ref"),
                }
            )
    finally:  # a seeded record is a record created in Workbooks: its triggers fire
        state.webhooks.records_created(wctx.created)
    return created


def edit_as(
    state: SandboxState,
    endpoint: str,
    record_id: int,
    changes: dict[str, Any],
    user_id: int | None = None,
) -> dict[str, Any]:
    """Change a record as another user would in the UI (bumps ``lock_version``)."""
    rtype = state.types[endpoint]
    record = state.find(endpoint, record_id)
    if record is None:
        raise KeyError(f"{endpoint} {record_id} does not exist")
    obj = ObjectRequest(
        "PUT",
        str(record_id),
        str(record["lock_version"]),
        {k: wire_text(v) for k, v in changes.items()},
    )
    affected, errors = _update(state, rtype, record, obj, _context(state, user_id), Journal())
    if errors:
        raise ValueError(f"cannot edit {endpoint} {record_id}: {errors}")
    return affected


def set_watched(
    state: SandboxState, user_id: int, endpoint: str, record_id: int, watched: bool = True
) -> None:
    key = (user_id, state.types[endpoint].class_name, record_id)
    if watched:
        state.watched.add(key)
    else:
        state.watched.discard(key)


def set_clock(
    state: SandboxState, freeze: str | bool | None = None, advance_seconds: float = 0.0
) -> datetime:
    """Freeze (at an ISO instant, or now), unfreeze (``False``), and/or advance the clock."""
    if freeze is False:
        state.clock.frozen = None
    elif freeze is True:
        state.clock.frozen = state.clock.now()
    elif isinstance(freeze, str):
        state.clock.frozen = parse_instant(freeze) or datetime.now(UTC)
    if advance_seconds:
        state.clock.advance(advance_seconds)
    return state.clock.now()


def configure(state: SandboxState, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Change the behaviour of a running sandbox (``config.RUNTIME_FIELDS``); without
    changes, just the current values."""
    config = state.configure(changes) if changes else state.config
    return config.model_dump(include=set(RUNTIME_FIELDS))


def webhook_faults(
    state: SandboxState,
    duplicate: bool | None = None,
    reorder_next: int | None = None,
    delay_ms: float | None = None,
) -> None:
    """Deliver every webhook twice, hold the next n and send them newest first, delay them."""
    faults = state.faults
    if duplicate is not None:
        faults.webhook_duplicate = duplicate
    if reorder_next is not None:
        faults.webhook_reorder_next = reorder_next
    if delay_ms is not None:
        faults.webhook_delay_ms = delay_ms


def expire_sessions(state: SandboxState) -> int:
    count = len(state.sessions)
    state.sessions.clear()
    return count


def add_control_routes(app: web.Application, state: SandboxState) -> None:
    """Register ``/_sim/*``; only called in sandbox mode."""

    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        data = await request.json()
        return data if isinstance(data, dict) else {}

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"ok": True})

    async def seed_route(request: web.Request) -> web.Response:
        data = await body(request)
        created = seed(state, data["endpoint"], data.get("records", []), data.get("user_id"))
        return web.json_response({"ok": True, "created": created})

    async def clock(request: web.Request) -> web.Response:
        data = await body(request)
        now = set_clock(state, data.get("freeze"), float(data.get("advance_seconds", 0)))
        return web.json_response({"ok": True, "now": now.isoformat()})

    async def conflict(request: web.Request) -> web.Response:
        state.faults.force_conflicts += int((await body(request)).get("count", 1))
        return web.json_response({"ok": True})

    async def expire(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "expired": expire_sessions(state)})

    async def edit(request: web.Request) -> web.Response:
        data = await body(request)
        affected = edit_as(
            state, data["endpoint"], int(data["id"]), data.get("changes", {}), data.get("user_id")
        )
        return web.json_response({"ok": True, "affected": affected})

    async def dump(request: web.Request) -> web.Response:
        return web.json_response(state.dump())

    async def watched(request: web.Request) -> web.Response:
        data = await body(request)
        set_watched(
            state,
            int(data["user_id"]),
            data["endpoint"],
            int(data["id"]),
            bool(data.get("watched", True)),
        )
        return web.json_response({"ok": True})

    async def throttle(request: web.Request) -> web.Response:
        data = await body(request)
        state.faults.throttle_next = int(data.get("next", 0))
        state.faults.throttle_every = data.get("every")
        return web.json_response({"ok": True})

    async def latency(request: web.Request) -> web.Response:
        state.faults.latency_ms = float((await body(request)).get("ms", 0))
        return web.json_response({"ok": True})

    async def fail(request: web.Request) -> web.Response:
        state.faults.fail_next = [int(s) for s in (await body(request)).get("statuses", [])]
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dict(state.stats))

    async def config(request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response(configure(state))
        try:
            current = configure(state, await body(request))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, "config": current})

    async def deliveries(request: web.Request) -> web.Response:
        return web.json_response([d.describe() for d in state.webhooks.deliveries])

    async def webhook_fault_route(request: web.Request) -> web.Response:
        data = await body(request)
        webhook_faults(
            state,
            None if "duplicate" not in data else bool(data["duplicate"]),
            None if "reorder_next" not in data else int(data["reorder_next"]),
            None if "delay_ms" not in data else float(data["delay_ms"]),
        )
        return web.json_response({"ok": True})

    routes = [
        ("POST", "reset", reset),
        ("POST", "seed", seed_route),
        ("POST", "clock", clock),
        ("POST", "force_conflict", conflict),
        ("POST", "expire_sessions", expire),
        ("POST", "edit", edit),
        ("GET", "state", dump),
        ("POST", "watched", watched),
        ("POST", "throttle", throttle),
        ("POST", "latency", latency),
        ("POST", "fail", fail),
        ("GET", "stats", stats),
        ("GET", "config", config),
        ("POST", "config", config),
        ("GET", "webhook_deliveries", deliveries),
        ("POST", "webhook_faults", webhook_fault_route),
    ]
    for method, name, handler in routes:
        app.router.add_route(method, f"/_sim/{name}", handler)
