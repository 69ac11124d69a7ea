"""A local stand-in for the Azure Functions host (Core Tools cannot be installed here).

It imports ``function_app.py``, indexes its ``FunctionApp`` like the worker does and runs what
it finds: HTTP routes on aiohttp, timers from their NCRONTAB schedules and queue triggers
against Azurite, with the host.json semantics listed in ``docs/local-host.md`` (which also
lists where it differs from the real host)::

    async with LocalHost("function_app", port=7071) as host:
        print(host.base_url)
        await host.fire_timer("push_timer")
        await host.drain(timeout=30)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import hmac
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web
from azure.functions import _abc as func_abc
from azure.functions.timer import TimerRequest
from azure.storage.queue.aio import QueueClient, QueueServiceClient
from multidict import CIMultiDict

from devkit.host import cpu_ledger
from devkit.host.appsettings import resolve
from devkit.host.config import HostConfig
from devkit.host.devauth import DevSignIn, strip_principal
from devkit.host.functions import (
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    IndexedApp,
    LoadedFunction,
    import_app_module,
    index_app,
)
from devkit.host.queue_listener import QueueListener
from devkit.host.routes import ConvertedRoute, RouteVariant, convert_route
from devkit.host.schedule import Schedule
from devkit.host.storage import encode_message, ensure_queue, queue_service_for

log = logging.getLogger("devkit.host")

FUNCTION_KEY_ENV = "SYNC_LOCAL_FUNCTION_KEY"
MASTER_KEY_ENV = "SYNC_LOCAL_MASTER_KEY"
MAX_REQUEST_BODY = 100 * 1024 * 1024  # the real host's default maxRequestBodySize (100 MB)
ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE")


class HostError(RuntimeError):
    """The local host cannot start or run a function as asked."""


class OutValue(func.Out[Any]):
    """What the worker hands a ``func.Out[...]`` parameter: set() once, flushed after the call."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


@dataclass(frozen=True)
class InvocationContext:
    """Stand-in for ``func.Context`` (given to functions that declare a ``context`` parameter)."""

    invocation_id: str
    function_name: str
    function_directory: str
    trace_context: Any = None
    retry_context: Any = None
    thread_local_storage: Any = None


@dataclass(frozen=True)
class Invocation:
    """One finished invocation (``LocalHost.invocations`` keeps the last 1,000)."""

    function: str
    reason: str
    ok: bool
    duration_ms: float
    error: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _TimerState:
    function: LoadedFunction
    schedule: Schedule
    last: datetime | None = None
    next: datetime | None = None
    task: asyncio.Task[None] | None = None


