"""Recurring events in the sandbox, as Graph serves them: series masters, occurrences and
exceptions in calendarView and its delta, `instances`, occurrence ids, notifications."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.graph.conftest import UPN, Receiver
from tests.graph.sandbox_http import iso, sandbox_http, wall

EVENTS = f"/v1.0/users/{UPN}/events"
VIEW = f"/v1.0/users/{UPN}/calendarView"
DELTA = f"/v1.0/users/{UPN}/calendarView/delta"
JANUARY = {"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-02-01T00:00:00Z"}
STUB_KEYS = {"@odata.type", "@odata.etag", "id", "seriesMasterId", "type", "start", "end"}


def weekly_mondays(count: int = 4, **extra: Any) -> dict[str, Any]:
    """Mondays 09:00-09:30 UTC from 2030-01-07."""
    return {
        "subject": "Weekly sync",
        "categories": ["Workbooks"],
        "start": wall("2030-01-07T09:00:00"),
        "end": wall("2030-01-07T09:30:00"),
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
            "range": {"type": "numbered", "startDate": "2030-01-07", "numberOfOccurrences": count},
        },
        **extra,
    }


async def create(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    resp = await http.post(EVENTS, json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def view(http: httpx.AsyncClient, **headers: str) -> list[dict[str, Any]]:
    resp = await http.get(VIEW, params={**JANUARY, "$top": "50"}, headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["value"])


async def delta_round(
    http: httpx.AsyncClient, url: str | None = None, page_size: int = 100
) -> tuple[list[list[dict[str, Any]]], str]:
    """Every page of one round (rows per page) and the delta link."""
    pages: list[list[dict[str, Any]]] = []
    first: dict[str, Any] = {"url": url or DELTA, "params": None if url else JANUARY}
    headers = {"Prefer": f"odata.maxpagesize={page_size}"}
    resp = await http.get(first["url"], params=first["params"], headers=headers)
    while True:
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages.append(body["value"])
        if "@odata.deltaLink" in body:
            return pages, str(body["@odata.deltaLink"])
        resp = await http.get(body["@odata.nextLink"], headers=headers)


def rows(pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [row for page in pages for row in page]


async def test_a_posted_series_is_a_master_that_calendar_view_expands() -> None:
    async with sandbox_http() as (_handle, http):
        master = await create(http, weekly_mondays())
        assert master["type"] == "seriesMaster" and master["seriesMasterId"] is None
        assert master["recurrence"]["pattern"]["daysOfWeek"] == ["monday"]
        assert master["recurrence"]["range"]["recurrenceTimeZone"] == "UTC"
        got = (await http.get(f"{EVENTS}/{master['id']}")).json()
        assert got["type"] == "seriesMaster" and got["subject"] == "Weekly sync"

        listed = await view(http)
        assert [e["type"] for e in listed] == ["occurrence"] * 4  # never the master itself
        assert [e["start"]["dateTime"][:16] for e in listed] == [
            "2030-01-07T09:00",
            "2030-01-14T09:00",
            "2030-01-21T09:00",
            "2030-01-28T09:00",
        ]
        assert {e["seriesMasterId"] for e in listed} == {master["id"]}
        assert len({e["id"] for e in listed}) == 4 and master["id"] not in {e["id"] for e in listed}
        first = listed[0]
        assert first["subject"] == "Weekly sync" and first["categories"] == ["Workbooks"]
        assert first["recurrence"] is None and first["originalStart"] == "2030-01-07T09:00:00Z"
        assert len({e["iCalUId"] for e in listed} | {master["iCalUId"]}) == 5
        one = (await http.get(f"{EVENTS}/{first['id']}")).json()
        assert one["id"] == first["id"] and one["type"] == "occurrence"


async def test_the_master_reports_its_first_occurrence() -> None:
    async with sandbox_http() as (_handle, http):
        # Created on a Wednesday for a Monday pattern: the series starts the next Monday.
        body = weekly_mondays(start=wall("2030-01-02T09:00:00"), end=wall("2030-01-02T10:00:00"))
        body["recurrence"]["range"]["startDate"] = "2030-01-02"
        master = await create(http, body)
        assert master["start"] == wall("2030-01-07T09:00:00.0000000")
        assert master["end"] == wall("2030-01-07T10:00:00.0000000")


async def test_delta_gives_the_master_in_full_and_occurrences_as_stubs_in_one_unit() -> None:
    async with sandbox_http() as (_handle, http):
        for day in ("03", "04", "05"):
            await create(
                http,
                {
                    "subject": f"single {day}",
                    "start": wall(f"2030-01-{day}T12:00:00"),
                    "end": wall(f"2030-01-{day}T13:00:00"),
                },
            )
        master = await create(http, weekly_mondays())
        pages, _link = await delta_round(http, page_size=2)
        everything = rows(pages)
        (master_row,) = [r for r in everything if r["type"] == "seriesMaster"]
        assert master_row["id"] == master["id"] and master_row["subject"] == "Weekly sync"
        assert master_row["categories"] == ["Workbooks"]
        assert master_row["start"]["dateTime"].startswith("2030-01-07T09:00")
        stubs = [r for r in everything if r["type"] == "occurrence"]
        assert len(stubs) == 4 and all(set(s) == STUB_KEYS for s in stubs)
        assert {s["seriesMasterId"] for s in stubs} == {master["id"]}
        # The series is one unit: its master and occurrences share one page, which is
        # allowed to exceed maxpagesize (3 singles + 5 series rows over 2-row pages).
        (series_page,) = [p for p in pages if any(r["type"] == "seriesMaster" for r in p)]
        assert len([r for r in series_page if r.get("seriesMasterId") == master["id"]]) == 4
        assert len(everything) == 8 and max(len(p) for p in pages) == 5


async def test_an_edited_occurrence_is_an_exception_and_a_cancelled_one_disappears() -> None:
    async with sandbox_http() as (_handle, http):
        master = await create(http, weekly_mondays())
        _pages, link = await delta_round(http)
        second, third = (await view(http))[1:3]

        edit = {"subject": "Moved sync", "start": wall("2030-01-15T10:00:00")}
        edit["end"] = wall("2030-01-15T10:30:00")
        resp = await http.patch(f"{EVENTS}/{second['id']}", json=edit)
        assert resp.status_code == 200, resp.text
        exception = resp.json()
        assert exception["id"] == second["id"] and exception["type"] == "exception"
        assert exception["subject"] == "Moved sync" and exception["seriesMasterId"] == master["id"]
        assert exception["categories"] == ["Workbooks"]  # fields not edited come from the master
        assert exception["originalStart"] == "2030-01-14T09:00:00Z"
        assert (await http.delete(f"{EVENTS}/{third['id']}")).status_code == 204
        assert (await http.get(f"{EVENTS}/{third['id']}")).status_code == 404

        listed = await view(http)
        assert [e["type"] for e in listed] == ["occurrence", "exception", "occurrence"]
        assert listed[1]["start"]["dateTime"].startswith("2030-01-15T10:00")
        assert third["id"] not in {e["id"] for e in listed}

        pages, _link = await delta_round(http, link)
        changed = rows(pages)
        # The master changed (exceptions live in it): the whole series comes again, the
        # exception in full, occurrences as stubs, and the cancelled one is not reported.
        assert {r["type"] for r in changed} == {"seriesMaster", "exception", "occurrence"}
        assert all("@removed" not in r for r in changed)
        assert third["id"] not in {r["id"] for r in changed}
        (again,) = [r for r in changed if r["type"] == "exception"]
        assert again["subject"] == "Moved sync" and again["id"] == second["id"]
        assert all(set(r) == STUB_KEYS for r in changed if r["type"] == "occurrence")


async def test_an_occurrence_cannot_cross_its_neighbours() -> None:
    async with sandbox_http() as (_handle, http):
        await create(http, weekly_mondays())
        second = (await view(http))[1]
        onto_next = {"start": wall("2030-01-21T11:00:00"), "end": wall("2030-01-21T11:30:00")}
        resp = await http.patch(f"{EVENTS}/{second['id']}", json=onto_next)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "ErrorOccurrenceCrossingBoundary"
        before = {"start": wall("2030-01-07T18:00:00"), "end": wall("2030-01-07T18:30:00")}
        assert (await http.patch(f"{EVENTS}/{second['id']}", json=before)).status_code == 400
        assert [e["type"] for e in await view(http)] == ["occurrence"] * 4


async def test_rescheduling_the_series_gives_new_ids_and_reports_no_removals() -> None:
    async with sandbox_http() as (_handle, http):
        master = await create(http, weekly_mondays())
        _pages, link = await delta_round(http)
        old = [e["id"] for e in await view(http)]
        await http.patch(f"{EVENTS}/{old[1]}", json={"subject": "special"})

        move = {
            "start": wall("2030-01-08T09:00:00"),
            "end": wall("2030-01-08T09:30:00"),
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["tuesday"]},
                "range": {"type": "numbered", "startDate": "2030-01-08", "numberOfOccurrences": 4},
            },
        }
        assert (await http.patch(f"{EVENTS}/{master['id']}", json=move)).status_code == 200
        moved = await view(http)
        assert [e["start"]["dateTime"][:10] for e in moved] == [
            "2030-01-08",
            "2030-01-15",
            "2030-01-22",
            "2030-01-29",
        ]
        assert not {e["id"] for e in moved} & set(old)
        assert {e["type"] for e in moved} == {"occurrence"}  # the exception went with the pattern
        for stale in old:
            assert (await http.get(f"{EVENTS}/{stale}")).status_code == 404

        pages, _link = await delta_round(http, link)
        changed = rows(pages)
        assert not [r for r in changed if "@removed" in r]  # old ids simply stop appearing
        assert {r["id"] for r in changed if r.get("type") == "occurrence"} == {
            e["id"] for e in moved
        }


async def test_moving_only_the_time_keeps_occurrence_ids() -> None:
    # Occurrence ids carry the original date (not the time), as Graph's do.
    async with sandbox_http() as (_handle, http):
        master = await create(http, weekly_mondays())
        before = [e["id"] for e in await view(http)]
        later = {"start": wall("2030-01-07T14:00:00"), "end": wall("2030-01-07T14:30:00")}
        assert (await http.patch(f"{EVENTS}/{master['id']}", json=later)).status_code == 200
        after = await view(http)
        assert [e["id"] for e in after] == before
        assert {e["start"]["dateTime"][11:16] for e in after} == {"14:00"}


async def test_deleting_the_series_reports_only_the_master_unless_configured() -> None:
    for report_occurrences in (False, True):
        async with sandbox_http(series_delete_reports_occurrences=report_occurrences) as (_, http):
            master = await create(http, weekly_mondays())
            _pages, link = await delta_round(http)
            occurrence_ids = {e["id"] for e in await view(http)}
            assert (await http.delete(f"{EVENTS}/{master['id']}")).status_code == 204
            assert await view(http) == []
            for occ in occurrence_ids:
                assert (await http.get(f"{EVENTS}/{occ}")).status_code == 404
            pages, _link = await delta_round(http, link)
            removed = {r["id"] for r in rows(pages) if "@removed" in r}
            expected = {master["id"]} | (occurrence_ids if report_occurrences else set())
            assert removed == expected


async def test_instances_lists_occurrences_and_exceptions_in_the_window() -> None:
    async with sandbox_http() as (_handle, http):
        master = await create(http, weekly_mondays(count=6))
        single = await create(
            http,
            {
                "subject": "one",
                "start": wall("2030-01-09T10:00:00"),
                "end": wall("2030-01-09T11:00:00"),
            },
        )
        listed = [e for e in await view(http) if e["type"] == "occurrence"]
        await http.patch(f"{EVENTS}/{listed[0]['id']}", json={"subject": "first, edited"})
        await http.delete(f"{EVENTS}/{listed[2]['id']}")
        window = {"startDateTime": "2030-01-01T00:00:00Z", "endDateTime": "2030-01-29T00:00:00Z"}
        resp = await http.get(f"{EVENTS}/{master['id']}/instances", params=window)
        assert resp.status_code == 200, resp.text
        found = resp.json()["value"]
        assert [e["type"] for e in found] == ["exception", "occurrence", "occurrence"]  # not 21st
        assert [e["start"]["dateTime"][:10] for e in found] == [
            "2030-01-07",
            "2030-01-14",
            "2030-01-28",
        ]
        assert found[0]["subject"] == "first, edited" and found[1]["subject"] == "Weekly sync"
        missing = await http.get(f"{EVENTS}/{master['id']}/instances")
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "ErrorInvalidParameter"
        alone = await http.get(f"{EVENTS}/{single['id']}/instances", params=window)
        assert alone.json()["value"] == []


async def test_series_changes_notify_the_master(receiver: Receiver) -> None:
    async with sandbox_http() as (handle, http):
        sub = {
            "changeType": "created,updated,deleted",
            "notificationUrl": f"{receiver.origin}/api/graph/notifications",
            "resource": f"/users/{UPN}/events",
            "expirationDateTime": iso(datetime.now(UTC) + timedelta(days=2)),
        }
        assert (await http.post("/v1.0/subscriptions", json=sub)).status_code == 201
        master = await create(http, weekly_mondays())
        occ = (await view(http))[1]["id"]
        await http.patch(f"{EVENTS}/{occ}", json={"subject": "edited"})
        await http.delete(f"{EVENTS}/{(await view(http))[2]['id']}")
        await http.delete(f"{EVENTS}/{master['id']}")
        await handle.sandbox.notifier.drain()
        seen = [(n["changeType"], n["resourceData"]["id"]) for n in receiver.notifications]
        # Occurrence edits and cancellations are changes of the master (graph.md sources).
        assert seen == [
            ("created", master["id"]),
            ("updated", master["id"]),
            ("updated", master["id"]),
            ("deleted", master["id"]),
        ]


async def test_immutable_ids_carry_over_to_occurrences() -> None:
    async with sandbox_http() as (_handle, http):
        imm = {"Prefer": 'IdType="ImmutableId"'}
        resp = await http.post(EVENTS, json=weekly_mondays(), headers=imm)
        master = resp.json()
        listed = await view(http, **imm)
        assert {e["seriesMasterId"] for e in listed} == {master["id"]}
        plain = await view(http)
        assert {e["id"] for e in plain}.isdisjoint({e["id"] for e in listed})
        got = await http.get(f"{EVENTS}/{listed[0]['id']}", headers=imm)
        assert got.status_code == 200 and got.json()["id"] == listed[0]["id"]


async def test_invalid_recurrences_are_refused_like_graph() -> None:
    async with sandbox_http() as (_handle, http):
        no_days = weekly_mondays()
        del no_days["recurrence"]["pattern"]["daysOfWeek"]
        resp = await http.post(EVENTS, json=no_days)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "ErrorPropertyValidationFailure"
        empty = weekly_mondays()
        empty["recurrence"]["range"] = {
            "type": "endDate",
            "startDate": "2030-01-08",
            "endDate": "2030-01-12",
        }  # Tuesday to Saturday: no Monday in range
        resp = await http.post(EVENTS, json=empty)
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "ErrorRecurrenceHasNoOccurrence"
        assert (await http.get(EVENTS)).json()["value"] == []


async def test_the_sdk_models_read_series_rows() -> None:
    """msgraph-sdk's own Event model parses what the sandbox sends (enum casing included)."""
    from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
    from msgraph.generated.models.event import Event
    from msgraph.generated.models.event_type import EventType
    from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType

    async with sandbox_http() as (_handle, http):
        master = await create(http, weekly_mondays())
        pages, _link = await delta_round(http)
        parsed = []
        for row in rows(pages):
            node = JsonParseNodeFactory().get_root_parse_node(
                "application/json", json.dumps(row).encode()
            )
            parsed.append(node.get_object_value(Event))
        (sdk_master,) = [e for e in parsed if e.type == EventType.SeriesMaster]
        assert sdk_master.id == master["id"]
        assert sdk_master.recurrence.range.type == RecurrenceRangeType.Numbered
        assert sdk_master.recurrence.pattern.days_of_week[0].value == "monday"
        assert [e.type for e in parsed].count(EventType.Occurrence) == 4


