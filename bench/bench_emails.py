"""Benchmark: sent email -> linked Workbooks email, through the whole local system.

Two measurements (zero injected latency, Azurite + Graph sandbox + Workbooks sandbox in-process):

1. **Latency**: 10 mailboxes with real sent-items subscriptions; 500 categorised emails (each
   to 2 known People, 1 known Contact Details address and 1 unknown address) are sent at a
   steady rate.  Each goes Graph sandbox -> notification -> webhook intake (``sync.webhook``)
   -> Azurite queue -> worker (``run_job``) -> Workbooks sandbox.  Latency = from the send to
   the moment its last link exists in the Workbooks sandbox.  Target p50 <= 1 s, p99 <= 3 s.
   Everything shares ONE Python process (sandboxes, webhook, up to 10 concurrent jobs), so at
   high send rates the numbers measure CPU saturation of that process (each job costs ~15 Table
   Storage round trips through the Azure SDK, ~4 ms CPU each), not the design's latency.
2. **Workbooks calls per 100 shared emails**: one mailbox, 100 shared emails, one push run.
   Prints the calls made (address resolution + email creates + links, and any other reads)
   and the minimum the API allows: 3 reads per IN-list of up to 100 addresses (people main
   emails, lead emails, Contact Details), one create per 100 emails, one link write per 100
   links.  Target <= 1.2x that minimum.

Run:  .venv/bin/python bench/bench_emails.py [--emails 500] [--mailboxes 10] [--rate 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sync.core.email_linking import email_reference
from sync.core.jobs import JobKind, Stream
from sync.engine import processors
from tests.support.local import running_azurite
from tests.support.world import World, world_running

SHARED = ["Workbooks"]
processors.load()  # registers the SENT and PEOPLE processors, as the queue worker does


def _workbooks_config(users: int) -> Any:
    from devkit.sandbox.workbooks import SandboxConfig
    from devkit.sandbox.workbooks.config import SimUser

    sims = [
        SimUser(
            user_id=30000 + i,
            person_name=f"User {i}",
            login_name=f"u{i}@example.com",
            api_key=f"user-{i}-key",
        )
        for i in range(users)
    ]
    return SandboxConfig(sim_controls=True, users=sims)


def _seed_people(w: World, count: int) -> list[str]:
    """People with main emails, plus a Contact Details address per 10 people."""
    addresses = []
    for i in range(count):
        address = f"person{i}@customer{i % 7}.com"
        pid = w.person(f"Person {i}", address)
        addresses.append(address)
        if i % 10 == 0:
            w.contact_detail(pid, f"alt{i}@home{i % 3}.net")
    return addresses


def _seed_owner_samples(w: World) -> None:
    """A deleted Person and a live and a deleted Sales Lead, so the service can see how the
    tenant lists Contact Details (``sync.workbooks.owners``)."""
    gone = w.person("Gone Person", "gone@customer0.com")
    w.workbooks.state.tables["crm/people"][gone]["is_deleted"] = True
    w.lead("Live Lead", "lead@prospect.com")
    gone_lead = w.lead("Gone Lead", "gone.lead@prospect.com")
    w.workbooks.state.tables["crm/sales_leads"][gone_lead]["is_deleted"] = True


def _recipients(i: int, people: list[str]) -> tuple[list[str], list[str]]:
    """Two People, one Contact Details address (owned by person ``j``) and one unknown."""
    n = len(people)
    j = (i % (n // 10)) * 10
    to = [people[(3 * i) % n], people[(3 * i + 1) % n]]
    cc = [f"alt{j}@home{j % 3}.net", f"unknown{i}@nowhere.org"]
    return to, cc


def _expected_links(i: int, people: list[str]) -> int:
    n = len(people)
    return len({(3 * i) % n, (3 * i + 1) % n, (i % (n // 10)) * 10})


async def _dispatcher(w: World, stop: asyncio.Event, concurrency: int) -> None:
    """The queue trigger's stand-in: one receive loop, up to ``concurrency`` jobs at once."""
    from sync.core.jobs import decode_job
    from sync.engine.runner import run_job

    queue = w.services.queue._queue
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()

    async def one(m: Any) -> None:
        try:
            await run_job(w.services, decode_job(m.content))
            await queue.delete_message(m)
        finally:
            slots.release()

    while not stop.is_set():
        got = 0
        async for m in queue.receive_messages(max_messages=16, visibility_timeout=120):
            got += 1
            await slots.acquire()
            task = asyncio.create_task(one(m))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if not got:
            await asyncio.sleep(0.02)
    await asyncio.gather(*tasks, return_exceptions=True)


