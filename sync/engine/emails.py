"""Sent items -> Workbooks emails: the SENT processor, attach on request, explain, and the one
routine every path uses to make an email exist in Workbooks carrying its links (``ensure_linked``;
retroactive linking in ``sync.engine.people`` uses it too).

One run of the SENT stream (notification, 2-hour push, 30-minute reconcile or resync):

1. read Sent Items delta pages from the stored link (none, or a resync request: a new round);
2. per batch of pages (up to ``BATCH_MESSAGES`` messages), load the stored ``EmailRecord`` of
   every message, resolve all recipient addresses in **one** resolution pass, and plan each
   message with the pure core (``sync.core.email_linking.plan_message``);
3. ``ensure_linked``: look up, in one read, Workbooks emails already carrying the
   ``created_through_reference`` (a hash of the internetMessageId) of each email about to be
   created, then create the rest in one batch; so a crash between "created in Workbooks" and
   "recorded here" is healed by finding the email instead of creating it again;
4. then write the missing links in one batch (links of emails that existed before this run are
   read back first, so a crash after writing links never doubles them), the tenant's way
   (``sync.workbooks.emails.email_linker``: where links travel with the create, steps 3 and 4
   are one; with no way to link, no email is created at all and the message stays pending; an
   email this run created that ends with no link is deleted again, never left unlinked);
5. persist the final records and pending addresses, and only then advance the cursor to the
   batch's next link (or the round's delta link).

A kill between any two steps re-runs from the last durable point and converges on exactly one
email per message and one link per (email, record).  Throttling and outages surface as
``RetryLater`` (the runner re-queues the job); the cursor never moves past unprocessed messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from sync.core.email_linking import (
    DEFAULT_REFERENCE_PREFIXES,
    MessagePlan,
    RecordMatch,
    RecordRef,
    RecordState,
    before_auto_window,
    email_fields,
    email_reference,
    manual_explanation,
    needs_resolution,
    pending_entries,
    plan_message,
    record_for,
    split_recipients,
)
from sync.core.errors import Conflict, InvalidRequest, NotFound, RetryLater, SyncError
from sync.core.graph_models import Message
from sync.core.jobs import Job, JobKind, Stream
from sync.core.keys import normalise_address
from sync.core.state_models import Cursor, EmailRecord, Mailbox, MailboxPolicy, utcnow
from sync.engine.clients import graph_client, workbooks_client
from sync.engine.registry import RunContext, register
from sync.graph.messages import Body, carried_body, message_body, read_message
from sync.state.store import EmailIntents, EmailStore, Operation, PendingIndex
from sync.workbooks.emails import (
    EmailLink,
    EmailLinker,
    NewEmail,
    email_linker,
    emails_by_reference,
    record_exists,
    remove_emails,
    resolve_matches,
    schema_notes,
)
from sync.workbooks.writes import WriteResult

if TYPE_CHECKING:
    from sync.graph.client import GraphClient
    from sync.runtime import Services
    from sync.workbooks.client import WorkbooksClient

log = logging.getLogger("sync.engine.emails")

BATCH_MESSAGES = 100  # = the Workbooks batch cap: one create and one link request per batch
PAGE_SIZE = 100  # Prefer: odata.maxpagesize for the Sent Items delta
STORAGE_CONCURRENCY = 16
MAX_ROUNDS = 5  # delta rounds per job while notifications keep arriving
FRESH_ENOUGH = timedelta(minutes=1)  # an unchanged position is not written again sooner

# Called with the name of each durable step a SENT run completes ("fetch", "write_email",
# "write_links", "persist", "advance"); ``process_sent(ctx, on_step=...)`` takes one so a test
# can stop the run there, as a killed worker would.
Step = Callable[[str], Awaitable[None]]
BodyReader = Callable[[Message], Awaitable[Body]]


# ===================================================================== one email and its links


@dataclass(eq=False)  # identity: a step reports the very works it changed
class EmailWork:
    """One email that must exist in Workbooks and carry ``links``.  ``email_id`` is its
    Workbooks email when known; otherwise ``message`` is needed to find or create it."""

    message: Message | None
    links: Sequence[RecordRef]
    email_id: int | None = None
    linked: set[str] = field(default_factory=set)  # 'Type:id' links it is known to carry
    recovered: bool = False  # found by its created_through_reference instead of created
    created: bool = False
    written: int = 0  # links added by this call
    error: SyncError | None = None  # why it is not complete (throttling etc. raise instead)
    failure: str = ""  # the same, as the EmailRecord explains it
    # 'Type:id' -> why this tenant cannot link the email there (never retried as such)
    unlinked: dict[str, str] = field(default_factory=dict)
    disabled: bool = False  # email linking is off on this tenant: nothing was created
    removed: bool = False  # created, no link could be written, so deleted again (created
    # stays true: the run did create it)
    lock_version: int = 0  # of an email created by this call

    def fail(self, error: SyncError, text: str) -> None:
        self.error, self.failure = error, text[:500]

    @property
    def missing(self) -> list[RecordRef]:
        return [r for r in self.links if r.key not in self.linked and r.key not in self.unlinked]


SaveProgress = Callable[[Sequence[EmailWork]], Awaitable[None]]


def author_of(message: Message) -> str:
    """The message's ``from`` address (normalised), the same in every copy of it; "" if none."""
    sender = message.from_.email_address.address if message.from_ else None
    return normalise_address(sender or "")