async def test_controls_drive_a_series() -> None:
    async with sandbox_http() as (_handle, http):
        made = await http.post(f"/_sim/users/{UPN}/series", json={"data": weekly_mondays()})
        assert made.status_code == 201
        sid = made.json()["id"]
        occ = (await http.get(f"/_sim/users/{UPN}/series/{sid}/occurrences")).json()["value"]
        assert [o["date"] for o in occ] == ["2030-01-07", "2030-01-14", "2030-01-21", "2030-01-28"]
        assert [e["id"] for e in await view(http)] == [o["restId"] for o in occ]
        base = f"/_sim/users/{UPN}/series/{sid}/occurrences"
        edited = await http.patch(f"{base}/2030-01-14", json={"data": {"subject": "changed"}})
        assert edited.json() == {"date": "2030-01-14", "type": "exception"}
        assert (await http.delete(f"{base}/2030-01-21")).status_code == 204
        assert (await http.delete(f"{base}/2030-01-21")).status_code == 404
        assert [e["type"] for e in await view(http)] == ["occurrence", "exception", "occurrence"]
        crossing = {
            "data": {"start": wall("2030-01-28T08:00:00"), "end": wall("2030-01-28T08:30:00")}
        }
        refused = await http.patch(f"{base}/2030-01-14", json=crossing)
        assert (
            refused.status_code == 400
            and refused.json()["code"] == "ErrorOccurrenceCrossingBoundary"
        )

        tuesday = weekly_mondays()["recurrence"]
        tuesday["pattern"]["daysOfWeek"] = ["tuesday"]
        tuesday["range"]["startDate"] = "2030-01-08"
        moved = await http.post(
            f"/_sim/users/{UPN}/series/{sid}/reschedule",
            json={
                "start": wall("2030-01-08T09:00:00"),
                "end": wall("2030-01-08T09:30:00"),
                "recurrence": tuesday,
            },
        )
        assert moved.status_code == 200
        listed = await view(http)
        assert [e["start"]["dateTime"][:10] for e in listed] == [
            "2030-01-08",
            "2030-01-15",
            "2030-01-22",
            "2030-01-29",
        ]
        assert not {e["id"] for e in listed} & {o["restId"] for o in occ}


def test_occurrence_ids_are_opaque_but_carry_master_and_date() -> None:
    from devkit.sandbox.graph.calendar import occurrence_id, split_occurrence_id

    occ = occurrence_id("R-master_id", "2030-01-07")
    assert "2030" not in occ and split_occurrence_id(occ) == ("R-master_id", "2030-01-07")
    assert split_occurrence_id("R-master_id") is None
    assert split_occurrence_id("O" + base64.urlsafe_b64encode(b"garbage").decode()) is None
