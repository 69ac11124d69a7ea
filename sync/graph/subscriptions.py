"""Graph's subscription resource on the wire: what a new subscription is sent as and what Graph
answers.  Which subscriptions to create, renew or delete, and in which order, is decided in
``sync.core.subscriptions`` and carried out by ``sync.engine.subscriptions``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sync.core.subscriptions import CHANGE_TYPES
from sync.graph.client import GraphClient, iso_utc, parse_iso


@dataclass(frozen=True)
class Created:
    subscription_id: str
    expires_at: datetime  # what Graph granted, which may be earlier than asked


async def create_subscription(
    graph: GraphClient,
    *,
    resource: str,
    notification_url: str,
    lifecycle_url: str,
    expires_at: datetime,
    client_state: str,
) -> Created:
    """POST /subscriptions for created, updated and deleted items of ``resource``; Graph
    validates both URLs with a handshake before it answers."""
    body = {
        "changeType": CHANGE_TYPES,
        "notificationUrl": notification_url,
        "lifecycleNotificationUrl": lifecycle_url,
        "resource": resource,
        "expirationDateTime": iso_utc(expires_at),
        "clientState": client_state,
    }
    created = await graph.create_subscription(body)
    return Created(str(created["id"]), parse_iso(str(created["expirationDateTime"])))
