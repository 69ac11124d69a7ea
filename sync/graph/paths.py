"""Every Graph path the service sends, built one way.

Mailbox and item ids are percent-encoded whole: immutable ids hold ``/``, ``+`` and ``=``, and
a UPN holds ``@`` (Graph accepts it encoded, as the SDK's URI templates send it).
"""

from __future__ import annotations

from urllib.parse import quote

SUBSCRIPTIONS = "/subscriptions"


def segment(value: str) -> str:
    """One path segment, with every reserved character encoded."""
    return quote(value, safe="")


def user_path(mailbox: str) -> str:
    """The path of one mailbox's resources (``mailbox``: its UPN or object id)."""
    return f"/users/{segment(mailbox)}"


def time_zone_path(mailbox: str) -> str:
    """The mailbox's own time zone setting (``mailboxSettings/timeZone``)."""
    return f"{user_path(mailbox)}/mailboxSettings/timeZone"


def message_path(mailbox: str, message_id: str) -> str:
    return f"{user_path(mailbox)}/messages/{segment(message_id)}"


def folder_delta_path(mailbox: str, folder: str, select: str) -> str:
    """A new delta round over one mail folder's messages (well-known name or id)."""
    return f"{user_path(mailbox)}/mailFolders/{segment(folder)}/messages/delta?$select={select}"


def subscription_path(subscription_id: str) -> str:
    return f"{SUBSCRIPTIONS}/{segment(subscription_id)}"


def mail_folder_path(mailbox: str, folder: str) -> str:
    """One mail folder itself (a well-known name such as ``sentitems`` works)."""
    return f"{user_path(mailbox)}/mailFolders/{segment(folder)}"


def folder_messages_path(mailbox: str, folder: str) -> str:
    return f"{mail_folder_path(mailbox, folder)}/messages"


def contacts_path(mailbox: str) -> str:
    """The default contacts folder's contacts."""
    return f"{user_path(mailbox)}/contacts"


def calendar_view_path(mailbox: str, start: str, end: str) -> str:
    """The primary calendar's instances in [start, end) (ISO times; never an empty window)."""
    return f"{user_path(mailbox)}/calendarView?startDateTime={start}&endDateTime={end}"


def todo_lists_path(mailbox: str) -> str:
    return f"{user_path(mailbox)}/todo/lists"


def todo_tasks_path(mailbox: str, list_id: str) -> str:
    return f"{todo_lists_path(mailbox)}/{segment(list_id)}/tasks"
