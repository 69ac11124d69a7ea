"""CPU by function in the local host: what the service itself spends, apart from the host.

In Azure the Functions host is a .NET process of its own: it polls the queues, parses HTTP
requests, writes output bindings and hands each invocation to the Python worker over gRPC.  The
local host does all of that in the same process and event loop as the functions, so the
process's CPU time overstates what the service would cost there.  This ledger splits it.

Every asyncio callback runs in a ``contextvars.Context`` (a task's steps in the task's context,
a socket's read callbacks in the context the connection was opened in).  ``LocalHost.invoke``
marks the context of the function's call with the function's name, and tasks it starts inherit
the mark; the ledger times each callback with the thread's CPU clock and charges it to the name
its context carries at the end, or to the host when there is none.  What no callback accounts
for (waiting in ``epoll``, the loop's own scheduling, other threads) is the loop's share.

Off unless the host is started with ``DEVKIT_CPU_LEDGER=<file>``: then the host writes the
totals to that file as JSON every second and when it stops, for ``bench/bench_throughput.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV = "DEVKIT_CPU_LEDGER"
HOST = "(host)"  # callbacks outside any invocation: queue polling, HTTP parsing, outputs
LOOP = "(loop)"  # process CPU no callback accounts for

FUNCTION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "devkit_function", default=None
)
_spent: defaultdict[str, float] = defaultdict(float)
_original: Any = None  # Handle._run before install()


def install() -> None:
    """Time every event-loop callback in this process (idempotent)."""
    global _original
    if _original is not None:
        return
    original = _original = asyncio.events.Handle._run
    clock = time.thread_time

    def _run(handle: asyncio.Handle) -> None:
        start = clock()
        try:
            original(handle)
        finally:
            name = handle._context.get(FUNCTION)  # type: ignore[attr-defined]
            _spent[name or HOST] += clock() - start

    asyncio.events.Handle._run = _run  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    """Stop timing callbacks and forget the totals."""
    global _original
    if _original is not None:
        asyncio.events.Handle._run = _original  # type: ignore[method-assign]
        _original = None
    _spent.clear()


@contextlib.contextmanager
def charged_to(name: str) -> Iterator[None]:
    """Charge the current task (and the tasks it starts) to function ``name``."""
    token = FUNCTION.set(name)
    try:
        yield
    finally:
        FUNCTION.reset(token)


def snapshot(process_cpu: float) -> dict[str, float]:
    """Seconds of CPU by function, the host's callbacks and the loop's remainder."""
    out = dict(_spent)
    out[LOOP] = max(0.0, process_cpu - sum(out.values()))
    return out


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def write(path: Path) -> None:
    """The current totals to ``path``, replaced whole (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(snapshot(process_cpu())))
    tmp.replace(path)


async def keep_writing(path: Path, every: float = 1.0) -> None:
    """Write the totals every ``every`` seconds until cancelled, and once more then."""
    try:
        while True:
            write(path)
            await asyncio.sleep(every)
    finally:
        write(path)


def read(path: Path) -> dict[str, Any]:
    """The totals a host wrote (empty when it has not written yet)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
