"""CPU by function in the local host: what the service itself spends, apart from the host.

In Azure the Functions host is a .NET process of its own: it polls the queues, parses HTTP
requests, writes output bindings and hands each invocation to the Python worker over gRPC.  The
local host does all of that in the same process and event loop as the functions, so the
process's CPU time overstates what the service would cost there.  This ledger splits it.

Every asyncio callback runs in a ``contextvars.Context`` (a task's steps in the task's context,
a socket's read callbacks in the context the connection was opened in).  ``LocalHost.invoke``
marks the context of the function's call with the function's name, and tasks it starts inherit
the mark.  The ledger samples: a profiling timer (``ITIMER_PROF``, which runs on the process's
CPU time, not the clock's) interrupts the process every millisecond of CPU, and the signal
handler, which Python runs in whatever context is current, counts one sample for the function
named there, or for the host (its own callbacks and the loop's scheduling), or for the loop
when it was in ``select``.  The process's CPU time is then shared out by the samples.  Timing
every callback instead (two thread-clock reads, each a system call) cost about 2.5 us per
callback, enough to slow the benchmark it measures.

Off unless the host is started with ``DEVKIT_CPU_LEDGER=<file>``: then the host writes the
counts and its CPU time to that file as JSON every second and when it stops, for
``bench/bench_throughput.py`` and ``bench/bench_webhook.py``.  POSIX only (``setitimer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

ENV = "DEVKIT_CPU_LEDGER"
HOST = "(host)"  # outside any invocation: queue polling, HTTP parsing, outputs, scheduling
LOOP = "(loop)"  # waiting in select (the system call's own CPU)
INTERVAL = 0.001  # seconds of process CPU between samples

FUNCTION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "devkit_function", default=None
)
_samples: Counter[str] = Counter()
_previous: Any = None  # the SIGPROF handler before install()


def _sample(signum: int, frame: FrameType | None) -> None:
    name = FUNCTION.get()
    if name is None:
        in_select = frame is not None and frame.f_code.co_filename.endswith("selectors.py")
        name = LOOP if in_select else HOST
    _samples[name] += 1


def install() -> None:
    """Start sampling this process (idempotent; the main thread only)."""
    global _previous
    if _previous is not None:
        return
    _previous = signal.signal(signal.SIGPROF, _sample) or signal.SIG_DFL
    signal.setitimer(signal.ITIMER_PROF, INTERVAL, INTERVAL)


def uninstall() -> None:
    """Stop sampling and forget the counts."""
    global _previous
    if _previous is not None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, _previous)
        _previous = None
    _samples.clear()


@contextlib.contextmanager
def charged_to(name: str) -> Iterator[None]:
    """Charge the current task (and the tasks it starts) to function ``name``."""
    token = FUNCTION.set(name)
    try:
        yield
    finally:
        FUNCTION.reset(token)


def process_cpu() -> float:
    times = os.times()
    return times.user + times.system


def snapshot() -> dict[str, Any]:
    """The samples so far by name, and the process's CPU seconds."""
    return {"samples": dict(_samples), "cpu": process_cpu()}


def spent(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """CPU seconds by name between two snapshots: the process's CPU time in that span, shared
    out by the samples taken in it (empty when either snapshot is missing)."""
    if not before or not after:
        return {}
    was: Mapping[str, int] = before.get("samples", {})
    now: Mapping[str, int] = after.get("samples", {})
    taken = {k: n - was.get(k, 0) for k, n in now.items() if n - was.get(k, 0) > 0}
    total = sum(taken.values())
    cpu = float(after.get("cpu", 0.0)) - float(before.get("cpu", 0.0))
    return {k: cpu * n / total for k, n in taken.items()} if total else {}


def own(spent_by_name: Mapping[str, float]) -> float:
    """The functions' share of ``spent`` (seconds): everything but the host's and the loop's."""
    return sum(v for k, v in spent_by_name.items() if k not in (HOST, LOOP))


def write(path: Path) -> None:
    """The current snapshot to ``path``, replaced whole (a reader never sees half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(snapshot()))
    tmp.replace(path)


async def keep_writing(path: Path, every: float = 1.0) -> None:
    """Write the snapshot every ``every`` seconds until cancelled, and once more then."""
    try:
        while True:
            write(path)
            await asyncio.sleep(every)
    finally:
        write(path)


def read(path: Path) -> dict[str, Any]:
    """The snapshot a host wrote (empty when it has not written yet)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
