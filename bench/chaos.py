"""Fault suite: the service under the faults of a bad day, each scenario ending in the state of a
fault-free run, with its time to converge printed.

    python bench/chaos.py [--quick] [--only kill,outage,...] [--seed N]

Everything runs as in production, each part in its own process: Azurite with its data on disk
(so it can be stopped and started again on the same ports), the Functions host twice (a ``web``
process serving the webhook with the timers, the sweeper among them, and a ``worker`` process
running the queue trigger with host.json's settings), and the Graph and Workbooks sandboxes in
this process (``bench/rig.py``).  In the full run each scenario gets fresh tables, queue,
sandboxes and hosts; the quick run plays them one after another on one set (each with emails
of its own).  Timers other than the sweeper are set to fire once a year, so every job comes
from a notification, a lifecycle event, a retry or the sweeper.

Email scenarios send the same workload (``Profile.emails`` shared emails, round-robin over the
mailboxes, each to two People, one Contact Details address and one unknown address) while their
fault happens, then wait until every email is linked.  The final state is each email's links
in Workbooks, keyed by the email's number; it must equal the fault-free run's (``baseline``):
nothing lost, no email recorded twice, no link twice, and nothing in the poison queue.

Scenarios (time to converge is measured from the moment the fault ends):

* ``baseline``   no fault (its figure is the time from the last send);
* ``kill``       kill -9 of the worker at random moments while runs are in flight (a run is
                 holding a stream's lease), the worker started again a second later; from the
                 last kill.  Target <= 120 s;
* ``outage``     Azurite stopped for ``Profile.outage`` seconds under traffic; from its
                 restart.  Target <= 90 s after a 30 s outage;
* ``graph-storm``     every Graph request answers 503 without Retry-After for ``Profile.storm``;
* ``workbooks-storm`` every Workbooks request answers 503 for ``Profile.storm``;
* ``workbooks-throttle`` every Workbooks request is throttled for ``Profile.storm``: Workbooks'
                 own answer, a 302 back to the same URL (workbooks-api.md §1.8), which the
                 client must replay unchanged and never take for a success or a login page;
                 from the storm's end, target <= 120 s each;
* ``duplicates`` every notification delivered four times, in random order (up to 2 s apart);
* ``delta-expiry``  every mailbox's delta tokens expire three times during the traffic;
* ``lifecycle``  ``missed`` for every subscription, ``subscriptionRemoved`` for a third of them;
* ``conflicts``  People edited in Workbooks and their contacts in Outlook at the same time, the
                 Outlook edit later, with stale lock versions on the first writes
                 (the sandbox's forced conflicts); the later edit must win on both sides, no
                 record duplicated; the reconciliation's contacts jobs are queued every 10 s
                 (what the 30-minute timer sends), from the edits.

``--quick`` is the small version CI runs (tests/chaos): fewer mailboxes and emails, 8 s
faults, 15 s leases and a sweeper every 5 s.  The full run keeps the shipped timings (60 s
leases, a sweep every 30 s).  Exit status 0 when every scenario met its targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_emails import _expected_links, _recipients, _seed_people  # noqa: E402
from bench.rig import SHARED, HostProcess, LinkWatch, Rig, rig_running  # noqa: E402
from sync.core.email_linking import email_reference  # noqa: E402
from sync.core.jobs import Stream  # noqa: E402

NEVER = "0 0 0 1 1 *"  # timers that must not fire during a scenario: once a year


@dataclass(frozen=True)
class Profile:
    """How big and how long: the full suite or the quick one CI runs."""

    name: str
    mailboxes: int
    people: int
    emails: int
    rate: float  # emails per second while the workload is sent
    outage: float
    storm: float
    kills: int
    converge_timeout: float
    settle: float  # seconds to keep watching after convergence (late jobs must not duplicate)
    shared: bool  # one stage (hosts, tables, sandboxes) for all scenarios, one after another
    host_env: dict[str, str] = field(default_factory=dict)

    @property
    def send_seconds(self) -> float:
        return self.emails / self.rate


FULL = Profile(
    name="full",
    mailboxes=10,
    people=60,
    emails=300,
    rate=5.0,
    outage=30.0,
    storm=60.0,
    kills=3,
    converge_timeout=400.0,
    settle=20.0,
    shared=False,
)
QUICK = Profile(
    name="quick",
    mailboxes=3,
    people=30,
    emails=12,
    rate=4.0,
    outage=8.0,
    storm=8.0,
    kills=1,
    converge_timeout=150.0,
    settle=3.0,
    shared=True,
    host_env={
        "SYNC_LEASE_SECONDS": "15",
        "SYNC_SWEEP_SCHEDULE": "*/5 * * * * *",
        "SYNC_SWEEP_AFTER_SECONDS": "10",
        "SYNC_RETRY_CAP_SECONDS": "20",
    },
)

# Targets, in seconds from the end of the fault (issue targets; the quick profile's shorter
# leases and faults make its figures smaller, the targets stay the same).
TARGETS = {
    "kill": 120.0,
    "outage": 90.0,
    "graph-storm": 120.0,
    "workbooks-storm": 120.0,
    "workbooks-throttle": 120.0,
}
DEFAULT_TARGET = 120.0


@dataclass
class Outcome:
    scenario: str
    fault: str
    converge_s: float | None  # None: did not converge within the profile's timeout
    target_s: float
    lost: int = 0
    duplicated: int = 0
    poison: int = 0
    same_as_baseline: bool | None = None  # None: no baseline to compare with
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.converge_s is not None
            and self.converge_s <= self.target_s
            and self.lost == 0
            and self.duplicated == 0
            and self.poison == 0
            and self.same_as_baseline is not False
        )


# -- storage on disk, restartable ----------------------------------------------------------------


class Storage:
    """Azurite with its data on disk, stoppable and restartable on the same ports."""

    def __init__(self) -> None:
        from devkit import azurite

        self._azurite = azurite
        self.location = Path(tempfile.mkdtemp(prefix="chaos-azurite-"))
        info, self.proc = azurite.start(location=self.location)
        self.conn = info.connection_string
        self.ports = tuple(
            int(url.rsplit(":", 1)[1]) for url in (info.blob_url, info.queue_url, info.table_url)
        )

    def stop(self) -> None:
        self._azurite.stop(self.proc)

    def start(self) -> None:
        _, self.proc = self._azurite.start(location=self.location, ports=self.ports)  # type: ignore[arg-type]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


# -- the workload and its final state ------------------------------------------------------------


class Workload:
    """The same emails in every scenario; their links are the state compared with a baseline."""

    def __init__(self, rig: Rig, people: list[str], offset: int = 0) -> None:
        self.rig = rig
        self.people = people
        self.offset = offset
        self.watch = LinkWatch(rig.world)
        # reference -> email number from the offset: recipients repeat every len(people)
        # emails (``_recipients``), so workloads whose offsets are multiples of it have the
        # same final state
        self.refs: dict[str, int] = {}
        self.last_send = 0.0

    def send(self, n: int) -> None:
        i = self.offset + n
        w = self.rig.world
        upn = self.rig.mailboxes[i % len(self.rig.mailboxes)]
        to, cc = _recipients(i, self.people)
        imid = f"<chaos{i}@example.com>"
        mid = w.send(
            upn, to=to, cc=cc, subject=f"C {i}", categories=SHARED, internet_message_id=imid
        )
        ref = email_reference(imid, mid)
        self.refs[ref] = n
        self.watch.expect(ref, _expected_links(i, self.people))
        self.last_send = time.perf_counter()

    async def send_all(self, count: int, rate: float) -> None:
        started = time.perf_counter()
        for n in range(count):
            self.send(n)
            await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.perf_counter()))

    async def converge(self, timeout: float) -> float | None:
        """perf_counter when every email was linked, or None."""
        if not await self.watch.wait(timeout, interval=0.05):
            return None
        return max(self.watch.done.values(), default=time.perf_counter())

    def final_state(self) -> tuple[dict[int, tuple[tuple[str, int], ...]], int, int]:
        """(links of each email by number, emails lost, records duplicated)."""
        state = self.rig.world.workbooks.state
        by_ref: dict[str, list[int]] = {}
        for row in state.tables["email/emails"].values():
            ref = row.get("created_through_reference")
            if ref in self.refs and not row.get("is_deleted"):
                by_ref.setdefault(str(ref), []).append(int(row["id"]))
        links: dict[int, list[tuple[str, int]]] = {}
        for row in state.tables[state.config.email_link_path].values():
            if not row.get("is_deleted"):
                links.setdefault(int(row["email_id"]), []).append(
                    (str(row["resource_type"]), int(row["resource_id"]))
                )
        duplicated = sum(len(ids) - 1 for ids in by_ref.values())
        out: dict[int, tuple[tuple[str, int], ...]] = {}
        for ref, ids in by_ref.items():
            pairs = [p for email_id in ids for p in links.get(email_id, [])]
            duplicated += sum(n - 1 for n in Counter(pairs).values())
            out[self.refs[ref]] = tuple(sorted(set(pairs)))
        lost = sum(
            1
            for ref, i in self.refs.items()
            if ref not in by_ref or len(out.get(i, ())) < self.watch.expected[ref]
        )
        return out, lost, duplicated


# -- one scenario --------------------------------------------------------------------------------


@dataclass
class Stage:
    """A running scenario: the rig, its two hosts, the workload."""

    rig: Rig
    web: HostProcess
    worker: HostProcess
    work: Workload
    storage: Storage
    profile: Profile
    rng: random.Random


@contextlib.asynccontextmanager
async def staged(
    storage: Storage,
    profile: Profile,
    rng: random.Random,
    *,
    graph_config: Any = None,
    workbooks_config: Any = None,
    host_env: dict[str, str] | None = None,
) -> AsyncIterator[Stage]:
    log_dir = Path(tempfile.mkdtemp(prefix="chaos-"))
    env = {
        "SYNC_PUSH_SCHEDULE": NEVER,
        "SYNC_RECONCILE_SCHEDULE": NEVER,
        "SYNC_RENEW_SCHEDULE": NEVER,
        "SYNC_TODO_POLL_SCHEDULE": NEVER,
        **profile.host_env,
        **(host_env or {}),
    }
    os.environ["AzureWebJobsStorage"] = storage.conn
    async with rig_running(
        storage.conn,
        mailboxes=profile.mailboxes,
        log_dir=log_dir,
        graph_config=graph_config or _graph_config(),
        workbooks_config=workbooks_config,
        env_extra=env,
    ) as rig:
        people = _seed_people(rig.world, profile.people)
        web = rig.host("web", queues=False, timers=True)
        worker = rig.host("worker", http=False, queues=True, timers=False)
        await asyncio.gather(web.start(), worker.start())
        await rig.subscribe_all()
        await rig.initial_sync((Stream.SENT,))
        yield Stage(rig, web, worker, Workload(rig, people), storage, profile, rng)


def _graph_config(**overrides: Any) -> Any:
    """Graph retries a failed notification with back-off (for hours in Graph; enough here to
    outlast an outage)."""
    from devkit.sandbox.graph import SandboxConfig as GraphConfig

    values: dict[str, Any] = {
        "controls": True,
        "validation_timeout_seconds": 2.0,
        "notify_attempts": 8,
        "notify_retry_seconds": 2.0,
    }
    values.update(overrides)
    return GraphConfig(**values)


async def _poison(stage: Stage) -> int:
    return int(await stage.rig.services.queue.poison_depth())


async def finish(
    stage: Stage,
    scenario: str,
    fault: str,
    fault_end: float,
    baseline: dict[int, Any] | None,
) -> tuple[Outcome, dict[int, Any]]:
    """Wait for convergence, keep watching a little (late retries must not duplicate), and
    compare the final state with the fault-free run's."""
    done_at = await stage.work.converge(stage.profile.converge_timeout)
    await asyncio.sleep(stage.profile.settle)
    state, lost, duplicated = stage.work.final_state()
    outcome = Outcome(
        scenario,
        fault,
        None if done_at is None else max(0.0, done_at - fault_end),
        TARGETS.get(scenario, DEFAULT_TARGET),
        lost=lost,
        duplicated=duplicated,
        poison=await _poison(stage),
        same_as_baseline=None if baseline is None else state == baseline,
    )
    for host in (stage.web, stage.worker):
        if not host.alive():
            outcome.notes.append(f"{host.name} host died: see {host.log_path}")
    return outcome, state


