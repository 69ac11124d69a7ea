"""Sent items -> Workbooks emails: the SENT processor, retroactive linking, attach, explain.

One run of the SENT stream (notification, 2-hour push, 30-minute reconcile or resync):

1. read Sent Items delta pages from the stored link (none, or a resync request: a new round);
2. per batch of pages (up to ``BATCH_MESSAGES`` messages), load the stored ``EmailRecord`` of
   every message, resolve all recipient addresses in **one** resolution pass, and plan each
   message with the pure core (``sync.core.email_linking.plan_message``);
3. look up, in one read, Workbooks emails already carrying the ``created_through_reference``
   (a hash of the internetMessageId) of each email about to be created, then create the rest in
   one batch; so a crash between "created in Workbooks" and "recorded here" is healed by
   finding the email instead of creating it again;
4. write the missing links in one batch (links of emails that existed before this run are read
   back first, so a crash after writing links never doubles them);
5. persist the final records and pending addresses, and only then advance the cursor to the
   batch's next link (or the round's delta link).

A kill between any two steps re-runs from the last durable point and converges on exactly one
email per message and one link per (email, record).  Throttling and outages surface as
``RetryLater`` (the runner re-queues the job); the cursor never moves past unprocessed messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sync.core.email_linking import (
    CASE,
    DEFAULT_REFERENCE_PREFIXES,
    LEAD,
    OPPORTUNITY,
    ORGANISATION,
    PERSON,
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
from sync.core.mapping.scope import is_deleted
from sync.core.state_models import Cursor, EmailRecord, Mailbox, utcnow
from sync.engine.clients import graph_client, workbooks_client
from sync.engine.registry import RunContext, register

if TYPE_CHECKING:
    from sync.graph.client import GraphClient
    from sync.runtime import Services
    from sync.workbooks.client import WorkbooksClient

log = logging.getLogger("sync.engine.emails")

BATCH_MESSAGES = 100  # = the Workbooks batch cap: one create and one link request per batch
PAGE_SIZE = 100  # Prefer: odata.maxpagesize for the Sent Items delta
STORAGE_CONCURRENCY = 16
MAX_ROUNDS = 5  # delta rounds per job while notifications keep arriving
ENDPOINT_OF: Mapping[str, str] = {
    PERSON: "crm/people",
    LEAD: "crm/sales_leads",
    ORGANISATION: "crm/organisations",
    CASE: "crm/cases",
    OPPORTUNITY: "crm/opportunities",
}

# Test hook: called with the name of each durable step just completed ("fetch", "write_email",
# "write_links", "persist", "advance").  Tests raise from it to simulate a killed worker.
Checkpoint = Callable[[str], Awaitable[None]]
CHECKPOINTS: list[Checkpoint] = []


async def _checkpoint(step: str) -> None:
    for hook in list(CHECKPOINTS):
        await hook(step)


# ===================================================================== Workbooks adapter
# [INF] workbooks-api.md §4.10/§8 q1: how an email is tied to a record is unconfirmed.  These
# helpers and ``sync.workbooks.queries.link_emails`` are the only code that knows the shape
# (``ClientConfig.email_link_path`` with email_id / resource_type / resource_id).


async def _resolve(
    client: WorkbooksClient, addresses: Iterable[str]
) -> dict[str, list[RecordMatch]]:
    from sync.workbooks.queries import resolve_addresses

    wanted = sorted(set(addresses))
    if not wanted:
        return {}
    found = await resolve_addresses(client, wanted)
    return {
        normalise_address(a): [
            RecordMatch(normalise_address(m.address), m.record_type, m.record_id, m.field)
            for m in ms
        ]
        for a, ms in found.items()
    }


async def emails_by_reference(client: WorkbooksClient, refs: Sequence[str]) -> dict[str, int]:
    """Workbooks emails we created earlier, found by ``created_through_reference``."""
    from sync.workbooks.reads import iter_records
    from sync.workbooks.wire import Cond, chunked, in_list

    out: dict[str, int] = {}
    for chunk in chunked(sorted(set(refs)), client.config.in_list_size):
        where = Cond("created_through_reference", "eq", in_list(chunk))
        async for row in iter_records(client, "email/emails", ["created_through_reference"], where):
            ref = str(row.get("created_through_reference") or "")
            if ref and ref not in out:
                out[ref] = int(row["id"])
    return out


async def links_of(client: WorkbooksClient, email_ids: Iterable[int]) -> set[tuple[int, str]]:
    """Existing (email id, 'Type:id') links of the given emails."""
    from sync.workbooks.reads import iter_records
    from sync.workbooks.wire import Cond, chunked, in_list

    out: set[tuple[int, str]] = set()
    ids = sorted(set(email_ids))
    path = client.config.email_link_path
    for chunk in chunked(ids, client.config.in_list_size):
        where = Cond("email_id", "eq", in_list(str(i) for i in chunk))
        columns = ["email_id", "resource_type", "resource_id"]
        async for row in iter_records(client, path, columns, where):
            if is_deleted(row):
                continue
            key = f"{row.get('resource_type')}:{int(row['resource_id'])}"
            out.add((int(row["email_id"]), key))
    return out


async def record_exists(client: WorkbooksClient, ref: RecordRef) -> bool:
    from sync.workbooks.reads import iter_records
    from sync.workbooks.wire import Cond

    endpoint = ENDPOINT_OF.get(ref.record_type)
    if endpoint is None:
        raise InvalidRequest(f"records of type {ref.record_type!r} cannot hold emails")
    async for _ in iter_records(client, endpoint, [], Cond("id", "eq", str(ref.record_id))):
        return True
    return False


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


# ===================================================================== Graph helpers


async def fetch_message(
    graph: GraphClient, mailbox: str, message_id: str, *, body_only: bool = False
) -> tuple[Message | None, str, str]:
    """(message, body, body content type) of one message; (None, "", "text") if it is gone."""
    path = f"/users/{quote(mailbox, safe='@')}/messages/{quote(message_id, safe='')}"
    if body_only:
        path += "?$select=body"
    try:
        resp = await graph.request("GET", path, mailbox=mailbox)
    except NotFound:
        return None, "", "text"
    data = resp.json()
    body = data.get("body") or {}
    message = None if body_only else Message.model_validate(data)
    return message, str(body.get("content") or ""), str(body.get("contentType") or "text")


# ===================================================================== one batch


@dataclass
class _Item:
    message: Message
    existing: EmailRecord | None
    plan: MessagePlan | None = None
    email_id: int | None = None
    linked: set[str] = field(default_factory=set)
    recovered: bool = False
    error: str = ""
    aliases: list[Message] = field(default_factory=list)  # same internetMessageId, other id


@dataclass
class _Run:
    ctx: RunContext
    graph: GraphClient
    client: WorkbooksClient
    sem: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(STORAGE_CONCURRENCY))

    @property
    def mailbox(self) -> Mailbox:
        return self.ctx.mailbox

    @property
    def services(self) -> Services:
        return self.ctx.services

    async def gather(self, coros: Iterable[Awaitable[Any]]) -> list[Any]:
        async def one(c: Awaitable[Any]) -> Any:
            async with self.sem:
                return await c

        return list(await asyncio.gather(*(one(c) for c in coros)))


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


async def _load(run: _Run, messages: Sequence[Message]) -> list[_Item]:
    latest: dict[str, Message] = {}
    for m in messages:  # delta may repeat an item; the last copy is the newest
        latest[m.id] = m
    mailbox = run.mailbox.id

    async def existing(m: Message) -> EmailRecord | None:
        # By immutable id only: a copy under another id is matched by internetMessageId in
        # Workbooks (``_ensure_emails``), which saves a table scan per message here.
        return await run.services.store.emails.get(mailbox, m.id)

    # internetMessageId is the idempotency key: one email for every copy of a message.
    primary: dict[str, _Item] = {}
    items: list[_Item] = []
    for m in latest.values():
        first = primary.get(m.internet_message_id or "") if m.internet_message_id else None
        if first is not None:
            first.aliases.append(m)
            continue
        it = _Item(m, None)
        items.append(it)
        if m.internet_message_id:
            primary[m.internet_message_id] = it
    records = await run.gather(existing(it.message) for it in items)
    for it, record in zip(items, records, strict=True):
        it.existing = record
        if record is not None:
            it.email_id = record.workbooks_email_id
            it.linked = set(record.linked)
    return [it for it in items if not it.message.is_draft]


async def _plan(run: _Run, items: list[_Item]) -> None:
    policy, mailbox = run.mailbox.policy, run.mailbox.id
    wanted: set[str] = set()
    for it in items:
        if needs_resolution(it.message, it.existing, policy):
            candidates, _ = split_recipients(it.message, mailbox, policy)
            wanted |= {c.address for c in candidates}
    matches = await _resolve(run.client, wanted)
    now = utcnow()
    for it in items:
        it.plan = plan_message(
            it.message,
            matches,
            it.existing,
            policy,
            mailbox,
            now=now,
            prefixes=DEFAULT_REFERENCE_PREFIXES,
        )


def _record(run: _Run, it: _Item, *, state: RecordState | None = None) -> EmailRecord:
    assert it.plan is not None
    return record_for(
        it.plan,
        it.message,
        mailbox=run.mailbox.id,
        email_id=it.email_id,
        linked=it.linked,
        now=utcnow(),
        state=state,
        error=it.error,
    )


async def _ensure_emails(run: _Run, work: list[_Item]) -> None:
    """Create the Workbooks emails still missing, never twice.

    Every email carries ``created_through_reference`` = a hash of its internetMessageId, and
    before creating we look those references up (one read per batch).  That heals a crash
    between "created in Workbooks" and "recorded here", and makes a second copy of a message
    (same internetMessageId, another immutable id) reuse the first one's email."""
    creates = [it for it in work if it.email_id is None]
    if not creates:
        return
    found = await emails_by_reference(run.client, [_ref(it) for it in creates])
    for it in creates:
        if _ref(it) in found:
            it.email_id, it.recovered = found[_ref(it)], True
            run.ctx.count("emails_recovered")
    todo = [it for it in creates if it.email_id is None]
    if todo:
        await _create(run, todo)


