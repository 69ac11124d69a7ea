"""Sent-email linking, decided without I/O: who a sent message is shared with, which recipients
may be matched, which Workbooks records it belongs to, and what to write (a ``MessagePlan``).

Rules (issue #5, design.md §1):

* **Shared or not.** Policy ``shared`` (default): only messages carrying the configured Outlook
  category (``Workbooks``), or a category that is itself an object reference (``CASE-123``).
  Policy ``auto``: additionally every message with at least one recipient that matches a Person
  or Sales Lead, or an object reference in its subject.
* **Recipients.** Every To/Cc/Bcc address, normalised (case, whitespace, display name).
  Addresses in the tenant's own domains (``policy.internal_domains`` plus the mailbox's own
  domain) and in ``policy.blocklist`` (whole addresses or domains) are never matched and never
  stored in our state: explanations name only the rule (and, for internal ones, the domain).
* **Matches.** People and Sales Leads only (Contact Details rows arrive already mapped to their
  owning Person or Lead); organisations found through an address are ignored.
* **Idempotency.** Links already recorded on the ``EmailRecord`` are never planned again; an
  email id already recorded is reused, never created twice.
* **Pending addresses** (retroactive linking): recipients that matched nobody, of messages the
  user categorised and, under ``auto``, of every message in the look-back window (not stored in
  Workbooks).  ``plan_retro`` later links those messages, once, within the look-back window.

Everything here is pure: the caller passes ``now`` and the address matches it resolved.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.charset import QP, Charset
from email.header import Header
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Any, Literal

from sync.core.graph_models import Message, Recipient
from sync.core.keys import normalise_address
from sync.core.state_models import EmailRecord, MailboxPolicy, PendingAddress

PERSON = "Private::Crm::Person"
LEAD = "Private::Crm::SalesLead"
ORGANISATION = "Private::Crm::Organisation"
CASE = "Private::Crm::Case"
OPPORTUNITY = "Private::Crm::Opportunity"
ADDRESS_MATCH_TYPES = frozenset({PERSON, LEAD})

# Workbooks object-reference prefixes -> record class.  [INF] The prefixes are
# tenant-configurable in Workbooks (PERS- and CASE- are documented, workbooks-api.md §4.1, §4.5;
# the others follow the same pattern).  This is the one place that lists them; pass another
# mapping to ``find_references`` / ``parse_reference`` for a tenant that renamed them.
DEFAULT_REFERENCE_PREFIXES: Mapping[str, str] = {
    "PERS": PERSON,
    "ORG": ORGANISATION,
    "CASE": CASE,
    "OPP": OPPORTUNITY,
    "LEAD": LEAD,
}
# The only documented store-only status (workbooks-api.md §4.10).  Never "SEND": Workbooks
# would send the message to every recipient a second time.  [INF] a "sent/received" status
# for imported mail is not documented.
STORED_EMAIL_STATUS = "DRAFT"
REFERENCE_PREFIX = "olk:"  # created_through_reference of emails we create
MAX_SYNOPSIS = 255
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP  # readable bodies in the stored MIME copy (not base64)

Role = Literal["to", "cc", "bcc"]
Decision = Literal["linked", "not_shared", "no_match", "excluded", "failed"]
RecordState = Literal["linked", "not_shared", "no_match", "excluded", "pending", "failed"]


# ----------------------------------------------------------------------------- small values


@dataclass(frozen=True)
class RecordRef:
    """A Workbooks record: class name + id, written ``Type:id`` in state."""

    record_type: str
    record_id: int

    @property
    def key(self) -> str:
        return f"{self.record_type}:{self.record_id}"

    @classmethod
    def from_key(cls, key: str) -> RecordRef:
        record_type, _, record_id = key.rpartition(":")
        return cls(record_type, int(record_id))


@dataclass(frozen=True)
class RecordMatch:
    """``address`` is the ``field`` of record (``record_type``, ``record_id``)."""

    address: str
    record_type: str
    record_id: int
    field: str

    @property
    def ref(self) -> RecordRef:
        return RecordRef(self.record_type, self.record_id)


@dataclass(frozen=True)
class Addressee:
    address: str  # normalised
    role: Role


@dataclass(frozen=True)
class Excluded:
    role: Role
    rule: Literal["internal", "blocklisted", "invalid"]
    domain: str = ""  # only for internal addresses; blocklisted ones leave no trace


@dataclass(frozen=True)
class ObjectReference:
    text: str  # e.g. "CASE-123" as written
    ref: RecordRef
    source: Literal["subject", "category", "request"]


# ----------------------------------------------------------------------------- recipients


def domain_of(address: str) -> str:
    return address.rpartition("@")[2]


def _in_domains(domain: str, domains: Iterable[str]) -> bool:
    return any(domain == d or domain.endswith("." + d) for d in domains)


def internal_domains(mailbox_id: str, policy: MailboxPolicy) -> frozenset[str]:
    """The policy's internal domains plus the mailbox's own domain (internal by default)."""
    own = domain_of(normalise_address(mailbox_id))
    return frozenset({*policy.internal_domains, *([own] if own else [])})


def is_blocklisted(address: str, policy: MailboxPolicy) -> bool:
    """A blocklist entry is a whole address or a domain (``gmail.com`` covers subdomains)."""
    return address in policy.blocklist or _in_domains(domain_of(address), policy.blocklist)


def addressees(message: Message) -> list[Addressee]:
    """To, Cc, Bcc in that order, normalised; an address listed twice keeps its first role."""
    seen: dict[str, Addressee] = {}
    groups: tuple[tuple[Role, list[Recipient]], ...] = (
        ("to", message.to_recipients),
        ("cc", message.cc_recipients),
        ("bcc", message.bcc_recipients),
    )
    for role, recipients in groups:
        for rcpt in recipients:
            address = normalise_address(rcpt.email_address.address or "")
            if address and address not in seen:
                seen[address] = Addressee(address, role)
    return list(seen.values())


_VALID = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def split_recipients(
    message: Message, mailbox_id: str, policy: MailboxPolicy
) -> tuple[list[Addressee], list[Excluded]]:
    """(addresses that may be matched, exclusions by rule)."""
    internal = internal_domains(mailbox_id, policy)
    candidates: list[Addressee] = []
    excluded: list[Excluded] = []
    for who in addressees(message):
        if not _VALID.match(who.address):
            excluded.append(Excluded(who.role, "invalid"))
        elif is_blocklisted(who.address, policy):
            excluded.append(Excluded(who.role, "blocklisted"))
        elif _in_domains(domain_of(who.address), internal):
            excluded.append(Excluded(who.role, "internal", domain_of(who.address)))
        else:
            candidates.append(who)
    return candidates, excluded


# ----------------------------------------------------------------------------- references


def _reference_pattern(prefixes: Mapping[str, str]) -> re.Pattern[str]:
    return _compiled(tuple(sorted(prefixes)))


@lru_cache(maxsize=16)
def _compiled(names: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(names, key=len, reverse=True))
    return re.compile(
        rf"(?<![A-Za-z0-9])({alternatives})-(\d{{1,12}})(?![A-Za-z0-9])", re.IGNORECASE
    )


def parse_reference(
    text: str, prefixes: Mapping[str, str] = DEFAULT_REFERENCE_PREFIXES
) -> RecordRef | None:
    """``"CASE-123"`` -> RecordRef(Case, 123); None if ``text`` is not exactly one reference."""
    found = _reference_pattern(prefixes).fullmatch(text.strip())
    if not found:
        return None
    by_upper = {p.upper(): t for p, t in prefixes.items()}
    return RecordRef(by_upper[found.group(1).upper()], int(found.group(2)))


def find_references(
    subject: str,
    categories: Iterable[str],
    prefixes: Mapping[str, str] = DEFAULT_REFERENCE_PREFIXES,
) -> list[ObjectReference]:
    """Object references in the subject (anywhere) and in categories (a whole category)."""
    pattern = _reference_pattern(prefixes)
    by_upper = {p.upper(): t for p, t in prefixes.items()}
    out: dict[RecordRef, ObjectReference] = {}
    for cat in categories:
        ref = parse_reference(cat, prefixes)
        if ref is not None:
            out.setdefault(ref, ObjectReference(cat.strip(), ref, "category"))
    for found in pattern.finditer(subject or ""):
        ref = RecordRef(by_upper[found.group(1).upper()], int(found.group(2)))
        out.setdefault(ref, ObjectReference(found.group(0), ref, "subject"))
    return list(out.values())


def _address_matches(
    matches: Mapping[str, Sequence[RecordMatch]], address: str
) -> list[RecordMatch]:
    """The People and Sales Leads an address resolved to (other record types are ignored)."""
    return [m for m in matches.get(address, ()) if m.record_type in ADDRESS_MATCH_TYPES]


def has_category(message: Message, category: str) -> bool:
    wanted = category.strip().lower()
    return any(c.strip().lower() == wanted for c in message.categories)


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class MessagePlan:
    """What to do for one sent message: its Workbooks email (``email_id`` when one already
    exists, else it is created when there is anything to link) must carry ``links``, the links
    still missing.  ``targets`` are every record the message belongs to (linked ones included):
    the message is fully linked when the email carries all of them."""

    message_key: str
    internet_message_id: str
    decision: Decision
    email_id: int | None
    links: tuple[RecordRef, ...]
    targets: tuple[RecordRef, ...]
    pending: tuple[str, ...]  # unmatched addresses for retroactive linking
    explanation: dict[str, Any]
    skip: bool = False  # nothing changed since the last time: no work at all


def fingerprint(message: Message) -> str:
    """What can change a decision after sending: categories and subject."""
    cats = "\x1f".join(sorted(c.strip().lower() for c in message.categories))
    raw = f"{cats}\x1e{message.subject or ''}"
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def email_reference(internet_message_id: str, message_key: str) -> str:
    """Stable ``created_through_reference`` for the Workbooks email of one Outlook message, so
    a create that was not recorded (crash) can be found again instead of repeated."""
    basis = internet_message_id or message_key
    return REFERENCE_PREFIX + hashlib.sha256(basis.encode("utf-8")).hexdigest()[:32]


def needs_resolution(message: Message, existing: EmailRecord | None, policy: MailboxPolicy) -> bool:
    """Whether the message's recipients must be looked up in Workbooks at all."""
    if message.is_draft:
        return False
    if existing is not None and _unchanged(message, existing):
        return False
    return policy.email_policy == "auto" or has_category(message, policy.category)


