"""Clients for a run: one Graph client per process, one Workbooks client per mailbox identity.

Both are cached on the process-wide ``Services`` (clients hold connection pools and, for
Workbooks, a logged-in session).  The Workbooks API key is resolved through the secrets provider
on first use and the cached client is rebuilt if the key behind the reference changes (rotation).
The Graph SDK is imported here lazily, never on the webhook path.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from sync.core.state_models import Mailbox
from sync.runtime import Services
from sync.secrets import secret_provider

if TYPE_CHECKING:
    from sync.graph.client import GraphClient
    from sync.workbooks.client import WorkbooksClient


def graph_client(services: Services) -> GraphClient:
    client: Any = services.cache.get("graph")
    if client is None:
        from sync.graph.client import GraphClient

        client = GraphClient.create(services.settings.graph)
        services.cache["graph"] = client
        services.closers.append(client.aclose)
    return client  # type: ignore[no-any-return]


async def workbooks_client(services: Services, mailbox: Mailbox) -> WorkbooksClient:
    from sync.workbooks.client import WorkbooksClient
    from sync.workbooks.config import ClientConfig, WorkbooksIdentity

    provider = services.cache.get("secrets")
    if provider is None:
        provider = services.cache["secrets"] = secret_provider(services.settings.app)
    key = await provider.get(mailbox.api_key_ref)
    fingerprint = hashlib.sha256(f"{mailbox.workbooks_url}\0{key}".encode()).hexdigest()
    clients: dict[str, tuple[str, WorkbooksClient]] = services.cache.setdefault("workbooks", {})
    cached = clients.get(mailbox.id)
    if cached and cached[0] == fingerprint:
        return cached[1]
    if cached:
        await cached[1].close()  # the key was rotated: drop the old session
    identity = WorkbooksIdentity(mailbox.workbooks_url, SecretStr(key), mailbox.id)
    client = WorkbooksClient(identity, ClientConfig.from_settings(services.settings.workbooks))
    clients[mailbox.id] = (fingerprint, client)
    services.closers.append(client.close)
    return client