def _ref(it: _Item) -> str:
    return email_reference(it.message.internet_message_id or "", it.message.id)


async def _body(run: _Run, message: Message) -> tuple[str, str]:
    """The message body and its content type: from the delta item if the Graph reader selected
    it, else one GET (the Sent Items delta ``$select`` carries no body today: one request per
    created email)."""
    if message.body is not None and message.body.content:
        return message.body.content, message.body.content_type or "text"
    _, content, ctype = await fetch_message(
        run.graph, run.mailbox.graph_id, message.id, body_only=True
    )
    return content, ctype


async def _create(run: _Run, todo: list[_Item]) -> None:
    from sync.workbooks.queries import create_emails

    bodies = await asyncio.gather(*(_body(run, it.message) for it in todo))
    policy = run.mailbox.policy
    fields = [
        email_fields(it.message, policy, body or (it.message.body_preview or ""), ctype)
        for it, (body, ctype) in zip(todo, bodies, strict=True)
    ]
    results = await create_emails(run.client, fields)
    for it, res in zip(todo, results, strict=True):
        if res.ok and res.id is not None:
            it.email_id = res.id
            run.ctx.count("emails_created")
        elif not _retryable(res.error):
            it.error = f"email create failed: {res.error or res.errors}"[:500]
    retry = _first_retry(r.error for r in results)
    if retry is not None:
        await _persist(run, todo, final=False)
        raise retry