@dataclass
class Intents:
    """Which emails about to be created need a Workbooks lookup by reference first.

    Before an email is created, its intent is inserted (``EmailIntents``); an insert that
    succeeds proves no earlier attempt created it, so the lookup is skipped.  The SENT stream
    inserts its intents itself, in the transaction that records its batch, and hands the
    outcome over in ``claimed`` / ``existed``; anything else is inserted here.  A message with
    no author, or sent before intents existed, is always looked up."""

    store: EmailIntents
    mailbox: str
    claimed: set[str] = field(default_factory=set)  # inserted just now by the caller
    existed: set[str] = field(default_factory=set)  # found there: an earlier attempt

    async def to_look_up(self, creates: Sequence[tuple[Message, str]]) -> set[str]:
        rows = []
        for message, ref in creates:
            author = author_of(message)
            if author and ref not in self.claimed and ref not in self.existed:
                rows.append(EmailIntents.row(author, ref, self.mailbox, message.id))
        if rows:
            found = await self.store.claim(rows)
            self.existed |= found
            self.claimed |= {r for _, r in creates} - found
        out: set[str] = set()
        for message, ref in creates:
            if ref in self.existed or not author_of(message):
                out.add(ref)
            elif not await self.store.covers(message.sent_date_time):
                out.add(ref)  # sent before intents were written: it may have been created
        return out


async def ensure_linked(
    client: WorkbooksClient,
    works: Sequence[EmailWork],
    *,
    policy: MailboxPolicy,
    intents: Intents,
    read_body: BodyReader | None = None,
    save_progress: SaveProgress | None = None,
    on_step: Step | None = None,
) -> None:
    """Make each email exist in Workbooks, once, and carry its links, once, in batches, the
    way this tenant links emails (``sync.workbooks.emails.email_linker``):

    0. with no usable mechanism, nothing is created: each work is ``disabled``, with the
       reason; links to record types the mechanism cannot reach go to ``unlinked``;
    1. emails with no id: their create intents are inserted (``Intents``); where one was there
       already (a crash between "created" and "recorded"; another copy of the same message),
       one read finds those created earlier by ``created_through_reference``;
    2. the rest are created in one batch, carrying the links the mechanism writes with the
       email itself (``read_body`` gives each body; None: the body the message was read with);
    3. emails that existed before this call and still miss a link: their links are read back
       (a crash after writing links never doubles them);
    4. the missing links are written in one batch; a refused one is tried once more.

    No orphans: an email this call created that ends with no link at all is deleted again
    (``removed``), with the reason in ``failure``.  Throttling, outages and conflicts (a
    concurrent writer: creates and links carry no lock_version) raise ``RetryLater`` once
    ``save_progress`` has been given the works that step changed: those emails are kept, to be
    linked by the next run.  Any other failure stays on its work (``error``)."""
    linker = await email_linker(client)
    if not linker.enabled:
        for w in works:
            if w.missing:
                why = f"email linking is disabled for this tenant: {linker.reason}"
                w.disabled = True
                w.fail(InvalidRequest(why, source="workbooks"), why)
    else:
        for w in works:
            for ref in w.missing:
                if why := linker.unusable(ref):
                    w.unlinked[ref.key] = why
        await _ensure_emails(client, linker, works, policy, intents, read_body, save_progress)
    await _step(on_step, "write_email")
    if linker.enabled:
        await _ensure_links(client, linker, works, save_progress)
    await _step(on_step, "write_links")


