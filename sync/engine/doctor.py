"""``doctor``: check one mailbox's setup live, on the tenant the service is pointed at.

The reads are made here and at the edges; what each answer means is decided in
``sync.core.doctor``.  In order:

* **secrets**: no setting still reads ``@Microsoft.KeyVault(`` (a reference the platform did
  not resolve), and the mailbox's ``api_key_ref`` resolves to a key;
* **Workbooks** (``sync.engine.clients.workbooks_checks``): login with the key, the user and
  their time zone, every schema declaration and the email-link strategy; then the login's
  personal queues (``my_queues``), and how new records reach the service: the tenant's
  webhook subscriptions as stored against those Workbooks lists now
  (``sync.engine.workbooks_webhooks.doctor_check``);
* **Graph** (``sync.graph.probes``): a token from the app's credential and the application
  permissions in it; the mailbox itself; one read per stream (Sent Items, contacts,
  calendar, the default To Do list) and the Outlook settings; the public webhook URL, and a
  test subscription whose validation handshake Graph runs against it
  (``sync.engine.subscriptions.handshake_test``).

Workbooks and Graph are checked side by side.  ``diagnose`` does not touch state;
``run_doctor`` also records the report (``status`` shows the last one).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime

from sync.core import doctor
from sync.core.checks import Check
from sync.core.doctor import DoctorReport, Probe
from sync.core.errors import SyncError
from sync.core.state_models import Mailbox
from sync.engine import workbooks_webhooks
from sync.engine.clients import graph_client, workbooks_checks, workbooks_client
from sync.runtime import Services
from sync.secrets import SecretError, secret_provider

log = logging.getLogger(__name__)

# Queue classes the two-way streams scope "assigned to me" by, and what they hold.
WANTED_QUEUES: Mapping[str, str] = {
    "Private::Crm::PersonQueue": "People",
    "Private::Activity::ActivityQueue": "Activities",
}
GRAPH_CHECKS = (
    "graph.roles",
    "graph.mailbox",
    "graph.stream.sent",
    "graph.stream.contacts",
    "graph.stream.calendar",
    "graph.stream.todo",
    "graph.mailbox_settings",
    "graph.webhook_url",
    "graph.webhook_handshake",
)


async def diagnose(
    services: Services, mailbox: Mailbox, *, env: Mapping[str, str] | None = None
) -> DoctorReport:
    """Every check for ``mailbox`` (registered or about to be), now."""
    now = datetime.now(UTC)
    secrets = [doctor.key_vault_check(os.environ if env is None else env)]
    key = await _api_key(services, mailbox)
    secrets.append(key)
    workbooks, graph = await asyncio.gather(
        _section("workbooks", _workbooks(services, mailbox, key)),
        _section("graph", _graph(services, mailbox, now)),
    )
    return DoctorReport(mailbox.id, now, (*secrets, *workbooks, *graph))


async def _section(name: str, checks: Awaitable[list[Check]]) -> list[Check]:
    """A section's checks; one that stops on an error it did not expect (Graph unreachable
    while deriving the zone, a Workbooks outage mid-way) is a failing check, never a crash."""
    try:
        return await checks
    except SyncError as exc:
        log.warning("doctor: the %s checks stopped: %s", name, exc)
        return [Check(f"{name}.checks", "fail", f"the {name} checks stopped: {exc}", "try again")]


async def run_doctor(services: Services, mailbox: Mailbox) -> DoctorReport:
    """``diagnose`` and record the report as the mailbox's last one."""
    report = await diagnose(services, mailbox)
    await services.store.doctor.put(report)
    log.info("doctor %s: %s", mailbox.id, report.summary())
    return report


# ------------------------------------------------------------------ secrets and Workbooks


async def _api_key(services: Services, mailbox: Mailbox) -> Check:
    provider = services.cache.secrets
    if provider is None:
        provider = services.cache.secrets = secret_provider(services.settings.app)
    try:
        value = await provider.get(mailbox.api_key_ref)
    except SecretError as exc:
        return doctor.api_key_check(mailbox.api_key_ref, error=str(exc))
    return doctor.api_key_check(mailbox.api_key_ref, value=value)


async def _workbooks(services: Services, mailbox: Mailbox, key: Check) -> list[Check]:
    if key.status == "fail":
        return doctor.skipped(["workbooks.login"], "the API key cannot be read")
    checks = await workbooks_checks(services, mailbox)
    if not any(c.name == "workbooks.login" and c.status == "ok" for c in checks):
        return checks
    try:
        login = (await workbooks_client(services, mailbox)).login_info
    except SecretError:  # the key went away meanwhile: the login check already says enough
        return checks
    if login is not None:
        checks.append(doctor.queues_check(login.my_queues, WANTED_QUEUES))
    checks.append(await workbooks_webhooks.doctor_check(services, mailbox))
    return checks


# ------------------------------------------------------------------ Graph


async def _graph(services: Services, mailbox: Mailbox, now: datetime) -> list[Check]:
    from sync.engine.subscriptions import NOTIFICATIONS_PATH, handshake_test
    from sync.graph import probes

    graph = graph_client(services)
    token, claims = await probes.token(graph)
    first = doctor.token_check(token, claims)
    if not token.ok:
        return [first, *doctor.skipped(GRAPH_CHECKS, "no Graph token")]
    user = mailbox.graph_id
    reach = await probes.mailbox(graph, user)
    settings_needed = mailbox.policy.time_zone is None
    found: dict[str, Probe] = {}
    if reach.ok or reach.status == 403:  # out of the Exchange scope: To Do is still reachable
        found = await probes.streams(graph, user, now, settings=settings_needed)
    checks = [
        first,
        doctor.roles_check(claims, found, settings_needed=settings_needed),
        doctor.mailbox_check(mailbox.id, reach),
        *doctor.stream_checks(mailbox.id, found),
        doctor.settings_check(found.get("settings"), needed=settings_needed),
    ]
    base = services.settings.app.public_base_url
    url = f"{(base or '').rstrip('/')}{NOTIFICATIONS_PATH}"
    live = services.settings.graph.base_url.startswith("https://")
    url_check = doctor.webhook_url_check(base, url, live)
    checks.append(url_check)
    if url_check.status == "fail":
        return [*checks, *doctor.skipped(["graph.webhook_handshake"], "no usable URL")]
    if not reach.ok:
        return [
            *checks,
            *doctor.skipped(["graph.webhook_handshake"], "the mailbox is not reachable"),
        ]
    created, deleted = await handshake_test(services, mailbox)
    return [*checks, doctor.handshake_check(url, created, deleted)]