def _unchanged(message: Message, existing: EmailRecord) -> bool:
    return existing.state in (
        "linked",
        "no_match",
        "excluded",
        "not_shared",
    ) and existing.explanation.get("fingerprint") == fingerprint(message)


def plan_message(
    message: Message,
    matches: Mapping[str, Sequence[RecordMatch]],
    existing: EmailRecord | None,
    policy: MailboxPolicy,
    mailbox_id: str,
    *,
    now: datetime,
    prefixes: Mapping[str, str] = DEFAULT_REFERENCE_PREFIXES,
) -> MessagePlan:
    """Decide everything about one message.  ``matches`` maps normalised addresses to the
    records they resolved to (addresses absent or empty: no match)."""
    imid = message.internet_message_id or ""
    if existing is not None and _unchanged(message, existing):
        return _skip(message, existing)
    candidates, excluded = split_recipients(message, mailbox_id, policy)
    refs = find_references(message.subject or "", message.categories, prefixes)
    categorised = has_category(message, policy.category)
    matched: dict[str, list[RecordMatch]] = {}
    for who in candidates:
        usable = _address_matches(matches, who.address)
        if usable:
            matched[who.address] = usable
    shared_by = _shared_by(message, policy, categorised, refs, bool(matched))
    expl = _explanation(message, policy, candidates, excluded, matched, refs, shared_by, now)
    # Recipients nobody matches yet are remembered for retroactive linking: for a message the
    # user categorised, and under ``auto`` for every message (its look-back window already
    # kept older ones out), so an email to an unknown address is linked once a record appears.
    remember = categorised or policy.email_policy == "auto"
    pending = tuple(w.address for w in candidates if w.address not in matched) if remember else ()
    if shared_by is None:
        # Not shared: no recipient addresses are kept, only how many there were.
        expl["recipients"] = {"count": len(candidates) + len(excluded)}
        expl["reason"] = _not_shared_reason(policy)
        if existing is not None and existing.linked:
            # Un-sharing after linking never unlinks: the links stay, the reason says why.
            expl["reason"] += "; links made while it was shared are kept"
            kept = tuple(RecordRef.from_key(k) for k in existing.linked)
            return _plan(message, existing, "linked", kept, pending, expl)
        return _plan(message, existing, "not_shared", (), pending, expl)
    targets = _targets(matched, refs, existing)
    if not targets:
        decision: Decision = "excluded" if not candidates else "no_match"
        expl["reason"] = (
            "every recipient is internal, blocklisted or invalid"
            if decision == "excluded"
            else "no recipient matches a Person or Sales Lead yet"
        )
        return _plan(message, existing, decision, (), pending, expl)
    expl["reason"] = f"linked to {len(targets)} record(s)"
    plan = _plan(message, existing, "linked", targets, pending, expl)
    if not imid:
        plan.explanation["warning"] = "message has no internetMessageId; keyed by immutable id"
    return plan


