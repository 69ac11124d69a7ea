"""Benchmark: a simulated tenant of many mailboxes (1,000 by default) through 30-minute cycles.

What a tenant costs while little changes: the timers tick once a simulated minute for 30
minutes (``fan_out`` with each tick's window, exactly as the timer functions call it), every job
they queue is run (``run_job``, as the queue trigger does; eight at a time), and the bench
counts, per cycle:

* Graph calls (every request the Graph client sends);
* Workbooks calls and Workbooks rows read (every request and every row the clients received);
* Table transactions and queue messages (every Azure SDK request: ``bench.counting``);
* the peak enqueue rate: jobs per minute arriving at the queue (each job's send time plus its
  visibility delay), against the cycle's average; target peak <= 2x average.

Each mailbox has small data: two People in its user's Workbooks queue (so two contacts in
Outlook) and nothing else.  Cycle 0 is the first sync (not a steady-state figure); cycle 1 has
no changes; before cycle 2, 200 People (of 200 different mailboxes) are edited in Workbooks.
A mailbox reads only changes in its own scope and links: cycle 2 should read about 200 rows
more than cycle 1, not 200 per mailbox.

Queue messages are sent to Azurite with their visibility delays; the bench runs them in
arrival order without waiting for the delays (simulated time: the service's clock is moved to
each job's instant).  The timers' work (fan-out, queue messages, enqueue rate) is measured for
every mailbox; the jobs of one mailbox in ten (``--sample 100``) run, and their Graph calls,
Workbooks calls and rows and Table transactions are multiplied by ten for the tenant's figure
(mailboxes are alike; the 200 changes are spread evenly, so 20 fall in the sample).  The default
run took 12 minutes on a shared 2-core machine (about 4 per cycle, two of them the timers'
fan-out for 1,000 mailboxes); ``--sample 20`` is quicker, and running every job
(``--sample 1000``) takes about 40 minutes.

Run:  .venv/bin/python -m devkit.azurite run -- .venv/bin/python bench/bench_scale.py
      [--mailboxes 1000] [--changes 200]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_emails import _workbooks_config
from bench.bench_job_costs import _table as _table_name
from bench.counting import counting_storage
from sync.core.jobs import Job
from sync.core.schedule import Cadence
from sync.engine import processors
from tests.support.world import World, world_running

processors.load()
CYCLE_MINUTES = 30
CONCURRENCY = 8
PEOPLE = "crm/people"
CADENCES = (Cadence.RECONCILE, Cadence.PUSH, Cadence.TODO_POLL)


@dataclass
class Sent:
    """What the queue received: each job with the instant it becomes visible."""

    jobs: list[tuple[datetime, Job]] = field(default_factory=list)


@dataclass
class Cycle:
    name: str
    jobs: int = 0
    graph: int = 0
    workbooks: int = 0
    rows: int = 0
    table: int = 0
    queue_sends: int = 0
    queue_ops: int = 0
    job_ops: Counter[str] = field(default_factory=Counter)  # the jobs' Table requests
    fan_out_table: int = 0
    per_minute: Counter[int] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    ran: int = 0  # jobs run (those of the sampled mailboxes)
    job_table: int = 0  # Table transactions of the jobs run
    seconds: float = 0.0
    left_over: int = 0  # jobs queued for after the cycle
    schema: int = 0  # Workbooks schema reads (metadata/types, picklists): apart from ``workbooks``

    @property
    def peak(self) -> int:
        return max(self.per_minute.values(), default=0)

    @property
    def average(self) -> float:
        return self.jobs / CYCLE_MINUTES


class Calls:
    """Graph requests and Workbooks rows, counted where each client sends and receives."""

    def __init__(self) -> None:
        self.graph = 0
        self.rows = 0

    def install(self) -> None:
        from sync.graph.client import GraphClient
        from sync.workbooks import reads

        send = GraphClient._send
        page = reads.read_page
        calls = self

        async def counted_send(self: GraphClient, *args: Any, **kwargs: Any) -> Any:
            calls.graph += 1
            return await send(self, *args, **kwargs)

        async def counted_page(*args: Any, **kwargs: Any) -> Any:
            rows = await page(*args, **kwargs)
            calls.rows += len(rows)
            return rows

        GraphClient._send = counted_send  # type: ignore[method-assign]
        reads.read_page = counted_page


def _capture(w: World, sent: Sent, sample: set[str]) -> None:
    """Record what the service sends to the queue: each job and the instant it becomes
    visible.  The sampled mailboxes' jobs are sent to Azurite too (their queue requests are
    counted); every other job is one queue message the figures count without sending it."""
    queue = w.services.queue
    original = queue.send

    async def send(job: Job, *, delay_seconds: int | None = None) -> None:
        # A timer sends at its tick (``fan_out``'s ``now``); a job sends at the clock's now.
        base = _clock.ticking if _clock.ticking is not None else _clock.read()
        sent.jobs.append((base + timedelta(seconds=delay_seconds or 0), job))
        if job.mailbox in sample:
            await original(job, delay_seconds=delay_seconds)

    queue.send = send  # type: ignore[method-assign]


class _Clock:
    """The simulated now: the service's ``utcnow`` everywhere (leases, cursors' last success,
    run history) reads it, so runs happen at their simulated instants and the timers' hold-back
    sees the history a real half hour would leave."""

    now = datetime.now(UTC)
    set_at = time.monotonic()
    ticking: datetime | None = None  # the tick a timer is fanning out for

    def set(self, at: datetime) -> None:
        if at > self.read():
            self.now, self.set_at = at, time.monotonic()

    def read(self) -> datetime:
        return self.now + timedelta(seconds=time.monotonic() - self.set_at)


_clock = _Clock()


def simulate_clock() -> None:
    from sync.core import state_models

    real = state_models.utcnow
    for name, module in list(sys.modules.items()):
        if name.startswith("sync.") and getattr(module, "utcnow", None) is real:
            module.utcnow = _clock.read  # type: ignore[attr-defined]


async def _run_due(
    w: World,
    sent: Sent,
    cycle: Cycle,
    start: datetime,
    until: datetime,
    sample: set[str],
) -> None:
    """Run the captured jobs that arrive before ``until``, in arrival order, eight at a time
    (jobs may queue more: those arriving before ``until`` run too); only the jobs of the
    ``sample`` mailboxes run, every job counts in the enqueue rate."""
    from sync.engine.runner import run_job

    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(at: datetime, job: Job) -> None:
        async with gate:
            _clock.set(at)
            run = await run_job(w.services, job)
            cycle.statuses[run.status] += 1

    while True:
        due = sorted((x for x in sent.jobs if x[0] < until), key=lambda x: x[0])
        if not due:
            return
        sent.jobs[:] = [x for x in sent.jobs if x[0] >= until]
        for at, _ in due:
            cycle.per_minute[int((at - start).total_seconds() // 60)] += 1
        cycle.jobs += len(due)
        mine = [(at, job) for at, job in due if job.mailbox in sample]
        cycle.ran += len(mine)
        await asyncio.gather(*(one(at, job) for at, job in mine))


async def run_cycle(
    w: World, name: str, start: datetime, calls: Calls, conn: str, sample: set[str]
) -> Cycle:
    """One 30-minute cycle: each simulated minute, the three timers tick, then the jobs due
    in that minute run."""
    from sync.engine.runner import fan_out

    cycle = Cycle(name)
    sent = Sent()
    _capture(w, sent, sample)
    wb_before = _workbooks_calls(w)
    schema_before = _schema_calls(w)
    graph_before, rows_before = calls.graph, calls.rows
    began = time.perf_counter()
    with counting_storage(conn) as counter:
        for minute in range(CYCLE_MINUTES):
            tick = start + timedelta(minutes=minute)
            _clock.set(tick)
            window = (tick, tick + timedelta(minutes=1))
            for cadence in CADENCES:
                before = counter.total("table")
                _clock.ticking = tick
                try:
                    cycle.queue_sends += await fan_out(
                        w.services, cadence, f"{cadence} timer", window, now=tick
                    )
                finally:
                    _clock.ticking = None
                cycle.fan_out_table += counter.total("table") - before
            before = counter.total("table")
            snap = counter.snapshot()
            await _run_due(w, sent, cycle, start, window[1], sample)
            cycle.job_table += counter.total("table") - before
            for key, n in counter.requests.items():
                if key[0] == "table" and n - snap.get(key, 0):
                    cycle.job_ops[f"{key[2]} {_table_name(key[1])}"] += n - snap.get(key, 0)
        # what jobs queued for after the cycle (follow-ups, retries) is left to the next one
        cycle.table = counter.total("table")
        cycle.queue_ops = counter.total("queue")
    cycle.seconds = time.perf_counter() - began
    cycle.graph = calls.graph - graph_before
    cycle.rows = calls.rows - rows_before
    cycle.workbooks = _workbooks_calls(w) - wb_before
    cycle.schema = _schema_calls(w) - schema_before
    cycle.left_over = len(sent.jobs)
    await w.services.queue._queue.clear_messages()
    return cycle


def _schema_calls(w: World) -> int:
    return sum(
        n for k, n in w.workbooks_calls().items() if k.startswith(("GET metadata", "GET picklist"))
    )


def _workbooks_calls(w: World) -> int:
    return sum(
        n
        for k, n in w.workbooks_calls().items()
        if k != "POST login" and not k.startswith(("GET metadata", "GET picklist"))
    )


@dataclass
class Projected:
    """A cycle's figures for the whole tenant: the timers' work measured for every mailbox,
    the jobs' work measured on the sample and multiplied by mailboxes / sample."""

    graph: float
    workbooks: float
    rows: float
    table: float
    messages: int