async def _write_links(run: _Run, work: list[_Item]) -> None:
    from sync.workbooks.queries import EmailLink, link_emails

    assert all(it.plan is not None for it in work)
    check = [
        it.email_id
        for it in work
        if it.email_id is not None
        and (it.recovered or (it.existing and it.existing.workbooks_email_id))
    ]
    present = await links_of(run.client, [i for i in check if i is not None]) if check else set()
    wanted: list[tuple[_Item, RecordRef]] = []
    for it in work:
        if it.email_id is None or it.plan is None:
            continue
        for ref in it.plan.targets:
            if ref.key in it.linked:
                continue
            if (it.email_id, ref.key) in present:
                it.linked.add(ref.key)
                continue
            wanted.append((it, ref))
    if not wanted:
        return
    links = [EmailLink(it.email_id or 0, ref.record_type, ref.record_id) for it, ref in wanted]
    results = await link_emails(run.client, links)
    for (it, ref), res in zip(wanted, results, strict=True):
        if res.ok:
            it.linked.add(ref.key)
            run.ctx.count("links_created")
        elif not _retryable(res.error):
            it.error = f"link to {ref.key} failed: {res.error or res.errors}"[:500]
    retry = _first_retry(r.error for r in results)
    if retry is not None:
        await _persist(run, work, final=False)
        raise retry


