"""Log volume during a storage outage: how many lines the host writes while Azurite is down.

    python bench/bench_outage.py [--outage 30] [--rate 40] [--mailboxes 10]

Azurite runs here with its data on disk (so it can be stopped and started again on the same
ports without losing anything), the host in its own process (``python -m devkit serve``, timers
and queue triggers on, ``SYNC_LOG_LEVEL=INFO``), and while Graph-shaped notifications arrive at
``--rate`` per second:

1. 10 s of normal traffic (the To Do poll fires every 5 s and its jobs retry: Graph is
   unreachable, so every run ends in ``RetryLater``);
2. Azurite is stopped for ``--outage`` seconds (connections refused: webhook, timers, queue
   polling and runs in flight all fail);
3. Azurite is started again; 15 s more traffic.

It prints the lines the host wrote during the outage (from stop to restart), by level and by
logger, and the traceback lines among them.  Target: the service's own loggers (``sync.*``) write
at most one line per cause per minute (``MAX_SERVICE_LINES`` for the few causes an outage has)
and no traceback.  The host's own lines (``devkit.host``: failed invocations, queue polling)
stand for the Functions host's and are shown apart.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_webhook import (  # noqa: E402
    Subscription,
    notification,
    register_subscriptions,
    stop_host,
    wait_ready,
)
from tests.support.local import free_port  # noqa: E402

# The causes an outage has for the service: storage unreachable on the webhook path, in the
# worker and in the timers, and RetryLater from Graph; one line each per minute, plus one
# summary line each when the outage is longer than the minute window.
MAX_SERVICE_LINES = 8
_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) (\w+) (\S+): ")


def _ports(url_blob: str, url_queue: str, url_table: str) -> tuple[int, int, int]:
    def port(url: str) -> int:
        return int(url.rsplit(":", 1)[1])

    return port(url_blob), port(url_queue), port(url_table)


async def add_mailboxes(conn: str, prefix: str, subs: list[Subscription]) -> None:
    from sync.core.state_models import Mailbox
    from sync.state.store import StateStore

    store = StateStore.from_connection_string(conn, prefix)
    try:
        for mailbox in sorted({s.mailbox for s in subs}):
            await store.mailboxes.put(
                Mailbox(id=mailbox, workbooks_url="http://127.0.0.1:9", api_key_ref="env:WB_KEY")
            )
    finally:
        await store.close()


async def traffic(base: str, subs: list[Subscription], rate: float, stop: asyncio.Event) -> int:
    """Open-loop notifications until ``stop``; returns how many were sent."""
    url = f"{base}/api/graph/notifications"
    headers = {"Content-Type": "application/json"}
    sent = 0
    tasks: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(body: bytes) -> None:
            with contextlib.suppress(Exception):
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()

        start = time.perf_counter()
        while not stop.is_set():
            delay = start + sent / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(notification(subs[sent % len(subs)])))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        if tasks:
            await asyncio.wait(tasks, timeout=25)
    return sent


def count_lines(log: Path, start: datetime, end: datetime) -> tuple[Counter[str], int, int]:
    """(lines by 'LEVEL logger', traceback lines, all lines) written between start and end."""
    by: Counter[str] = Counter()
    tracebacks = total = 0
    inside = False
    for line in log.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            inside = start <= when <= end
            if inside:
                by[f"{m.group(2)} {m.group(3)}"] += 1
        if inside:
            total += 1
            if line.startswith("Traceback (most recent call last)"):
                tracebacks += 1
    return by, tracebacks, total


def start_host(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """The host in its own process, timers and queue triggers on, logging to ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "devkit", "serve", "--", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def amain(args: argparse.Namespace) -> int:
    from devkit import azurite

    location = Path(tempfile.mkdtemp(prefix="bench-outage-")) / "azurite"
    az, az_proc = azurite.start(location=location)
    ports = _ports(az.blob_url, az.queue_url, az.table_url)
    conn = az.connection_string
    tag = uuid.uuid4().hex[:8]
    prefix, queue = f"outage{tag}", f"outage-jobs-{tag}"
    env = dict(os.environ)
    env.update(
        {
            "AzureWebJobsStorage": conn,
            "SYNC_TABLE_PREFIX": prefix,
            "SYNC_JOBS_QUEUE": queue,
            "SYNC_TODO_POLL_SCHEDULE": "*/5 * * * * *",
            "SYNC_PUBLIC_BASE_URL": "http://127.0.0.1",
            "SYNC_LOG_LEVEL": "INFO",
            "GRAPH_TENANT_ID": "00000000-0000-0000-0000-0000000000aa",
            "GRAPH_CLIENT_ID": "00000000-0000-0000-0000-0000000000bb",
            "GRAPH_CLIENT_SECRET": "not-a-secret",
            # Graph is unreachable: every run ends in RetryLater (a transport failure).
            "GRAPH_BASE_URL": "http://127.0.0.1:9/v1.0",
            "GRAPH_AUTHORITY_HOST": "http://127.0.0.1:9",
            "WB_KEY": "bench-key",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.pop("SYNC_LOCAL_FUNCTION_KEY", None)
    os.environ["GRAPH_TENANT_ID"] = env["GRAPH_TENANT_ID"]
    subs = await register_subscriptions(conn, prefix, args.mailboxes * 3)
    await add_mailboxes(conn, prefix, subs)
    port = free_port()
    log_path = Path(args.log)
    host = start_host(env, port, log_path)
    base = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    try:
        await wait_ready(base, host)
        load = asyncio.create_task(traffic(base, subs, args.rate, stop))
        await asyncio.sleep(10)
        down_at = datetime.now()
        azurite.stop(az_proc)
        await asyncio.sleep(args.outage)
        az, az_proc = azurite.start(location=location, ports=ports)
        up_at = datetime.now()
        await asyncio.sleep(15)
        stop.set()
        sent = await load
    finally:
        stop.set()
        stop_host(host)
        azurite.stop(az_proc)
    by, tracebacks, total = count_lines(log_path, down_at, up_at + timedelta(seconds=1))
    service = {k: v for k, v in by.items() if k.split(" ", 1)[1].startswith("sync")}
    service_lines = sum(v for k, v in service.items() if not k.startswith(("DEBUG", "INFO")))
    print(f"\n== storage outage of {args.outage:.0f} s (host log: {log_path}) ==")
    print(f"notifications sent     {sent} at {args.rate:.0f}/s")
    print(f"lines during outage    {total} (traceback lines: {tracebacks})")
    print(f"ERROR lines            {sum(v for k, v in by.items() if k.startswith('ERROR'))}")
    print(f"WARNING lines          {sum(v for k, v in by.items() if k.startswith('WARNING'))}")
    print("by level and logger:")
    for key, n in by.most_common():
        print(f"  {n:6d}  {key}")
    service_tracebacks = _service_tracebacks(log_path, down_at, up_at + timedelta(seconds=1))
    passed = service_lines <= MAX_SERVICE_LINES and service_tracebacks == 0
    print(
        f"\nTARGET (sync.* WARNING/ERROR lines <= {MAX_SERVICE_LINES}, no sync.* traceback): "
        f"{service_lines} lines, {service_tracebacks} tracebacks: {'PASS' if passed else 'FAIL'}"
    )
    return 0 if passed else 1


def _service_tracebacks(log: Path, start: datetime, end: datetime) -> int:
    """Tracebacks that follow a line of a ``sync.*`` logger."""
    count = 0
    owner = ""
    for line in log.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if m:
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
            owner = m.group(3) if start <= when <= end else ""
        elif line.startswith("Traceback (most recent call last)") and owner.startswith("sync"):
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--outage", type=float, default=30.0, help="seconds Azurite is down")
    p.add_argument("--rate", type=float, default=40.0, help="notifications per second")
    p.add_argument("--mailboxes", type=int, default=10, help="mailboxes (3 subscriptions each)")
    p.add_argument("--log", default="/tmp/bench_outage_host.log", help="where the host logs")  # noqa: S108
    args = p.parse_args(argv)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
