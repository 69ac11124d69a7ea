"""Benchmark: the CPU one Table request costs through the Azure SDK, per pipeline.

    .venv/bin/python -m devkit.azurite run -- .venv/bin/python bench/bench_storage_sdk.py
        [--requests 1500] [--rounds 3]

A streamed email costs about eleven storage requests (``bench_job_costs``), and most of the
service's CPU per email is the SDK's work around each one (``bench_throughput``'s ledger).
This measures that work alone: one process, one request at a time against Azurite, the
process's CPU time (not the clock's) per request, for

* ``sdk default``: ``TableServiceClient.get_table_client`` as the SDK builds it;
* ``service``: the table client the service uses (``sync.storage.table_service``: the same
  pipeline on an aiohttp transport without the proxy and ``.netrc`` lookups the default one
  makes on every request);
* ``bare aiohttp``: an unsigned GET that Azurite refuses (403), the floor of one HTTP round
  trip in this process, for scale.

The operations: a conditional replace (``update_entity`` with an ETag, as the cursor's claim
and release do) and a point read (``get_entity``).  Rounds alternate the pipelines, so a
change in the machine's speed shows as spread rather than as a difference.  Prints the median
and range of each over the rounds.  No target: the figures explain ``bench_throughput``'s.

Also tried, and left out for want of a difference: dropping the pipeline's redirect, proxy
and body-logging policies, which do nothing for this service (the same figures within the
rounds' spread).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.core import MatchConditions
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableServiceClient

from sync.settings import AppSettings
from sync.storage import table_service


async def _per_request(n: int, call: Callable[[], Awaitable[Any]]) -> float:
    """Milliseconds of this process's CPU per call, after a warm-up."""
    for _ in range(50):
        await call()
    start = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - start) / n * 1000


async def _table_figures(table: Any, n: int) -> dict[str, float]:
    entity = {"PartitionKey": "p", "RowKey": uuid.uuid4().hex, "text": "x" * 200, "n": 1}
    etag = [(await table.upsert_entity(entity))["etag"]]

    async def replace() -> None:
        meta = await table.update_entity(
            entity,
            mode=UpdateMode.REPLACE,
            etag=etag[0],
            match_condition=MatchConditions.IfNotModified,
        )
        etag[0] = meta["etag"]

    async def read() -> None:
        await table.get_entity("p", entity["RowKey"])

    return {
        "conditional replace": await _per_request(n, replace),
        "point read": await _per_request(n, read),
    }


async def run(args: argparse.Namespace) -> int:
    conn = os.environ.get("AzureWebJobsStorage") or os.environ.get("AZURITE_CONNECTION_STRING")
    if not conn:
        print("set AzureWebJobsStorage (run under `python -m devkit.azurite run --`)")
        return 2
    name = f"sdkbench{uuid.uuid4().hex[:10]}"
    default = TableServiceClient.from_connection_string(conn)
    service = table_service(AppSettings.model_validate({"storage_connection": conn}))
    figures: dict[tuple[str, str], list[float]] = {}
    try:
        await default.create_table(name)
        tables = {
            "sdk default": default.get_table_client(name),
            "service": service.get_table_client(name),
        }
        url = f"{tables['service'].scheme}://{tables['service']._primary_hostname}/{name}()"
        async with aiohttp.ClientSession() as session:

            async def bare() -> None:
                async with session.get(url) as resp:
                    await resp.read()

            for _ in range(args.rounds):
                for label, table in tables.items():
                    for op, ms in (await _table_figures(table, args.requests)).items():
                        figures.setdefault((label, op), []).append(ms)
                bare_ms = await _per_request(args.requests, bare)
                figures.setdefault(("bare aiohttp", "GET, refused"), []).append(bare_ms)
        for table in tables.values():
            await table.close()
        await default.delete_table(name)
    finally:
        await default.close()
        await service.close()
    print(f"CPU per request, {args.requests} requests x {args.rounds} rounds, one at a time:")
    for (label, op), values in figures.items():
        print(
            f"  {label:13} {op:20} median {statistics.median(values):.3f} ms "
            f"(range {min(values):.3f}-{max(values):.3f})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=1500, help="requests per operation per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds, alternating the pipelines")
    return asyncio.run(run(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
