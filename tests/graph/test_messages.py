"""Single-message reads (``sync.graph.messages``): the real client against the sandbox."""

from __future__ import annotations

from devkit.sandbox.graph import SandboxHandle
from devkit.sandbox.graph.state import Mailbox
from sync.graph.client import GraphClient
from sync.graph.messages import NO_BODY, carried_body, message_body, read_body, read_message

from .conftest import UPN

HTML = {"contentType": "html", "content": "<p>Hello</p>"}


def _sent(handle: SandboxHandle, box: Mailbox, data: dict[str, object]) -> str:
    cont = handle.sandbox.state.container(box, "message", "sentitems")
    assert cont is not None
    return handle.sandbox.create_item(box, cont, data).immutable_id


async def test_read_message_with_its_body_and_the_body_alone(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    mid = _sent(sandbox, mailbox, {"subject": "Quote", "body": HTML})
    message = await read_message(graph, UPN, mid)
    assert message is not None and message.id == mid and message.subject == "Quote"
    assert carried_body(message) == ("<p>Hello</p>", "html")
    assert await read_body(graph, UPN, mid) == ("<p>Hello</p>", "html")
    body_reads = [r for r in sandbox.sandbox.requests if "select=body" in r[1]]
    assert len(body_reads) == 1 and "/messages/" in body_reads[0][1]


async def test_message_body_reads_only_when_the_item_came_without_one(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    mid = _sent(sandbox, mailbox, {"subject": "Quote", "body": HTML})
    message = await read_message(graph, UPN, mid)
    assert message is not None
    before = len(sandbox.sandbox.requests)
    assert await message_body(graph, UPN, message) == ("<p>Hello</p>", "html")
    assert len(sandbox.sandbox.requests) == before  # carried: no request
    bare = message.model_copy(update={"body": None})
    assert carried_body(bare) == NO_BODY
    assert await message_body(graph, UPN, bare) == ("<p>Hello</p>", "html")
    assert len(sandbox.sandbox.requests) == before + 1  # one GET of the body


async def test_a_message_that_is_gone_reads_as_none(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    cont = sandbox.sandbox.state.container(mailbox, "message", "sentitems")
    assert cont is not None
    item = sandbox.sandbox.create_item(mailbox, cont, {"subject": "Soon gone", "body": HTML})
    sandbox.sandbox.delete_item(mailbox, cont, item)
    assert await read_message(graph, UPN, item.immutable_id) is None
    assert await read_body(graph, UPN, item.immutable_id) == NO_BODY