async def _persist(run: _Run, items: Sequence[_Item], *, final: bool = True) -> None:
    """Pending addresses, then records.  Not final: progress only (state stays pending)."""
    store = run.services.store
    now = utcnow()
    pending = []
    records = []
    for it in items:
        if it.plan is None or it.plan.skip:
            continue
        if not final:
            # Progress before a retry: keep the ids of emails already created, in state
            # "pending" so the next run plans the message again (links, pending addresses).
            if it.email_id is not None:
                records.append(_record(run, it, state="pending"))
            continue
        complete = it.email_id is not None and all(t.key in it.linked for t in it.plan.targets)
        state: RecordState | None
        if not it.plan.targets:
            state = None
        elif complete:
            state = "linked"
        else:
            state = "failed"
            log.warning(
                "sent message %s of %s not fully linked: %s",
                it.message.id,
                run.mailbox.id,
                it.error or "missing email or link",
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
    items = await _load(run, messages)
    await _plan(run, items)
    run.ctx.count("messages", len(items))
    live = [it for it in items if it.plan is not None and not it.plan.skip]
    run.ctx.count("unchanged", len(items) - len(live))
    work = [it for it in live if it.plan is not None and it.plan.targets]
    await _checkpoint("fetch")
    await _ensure_emails(run, work)
    await _checkpoint("write_email")
    await _write_links(run, work)
    await _checkpoint("write_links")
    await _persist(run, live)
    await _checkpoint("persist")


# ===================================================================== the processor


def _fresh_round(job: Job, cursor: Cursor) -> bool:
    if cursor.resync_requested or not cursor.delta_link:
        return True
    return job.kind == JobKind.RESYNC and cursor.extra.get("resync_job") != job.job_id


async def _advance(ctx: RunContext, link: str, *, final: bool) -> None:
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
    await _checkpoint("advance")


@register(Stream.SENT)
async def process_sent(ctx: RunContext) -> None:
    """Every SENT job but ATTACH: read the delta and link what is new or changed.

    While we hold the stream, a notification that arrives marks it dirty again and queues a job
    that would find the stream busy (and wait for the runner's busy delay); so after each round
    we look at the marker and, if set, read the delta again ourselves (bounded)."""
    store = ctx.services.store
    cursor = await store.cursors.get(ctx.mailbox.id, Stream.SENT)
    start = None if _fresh_round(ctx.job, cursor) else cursor.delta_link
    run = _Run(ctx, graph_client(ctx.services), await workbooks_client(ctx.services, ctx.mailbox))
    for rounds in range(1, MAX_ROUNDS + 1):
        start = await _round(run, start)
        if not await ctx.read_again(rounds, MAX_ROUNDS):
            return


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
            await _advance(ctx, link, final=page.delta_link is not None)
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
    graph = graph_client(services)
    message: Message | None = None
    body, ctype = "", "text"
    if record is None or record.workbooks_email_id is None:
        message_key = record.message_key if record else key
        message, body, ctype = await fetch_message(graph, mailbox.graph_id, message_key)
        if message is None:
            raise NotFound(f"no sent message {key!r} in {mailbox.id}")
    request = LinkRequest(record, message, [ref], body, ctype)
    await ensure_links(client, mailbox, [request])
    if request.error is not None or request.email_id is None:
        raise request.error or InvalidRequest("the email could not be created")
    email_id, linked = request.email_id, request.linked
    now = utcnow()
    base = (
        record.explanation
        if record
        else {"decision": "linked", "policy": mailbox.policy.email_policy}
    )
    expl = manual_explanation(base, ref, linked, now)
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
            "workbooks_email_id": email_id,
            "linked": sorted(linked),
            "explanation": expl,
            "processed_at": now,
        }
    )
    await services.store.emails.put(record)
    return record


