"""Places where the sandbox used to be easier than Graph: the default To Do list, the real
subscription lifetime cap, the 401 challenge, calendarView windows, the SDK's move body,
invalidated nextLinks, `Prefer: outlook.timezone` and `$top` in delta queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.graph.conftest import UPN, Receiver
from tests.graph.sandbox_http import iso, sandbox_http, wall

EVENTS = f"/v1.0/users/{UPN}/events"
VIEW = f"/v1.0/users/{UPN}/calendarView"
DELTA = f"/v1.0/users/{UPN}/calendarView/delta"
JANUARY = {"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-02-01T00:00:00Z"}


async def test_every_mailbox_has_the_default_todo_list() -> None:
    async with sandbox_http(seed_default_todo_list=True) as (_handle, http):
        made = await http.post(f"/v1.0/users/{UPN}/todo/lists", json={"displayName": "Errands"})
        assert made.status_code == 201
        lists = (await http.get(f"/v1.0/users/{UPN}/todo/lists")).json()["value"]
        default, own = lists
        assert default["displayName"] == "Tasks" and default["wellknownListName"] == "defaultList"
        assert default["@odata.type"] == "#microsoft.graph.todoTaskList" and default["isOwner"]
        assert own["displayName"] == "Errands" and own["wellknownListName"] == "none"
        task = await http.post(
            f"/v1.0/users/{UPN}/todo/lists/{default['id']}/tasks", json={"title": "x"}
        )
        assert task.status_code == 201
    async with sandbox_http(seed_default_todo_list=False) as (_handle, http):
        assert (await http.get(f"/v1.0/users/{UPN}/todo/lists")).json()["value"] == []


async def test_subscriptions_are_refused_beyond_10070_minutes(receiver: Receiver) -> None:
    async with sandbox_http() as (_handle, http):
        now = datetime.now(UTC)
        for resource in ("messages", "contacts", "events"):
            body = {
                "changeType": "created,updated,deleted",
                "notificationUrl": f"{receiver.origin}/api/graph/notifications",
                "resource": f"/users/{UPN}/{resource}",
                "expirationDateTime": iso(now + timedelta(minutes=10_072)),
            }
            refused = await http.post("/v1.0/subscriptions", json=body)
            assert refused.status_code == 400
            error = refused.json()["error"]
            assert error["code"] == "ExtensionError"
            assert error["message"] == (
                "Subscription expiration can only be 10070 minutes in the future."
            )
            body["expirationDateTime"] = iso(now + timedelta(minutes=10_060))
            assert (await http.post("/v1.0/subscriptions", json=body)).status_code == 201


async def test_a_401_carries_graphs_bearer_challenge() -> None:
    async with sandbox_http() as (handle, http):
        url = f"/v1.0/users/{UPN}/contacts"
        answers = [
            await http.get(url, headers={"Authorization": ""}),
            await http.get(url, headers={"Authorization": "Bearer not-a-token"}),
        ]
        await http.post("/_sim/faults", json={"status": 401, "count": 1})
        answers.append(await http.get(url))  # the injected fault
        handle.sandbox.state.access_tokens.update(
            {
                k: datetime.now(UTC) - timedelta(seconds=1)
                for k in handle.sandbox.state.access_tokens
            }
        )
        answers.append(await http.get(url))
        for resp in answers:
            assert resp.status_code == 401
            assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"
            challenge = resp.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm=""')
            assert f'authorization_uri="{handle.origin}/common/oauth2/authorize"' in challenge
            assert 'client_id="00000003-0000-0000-c000-000000000000"' in challenge
        ok = await http.get("/_sim/state")
        assert "WWW-Authenticate" not in ok.headers


@pytest.mark.parametrize(
    "window",
    [
        {},
        {"startDateTime": "", "endDateTime": ""},
        {"startDateTime": "2030-01-01T00:00:00Z"},
        {"startDateTime": "yesterday", "endDateTime": "2030-01-02T00:00:00Z"},
        {"startDateTime": "2030-01-02T00:00:00Z", "endDateTime": "2030-01-01T00:00:00Z"},
        {"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-01-01T00:00:00Z"},
    ],
)
async def test_a_bad_calendar_view_window_is_a_400_not_a_500(window: dict[str, str]) -> None:
    async with sandbox_http() as (_handle, http):
        made = await http.post(
            EVENTS,
            json={
                "subject": "s",
                "start": wall("2030-01-01T09:00:00"),
                "end": wall("2030-01-01T10:00:00"),
            },
        )
        for path in (VIEW, DELTA, f"{EVENTS}/{made.json()['id']}/instances"):
            resp = await http.get(path, params=window)
            assert resp.status_code == 400, (path, resp.text)
            assert resp.json()["error"]["code"] == "ErrorInvalidParameter"


async def test_window_parameter_names_are_case_insensitive() -> None:
    async with sandbox_http() as (_handle, http):
        await http.post(
            EVENTS,
            json={
                "subject": "s",
                "start": wall("2030-01-01T09:00:00"),
                "end": wall("2030-01-01T10:00:00"),
            },
        )
        lower = {"startdatetime": "2030-01-01T00:00:00Z", "enddatetime": "2030-01-02T00:00:00Z"}
        assert len((await http.get(VIEW, params=lower)).json()["value"]) == 1
        assert len((await http.get(DELTA, params=lower)).json()["value"]) == 1


async def test_move_reads_destination_id_as_msgraph_sdk_sends_it() -> None:
    from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter
    from msgraph.generated.users.item.messages.item.move.move_post_request_body import (
        MovePostRequestBody,
    )

    writer = JsonSerializationWriter()
    writer.write_object_value(None, MovePostRequestBody(destination_id="deleteditems"))
    sdk_body = writer.get_serialized_content()
    assert b'"DestinationId"' in sdk_body  # the SDK's casing, which Graph accepts
    async with sandbox_http() as (_handle, http):
        imm = {"Prefer": 'IdType="ImmutableId"'}
        for body in (sdk_body, b'{"destinationId": "inbox"}'):
            sent = await http.post(f"/_sim/users/{UPN}/send", json={"subject": "hi"})
            moved = await http.post(
                f"/v1.0/users/{UPN}/messages/{sent.json()['id']}/move",
                content=body,
                headers={"Content-Type": "application/json", **imm},
            )
            assert moved.status_code == 201, moved.text
            target = "deleteditems" if body is sdk_body else "inbox"
            assert moved.json()["parentFolderId"] == target


async def _contacts(http: httpx.AsyncClient, count: int) -> None:
    for i in range(count):
        await http.post(f"/_sim/users/{UPN}/items/contact", json={"data": {"givenName": f"c{i}"}})


async def _walk(http: httpx.AsyncClient, url: str) -> tuple[list[str], list[str], str]:
    """Follow a round with 1-item pages: the ids, the nextLinks used, the delta link."""
    ids: list[str] = []
    links: list[str] = []
    prefer = {"Prefer": "odata.maxpagesize=1"}
    body: dict[str, Any] = (await http.get(url, headers=prefer)).json()
    while True:
        ids += [v["id"] for v in body["value"]]
        if "@odata.deltaLink" in body:
            return ids, links, str(body["@odata.deltaLink"])
        links.append(body["@odata.nextLink"])
        resp = await http.get(links[-1], headers=prefer)
        assert resp.status_code == 200, resp.text
        body = resp.json()


async def test_invalidated_next_links_answer_sync_state_not_found() -> None:
    async with sandbox_http() as (_handle, http):
        await _contacts(http, 2)
        _ids, _links, delta_link = await _walk(http, f"/v1.0/users/{UPN}/contacts/delta")
        await _contacts(http, 3)
        first = await http.get(delta_link, headers={"Prefer": "odata.maxpagesize=1"})
        next_link = first.json()["@odata.nextLink"]
        stale = await http.post("/_sim/stale-next-links", json={"mailbox": UPN})
        assert stale.json()["stale"] >= 1
        gone = await http.get(next_link)
        assert gone.status_code == 410
        assert gone.json()["error"]["code"] == "SyncStateNotFound"
        assert gone.json()["error"]["message"].startswith("The sync state generation is not found")
        assert "Location" not in gone.headers  # no restart hint: resume from the delta link
        ids, _links, _link = await _walk(http, delta_link)
        assert len(set(ids)) == 3  # the last delta link still serves the changes


async def test_old_next_links_expire_when_exchange_keeps_three_generations() -> None:
    async with sandbox_http(delta_generations_kept=3) as (_handle, http):
        await _contacts(http, 6)
        ids, links, _delta = await _walk(http, f"/v1.0/users/{UPN}/contacts/delta")
        assert len(set(ids)) == 6 and len(links) == 5  # following the newest link always works
        assert (await http.get(links[0])).status_code == 410
        assert (await http.get(links[1])).status_code == 410
        assert (await http.get(links[-1])).status_code == 200


async def test_prefer_outlook_timezone_on_event_reads() -> None:
    async with sandbox_http() as (_handle, http):
        body = {
            "subject": "Berlin morning",
            "start": wall("2030-01-15T09:00:00", "W. Europe Standard Time"),
            "end": wall("2030-01-15T10:00:00", "W. Europe Standard Time"),
        }
        made = await http.post(EVENTS, json=body)
        assert made.status_code == 201
        event_id = made.json()["id"]
        plain = await http.get(f"{EVENTS}/{event_id}")
        assert plain.json()["start"] == wall("2030-01-15T08:00:00.0000000", "UTC")
        assert plain.json()["originalStartTimeZone"] == "W. Europe Standard Time"
        assert "Preference-Applied" not in plain.headers
        for zone, hour in (("Pacific Standard Time", "00"), ("Asia/Tokyo", "17")):
            pref = {"Prefer": f'outlook.timezone="{zone}"'}
            got = await http.get(f"{EVENTS}/{event_id}", headers=pref)
            assert got.json()["start"] == wall(f"2030-01-15T{hour}:00:00.0000000", zone)
            assert got.headers["Preference-Applied"] == f'outlook.timezone="{zone}"'
            listed = await http.get(VIEW, params=JANUARY, headers=pref)
            assert listed.json()["value"][0]["end"]["timeZone"] == zone
        both = {"Prefer": 'odata.maxpagesize=5, outlook.timezone="Pacific Standard Time"'}
        delta = await http.get(DELTA, params=JANUARY, headers=both)
        assert delta.json()["value"][0]["start"]["dateTime"].startswith("2030-01-15T00:00")
        assert delta.headers["Preference-Applied"] == (
            'odata.maxpagesize=5, outlook.timezone="Pacific Standard Time"'
        )
        bad = await http.get(
            f"{EVENTS}/{event_id}", headers={"Prefer": 'outlook.timezone="Australia Eastern Time"'}
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == "TimeZoneNotSupportedException"


async def test_a_series_keeps_its_wall_time_across_daylight_saving() -> None:
    async with sandbox_http() as (_handle, http):
        zone = "W. Europe Standard Time"
        body = {
            "subject": "Monday 9:00 Berlin",
            "start": wall("2030-03-25T09:00:00", zone),
            "end": wall("2030-03-25T09:30:00", zone),
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {"type": "numbered", "startDate": "2030-03-25", "numberOfOccurrences": 2},
            },
        }
        assert (await http.post(EVENTS, json=body)).status_code == 201
        window = {"startDateTime": "2030-03-20T00:00:00Z", "endDateTime": "2030-04-10T00:00:00Z"}
        utc = (await http.get(VIEW, params=window)).json()["value"]
        assert [e["start"]["dateTime"][:16] for e in utc] == [
            "2030-03-25T08:00",
            "2030-04-01T07:00",
        ]
        local = await http.get(
            VIEW, params=window, headers={"Prefer": f'outlook.timezone="{zone}"'}
        )
        assert {e["start"]["dateTime"][11:16] for e in local.json()["value"]} == {"09:00"}


async def test_event_writes_are_checked_like_graph() -> None:
    async with sandbox_http() as (_handle, http):
        unknown = {"subject": "x", "start": wall("2030-01-01T09:00:00", "Mars Standard Time")}
        unknown["end"] = wall("2030-01-01T10:00:00", "Mars Standard Time")
        resp = await http.post(EVENTS, json=unknown)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "TimeZoneNotSupportedException"
        backwards = {"subject": "x", "start": wall("2030-01-02T09:00:00")}
        backwards["end"] = wall("2030-01-01T09:00:00")
        resp = await http.post(EVENTS, json=backwards)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "ErrorPropertyValidationFailure"
        assert (await http.get(EVENTS)).json()["value"] == []


def test_every_windows_zone_maps_to_a_known_iana_zone() -> None:
    from zoneinfo import ZoneInfo

    from devkit.sandbox.graph.timezones import WINDOWS_TO_IANA, resolve_zone

    for windows, iana in WINDOWS_TO_IANA.items():
        assert ZoneInfo(iana) == resolve_zone(windows)
    assert resolve_zone("pacific standard time") == ZoneInfo("America/Los_Angeles")
    assert resolve_zone("Australia Eastern Time") is None and resolve_zone("") is None


async def test_top_caps_a_message_delta_round_and_calendar_view_delta_refuses_it() -> None:
    """`$top` is no page size in delta (graph.md §2.2, §2.4): message delta stops the round
    after that many changes and its delta link is past the rest, which are never reported;
    calendarView delta refuses it.  The client pages with `Prefer: odata.maxpagesize`."""
    async with sandbox_http() as (_handle, http):
        for i in range(5):
            await http.post(f"/_sim/users/{UPN}/send", json={"subject": f"m{i}", "to": ["x@y.z"]})
        sent = f"/v1.0/users/{UPN}/mailFolders('sentitems')/messages/delta()"
        capped = (await http.get(f"{sent}?$top=2")).json()
        assert len(capped["value"]) == 2 and "@odata.deltaLink" in capped
        after = (await http.get(capped["@odata.deltaLink"])).json()
        assert after["value"] == []  # the three others are lost to this sync
        whole = (await http.get(sent, headers={"Prefer": "odata.maxpagesize=2"})).json()
        ids: list[str] = [v["id"] for v in whole["value"]]
        while "@odata.nextLink" in whole:
            whole = (await http.get(whole["@odata.nextLink"])).json()
            ids += [v["id"] for v in whole["value"]]
        assert len(set(ids)) == 5
        assert (await http.get(f"{sent}?$top=zero")).status_code == 400
        refused = await http.get(DELTA, params={**JANUARY, "$top": "5"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "ErrorInvalidUrlQuery"
        assert "'$top'" in refused.json()["error"]["message"]