async def latency(conn: str, emails: int, mailboxes: int, rate: float) -> dict[str, Any]:
    async with world_running(conn, workbooks_config=_workbooks_config(mailboxes)) as w:
        people = _seed_people(w, 200)
        upns = [f"user{i}@example.com" for i in range(mailboxes)]
        for i, upn in enumerate(upns):
            await w.add_mailbox(upn, api_key=f"user-{i}-key")
            await w.subscribe(upn)
            # Steady state: the mailbox had its initial sync (Workbooks login, first delta round).
            await w.run(upn, Stream.SENT, JobKind.PUSH)
        sent: dict[str, float] = {}  # created_through_reference -> send time
        expected: dict[str, int] = {}
        done: dict[str, float] = {}
        stop = asyncio.Event()
        workers = [asyncio.create_task(_dispatcher(w, stop, mailboxes))]
        link_path = w.workbooks.state.config.email_link_path

        async def watch() -> None:
            tables = w.workbooks.state.tables
            while len(done) < emails:
                linked: dict[int, int] = {}
                for row in tables[link_path].values():
                    linked[row["email_id"]] = linked.get(row["email_id"], 0) + 1
                now = time.perf_counter()
                for row in tables["email/emails"].values():
                    ref = row.get("created_through_reference")
                    if (
                        ref in sent
                        and ref not in done
                        and linked.get(row["id"], 0) >= expected[ref]
                    ):
                        done[ref] = now
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        started = time.perf_counter()
        for i in range(emails):
            upn = upns[i % mailboxes]
            to, cc = _recipients(i, people)
            imid = f"<bench{i}@example.com>"
            mid = w.send(
                upn, to=to, cc=cc, subject=f"Bench {i}", categories=SHARED, internet_message_id=imid
            )
            ref = email_reference(imid, mid)
            expected[ref] = _expected_links(i, people)
            sent[ref] = time.perf_counter()
            # an absolute schedule: a busy event loop must not lower the offered rate
            await asyncio.sleep(max(0.0, started + (i + 1) / rate - time.perf_counter()))
        try:
            await asyncio.wait_for(watcher, timeout=120)
        except TimeoutError:
            print(f"timed out: {len(done)}/{emails} linked; emails {len(w.emails())}")
            raise
        finally:
            stop.set()
            await asyncio.gather(*workers, return_exceptions=True)
        elapsed = time.perf_counter() - started
        order = {ref: i for i, ref in enumerate(sent)}
        slowest = sorted(done, key=lambda k: sent[k] - done[k])[:5]
        print(
            "  slowest (email index, ms):",
            [(order[k], round((done[k] - sent[k]) * 1000)) for k in slowest],
        )
        lat = sorted(done[k] - sent[k] for k in done)
        calls = w.workbooks_calls()
        links = len(w.links())
        return {
            "emails": len(done),
            "links": links,
            "p50": statistics.median(lat),
            "p99": lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)],
            "max": lat[-1],
            "elapsed": elapsed,
            "workbooks_calls": sum(v for k, v in calls.items()),
            "calls": calls,
        }


SCHEMA_READS = ("GET metadata/types", "GET picklist_data/")


async def call_count(conn: str, emails: int = 100) -> dict[str, Any]:
    from sync.core.email_linking import split_recipients
    from sync.core.graph_models import Message

    async with world_running(conn) as w:
        people = _seed_people(w, 200)
        upn = "ann@example.com"
        mailbox = await w.add_mailbox(upn)
        ids = []
        for i in range(emails):
            to, cc = _recipients(i, people)
            ids.append(w.send(upn, to=to, cc=cc, subject=f"Count {i}", categories=SHARED))
        w.reset_call_counts()
        run = await w.run(upn, Stream.SENT, JobKind.PUSH)
        assert run.status == "ok", run
        calls = dict(w.workbooks_calls())
        calls.pop("POST login", None)
        # The tenant's schema is read once per client (sync.workbooks.tenant), like the login:
        # not a cost of these 100 emails.  Shown apart.
        schema = {k: calls.pop(k) for k in list(calls) if k.startswith(SCHEMA_READS)}
        addresses: set[str] = set()
        for mid in ids:
            data = w.message(upn, mid)
            message = Message.model_validate({"id": mid, **data})
            addresses |= {c.address for c in split_recipients(message, upn, mailbox.policy)[0]}
        links = len(w.links())
        in_list = w.services.settings.workbooks.in_list_size
        minimum = 3 * math.ceil(len(addresses) / in_list) + math.ceil(emails / 100)
        minimum += math.ceil(links / 100)
        return {
            "emails": len(w.emails()),
            "links": links,
            "addresses": len(addresses),
            "calls": calls,
            "total": sum(calls.values()),
            "minimum": minimum,
            "schema": schema,
        }


async def main(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("SYNC_PUBLIC_BASE_URL", "http://127.0.0.1:7071")
    with running_azurite() as (conn, _):
        os.environ["AzureWebJobsStorage"] = conn
        counted = await call_count(conn)
        ratio = counted["total"] / counted["minimum"]
        print(
            f"Workbooks calls for 100 shared emails: {counted['total']} "
            f"(minimum the API allows: {counted['minimum']}; ratio {ratio:.2f}, target <= 1.2)"
        )
        print(
            f"  {counted['emails']} emails, {counted['links']} links, "
            f"{counted['addresses']} distinct external addresses; calls: {counted['calls']}"
        )
        print(f"  once per client, not counted: schema reads {counted['schema']}")
        res = await latency(conn, args.emails, args.mailboxes, args.rate)
        print(
            f"Notification -> linked: {res['emails']} emails over {args.mailboxes} mailboxes "
            f"at {args.rate:g}/s, "
            f"p50 {res['p50'] * 1000:.0f} ms, p99 {res['p99'] * 1000:.0f} ms, "
            f"max {res['max'] * 1000:.0f} ms (targets 1000 / 3000 ms); "
            f"{res['links']} links; wall {res['elapsed']:.1f} s"
        )
        per100 = res["workbooks_calls"] / res["emails"] * 100
        print(
            f"  streaming mode: {res['workbooks_calls']} Workbooks calls "
            f"({per100:.1f} per 100 emails; small batches as notifications arrive)"
        )
        ok = ratio <= 1.2 and res["p50"] <= 1.0 and res["p99"] <= 3.0
        return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=500)
    parser.add_argument("--mailboxes", type=int, default=10)
    parser.add_argument(
        "--rate", type=float, default=5.0, help="emails sent per second, all mailboxes together"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