async def _step(on_step: Step | None, name: str) -> None:
    if on_step is not None:
        await on_step(name)


async def _ensure_emails(
    client: WorkbooksClient,
    linker: EmailLinker,
    works: Sequence[EmailWork],
    policy: MailboxPolicy,
    intents: Intents,
    read_body: BodyReader | None,
    save_progress: SaveProgress | None,
) -> None:
    creates = [
        (w, m) for w in works if w.email_id is None and (m := w.message) is not None and w.missing
    ]
    for w in works:
        if w.email_id is None and not w.missing and w.unlinked and not w.linked:
            why = "; ".join(sorted(set(w.unlinked.values())))
            w.fail(InvalidRequest(why, source="workbooks"), f"no email created: {why}")
    if not creates:
        return
    refs = [email_reference(m.internet_message_id or "", m.id) for _, m in creates]
    lookup = await intents.to_look_up([(m, r) for (_, m), r in zip(creates, refs, strict=True)])
    found = await emails_by_reference(client, [r for r in refs if r in lookup]) if lookup else {}
    todo: list[tuple[EmailWork, Message]] = []
    for (w, m), ref in zip(creates, refs, strict=True):
        w.email_id = found.get(ref)
        w.recovered = w.email_id is not None
        if w.email_id is None:
            todo.append((w, m))
    if not todo:
        return
    bodies = await asyncio.gather(*(_body(read_body, m) for _, m in todo))
    emails = [
        NewEmail(email_fields(m, policy, body or (m.body_preview or ""), ctype), w.missing)
        for (w, m), (body, ctype) in zip(todo, bodies, strict=True)
    ]
    created = await linker.create(client, emails)
    for (w, _), made in zip(todo, created, strict=True):
        res = made.result
        if res.ok and res.id is not None:
            w.email_id, w.created = res.id, True
            w.lock_version = res.lock_version or 0
            w.linked |= {ref.key for ref in made.linked}
            w.written += len(made.linked)
        elif not _retryable(res.error):
            detail = res.error or res.errors
            w.fail(
                res.error or InvalidRequest(f"create: {res.errors}"),
                f"email create failed: {detail}",
            )
    await _raise_retry([c.result for c in created], [w for w, _ in todo], save_progress)


async def _body(read_body: BodyReader | None, message: Message) -> Body:
    return carried_body(message) if read_body is None else await read_body(message)


ONLY_AT_CREATION = "this tenant links an email only when it is created (render_with)"


async def _ensure_links(
    client: WorkbooksClient,
    linker: EmailLinker,
    works: Sequence[EmailWork],
    save_progress: SaveProgress | None,
) -> None:
    todo = [w for w in works if w.email_id is not None and w.missing]
    earlier = [w.email_id for w in todo if w.email_id is not None and not w.created]
    present = await linker.present(client, earlier) if earlier else set()
    wanted: list[tuple[EmailWork, RecordRef]] = []
    for w in todo:
        for ref in w.missing:
            if (w.email_id, ref.key) in present:
                w.linked.add(ref.key)
            elif not linker.later:
                w.unlinked[ref.key] = ONLY_AT_CREATION
            else:
                wanted.append((w, ref))
    results: list[WriteResult] = []
    for attempt in range(2):  # a refused link is tried once more before it counts as failed
        if not wanted or not linker.enabled:
            break
        results = await linker.add(
            client, [EmailLink(w.email_id or 0, r.record_type, r.record_id) for w, r in wanted]
        )
        again: list[tuple[EmailWork, RecordRef]] = []
        for (w, ref), res in zip(wanted, results, strict=True):
            if res.ok:
                w.linked.add(ref.key)
                w.written += 1
            elif _retryable(res.error):
                w.failure = f"links not written yet ({res.error}); the next run writes them"
            elif attempt == 0:
                again.append((w, ref))
            else:
                what = f"link to {ref.key} failed"
                w.fail(
                    res.error or InvalidRequest(f"{what}: {res.errors}"),
                    f"{what}: {res.error or res.errors}",
                )
        wanted = again
        if _first_retry(r.error for r in results) is not None:
            break  # the whole job is retried; the refused ones with it
    if not linker.enabled:  # the mechanism went away under us (its endpoint is gone)
        for w in todo:
            for ref in w.missing:
                w.fail(
                    InvalidRequest(linker.reason, source="workbooks"),
                    f"link to {ref.key} failed: {linker.reason}",
                )
    await _no_orphans(client, works, save_progress)
    await _raise_retry(results, works, save_progress)