@dataclass
class LinkRequest:
    """One email that must carry ``refs``: known by its record, or (no Workbooks email yet)
    by the Outlook message and its body."""

    record: EmailRecord | None
    message: Message | None
    refs: Sequence[RecordRef]
    body: str = ""
    body_type: str = "text"
    email_id: int | None = None
    linked: set[str] = field(default_factory=set)
    error: SyncError | None = None


async def ensure_links(
    client: WorkbooksClient, mailbox: Mailbox, requests: Sequence[LinkRequest]
) -> None:
    """Batch form of "this email exists and carries these links", for attach and retroactive
    linking: one reference lookup, one create, one link read-back and one link write per 100.
    Fills ``email_id`` / ``linked`` / ``error`` of each request; raises ``RetryLater``."""
    from sync.workbooks.queries import EmailLink, create_emails, link_emails

    for req in requests:
        req.email_id = req.record.workbooks_email_id if req.record else None
        req.linked = set(req.record.linked) if req.record else set()
    missing = [(r, m) for r in requests if r.email_id is None and (m := r.message) is not None]
    refs = [email_reference(m.internet_message_id or "", m.id) for _, m in missing]
    found = await emails_by_reference(client, refs) if refs else {}
    todo: list[tuple[LinkRequest, Message]] = []
    for (r, m), reference in zip(missing, refs, strict=True):
        r.email_id = found.get(reference)
        if r.email_id is None:
            todo.append((r, m))
    if todo:
        fields = [
            email_fields(m, mailbox.policy, r.body or (m.body_preview or ""), r.body_type)
            for r, m in todo
        ]
        results = await create_emails(client, fields)
        for (r, _), res in zip(todo, results, strict=True):
            r.email_id = res.id if res.ok else None
            r.error = None if res.ok else (res.error or InvalidRequest(f"create: {res.errors}"))
        retry = _first_retry(r.error for r, _ in todo)
        if retry is not None:
            raise retry
    ready = [r for r in requests if r.email_id is not None]
    present = await links_of(client, [r.email_id for r in ready if r.email_id is not None])
    wanted: list[tuple[LinkRequest, RecordRef]] = []
    for r in ready:
        r.linked |= {k for i, k in present if i == r.email_id}
        wanted += [(r, ref) for ref in r.refs if ref.key not in r.linked]
    if not wanted:
        return
    results = await link_emails(
        client, [EmailLink(r.email_id or 0, ref.record_type, ref.record_id) for r, ref in wanted]
    )
    for (r, ref), res in zip(wanted, results, strict=True):
        if res.ok:
            r.linked.add(ref.key)
        else:
            r.error = res.error or InvalidRequest(f"link to {ref.key} failed: {res.errors}")
    retry = _first_retry(res.error for res in results)
    if retry is not None:
        raise retry


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


# The PEOPLE stream (retroactive linking) lives beside this module and registers on import;
# ``sync.engine.processors`` lists only this module, so importing it here keeps them together.
from sync.engine import people as _people  # noqa: E402

__all__ = ["_people", "attach_message", "explain", "find_record", "process_sent"]
