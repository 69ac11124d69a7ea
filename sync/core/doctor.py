"""``doctor``: what one mailbox's setup is checked for, decided without I/O, and the table.

The engine (``sync.engine.doctor``) makes the live reads: the secrets, the Workbooks login and
schema (``sync.workbooks.tenant.verify``), the Graph token and one small read per stream
(``sync.graph.probes``), a test subscription for the webhook's validation handshake
(``sync.engine.subscriptions.handshake_test``).  Here each answer becomes a named ``Check``
(ok / warn / fail, a message, a one-line fix), the checks become a ``DoctorReport``, and the
report becomes the table ``python -m sync doctor`` prints.

A failing check in ``ESSENTIAL`` means the mailbox cannot sync at all (no key, no login, no
token, a permission or the mailbox itself out of reach): ``mailboxes add`` refuses to
register such a mailbox unless forced.  Other failures stop one feature (a stream, the
webhook, email linking) and are shown, not refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sync.core.checks import STATUSES, Check, CheckStatus
from sync.core.workbooks_hooks import Existing, HookTenant

KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("
ESSENTIAL: frozenset[str] = frozenset(
    {
        "secrets.api_key",
        "workbooks.api_key",
        "workbooks.login",
        "graph.token",
        "graph.roles",
        "graph.mailbox",
    }
)
RANK: dict[CheckStatus, int] = {"ok": 0, "warn": 1, "fail": 2}
APP_REGISTRATION = "docs/app-registration.md"

# ================================================================== the report


@dataclass(frozen=True)
class DoctorReport:
    """Every check of one mailbox at one time."""

    mailbox: str
    checked_at: datetime
    checks: tuple[Check, ...]

    @property
    def status(self) -> CheckStatus:
        """The worst status of any check."""
        return max((c.status for c in self.checks), key=RANK.__getitem__, default="ok")

    @property
    def essential_failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail" and c.name in ESSENTIAL]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for c in self.checks if c.status == s) for s in STATUSES}

    def summary(self) -> str:
        """e.g. ``2 fail (1 essential: graph.roles), 1 warn, 20 ok``."""
        n = self.counts()
        essential = [c.name for c in self.essential_failures]
        fail = f"{n['fail']} fail"
        if essential:
            fail += f" ({len(essential)} essential: {', '.join(essential)})"
        return f"{fail}, {n['warn']} warn, {n['ok']} ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "checked_at": self.checked_at.isoformat(),
            "status": self.status,
            "summary": self.summary(),
            "essential_failures": [c.name for c in self.essential_failures],
            "counts": self.counts(),
            "checks": [c.as_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DoctorReport:
        when = datetime.fromisoformat(str(data.get("checked_at") or "1970-01-01T00:00:00+00:00"))
        checks = data.get("checks") or []
        return cls(
            str(data.get("mailbox", "")),
            when if when.tzinfo else when.replace(tzinfo=UTC),
            tuple(Check.from_dict(c) for c in checks if isinstance(c, Mapping)),
        )


def render(report: DoctorReport) -> list[str]:
    """The report as the table an operator reads: one line per check, its fix below it."""
    width = max((len(c.name) for c in report.checks), default=10)
    when = report.checked_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"doctor {report.mailbox} ({when}): {report.summary()}"]
    for check in report.checks:
        mark = {"ok": "ok", "warn": "warn", "fail": "FAIL"}[check.status]
        essential = " *" if check.status == "fail" and check.name in ESSENTIAL else ""
        lines.append(f"  {mark:4} {check.name:{width}}  {check.message}{essential}")
        if check.fix and check.status != "ok":
            lines.append(f"  {'':4} {'':{width}}  fix: {check.fix}")
    if report.essential_failures:
        lines.append("  * essential: the mailbox cannot sync until this is fixed")
    return lines


def skipped(names: Iterable[str], why: str) -> list[Check]:
    """Checks that could not be made because an earlier one failed."""
    return [Check(name, "warn", f"not checked: {why}") for name in names]


# ================================================================== what a live read answered


@dataclass(frozen=True)
class Probe:
    """What one live read answered: ``ok`` with a note of what it found, or Graph's refusal
    (``status`` 0: no HTTP answer at all, e.g. unreachable or no credential here)."""

    ok: bool
    note: str = ""
    status: int = 0
    code: str = ""
    message: str = ""
    unavailable: bool = False  # no credential on this machine: nothing could be asked

    def said(self) -> str:
        """Graph's answer in a few words, e.g. ``403 ErrorAccessDenied: Access is denied.``"""
        head = " ".join(p for p in (str(self.status) if self.status else "", self.code) if p)
        return f"{head}: {self.message}" if head and self.message else head or self.message