async def _no_orphans(
    client: WorkbooksClient, works: Sequence[EmailWork], save_progress: SaveProgress | None
) -> None:
    """Delete the emails this call created that carry no link and will not get one."""
    orphans = [
        w for w in works if w.created and w.email_id and not w.linked and w.error is not None
    ]
    if not orphans:
        return
    results = await remove_emails(client, [(w.email_id or 0, w.lock_version) for w in orphans])
    for w, res in zip(orphans, results, strict=True):
        if res.ok or isinstance(res.error, NotFound):
            log.warning("email %s had no link and was removed: %s", w.email_id, w.failure)
            w.email_id, w.removed = None, True
            w.failure = f"{w.failure}; the email was removed from Workbooks"[:500]
        elif not _retryable(res.error):
            w.failure = f"{w.failure}; the unlinked email could not be removed: {res.error}"[:500]
    await _raise_retry(results, orphans, save_progress)


async def _raise_retry(
    results: Iterable[WriteResult],
    changed: Sequence[EmailWork],
    save_progress: SaveProgress | None,
) -> None:
    retry = _first_retry(r.error for r in results)
    if retry is None:
        return
    if save_progress is not None:
        await save_progress(changed)
    raise retry


def _first_retry(errors: Iterable[SyncError | None]) -> RetryLater | None:
    """The error that makes the whole job retry later: throttling, outage, or a conflict (a
    concurrent writer; creates and links carry no lock_version, so a conflict is transient)."""
    for e in errors:
        if isinstance(e, RetryLater):
            return e
        if isinstance(e, Conflict):
            return RetryLater(f"Workbooks reported a conflict: {e}", source=e.source)
    return None


def _retryable(error: SyncError | None) -> bool:
    return isinstance(error, RetryLater | Conflict)


# ===================================================================== one batch


@dataclass
class _Sent:
    """One sent message of a batch, with the copies that share its internetMessageId."""

    message: Message
    aliases: list[Message]
    plan: MessagePlan
    work: EmailWork
    recorded: bool = False  # its final record is written already (inserted as new)


@dataclass
class _Run:
    ctx: RunContext
    graph: GraphClient
    client: WorkbooksClient
    on_step: Step | None = None
    sem: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(STORAGE_CONCURRENCY))
    # Read each message's record before planning (a round that re-reads messages processed
    # before); otherwise records are inserted as new and read only where one exists.
    read_first: bool = False
    matches: dict[str, list[RecordMatch]] = field(default_factory=dict)  # resolved this run

    @property
    def mailbox(self) -> Mailbox:
        return self.ctx.mailbox

    @property
    def services(self) -> Services:
        return self.ctx.services

    async def step(self, name: str) -> None:
        await _step(self.on_step, name)

    async def gather(self, coros: Iterable[Awaitable[Any]]) -> list[Any]:
        async def one(c: Awaitable[Any]) -> Any:
            async with self.sem:
                return await c

        return list(await asyncio.gather(*(one(c) for c in coros)))


Group = tuple[Message, list[Message]]  # a message and its copies (same internetMessageId)


def _group(messages: Sequence[Message]) -> list[Group]:
    """Each message once (delta may repeat an item; the last copy is the newest), copies with
    the same internetMessageId folded into the first (one email for every copy), drafts left
    out."""
    latest: dict[str, Message] = {}
    for m in messages:
        latest[m.id] = m
    groups: dict[str, list[Message]] = {}
    for m in latest.values():
        groups.setdefault(m.internet_message_id or f"\0{m.id}", []).append(m)
    return [(g[0], g[1:]) for g in groups.values() if not g[0].is_draft]


async def _read_records(run: _Run, groups: Sequence[Group]) -> dict[str, EmailRecord | None]:
    # By immutable id only: a copy under another id is matched by internetMessageId in
    # Workbooks (``ensure_linked``), which saves a table scan per message here.
    get = partial(run.services.store.emails.get, run.mailbox.id)
    records = await run.gather(get(m.id) for m, _ in groups)
    return {m.id: r for (m, _), r in zip(groups, records, strict=True)}


