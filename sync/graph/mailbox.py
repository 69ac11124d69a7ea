"""The mailbox's Outlook settings the service reads: its time zone (``mailboxSettings``).

Outlook stores the zone the user picked, usually as a Windows zone id ("GMT Standard Time"),
sometimes as an IANA name; it is returned as an IANA name, or None when the setting cannot be
read (no ``MailboxSettings.Read``) or names no zone we know.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sync.core.errors import InvalidRequest, NotFound, ReauthRequired
from sync.core.mapping.times import WINDOWS_ZONES
from sync.graph.paths import time_zone_path

if TYPE_CHECKING:
    from sync.graph.client import GraphClient

log = logging.getLogger(__name__)


def iana_name(name: str) -> str | None:
    """An Outlook zone name (Windows id or IANA) as an IANA name; None if unknown."""
    text = name.strip()
    text = WINDOWS_ZONES.get(text, text)
    if not text:
        return None
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return text


async def outlook_time_zone(graph: GraphClient, mailbox: str) -> str | None:
    """The mailbox's Outlook time zone as an IANA name, or None (unreadable or unknown)."""
    try:
        resp = await graph.request("GET", time_zone_path(mailbox), mailbox=mailbox)
    except (NotFound, ReauthRequired, InvalidRequest) as exc:
        log.info("mailbox settings of %s unreadable: %s", mailbox, type(exc).__name__)
        return None
    value = resp.json().get("value")
    return iana_name(value) if isinstance(value, str) else None
