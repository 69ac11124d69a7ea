"""The transport to one Workbooks identity: session login, form encoding, cookie adoption,
throttling replay and the in-flight cap (workbooks-api.md §1, §5, §6).

Everything is ``POST`` with ``_method`` in an ordered form body: repeated keys (``_ff[]``,
``id[]``) must survive in order, and GET bodies do not survive every proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from sync.core.backoff import Backoff, retry_after_seconds

from . import errors
from .config import ClientConfig, WorkbooksIdentity
from .wire import FormPairs

log = logging.getLogger(__name__)
COOKIE = "Workbooks-Session"
# §1.6, §1.8: a request made with a dead session is redirected (302).  [INF] Where to is not
# documented: to the login page or the root (the bindings' logout also lands there) is taken
# as a dead session at once.  A redirect back to the request's own URL is what throttling
# looks like too (§8 q4); see ``WorkbooksClient.request`` for how the two are told apart.
LOGIN_PATHS = ("/", "/login", "/login.api")
# §1.6: ``failure_reason`` values of a 401 that mean "no live session" (documented for
# login.api; a data request with a dead session may answer the same way).
SESSION_REASONS = frozenset({"session_expired", "no_session", "no_session_found"})
# After a fresh login did not stop redirects to the request's own URL (so they were
# throttling), such redirects are throttling without another login for this long.
PROBE_COOLDOWN_SECONDS = 60.0
Sleep = Callable[[float], Awaitable[None]]
_HAND_OVER_YIELDS = 2  # one for the woken request to send its headers, one for its body
# The 5-in-flight limit is per identity across every process that uses it (§5), and the cap
# below (``max_concurrency``) is per client, so per process.  ``job_slots`` bounds the
# requests of one job (and the tasks it starts) as well: the runner gives each stream job its
# share, and since a mailbox has one job per stream at a time (stream leases), the mailbox's
# identity never has more than the limit in flight, however many instances run its jobs.
_JOB_SLOTS: ContextVar[asyncio.Semaphore | None] = ContextVar("workbooks_job_slots", default=None)


@contextlib.contextmanager
def job_slots(n: int) -> Iterator[None]:
    """Workbooks requests sent inside the block (by any client, in any task it starts) are at
    most ``n`` in flight together."""
    token = _JOB_SLOTS.set(asyncio.Semaphore(max(1, n)))
    try:
        yield
    finally:
        _JOB_SLOTS.reset(token)


def _job_gate() -> contextlib.AbstractAsyncContextManager[Any]:
    gate = _JOB_SLOTS.get()
    return gate if gate is not None else contextlib.nullcontext()


@dataclass(frozen=True)
class LoginInfo:
    """What ``login.api`` told us; the session id and token stay out of the repr."""

    user_id: int
    person_name: str
    my_queues: dict[str, int]
    database_instance_id: int | None
    session_id: str = field(repr=False)
    authenticity_token: str = field(repr=False)
    time_zone: str = ""  # the user's zone as login.api names it, e.g. "London (GMT+00:00)"


@dataclass
class _Reply:
    status: int
    location: str
    retry_after: str | None
    text: str = field(repr=False)  # a login reply holds the session id and token
    body: dict[str, Any] | None = field(repr=False)


class WorkbooksClient:
    """One session per identity; at most ``max_concurrency`` requests in flight.

    Use as ``async with WorkbooksClient(identity, config) as client:``; reads, writes and queries
    (``reads``, ``writes``, ``queries`` modules) take the client as their first argument.
    """

    def __init__(
        self,
        identity: WorkbooksIdentity,
        config: ClientConfig | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        shared: dict[str, Any] | None = None,
    ) -> None:
        self.identity = identity
        self.config = config or ClientConfig()
        self._sleep = sleep
        # What one user's client learned about its Workbooks database, for the other clients
        # of the same deployment (``sync.workbooks.owners``); a client of its own by default.
        self.shared: dict[str, Any] = {} if shared is None else shared
        self._http: aiohttp.ClientSession | None = None
        self._in_flight = asyncio.Semaphore(self.config.max_concurrency)
        self._login_lock = asyncio.Lock()
        self._login: LoginInfo | None = None
        self._cookie: str | None = None
        self._generation = 0  # bumps on every successful login; de-duplicates re-logins
        self._throttled_at = -PROBE_COOLDOWN_SECONDS  # monotonic: redirects proved throttling
        self.calls: Counter[str] = Counter()  # "VERB endpoint" -> requests sent (incl. replays)

    def __repr__(self) -> str:
        return f"WorkbooksClient({self.identity.base_url!r}, user={self.identity.user!r})"

    async def __aenter__(self) -> WorkbooksClient:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _open(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            total = self.config.timeout_seconds
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=total, connect=min(30.0, total)),
                # We track Workbooks-Session ourselves (from every Set-Cookie), so the jar
                # must not add or drop cookies behind our back (it ignores IP hosts anyway).
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": self.config.user_agent, "Accept-Encoding": "gzip"},
            )
        return self._http

    async def close(self) -> None:
        """Log out (good citizenship, §5) and close the HTTP session."""
        if self._http is None or self._http.closed:
            return
        if self._cookie:
            try:
                async with self._http.post(
                    f"{self.identity.base_url}/logout",
                    data=[("client", "api")],
                    allow_redirects=False,
                    headers={"Cookie": f"{COOKIE}={self._cookie}"},
                ):
                    pass
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("workbooks logout failed: %s", type(exc).__name__)
        self._cookie, self._login = None, None
        await self._http.close()

    # ------------------------------------------------------------ session

    @property
    def login_info(self) -> LoginInfo | None:
        return self._login

    async def ensure_login(self) -> LoginInfo:
        if self._login is None:
            await self._relogin(self._generation)
        assert self._login is not None
        return self._login

    async def _relogin(self, seen_generation: int) -> None:
        """Log in once, however many requests noticed the dead session at the same time."""
        async with self._login_lock:
            if self._generation != seen_generation and self._login is not None:
                return
            self._login = await self._do_login()
            self._generation += 1

    async def _do_login(self) -> LoginInfo:
        form: FormPairs = [
            ("client", "api"),
            ("api_version", "1"),
            ("_api_version", "1"),
            ("api_key", self.identity.api_key.get_secret_value()),
            ("_application_name", self.config.application_name),
            ("_fast_login", "false"),  # we need my_queues (§2.8)
            ("_strict_attribute_checking", "true"),
            ("_per_object_transactions", "true"),
        ]
        for attempt in range(1, self.config.throttle_max_attempts + 1):
            reply = await self._post("login.api", form, with_cookie=False)
            if reply.status == 200 and reply.body is not None:
                return self._adopt_login(reply.body)
            if 300 <= reply.status < 400:
                await self._sleep(self._backoff(attempt, reply.retry_after))
                continue
            raise errors.from_status(reply.status, reply.body, reply.text, "login")
        raise errors.throttled("login", self.config.throttle_max_attempts)

    def _adopt_login(self, body: dict[str, Any]) -> LoginInfo:
        session_id = str(body.get("session_id") or self._cookie or "")
        if not session_id:
            raise errors.no_session()
        self._cookie = session_id
        queues = body.get("my_queues") or {}
        return LoginInfo(
            int(body.get("user_id") or 0),
            str(body.get("person_name") or ""),
            {str(k): int(v) for k, v in queues.items()},
            body.get("database_instance_id"),
            session_id,
            str(body.get("authenticity_token") or ""),
            str(body.get("timezone") or ""),
        )

    # ------------------------------------------------------------ requests

    async def get(self, endpoint: str, params: FormPairs) -> dict[str, Any]:
        return await self.request("GET", endpoint, params)

    async def put(self, endpoint: str, params: FormPairs) -> dict[str, Any]:
        return await self.request("PUT", endpoint, params)

    async def request(self, verb: str, endpoint: str, params: FormPairs) -> dict[str, Any]:
        """Send one API call; replay it on throttling, log in again on session expiry.

        Returns the JSON body of a 200 answer, whatever its ``success`` (callers decide).

        A dead session (§1.6) is recognised by a redirect to the login page or the root, or a
        401 whose ``failure_reason`` says there is no session: one fresh login, then the
        replay.  A redirect anywhere else (usually the request's own URL) is throttling, or a
        dead session on a service that sends it back to the same URL (§8 q4): the first one a
        request gets is answered by a fresh login and an immediate replay, unless such a login
        proved useless within ``PROBE_COOLDOWN_SECONDS``; every later one by back-off.
        """
        what = f"{verb} {endpoint}"
        throttles = relogins = 0
        probed = False
        while True:
            login = await self.ensure_login()
            generation = self._generation
            form: FormPairs = [("_method", verb), ("client", "api")]
            if verb != "GET":
                form.append(("_authenticity_token", login.authenticity_token))
            reply = await self._post(f"{endpoint}.api", form + params, with_cookie=True)
            self.calls[what] += 1
            if self._dead_session(reply):
                relogins += 1
                if relogins > self.config.relogin_attempts:
                    raise errors.session_rejected(what)
                log.info("workbooks session expired; logging in again")
                await self._relogin(generation)
                continue
            if 300 <= reply.status < 400:
                throttles += 1
                if throttles >= self.config.throttle_max_attempts:
                    raise errors.throttled(what, throttles)
                if probed and throttles == 2:
                    self._throttled_at = time.monotonic()  # a fresh session did not help
                if not probed and self._may_probe():
                    probed = True
                    log.info("workbooks redirect to the same URL; logging in again first")
                    await self._relogin(generation)
                    continue
                await self._sleep(self._backoff(throttles, reply.retry_after))
                continue
            if reply.status != 200:
                raise errors.from_status(
                    reply.status, reply.body, reply.text, what, reply.retry_after
                )
            if reply.body is None:
                raise errors.not_json(what, reply.text)
            return reply.body

    def _dead_session(self, reply: _Reply) -> bool:
        if 300 <= reply.status < 400:
            return urlsplit(reply.location).path in LOGIN_PATHS
        if reply.status == 401:
            return str((reply.body or {}).get("failure_reason") or "") in SESSION_REASONS
        return False

    def _may_probe(self) -> bool:
        return time.monotonic() - self._throttled_at >= PROBE_COOLDOWN_SECONDS

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After when the server sent one; otherwise exponential with full jitter
        (``sync.core.backoff``), so the replays of many runs throttled together spread out."""
        seconds = retry_after_seconds(retry_after)
        after = None if seconds is None else float(seconds)
        backoff = Backoff(self.config.backoff_base_seconds, self.config.backoff_max_seconds)
        return backoff.delay(attempt, after)

    async def _post(self, path: str, form: FormPairs, *, with_cookie: bool) -> _Reply:
        """One HTTP exchange under the in-flight cap; adopts any rotated session cookie."""
        http = self._open()
        url = f"{self.identity.base_url}/{path}"
        headers = {"Cookie": f"{COOKIE}={self._cookie}"} if with_cookie and self._cookie else {}
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        # Encoded before taking a slot: a slot is the server's time, and our CPU work inside
        # it would leave the server idle.
        body = encode_form(form)
        try:
            async with (
                _job_gate(),  # the job's share first: never hold a client slot waiting for it
                self._in_flight,
                http.post(
                    url,
                    params={"_dc": str(int(time.time() * 1000))},
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                ) as response,
            ):
                text = await response.text()
                cookie = response.cookies.get(COOKIE)
                if cookie is not None and cookie.value:
                    self._cookie = cookie.value  # §1.6: always adopt the newest session id
                status = response.status
                location = response.headers.get("Location", "")
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise errors.transport(f"POST {path}", exc) from exc
        # The freed slot woke a request waiting for it; let it go out (its body is written by
        # a task of its own) before this reply is parsed, so the server does not wait on us.
        for _ in range(_HAND_OVER_YIELDS):
            await asyncio.sleep(0)
        # Parsed outside the in-flight slot: the slot bounds the server's load, not ours.
        return _Reply(status, location, retry_after, text, _json(text))


@lru_cache(maxsize=2048)
def _quote_key(key: str) -> str:
    return quote(key, safe="[]_")


# ``quote(v, safe="")`` keeps exactly these characters; every other one becomes the %XX escapes
# of its UTF-8 bytes.  A regex substitution only calls back for the characters it changes.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.~-]")


@lru_cache(maxsize=1024)
def _escape_char(char: str) -> str:
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8"))


def _escape(match: re.Match[str]) -> str:
    return _escape_char(match.group())


def _quote_value(value: str) -> str:
    """``quote(value, safe="")``, byte for byte."""
    if type(value) is not str:
        return quote(value, safe="")
    return _UNSAFE.sub(_escape, value)


def encode_form(form: FormPairs) -> bytes:
    """The ordered form body; keys repeat across a batch, so their encoding is cached."""
    return "&".join([f"{_quote_key(k)}={_quote_value(v)}" for k, v in form]).encode()


def _json(text: str) -> dict[str, Any] | None:
    """The body as a JSON object.  orjson parses a 100-object batch reply (~90 KB) ~3x faster
    than ``json``; unlike it, it reads integers beyond 64 bits as floats (ids are far below)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