async def _plan(
    run: _Run, groups: Sequence[Group], records: Mapping[str, EmailRecord | None]
) -> list[_Sent]:
    policy, mailbox = run.mailbox.policy, run.mailbox.id
    wanted: set[str] = set()
    for m, _ in groups:
        if needs_resolution(m, records.get(m.id), policy):
            candidates, _ = split_recipients(m, mailbox, policy)
            wanted |= {c.address for c in candidates}
    new = wanted - set(run.matches)
    if new:
        run.matches.update(await resolve_matches(run.client, new))
        run.matches.update({a: [] for a in new if a not in run.matches})
    now = utcnow()
    out = []
    for m, aliases in groups:
        existing = records.get(m.id)
        plan = plan_message(
            m, run.matches, existing, policy, mailbox, now=now, prefixes=DEFAULT_REFERENCE_PREFIXES
        )
        linked = set(existing.linked) if existing else set()
        out.append(_Sent(m, aliases, plan, EmailWork(m, plan.links, plan.email_id, linked)))
    return out


def _record(run: _Run, it: _Sent, *, state: RecordState | None = None) -> EmailRecord:
    return record_for(
        it.plan,
        it.message,
        mailbox=run.mailbox.id,
        email_id=it.work.email_id,
        linked=it.work.linked,
        now=utcnow(),
        state=state,
        error=it.work.failure,
        unlinked=it.work.unlinked,
    )


def _creates(it: _Sent) -> bool:
    """Whether the item's email may be created by this run (it has none and wants links)."""
    return it.work.email_id is None and bool(it.plan.links) and not it.plan.skip


def _intent(run: _Run, it: _Sent) -> dict[str, Any] | None:
    """The create intent of an item's email, when it goes in the mailbox's own partition (the
    mailbox sent the message itself); others are inserted by ``Intents`` on their own."""
    author = author_of(it.message)
    if author != normalise_address(run.mailbox.id):
        return None
    ref = email_reference(it.message.internet_message_id or "", it.message.id)
    return EmailIntents.row(author, ref, run.mailbox.id, it.message.id)


def _final_rows(run: _Run, it: _Sent, state: RecordState | None) -> list[dict[str, Any]]:
    """The item's record (and its copies') as they end this run, and its pending addresses."""
    record = _record(run, it, state=state)
    rows = [EmailStore.row(record)]
    rows += [EmailStore.row(record.model_copy(update={"message_key": a.id})) for a in it.aliases]
    run.ctx.count(f"state_{record.state}")
    if it.plan.pending and state != "failed":
        entries = pending_entries(it.plan, it.message, run.mailbox.id, utcnow())
        rows += [PendingIndex.row(p) for p in entries]
        run.ctx.count("pending_addresses", len(entries))
    return rows


async def _record_new(run: _Run, items: list[_Sent], intents: Intents) -> list[_Sent]:
    """Insert each message's record as new, in one transaction per batch: the final record
    of one with nothing to create (with its pending addresses), else a "pending" placeholder
    with the create intent of its email.  A message whose record turns out to exist already
    (seen by an earlier run) is read and planned again with it; that is rare, since a delta
    returns what changed, so most runs never read a record at all."""
    ops: list[Operation] = []
    keys: dict[int, tuple[str, str | None]] = {}  # item -> (record key, intent key)
    for i, it in enumerate(items):
        if _creates(it):
            rows = [EmailStore.row(_record(run, it, state="pending"))]
            intent = _intent(run, it)
        else:
            rows = _final_rows(run, it, None)
            intent = None
        first, rest = rows[0], rows[1:]
        intent_key = str(intent["RowKey"]) if intent else None
        drop = tuple(str(r["RowKey"]) for r in rest) + ((intent_key,) if intent_key else ())
        ops.append(Operation("create", first, drop))
        ops += [Operation("upsert", r) for r in rest]
        if intent is not None:
            ops.append(Operation("create", intent))
        keys[i] = (str(first["RowKey"]), intent_key)
    existing = await run.services.store.emails.write(_unique(ops))
    again: list[Group] = []
    for i, it in enumerate(items):
        record_key, intent_key = keys[i]
        if record_key in existing:
            again.append((it.message, it.aliases))
            continue
        it.recorded = not _creates(it)
        if intent_key is not None:
            ref = email_reference(it.message.internet_message_id or "", it.message.id)
            (intents.existed if intent_key in existing else intents.claimed).add(ref)
    if not again:
        return items
    run.ctx.count("records_seen_before", len(again))
    replanned = {
        it.message.id: it for it in await _plan(run, again, await _read_records(run, again))
    }
    return [replanned.get(it.message.id, it) for it in items]


