"""A stateful model of one mailbox's identity, driven through both sandboxes and Azurite.

Random user operations on both sides (Outlook contacts, To Do tasks and events: create, edit,
delete, share, unshare, re-share; Workbooks People, tasks and meetings: create, edit, delete,
assign, unassign, watch, unwatch; sent emails to known and unknown addresses; records for
earlier recipients), interleaved with notification runs, pushes, reconciles, resyncs, the
retroactive stream and a crash at a random durable step.  After every step the service's
state is checked against what the model knows:

1. no Workbooks record is created twice for one Outlook item, and the service never creates a
   Person for an address a live Person already held (nor two for one address);
2. at most one shared Outlook item per record and stream (stamped or linked);
3. after a reconcile, linked pairs agree, and a second reconcile writes nothing (no flapping);
4. a record the user removed from Outlook (deleted while linked, except under the
   ``outlook_delete: restore`` policy an example may choose, or unshared while linked) never
   comes back, unless the user shares an item for it again;
5. every sent email has at most one Workbooks email and one link per record, and after a
   reconcile every shared email to a known address is linked to each of its records (under
   ``auto``, which an example may choose, every email: rule 7).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from sync.core.jobs import JobKind, Stream

UPN = "ann@example.com"
CATEGORY = "Workbooks"
ANN_USER = 29198
MINE, THEIRS = 2, 3  # Ann's and Bob's personal queues (every queue type)
POOL = [f"p{i}@cust.test" for i in range(5)]
UNKNOWN = [f"u{i}@far.test" for i in range(3)]
KINDS = ("contact", "task", "event")
STREAM_OF = {"contact": Stream.CONTACTS, "task": Stream.TODO, "event": Stream.EVENTS}
ENDPOINT_OF = {"contact": "crm/people", "task": "activity/tasks", "event": "activity/meetings"}
TWO_WAY = (Stream.CONTACTS, Stream.TODO, Stream.EVENTS)
OUTLOOK_STREAMS = (Stream.SENT, *TWO_WAY)
ALL_STREAMS = (*OUTLOOK_STREAMS, Stream.PEOPLE)
# Where a worker may die: after the Workbooks record exists but before the stamp, between the
# Outlook writes and the links, before the cursor, between an email and its record, ...
CRASH_POINTS = (
    "outlook_create",
    "outlook_stamp",
    "links_put",
    "cursor_advance",
    "cursor_release",
    "email_write",
    "pending_remove",
    "workbooks_write",
)
TOTALS: Counter[str] = Counter()
PROGRESS = os.environ.get("HYPOTHESIS_PROFILE", "ci") != "ci"


class Killed(BaseException):
    """A worker dying at a durable step (not an error the service could handle)."""


@dataclass
class Msg:
    message_id: str
    to: list[str]
    shared: bool
    sent_at: int
    # Who held each address when a SENT run first reached the message: the product matches
    # then, and later links only addresses that matched nobody (pending entries).
    holders: dict[str, set[int]] | None = None


@dataclass
class Model:
    clock: int = 0
    # Outlook items the user made: id -> kind (live ones only)
    items: dict[str, str] = field(default_factory=dict)
    # Workbooks records the user made: (endpoint, id) -> created at (live ones only)
    records: dict[tuple[str, int], int] = field(default_factory=dict)
    # (stream, workbooks id) -> the Outlook item the user removed it with
    removed: dict[tuple[str, int], str] = field(default_factory=dict)
    # Outlook item -> the record it was linked to when the user unshared it
    unshared: dict[str, tuple[str, int]] = field(default_factory=dict)
    messages: list[Msg] = field(default_factory=list)
    person_born: dict[int, int] = field(default_factory=dict)  # Person id -> clock first seen
    person_address: dict[int, str] = field(default_factory=dict)  # Person id -> its email

    def tick(self) -> int:
        self.clock += 1
        return self.clock


def _stamp(kind: str, item: Any) -> int | None:
    """Our Workbooks id on a sandbox item (contacts/events: extended property; tasks: link)."""
    if kind == "task":
        for res in item.linked:
            if str(res.get("externalId") or "").isdigit():
                return int(res["externalId"])
        return None
    for value in item.ext.values():
        if str(value).strip().isdigit():
            return int(str(value).strip())
    return None


class IdentityMachine(RuleBasedStateMachine):
    """The model of the module docstring.  Rules that act on Outlook items or Workbooks records
    have no precondition on them: what exists depends on what the service did, which depends
    on timing, and Hypothesis needs the same choices to enable the same rules when it replays
    an example (else it stops with ``FlakyStrategyDefinition``).  Such a rule does nothing when
    there is nothing to act on."""

    def __init__(self) -> None:
        super().__init__()
        from sync.engine import processors

        processors.load()  # every stream's processor, as the queue worker has them
        TOTALS["examples"] += 1
        self.loop = asyncio.new_event_loop()
        self.exits = AsyncExitStack()
        self.model = Model()
        self.seq = 0
        self.auto = False  # the mailbox's email policy: shared (default) or auto
        self.delete_policy = "unlink"  # outlook_delete: what deleting a linked item does
        # Worker deaths waiting for a run to reach their point (a few: a later crash rule adds
        # one rather than replacing one still waiting, the oldest making way past MAX_ARMED).
        self.armed: list[Armed] = []
        self.world: Any = self.run(self._start())

    # ------------------------------------------------------------------ plumbing
    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def _start(self) -> Any:
        from devkit.sandbox.workbooks import SandboxConfig
        from tests.support.world import world_running

        config = SandboxConfig(sim_controls=True, concurrency_cap=None)
        connection = os.environ["AzureWebJobsStorage"]
        world = await self.exits.enter_async_context(
            world_running(connection, workbooks_config=config)
        )
        # The brake (a safety stop for mass changes) is not what this test is about.
        await world.add_mailbox(
            UPN, internal_domains=["example.com"], mass_change_share=1.0, time_zone="UTC"
        )
        return world

    def teardown(self) -> None:
        try:
            self.run(self.exits.aclose())
        finally:
            self.loop.close()
        if PROGRESS:  # a long soak says how far it got, so a stopped one still counts
            print(
                f"model: example {TOTALS['examples']}, {TOTALS['steps']} steps so far, "
                f"{TOTALS['crashes']} crashes",
                flush=True,
            )

    def name(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq}"

    @property
    def sb(self) -> Any:
        return self.world.graph.sandbox

    @property
    def wb(self) -> Any:
        return self.world.workbooks.state

    def box(self) -> Any:
        return self.sb.state.mailbox(UPN)

    def container(self, kind: str) -> Any:
        return next(c for c in self.box().containers.values() if c.kind == kind)

    def outlook(self, kind: str) -> dict[str, Any]:
        """Live Outlook items of a kind: id -> sandbox item."""
        out: dict[str, Any] = {}
        for cont in self.box().containers.values():
            if cont.kind == kind:
                out.update(cont.items)
        return out

    def find(self, kind: str, item_id: str) -> tuple[Any, Any] | None:
        found = self.sb.state.find(self.box(), kind, item_id)
        return None if found is None else (found[0], found[1])

    def rows(self, endpoint: str) -> dict[int, dict[str, Any]]:
        return {int(i): r for i, r in self.wb.tables[endpoint].items() if not r.get("is_deleted")}

    def pick(self, options: list[Any], index: int) -> Any:
        return options[index % len(options)]

    async def link_of(self, stream: str, outlook_id: str) -> Any:
        return await self.world.services.store.links.by_outlook(UPN, stream, outlook_id)

    @initialize(auto=st.booleans())
    def email_policy(self, auto: bool) -> None:
        """Either email policy: under ``auto`` every sent email to a known address is linked, and
        one to an unknown address is remembered and linked when a record appears (rule 7)."""
        if auto:
            self.run(self.world.set_policy(UPN, email_policy="auto"))
        self.auto = auto

    @initialize(policy=st.sampled_from(["unlink", "restore", "delete"]))
    def outlook_delete_policy(self, policy: str) -> None:
        """Any ``outlook_delete`` policy (docs/two-way-sync.md, rule 3): under ``unlink`` and
        ``delete`` a linked item the user deletes never comes back (``delete`` also deletes
        the record, when it is in the user's scope); under ``restore`` its record's item comes
        back with the next full read, once: rule 4 does not watch it, rules 1 and 2 do."""
        if policy != "unlink":
            self.run(self.world.set_policy(UPN, outlook_delete=policy))
        self.delete_policy = policy

    # ------------------------------------------------------------------ Outlook: the user
    @rule(
        kind=st.sampled_from(KINDS),
        shared=st.booleans(),
        address=st.sampled_from([*POOL, None]),
    )
    def outlook_create(self, kind: str, shared: bool, address: str | None) -> None:
        self.model.tick()
        name = self.name("o")
        cats = [CATEGORY] if shared else []
        data: dict[str, Any]
        if kind == "contact":
            data = {"displayName": name, "givenName": name, "categories": cats}
            if address:
                data["emailAddresses"] = [{"address": address, "name": name}]
        elif kind == "task":
            data = {"title": name, "categories": cats}
        else:
            start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
            data = {
                "subject": name,
                "categories": cats,
                "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {
                    "dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC",
                },
            }
        item = self.sb.create_item(self.box(), self.container(kind), data)
        self.model.items[str(item.immutable_id)] = kind
        if shared and kind == "contact" and address:
            self._shared_again_by_address(address)

    def _shared_again_by_address(self, address: str) -> None:
        """Sharing a contact with a removed Person's address is sharing an item for it again."""
        for stream, rid in list(self.model.removed):
            if stream == Stream.CONTACTS and self._person_email(rid) == address.lower():
                self.model.removed.pop((stream, rid))

    def _person_email(self, pid: int) -> str | None:
        """A Person's main email, read from the sandbox's own tables."""
        row = self.wb.tables["crm/people"].get(pid)
        if row is None or row.get("is_deleted"):
            return None
        location = self.wb.tables["crm/party_locations"].get(row.get("main_location_id"))
        email = (location or {}).get("email")
        return str(email).strip().lower() if email else None

    @rule(kind=st.sampled_from(KINDS), index=st.integers(0, 50))
    def outlook_edit(self, kind: str, index: int) -> None:
        items = sorted(self.outlook(kind))
        if not items:
            return
        self.model.tick()
        item_id = self.pick(items, index)
        cont, item = self.find(kind, item_id)  # type: ignore[misc]
        value = self.name("e")
        field_name = {"contact": "jobTitle", "task": "title", "event": "subject"}[kind]
        self.sb.update_item(self.box(), cont, item, {field_name: value})

    @rule(kind=st.sampled_from(KINDS), index=st.integers(0, 50))
    def outlook_delete(self, kind: str, index: int) -> None:
        items = sorted(self.outlook(kind))
        if not items:
            return
        self.model.tick()
        item_id = self.pick(items, index)
        link = self.run(self.link_of(STREAM_OF[kind], item_id))
        cont, item = self.find(kind, item_id)  # type: ignore[misc]
        self.sb.delete_item(self.box(), cont, item)
        self.model.items.pop(item_id, None)
        # A linked item: the user removed its record from Outlook, for good unless the policy
        # is ``restore`` (unsharing, in ``outlook_share``, is a removal under every policy).
        if link is not None and self.delete_policy != "restore":
            self.model.removed[(STREAM_OF[kind], link.workbooks_id)] = item_id

    @rule(kind=st.sampled_from(KINDS), index=st.integers(0, 50), share=st.booleans())
    def outlook_share(self, kind: str, index: int, share: bool) -> None:
        items = sorted(self.outlook(kind))
        if not items:
            return
        self.model.tick()
        item_id = self.pick(items, index)
        cont, item = self.find(kind, item_id)  # type: ignore[misc]
        cats = [c for c in item.data.get("categories") or [] if c != CATEGORY]
        stream = STREAM_OF[kind]
        if share:
            self.sb.update_item(self.box(), cont, item, {"categories": [*cats, CATEGORY]})
            was = self.model.unshared.pop(item_id, None)
            if was is not None:  # re-shared: it may link again to the same record
                self.model.removed.pop(was, None)
            if kind == "contact":
                for addr in item.data.get("emailAddresses") or []:
                    self._shared_again_by_address(str(addr.get("address") or "").lower())
        else:
            link = self.run(self.link_of(stream, item_id))
            shared = CATEGORY in (item.data.get("categories") or [])
            self.sb.update_item(self.box(), cont, item, {"categories": cats})
            if link is not None and shared:
                key = (stream, link.workbooks_id)
                self.model.removed[key] = item_id
                self.model.unshared[item_id] = key

    # ------------------------------------------------------------------ Workbooks: the user
    @rule(kind=st.sampled_from(KINDS), mine=st.booleans(), address=st.sampled_from(POOL))
    def workbooks_create(self, kind: str, mine: bool, address: str) -> None:
        from devkit.sandbox.workbooks.control import seed

        self.model.tick()
        name = self.name("w")
        queue = MINE if mine else THEIRS
        values: dict[str, Any] = {"name": name, "assigned_to": queue}
        if kind == "contact":
            values["main_location[email]"] = address
        elif kind == "task":
            values["activity_status"] = "New"
        else:
            start = (datetime.now(UTC) + timedelta(days=4)).replace(microsecond=0)
            stamp = "%Y-%m-%dT%H:%M:%S.000Z,1,UTC"
            values["start"] = start.strftime(stamp)
            values["finish"] = (start + timedelta(hours=1)).strftime(stamp)
        (row,) = seed(self.wb, ENDPOINT_OF[kind], [values])
        self.model.records[(ENDPOINT_OF[kind], int(row["id"]))] = self.model.clock
        if kind == "contact":
            self.model.person_born.setdefault(int(row["id"]), self.model.clock)
            self.model.person_address[int(row["id"])] = address

    @rule(
        kind=st.sampled_from(KINDS),
        index=st.integers(0, 50),
        action=st.sampled_from(["edit", "assign", "unassign", "watch", "unwatch", "delete"]),
    )
    def workbooks_change(self, kind: str, index: int, action: str) -> None:
        from devkit.sandbox.workbooks.control import edit_as, set_watched

        endpoint = ENDPOINT_OF[kind]
        ids = sorted(self.rows(endpoint))
        if not ids:
            return
        self.model.tick()
        rid = self.pick(ids, index)
        if action == "edit":
            column = "person_job_title" if kind == "contact" else "name"
            edit_as(self.wb, endpoint, rid, {column: self.name("we")})
        elif action in ("assign", "unassign"):
            edit_as(self.wb, endpoint, rid, {"assigned_to": MINE if action == "assign" else THEIRS})
        elif action in ("watch", "unwatch"):
            set_watched(self.wb, ANN_USER, endpoint, rid, action == "watch")
        else:
            self.run(self._delete(endpoint, rid))
            self.model.records.pop((endpoint, rid), None)

    async def _delete(self, endpoint: str, rid: int) -> None:
        from sync.engine.clients import workbooks_client
        from sync.workbooks import WriteOp, write_batch

        mailbox = await self.world.services.store.mailboxes.get(UPN)
        client = await workbooks_client(self.world.services, mailbox)
        lock = int(self.wb.find(endpoint, rid)["lock_version"])
        (res,) = await write_batch(client, endpoint, [WriteOp.delete(rid, lock)])
        assert res.ok, res

    @rule(seconds=st.sampled_from([0.0, 1.1, 2.5]))
    def time_passes(self, seconds: float) -> None:
        """Workbooks' updated_at has one-second steps: changes in one second, or apart."""
        from devkit.sandbox.workbooks.control import set_clock

        if seconds:
            set_clock(self.wb, advance_seconds=seconds)

    # ------------------------------------------------------------------ sent emails
    @rule(
        to=st.lists(st.sampled_from([*POOL, *UNKNOWN]), min_size=1, max_size=3, unique=True),
        shared=st.booleans(),
    )
    def send_email(self, to: list[str], shared: bool) -> None:
        clock = self.model.tick()
        mid = self.world.send(UPN, to=to, categories=[CATEGORY] if shared else [])
        self.model.messages.append(Msg(mid, to, shared, clock))

    @precondition(lambda self: bool(self.model.messages))
    @rule(index=st.integers(0, 50), mine=st.booleans())
    def record_for_earlier_recipient(self, index: int, mine: bool) -> None:
        from devkit.sandbox.workbooks.control import seed

        message = self.pick(self.model.messages, index)
        address = message.to[index % len(message.to)]
        clock = self.model.tick()
        values = {
            "name": self.name("r"),
            "main_location[email]": address,
            "assigned_to": MINE if mine else THEIRS,
        }
        (row,) = seed(self.wb, "crm/people", [values])
        self.model.records[("crm/people", int(row["id"]))] = clock
        self.model.person_born.setdefault(int(row["id"]), clock)
        self.model.person_address[int(row["id"])] = address

    # ------------------------------------------------------------------ syncing
    async def _job(self, stream: Stream, kind: JobKind, *, may_die: bool = True) -> Any:
        from sync.core.jobs import Job
        from sync.engine.runner import run_job

        TOTALS["sync_runs"] += 1
        self.model.tick()
        before = set(self.rows("crm/people"))
        held = self._people_by_address()
        if stream == Stream.SENT:
            for msg in self.model.messages:
                if msg.holders is None:
                    msg.holders = {a: set(held.get(a, ())) for a in msg.to}
        job = Job(mailbox=UPN, stream=stream, kind=kind, reason="model")
        armed = list(self.armed) if may_die else []
        if not armed:
            run = await run_job(self.world.services, job)
        else:
            dying = _dying(self.world, armed)
            try:
                with dying:
                    run = await run_job(self.world.services, job)
            except Killed:
                self.armed = [a for a in self.armed if a is not dying.fired]
                await self._lease_expires()
                run = await run_job(self.world.services, job)  # the queue delivers it again
        self._observe_new_people(before, held)
        if run.identity_counts is not None:  # counted by the run, not read again: as stored
            stored = await self.world.services.store.identity.counts(UPN, stream)
            assert run.identity_counts == stored, (stream, run.identity_counts, stored)
        return run

    def _people_by_address(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for pid in self.rows("crm/people"):
            email = self._person_email(pid)
            if email:
                out.setdefault(email, set()).add(pid)
        return out

    def _observe_new_people(self, before: set[int], held: dict[str, set[int]]) -> None:
        """Rule 1: a Person the service made is never one for an address a live Person held."""
        for pid in sorted(set(self.rows("crm/people")) - before):
            self.model.person_born.setdefault(pid, self.model.clock)
            email = self._person_email(pid)
            if email:
                self.model.person_address[pid] = email
            if email and held.get(email):
                raise AssertionError(
                    f"the service created Person {pid} for {email}, "
                    f"which Person(s) {sorted(held[email])} already held"
                )

    @rule(stream=st.sampled_from(OUTLOOK_STREAMS))
    def notification_run(self, stream: Stream) -> None:
        run = self.run(self._job(stream, JobKind.DIRTY))
        assert run.status in ("ok", "stopped"), (run.status, run.message)

    @rule()
    def push(self) -> None:
        for stream in OUTLOOK_STREAMS:
            run = self.run(self._job(stream, JobKind.PUSH))
            assert run.status in ("ok", "stopped"), (stream, run.status, run.message)

    @rule()
    def retroactive_run(self) -> None:
        run = self.run(self._job(Stream.PEOPLE, JobKind.DIRTY))
        assert run.status == "ok", (run.status, run.message)

    @rule(stream=st.sampled_from(ALL_STREAMS))
    def resync(self, stream: Stream) -> None:
        self.run(self.world.services.store.cursors.request_resync(UPN, stream, "model"))
        run = self.run(self._job(stream, JobKind.RESYNC))
        assert run.status in ("ok", "stopped"), (run.status, run.message)

    @rule()
    def reconcile(self) -> None:
        """Reconcile every stream; then pairs agree, every shared email to a known address is
        linked, and a second reconcile writes nothing."""
        start = self.model.clock
        for stream in ALL_STREAMS:
            run = self.run(self._job(stream, JobKind.RECONCILE))
            assert run.status == "ok", (stream, run.status, run.message)
        self.check_pairs_agree()
        self.check_known_emails_linked(before=start)
        for stream in ALL_STREAMS:
            run = self.run(self._job(stream, JobKind.RECONCILE, may_die=False))
            assert run.status == "ok", (stream, run.status, run.message)
            assert _writes(run.counts) == {}, f"{stream} flaps: {run.counts}"

    @rule(
        point=st.sampled_from(CRASH_POINTS),
        stream=st.sampled_from(ALL_STREAMS),
        kind=st.sampled_from([JobKind.DIRTY, JobKind.PUSH, JobKind.RECONCILE]),
        nth=st.integers(1, 3),
    )
    def crash(self, point: str, stream: Stream, kind: JobKind, nth: int) -> None:
        """A worker dies the nth time a run reaches ``point``: this run, or, when it does not
        get there (nothing to write), whichever run gets there first from now on.  Its job is
        delivered again once the dead worker's lease has run out (``_job``)."""
        TOTALS["crashes"] += 1
        self.armed.append(Armed(point, nth))
        if len(self.armed) > MAX_ARMED:
            TOTALS["crashes_dropped"] += 1  # never reached while the later ones waited
            self.armed.pop(0)
        self.run(self._job(stream, kind))

    async def _lease_expires(self) -> None:
        """A dead worker's lease runs out and the sweeper clears it (``sync.engine.sweeper``),
        as it does once ``SYNC_LEASE_SECONDS`` have passed; the model's next rules are the runs
        that follow.  (Most deaths unwind through the runner, which releases the lease; a death
        in the release itself does not.)"""
        store = self.world.services.store.cursors
        for lease in await store.leased():
            if lease.mailbox == UPN:
                await store.clear_cut(lease)

    # ------------------------------------------------------------------ invariants
    @invariant()
    def no_record_twice_for_one_item_or_address(self) -> None:
        TOTALS["steps"] += 1  # invariants run after every step (and once at the start)
        TOTALS["checks"] += 4
        for kind in KINDS:
            refs = Counter(
                str(r.get("created_through_reference") or "")
                for r in self.rows(ENDPOINT_OF[kind]).values()
            )
            twice = {ref: n for ref, n in refs.items() if ref.startswith("OL:") and n > 1}
            assert not twice, f"{kind}: one Outlook item made several records: {twice}"
        made: Counter[str] = Counter()
        for pid, row in self.rows("crm/people").items():
            email = self._person_email(pid)
            if email and str(row.get("created_through_reference") or "").startswith("OL:"):
                made[email] += 1
        assert all(n == 1 for n in made.values()), f"People made twice for one address: {made}"

    @invariant()
    def one_outlook_item_per_record(self) -> None:
        for kind in KINDS:
            stamped: Counter[int] = Counter()
            for item in self.outlook(kind).values():
                wid = _stamp(kind, item)
                if wid is not None and CATEGORY in (item.data.get("categories") or []):
                    stamped[wid] += 1
            twice = {wid: n for wid, n in stamped.items() if n > 1}
            assert not twice, f"{kind}: several shared items carry one record: {twice}"
            links = self.run(self._links(STREAM_OF[kind]))
            per_record = Counter(link.workbooks_id for link in links)
            assert all(n == 1 for n in per_record.values()), per_record

    async def _links(self, stream: str) -> list[Any]:
        return [link async for link in self.world.services.store.links.list(UPN, stream)]

    @invariant()
    def removals_are_never_undone(self) -> None:
        TOTALS["removals_watched"] += len(self.model.removed)
        for (stream, wid), item_id in self.model.removed.items():
            kind = next(k for k, s in STREAM_OF.items() if s == stream)
            back = [
                i
                for i, item in self.outlook(kind).items()
                if _stamp(kind, item) == wid and CATEGORY in (item.data.get("categories") or [])
            ]
            assert not back, f"{kind} {wid}, removed with {item_id}, is back as {back}"
            # The removed item's own link lasts until a run sees the removal; another is a return.
            links = [
                link
                for link in self.run(self._links(stream))
                if link.workbooks_id == wid and link.outlook_id != item_id
            ]
            assert not links, f"{kind} {wid}, removed with {item_id}, is linked again: {links}"

    @invariant()
    def each_email_once_and_each_link_once(self) -> None:
        refs = Counter(
            str(e.get("created_through_reference") or "")
            for e in self.wb.tables["email/emails"].values()
            if not e.get("is_deleted")
        )
        assert all(n == 1 for n in refs.values()), f"an email made twice: {refs}"
        links = Counter(self.world.links())
        assert all(n == 1 for n in links.values()), f"a link made twice: {links}"

    # ------------------------------------------------------------------ after a reconcile
    def check_pairs_agree(self) -> None:
        columns = {"contact": "person_job_title", "task": "name", "event": "name"}
        fields = {"contact": "jobTitle", "task": "title", "event": "subject"}
        for kind in KINDS:
            rows = self.rows(ENDPOINT_OF[kind])
            live = self.outlook(kind)
            for link in self.run(self._links(STREAM_OF[kind])):
                assert link.outlook_id in live, f"{kind} link to a deleted item: {link}"
                assert link.workbooks_id in rows, f"{kind} link to a deleted record: {link}"
                TOTALS["pairs_compared"] += 1
                ours = live[link.outlook_id].data.get(fields[kind]) or ""
                theirs = rows[link.workbooks_id].get(columns[kind]) or ""
                assert ours == theirs, f"{kind} pair disagrees: {ours!r} vs {theirs!r} ({link})"

    def check_known_emails_linked(self, before: int) -> None:
        """Rule 5: a shared email (any email under ``auto``) sent before this reconcile is
        linked to every Person that held a recipient's address when the email was processed
        and still exists; and when nobody held it then, to a Person that appeared for it
        before this reconcile."""
        from sync.core.email_linking import email_reference

        emails = {
            str(e.get("created_through_reference")): int(i)
            for i, e in self.wb.tables["email/emails"].items()
            if not e.get("is_deleted")
        }
        linked = {(e, rid) for e, rtype, rid in self.world.links() if rtype.endswith("Person")}
        live = self.rows("crm/people")
        holders = self._people_by_address()
        for msg in self.model.messages:
            if not (msg.shared or self.auto) or msg.sent_at > before or msg.holders is None:
                continue
            data = self.world.message(UPN, msg.message_id)
            email_id = emails.get(
                email_reference(str(data.get("internetMessageId") or ""), msg.message_id)
            )
            for address in msg.to:
                then = {pid for pid in msg.holders.get(address, set()) if pid in live}
                later = {
                    pid
                    for pid in holders.get(address, set())
                    if self.model.person_born.get(pid, before + 1) <= before
                }
                if msg.holders.get(address):
                    wanted, any_of = then, set()
                else:
                    wanted, any_of = set(), later
                for pid in wanted:
                    TOTALS["links_expected"] += 1
                    assert email_id is not None and (email_id, pid) in linked, (
                        f"{msg} not linked to Person {pid} ({address}), who held it then"
                    )
                if any_of:
                    TOTALS["links_expected"] += 1
                    ever = {p for p, a in self.model.person_address.items() if a == address}
                    assert email_id is not None and any((email_id, p) in linked for p in ever), (
                        f"{msg} not linked to any of {sorted(any_of)} ({address}), who appeared later"
                    )


def _writes(counts: dict[str, int]) -> dict[str, int]:
    """What a run changed on either side (``{}``: nothing)."""
    ignored = ("outlook_changes", "workbooks_changes", "outlook_unseen", "workbooks_unseen")
    two_way = {
        k: v
        for k, v in counts.items()
        if k.startswith(("outlook_", "workbooks_")) and k not in ignored
    }
    emails = {
        k: v
        for k, v in counts.items()
        if k in ("emails_created", "links_created", "retro_linked", "pending_addresses")
    }
    return {**two_way, **emails}


MAX_ARMED = 3  # worker deaths waiting at once


@dataclass
class Armed:
    """A worker death to come: the nth time any run reaches ``point``."""

    point: str
    nth: int
    reached: int = 0


class _dying:
    """Make durable steps raise ``Killed`` when one is reached for an ``Armed`` death's time
    (the first to get there fires: ``fired``)."""

    def __init__(self, world: Any, armed: list[Armed]) -> None:
        from sync.engine.outlook_side import OutlookSide
        from sync.engine.workbooks_side import WorkbooksSide

        store = world.services.store
        where = {
            "outlook_create": (OutlookSide, "create"),
            "outlook_stamp": (OutlookSide, "stamp"),
            "links_put": (store.links, "put_many"),
            "cursor_advance": (store.cursors, "advance"),
            # A run's last position travels with its lease's release: a death there leaves
            # the lease to expire and the changes to be read again.
            "cursor_release": (store.cursors, "release"),
            # A sent email's records: its intent, then its Workbooks email and links.
            "email_write": (store.emails, "write"),
            "pending_remove": (store.pending, "remove_many"),
            "workbooks_write": (WorkbooksSide, "write"),
        }
        self.points: dict[str, tuple[Any, str, list[Armed]]] = {}
        for death in armed:
            target, attr = where[death.point]
            self.points.setdefault(death.point, (target, attr, []))[2].append(death)
        self.originals: dict[str, Any] = {}
        self.fired: Armed | None = None

    def __enter__(self) -> None:
        for point, (target, attr, deaths) in self.points.items():
            self.originals[point] = getattr(target, attr)
            setattr(target, attr, self._wrap(self.originals[point], attr, deaths))

    def _wrap(self, original: Any, attr: str, deaths: list[Armed]) -> Any:
        async def dying(*args: Any, **kwargs: Any) -> Any:
            for death in deaths:
                death.reached += 1
            due = next((d for d in deaths if d.reached == d.nth), None)
            if due is not None and self.fired is None:
                self.fired = due
                TOTALS["deaths"] += 1
                TOTALS[f"died at {due.point}"] += 1
                raise Killed(attr)
            return await original(*args, **kwargs)

        return dying

    def __exit__(self, *exc: object) -> None:
        for point, (target, attr, _) in self.points.items():
            if isinstance(target, type):
                setattr(target, attr, self.originals[point])
            else:
                delattr(target, attr)  # the instance's own patch; the class method is back
