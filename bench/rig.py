"""The service on one machine for benchmarks and the fault suite: Azurite, the Graph and
Workbooks sandboxes in this process, and the Functions host (``python -m devkit serve``) in
processes of its own, so a host can be measured (its CPU time), profiled, killed with SIGKILL
and started again like an instance of the real host.

    async with rig_running(mailboxes=100) as rig:
        web = rig.host("web", queues=False)      # webhook (and timers, when asked)
        await web.start(); await rig.subscribe_all(web)
        worker = rig.host("worker", http=False)  # the queue worker alone
        await worker.start()
        rig.send(i, ...); rig.linked(...)

Everything the host needs is in its environment: the storage connection string, the table
prefix and queue of this run, the sandboxes' URLs and one Workbooks key per mailbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.support.local import free_port, patched_environ  # noqa: E402
from tests.support.world import World, world_running  # noqa: E402

SHARED = ["Workbooks"]  # the category that shares an email


# The host under cProfile with a CPU clock (the default wall clock would charge the time the
# process waits for a core, on a busy machine, to whatever syscall it was in); written out when
# the host stops on SIGINT.
_PROFILED = """
import cProfile, sys, time
from devkit.host.cli import main
out = sys.argv[1]
profiler = cProfile.Profile(time.process_time)
profiler.enable()
try:
    code = main(sys.argv[2:])
finally:
    profiler.disable()
    profiler.dump_stats(out)
raise SystemExit(code)
"""


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile by nearest rank (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


@dataclass
class HostProcess:
    """One ``python -m devkit serve`` process: start, stop (SIGINT), kill (SIGKILL)."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int
    http: bool = True
    queues: bool = True
    timers: bool = False
    profile: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        argv = ["--port", str(self.port)]
        argv += [] if self.http else ["--no-http"]
        argv += [] if self.queues else ["--no-queues"]
        argv += [] if self.timers else ["--no-timers"]
        return argv

    def spawn(self) -> None:
        cmd = [sys.executable]
        if self.profile is not None:
            cmd += ["-c", _PROFILED, str(self.profile), *self.argv()]
        else:
            cmd += ["-m", "devkit", "serve", "--", *self.argv()]
        self.starts += 1
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603
                cmd, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )

    async def start(self, timeout: float = 60.0) -> None:
        self.spawn()
        await self._ready(timeout)

    async def _ready(self, timeout: float) -> None:
        """HTTP hosts answer the validation handshake; the others print their banner."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"host {self.name} exited; see {self.log_path}")
                if self.http:
                    url = f"{self.base}/api/graph/notifications?validationToken=ready"
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.post(url) as resp:
                            if resp.status == 200:
                                return
                elif b"Press Ctrl+C to stop." in self.log_path.read_bytes()[-4096:]:
                    return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"host {self.name} did not start within {timeout:.0f} s")

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc is not None else float("nan")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when an instance dies."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGINT, then SIGKILL after ``timeout``, without blocking the event loop.  A
        stopping host closes its services, which logs out of every Workbooks session: with the
        sandbox in this loop, a blocking wait would leave those calls unanswered until the
        SIGKILL (and a profiled host would never write its profile)."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                return
            await asyncio.sleep(0.05)


@dataclass
class Rig:
    world: World
    mailboxes: list[str]
    log_dir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    hosts: list[HostProcess] = field(default_factory=list)
    port: int = field(default_factory=free_port)  # the webhook's port (Graph calls it)

    @property
    def services(self) -> Any:
        return self.world.services

    def host_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
                "SYNC_LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.pop("SYNC_LOCAL_FUNCTION_KEY", None)
        env.update(self.env_extra)
        return env

    def host(
        self,
        name: str,
        *,
        http: bool = True,
        queues: bool = True,
        timers: bool = False,
        profile: Path | None = None,
    ) -> HostProcess:
        """A host process (not started).  Only one may serve HTTP: Graph calls that port."""
        port = self.port if http else free_port()
        host = HostProcess(
            name,
            self.host_env(),
            self.log_dir / f"host-{name}.log",
            port,
            http=http,
            queues=queues,
            timers=timers,
            profile=profile,
        )
        self.hosts.append(host)
        return host

    async def subscribe_all(self) -> None:
        """Graph subscriptions for every mailbox (the handshake goes to the HTTP host)."""
        from sync.engine.subscriptions import ensure_for_mailbox

        gate = asyncio.Semaphore(8)

        async def one(upn: str) -> None:
            mailbox = await self.services.store.mailboxes.get(upn)
            async with gate:
                outcome = await ensure_for_mailbox(self.services, mailbox)
            if outcome.failed:
                raise RuntimeError(f"subscriptions for {upn} failed: {outcome.failed}")

        await asyncio.gather(*(one(upn) for upn in self.mailboxes))

    async def initial_sync(self, streams: tuple[Any, ...], timeout: float = 300.0) -> None:
        """First delta round of each mailbox's streams, through the queue and the worker."""
        from sync.core.jobs import Job, JobKind

        for upn in self.mailboxes:
            for stream in streams:
                await self.services.queue.send(
                    Job(mailbox=upn, stream=stream, kind=JobKind.PUSH, reason="initial sync")
                )
        deadline = time.monotonic() + timeout
        pending = {(u, s) for u in self.mailboxes for s in streams}
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"initial sync: {len(pending)} streams without a delta link")
            for upn, stream in list(pending):
                cursor = await self.services.store.cursors.get(upn, stream)
                if cursor.delta_link and not cursor.lease_owner:
                    pending.discard((upn, stream))
            await asyncio.sleep(0.5)

    async def stop_hosts(self) -> None:
        await asyncio.gather(*(host.stop() for host in self.hosts))