Fault = Callable[[Stage], Awaitable[tuple[str, float]]]  # -> (description, perf_counter at end)


async def email_scenario(
    stage: Stage,
    scenario: str,
    fault: Fault,
    baseline: dict[int, Any] | None,
    offset: int,
) -> tuple[Outcome, dict[int, Any]]:
    """The workload (from email ``offset``) under ``fault``, then the final state."""
    stage.work = Workload(stage.rig, stage.work.people, offset)
    sending = asyncio.create_task(stage.work.send_all(stage.profile.emails, stage.profile.rate))
    try:
        description, fault_end = await fault(stage)
    finally:
        await sending
    return await finish(stage, scenario, description, fault_end, baseline)


# -- the faults ----------------------------------------------------------------------------------


async def no_fault(stage: Stage) -> tuple[str, float]:
    await asyncio.sleep(stage.profile.send_seconds)
    return "none (time from the last send)", stage.work.last_send


async def _running_now(stage: Stage) -> bool:
    """A run holds a stream's lease right now."""
    with contextlib.suppress(Exception):
        return bool(await stage.rig.services.store.cursors.leased())
    return False


async def kill_worker(stage: Stage) -> tuple[str, float]:
    """kill -9 at random moments while runs are in flight; the worker restarts a second later."""
    p = stage.profile
    window = p.send_seconds
    moments = sorted(stage.rng.uniform(0.2 * window, 0.9 * window) for _ in range(p.kills))
    started = time.perf_counter()
    last = started
    cut = 0
    for moment in moments:
        await asyncio.sleep(max(0.0, started + moment - time.perf_counter()))
        for _ in range(200):  # up to ~10 s for a run to be in flight
            if await _running_now(stage):
                cut += 1
                break
            await asyncio.sleep(0.05)
        stage.worker.kill()
        last = time.perf_counter()
        await asyncio.sleep(1.0)
        await stage.worker.start()
    return f"{p.kills} x kill -9 of the worker ({cut} mid-run), from the last kill", last