def _unique(ops: list[Operation]) -> list[Operation]:
    """One operation per row (a transaction may touch each row once): the last one wins."""
    out: dict[tuple[str, str], Operation] = {}
    for op in ops:
        out[(str(op.entity["PartitionKey"]), op.row_key)] = op
    return list(out.values())


async def _persist(run: _Run, items: Sequence[_Sent], *, final: bool = True) -> None:
    """Records and pending addresses, in one transaction per batch where the limits allow.
    Not final: progress only (records of emails already created, state pending)."""
    rows: list[dict[str, Any]] = []
    for it in items:
        if it.plan.skip or it.recorded:
            continue
        work = it.work
        if not final:
            # Progress before a retry: keep the ids of emails already created, in state
            # "pending" so the next run plans the message again (links, pending addresses).
            if work.email_id is not None:
                rows.append(EmailStore.row(_record(run, it, state="pending")))
            continue
        rows += _final_rows(run, it, _final_state(run, it))
    if rows:
        await run.services.store.emails.write(_unique([Operation("upsert", r) for r in rows]))


def _final_state(run: _Run, it: _Sent) -> RecordState | None:
    work = it.work
    targets = it.plan.targets
    settled = all(t.key in work.linked or t.key in work.unlinked for t in targets)
    complete = work.email_id is not None and settled and any(t.key in work.linked for t in targets)
    if not targets:
        return None
    if work.disabled:
        return "pending"  # email linking is off on this tenant: kept, with the reason
    if complete:
        return "linked"
    log.warning(
        "sent message %s of %s not fully linked: %s",
        it.message.id,
        run.mailbox.id,
        work.failure or "missing email or link",
    )
    return "failed"


async def _process_batch(run: _Run, messages: Sequence[Message]) -> None:
    groups = _group(messages)
    intents = Intents(run.services.store.intents, run.mailbox.id)
    if run.read_first:
        items = await _plan(run, groups, await _read_records(run, groups))
    else:
        items = await _record_new(run, await _plan(run, groups, {}), intents)
    run.ctx.count("messages", len(items))
    live = [it for it in items if not it.plan.skip]
    run.ctx.count("unchanged", len(items) - len(live))
    work = [it for it in live if it.plan.links]
    await run.step("fetch")

    async def save_progress(changed: Sequence[EmailWork]) -> None:
        done = set(changed)
        await _persist(run, [it for it in work if it.work in done], final=False)

    works = [it.work for it in work]
    try:
        await ensure_linked(
            run.client,
            works,
            policy=run.mailbox.policy,
            intents=intents,
            read_body=partial(message_body, run.graph, run.mailbox.graph_id),
            save_progress=save_progress,
            on_step=run.on_step,
        )
    finally:
        _tally(run.ctx, works)
    await _persist(run, live)
    await run.step("persist")


def _tally(ctx: RunContext, works: Sequence[EmailWork]) -> None:
    for name, n in (
        ("emails_recovered", sum(w.recovered for w in works)),
        ("emails_created", sum(w.created for w in works)),
        ("links_created", sum(w.written for w in works)),
        ("emails_removed", sum(w.removed for w in works)),
        ("linking_disabled", sum(w.disabled for w in works)),
        ("links_unavailable", sum(len(w.unlinked) for w in works)),
    ):
        if n:
            ctx.count(name, n)


# ===================================================================== the processor


def _fresh_round(job: Job, cursor: Cursor) -> bool:
    if cursor.resync_requested or not cursor.delta_link:
        return True
    return job.kind == JobKind.RESYNC and cursor.extra.get("resync_job") != job.job_id


