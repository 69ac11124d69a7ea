"""Benchmark: a record appears in Workbooks -> the earlier email to its address is linked.

Through the whole local system: the local Functions host runs ``function_app.py`` (the anonymous
``workbooks/webhook/{token}`` route, the queue worker, the ``retro_poll_timer``) against
Azurite, with the Graph and Workbooks sandboxes in the same process.  Before measuring, one
mailbox has sent ``--records`` shared emails, each to an address nobody holds yet (pending
entries), and its retroactive stream has run once (its watermark exists).

1. **Webhooks**: a Person is created in the Workbooks sandbox for one of those addresses; its
   signed delivery reaches the route, which queues the mailbox's PEOPLE job; the worker links
   the email.  Latency = from the create to the link existing in the Workbooks sandbox.  One
   record every ``--gap`` seconds, so this is latency, not throughput.
2. **Polling**: the same with a key that may not manage triggers: the created-since poll finds
   the record.  The poll runs every ``--poll-seconds`` here (every 4 minutes by default), so
   latency is spread over the interval; the part after the first poll tick (the poll's read,
   the hint, the run) is reported too, and gives the figures at the default schedule: on
   average 2 minutes plus it, at most 4 minutes plus it (target: within 5 minutes).

Targets (exit status 1 when missed): webhooks p99 within 5 s; polling at the default schedule
within 300 s.  Before: retroactive links waited for the 30-minute reconcile.

Run:  .venv/bin/python -m devkit.azurite run -- .venv/bin/python bench/bench_retro.py \\
          [--records 40] [--gap 0.3] [--poll-seconds 5] [--poll-records 20]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sync.core.jobs import Job, JobKind, Stream
from tests.support.local import free_port, patched_environ, running_azurite

UPN = "ann@example.com"
NEVER = "0 0 0 1 1 *"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def measure(
    connection: str, *, webhooks: bool, records: int, gap: float, poll_seconds: int
) -> tuple[list[float], list[float]]:
    """Latencies from each create to its link, and (for the poll) from the first poll tick
    after the create to the link."""
    from devkit.host.localhost import LocalHost
    from devkit.sandbox.graph import SandboxConfig as GraphConfig
    from devkit.sandbox.graph import running_sandbox as graph_sandbox
    from devkit.sandbox.graph.control import sent_message
    from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig
    from devkit.sandbox.workbooks import running_sandbox as workbooks_sandbox
    from devkit.sandbox.workbooks.control import seed
    from sync.core.state_models import Mailbox, MailboxPolicy
    from sync.engine import workbooks_webhooks as hooks
    from sync.engine.runner import run_job
    from sync.runtime import get_services, reset_services
    from tests.support.world import drop_services

    port = free_port()
    wb_config = WorkbooksConfig(sim_controls=True, concurrency_cap=None, webhooks_allowed=webhooks)
    async with (
        graph_sandbox(GraphConfig(controls=True)) as graph,
        workbooks_sandbox(wb_config) as wb,
    ):
        graph.sandbox.state.add_mailbox(UPN)
        env = {
            "AzureWebJobsStorage": connection,
            "GRAPH_BASE_URL": graph.base_url,
            "GRAPH_AUTHORITY_HOST": graph.origin,
            "GRAPH_TENANT_ID": graph.tenant_id,
            "GRAPH_CLIENT_ID": "sandbox-client",
            "GRAPH_CLIENT_SECRET": "sandbox-secret",
            "SYNC_TABLE_PREFIX": f"b{uuid.uuid4().hex[:10]}",
            "SYNC_JOBS_QUEUE": f"bench-{uuid.uuid4().hex[:10]}",
            "SYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "SYNC_RETRO_POLL_SCHEDULE": f"*/{poll_seconds} * * * * *" if not webhooks else NEVER,
            "SYNC_PUSH_SCHEDULE": NEVER,
            "SYNC_RECONCILE_SCHEDULE": NEVER,
            "SYNC_RENEW_SCHEDULE": NEVER,
            "SYNC_TODO_POLL_SCHEDULE": NEVER,
            "BENCH_WB_KEY": "ann-api-key",
        }
        with patched_environ(env):
            await reset_services()
            services = await get_services()
            try:
                async with LocalHost(port=port, timers=not webhooks):
                    mailbox = Mailbox(
                        id=UPN,
                        workbooks_url=wb.base_url,
                        api_key_ref="env:BENCH_WB_KEY",
                        policy=MailboxPolicy(internal_domains=["example.com"]),
                    )
                    await services.store.mailboxes.put(mailbox)
                    upkeep = await hooks.keep_up(services, mailbox, force=True)
                    print(f"  {upkeep.describe()}")
                    box = graph.sandbox.state.mailbox(UPN)
                    assert box is not None
                    folder = graph.sandbox.state.container(box, "message", "sentitems")
                    assert folder is not None
                    addresses = [f"later{i}@cust.example" for i in range(records)]
                    for address in addresses:
                        body = {
                            "subject": f"To {address}",
                            "to": [address],
                            "categories": ["Workbooks"],
                        }
                        graph.sandbox.create_item(box, folder, sent_message(UPN, body))
                    for stream, kind in (
                        (Stream.SENT, JobKind.PUSH),
                        (Stream.PEOPLE, JobKind.RECONCILE),
                    ):
                        run = await run_job(services, Job(mailbox=UPN, stream=stream, kind=kind))
                        assert run.status == "ok", run
                    pending = sum(
                        [len(await services.store.pending.for_address(UPN, a)) for a in addresses]
                    )
                    assert pending == records, pending
                    links = wb.state.tables[wb.state.config.email_link_path]
                    latencies, after_tick = [], []
                    for address in addresses:
                        start, wall = time.monotonic(), time.time()
                        (row,) = seed(
                            wb.state,
                            "crm/people",
                            [{"name": address, "main_location[email]": address}],
                        )
                        pid = int(row["id"])
                        while not any(r.get("resource_id") == pid for r in links.values()):
                            if time.monotonic() - start > poll_seconds + 60:
                                raise RuntimeError(f"{address} was not linked within a minute")
                            await asyncio.sleep(0.005)
                        latency = time.monotonic() - start
                        latencies.append(latency)
                        # The poll fires on whole multiples of poll_seconds (its NCRONTAB): what
                        # follows the first tick after the create is the cost of the poll and the
                        # run, whatever the schedule.
                        wait = math.ceil(wall / poll_seconds) * poll_seconds - wall
                        after_tick.append(max(0.0, latency - wait))
                        await asyncio.sleep(gap if webhooks else random.uniform(0, poll_seconds))
                    assert len(wb.state.tables["email/emails"]) == records
                    return latencies, after_tick
            finally:
                await drop_services(services)


WEBHOOK_P99_TARGET = 5.0  # "within seconds"
POLL_DEFAULT = 240  # the default SYNC_RETRO_POLL_SCHEDULE: every 4 minutes
POLL_TARGET = 300  # "within 5 minutes" where no webhook covers a source


def report(name: str, values: list[float]) -> None:
    ms = [v * 1000 for v in values]
    print(
        f"  {name}: {len(ms)} records, p50 {statistics.median(ms):.0f} ms, "
        f"p99 {pct(ms, 99):.0f} ms, max {max(ms):.0f} ms, min {min(ms):.0f} ms"
    )


async def main(args: argparse.Namespace) -> int:
    with running_azurite() as (connection, _):
        os.environ.setdefault("AzureWebJobsStorage", connection)
        print("retroactive link latency: record created in Workbooks -> earlier email linked")
        hooked, _ = await measure(
            connection,
            webhooks=True,
            records=args.records,
            gap=args.gap,
            poll_seconds=args.poll_seconds,
        )
        report("webhooks", hooked)
        polled, after_tick = await measure(
            connection,
            webhooks=False,
            records=args.poll_records,
            gap=0,
            poll_seconds=args.poll_seconds,
        )
        report(f"polling every {args.poll_seconds} s", polled)
        report("  of which after the poll's tick", after_tick)
        worst = POLL_DEFAULT + max(after_tick)
        print(
            f"  at the default schedule (every {POLL_DEFAULT // 60} minutes): on average "
            f"{POLL_DEFAULT / 2 + statistics.median(after_tick):.0f} s, at most {worst:.0f} s "
            f"(target {POLL_TARGET} s); before: the next 30-minute reconcile (at most 1,800 s), "
            "and never under the auto policy"
        )
    missed = []
    if pct(hooked, 99) > WEBHOOK_P99_TARGET:
        missed.append(f"webhook p99 {pct(hooked, 99):.1f} s > {WEBHOOK_P99_TARGET} s")
    if worst > POLL_TARGET:
        missed.append(f"polling at most {worst:.0f} s > {POLL_TARGET} s")
    for line in missed:
        print(f"  target missed: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.3)
    parser.add_argument("--poll-seconds", type=int, default=5)
    parser.add_argument("--poll-records", type=int, default=20)
    raise SystemExit(asyncio.run(main(parser.parse_args())))