_SKIP_DECISIONS: dict[str, Decision] = {
    "linked": "linked",
    "not_shared": "not_shared",
    "no_match": "no_match",
    "excluded": "excluded",
}


def _skip(message: Message, existing: EmailRecord) -> MessagePlan:
    return MessagePlan(
        message_key=message.id,
        internet_message_id=existing.internet_message_id,
        decision=_SKIP_DECISIONS.get(existing.state, "no_match"),
        email_id=existing.workbooks_email_id,
        links=(),
        targets=tuple(RecordRef.from_key(k) for k in existing.linked),
        pending=(),
        explanation=existing.explanation,
        skip=True,
    )


def _shared_by(
    message: Message,
    policy: MailboxPolicy,
    categorised: bool,
    refs: Sequence[ObjectReference],
    any_match: bool,
) -> str | None:
    if categorised:
        return f"category '{policy.category}'"
    if any(r.source == "category" for r in refs):
        return "object-reference category"
    if policy.email_policy == "auto":
        if any_match:
            return "auto: a recipient matches a Person or Sales Lead"
        if refs:
            return "auto: object reference in the subject"
    return None


def _not_shared_reason(policy: MailboxPolicy) -> str:
    if policy.email_policy == "auto":
        return "not shared: no category, no object reference and no recipient matches"
    return f"not shared: the message has no '{policy.category}' category"