def project(c: Cycle, scale: float) -> Projected:
    return Projected(
        graph=c.graph * scale,
        workbooks=c.workbooks * scale,
        rows=c.rows * scale,
        table=c.fan_out_table + c.job_table * scale,
        messages=c.jobs,
    )


def _report(c: Cycle, mailboxes: int, sampled: int) -> Projected:
    p = project(c, mailboxes / sampled)
    print(
        f"{c.name}: {c.jobs} jobs queued for {mailboxes} mailboxes; the {c.ran} jobs of "
        f"{sampled} sampled mailboxes ran ({dict(c.statuses)}) in {c.seconds:.0f} s\n"
        f"  measured on the sample: Graph calls {c.graph}, Workbooks calls {c.workbooks}, "
        f"Workbooks rows read {c.rows}, Table transactions of jobs {c.job_table} "
        f"({c.job_table / max(c.ran, 1):.1f}/job: "
        + ", ".join(f"{k} {n / max(c.ran, 1):.2f}" for k, n in sorted(c.job_ops.items()))
        + ")\n"
        f"  timers, every mailbox: Table transactions {c.fan_out_table}, queue messages "
        f"{c.queue_sends} (+{c.jobs + c.left_over - c.queue_sends} queued by jobs, "
        f"{c.left_over} of them for after the cycle)\n"
        f"  tenant ({mailboxes} mailboxes) per cycle: Graph calls {p.graph:.0f}, Workbooks "
        f"calls {p.workbooks:.0f}, rows read {p.rows:.0f}, Table transactions {p.table:.0f}, "
        f"queue messages {p.messages}\n"
        f"  enqueue rate: peak {c.peak}/min, average {c.average:.1f}/min, "
        f"peak/average {c.peak / max(c.average, 1e-9):.2f} (target <= 2)"
    )
    return p