# ================================================================== secrets


def unresolved_references(env: Mapping[str, str]) -> list[str]:
    """Names of settings whose value is still a Key Vault reference: the platform could not
    resolve it (missing secret, or the identity lacks 'Key Vault Secrets User')."""
    return sorted(k for k, v in env.items() if v.strip().startswith(KEY_VAULT_REFERENCE))


def key_vault_check(env: Mapping[str, str]) -> Check:
    names = unresolved_references(env)
    if not names:
        return Check("secrets.key_vault", "ok", "no setting still reads '@Microsoft.KeyVault(...)'")
    return Check(
        "secrets.key_vault",
        "fail",
        f"{', '.join(names)} still read{'s' if len(names) == 1 else ''} "
        "'@Microsoft.KeyVault(...)': the platform did not resolve the reference",
        "check that each secret exists in the vault and that the app's identity has 'Key Vault "
        "Secrets User' (the portal shows each reference's status), then restart the app",
    )


def api_key_check(ref: str, error: str = "", value: str | None = None) -> Check:
    """The mailbox's API key reference: resolved to a value that is not itself an unresolved
    Key Vault reference.  The value is never shown."""
    name = "secrets.api_key"
    if error:
        return Check(name, "fail", f"{ref} cannot be read: {error}", f"create the secret {ref}")
    if value is None or not value.strip():
        return Check(name, "fail", f"{ref} is empty", f"put the user's API key in {ref}")
    if value.strip().startswith(KEY_VAULT_REFERENCE):
        return Check(
            name,
            "fail",
            f"{ref} still reads '@Microsoft.KeyVault(...)': the reference was not resolved",
            "check the secret and the app identity's 'Key Vault Secrets User', then restart",
        )
    return Check(name, "ok", f"{ref} resolves")


# ================================================================== Workbooks


def queues_check(my_queues: Mapping[str, int], wanted: Mapping[str, str]) -> Check:
    """The login's ``my_queues`` hold the user's personal queue of each type the two-way
    streams scope by (``wanted``: queue class -> what it holds)."""
    found = [f"{what} {my_queues[q]}" for q, what in wanted.items() if q in my_queues]
    missing = [what for q, what in wanted.items() if q not in my_queues]
    if not missing:
        return Check("workbooks.my_queues", "ok", f"the user's queues: {', '.join(found)}")
    return Check(
        "workbooks.my_queues",
        "warn",
        f"the login names no personal queue for {', '.join(missing)}: only watched records "
        "and queues the policy adds count as the user's",
        "add the team queues to the mailbox policy's people_queues / activity_queues",
    )


# ================================================================== Graph


def token_check(probe: Probe, claims: Mapping[str, Any] | None) -> Check:
    name = "graph.token"
    if probe.ok:
        app = f" for app {claims.get('appid') or claims.get('azp')}" if claims else ""
        return Check(name, "ok", f"token acquired{app}")
    if probe.unavailable:
        return Check(
            name,
            "warn",
            f"no credential on this machine ({probe.message}): the Graph checks were not made",
            "run doctor where the service runs: GET /api/doctor/{mailbox} (function key)",
        )
    return Check(
        name,
        "fail",
        f"no token: {probe.said()}",
        "check GRAPH_TENANT_ID, GRAPH_CLIENT_ID and the client secret or federated credential "
        f"({APP_REGISTRATION} section 4)",
    )


@dataclass(frozen=True)
class RoleNeed:
    """An application permission the service needs, what in a token satisfies it, and the
    stream whose read shows it granted some other way (Exchange RBAC for Applications grants
    Mail, Contacts, Calendars and MailboxSettings without putting them in the token)."""

    permission: str
    accepts: tuple[str, ...]
    probe: str
    why: str
    writes: bool = True
    exchange: bool = True  # Exchange RBAC for Applications can grant it instead
    essential: bool = True
    read_only: tuple[str, ...] = ()