async def _advance(run: _Run, link: str, *, final: bool) -> None:
    ctx = run.ctx
    now = utcnow()

    def change(c: Cursor) -> Cursor:
        if final and _unchanged_since(c, link, now):
            return c  # an empty round a moment after the last one: nothing worth a write
        extra = dict(c.extra)
        extra["resync_job"] = (
            ctx.job.job_id if ctx.job.kind == JobKind.RESYNC else extra.get("resync_job", "")
        )
        update: dict[str, Any] = {
            "delta_link": link,
            "resync_requested": False,
            "resync_reason": "",
            "extra": extra,
        }
        if final:
            update.update(last_success_at=now, last_error="", consecutive_failures=0)
        return c.model_copy(update=update)

    # The round's last position goes with the lease's release: one write per run, not two.
    await ctx.save_cursor(Stream.SENT, change, at_release=final)
    await run.step("advance")


def _unchanged_since(c: Cursor, link: str, now: datetime) -> bool:
    """The cursor already holds ``link`` as a healthy, just-written position (a follow-up read
    that found nothing new): writing it again would only move ``last_success_at`` by seconds."""
    return (
        c.delta_link == link
        and not c.resync_requested
        and not c.last_error
        and c.last_success_at is not None
        and now - c.last_success_at < FRESH_ENOUGH
    )


async def process_sent(ctx: RunContext, *, on_step: Step | None = None) -> None:
    """Every SENT job but ATTACH: read the delta and link what is new or changed.

    While we hold the stream, a notification that arrives marks it dirty again and queues a job
    that would find the stream busy (and wait for the runner's busy delay); so after each round
    we look at the marker and, if set, read the delta again ourselves (bounded)."""
    cursor = await _cursor(ctx)
    start = None if _fresh_round(ctx.job, cursor) else cursor.delta_link
    client = await workbooks_client(ctx.services, ctx.mailbox)
    run = _Run(ctx, graph_client(ctx.services), client, on_step)
    # A round from the start over messages processed before (a resync) reads their records
    # first; any other round inserts records as new (``_record_new``).
    run.read_first = start is None and bool(cursor.delta_link or cursor.resync_requested)
    try:
        for rounds in range(1, MAX_ROUNDS + 1):
            start = await _round(run, start)
            run.read_first = False  # a later round reads from the stored link
            if not await ctx.read_again(rounds, MAX_ROUNDS):
                return
    finally:
        await _status_notes(ctx, client)


async def _cursor(ctx: RunContext) -> Cursor:
    """The SENT cursor as the run's claim left it (not read again), or as stored."""
    store = ctx.services.store.cursors
    if ctx.lease is not None and ctx.lease.stream == Stream.SENT:
        return await store.for_run(ctx.lease)
    return await store.get(ctx.mailbox.id, Stream.SENT)


async def _status_notes(ctx: RunContext, client: WorkbooksClient) -> None:
    """What the tenant's schema leaves out (linking disabled, lookups left out) goes into the
    run's messages, so it shows in the status."""
    with contextlib.suppress(SyncError):  # the run's own error, if any, is the one to report
        for note in await schema_notes(client):
            if note not in ctx.messages:
                ctx.messages.append(note)


register(Stream.SENT)(process_sent)  # not as a decorator: that would hide ``on_step`` from mypy


async def _round(run: _Run, start: str | None) -> str | None:
    """One delta round from ``start`` (None: a new full round); returns the stored link."""
    ctx = run.ctx
    if start is None:
        ctx.count("full_rounds")
    reader = run.graph.sent_messages(ctx.mailbox.graph_id, start, page_size=PAGE_SIZE)
    batch: list[Message] = []
    now = utcnow()
    async for page in reader:
        for message in page.items:
            if before_auto_window(message, ctx.mailbox.policy, now):
                ctx.count("older_than_auto_window")
                continue
            batch.append(message)
        ctx.count("removed_ignored", len(page.removed))  # deleting sent mail never unlinks
        link = page.delta_link or page.next_link
        if page.delta_link is None and len(batch) < BATCH_MESSAGES:
            continue
        if batch:
            await _process_batch(run, batch)
        batch = []
        if link:
            await _advance(run, link, final=page.delta_link is not None)
            start = link
    return start


# ===================================================================== attach on request