async def storage_outage(stage: Stage) -> tuple[str, float]:
    p = stage.profile
    await asyncio.sleep(p.send_seconds * 0.3)
    stage.storage.stop()
    await asyncio.sleep(p.outage)
    stage.storage.start()
    return f"Azurite down {p.outage:.0f} s, from its restart", time.perf_counter()


async def graph_storm(stage: Stage) -> tuple[str, float]:
    from devkit.sandbox.graph.service import Fault as GraphFault

    p = stage.profile
    faults = stage.rig.world.graph.sandbox.faults
    await asyncio.sleep(p.send_seconds * 0.2)
    storm = GraphFault(status=503, count=10**9)
    faults.append(storm)
    await asyncio.sleep(p.storm)
    faults.clear()
    refused = 10**9 - storm.count
    return (
        f"Graph 503 without Retry-After for {p.storm:.0f} s ({refused} requests), from its end",
        time.perf_counter(),
    )


async def workbooks_storm(stage: Stage) -> tuple[str, float]:
    p = stage.profile
    faults = stage.rig.world.workbooks.state.faults
    await asyncio.sleep(p.send_seconds * 0.2)
    faults.fail_next = [503] * 10**7
    await asyncio.sleep(p.storm)
    refused = 10**7 - len(faults.fail_next)
    faults.fail_next = []
    return (
        f"Workbooks 503 for {p.storm:.0f} s ({refused} requests), from its end",
        time.perf_counter(),
    )


