"""Clients for a run: one Graph client per process, one Workbooks client per mailbox identity.

Both are cached on the process-wide ``Services`` (clients hold connection pools and, for
Workbooks, a logged-in session).  The Workbooks API key is resolved through the secrets provider
on first use and the cached client is rebuilt if the key behind the reference changes (rotation).
The Graph SDK is imported here lazily, never on the webhook path.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING

from pydantic import SecretStr

from sync.core.checks import Check
from sync.core.state_models import Mailbox
from sync.runtime import Services
from sync.secrets import secret_provider

if TYPE_CHECKING:
    from sync.graph.client import GraphClient
    from sync.workbooks.client import WorkbooksClient

log = logging.getLogger(__name__)
ZONE_TTL_SECONDS = 3600.0  # a zone derived from Outlook is read again after this long
DEFAULT_ZONE = "UTC"


def graph_client(services: Services) -> GraphClient:
    client = services.cache.graph
    if client is None:
        from sync.graph.client import GraphClient

        client = services.cache.graph = GraphClient.create(services.settings.graph)
        services.closers.append(client.aclose)
    return client


def identity_fingerprint(service_url: str, api_key: str) -> str:
    """One client per Workbooks credential: the 5-in-flight cap is per credential, so mailboxes
    that share an API key must share a client."""
    return hashlib.sha256(f"{service_url.rstrip('/')}\0{api_key}".encode()).hexdigest()


async def workbooks_client(services: Services, mailbox: Mailbox) -> WorkbooksClient:
    from sync.workbooks.client import WorkbooksClient
    from sync.workbooks.config import ClientConfig, WorkbooksIdentity

    provider = services.cache.secrets
    if provider is None:
        provider = services.cache.secrets = secret_provider(services.settings.app)
    key = await provider.get(mailbox.api_key_ref)
    fingerprint = identity_fingerprint(mailbox.workbooks_url, key)
    clients = services.cache.workbooks
    owners = services.cache.workbooks_by_mailbox
    previous = owners.get(mailbox.id)
    owners[mailbox.id] = fingerprint
    if previous and previous != fingerprint and previous not in owners.values():
        stale = clients.pop(previous, None)  # the key was rotated: drop the old session
        if stale is not None:
            await stale.close()
    client = clients.get(fingerprint)
    if client is None:
        identity = WorkbooksIdentity(mailbox.workbooks_url, SecretStr(key), mailbox.id)
        client = WorkbooksClient(
            identity,
            ClientConfig.from_settings(services.settings.workbooks),
            shared=services.cache.workbooks_shared,
        )
        clients[fingerprint] = client
        services.closers.append(client.close)
    return client


def forget_schema(services: Services, mailbox_id: str) -> None:
    """Drop the Workbooks schema cached for the mailbox's client (if it has one), so its next
    use reads it again (``WORKBOOKS_SCHEMA_TTL_SECONDS`` keeps it for hours: a tenant that
    changed under it would otherwise refuse every run until then)."""
    from sync.workbooks.tenant import forget

    fingerprint = services.cache.workbooks_by_mailbox.get(mailbox_id)
    client = services.cache.workbooks.get(fingerprint) if fingerprint else None
    if client is not None:
        forget(client)


async def mailbox_time_zone(services: Services, mailbox: Mailbox) -> str:
    """The mailbox's zone (IANA): the policy's when it sets one; else the Workbooks user's zone
    as login.api reports it; else the mailbox's Outlook setting (``mailboxSettings``); else UTC.
    Workbooks first: naive Workbooks times are read in that zone (workbooks-api.md §2.5)."""
    if mailbox.policy.time_zone:
        return mailbox.policy.time_zone
    from sync.workbooks.timezones import iana_zone

    login = await (await workbooks_client(services, mailbox)).ensure_login()
    zone = iana_zone(login.time_zone)
    if zone:
        return zone
    cached = services.cache.time_zones.get(mailbox.id)
    if cached is not None and time.monotonic() - cached[0] < ZONE_TTL_SECONDS:
        return cached[1]
    from sync.graph.mailbox import outlook_time_zone

    zone = await outlook_time_zone(graph_client(services), mailbox.graph_id) or DEFAULT_ZONE
    if zone == DEFAULT_ZONE:
        log.info("no time zone known for %s: using %s", mailbox.id, DEFAULT_ZONE)
    services.cache.time_zones[mailbox.id] = (time.monotonic(), zone)
    return zone


async def workbooks_checks(services: Services, mailbox: Mailbox) -> list[Check]:
    """The Workbooks checks for one mailbox (``doctor``): login, the user's zone, every schema
    declaration and the email-link strategy (``sync.workbooks.tenant.verify``), then the zone
    the mailbox syncs in.  A key that cannot be resolved is a failing check, not an error."""
    from sync.secrets import SecretError
    from sync.workbooks.tenant import verify

    try:
        client = await workbooks_client(services, mailbox)
    except SecretError as exc:
        fix = f"check the secret behind {mailbox.api_key_ref}"
        return [Check("workbooks.api_key", "fail", f"the API key cannot be read: {exc}", fix)]
    checks = await verify(client)
    if all(c.status != "fail" for c in checks if c.name == "workbooks.login"):
        zone = await mailbox_time_zone(services, mailbox)
        source = "the mailbox policy" if mailbox.policy.time_zone else "derived"
        checks.append(Check("mailbox.time_zone", "ok", f"{mailbox.id} syncs in {zone} ({source})"))
    return checks