def _targets(
    matched: Mapping[str, Sequence[RecordMatch]],
    refs: Sequence[ObjectReference],
    existing: EmailRecord | None,
) -> tuple[RecordRef, ...]:
    out: dict[str, RecordRef] = {}
    for key in existing.linked if existing else []:
        out[key] = RecordRef.from_key(key)
    for found in matched.values():
        for m in found:
            out.setdefault(m.ref.key, m.ref)
    for r in refs:
        out.setdefault(r.ref.key, r.ref)
    return tuple(out.values())


def _plan(
    message: Message,
    existing: EmailRecord | None,
    decision: Decision,
    targets: tuple[RecordRef, ...],
    pending: tuple[str, ...],
    expl: dict[str, Any],
) -> MessagePlan:
    done = set(existing.linked) if existing else set()
    email_id = existing.workbooks_email_id if existing else None
    links = tuple(t for t in targets if t.key not in done)
    expl["fingerprint"] = fingerprint(message)
    expl["decision"] = decision
    expl["pending"] = list(pending)
    return MessagePlan(
        message_key=message.id,
        internet_message_id=message.internet_message_id or "",
        decision=decision,
        email_id=email_id,
        links=links,
        targets=targets,
        pending=pending,
        explanation=expl,
    )


def _explanation(
    message: Message,
    policy: MailboxPolicy,
    candidates: Sequence[Addressee],
    excluded: Sequence[Excluded],
    matched: Mapping[str, Sequence[RecordMatch]],
    refs: Sequence[ObjectReference],
    shared_by: str | None,
    now: datetime,
) -> dict[str, Any]:
    recipients = []
    for who in candidates:
        found = matched.get(who.address, [])
        recipients.append(
            {
                "address": who.address,
                "role": who.role,
                "result": "matched" if found else "no_match_yet",
                "matches": [{"record": m.ref.key, "field": m.field} for m in found],
            }
        )
    return {
        "policy": policy.email_policy,
        "shared": shared_by is not None,
        "shared_by": shared_by,
        "recipients": recipients,
        "excluded": [
            {"role": e.role, "rule": e.rule, **({"domain": e.domain} if e.domain else {})}
            for e in excluded
        ],
        "references": [{"text": r.text, "source": r.source, "record": r.ref.key} for r in refs],
        "evaluated_at": now.astimezone(UTC).isoformat(),
    }


# ----------------------------------------------------------------------------- records


def record_for(
    plan: MessagePlan,
    message: Message,
    *,
    mailbox: str,
    email_id: int | None,
    linked: Iterable[str],
    now: datetime,
    state: RecordState | None = None,
    error: str = "",
    unlinked: Mapping[str, str] | None = None,
) -> EmailRecord:
    """The EmailRecord to persist after the plan was (partly) applied.  ``unlinked``: records
    the tenant's link mechanism cannot tie the email to, and why."""
    expl = note_unlinked(dict(plan.explanation), unlinked or {})
    expl["linked"] = sorted(set(linked))
    if error:
        expl["error"] = error
    final: RecordState = state or plan.decision
    return EmailRecord(
        mailbox=mailbox,
        message_key=plan.message_key,
        internet_message_id=plan.internet_message_id,
        state=final,
        workbooks_email_id=email_id,
        linked=sorted(set(linked)),
        explanation=expl,
        subject=(message.subject or "")[:500],
        sent_at=message.sent_date_time,
        processed_at=now,
    )


