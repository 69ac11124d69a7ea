"""Reading one Outlook message (or just its body) through ``GraphClient.request``.

The Sent Items delta itself is ``GraphClient.sent_messages``; these are the single-item reads the
email linking needs besides it: the message behind an older ``EmailRecord`` (retroactive linking,
attach on request) and the body of a delta item that came without one.  No Graph SDK import here:
the client passed in carries it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sync.core.errors import NotFound
from sync.core.graph_models import Message
from sync.graph.paths import message_path

if TYPE_CHECKING:
    from sync.graph.client import GraphClient

Body = tuple[str, str]  # (content, content type: "text" or "html")
NO_BODY: Body = ("", "text")


async def read_message(graph: GraphClient, mailbox: str, message_id: str) -> Message | None:
    """One message with every field (its body included); None if it is gone."""
    try:
        resp = await graph.request("GET", message_path(mailbox, message_id), mailbox=mailbox)
    except NotFound:
        return None
    return Message.model_validate(resp.json())


async def read_body(graph: GraphClient, mailbox: str, message_id: str) -> Body:
    """The body of one message alone (``$select=body``); ``NO_BODY`` if it is gone."""
    path = message_path(mailbox, message_id) + "?$select=body"
    try:
        resp = await graph.request("GET", path, mailbox=mailbox)
    except NotFound:
        return NO_BODY
    body = resp.json().get("body") or {}
    return str(body.get("content") or ""), str(body.get("contentType") or "text")


def carried_body(message: Message) -> Body:
    """The body the message was read with (``NO_BODY`` if the read did not select it)."""
    if message.body is None:
        return NO_BODY
    return message.body.content, message.body.content_type or "text"


async def message_body(graph: GraphClient, mailbox: str, message: Message) -> Body:
    """The body of a delta item: carried when the reader selected it, else one GET."""
    if message.body is not None and message.body.content:
        return carried_body(message)
    return await read_body(graph, mailbox, message.id)
