"""Email linking where the tenant has no usable mechanism, where the mechanism goes away under
a running service, and the status emails are stored with.  (Every other email-linking test
runs under each mechanism: see the ``strategy`` fixture.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

import sync.engine.emails
import sync.engine.people  # noqa: F401  (registers the processors)
from devkit.sandbox.workbooks import SandboxConfig
from devkit.sandbox.workbooks.control import configure
from sync.core.email_linking import CASE, RecordRef
from sync.core.errors import InvalidRequest
from sync.core.jobs import JobKind, Stream
from sync.engine.clients import workbooks_checks
from sync.engine.emails import attach_message, explain
from tests.support.world import World, world_running

from .conftest import ANN

SHARED = ["Workbooks"]


@asynccontextmanager
async def world_with(azurite: str, **config: Any) -> AsyncIterator[World]:
    wcfg = SandboxConfig(sim_controls=True, concurrency_cap=None, **config)
    async with world_running(azurite, workbooks_config=wcfg) as w:
        await w.add_mailbox(ANN, internal_domains=["example.com"])
        yield w


def live_emails(w: World) -> list[dict[str, Any]]:
    return [e for e in w.emails() if not e.get("is_deleted")]


async def test_no_mechanism_creates_no_email_fails_the_check_and_says_why(
    azurite_connection: str,
) -> None:
    async with world_with(azurite_connection, email_link_strategy="none") as w:
        w.person("Pat", "pat@cust.com")
        case_id = w.case()
        mid = w.send(ANN, to=["pat@cust.com", "new@cust.com"], categories=SHARED)
        run = await w.run(ANN)
        assert run.status == "ok" and w.emails() == []
        assert run.counts.get("linking_disabled") == 1 and "state_pending" in run.counts
        assert "email linking is disabled: the tenant's metadata shows no link type" in run.message
        record = await explain(w.services, ANN, mid)
        assert record["state"] == "pending" and record["linked"] == []
        # retroactive linking creates nothing either
        w.person("New", "new@cust.com")
        people = await w.run(ANN, Stream.PEOPLE, JobKind.RECONCILE)
        assert people.status == "ok" and w.emails() == []
        assert "email linking is disabled" in people.message
        # nor does attaching on request
        mailbox = await w.services.store.mailboxes.get(ANN)
        assert mailbox is not None
        with pytest.raises(InvalidRequest, match="email linking is disabled"):
            await attach_message(w.services, mailbox, mid, RecordRef(CASE, case_id))
        assert w.emails() == []
        checks = {c.name: c for c in await workbooks_checks(w.services, mailbox)}
        assert checks["workbooks.email_link_strategy"].status == "fail"
        assert checks["workbooks.email_link_strategy"].fix
        assert checks["workbooks.login"].status == "ok"
        assert checks["mailbox.time_zone"].message == f"{ANN} syncs in Europe/London (derived)"


async def test_a_link_endpoint_that_goes_away_leaves_no_unlinked_email(
    azurite_connection: str,
) -> None:
    async with world_with(azurite_connection) as w:
        w.person("Pat", "pat@cust.com")
        w.send(ANN, to=["pat@cust.com"], categories=SHARED)
        assert (await w.run(ANN)).status == "ok" and len(live_emails(w)) == 1
        # the tenant moves its link type: the service still has the old path in its schema
        configure(w.workbooks.state, {"email_link_path": "email/moved_links"})
        mid = w.send(ANN, to=["pat@cust.com"], subject="second", categories=SHARED)
        run = await w.run(ANN)
        assert run.status == "ok", run.message
        assert run.counts.get("emails_created") == 1 and run.counts.get("emails_removed") == 1
        assert len(live_emails(w)) == 1  # the new one was removed again: no orphan
        record = await explain(w.services, ANN, mid)
        assert record["state"] == "failed" and record["workbooks_email_id"] is None
        assert "the email was removed from Workbooks" in record["explanation"]["error"]
        assert "email linking is disabled: the link endpoint email/email_links" in run.message
        # for the rest of the session nothing more is created
        w.send(ANN, to=["pat@cust.com"], subject="third", categories=SHARED)
        run = await w.run(ANN)
        assert run.status == "ok" and "emails_created" not in run.counts
        assert len(w.emails()) == 2 and len(live_emails(w)) == 1


async def test_a_stored_status_is_used_when_the_tenant_has_one(azurite_connection: str) -> None:
    async with world_with(
        azurite_connection, email_status_values=["DRAFT", "SEND", "SENT", "FILED"]
    ) as w:
        w.person("Pat", "pat@cust.com")
        w.send(ANN, to=["pat@cust.com"], categories=SHARED)
        assert (await w.run(ANN)).status == "ok"
        (email,) = w.emails()
        assert email["status"] == "FILED" and len(w.links()) == 1
