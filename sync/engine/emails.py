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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from sync.core.email_linking import (
    DEFAULT_REFERENCE_PREFIXES,
    MessagePlan,
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


async def ensure_linked(
    client: WorkbooksClient,
    works: Sequence[EmailWork],
    *,
    policy: MailboxPolicy,
    read_body: BodyReader | None = None,
    save_progress: SaveProgress | None = None,
    on_step: Step | None = None,
) -> None:
    """Make each email exist in Workbooks, once, and carry its links, once, in batches, the
    way this tenant links emails (``sync.workbooks.emails.email_linker``):

    0. with no usable mechanism, nothing is created: each work is ``disabled``, with the
       reason; links to record types the mechanism cannot reach go to ``unlinked``;
    1. emails with no id: one read finds those created earlier by ``created_through_reference``
       (a crash between "created" and "recorded"; another copy of the same message);
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
        await _ensure_emails(client, linker, works, policy, read_body, save_progress)
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
    found = await emails_by_reference(client, refs)
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


@dataclass
class _Run:
    ctx: RunContext
    graph: GraphClient
    client: WorkbooksClient
    on_step: Step | None = None
    sem: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(STORAGE_CONCURRENCY))

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


Loaded = tuple[Message, list[Message], EmailRecord | None]


async def _load(run: _Run, messages: Sequence[Message]) -> list[Loaded]:
    """Each message once (delta may repeat an item; the last copy is the newest), copies with
    the same internetMessageId folded into the first (one email for every copy), drafts left
    out, with its stored record."""
    latest: dict[str, Message] = {}
    for m in messages:
        latest[m.id] = m
    groups: dict[str, list[Message]] = {}
    for m in latest.values():
        groups.setdefault(m.internet_message_id or f"\0{m.id}", []).append(m)
    sent = [(g[0], g[1:]) for g in groups.values() if not g[0].is_draft]
    # By immutable id only: a copy under another id is matched by internetMessageId in
    # Workbooks (``ensure_linked``), which saves a table scan per message here.
    get = partial(run.services.store.emails.get, run.mailbox.id)
    records = await run.gather(get(m.id) for m, _ in sent)
    return [(m, aliases, r) for (m, aliases), r in zip(sent, records, strict=True)]


async def _plan(run: _Run, loaded: list[Loaded]) -> list[_Sent]:
    policy, mailbox = run.mailbox.policy, run.mailbox.id
    wanted: set[str] = set()
    for m, _, existing in loaded:
        if needs_resolution(m, existing, policy):
            candidates, _ = split_recipients(m, mailbox, policy)
            wanted |= {c.address for c in candidates}
    matches = await resolve_matches(run.client, wanted)
    now = utcnow()
    out = []
    for m, aliases, existing in loaded:
        plan = plan_message(
            m, matches, existing, policy, mailbox, now=now, prefixes=DEFAULT_REFERENCE_PREFIXES
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


async def _persist(run: _Run, items: Sequence[_Sent], *, final: bool = True) -> None:
    """Pending addresses, then records.  Not final: progress only (state stays pending)."""
    store = run.services.store
    now = utcnow()
    pending = []
    records = []
    for it in items:
        if it.plan.skip:
            continue
        work = it.work
        if not final:
            # Progress before a retry: keep the ids of emails already created, in state
            # "pending" so the next run plans the message again (links, pending addresses).
            if work.email_id is not None:
                records.append(_record(run, it, state="pending"))
            continue
        targets = it.plan.targets
        settled = all(t.key in work.linked or t.key in work.unlinked for t in targets)
        complete = (
            work.email_id is not None and settled and any(t.key in work.linked for t in targets)
        )
        state: RecordState | None
        if not targets:
            state = None
        elif work.disabled:
            state = "pending"  # email linking is off on this tenant: kept, with the reason
        elif complete:
            state = "linked"
        else:
            state = "failed"
            log.warning(
                "sent message %s of %s not fully linked: %s",
                it.message.id,
                run.mailbox.id,
                work.failure or "missing email or link",
            )
        if it.plan.pending and state != "failed":
            pending += pending_entries(it.plan, it.message, run.mailbox.id, now)
        record = _record(run, it, state=state)
        records.append(record)
        records += [record.model_copy(update={"message_key": a.id}) for a in it.aliases]
    if pending:  # one partition per address: write them side by side
        await run.gather(store.pending.add_many([p]) for p in pending)
        run.ctx.count("pending_addresses", len(pending))
    await run.gather(store.emails.put(r) for r in records)
    if final:
        for r in records:
            run.ctx.count(f"state_{r.state}")


async def _process_batch(run: _Run, messages: Sequence[Message]) -> None:
    items = await _plan(run, await _load(run, messages))
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

    await ctx.save_cursor(Stream.SENT, change)
    await run.step("advance")


async def process_sent(ctx: RunContext, *, on_step: Step | None = None) -> None:
    """Every SENT job but ATTACH: read the delta and link what is new or changed.

    While we hold the stream, a notification that arrives marks it dirty again and queues a job
    that would find the stream busy (and wait for the runner's busy delay); so after each round
    we look at the marker and, if set, read the delta again ourselves (bounded)."""
    store = ctx.services.store
    cursor = await store.cursors.get(ctx.mailbox.id, Stream.SENT)
    start = None if _fresh_round(ctx.job, cursor) else cursor.delta_link
    client = await workbooks_client(ctx.services, ctx.mailbox)
    run = _Run(ctx, graph_client(ctx.services), client, on_step)
    try:
        for rounds in range(1, MAX_ROUNDS + 1):
            start = await _round(run, start)
            if not await ctx.read_again(rounds, MAX_ROUNDS):
                return
    finally:
        await _status_notes(ctx, client)


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
    await ensure_linked(client, [work], policy=mailbox.policy)
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
