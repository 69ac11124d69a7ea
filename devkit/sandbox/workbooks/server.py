"""The aiohttp application that plays Workbooks: transport, authentication and throttling
(workbooks-api.md §1, §5, §7.1-7.7), dispatching to ``reads`` and ``writes``.

Imports nothing from the client (``sync.workbooks``): the sandbox must be a second, independent
reading of the protocol, or tests against it prove nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from .config import SandboxConfig, SimUser
from .control import add_control_routes
from .filters import AttributeFailure, FilterError
from .metadata import metadata_types, picklist_data
from .params import WireParams, json_pairs, parse_bool, parse_form
from .reads import read
from .store import ReadContext, SandboxState, Session
from .writes import WriteContext, handle_write

STATE_KEY = web.AppKey("workbooks_state", SandboxState)
# One request body is processed at a time, and the event loop reads newly arrived requests
# between two of them (and within a long write batch, see ``writes.handle_write``): otherwise
# every request whose latency ends in the same tick runs back to back, and requests sent
# meanwhile only start their latency once all are done.
TURN_KEY = web.AppKey("workbooks_turn", asyncio.Lock)
COOKIE = "Workbooks-Session"
NO_CACHE = {"Cache-Control": "no-cache, no-store", "Pragma": "no-cache"}
# Compact JSON, as Rails emits it.  orjson encodes a 100-object batch reply ~10x faster than
# ``json``, and the sandbox serves one request at a time.  It is told to refuse what ``json``
# refuses (datetimes, dataclasses), and what it refuses beyond that (keys other than str,
# integers over 64 bits) goes to ``json``: every body means what it did, only the spacing (and
# the escaping of non-ASCII characters) changed.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def create_app(config: SandboxConfig | None = None) -> web.Application:
    """The sandbox as an aiohttp app; ``/_sim/`` controls only with ``config.sim_controls``."""
    config = config or SandboxConfig()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = SandboxState(config)
    app[TURN_KEY] = asyncio.Lock()
    app.on_cleanup.append(_close_webhooks)
    if config.sim_controls:
        add_control_routes(app, app[STATE_KEY])
    app.router.add_route("*", "/_delay", _delay)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app


def reply(
    body: dict[str, Any],
    status: int = 200,
    session: Session | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    response = web.Response(
        body=encode_json(body),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers={**NO_CACHE, **(headers or {})},
    )
    if session is not None:
        response.set_cookie(COOKIE, session.session_id, path="/", httponly=True)
    return response


def encode_json(body: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(body, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def redirect(location: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=302,
        text="<html><body>redirected</body></html>",
        content_type="text/html",
        headers={"Location": location, **NO_CACHE, **(headers or {})},
    )


async def read_params(request: web.Request) -> WireParams:
    """Query string first, then the body (form or JSON), in their original order."""
    pairs = list(request.query.items())
    if request.can_read_body:
        text = await request.text()
        if request.content_type == "application/json":
            pairs += json_pairs(text)
        elif text:
            pairs += parse_form(text)
    return WireParams(pairs)


async def _close_webhooks(app: web.Application) -> None:
    await app[STATE_KEY].webhooks.close()


async def _delay(request: web.Request) -> web.StreamResponse:
    """The configurable 'delaying URL': wait, then send the client back where it came from."""
    await asyncio.sleep(float(request.query.get("ms", "100")) / 1000)
    return redirect(request.query.get("to", "/"))


async def _dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.tick()
    state.webhooks.kick()
    path = request.path.lstrip("/")
    try:
        params = await read_params(request)
    except ValueError as exc:
        return reply({"success": False, "failures": [f"Unreadable parameters: {exc}"]}, 406)
    verb = (params.get("_method") or request.method).upper()
    state.stats[f"{verb} {path}"] += 1
    if state.config.require_user_agent and not request.headers.get("User-Agent"):
        return reply(
            {
                "success": False,
                "failure_reason": "user_agent_required",
                "failure_message": "A User-Agent header is required",
            },
            403,
        )
    if path == "login.api":
        return _login(state, request, params)
    if path == "logout":
        return _logout(state, request)
    if not path.endswith(".api"):
        return reply({"success": False, "failures": [f"No route matches /{path}"]}, 404)
    return await _data(state, request, params, path.removesuffix(".api"), verb)


# ------------------------------------------------------------------ sessions


def _login(state: SandboxState, request: web.Request, params: WireParams) -> web.Response:
    if params.get("client") != "api" or not (
        params.get("api_version") or params.get("_api_version")
    ):
        return reply(
            {
                "success": False,
                "failure_reason": "client_not_activated",
                "failure_message": "client=api and api_version=1 are required",
            },
            401,
        )
    user = _login_user(state, params)
    if user is None:
        return reply(
            {
                "success": False,
                "failure_reason": "unrecognised_name_or_password",
                "failure_message": "Incorrect user name or password",
            },
            401,
        )
    defaults = {
        k: v
        for k in (
            "_application_name",
            "_time_zone",
            "_per_object_transactions",
            "_strict_attribute_checking",
            "_json_output_datetime_format",
        )
        if (v := params.get(k)) is not None
    }
    session = state.new_session(user, defaults)
    body = _login_body(state, user, session)
    fast = params.get("_fast_login")
    if (fast is not None and not parse_bool(fast)) or not state.config.fast_login_omits_queues:
        body["my_queues"] = state.my_queues(user)
    return reply(body, session=session)


def _login_user(state: SandboxState, params: WireParams) -> SimUser | None:
    if api_key := params.get("api_key"):
        return state.user_by_key(api_key)
    name = params.get("username")
    user = next((u for u in state.config.users if u.login_name == name), None)
    if user is None:
        return None
    if params.get("session_id"):  # reconnect: the old session must be live and the user's own
        old = state.live_session(params.get("session_id"))
        return user if old is not None and old.user.user_id == user.user_id else None
    return user if params.get("password") == user.password else None


def _login_body(state: SandboxState, user: SimUser, session: Session) -> dict[str, Any]:
    db = state.config.logical_database_id
    return {
        "success": True,
        "session_id": session.session_id,
        "authenticity_token": session.token,
        "user_id": user.user_id,
        "person_name": user.person_name,
        "login_name": user.login_name,
        "api_version": 1,
        "database_name": "Main",
        "logical_database_id": db,
        "default_database_id": db,
        "databases": [{"id": db, "name": "Main", "created_at": "Tue Feb 04 10:25:56 UTC 2014"}],
        "database_instance_id": state.config.database_instance_id,
        "timezone": user.time_zone,
        "version": "SANDBOX (build 1)",
    }


def _logout(state: SandboxState, request: web.Request) -> web.Response:
    session = state.sessions.get(request.cookies.get(COOKIE, ""))
    if session is not None:
        for key in [k for k, s in state.sessions.items() if s is session]:
            del state.sessions[key]
    response = redirect("/")
    response.del_cookie(COOKIE, path="/")
    return response


# ------------------------------------------------------------------ data requests


class _Denied(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


def _authenticate(
    state: SandboxState, request: web.Request, params: WireParams, verb: str
) -> tuple[SimUser, Session | None]:
    """api_key per request, or the session cookie (+ authenticity token on writes)."""
    if api_key := params.get("api_key"):
        user = state.user_by_key(api_key)
        if user is None:  # [INF] shape
            raise _Denied(
                reply(
                    {
                        "success": False,
                        "failure_reason": "no_session",
                        "failure_message": "The API key is not valid",
                    },
                    401,
                )
            )
        return user, None
    session = state.live_session(request.cookies.get(COOKIE))
    if session is None:  # [INF] a dead session is sent to the login page (configurable)
        location = state.config.dead_session_location
        if location == "401":
            raise _Denied(
                reply(
                    {
                        "success": False,
                        "failure_reason": "session_expired",
                        "failure_message": "Your session has expired",
                    },
                    401,
                )
            )
        raise _Denied(redirect(request.path_qs if location == "same" else location))
    if verb != "GET" and params.get("_authenticity_token") != session.token:
        raise _Denied(
            reply(
                {"success": False, "failures": ["Invalid authenticity token"]},
                state.config.authenticity_failure_status,
            )
        )
    session.last_used = state.clock.now()
    session.requests += 1
    every = state.config.rotate_session_every
    if every and session.requests % every == 0:
        state.rotate(session)
    return session.user, session


def _throttle_response(state: SandboxState, request: web.Request) -> web.Response:
    headers = {}
    if state.config.retry_after_seconds is not None:
        headers["Retry-After"] = str(state.config.retry_after_seconds)
    if state.config.throttle_location == "delay":
        return redirect(f"/_delay?ms=200&to={quote(request.path_qs, safe='')}", headers)
    return redirect(request.path_qs, headers)


async def _data(
    state: SandboxState, request: web.Request, params: WireParams, endpoint: str, verb: str
) -> web.StreamResponse:
    try:
        user, session = _authenticate(state, request, params, verb)
    except _Denied as denied:
        return denied.response
    credential = f"user:{user.user_id}"
    cap = state.config.concurrency_cap
    if state.should_throttle(credential) or (
        cap is not None and state.in_flight[credential] >= cap
    ):
        state.stats["throttled"] += 1
        return _throttle_response(state, request)
    state.in_flight[credential] += 1
    state.peak_in_flight = max(state.peak_in_flight, state.in_flight[credential])
    try:
        if state.faults.latency_ms:
            await asyncio.sleep(state.faults.latency_ms / 1000)
        async with request.app[TURN_KEY]:
            if state.faults.fail_next:
                status = state.faults.fail_next.pop(0)
                return reply(
                    {"success": False, "failures": [f"Database error. Reference: SIM-{status}"]},
                    status,
                    session,
                )
            response = await _serve(state, request, params, endpoint, verb, user, session)
            await asyncio.sleep(0)  # still holding the turn: let the loop read new requests
            return response
    finally:
        state.in_flight[credential] -= 1


async def _serve(
    state: SandboxState,
    request: web.Request,
    params: WireParams,
    endpoint: str,
    verb: str,
    user: SimUser,
    session: Session | None,
) -> web.Response:
    defaults = session.defaults if session else {}

    def setting(name: str) -> str | None:
        value = params.get(name)
        return value if value is not None else defaults.get(name)

    mode = state.config.attribute_checking
    strict = mode == "always" or (
        mode == "flag" and parse_bool(setting("_strict_attribute_checking") or "")
    )
    ctx = ReadContext(
        user, setting("_json_output_datetime_format"), strict, check_filterable=mode != "never"
    )
    try:
        if endpoint == "metadata/types" or endpoint.startswith("picklist_data/"):
            if verb != "GET":
                return reply({"success": False, "failures": [f"{verb} not allowed"]}, 405, session)
            if endpoint == "metadata/types":
                return reply(metadata_types(state.schema, params, ctx), session=session)
            values = picklist_data(state, endpoint, params)
            if values is None:
                return reply(
                    {"success": False, "failures": [f"No route matches /{endpoint}.api"]},
                    404,
                    session,
                )
            return reply(values, session=session)
        rtype = state.schema.served(endpoint)
        if rtype is None:
            return reply(
                {"success": False, "failures": [f"No route matches /{endpoint}.api"]}, 404, session
            )
        if not state.schema.permitted(rtype):  # [INF] §1.7: 404 is "not found, or access denied"
            return reply(
                {
                    "success": False,
                    "failures": [f"Access denied: you may not use {rtype.human_plural}"],
                },
                404,
                session,
            )
        if verb == "GET":
            return reply(read(state, endpoint, state.rows(endpoint), params, ctx), session=session)
        if verb != "PUT" or not rtype.writable:
            return reply(
                {
                    "success": False,
                    "failures": [f"{verb} is not allowed: send PUT with __method[]"],
                },
                405,
                session,
            )
        application = (
            setting("_application_name")
            or params.get("application_name")
            or request.headers.get("User-Agent", "").split(" ")[0].split("/")[0]
        )
        wctx = WriteContext(
            ctx,
            application,
            parse_bool(setting("_per_object_transactions") or ""),
            strict,
            "store" if mode == "never" else "drop",
        )
        return reply(await handle_write(state, rtype, params, wctx), session=session)
    except FilterError as exc:  # [INF] status for unusable filters
        return reply({"success": False, "failures": [str(exc)]}, 406, session)
    except AttributeFailure as exc:
        return reply({"success": False, "failures": [str(exc)]}, session=session)