async def workbooks_throttle(stage: Stage) -> tuple[str, float]:
    p = stage.profile
    state = stage.rig.world.workbooks.state
    await asyncio.sleep(p.send_seconds * 0.2)
    throttled = state.stats["throttled"]
    state.faults.throttle_next = 10**7
    await asyncio.sleep(p.storm)
    state.faults.throttle_next = 0
    return (
        f"Workbooks 302 throttling for {p.storm:.0f} s "
        f"({state.stats['throttled'] - throttled} requests), from its end",
        time.perf_counter(),
    )


async def duplicates(stage: Stage) -> tuple[str, float]:
    config = stage.rig.world.graph.sandbox.notifier.config
    config.notify_duplicates, config.notify_reorder_seconds = 3, 2.0
    try:
        await asyncio.sleep(stage.profile.send_seconds + 0.5)
    finally:
        config.notify_duplicates, config.notify_reorder_seconds = 0, 0.0
    return "each notification x4, reordered up to 2 s, from the last send", stage.work.last_send


async def delta_expiry(stage: Stage) -> tuple[str, float]:
    window = stage.profile.send_seconds
    started = time.perf_counter()
    last = started
    for share in (0.25, 0.5, 0.75):
        await asyncio.sleep(max(0.0, started + window * share - time.perf_counter()))
        stage.rig.world.expire_delta()
        last = time.perf_counter()
    return "delta tokens of every mailbox expired 3 times, from the last expiry", last


