"""Benchmark: several worker processes sharing one Workbooks key against the 5-in-flight limit.

The Workbooks client keeps at most 5 requests in flight per identity, but per process: with
N Functions instances (or N worker processes) working for the same user, up to 5 x N can be in
flight, and Workbooks answers the excess with a throttling redirect (302 to the same URL,
workbooks-api.md §1.8, §5), which the client replays with back-off (0.5, 1, 2, 4, 8 s; at
most 8 attempts, then the job is re-queued).

The Workbooks sandbox runs in a process of its own (``python -m devkit.sandbox workbooks``)
with its 5-in-flight cap per credential and ``--latency-ms`` of server time per request (a
real tenant answers in 100-300 ms).  For 1 to 5 worker processes (a mailbox has five streams,
each run by one job at a time, so at most five processes work for one key), each process sends
``--requests`` reads with one shared key as fast as its client allows, first with each process
free to use the whole limit (as before), then as one stream job with its share of the limit
(``WORKBOOKS_SPLIT_CONCURRENCY``: one slot each).  The bench prints the throttling redirects
the sandbox sent, the requests that failed after all their replays, the total throughput and
the p50/p99 latency of a request (replays included).

Run:  .venv/bin/python bench/bench_wb_instances.py [--requests 100] [--latency-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "ann-api-key"  # the sandbox's default user


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stats(base: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{base}/_sim/stats", timeout=5) as r:  # noqa: S310
        data: dict[str, int] = json.loads(r.read())
    return data


async def worker(base: str, requests: int, share: int) -> dict[str, Any]:
    """One process: ``requests`` reads through one client (its own 5-in-flight cap), inside
    a job's share of the limit (``sync.workbooks.client.job_slots``) when ``share``."""
    import contextlib

    from pydantic import SecretStr

    from sync.core.errors import SyncError
    from sync.workbooks.client import WorkbooksClient, job_slots
    from sync.workbooks.config import WorkbooksIdentity

    client = WorkbooksClient(WorkbooksIdentity(base, SecretStr(KEY), "bench"))
    latencies: list[float] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        began = time.perf_counter()
        try:
            await client.get("crm/people", [("_start", "0"), ("_limit", "10")])
        except SyncError:
            failed += 1
        latencies.append(time.perf_counter() - began)

    try:
        await client.get("crm/people", [("_start", "0"), ("_limit", "1")])  # log in first
        began = time.perf_counter()
        with job_slots(share) if share else contextlib.nullcontext():
            await asyncio.gather(*(one() for _ in range(requests)))
        elapsed = time.perf_counter() - began
    finally:
        await client.close()
    return {"latencies": latencies, "failed": failed, "elapsed": elapsed}


def run_processes(base: str, processes: int, requests: int, share: int) -> dict[str, Any]:
    before = _stats(base)
    began = time.perf_counter()
    procs = [
        subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                __file__,
                "--worker",
                base,
                "--requests",
                str(requests),
                "--share",
                str(share),
            ],
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    wall = time.perf_counter() - began
    after = _stats(base)
    lat = sorted(x for r in results for x in r["latencies"])
    total = processes * requests
    return {
        "processes": processes,
        "requests": total,
        "throttled": after.get("throttled", 0) - before.get("throttled", 0),
        "failed": sum(r["failed"] for r in results),
        "throughput": total / max(r["elapsed"] for r in results),
        "p50": statistics.median(lat),
        "p99": lat[min(len(lat) - 1, math.ceil(0.99 * len(lat)) - 1)],
        "wall": wall,
    }


def main(args: argparse.Namespace) -> int:
    if args.worker:
        print(json.dumps(asyncio.run(worker(args.worker, args.requests, args.share))))
        return 0
    port = _free_port()
    sandbox = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "devkit.sandbox",
            "workbooks",
            "--port",
            str(port),
            "--latency-ms",
            str(args.latency_ms),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                _stats(base)
                break
            except OSError:
                time.sleep(0.1)
        print(
            f"Workbooks sandbox in its own process, 5 in flight per key, "
            f"{args.latency_ms:g} ms per request; {args.requests} reads per worker process"
        )
        rows = []
        for share, label in ((0, "each process its own 5"), (1, "one slot per stream job")):
            print(f" {label}:")
            for processes in (1, 2, 3, 4, 5):
                r = run_processes(base, processes, args.requests, share)
                rows.append((share, r))
                sent = r["requests"] + r["throttled"]
                print(
                    f"  {processes} process(es) sharing one key: {r['requests']} reads, "
                    f"throttling redirects {r['throttled']} ({r['throttled'] / sent:.0%} of "
                    f"requests sent), failed after every replay {r['failed']}, "
                    f"{r['throughput']:.1f} reads/s, p50 {r['p50'] * 1000:.0f} ms, "
                    f"p99 {r['p99'] * 1000:.0f} ms"
                )
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    # the split must keep every process count under the limit: no throttling at all
    return 0 if all(r["throttled"] == 0 and r["failed"] == 0 for sh, r in rows if sh) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    parser.add_argument("--share", type=int, default=0, help=argparse.SUPPRESS)
    sys.exit(main(parser.parse_args()))