ROLE_NEEDS: tuple[RoleNeed, ...] = (
    RoleNeed("Mail.Read", ("Mail.Read", "Mail.ReadWrite"), "sent", "read Sent Items", writes=False),
    RoleNeed(
        "Contacts.ReadWrite",
        ("Contacts.ReadWrite",),
        "contacts",
        "two-way contacts",
        read_only=("Contacts.Read",),
    ),
    RoleNeed(
        "Calendars.ReadWrite",
        ("Calendars.ReadWrite",),
        "calendar",
        "two-way meetings",
        read_only=("Calendars.Read",),
    ),
    RoleNeed(
        "Tasks.ReadWrite.All",
        ("Tasks.ReadWrite.All",),
        "todo",
        "To Do tasks",
        exchange=False,  # neither Exchange mechanism covers Tasks.*: Entra consent only
        read_only=("Tasks.Read.All",),
    ),
    RoleNeed(
        "MailboxSettings.Read",
        ("MailboxSettings.Read", "MailboxSettings.ReadWrite"),
        "settings",
        "the Outlook time zone when neither the policy nor Workbooks names one",
        writes=False,
        essential=False,
    ),
)


@dataclass
class _Roles:
    missing: list[str] = field(default_factory=list)  # essential, absent
    optional: list[str] = field(default_factory=list)  # non-essential, absent
    read_only: list[str] = field(default_factory=list)
    via_exchange: list[str] = field(default_factory=list)  # absent, but the read works
    unverified: list[str] = field(default_factory=list)  # ... and writing is not verified


def _sort_roles(
    granted: frozenset[str], probes: Mapping[str, Probe], settings_needed: bool
) -> _Roles:
    out = _Roles()
    for need in ROLE_NEEDS:
        if not need.essential and not settings_needed:
            continue
        if any(r in granted for r in need.accepts):
            continue
        read = probes.get(need.probe)
        if any(r in granted for r in need.read_only):
            out.read_only.append(need.permission)  # the read works, the writes will not
        elif need.exchange and read is not None and read.ok:
            (out.unverified if need.writes else out.via_exchange).append(need.permission)
        elif need.essential:
            out.missing.append(need.permission)
        else:
            out.optional.append(need.permission)
    return out


def roles_check(
    claims: Mapping[str, Any] | None, probes: Mapping[str, Probe], *, settings_needed: bool
) -> Check:
    """The application permissions the service needs, read from the token's ``roles`` claim
    and, for those Exchange can grant instead, from whether the matching read works."""
    name = "graph.roles"
    if claims is None:
        return Check(
            name,
            "warn",
            "the token's roles could not be read (not a JWT); the stream checks show what works",
        )
    roles = claims.get("roles")
    granted = frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset()
    found = _sort_roles(granted, probes, settings_needed)
    grant = (
        f"grant the application permission(s) and admin consent ({APP_REGISTRATION} sections "
        "2-3), or with RBAC for Applications assign 'Application <permission>' in Exchange "
        "(section 5A; not for Tasks.*); a new token carries them"
    )
    problems = []
    if found.missing:
        problems.append(f"missing {', '.join(found.missing)}")
    if found.read_only:
        problems.append(f"only the read variant of {', '.join(found.read_only)} (the sync writes)")
    if problems:
        return Check(name, "fail", "; ".join(problems), grant)
    notes = []
    if found.unverified:
        notes.append(
            f"{', '.join(found.unverified)} not in the token: reading works (Exchange RBAC for "
            "Applications?), writing is not verified"
        )
    if found.optional:
        notes.append(f"{', '.join(found.optional)} missing: time zone from Workbooks or UTC")
    if notes:
        return Check(name, "warn", "; ".join(notes), grant)
    text = f"the token grants {', '.join(sorted(granted)) or 'nothing'}"
    if found.via_exchange:
        text += f"; {', '.join(found.via_exchange)} through Exchange (the read works)"
    return Check(name, "ok", text)


def _forbidden_fix(mailbox: str, permission: str, probe: Probe) -> str:
    if "odata is disabled" in probe.message.lower():
        return (
            f"add {mailbox} to the mail-enabled security group the app's Exchange scope names "
            "(RBAC for Applications management scope, or application access policy), then "
            "allow up to an hour; confirm with Test-ServicePrincipalAuthorization or "
            f"Test-ApplicationAccessPolicy ({APP_REGISTRATION} section 5)"
        )
    return (
        f"grant {permission} ({APP_REGISTRATION} section 2) or, with RBAC for Applications, "
        f"a role assignment whose scope includes {mailbox} (section 5A)"
    )