@contextlib.asynccontextmanager
async def rig_running(
    conn: str,
    *,
    mailboxes: int,
    log_dir: Path,
    graph_config: Any = None,
    workbooks_config: Any = None,
    env_extra: dict[str, str] | None = None,
) -> AsyncIterator[Rig]:
    """Sandboxes and services on fresh tables and queue; ``mailboxes`` registered, each with
    its own Workbooks user and key.  Host processes started through the rig are stopped on
    exit; their logs go to ``log_dir`` (which must exist)."""
    from devkit.sandbox.workbooks import SandboxConfig
    from devkit.sandbox.workbooks.config import SimUser

    sims = [
        SimUser(
            user_id=30000 + i,
            person_name=f"User {i}",
            login_name=f"u{i}@example.com",
            api_key=f"user-{i}-key",
        )
        for i in range(mailboxes)
    ]
    wcfg = workbooks_config or SandboxConfig(sim_controls=True, users=sims)
    if workbooks_config is not None:
        wcfg.users = sims
    port = free_port()
    public = {"SYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    with patched_environ(public):
        async with world_running(conn, graph_config=graph_config, workbooks_config=wcfg) as w:
            upns = [f"user{i:03d}@example.com" for i in range(mailboxes)]
            for i, upn in enumerate(upns):
                await w.add_mailbox(upn, api_key=f"user-{i}-key")
            rig = Rig(w, upns, log_dir, dict(env_extra or {}), port=port)
            try:
                yield rig
            finally:
                await rig.stop_hosts()


class LinkWatch:
    """Watches the Workbooks sandbox for sent emails becoming linked: an email counts as linked
    once it has all the links it should have.  Reads only the rows added since the last look."""

    def __init__(self, world: World) -> None:
        self.state = world.workbooks.state
        self.link_path = self.state.config.email_link_path
        self.expected: dict[str, int] = {}  # created_through_reference -> links it should get
        self.sent: dict[str, float] = {}  # reference -> perf_counter at send
        self.done: dict[str, float] = {}
        self._email_ref: dict[int, str] = {}
        self._links: dict[int, int] = {}
        self._seen_emails = 0
        self._seen_links = 0

    def expect(self, ref: str, links: int) -> None:
        self.expected[ref] = links
        self.sent[ref] = time.perf_counter()

    def poll(self) -> None:
        now = time.perf_counter()
        emails = self.state.tables["email/emails"]
        links = self.state.tables[self.link_path]
        touched: set[int] = set()
        for row in itertools.islice(emails.values(), self._seen_emails, None):
            self._seen_emails += 1
            ref = row.get("created_through_reference")
            if ref:
                self._email_ref[int(row["id"])] = str(ref)
                touched.add(int(row["id"]))
        for row in itertools.islice(links.values(), self._seen_links, None):
            self._seen_links += 1
            email_id = int(row["email_id"])
            self._links[email_id] = self._links.get(email_id, 0) + 1
            touched.add(email_id)
        for email_id in touched:
            ref = self._email_ref.get(email_id)
            if (
                ref in self.expected
                and ref not in self.done
                and self._links.get(email_id, 0) >= self.expected[ref]
            ):
                self.done[ref] = now

    def missing(self) -> list[str]:
        return [ref for ref in self.expected if ref not in self.done]

    async def wait(self, timeout: float, interval: float = 0.01) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if not self.missing():
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(interval)

    def latencies(self) -> list[float]:
        return [self.done[r] - self.sent[r] for r in self.done]
