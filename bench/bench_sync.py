"""Two-way sync benchmark (contacts, To Do, calendar) against both sandboxes and Azurite.

    .venv/bin/python bench/bench_sync.py [--sizes 1000,10000] [--people 10000]
                                         [--activities 5000] [--latency-ms 50] [--skip-initial]

1. Steady state, for each size N: N People synced to Outlook, the echo read once, then one more
   reconciliation of every stream with no changes.  Target: <= 1 Graph call per stream and
   <= 1 Workbooks call per record type, the same at every N.
2. Initial sync of ``--people`` People + ``--activities`` activities (half tasks, half meetings
   inside the calendar window) into an empty mailbox, with ``--latency-ms`` injected on both
   sandboxes: API calls against the minimum the APIs allow (one POST per created Outlook item,
   one read page per 100 records plus the closing short page, one delta page per empty stream,
   the login, and To Do's list lookup/creation), wall time, peak RSS, and the most items a run
   held in memory at once (``held_max``: new records are created chunk by chunk as they are read).
3. With ``--outlook-contacts N``: the first reconciliation of a mailbox holding N shared Outlook
   contacts (each with its own address) that Workbooks does not know: every contact is looked
   up (its stamp, the record an interrupted run may have created from it, and People holding
   its addresses) before a Person is created for it.  Prints the Graph and Workbooks calls by
   kind; no target, it shows how the lookups grow with N.

The sandboxes run in this process, so peak RSS includes their copy of every item; the Graph
sandbox's per-mailbox throttle (10,000 requests / 10 min, as Graph's) is raised for part 2,
since an initial sync of 15,000 items must exceed it (against real Graph it would be paced by
429 Retry-After, which the client honours).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sync.engine.activities  # noqa: E402
import sync.engine.contacts  # noqa: E402, F401
from sync.core.jobs import JobKind, Stream  # noqa: E402
from tests.support.local import running_azurite  # noqa: E402
from tests.support.world import World, world_running  # noqa: E402

UPN = "ann@example.com"
STREAMS = (Stream.CONTACTS, Stream.TODO, Stream.EVENTS)
PAGE = 100
WRITE_COUNTS = (
    "outlook_create",
    "outlook_update",
    "outlook_delete",
    "outlook_stamp",
    "workbooks_create",
    "workbooks_update",
    "workbooks_delete",
)


def graph_calls(world: World) -> int:
    return len(world.graph.sandbox.requests)


def wb_calls(world: World) -> int:
    return sum(world.workbooks_calls().values())


def reset(world: World) -> None:
    world.graph.sandbox.requests.clear()
    world.reset_call_counts()


def seed_people(world: World, n: int) -> None:
    for start in range(0, n, 500):
        world.seed(
            "crm/people",
            [
                {
                    "name": f"Person {i}",
                    "person_first_name": "Person",
                    "person_last_name": str(i),
                    "main_location[email]": f"p{i}@cust.example",
                    "main_location[town]": "Leeds",
                    "person_job_title": "Buyer",
                }
                for i in range(start, min(n, start + 500))
            ],
        )


def seed_activities(world: World, n: int) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    tasks = n // 2
    for start in range(0, tasks, 500):
        world.seed(
            "activity/tasks",
            [
                {
                    "name": f"Call {i}",
                    "activity_type": "Phone call",
                    "activity_status": "New",
                    "activity_priority": "Medium",
                    "due": f"{(now + timedelta(days=i % 60)).date()},0,UTC",
                }
                for i in range(start, min(tasks, start + 500))
            ],
        )
    for start in range(0, n - tasks, 500):
        world.seed(
            "activity/meetings",
            [
                {
                    "name": f"Meeting {i}",
                    "location": "Room 1",
                    "start": (now + timedelta(hours=i % 2000)).strftime(
                        "%Y-%m-%dT%H:%M:%S.000Z,1,UTC"
                    ),
                    "finish": (now + timedelta(hours=i % 2000, minutes=30)).strftime(
                        "%Y-%m-%dT%H:%M:%S.000Z,1,UTC"
                    ),
                }
                for i in range(start, min(n - tasks, start + 500))
            ],
        )


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB (Linux)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM, so the run's own peak is measured rather than the seeding's (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


async def reconcile_all(world: World) -> dict[str, int]:
    counts: dict[str, int] = {}
    for stream in STREAMS:
        run = await world.run(UPN, stream, JobKind.RECONCILE)
        if run.status != "ok":
            raise RuntimeError(f"{stream}: {run.status} {run.message}")
        for key, value in run.counts.items():
            merge = max if key == "held_max" else int.__add__  # a peak, not a total
            counts[key] = merge(counts.get(key, 0), value)
    return counts


async def steady_state(connection: str, size: int) -> dict[str, Any]:
    from devkit.sandbox.graph import SandboxConfig as GraphConfig

    gcfg = GraphConfig(controls=True, throttle_requests=10**9)
    async with world_running(connection, graph_config=gcfg) as world:
        await world.add_mailbox(UPN)
        world.graph.sandbox.state.next_seq()
        seed_people(world, size)
        await reconcile_all(world)  # initial
        await reconcile_all(world)  # reads the echo of our own writes once
        reset(world)
        started = time.perf_counter()
        counts = await reconcile_all(world)
        elapsed = time.perf_counter() - started
        per_stream: dict[str, int] = {}
        for _, path, _ in world.graph.sandbox.requests:
            key = (
                "calendarView"
                if "calendarview" in path.lower()
                else ("todo" if "/todo/" in path else "contacts")
            )
            per_stream[key] = per_stream.get(key, 0) + 1
        return {
            "size": size,
            "graph_calls": graph_calls(world),
            "graph_per_stream": per_stream,
            "workbooks_calls": dict(world.workbooks_calls()),
            "seconds": round(elapsed, 2),
            "writes": {k: v for k, v in counts.items() if k in WRITE_COUNTS},
        }


def minimum_calls(people: int, tasks: int, meetings: int) -> tuple[int, int]:
    """Graph: one POST per item + one delta page per empty stream + the To Do list lookup (a
    real mailbox always has its default list, so none is created); Workbooks: per type
    floor(n / 100) + 1 pages (a short page ends a read); the login is not counted on either
    side of the comparison."""
    graph = people + tasks + meetings + len(STREAMS) + 1
    workbooks = sum(n // PAGE + 1 for n in (people, tasks, meetings))
    return graph, workbooks


async def initial_sync(
    connection: str, people: int, activities: int, latency_ms: float
) -> dict[str, Any]:
    from devkit.sandbox.graph import SandboxConfig as GraphConfig
    from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig

    gcfg = GraphConfig(controls=True, throttle_requests=10**9, latency_seconds=latency_ms / 1000)
    wcfg = WorkbooksConfig(sim_controls=True, concurrency_cap=None, latency_ms=latency_ms)
    async with world_running(connection, graph_config=gcfg, workbooks_config=wcfg) as world:
        await world.add_mailbox(UPN, calendar_future_days=365)
        world.graph.sandbox.state.next_seq()
        seed_people(world, people)
        seed_activities(world, activities)
        reset(world)
        before_mb, reset_peak = rss_mb("VmRSS"), reset_peak_rss()
        started = time.perf_counter()
        counts = await reconcile_all(world)
        elapsed = time.perf_counter() - started
        after_mb = rss_mb("VmRSS")
        tasks, meetings = activities // 2, activities - activities // 2
        g_min, w_min = minimum_calls(people, tasks, meetings)
        g, w = graph_calls(world), wb_calls(world)
        return {
            "people": people,
            "activities": activities,
            "latency_ms": latency_ms,
            "created": counts.get("outlook_create", 0),
            "graph_calls": g,
            "graph_minimum": g_min,
            "graph_ratio": round(g / g_min, 3),
            "workbooks_calls": w,
            "workbooks_minimum": w_min,
            "workbooks_ratio": round(w / w_min, 3),
            "seconds": round(elapsed, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_before_mb": round(before_mb),
            "run_peak_mb": round(rss_mb("VmHWM")) if reset_peak else None,
            "rss_after_mb": round(after_mb),
            "held_max": counts.get("held_max", 0),
        }


def seed_outlook_contacts(world: World, n: int) -> None:
    sb = world.graph.sandbox
    box = sb.state.mailbox(UPN)
    folder = next(c for c in box.containers.values() if c.kind == "contact")
    for i in range(n):
        sb.create_item(
            box,
            folder,
            {
                "givenName": "Own",
                "surname": str(i),
                "displayName": f"Own {i}",
                "emailAddresses": [{"address": f"own{i}@mine.example"}],
                "categories": ["Workbooks"],
            },
        )


def graph_kinds(world: World) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for method, path, _ in world.graph.sandbox.requests:
        kind = "delta" if "/delta" in path else ("stamp read" if method == "GET" else method)
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def outlook_initial(connection: str, contacts: int, latency_ms: float) -> dict[str, Any]:
    from devkit.sandbox.graph import SandboxConfig as GraphConfig
    from devkit.sandbox.workbooks import SandboxConfig as WorkbooksConfig

    gcfg = GraphConfig(controls=True, throttle_requests=10**9, latency_seconds=latency_ms / 1000)
    wcfg = WorkbooksConfig(sim_controls=True, concurrency_cap=None, latency_ms=latency_ms)
    async with world_running(connection, graph_config=gcfg, workbooks_config=wcfg) as world:
        await world.add_mailbox(UPN)
        seed_outlook_contacts(world, contacts)
        reset(world)
        started = time.perf_counter()
        run = await world.run(UPN, Stream.CONTACTS, JobKind.RECONCILE)
        elapsed = time.perf_counter() - started
        if run.status != "ok":
            raise RuntimeError(f"contacts: {run.status} {run.message}")
        return {
            "contacts": contacts,
            "created": run.counts.get("workbooks_create", 0),
            "graph_calls": graph_calls(world),
            "graph_kinds": graph_kinds(world),
            "workbooks_calls": wb_calls(world),
            "workbooks_kinds": dict(sorted(world.workbooks_calls().items())),
            "seconds": round(elapsed, 1),
            "held_max": run.counts.get("held_max", 0),
        }


async def main(args: argparse.Namespace) -> int:
    ok = True
    with running_azurite() as (connection, _):
        for size in [int(s) for s in args.sizes.split(",") if s]:
            result = await steady_state(connection, size)
            wb = result["workbooks_calls"]
            good = (
                all(v <= 1 for v in result["graph_per_stream"].values())
                and all(v <= 1 for v in wb.values())
                and not result["writes"]
            )
            ok &= good
            print(
                f"steady state, {size} contacts: graph {result['graph_calls']} "
                f"{result['graph_per_stream']}, workbooks {wb}, writes {result['writes']}, "
                f"{result['seconds']} s -> {'OK' if good else 'OVER TARGET'}"
            )
        if not args.skip_initial:
            r = await initial_sync(connection, args.people, args.activities, args.latency_ms)
            good = r["graph_ratio"] <= 1.1 and r["workbooks_ratio"] <= 1.1
            good &= r["peak_rss_mb"] <= 300
            ok &= good
            print(
                f"initial sync, {r['people']} people + {r['activities']} activities, "
                f"{r['latency_ms']:.0f} ms latency: created {r['created']}; graph "
                f"{r['graph_calls']} calls (minimum {r['graph_minimum']}, x{r['graph_ratio']}); "
                f"workbooks {r['workbooks_calls']} (minimum {r['workbooks_minimum']}, "
                f"x{r['workbooks_ratio']}); {r['seconds']} s; peak RSS {r['peak_rss_mb']} MB "
                f"(incl. in-process sandboxes); {r['rss_before_mb']} MB seeded before the run, "
                f"peak during the run {r['run_peak_mb']} MB, {r['rss_after_mb']} MB after it "
                f"(what the sandboxes keep); at most {r['held_max']} items "
                f"held at once by a run "
                f"-> {'OK' if good else 'OVER TARGET'}"
            )
        if args.outlook_contacts:
            r = await outlook_initial(connection, args.outlook_contacts, args.latency_ms)
            print(
                f"initial sync, {r['contacts']} shared Outlook contacts unknown to Workbooks, "
                f"{args.latency_ms:.0f} ms latency: created {r['created']} People; graph "
                f"{r['graph_calls']} calls {r['graph_kinds']}; workbooks "
                f"{r['workbooks_calls']} calls {r['workbooks_kinds']}; {r['seconds']} s; "
                f"at most {r['held_max']} items held at once"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--activities", type=int, default=5_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--skip-initial", action="store_true")
    parser.add_argument("--outlook-contacts", type=int, default=0)
    sys.exit(asyncio.run(main(parser.parse_args())))
