"""The doctor's decisions, without I/O: what each answer means, which failures are essential,
and the table an operator reads."""

from __future__ import annotations

from datetime import UTC, datetime

from sync.core import doctor
from sync.core.checks import Check
from sync.core.doctor import DoctorReport, Probe, render
from sync.core.workbooks_hooks import Existing, HookSubscription, HookTenant

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
ALL_ROLES = [
    "Mail.Read",
    "Contacts.ReadWrite",
    "Calendars.ReadWrite",
    "Tasks.ReadWrite.All",
    "MailboxSettings.Read",
]
READS_OK = {k: Probe(True) for k in ("sent", "contacts", "calendar", "todo", "settings")}


def test_the_report_names_its_worst_status_and_essential_failures() -> None:
    report = DoctorReport(
        "ann@example.com",
        WHEN,
        (
            Check("secrets.api_key", "ok", "env:K resolves"),
            Check("workbooks.email_status", "warn", "stored as DRAFT", "add FILED"),
            Check("graph.stream.todo", "fail", "not readable", "grant Tasks"),
            Check("graph.roles", "fail", "missing Tasks.ReadWrite.All", "grant it"),
        ),
    )
    assert report.status == "fail"
    assert [c.name for c in report.essential_failures] == ["graph.roles"]
    assert report.summary() == "2 fail (1 essential: graph.roles), 1 warn, 1 ok"
    again = DoctorReport.from_dict(report.as_dict())
    assert again == report


def test_the_table_shows_each_check_with_its_fix() -> None:
    report = DoctorReport(
        "ann@example.com",
        WHEN,
        (
            Check("graph.token", "ok", "token acquired", "never shown for ok"),
            Check("graph.mailbox", "fail", "Graph refused ann", "add ann to the group"),
        ),
    )
    lines = render(report)
    assert lines[0] == (
        "doctor ann@example.com (2026-12-01 09:30:00 UTC): 1 fail (1 essential: graph.mailbox), "
        "0 warn, 1 ok"
    )
    assert lines[1] == "  ok   graph.token    token acquired"
    assert lines[2] == "  FAIL graph.mailbox  Graph refused ann *"
    assert lines[3] == "                      fix: add ann to the group"
    assert lines[-1].startswith("  * essential")
    assert "never shown" not in "\n".join(lines)


def test_a_healthy_report_is_ok() -> None:
    report = DoctorReport("a@b.c", WHEN, (Check("graph.token", "ok", "fine"),))
    assert report.status == "ok" and report.essential_failures == []
    assert DoctorReport("a@b.c", WHEN, ()).status == "ok"


def test_unresolved_key_vault_references_are_named_never_shown() -> None:
    env = {"A": "@Microsoft.KeyVault(SecretUri=https://v/secrets/a)", "B": "plain", "C": " x"}
    assert doctor.unresolved_references(env) == ["A"]
    check = doctor.key_vault_check(env)
    assert check.status == "fail" and "A still reads" in check.message
    assert "https://v" not in check.message
    assert doctor.key_vault_check({"B": "plain"}).status == "ok"


def test_api_key_check() -> None:
    assert doctor.api_key_check("env:K", value="key").status == "ok"
    assert doctor.api_key_check("env:K", value="  ").status == "fail"
    assert doctor.api_key_check("env:K", error="environment variable K is not set").status == (
        "fail"
    )
    unresolved = doctor.api_key_check("env:K", value="@Microsoft.KeyVault(VaultName=v;x)")
    assert unresolved.status == "fail" and "VaultName" not in unresolved.message


def test_a_token_missing_roles_fails_and_names_them() -> None:
    claims = {"roles": ["Mail.Read", "Contacts.Read", "Calendars.ReadWrite"]}
    probes = {**READS_OK, "todo": Probe(False, status=403, code="ErrorAccessDenied")}
    check = doctor.roles_check(claims, probes, settings_needed=True)
    assert check.status == "fail"
    assert "missing Tasks.ReadWrite.All" in check.message
    assert "only the read variant of Contacts.ReadWrite" in check.message
    assert "MailboxSettings" not in check.message.split(";")[0]


def test_roles_granted_through_exchange_rbac_are_not_in_the_token() -> None:
    # RBAC for Applications: only Tasks.ReadWrite.All is consented in Entra; Exchange grants
    # the rest, so the token lacks them but the reads work.
    claims = {"roles": ["Tasks.ReadWrite.All"]}
    check = doctor.roles_check(claims, READS_OK, settings_needed=True)
    assert check.status == "warn"
    assert "Contacts.ReadWrite, Calendars.ReadWrite not in the token" in check.message
    assert "writing is not verified" in check.message
    read_only = doctor.roles_check(claims, READS_OK, settings_needed=False)
    assert "MailboxSettings" not in read_only.message
    # ... but a read Exchange refuses is a missing permission.
    refused = {**READS_OK, "sent": Probe(False, status=403, code="ErrorAccessDenied")}
    assert "missing Mail.Read" in doctor.roles_check(claims, refused, settings_needed=True).message


