"""The pure email-linking core: sharing, recipients, references, plans and retroactive plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_string
from email.header import decode_header, make_header
from typing import Any

import pytest

from sync.core.email_linking import (
    CASE,
    LEAD,
    OPPORTUNITY,
    ORGANISATION,
    PERSON,
    RecordMatch,
    RecordRef,
    email_fields,
    email_reference,
    find_references,
    needs_resolution,
    note_unlinked,
    parse_reference,
    pending_entries,
    plan_message,
    plan_retro,
    record_for,
    retro_explanation,
    split_recipients,
)
from sync.core.graph_models import Message
from sync.core.state_models import EmailRecord, MailboxPolicy, PendingAddress

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
MB = "ann@example.com"


def msg(
    to: tuple[str, ...] | list[str] = (),
    cc: tuple[str, ...] | list[str] = (),
    bcc: tuple[str, ...] | list[str] = (),
    subject: str = "Hello",
    categories: tuple[str, ...] | list[str] = (),
    **extra: Any,
) -> Message:
    def r(addrs: list[str]) -> list[dict[str, Any]]:
        return [{"emailAddress": {"address": a, "name": a}} for a in addrs]

    data = {
        "id": extra.pop("id", "AAMk1"),
        "subject": subject,
        "internetMessageId": extra.pop("imid", "<m1@example.com>"),
        "from": {"emailAddress": {"address": MB, "name": "Ann"}},
        "toRecipients": r(list(to)),
        "ccRecipients": r(list(cc)),
        "bccRecipients": r(list(bcc)),
        "categories": list(categories),
        "sentDateTime": "2026-11-27T11:00:00Z",
        "bodyPreview": "preview",
        **extra,
    }
    return Message.model_validate(data)


def person(address: str, rid: int, field: str = "main_location[email]") -> RecordMatch:
    return RecordMatch(address, PERSON, rid, field)


SHARED = MailboxPolicy()
AUTO = MailboxPolicy(email_policy="auto")


# ----------------------------------------------------------------------------- recipients


def test_recipients_are_normalised_deduplicated_and_excluded_by_rule() -> None:
    policy = MailboxPolicy(internal_domains=["corp.io"], blocklist=["gmail.com", "x@y.org"])
    m = msg(
        to=['"Pat" <PAT@Cust.com>', " pat@cust.com ", "bob@example.com"],
        cc=["it@eu.corp.io", "me@gmail.com", "x@y.org", "not-an-address"],
        bcc=["lee@prospect.com"],
    )
    candidates, excluded = split_recipients(m, MB, policy)
    assert [(c.address, c.role) for c in candidates] == [
        ("pat@cust.com", "to"),
        ("lee@prospect.com", "bcc"),
    ]
    assert [(e.rule, e.domain) for e in excluded] == [
        ("internal", "example.com"),  # the mailbox's own domain is internal by default
        ("internal", "eu.corp.io"),
        ("blocklisted", ""),
        ("blocklisted", ""),
        ("invalid", ""),
    ]


# ----------------------------------------------------------------------------- references


def test_references_in_subject_and_categories() -> None:
    refs = find_references(
        "Re: CASE-123 and opp-7, not XCASE-1 or CASE-12a", ["Workbooks", "PERS-45", "LEAD-9"]
    )
    assert {(r.ref, r.source) for r in refs} == {
        (RecordRef(CASE, 123), "subject"),
        (RecordRef(OPPORTUNITY, 7), "subject"),
        (RecordRef(PERSON, 45), "category"),
        (RecordRef(LEAD, 9), "category"),
    }
    assert parse_reference(" ORG-3 ") == RecordRef(ORGANISATION, 3)
    assert parse_reference("CASE-3 CASE-4") is None
    assert parse_reference("TICKET-3", {"TICKET": CASE}) == RecordRef(CASE, 3)


# ----------------------------------------------------------------------------- plans


def test_shared_policy_ignores_uncategorised_and_keeps_no_addresses() -> None:
    m = msg(to=["pat@cust.com"])
    assert not needs_resolution(m, None, SHARED)
    plan = plan_message(m, {}, None, SHARED, MB, now=NOW)
    assert plan.decision == "not_shared" and plan.links == plan.targets == ()
    assert plan.pending == ()
    assert "pat@cust.com" not in str(plan.explanation)


def test_categorised_message_links_every_match_and_pends_the_rest() -> None:
    m = msg(to=["pat@cust.com", "new@cust.com"], cc=["bob@example.com"], categories=["workbooks"])
    matches = {
        "pat@cust.com": [
            person("pat@cust.com", 1),
            RecordMatch("pat@cust.com", ORGANISATION, 9, "party_locations.email"),
        ],
        "new@cust.com": [],
    }
    plan = plan_message(m, matches, None, SHARED, MB, now=NOW)
    assert plan.decision == "linked" and plan.email_id is None  # a new email to create
    assert plan.links == (RecordRef(PERSON, 1),)  # organisations are not address-matched
    assert plan.pending == ("new@cust.com",)
    assert plan.explanation["excluded"] == [
        {"role": "cc", "rule": "internal", "domain": "example.com"}
    ]


def test_existing_record_is_reused_and_recorded_links_are_not_planned_again() -> None:
    m = msg(to=["pat@cust.com", "sam@cust.com"], categories=["Workbooks"], subject="CASE-5")
    existing = EmailRecord(
        mailbox=MB,
        message_key="AAMk1",
        state="linked",
        workbooks_email_id=77,
        linked=[f"{PERSON}:1"],
    )
    matches = {
        "pat@cust.com": [person("pat@cust.com", 1)],
        "sam@cust.com": [person("sam@cust.com", 2)],
    }
    plan = plan_message(m, matches, existing, SHARED, MB, now=NOW)
    assert plan.email_id == 77  # reused, not created again
    assert set(plan.links) == {RecordRef(PERSON, 2), RecordRef(CASE, 5)}
    assert set(plan.targets) == {RecordRef(PERSON, 1), *plan.links}  # complete when all carried


def test_unchanged_message_is_skipped_without_resolution() -> None:
    m = msg(to=["pat@cust.com"], categories=["Workbooks"])
    first = plan_message(
        m, {"pat@cust.com": [person("pat@cust.com", 1)]}, None, SHARED, MB, now=NOW
    )
    done = EmailRecord(
        mailbox=MB,
        message_key=m.id,
        state="linked",
        workbooks_email_id=3,
        linked=[f"{PERSON}:1"],
        explanation=first.explanation,
    )
    assert not needs_resolution(m, done, SHARED)
    assert plan_message(m, {}, done, SHARED, MB, now=NOW).skip
    recategorised = msg(to=["pat@cust.com"], categories=["Workbooks", "CASE-4"])
    assert needs_resolution(recategorised, done, SHARED)


def test_auto_policy_needs_a_match_or_a_reference() -> None:
    matches = {"pat@cust.com": [person("pat@cust.com", 1)]}
    assert (
        plan_message(msg(to=["pat@cust.com"]), matches, None, AUTO, MB, now=NOW).decision
        == "linked"
    )
    lone = plan_message(msg(to=["x@nowhere.org"]), {}, None, AUTO, MB, now=NOW)
    assert lone.decision == "not_shared"
    ref = plan_message(msg(to=["x@nowhere.org"], subject="CASE-8"), {}, None, AUTO, MB, now=NOW)
    assert ref.links == (RecordRef(CASE, 8),)


def test_auto_policy_remembers_unknown_recipients_for_retroactive_links() -> None:
    """Under ``auto`` an email to an unknown address is remembered (a pending entry), whether
    the message is shared yet or not; internal and blocklisted addresses never are."""
    policy = AUTO.model_copy(update={"blocklist": ["spam.net"]})
    to = ["x@nowhere.org", "colleague@example.com", "y@spam.net"]
    lone = plan_message(msg(to=to), {}, None, policy, MB, now=NOW)
    assert (lone.decision, lone.pending) == ("not_shared", ("x@nowhere.org",))
    assert lone.explanation["recipients"] == {"count": 3}  # still no recipient list kept
    matches = {"pat@cust.com": [person("pat@cust.com", 1)]}
    mixed = plan_message(
        msg(to=["pat@cust.com", "x@nowhere.org"]), matches, None, AUTO, MB, now=NOW
    )
    assert (mixed.decision, mixed.pending) == ("linked", ("x@nowhere.org",))
    shared = plan_message(msg(to=["x@nowhere.org"]), {}, None, SHARED, MB, now=NOW)
    assert shared.pending == ()  # the shared policy remembers categorised messages only
    entries = pending_entries(lone, msg(to=to), MB, NOW)
    assert [(e.address, e.mailbox) for e in entries] == [("x@nowhere.org", MB)]


def test_retro_links_an_unshared_auto_message_only_while_the_policy_is_auto() -> None:
    records = {"m1": EmailRecord(mailbox=MB, message_key="m1", state="not_shared")}
    pending = [_pending("a@x.com", "m1", 1)]
    matches = {"a@x.com": [person("a@x.com", 7)]}
    auto = plan_retro(matches, pending, records, now=NOW, lookback_days=90, auto=True)
    (action,) = auto.actions
    assert action.links == (RecordRef(PERSON, 7),) and action.email_id is None
    shared = plan_retro(matches, pending, records, now=NOW, lookback_days=90)
    assert shared.actions == () and shared.stale == tuple(pending)
    expl = retro_explanation(records["m1"], action, [f"{PERSON}:7"], NOW)
    assert expl["shared"] is True and expl["shared_by"].startswith("auto")


def test_excluded_and_no_match_decisions() -> None:
    internal = plan_message(
        msg(to=["bob@example.com"], categories=["Workbooks"]), {}, None, SHARED, MB, now=NOW
    )
    assert internal.decision == "excluded" and internal.pending == ()
    nobody = plan_message(
        msg(to=["x@nowhere.org"], categories=["Workbooks"]), {}, None, SHARED, MB, now=NOW
    )
    assert nobody.decision == "no_match" and nobody.links == nobody.targets == ()
    assert nobody.pending == ("x@nowhere.org",)


def test_uncategorising_after_linking_keeps_links() -> None:
    existing = EmailRecord(
        mailbox=MB,
        message_key="AAMk1",
        state="linked",
        workbooks_email_id=3,
        linked=[f"{PERSON}:1"],
    )
    plan = plan_message(msg(to=["pat@cust.com"]), {}, existing, SHARED, MB, now=NOW)
    assert plan.decision == "linked" and plan.links == () and "kept" in plan.explanation["reason"]


# ----------------------------------------------------------------------------- email content


def test_email_fields_carry_headers_and_body_without_blocklisted_addresses() -> None:
    policy = MailboxPolicy(blocklist=["hidden@cust.com"])
    m = msg(to=["Pat@Cust.com"], cc=["hidden@cust.com"], bcc=["b@c.org"], subject="Quote\nnow")
    fields = email_fields(m, policy, "<p>Hello</p>", "html")
    assert fields["to_addresses"] == "pat@cust.com" and fields["cc_addresses"] == ""
    assert fields["status"] == "DRAFT" and fields["from_address"] == MB
    assert fields["created_through_reference"] == email_reference("<m1@example.com>", "AAMk1")
    mime = message_from_string(str(fields["rfc822"]))
    assert mime["Message-ID"] == "<m1@example.com>" and mime["Subject"] == "Quote now"
    assert "hidden" not in str(fields["rfc822"]) and "<p>Hello</p>" in str(fields["rfc822"])
    assert mime["Date"].startswith("Fri, 27 Nov 2026 11:00:00")


# ----------------------------------------------------------------------------- retroactive


def _pending(address: str, key: str, days_ago: float) -> PendingAddress:
    return PendingAddress(
        address=address, mailbox=MB, message_key=key, sent_at=NOW - timedelta(days=days_ago)
    )


def test_retro_plan_links_within_window_once_and_expires_the_rest() -> None:
    records = {
        "m1": EmailRecord(mailbox=MB, message_key="m1", state="no_match"),
        "m2": EmailRecord(
            mailbox=MB,
            message_key="m2",
            state="linked",
            workbooks_email_id=5,
            linked=[f"{PERSON}:7"],
        ),
        "gone": None,
    }
    pending = [
        _pending("a@x.com", "m1", 1),
        _pending("a@x.com", "m2", 2),
        _pending("a@x.com", "old", 400),
        _pending("a@x.com", "gone", 1),
        _pending("b@x.com", "m2", 1),
    ]
    matches = {
        "a@x.com": [person("a@x.com", 7)],
        "b@x.com": [],
    }
    plan = plan_retro(matches, pending, records, now=NOW, lookback_days=90)
    by_key = {a.message_key: a for a in plan.actions}
    assert set(by_key) == {"m1", "m2"}
    assert by_key["m1"].links == (RecordRef(PERSON, 7),) and by_key["m1"].email_id is None
    assert by_key["m2"].links == ()  # already linked: settled without a second link
    assert [p.message_key for p in plan.expired] == ["old"]
    assert [p.message_key for p in plan.stale] == ["gone"]


@pytest.mark.parametrize("key", ["Private::Crm::Person:12", "Private::Crm::SalesLead:3"])
def test_record_ref_round_trip(key: str) -> None:
    assert RecordRef.from_key(key).key == key


def test_mime_copy_keeps_non_ascii_subject_and_body_readable() -> None:
    m = msg(to=["pat@cust.com"], subject="Grüße, Zoë")
    fields = email_fields(m, SHARED, "Danke schön ✓", "text")
    mime = message_from_string(str(fields["rfc822"]))
    payload = mime.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload.decode("utf-8") == "Danke schön ✓"
    assert str(make_header(decode_header(mime["Subject"]))) == "Grüße, Zoë"
    assert "quoted-printable" in str(fields["rfc822"])


def test_records_the_tenant_cannot_link_are_explained_and_accumulate() -> None:
    m = msg(to=["pat@cust.com"], categories=["Workbooks"], subject="CASE-5")
    plan = plan_message(m, {"pat@cust.com": [person("pat@cust.com", 1)]}, None, SHARED, MB, now=NOW)
    why = "this tenant links an email only when it is created (render_with)"
    record = record_for(
        plan,
        m,
        mailbox=MB,
        email_id=7,
        linked=[f"{PERSON}:1"],
        now=NOW,
        unlinked={f"{CASE}:5": why},
    )
    assert record.explanation["not_linked"] == [{"record": f"{CASE}:5", "reason": why}]
    assert record.explanation["linked"] == [f"{PERSON}:1"]
    later = note_unlinked(dict(record.explanation), {f"{LEAD}:3": "no lead link"})
    assert [n["record"] for n in later["not_linked"]] == [f"{CASE}:5", f"{LEAD}:3"]
    assert note_unlinked({"a": 1}, {}) == {"a": 1}  # nothing to say: nothing added