class LocalHost:
    def __init__(
        self,
        module: str = "function_app",
        *,
        host_json: str | Path | Mapping[str, Any] | None = None,
        port: int = 0,
        bind: str = "127.0.0.1",
        timers: bool = True,
        queues: bool = True,
        http: bool = True,
        environ: Mapping[str, str] | None = None,
        dev_sign_in: bool = True,
    ) -> None:
        self.module_path = module
        self.config = HostConfig.load(host_json, environ=environ)
        self.port = port
        self.bind = bind
        self.timers_enabled = timers
        self.queues_enabled = queues
        self.http_enabled = http
        self._environ = environ
        self.indexed: IndexedApp | None = None
        self.routes: list[tuple[LoadedFunction, ConvertedRoute, list[str]]] = []
        self.invocations: collections.deque[Invocation] = collections.deque(maxlen=1000)
        self._timers: dict[str, _TimerState] = {}
        self._listeners: dict[str, QueueListener] = {}
        self._services: dict[str, QueueServiceClient] = {}
        self._out_clients: dict[tuple[str, str], QueueClient] = {}
        self._running = 0
        self._runner: web.AppRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._started = False
        # The console's sign-in, played by the host as App Service Authentication does in Azure.
        self.dev_sign_in: DevSignIn | None = None
        if dev_sign_in and http:  # the sign-in is a page: nothing to offer without HTTP
            self.dev_sign_in = DevSignIn(self.env.get("GRAPH_TENANT_ID", ""), self.env)

    # -- loading -----------------------------------------------------------------------------

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def load(self, module_path: str | None = None) -> IndexedApp:
        """Import the function app module and index it (``get_functions()`` once)."""
        if module_path is not None:
            self.module_path = module_path
        module = import_app_module(self.module_path)
        self.indexed = index_app(module)
        for name, why in self.indexed.skipped.items():
            log.error("function %s cannot run on the local host and is skipped: %s", name, why)
        self.routes = []
        for fn in self.indexed.functions.values():
            if fn.trigger_type == HTTP_TRIGGER:
                template = fn.trigger.get("route") or fn.name
                methods = [str(m).upper() for m in fn.trigger.get("methods") or []]
                self.routes.append(
                    (
                        fn,
                        convert_route(resolve(template, self.env), self.config.route_prefix),
                        methods,
                    )
                )
        # ASP.NET route precedence: literal segments before parameters before catch-alls.
        self.routes.sort(key=lambda item: item[1].precedence)
        return self.indexed

    @property
    def functions(self) -> dict[str, LoadedFunction]:
        if self.indexed is None:
            self.load()
        assert self.indexed is not None
        return self.indexed.functions

    @property
    def base_url(self) -> str:
        if not self._started:
            raise HostError("the host is not started")
        return f"http://{self.bind}:{self.port}"

    def describe(self) -> list[str]:
        """Core Tools-style listing of the functions and how they are triggered."""
        lines: list[str] = []
        for fn, route, methods in self.routes if self.http_enabled else []:
            verbs = ",".join(methods) if methods else "ALL"
            prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
            url = f"{self.base_url if self._started else ''}{prefix}/{route.template.strip('/')}"
            lines.append(f"{fn.name}: [{verbs}] {url}")
        for state in self._timers.values():
            lines.append(f"{state.function.name}: timerTrigger ({state.schedule.expression})")
        for listener in self._listeners.values():
            lines.append(f"{listener.function.name}: queueTrigger ({listener.queue_name})")
        for fn in self.functions.values():
            if fn.trigger_type == TIMER_TRIGGER and fn.name not in self._timers:
                lines.append(f"{fn.name}: timerTrigger (disabled)")
            if fn.trigger_type == QUEUE_TRIGGER and fn.name not in self._listeners:
                lines.append(f"{fn.name}: queueTrigger (disabled)")
        return lines

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> LocalHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            return
        if self.indexed is None:
            self.load()
        threads = int(
            self.env.get("PYTHON_THREADPOOL_THREAD_COUNT") or min(32, (os.cpu_count() or 1) + 4)
        )
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="func")
        try:
            if self.dev_sign_in is not None:
                self.dev_sign_in.activate()
            if self.http_enabled:
                await self._start_http()
            self._started = True
            if self.queues_enabled:
                await self._start_queues()
            self._prepare_timers()
            if self.timers_enabled:
                for state in self._timers.values():
                    state.task = asyncio.create_task(
                        self._timer_loop(state), name=f"timer:{state.function.name}"
                    )
        except BaseException:
            await self.stop()
            raise
        log.info("local host listening on %s (%d functions)", self.base_url, len(self.functions))

    async def stop(self, grace: float = 10.0) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # stop taking requests, let running ones finish
            self._runner = None
        for state in self._timers.values():
            if state.task is not None:
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.task
                state.task = None
        for listener in self._listeners.values():
            await listener.stop(grace)
        self._listeners.clear()
        for service in self._services.values():
            await service.close()
        self._services.clear()
        self._out_clients.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        if self.dev_sign_in is not None:
            self.dev_sign_in.deactivate()
        self._started = False

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every watched queue is empty (visible or not) and nothing is running."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while True:
            for listener in self._listeners.values():
                listener.wake()
            busy = self._running > 0 or any(lsn.in_flight for lsn in self._listeners.values())
            if not busy:
                depths = [await lsn.depth() for lsn in self._listeners.values()]
                busy = any(depths) or self._running > 0
            quiet = 0 if busy else quiet + 1
            if quiet >= 2:  # twice in a row, so a message written by a finishing handler counts
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"host did not drain within {timeout} s")
            await asyncio.sleep(0.05)

    # -- invocation --------------------------------------------------------------------------

    async def invoke(self, fn: LoadedFunction, trigger_value: Any, reason: str) -> Any:
        """Run one invocation like the worker: bind arguments, call, write outputs.  Raises
        the function's exception (outputs are then not written)."""
        invocation_id = str(uuid.uuid4())
        outs = {b["name"]: OutValue() for b in fn.queue_outputs if b["name"] != "$return"}
        kwargs: dict[str, Any] = {fn.trigger_arg: trigger_value, **outs}
        if fn.wants_context:
            kwargs["context"] = InvocationContext(
                invocation_id=invocation_id,
                function_name=fn.name,
                function_directory=str(Path(self.indexed.module.__file__ or ".").parent)
                if self.indexed
                else ".",
            )
        level = logging.DEBUG if fn.trigger_type == HTTP_TRIGGER else logging.INFO
        log.log(
            level, "Executing 'Functions.%s' (Reason='%s', Id=%s)", fn.name, reason, invocation_id
        )
        started = time.perf_counter()
        self._running += 1
        try:
            # In Azure the host writes output bindings; only the call is the function's.
            with cpu_ledger.charged_to(fn.name):
                result = await self._call(fn, kwargs)
            await self._write_outputs(fn, outs, result)
        except BaseException as exc:
            duration = (time.perf_counter() - started) * 1000
            self.invocations.append(Invocation(fn.name, reason, False, duration, repr(exc)))
            if isinstance(exc, Exception):
                log.error(
                    "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms)",
                    fn.name,
                    invocation_id,
                    duration,
                    exc_info=exc,
                )
            raise
        finally:
            self._running -= 1
        duration = (time.perf_counter() - started) * 1000
        self.invocations.append(Invocation(fn.name, reason, True, duration))
        log.log(
            level,
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)",
            fn.name,
            invocation_id,
            duration,
        )
        return result

    async def _call(self, fn: LoadedFunction, kwargs: dict[str, Any]) -> Any:
        timeout = self.config.function_timeout
        if fn.is_async:
            awaitable: Awaitable[Any] = fn.user_function(**kwargs)
        else:
            loop = asyncio.get_running_loop()
            ctx = contextvars.copy_context()
            call = functools.partial(ctx.run, fn.user_function, **kwargs)
            awaitable = loop.run_in_executor(self._executor, call)
        if timeout is None:
            return await awaitable
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            raise HostError(
                f"Timeout value of {timeout:.0f} s exceeded by function '{fn.name}'"
            ) from None

    async def _write_outputs(
        self, fn: LoadedFunction, outs: Mapping[str, OutValue], result: Any
    ) -> None:
        for binding in fn.queue_outputs:
            name = binding["name"]
            value = result if name == "$return" else outs[name].get()
            if value is None:
                continue
            payloads = list(_queue_payloads(value))
            if not payloads:
                continue
            queue_name = resolve(str(binding["queueName"]), self.env).lower()
            client = await self._output_client(binding.get("connection"), queue_name)
            encoding = self.config.queues.message_encoding
            await asyncio.gather(
                *(client.send_message(encode_message(p, encoding)) for p in payloads)
            )
            for listener in self._listeners.values():
                if listener.queue_name == queue_name:
                    listener.wake()

    async def _output_client(self, connection: str | None, queue_name: str) -> QueueClient:
        key = (connection or "", queue_name)
        client = self._out_clients.get(key)
        if client is None:
            client = self._service(connection).get_queue_client(queue_name)
            await ensure_queue(client)  # the output binding creates its queue
            self._out_clients[key] = client
        return client

    def _service(self, connection: str | None) -> QueueServiceClient:
        key = connection or ""
        service = self._services.get(key)
        if service is None:
            service = queue_service_for(connection, self.env)
            self._services[key] = service
        return service

    # -- HTTP --------------------------------------------------------------------------------

    async def _start_http(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST_BODY)
        if self.dev_sign_in is not None:
            app.router.add_routes(self.dev_sign_in.routes())
        for fn, route, methods in self.routes:
            for variant in route.variants:
                handler = self._http_handler(fn, route, variant)
                for method in methods or ["*"]:
                    app.router.add_route(method, variant.path, handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.bind, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, backlog=1024)
        await site.start()

    def _http_handler(
        self, fn: LoadedFunction, route: ConvertedRoute, variant: RouteVariant
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        level = str(fn.trigger.get("authLevel") or "FUNCTION").upper()

        async def handle(request: web.Request) -> web.StreamResponse:
            route_params = {**variant.defaults, **request.match_info}
            if not route.check(route_params):
                raise web.HTTPNotFound()
            if not self._authorized(level, request):
                return web.Response(status=401)
            body = await request.read()
            # As App Service Authentication does: a client never supplies its own identity.
            headers = strip_principal(request.headers.items())
            if self.dev_sign_in is not None:
                headers += self.dev_sign_in.principal_headers(request)
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=_joined(headers),
                params=_joined(request.query.items(), sep=","),
                route_params=route_params,
                body=body,
            )
            try:
                result = await self.invoke(
                    fn, req, "This function was programmatically called via the host APIs."
                )
            except Exception:
                return web.Response(status=500)
            try:
                return to_aiohttp_response(result)
            except TypeError:
                log.exception(
                    "function %s returned something that is not an HTTP response", fn.name
                )
                return web.Response(status=500)

        return handle

    def _authorized(self, level: str, request: web.Request) -> bool:
        if level == "ANONYMOUS":
            return True
        function_key = self.env.get(FUNCTION_KEY_ENV) or ""
        master_key = self.env.get(MASTER_KEY_ENV) or ""
        if not function_key and not master_key:
            return True  # like Core Tools: keys are not checked locally unless configured
        supplied = request.query.get("code") or request.headers.get("x-functions-key") or ""
        if level == "ADMIN":
            allowed = [master_key or function_key]
        else:
            allowed = [k for k in (function_key, master_key) if k]
        return bool(supplied) and any(
            hmac.compare_digest(supplied.encode(), k.encode()) for k in allowed
        )

    # -- timers ------------------------------------------------------------------------------

    def _prepare_timers(self) -> None:
        self._timers = {}
        for fn in self.functions.values():
            if fn.trigger_type == TIMER_TRIGGER:
                expression = resolve(str(fn.trigger["schedule"]), self.env)
                self._timers[fn.name] = _TimerState(fn, Schedule.parse(expression))

    async def fire_timer(self, name: str, *, past_due: bool = False) -> Any:
        """Invoke a timer function now (like the admin API ``POST /admin/functions/<name>``).
        Raises the function's exception."""
        if not self._timers:
            self._prepare_timers()
        state = self._timers.get(name)
        if state is None:
            raise HostError(f"no timer function named {name!r} (have: {sorted(self._timers)})")
        return await self._fire(state, past_due=past_due, reason="manual")

    async def _fire(self, state: _TimerState, *, past_due: bool, reason: str) -> Any:
        now = datetime.now(UTC)
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": (state.last or now).isoformat(),
                "Next": state.schedule.next_after(now).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            schedule={"AdjustForDST": True},
        )
        state.last = now
        return await self.invoke(state.function, request, reason)

    async def _timer_loop(self, state: _TimerState) -> None:
        fn = state.function
        if fn.trigger.get("runOnStartup"):
            with contextlib.suppress(Exception):  # invoke() logged it
                await self._fire(state, past_due=False, reason="IsPastDue / runOnStartup")
        anchor = datetime.now(UTC)
        while True:
            # Never schedule before the last occurrence, even if the clock or sleep ran early.
            due = state.schedule.next_after(max(datetime.now(UTC), anchor))
            state.next = due
            # (+2 ms: the event loop's monotonic clock may wake a hair before the wall clock)
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.002)
            late = (datetime.now(UTC) - due).total_seconds()
            anchor = due
            # Invocations of one timer never overlap: the next occurrence is computed after
            # this one finishes.
            with contextlib.suppress(Exception):  # invoke() logged it
                await self._fire(
                    state, past_due=late > 1.0, reason=f"Timer fired at {due.isoformat()}"
                )

    # -- queues ------------------------------------------------------------------------------

    async def _start_queues(self) -> None:
        for fn in self.functions.values():
            if fn.trigger_type != QUEUE_TRIGGER:
                continue
            queue_name = resolve(str(fn.trigger["queueName"]), self.env).lower()
            service = self._service(fn.trigger.get("connection"))
            listener = QueueListener(fn, service, queue_name, self.config.queues, self.invoke)
            await listener.start()
            self._listeners[fn.name] = listener

    @property
    def listeners(self) -> dict[str, QueueListener]:
        return dict(self._listeners)