async def measure(conn: str, mailboxes: int, changes: int, sampled: int) -> list[Cycle]:
    from devkit.sandbox.workbooks.control import edit_as, set_clock

    calls = Calls()
    calls.install()
    simulate_clock()
    async with world_running(conn, workbooks_config=_workbooks_config(mailboxes)) as w:
        people: list[list[int]] = []
        for i in range(mailboxes):
            rows = w.seed(
                PEOPLE,
                [
                    {
                        "name": f"Customer {i}-{k}",
                        "main_location[email]": f"c{i}-{k}@customer.test",
                        "assigned_to": str(i + 2),  # user i's own queue (ids 2..)
                    }
                    for k in range(2)
                ],
            )
            people.append([int(r["id"]) for r in rows])
        set_clock(w.workbooks.state, advance_seconds=2)
        began = time.perf_counter()
        upns = [f"user{i}@example.com" for i in range(mailboxes)]
        for i, upn in enumerate(upns):
            await w.add_mailbox(upn, api_key=f"user-{i}-key")
        every = max(1, mailboxes // sampled)
        sample = set(upns[::every][:sampled])
        print(
            f"setup: {mailboxes} mailboxes registered in {time.perf_counter() - began:.0f} s; "
            f"the jobs of {len(sample)} of them (one in {every}) are run"
        )
        start = _clock.read().replace(second=0, microsecond=0) + timedelta(minutes=1)
        cycles = []
        for name in ("cycle 0 (first sync)", "cycle 1 (no changes)"):
            cycle = await run_cycle(w, name, start, calls, conn, sample)
            _report(cycle, mailboxes, len(sample))
            cycles.append(cycle)
            start += timedelta(minutes=CYCLE_MINUTES)
            set_clock(w.workbooks.state, advance_seconds=2)
        # Changes spread over the tenant: one Person each of ``changes`` mailboxes, as many
        # of them in the sample as its share of the tenant (one in ten by default).
        edited = _spread(mailboxes, changes, every)
        for i in edited:
            edit_as(w.workbooks.state, PEOPLE, people[i][0], {"person_job_title": "Buyer"})
        set_clock(w.workbooks.state, advance_seconds=2)
        name = f"cycle 2 ({len(edited)} Workbooks changes over the tenant)"
        busy = await run_cycle(w, name, start, calls, conn, sample)
        _report(busy, mailboxes, len(sample))
        cycles.append(busy)
        in_sample = [i for i in edited if upns[i] in sample]
        shown = 0
        for i in in_sample:
            box = w.graph.sandbox.state.mailbox(upns[i])
            for cont in box.containers.values():
                if cont.kind == "contact":
                    shown += sum(
                        1 for item in cont.items.values() if item.data.get("jobTitle") == "Buyer"
                    )
        print(
            f"  changes in sampled mailboxes: {len(in_sample)}; contacts showing them in "
            f"Outlook afterwards: {shown}"
        )
        return cycles


def _schema_ttl() -> float:
    from sync.settings import WorkbooksSettings

    return WorkbooksSettings().schema_ttl_seconds


def _spread(mailboxes: int, changes: int, every: int) -> list[int]:
    """``changes`` mailbox indexes spread evenly, one in ``every`` of them a sampled one
    (the sample is the indexes divisible by ``every``)."""
    picked: list[int] = []
    step = max(1, mailboxes // max(changes, 1))
    for k in range(min(changes, mailboxes)):
        base = k * step
        sampled = base - base % every
        offset = 1 + k % max(every - 1, 1)
        picked.append(sampled if k % every == 0 else min(sampled + offset, mailboxes - 1))
    return sorted(set(picked))


async def main(args: argparse.Namespace) -> int:
    import logging

    from tests.support.local import running_azurite

    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("SYNC_PUBLIC_BASE_URL", "http://127.0.0.1:7071")
    sampled = min(args.sample, args.mailboxes)
    with running_azurite() as (conn, _):
        os.environ["AzureWebJobsStorage"] = conn
        cycles = await measure(conn, args.mailboxes, args.changes, sampled)
    scale = args.mailboxes / sampled
    quiet, busy = cycles[1], cycles[2]
    q, b = project(quiet, scale), project(busy, scale)
    print(
        f"Summary, {args.mailboxes} mailboxes, one 30-minute cycle:\n"
        f"  no changes: {q.graph:.0f} Graph calls, {q.workbooks:.0f} Workbooks calls, "
        f"{q.rows:.0f} Workbooks rows read, {q.table:.0f} Table transactions, "
        f"{q.messages} queue messages\n"
        f"  {args.changes} Workbooks changes: {b.graph:.0f} Graph calls, {b.workbooks:.0f} "
        f"Workbooks calls, {b.rows:.0f} Workbooks rows read, {b.table:.0f} Table "
        f"transactions, {b.messages} queue messages\n"
        f"  peak enqueue rate {max(quiet.peak, busy.peak)}/min, average "
        f"{quiet.average:.0f}/min"
    )
    # A user's schema is read once per client and WORKBOOKS_SCHEMA_TTL_SECONDS, on wall-clock
    # time: the first sync reads it for each sampled user, the simulated cycles after it do not.
    ttl = _schema_ttl()
    per_user = cycles[0].schema / max(sampled, 1)
    print(
        f"  Workbooks schema: {per_user:.1f} calls per Workbooks user, read again every "
        f"{ttl / 3600:g} h (WORKBOOKS_SCHEMA_TTL_SECONDS): about "
        f"{args.mailboxes * per_user * CYCLE_MINUTES * 60 / ttl:.0f} calls per cycle for "
        f"{args.mailboxes} users in each instance, on top of the figures above"
    )
    spread = max(quiet.peak / quiet.average, busy.peak / busy.average) <= 2
    follows = b.rows - q.rows <= math.ceil(1.5 * args.changes)
    return 0 if spread and follows else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument(
        "--sample",
        type=int,
        default=100,
        help="mailboxes whose jobs run (evenly spread); the rest is projected from them",
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