def test_every_role_in_the_token_is_ok() -> None:
    check = doctor.roles_check({"roles": ALL_ROLES}, {}, settings_needed=True)
    assert check.status == "ok" and "Tasks.ReadWrite.All" in check.message
    none = doctor.roles_check({"appid": "x"}, {}, settings_needed=False)  # no roles claim
    assert none.status == "fail" and "missing Mail.Read" in none.message
    assert doctor.roles_check(None, READS_OK, settings_needed=True).status == "warn"


def test_mailbox_settings_are_optional() -> None:
    claims = {"roles": ALL_ROLES[:4]}
    probes = {**READS_OK, "settings": Probe(False, status=403, code="ErrorAccessDenied")}
    check = doctor.roles_check(claims, probes, settings_needed=True)
    assert check.status == "warn" and "MailboxSettings.Read missing" in check.message
    assert doctor.settings_check(probes["settings"], needed=True).status == "warn"
    assert doctor.settings_check(None, needed=False).status == "ok"


def test_a_token_that_cannot_be_had_here_is_a_warning_not_a_failure() -> None:
    unavailable = Probe(False, message="ManagedIdentityCredential unavailable", unavailable=True)
    check = doctor.token_check(unavailable, None)
    assert check.status == "warn" and "GET /api/doctor/" in check.fix
    rejected = Probe(False, status=401, code="invalid_client", message="AADSTS7000215: bad")
    check = doctor.token_check(rejected, None)
    assert check.status == "fail" and "AADSTS7000215" in check.message


def test_mailbox_answers() -> None:
    scope = Probe(
        False, status=403, code="ErrorAccessDenied", message="Access to OData is disabled."
    )
    check = doctor.mailbox_check("ann@x.com", scope)
    assert check.status == "fail" and "leaves this mailbox out" in check.message
    assert "Test-ServicePrincipalAuthorization" in check.fix and "up to an hour" in check.fix
    denied = Probe(False, status=403, code="ErrorAccessDenied", message="Access is denied.")
    assert "grant Mail.Read" in doctor.mailbox_check("ann@x.com", denied).fix
    gone = doctor.mailbox_check("ann@x.com", Probe(False, status=404, code="ErrorInvalidUser"))
    assert "Graph has no mailbox" in gone.message
    silent = doctor.mailbox_check("ann@x.com", Probe(False, message="Graph unreachable"))
    assert silent.status == "fail" and "did not answer" in silent.message


def test_webhook_url_rules() -> None:
    url = "https://app.example.net/api/graph/notifications"
    assert doctor.webhook_url_check("https://app.example.net", url, live=True).status == "ok"
    plain = "http://app.example.net/api/graph/notifications"
    assert doctor.webhook_url_check("http://app.example.net", plain, live=True).status == "fail"
    assert doctor.webhook_url_check("http://127.0.0.1:1", plain, live=False).status == "ok"
    assert doctor.webhook_url_check(None, "/api/graph/notifications", live=True).status == "fail"


def test_handshake_answers() -> None:
    url = "https://app/api/graph/notifications"
    assert doctor.handshake_check(url, Probe(True), Probe(True)).status == "ok"
    kept = doctor.handshake_check(url, Probe(True, note=" s-1"), Probe(False, status=503))
    assert kept.status == "warn" and "s-1" in kept.message
    failed = Probe(False, status=400, code="ValidationError", message="timed out.")
    check = doctor.handshake_check(url, failed)
    assert check.status == "fail" and "timed out." in check.message and url in check.fix


def test_queues_check() -> None:
    wanted = {"P": "People", "A": "Activities"}
    assert doctor.queues_check({"P": 1, "A": 2}, wanted).status == "ok"
    check = doctor.queues_check({"P": 1}, wanted)
    assert check.status == "warn" and "Activities" in check.message


def test_probe_says_what_graph_said() -> None:
    probe = Probe(False, status=403, code="ErrorAccessDenied", message="Access is denied.")
    assert probe.said() == "403 ErrorAccessDenied: Access is denied."
    assert Probe(False, message="unreachable").said() == "unreachable"


def _hooked_tenant(polled: dict[str, str]) -> HookTenant:
    sub = HookSubscription(
        trigger_id=1, source="people", subscription_id=41, token_hash="h", created_at=WHEN
    )
    return HookTenant(
        tenant="t",
        workbooks_url="https://wb.example",
        allowed=True,
        subscriptions=[sub],
        polled_sources=polled,
        verified_at=WHEN,
    )


def test_workbooks_webhooks_polled_by_design_is_ok_and_by_refusal_warns() -> None:
    live = [Existing(41, 1, "https://app/api/workbooks/webhook/x", True)]
    by_design = doctor.workbooks_webhooks_check(
        "", _hooked_tenant({"leads": doctor.NO_TRIGGER}), live
    )
    assert by_design.status == "ok", by_design
    assert by_design.message == (
        "webhooks: people (1 live in Workbooks); polled: leads (no webhook trigger for it)"
    )
    refused = doctor.workbooks_webhooks_check(
        "", _hooked_tenant({"leads": "trigger 5 refused: no such trigger"}), live
    )
    assert refused.status == "warn" and "trigger 5 refused" in refused.message, refused
    unread = doctor.workbooks_webhooks_check(
        "", _hooked_tenant({}), None, unread="Workbooks is unavailable"
    )
    assert unread.status == "warn" and "not read (Workbooks is unavailable)" in unread.message