def to_aiohttp_response(result: Any) -> web.Response:
    """Map what an HTTP function returned to a response the way the worker's converter does."""
    if result is None:
        return web.Response(status=204)
    if isinstance(result, str):
        return web.Response(
            status=200,
            body=result.encode("utf-8"),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
    if isinstance(result, func_abc.HttpResponse):
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in result.headers.items():
            if key.lower() in {"content-length", "transfer-encoding"}:
                continue
            headers.add(key, value)
        if "content-type" not in headers:
            mimetype = result.mimetype
            headers["Content-Type"] = (
                f"{mimetype}; charset={result.charset}"
                if mimetype.startswith("text/")
                else mimetype
            )
        return web.Response(
            status=result.status_code, body=result.get_body() or b"", headers=headers
        )
    raise TypeError(f"unsupported HTTP function result {type(result).__name__}")


def _queue_payloads(value: Any) -> Iterable[bytes]:
    """Messages for one output value: str, bytes, a QueueMessage, or a list of those."""
    if isinstance(value, str):
        yield value.encode("utf-8")
    elif isinstance(value, bytes | bytearray):
        yield bytes(value)
    elif isinstance(value, func_abc.QueueMessage):
        body = value.get_body()
        yield body.encode("utf-8") if isinstance(body, str) else bytes(body)
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, list | tuple):
                raise TypeError("nested lists are not valid queue output values")
            yield from _queue_payloads(item)
    else:
        raise TypeError(
            "queue output must be str, bytes, QueueMessage or a list of them, "
            f"not {type(value).__name__}"
        )


def _joined(items: Iterable[tuple[str, str]], sep: str = ", ") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in items:
        out[key] = f"{out[key]}{sep}{value}" if key in out else value
    return out