async def lifecycle(stage: Stage) -> tuple[str, float]:
    sb = stage.rig.world.graph.sandbox
    await asyncio.sleep(stage.profile.send_seconds * 0.4)
    subs = sorted(sb.state.subscriptions.values(), key=lambda s: s.id)
    removed = 0
    for n, sub in enumerate(subs):
        sb.notifier.lifecycle(sub, "missed")
        if n % 3 == 0 and sb.notifier.lifecycle(sub, "subscriptionRemoved"):
            del sb.state.subscriptions[sub.id]
            removed += 1
    return (
        f"'missed' for {len(subs)} subscriptions, {removed} removed, from the events",
        time.perf_counter(),
    )


# In this order: lifecycle removes subscriptions, so it comes last of the email scenarios.
EMAIL_SCENARIOS: dict[str, Fault] = {
    "baseline": no_fault,
    "kill": kill_worker,
    "outage": storage_outage,
    "graph-storm": graph_storm,
    "workbooks-storm": workbooks_storm,
    "workbooks-throttle": workbooks_throttle,
    "duplicates": duplicates,
    "delta-expiry": delta_expiry,
    "lifecycle": lifecycle,
}


# -- conflicting edits ---------------------------------------------------------------------------


async def reconcile_ticks(stage: Stage, mailboxes: list[str], every: float) -> None:
    """The 30-minute reconciliation timer's fan-out for the contacts stream, every ``every``
    seconds (the web host's timers stay as shipped, so the email scenarios see no extra jobs)."""
    from sync.core.jobs import Job, JobKind

    while True:
        for upn in mailboxes:
            with contextlib.suppress(Exception):
                await stage.rig.services.queue.send(
                    Job(mailbox=upn, stream=Stream.CONTACTS, kind=JobKind.RECONCILE, reason="tick")
                )
        await asyncio.sleep(every)


def _contacts(stage: Stage, upn: str) -> dict[str, Any]:
    box = stage.rig.world.graph.sandbox.state.mailbox(upn)
    return {
        item.immutable_id: item
        for cont in box.containers.values()
        if cont.kind == "contact"
        for item in cont.items.values()
    }