def mailbox_check(mailbox: str, probe: Probe) -> Check:
    """Whether Graph reaches the mailbox at all (its Sent Items folder)."""
    name = "graph.mailbox"
    if probe.ok:
        return Check(name, "ok", f"Graph reaches {mailbox}'s mailbox{probe.note}")
    if probe.status == 403:
        scope = "odata is disabled" in probe.message.lower()
        why = (
            "the app's Exchange scope (RBAC for Applications or an application access policy) "
            "leaves this mailbox out"
            if scope
            else "the app may not read this mailbox's mail"
        )
        return Check(
            name,
            "fail",
            f"Graph refused {mailbox} ({probe.said()}): {why}",
            _forbidden_fix(mailbox, "Mail.Read", probe),
        )
    if probe.status == 404:
        return Check(
            name,
            "fail",
            f"Graph has no mailbox {mailbox} ({probe.said()})",
            "check the address (or --graph-user with the user's object id) and that the user "
            "has an Exchange Online mailbox",
        )
    if probe.status == 401:
        return Check(name, "fail", f"Graph refused the token ({probe.said()})", "")
    return Check(name, "fail", f"Graph did not answer for {mailbox}: {probe.said()}", "try again")


STREAMS: tuple[tuple[str, str, str], ...] = (
    # (probe, what, the permission it needs)
    ("sent", "Sent Items", "Mail.Read"),
    ("contacts", "contacts", "Contacts.ReadWrite"),
    ("calendar", "calendar", "Calendars.ReadWrite"),
    ("todo", "default To Do list", "Tasks.ReadWrite.All"),
)


def stream_checks(mailbox: str, probes: Mapping[str, Probe]) -> list[Check]:
    """One check per stream the service reads: the read worked, or Graph's answer."""
    out = []
    for key, what, permission in STREAMS:
        name = f"graph.stream.{key}"
        probe = probes.get(key)
        if probe is None:
            out.append(Check(name, "warn", f"{what}: not checked"))
        elif probe.ok:
            out.append(Check(name, "ok", f"{what} readable{probe.note}"))
        elif probe.status == 403:
            fix = _forbidden_fix(mailbox, permission, probe)
            out.append(Check(name, "fail", f"{what} not readable: {probe.said()}", fix))
        else:
            out.append(Check(name, "fail", f"{what} not readable: {probe.said()}", "try again"))
    return out


def settings_check(probe: Probe | None, *, needed: bool) -> Check:
    """The mailbox's Outlook settings (its time zone), read only when the mailbox's zone is
    not fixed by its policy."""
    name = "graph.mailbox_settings"
    if not needed:
        return Check(name, "ok", "not needed: the mailbox policy sets the time zone")
    if probe is None:
        return Check(name, "warn", "not checked")
    if probe.ok:
        return Check(name, "ok", f"Outlook settings readable{probe.note}")
    return Check(
        name,
        "warn",
        f"Outlook settings not readable ({probe.said()}): the zone comes from Workbooks or is UTC",
        "grant MailboxSettings.Read, or set the mailbox policy's time_zone",
    )


def webhook_url_check(public_base_url: str | None, notification_url: str, live: bool) -> Check:
    """The URL Graph notifies: set, and https where Graph is live (Graph refuses http)."""
    name = "graph.webhook_url"
    if not public_base_url:
        return Check(
            name,
            "fail",
            "SYNC_PUBLIC_BASE_URL is not set: no subscription can be created, so Graph cannot "
            "notify; streams sync on the timers only",
            "set SYNC_PUBLIC_BASE_URL to the app's public https URL",
        )
    if not notification_url.startswith("https://"):
        if not live:
            return Check(
                name, "ok", f"{notification_url} (plain http: accepted by the local Graph only)"
            )
        return Check(
            name,
            "fail",
            f"{notification_url} is not https: Graph notifies https endpoints only",
            "set SYNC_PUBLIC_BASE_URL to the app's https URL",
        )
    return Check(name, "ok", notification_url)


def handshake_check(notification_url: str, probe: Probe, cleanup: Probe | None = None) -> Check:
    """What Graph answered to a short test subscription (it validates the notification and
    lifecycle URLs before it answers), and to deleting it again (``cleanup``)."""
    name = "graph.webhook_handshake"
    if probe.ok and (cleanup is None or cleanup.ok):
        return Check(
            name,
            "ok",
            f"Graph validated {notification_url} (test subscription created and deleted)",
        )
    if probe.ok and cleanup is not None:
        return Check(
            name,
            "warn",
            f"Graph validated {notification_url}, but the test subscription{probe.note} could "
            f"not be deleted ({cleanup.said()})",
            "nothing to do: it lapses within the hour",
        )
    if probe.status == 400:
        return Check(
            name,
            "fail",
            f"Graph's validation handshake failed: {probe.said()}",
            f"make {notification_url} reachable from the internet over https and answer "
            "?validationToken=... with 200 text/plain within 10 s (is the app running? IP "
            "restrictions?)",
        )
    if probe.status == 403:
        return Check(
            name,
            "fail",
            f"Graph refused the test subscription: {probe.said()}",
            "grant Contacts.Read or more (subscriptions need the read permission) for this mailbox",
        )
    return Check(name, "fail", f"the test subscription failed: {probe.said()}", "try again")