async def attach_message(
    services: Services, mailbox: Mailbox, key: str, ref: RecordRef
) -> EmailRecord:
    """Link one sent message (immutable id or internetMessageId) to one record, creating its
    Workbooks email if it has none yet.  Idempotent.  Raises NotFound / InvalidRequest."""
    client = await workbooks_client(services, mailbox)
    if not await record_exists(client, ref):
        raise NotFound(f"Workbooks has no {ref.record_type} with id {ref.record_id}")
    record = await find_record(services, mailbox.id, key)
    message: Message | None = None
    if record is None or record.workbooks_email_id is None:
        message_key = record.message_key if record else key
        message = await read_message(graph_client(services), mailbox.graph_id, message_key)
        if message is None:
            raise NotFound(f"no sent message {key!r} in {mailbox.id}")
    email_id = record.workbooks_email_id if record else None
    work = EmailWork(message, [ref], email_id, set(record.linked) if record else set())
    intents = Intents(services.store.intents, mailbox.id)
    await ensure_linked(client, [work], policy=mailbox.policy, intents=intents)
    if ref.key in work.unlinked:
        raise InvalidRequest(f"cannot link to {ref.key}: {work.unlinked[ref.key]}")
    if work.error is not None or work.email_id is None:
        raise work.error or InvalidRequest("the email could not be created")
    now = utcnow()
    base = (
        record.explanation
        if record
        else {"decision": "linked", "policy": mailbox.policy.email_policy}
    )
    expl = manual_explanation(base, ref, work.linked, now)
    if record is None:
        assert message is not None
        record = EmailRecord(
            mailbox=mailbox.id,
            message_key=message.id,
            internet_message_id=message.internet_message_id or "",
            subject=(message.subject or "")[:500],
            sent_at=message.sent_date_time,
        )
    record = record.model_copy(
        update={
            "state": "linked",
            "workbooks_email_id": work.email_id,
            "linked": sorted(work.linked),
            "explanation": expl,
            "processed_at": now,
        }
    )
    await services.store.emails.put(record)
    return record


@register(Stream.SENT, JobKind.ATTACH)
async def process_attach(ctx: RunContext) -> None:
    """ATTACH job: args ``message`` + ``record_type`` + ``record_id``."""
    args = ctx.job.args
    try:
        ref = RecordRef(args["record_type"], int(args["record_id"]))
        record = await attach_message(ctx.services, ctx.mailbox, args["message"], ref)
    except (KeyError, ValueError) as exc:
        ctx.count("attach_failed")
        ctx.messages.append(f"bad attach job arguments: {exc}")
        return
    except (NotFound, InvalidRequest) as exc:
        ctx.count("attach_failed")
        ctx.messages.append(str(exc))
        return
    ctx.count("attached")
    ctx.messages.append(
        f"{record.message_key} linked to {ref.key} (email {record.workbooks_email_id})"
    )


def attach_job(mailbox: str, message: str, ref: RecordRef, reason: str = "attach") -> Job:
    return Job(
        mailbox=mailbox,
        stream=Stream.SENT,
        kind=JobKind.ATTACH,
        reason=reason,
        args={"message": message, "record_type": ref.record_type, "record_id": str(ref.record_id)},
    )


# ===================================================================== explain


async def find_record(services: Services, mailbox: str, key: str) -> EmailRecord | None:
    """An EmailRecord by immutable id or internetMessageId (with or without angle brackets)."""
    store = services.store.emails
    key = key.strip()
    if not key:
        return None
    record = await store.get(mailbox, key)
    if record is None:
        record = await store.by_internet_id(mailbox, key)
    if record is None and not key.startswith("<"):
        record = await store.by_internet_id(mailbox, f"<{key}>")
    return record


def describe(record: EmailRecord) -> dict[str, Any]:
    return {
        "mailbox": record.mailbox,
        "message_key": record.message_key,
        "internet_message_id": record.internet_message_id,
        "subject": record.subject,
        "sent_at": record.sent_at.isoformat() if isinstance(record.sent_at, datetime) else None,
        "state": record.state,
        "workbooks_email_id": record.workbooks_email_id,
        "linked": list(record.linked),
        "explanation": record.explanation,
        "processed_at": record.processed_at.isoformat(),
    }


async def explain(services: Services, mailbox: str, key: str) -> dict[str, Any]:
    """Why a message was or was not linked.  Raises NotFound if it was never processed."""
    record = await find_record(services, normalise_address(mailbox), key)
    if record is None:
        raise NotFound(f"no processed sent message {key!r} in {mailbox}")
    return describe(record)
