"""The product side of Graph's fidelity details, through the real client against the sandbox:
a lost nextLink resumes the round from its delta link, a 401's challenge reaches the error, the
product never sends an empty calendar window, and subscription lifetimes stay under the
10,070 minutes live Graph accepts."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devkit.sandbox.graph import SandboxHandle
from devkit.sandbox.graph.state import Mailbox
from sync.core.errors import InvalidRequest, ReauthRequired, ResyncRequired
from sync.core.graph_models import DeltaPage, Message
from sync.graph import errors, paths
from sync.graph.client import DeltaReader, GraphClient, split_resume
from sync.graph.items import Contacts, Events, checked_window
from sync.graph.subscriptions import create_subscription
from sync.settings import GraphSettings, SettingsError, load_settings
from tests.graph.conftest import UPN, Receiver
from tests.graph.test_client import seed

NOW = datetime.now(UTC)


def _sent(handle: SandboxHandle, box: Mailbox, n: int) -> list[str]:
    return seed(handle, box, "message", "sentitems", n)


def _initial_requests(handle: SandboxHandle, folder: str) -> int:
    """Requests that started a new delta round over ``folder`` (no token: a full read)."""
    return sum(
        1
        for method, path, _headers in handle.sandbox.requests
        if method == "GET"
        and folder in path
        and "/delta" in path
        and "token=" not in path.replace("%24", "$")
    )


async def _ids(reader: DeltaReader[DeltaPage[Message]]) -> list[str]:
    return [m.id async for page in reader for m in page.items]


# ------------------------------------------------------------------ lost nextLinks


async def test_a_lost_next_link_resumes_from_the_last_delta_link(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    _sent(sandbox, mailbox, 3)
    first = graph.sent_messages(UPN, page_size=10)
    assert len(await _ids(first)) == 3
    delta_link = first.delta_link
    new = set(_sent(sandbox, mailbox, 25))

    reader = graph.sent_messages(UPN, delta_link, page_size=10)
    seen: list[str] = []
    async for page in reader:
        seen += [m.id for m in page.items]
        if len(seen) == 10:  # Exchange drops the round's sync state after the first page
            assert sandbox.sandbox.state.stale_next_links() >= 1
    assert set(seen) == new  # nothing older than the delta link was read again
    assert reader.restarts == 1
    assert _initial_requests(sandbox, "sentitems") == 1  # only the very first round was full
    assert (await _ids(graph.sent_messages(UPN, reader.delta_link))) == []


async def test_a_stored_next_link_carries_where_its_round_restarts(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    """Sent items checkpoint mid-round: the stored nextLink resumes from the round's delta
    link when Exchange has dropped it."""
    first = graph.sent_messages(UPN, page_size=10)
    await _ids(first)
    new = set(_sent(sandbox, mailbox, 25))
    reader = graph.sent_messages(UPN, first.delta_link, page_size=10)
    page = await anext(aiter(reader))
    stored = page.next_link
    assert stored is not None
    link, restart = split_resume(stored)
    assert restart == first.delta_link and "#" not in link
    sandbox.sandbox.state.stale_next_links()

    resumed = graph.sent_messages(UPN, stored, page_size=10)
    ids = await _ids(resumed)
    assert set(ids) == new and resumed.restarts == 1
    assert _initial_requests(sandbox, "sentitems") == 1
    # Graph never sees our fragment: every request it got is a link it handed out.
    assert not any("#" in path or "resume" in path for _m, path, _h in sandbox.sandbox.requests)


async def test_a_lost_next_link_of_a_first_round_starts_it_again(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    made = set(seed(sandbox, mailbox, "contact", "contacts", 12))
    items = Contacts(graph, UPN, "Workbooks")
    items.page_size = 5
    reader = items.delta(None)
    seen: list[str] = []
    async for page in reader:
        seen += [e["id"] for e in page["value"]]
        if len(seen) == 5:
            sandbox.sandbox.state.stale_next_links()
    assert set(seen) == made and reader.restarts == 1
    assert _initial_requests(sandbox, "contacts") == 2  # no delta link yet: read again


async def test_a_link_that_says_nothing_and_an_expired_delta_link_still_need_a_resync(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    first = graph.sent_messages(UPN, page_size=10)
    await _ids(first)
    _sent(sandbox, mailbox, 15)
    page = await anext(aiter(graph.sent_messages(UPN, first.delta_link, page_size=10)))
    assert page.next_link is not None
    bare, _restart = split_resume(page.next_link)  # a nextLink stored before it carried one
    sandbox.sandbox.state.stale_next_links()
    with pytest.raises(ResyncRequired):
        await _ids(graph.sent_messages(UPN, bare, page_size=10))
    sandbox.sandbox.state.expire_tokens()  # the delta link itself is gone: a real resync
    with pytest.raises(ResyncRequired):
        await _ids(graph.sent_messages(UPN, first.delta_link, page_size=10))


async def test_restarts_are_bounded(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    first = graph.sent_messages(UPN, page_size=10)
    await _ids(first)
    _sent(sandbox, mailbox, 30)
    reader = graph.sent_messages(UPN, first.delta_link, page_size=10)

    async def read_while_exchange_loses_every_next_link() -> None:
        async for _page in reader:
            sandbox.sandbox.state.stale_next_links()

    with pytest.raises(ResyncRequired):
        await read_while_exchange_loses_every_next_link()
    assert reader.restarts == 3


# ------------------------------------------------------------------ 401 challenge


def _claims_challenge() -> str:
    claims = base64.b64encode(b'{"access_token":{"nbf":{"essential":true,"value":"1"}}}').decode()
    return (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
        'authorize", client_id="00000003-0000-0000-c000-000000000000", '
        f'error="insufficient_claims", claims="{claims}"'
    )


def test_a_401_challenge_with_claims_reaches_the_error() -> None:
    body = json.dumps(
        {"error": {"code": "InvalidAuthenticationToken", "message": "Continuous access evaluation"}}
    ).encode()
    error = errors.from_response(401, {"WWW-Authenticate": _claims_challenge()}, body, now=NOW)
    assert isinstance(error, ReauthRequired)
    text = str(error)
    assert "401 InvalidAuthenticationToken: Continuous access evaluation" in text
    assert "error=insufficient_claims" in text
    assert 'claims={"access_token":{"nbf":{"essential":true' in text  # decoded, readable
    assert "error=insufficient_claims" in error.detail


def test_a_plain_challenge_adds_nothing_and_is_parsed() -> None:
    plain = (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
        'authorize", client_id="00000003-0000-0000-c000-000000000000"'
    )
    params = errors.parse_challenge(plain)
    assert params["client_id"] == "00000003-0000-0000-c000-000000000000"
    assert params["realm"] == ""
    assert errors.challenge_text({"WWW-Authenticate": plain}) == ""
    unquoted = errors.parse_challenge('Bearer error=invalid_token, error_description="expired"')
    assert unquoted == {"error": "invalid_token", "error_description": "expired"}


async def test_a_revoked_token_is_reauth_with_graphs_words(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    await graph.request("GET", paths.contacts_path(UPN))  # a token is fetched and works
    sandbox.sandbox.state.access_tokens.clear()
    with pytest.raises(ReauthRequired) as info:
        await graph.request("GET", paths.contacts_path(UPN))
    assert "401 InvalidAuthenticationToken: IDX14100: JWT is not well formed." in str(info.value)


# ------------------------------------------------------------------ calendar windows


def test_the_product_refuses_an_empty_or_inverted_calendar_window() -> None:
    with pytest.raises(InvalidRequest, match="the end must be after the start"):
        checked_window(NOW, NOW)
    with pytest.raises(InvalidRequest, match="the end must be after the start"):
        checked_window(NOW, NOW - timedelta(days=1))
    with pytest.raises(InvalidRequest, match="time zone aware"):
        checked_window(datetime(2026, 1, 1), datetime(2026, 1, 2))
    assert checked_window(NOW, NOW + timedelta(seconds=1)) == (NOW, NOW + timedelta(seconds=1))


async def test_events_never_send_an_empty_window(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    with pytest.raises(InvalidRequest):
        Events(graph, UPN, "Workbooks", (NOW, NOW))
    events = Events(graph, UPN, "Workbooks", (NOW - timedelta(days=1), NOW + timedelta(days=30)))
    asked = len(sandbox.sandbox.requests)
    assert await events.instances("AAMkAnything=", NOW, NOW) == []
    assert len(sandbox.sandbox.requests) == asked  # nothing was sent


async def test_a_refused_calendar_window_is_a_clear_error(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    when = "2026-12-01T00:00:00Z"
    with pytest.raises(InvalidRequest) as info:
        await graph.request("GET", paths.calendar_view_path(UPN, when, when))
    assert str(info.value).startswith("Graph answered 400 ErrorInvalidParameter: ")
    assert len(str(info.value)) > len("Graph answered 400 ErrorInvalidParameter: ")


# ------------------------------------------------------------------ subscription lifetime


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_subscription_minutes_are_capped_at_what_live_graph_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, GRAPH_SUBSCRIPTION_MINUTES="10080")
    with pytest.raises(SettingsError, match=r"GRAPH_SUBSCRIPTION_MINUTES: .*10070"):
        load_settings()
    _env(monkeypatch, GRAPH_SUBSCRIPTION_MINUTES="10070")
    assert load_settings().graph.subscription_minutes == 10_070
    _env(monkeypatch, GRAPH_SUBSCRIPTION_MINUTES="2880", GRAPH_RENEW_MARGIN_HOURS="48")
    with pytest.raises(SettingsError, match=r"GRAPH_RENEW_MARGIN_HOURS .* must be shorter"):
        load_settings()


async def test_the_longest_lifetime_we_ask_is_accepted_and_one_more_day_is_not(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient, receiver: Receiver
) -> None:
    settings = GraphSettings(tenant_id="t", client_id="c", subscription_minutes=10_070)
    assert settings.subscription_minutes == 10_070
    from sync.core.subscriptions import SubscriptionPolicy

    policy = SubscriptionPolicy(lifetime=timedelta(minutes=settings.subscription_minutes))
    kwargs: dict[str, Any] = {
        "resource": f"/users/{UPN}/contacts",
        "notification_url": f"{receiver.origin}/api/graph/notifications",
        "lifecycle_url": f"{receiver.origin}/api/graph/lifecycle",
        "client_state": "s",
    }
    now = datetime.now(UTC)
    created = await create_subscription(graph, expires_at=policy.expiry(now), **kwargs)
    assert created.expires_at > now + timedelta(minutes=10_060)
    with pytest.raises(InvalidRequest, match="10070 minutes in the future"):
        await create_subscription(graph, expires_at=now + timedelta(minutes=10_080), **kwargs)


async def test_a_first_round_link_without_its_start_needs_a_resync(
    sandbox: SandboxHandle, mailbox: Mailbox, graph: GraphClient
) -> None:
    seed(sandbox, mailbox, "contact", "contacts", 12)
    items = Contacts(graph, UPN, "Workbooks")
    items.page_size = 5
    page = await anext(aiter(items.delta(None)))
    stored = page["@odata.nextLink"]
    assert split_resume(stored)[1] == ""  # a first round: restart means a new round
    sandbox.sandbox.state.stale_next_links()
    reader = graph.delta(UPN, stored, ("odata.maxpagesize=5",), lambda p: p)  # no ``initial``
    with pytest.raises(ResyncRequired):
        await anext(aiter(reader))
    assert reader.restarts == 0