def note_unlinked(expl: dict[str, Any], unlinked: Mapping[str, str]) -> dict[str, Any]:
    """``expl`` with the records the email could not be linked to on this tenant, and why
    (added to those an earlier run explained)."""
    if unlinked:
        known = {
            n["record"]: n["reason"]
            for n in expl.get("not_linked", [])
            if isinstance(n, dict) and "record" in n
        }
        known.update(unlinked)
        expl["not_linked"] = [{"record": k, "reason": known[k]} for k in sorted(known)]
    return expl


def pending_entries(
    plan: MessagePlan, message: Message, mailbox_id: str, now: datetime
) -> list[PendingAddress]:
    return [
        PendingAddress(
            address=a,
            mailbox=mailbox_id,
            message_key=plan.message_key,
            internet_message_id=plan.internet_message_id,
            sent_at=message.sent_date_time,
            added_at=now,
        )
        for a in plan.pending
    ]


# ----------------------------------------------------------------------------- email content


def _addresses(recipients: Iterable[Recipient], policy: MailboxPolicy) -> list[str]:
    out = []
    for r in recipients:
        address = normalise_address(r.email_address.address or "")
        if address and not is_blocklisted(address, policy):
            out.append(address)
    return out


def email_fields(
    message: Message,
    policy: MailboxPolicy,
    body: str,
    body_type: str = "text",
) -> dict[str, object]:
    """The ``email/emails`` record for one Outlook message (workbooks-api.md §4.10).

    Blocklisted addresses are left out of every address field and the MIME copy.  The body
    travels inside ``rfc822`` (no separate body field is documented) and as ``synopsis``.
    """
    sender = message.from_ or message.sender
    from_address = normalise_address(sender.email_address.address or "") if sender else ""
    to = _addresses(message.to_recipients, policy)
    cc = _addresses(message.cc_recipients, policy)
    bcc = _addresses(message.bcc_recipients, policy)
    subject = message.subject or ""
    return {
        "from_address": from_address,
        "to_addresses": ", ".join(to),
        "cc_addresses": ", ".join(cc),
        "bcc_addresses": ", ".join(bcc),
        "subject": subject,
        "synopsis": (message.body_preview or "")[:MAX_SYNOPSIS],
        "status": STORED_EMAIL_STATUS,
        "rfc822": render_rfc822(message, from_address, to, cc, bcc, body, body_type),
        "created_through_reference": email_reference(message.internet_message_id or "", message.id),
    }


def render_rfc822(
    message: Message,
    from_address: str,
    to: Sequence[str],
    cc: Sequence[str],
    bcc: Sequence[str],
    body: str,
    body_type: str,
) -> str:
    """A MIME copy of the message.  Built with the ``compat32`` classes: the default
    ``EmailMessage`` policy re-parses every header and costs ~15 ms per message."""
    subtype = "html" if body_type.lower() == "html" else "plain"
    text = body or ""
    mime = MIMEText(text if text.isascii() else "", subtype, "us-ascii")
    if not text.isascii():
        del mime["Content-Type"]
        del mime["Content-Transfer-Encoding"]
        mime["Content-Type"] = f"text/{subtype}"
        mime.set_payload(text, _UTF8_QP)
    mime["From"] = from_address or "unknown@invalid"
    for name, values in (("To", to), ("Cc", cc), ("Bcc", bcc)):
        if values:
            mime[name] = ", ".join(values)
    subject = (message.subject or "").replace("\r", " ").replace("\n", " ")
    mime["Subject"] = subject if subject.isascii() else Header(subject, "utf-8").encode()
    if message.sent_date_time is not None:
        mime["Date"] = format_datetime(message.sent_date_time.astimezone(UTC))
    mime["Message-ID"] = message.internet_message_id or make_msgid(domain="outlook.invalid")
    return mime.as_string()


# ----------------------------------------------------------------------------- retroactive


@dataclass(frozen=True)
class RetroAction:
    """Link one earlier shared message to the records its pending addresses now match."""

    message_key: str
    email_id: int | None  # None: the Workbooks email must be created first
    links: tuple[RecordRef, ...]
    matches: tuple[RecordMatch, ...]
    resolved: tuple[PendingAddress, ...]  # pending entries this action settles


