"""Workbooks client benchmark against the sandbox (run as a separate process, over HTTP).

    .venv/bin/python bench/bench_workbooks.py [--people 10000] [--latency-ms 50]

1. Write N people: expects exactly ceil(N / batch_size) write calls and, with the injected
   latency, wall time within 1.3x of calls * latency / concurrency.
2. Resolve 1,000 addresses (people main emails, Contact Details alternates, lead emails,
   unknown): reports the call count against the target 3 * ceil(1000 / in_list_size).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sync.workbooks import (  # noqa: E402
    ClientConfig,
    WorkbooksClient,
    WorkbooksIdentity,
    WriteOp,
    resolve_addresses,
    write_batch,
)
from sync.workbooks.tenant import tenant_schema  # noqa: E402
from tests.support.local import free_port  # noqa: E402

API_KEY = "ann-api-key"  # the sandbox's built-in user, not a secret


async def wait_ready(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"{base}/_sim/stats") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("sandbox did not start")


async def control(base: str, name: str, payload: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as http:
        if payload is None:
            async with http.get(f"{base}/_sim/{name}") as resp:
                return await resp.json()
        async with http.post(f"{base}/_sim/{name}", json=payload) as resp:
            return await resp.json()


def data_calls(stats: dict[str, int], verb: str, endpoint: str | None = None) -> int:
    return sum(
        n
        for key, n in stats.items()
        if key.startswith(f"{verb} ")
        and "login" not in key
        and (endpoint is None or key == f"{verb} {endpoint}.api")
    )


async def timed_writes(base: str, people: int, latency_ms: float) -> tuple[int, float, int]:
    """(write calls seen by the sandbox, wall seconds, failed objects) on a fresh sandbox."""
    await control(base, "reset", {})
    ops = [
        WriteOp.create({"name": f"Person {i}", "main_location[email]": f"p{i}@bench.test"})
        for i in range(people)
    ]
    async with WorkbooksClient(WorkbooksIdentity(base, SecretStr(API_KEY)), ClientConfig()) as wb:
        await wb.ensure_login()
        await control(base, "latency", {"ms": latency_ms})
        before = await control(base, "stats")
        started = time.perf_counter()
        results = await write_batch(wb, "crm/people", ops)
        wall = time.perf_counter() - started
        after = await control(base, "stats")
        throttled = after.get("throttled", 0) - before.get("throttled", 0)
        if throttled:
            print(f"  note: {throttled} requests were throttled and replayed")
    calls = data_calls(after, "PUT", "crm/people") - data_calls(before, "PUT", "crm/people")
    return calls, wall, sum(not r.ok for r in results)


async def bench_writes(base: str, people: int, latency_ms: float) -> None:
    config = ClientConfig()
    expected = math.ceil(people / config.batch_size)
    _, cpu_floor, _ = await timed_writes(base, people, 0.0)
    calls, wall, failed = await timed_writes(base, people, latency_ms)
    ideal = calls * latency_ms / 1000 / config.max_concurrency
    serial = calls * latency_ms / 1000
    print(f"write {people} people: calls={calls} (expected {expected}), failed={failed}")
    print(
        f"  wall={wall:.3f}s with {latency_ms:.0f} ms latency; ideal={ideal:.3f}s "
        f"(calls x latency / {config.max_concurrency}); ratio={wall / ideal:.2f} "
        f"(target <= 1.30)"
    )
    print(
        f"  same writes with no latency (CPU floor of client + sandbox on this machine): "
        f"{cpu_floor:.3f}s; wall minus floor={wall - cpu_floor:.3f}s vs ideal {ideal:.3f}s; "
        f"ratio to max(ideal, floor)={wall / max(ideal, cpu_floor):.2f}; "
        f"one request at a time the latency alone would be {serial:.1f}s"
    )


async def seed_resolution_data(base: str) -> list[str]:
    """600 main emails, 200 Contact Details alternates, 100 lead emails, 100 unknown."""
    alternates = [
        {"party_id": i + 1, "location_name": "Other", "alternate_email": f"alt{i}@bench.test"}
        for i in range(200)
    ]
    await control(base, "seed", {"endpoint": "crm/party_locations", "records": alternates})
    leads = [
        {
            "person_lead_party[name]": f"Lead {i}",
            "person_lead_party[main_location[email]]": f"lead{i}@bench.test",
        }
        for i in range(100)
    ]
    await control(base, "seed", {"endpoint": "crm/sales_leads", "records": leads})
    return (
        [f"p{i}@bench.test" for i in range(0, 6000, 10)]
        + [f"alt{i}@bench.test" for i in range(200)]
        + [f"lead{i}@bench.test" for i in range(100)]
        + [f"unknown{i}@bench.test" for i in range(100)]
    )


async def bench_resolve(base: str, latency_ms: float) -> None:
    await control(base, "latency", {"ms": 0})
    addresses = await seed_resolution_data(base)
    await control(base, "latency", {"ms": latency_ms})
    config = ClientConfig()
    async with WorkbooksClient(WorkbooksIdentity(base, SecretStr(API_KEY)), config) as wb:
        await wb.ensure_login()
        await tenant_schema(wb)  # read once per client, like the login: not part of the figure
        before = await control(base, "stats")
        started = time.perf_counter()
        found = await resolve_addresses(wb, addresses)
        wall = time.perf_counter() - started
        after = await control(base, "stats")
    calls = data_calls(after, "GET") - data_calls(before, "GET")
    target = 3 * math.ceil(len(addresses) / config.in_list_size)
    matched = sum(1 for matches in found.values() if matches)
    print(
        f"resolve {len(addresses)} addresses: calls={calls} (target <= {target}), "
        f"matched={matched}, wall={wall:.3f}s at {latency_ms:.0f} ms latency"
    )


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # A separate process, so the sandbox's CPU does not share the client's event loop.
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "devkit.sandbox", "workbooks", "--port", str(port)),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_ready(base)
        await bench_writes(base, args.people, args.latency_ms)
        await control(base, "reset", {})
        await control(base, "latency", {"ms": 0})
        await timed_writes(base, 6000, 0.0)  # the people whose main emails get resolved
        await bench_resolve(base, args.latency_ms)
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