# ================================================================== Workbooks webhooks

# An address source left to the poll for this reason is how the service is meant to run (no
# built-in trigger for it, e.g. Contact Details without WORKBOOKS_CONTACT_DETAILS_TRIGGER_ID).
NO_TRIGGER = "no webhook trigger for it"
RESUBSCRIBE = (
    "`python -m sync mailboxes enable <mailbox>` (or the console's Enable) makes them again "
    "now; otherwise the next subscription renewal does (SYNC_RENEW_SCHEDULE, every 4 hours)"
)


def workbooks_webhooks_check(
    why_not: str,
    stored: HookTenant | None,
    live: Iterable[Existing] | None,
    *,
    turned_off: bool = False,
    denied: str = "",
    unread: str = "",
) -> Check:
    """How new People, Sales Leads and Contact Details reach the service for this mailbox's
    tenant: by a Workbooks webhook (seconds) or by the created-since poll (minutes), and
    whether the subscriptions the service stored still exist in Workbooks.

    ``why_not``: why webhooks are not wanted ("" when they are; ``turned_off``: because the
    admin said so, ``WORKBOOKS_WEBHOOKS=false``); ``stored``: the tenant's
    ``HookTenant`` (None: not set up yet); ``live``: the subscriptions Workbooks lists now
    (None when not read: ``denied`` says the key may not manage triggers, ``unread`` why else).
    """
    name = "workbooks.webhooks"
    poll = "found by the created-since poll within minutes (SYNC_RETRO_POLL_SCHEDULE)"
    if why_not:
        status: CheckStatus = "ok" if turned_off else "warn"
        fix = "" if status == "ok" else "set SYNC_PUBLIC_BASE_URL to the app's public https URL"
        return Check(
            name, status, f"no Workbooks webhooks ({why_not}): new records are {poll}", fix
        )
    if denied:
        return Check(
            name,
            "warn",
            f"{denied}: new People, Sales Leads and Contact Details are {poll}, not seconds",
            "let the API key's user manage webhook subscriptions (admin/triggers), or set "
            "WORKBOOKS_WEBHOOKS=false to say the poll is intended",
        )
    if stored is None or stored.verified_at is None:
        return Check(
            name,
            "warn",
            "not set up yet for this tenant: new records are found by the poll until the "
            "mailbox's next subscription renewal subscribes",
            RESUBSCRIBE,
        )
    hooks = sorted(stored.subscriptions, key=lambda s: s.source)
    polled = dict(sorted(stored.polled_sources.items()))
    covered = ", ".join(s.source for s in hooks) or "none"
    tail = ""
    if polled:
        tail = "; polled: " + "; ".join(f"{s} ({why})" for s, why in polled.items())
    if live is None:
        return Check(
            name,
            "warn",
            f"webhooks: {covered}{tail}; Workbooks' list of subscriptions not read ({unread})",
            "try again",
        )
    listed = {h.subscription_id: h for h in live}
    gone = [s for s in hooks if s.subscription_id not in listed]
    off = [
        s for s in hooks if s.subscription_id in listed and not listed[s.subscription_id].enabled
    ]
    if gone or off:
        parts = [
            f"{s.source} (subscription {s.subscription_id}) deleted in Workbooks" for s in gone
        ]
        parts += [f"{s.source} (subscription {s.subscription_id}) disabled" for s in off]
        return Check(
            name,
            "warn",
            f"{'; '.join(parts)}: new records of "
            f"{'that source' if len(gone) + len(off) == 1 else 'those sources'} are not seen "
            f"until the subscription is made again{tail}",
            RESUBSCRIBE,
        )
    refused = {s: why for s, why in polled.items() if why != NO_TRIGGER}
    status = "warn" if refused else "ok"
    message = f"webhooks: {covered} ({len(hooks)} live in Workbooks){tail}"
    fix = f"see why each source is polled; once mended, {RESUBSCRIBE}" if refused else ""
    return Check(name, status, message, fix)