@dataclass(frozen=True)
class RetroPlan:
    actions: tuple[RetroAction, ...] = ()
    expired: tuple[PendingAddress, ...] = ()  # outside the look-back window: drop, never link
    stale: tuple[PendingAddress, ...] = field(default_factory=tuple)  # no record / already done


def plan_retro(
    matches: Mapping[str, Sequence[RecordMatch]],
    pending: Sequence[PendingAddress],
    records: Mapping[str, EmailRecord | None],
    *,
    now: datetime,
    lookback_days: int,
    auto: bool = False,
) -> RetroPlan:
    """Given addresses that now match records, their pending entries and the messages' records
    (by message key), which links to add.  Each (message, record) pair is planned once.
    A message that was not shared (remembered under ``auto``) is linked only while the mailbox
    is still ``auto``; otherwise its entries are stale."""
    horizon = now - timedelta(days=lookback_days)
    by_message: dict[str, list[PendingAddress]] = {}
    expired: list[PendingAddress] = []
    stale: list[PendingAddress] = []
    for entry in pending:
        when = entry.sent_at or entry.added_at
        record = records.get(entry.message_key)
        if when < horizon:
            expired.append(entry)
        elif record is None or (record.state == "not_shared" and not auto):
            stale.append(entry)
        elif _address_matches(matches, entry.address):
            by_message.setdefault(entry.message_key, []).append(entry)
    actions = []
    for key, entries in by_message.items():
        record = records[key]
        assert record is not None
        done = set(record.linked)
        found = [m for e in entries for m in _address_matches(matches, e.address)]
        links = tuple({m.ref.key: m.ref for m in found if m.ref.key not in done}.values())
        actions.append(
            RetroAction(
                message_key=key,
                email_id=record.workbooks_email_id,
                links=links,
                matches=tuple(found),
                resolved=tuple(entries),
            )
        )
    return RetroPlan(tuple(actions), tuple(expired), tuple(stale))


def retro_explanation(
    record: EmailRecord, action: RetroAction, linked: Iterable[str], now: datetime
) -> dict[str, Any]:
    """The record's explanation after a retroactive link: the new matches are appended."""
    expl = dict(record.explanation)
    history = list(expl.get("retroactive", []))
    history.append(
        {
            "at": now.astimezone(UTC).isoformat(),
            "matches": [
                {"address": m.address, "record": m.ref.key, "field": m.field}
                for m in action.matches
            ],
        }
    )
    expl["retroactive"] = history
    if not expl.get("shared"):
        # ``auto``: a message nobody matched was not shared; a record for a recipient makes it so.
        expl["shared"], expl["shared_by"] = True, "auto: a recipient matched a record later"
    resolved = {e.address for e in action.resolved}
    expl["pending"] = [a for a in expl.get("pending", []) if a not in resolved]
    for rcpt in expl.get("recipients", []) if isinstance(expl.get("recipients"), list) else []:
        if rcpt.get("address") in resolved:
            rcpt["result"] = "matched_later"
            rcpt["matches"] = [
                {"record": m.ref.key, "field": m.field}
                for m in action.matches
                if m.address == rcpt["address"]
            ]
    return _mark_linked(expl, linked)


def _mark_linked(expl: dict[str, Any], linked: Iterable[str]) -> dict[str, Any]:
    expl["linked"] = sorted(set(linked))
    expl["decision"] = "linked"
    expl["reason"] = f"linked to {len(expl['linked'])} record(s)"
    return expl


def manual_explanation(
    record_expl: Mapping[str, Any], ref: RecordRef, linked: Iterable[str], now: datetime
) -> dict[str, Any]:
    expl = dict(record_expl)
    attached = list(expl.get("attached_on_request", []))
    attached.append({"record": ref.key, "at": now.astimezone(UTC).isoformat()})
    expl["attached_on_request"] = attached
    return _mark_linked(expl, linked)


def before_auto_window(message: Message, policy: MailboxPolicy, now: datetime) -> bool:
    """With the ``auto`` policy, sent mail older than the look-back window is not captured: a
    new mailbox would otherwise copy years of history into Workbooks on its first run.  A
    message the user categorised is their explicit choice and counts whatever its age."""
    if policy.email_policy != "auto" or message.sent_date_time is None:
        return False
    if message.sent_date_time >= now - timedelta(days=policy.retro_lookback_days):
        return False
    return policy.category.lower() not in {c.lower() for c in message.categories}