async def conflicts(stage: Stage) -> tuple[Outcome, dict[int, Any]]:
    """People and their Outlook contacts edited on both sides at once, Outlook later, with
    stale lock versions on the service's first writes to Workbooks.  Fault-free result: the
    later edit on both sides, one contact per person and mailbox, no new person."""
    from devkit.sandbox.workbooks.control import edit_as

    profile = stage.profile
    wb = stage.rig.world.workbooks.state
    # The seeded People are the first user's ("My People"): only that mailbox has them.
    mailboxes = stage.rig.mailboxes[:1]
    people = {int(r["id"]): r for r in wb.tables["crm/people"].values() if not r.get("is_deleted")}
    ticks = asyncio.create_task(reconcile_ticks(stage, mailboxes, 10.0))
    try:
        # The reconciliation creates every person's contact in each mailbox first.
        deadline = time.monotonic() + profile.converge_timeout
        while any(len(_contacts(stage, u)) < len(people) for u in mailboxes):
            if time.monotonic() > deadline:
                counts = [len(_contacts(stage, u)) for u in mailboxes]
                raise RuntimeError(f"contacts never created: {counts} of {len(people)}")
            await asyncio.sleep(0.5)
        await asyncio.sleep(12.0)  # one more round: nothing left to write
        # Workbooks first, Outlook a moment later (the later edit wins); the service's first
        # writes to those people meet stale lock versions.
        edited = sorted(people)[: max(4, len(people) // 5)]
        for pid in edited:
            edit_as(wb, "crm/people", pid, {"person_job_title": f"Workbooks {pid}"})
        await asyncio.sleep(2.0)  # Workbooks' updated_at has one-second resolution
        wb.faults.force_conflicts += len(edited)
        sb = stage.rig.world.graph.sandbox
        for upn in mailboxes:
            box = sb.state.mailbox(upn)
            for item in list(_contacts(stage, upn).values()):
                who = _person_of(people, item.data)
                if who in edited:
                    found = sb.state.find(box, "contact", item.immutable_id)
                    sb.update_item(box, found[0], found[1], {"jobTitle": f"Outlook {who}"})
        fault_end = time.perf_counter()
        done_at = None
        while time.monotonic() < deadline:
            if _conflicts_settled(stage, mailboxes, edited, people):
                done_at = time.perf_counter()
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(profile.settle)
    finally:
        ticks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticks
    left = wb.faults.force_conflicts
    now_people = [r for r in wb.tables["crm/people"].values() if not r.get("is_deleted")]
    per_box = [len(_contacts(stage, u)) for u in mailboxes]
    duplicated = (len(now_people) - len(people)) + sum(n - len(people) for n in per_box)
    outcome = Outcome(
        "conflicts",
        f"{len(edited)} people edited on both sides in {len(mailboxes)} mailboxes, "
        f"{len(edited) - left} stale-lock conflicts, from the edits",
        None if done_at is None else done_at - fault_end,
        DEFAULT_TARGET,
        lost=0 if _conflicts_settled(stage, mailboxes, edited, people) else len(edited),
        duplicated=duplicated,
        poison=await _poison(stage),
        same_as_baseline=_conflicts_settled(stage, mailboxes, edited, people) and duplicated == 0,
    )
    if done_at is None:
        pid = edited[0]
        row = wb.find("crm/people", pid) or {}
        titles = [
            item.data.get("jobTitle")
            for upn in mailboxes
            for item in _contacts(stage, upn).values()
            if _person_of(people, item.data) == pid
        ]
        outcome.notes.append(
            f"person {pid}: Workbooks {row.get('person_job_title')!r}, Outlook {titles}"
        )
    if left:
        wb.faults.force_conflicts = 0
        outcome.notes.append(f"{left} forced conflicts never used")
    return outcome, {}


def _person_of(people: dict[int, dict[str, Any]], contact: dict[str, Any]) -> int | None:
    """The person a contact shows, by name (the sandbox keeps addresses in locations)."""
    name = contact.get("displayName")
    for pid, row in people.items():
        if row.get("name") == name:
            return pid
    return None


def _conflicts_settled(
    stage: Stage, mailboxes: list[str], edited: list[int], people: dict[int, dict[str, Any]]
) -> bool:
    """Every edited person says "Outlook <id>" in Workbooks and in every mailbox's contact."""
    wb = stage.rig.world.workbooks.state
    for pid in edited:
        row = wb.find("crm/people", pid)
        if row is None or row.get("person_job_title") != f"Outlook {pid}":
            return False
    for upn in mailboxes:
        for item in _contacts(stage, upn).values():
            who = _person_of(people, item.data)
            if who in edited and item.data.get("jobTitle") != f"Outlook {who}":
                return False
    return True


# -- the suite -----------------------------------------------------------------------------------

ORDER = [*EMAIL_SCENARIOS, "conflicts"]


async def run_suite(profile: Profile, only: list[str], seed: int) -> list[Outcome]:
    """Every scenario in ``ORDER`` (or ``only`` them, after the baseline).  The quick profile
    runs them all on one stage, one after another (each with emails of its own); the full one
    gives each scenario a fresh stage."""
    rng = random.Random(seed)
    storage = Storage()
    outcomes: list[Outcome] = []
    baseline: dict[int, Any] | None = None
    names = [n for n in ORDER if not only or n in only or n == "baseline"]
    try:
        async with contextlib.AsyncExitStack() as shared:
            stage = (
                await shared.enter_async_context(staged(storage, profile, rng))
                if profile.shared
                else None
            )
            for k, name in enumerate(names):
                print(f"-- {name} ...", flush=True)
                started = time.perf_counter()
                try:
                    async with contextlib.AsyncExitStack() as own:
                        here = stage
                        if here is None:
                            here = await own.enter_async_context(staged(storage, profile, rng))
                        if name == "conflicts":
                            outcome, _ = await conflicts(here)
                        else:
                            offset = (
                                k
                                * len(here.work.people)
                                * (1 + profile.emails // len(here.work.people))
                            )
                            outcome, state = await email_scenario(
                                here, name, EMAIL_SCENARIOS[name], baseline, offset
                            )
                            if name == "baseline":
                                baseline = state
                except Exception as exc:  # a scenario that breaks is a failure, not the end
                    outcome = Outcome(name, "(scenario failed)", None, DEFAULT_TARGET)
                    outcome.notes.append(f"{type(exc).__name__}: {exc}")
                print(f"   {_line(outcome)}  [{time.perf_counter() - started:.0f} s]", flush=True)
                outcomes.append(outcome)
    finally:
        storage.close()
    return outcomes


def _line(o: Outcome) -> str:
    conv = "did not converge" if o.converge_s is None else f"{o.converge_s:6.1f} s"
    same = {None: "-", True: "yes", False: "NO"}[o.same_as_baseline]
    notes = f"  ({'; '.join(o.notes)})" if o.notes else ""
    return (
        f"{o.scenario:16s} converged {conv} (target {o.target_s:.0f} s)  lost {o.lost}  "
        f"duplicated {o.duplicated}  poison {o.poison}  same as fault-free {same}  "
        f"{'PASS' if o.ok else 'FAIL'}{notes}"
    )


def report(profile: Profile, seed: int, outcomes: list[Outcome]) -> bool:
    print(
        f"\n== fault suite ({profile.name}: {profile.mailboxes} mailboxes, {profile.emails} "
        f"emails at {profile.rate:g}/s, seed {seed}) =="
    )
    for o in outcomes:
        print(f"{o.scenario:16s} {o.fault}")
        print(f"{'':16s} {_line(o)}")
    passed = all(o.ok for o in outcomes)
    print(
        f"\nRESULT: {'PASS' if passed else 'FAIL'} ({sum(o.ok for o in outcomes)}/{len(outcomes)})"
    )
    return passed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="the small version CI runs")
    p.add_argument("--only", default="", help=f"comma-separated scenarios of {','.join(ORDER)}")
    p.add_argument("--seed", type=int, default=None, help="random seed (kill moments)")
    args = p.parse_args(argv)
    profile = QUICK if args.quick else FULL
    only = [s for s in args.only.split(",") if s]
    unknown = [s for s in only if s not in ORDER]
    if unknown:
        p.error(f"unknown scenarios: {', '.join(unknown)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    outcomes = asyncio.run(run_suite(profile, only, seed))
    return 0 if report(profile, seed, outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
