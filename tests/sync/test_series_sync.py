"""Scenario tests: recurring Outlook series <-> one Workbooks meeting each (policy
``recurring_events``), against the Graph sandbox's series model and the Workbooks sandbox.

Every run is placed in time (``run_at``): the calendar window, and the occurrence a series'
meeting stands for, follow the run's ``now``.  The series start before the first run, so the
meeting's "next occurrence" is not the series' first one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from sync.core.jobs import Job, JobKind, Stream
from sync.core.series import NOTE_PREFIX
from sync.core.state_models import Cursor
from sync.engine.activities import run_events
from sync.engine.registry import RunContext
from tests.sync.conftest import CATEGORY, UPN, Sides, writes

MEETINGS = "activity/meetings"
MONDAY = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)  # a Monday, an hour before the meeting


def wall(text: str, zone: str = "UTC") -> dict[str, str]:
    return {"dateTime": f"{text}.0000000", "timeZone": zone}


def weekly(subject: str = "Weekly sync", shared: bool = True, **extra: Any) -> dict[str, Any]:
    """Mondays 09:00-09:30 UTC, ten times from 2029-12-24 (three weeks before MONDAY)."""
    return {
        "subject": subject,
        "body": {"contentType": "html", "content": "<p>Pipeline review</p>"},
        "location": {"displayName": "Room 4"},
        "categories": [CATEGORY] if shared else [],
        "start": wall("2029-12-24T09:00:00"),
        "end": wall("2029-12-24T09:30:00"),
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
            "range": {"type": "numbered", "startDate": "2029-12-24", "numberOfOccurrences": 10},
        },
        **extra,
    }


async def run_at(
    sides: Sides, now: datetime, kind: JobKind = JobKind.RECONCILE, **args: str
) -> dict[str, int]:
    """One calendar run as if the clock said ``now``; its counts."""
    mailbox = await sides.world.services.store.mailboxes.get(UPN)
    assert mailbox is not None
    job = Job(mailbox=UPN, stream=Stream.EVENTS, kind=kind, args=args)
    ctx = RunContext(job=job, mailbox=mailbox, lease=None, services=sides.world.services)
    await run_events(ctx, now=now)
    return ctx.counts


def series_master(sides: Sides, master_id: str) -> Any:
    found = sides.sb.state.find(sides.box(), "event", master_id)
    assert found is not None
    return found


def edit_occurrence(sides: Sides, master_id: str, day: str, data: dict[str, Any]) -> None:
    cont, master = series_master(sides, master_id)
    sides.sb.edit_occurrence(sides.box(), cont, master, day, data)


def cancel_occurrence(sides: Sides, master_id: str, day: str) -> None:
    cont, master = series_master(sides, master_id)
    sides.sb.cancel_occurrence(sides.box(), cont, master, day)


def meetings(sides: Sides) -> list[dict[str, Any]]:
    return sides.wb_rows(MEETINGS)


def graph_requests(sides: Sides, method: str, fragment: str) -> list[str]:
    return [p for m, p, _h in sides.sb.requests if m == method and fragment in p]


async def the_meeting(sides: Sides) -> dict[str, Any]:
    (row,) = meetings(sides)
    return await sides.wb_get(MEETINGS, int(row["id"]))


async def test_a_shared_weekly_series_is_one_meeting_on_its_next_occurrence(sides: Sides) -> None:
    master_id = sides.outlook_create("event", weekly())
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("workbooks_create") == 1 and counts.get("outlook_stamp") == 1, counts
    meeting = await the_meeting(sides)
    assert meeting["name"] == "Weekly sync" and meeting["location"] == "Room 4"
    # the next occurrence (today 09:00), not the series' first one three weeks ago
    assert meeting["start"].startswith("2030-01-07T09:00:00")
    assert meeting["finish"].startswith("2030-01-07T09:30:00")
    assert "Pipeline review" in meeting["description"]
    assert (
        f"{NOTE_PREFIX}Every week on Monday, from 2029-12-24, 10 times." in meeting["description"]
    )
    (link,) = await sides.links(Stream.EVENTS)
    assert link.outlook_id == master_id and link.workbooks_id == int(meeting["id"])
    assert sides.outlook_items("event")[master_id]["_ext"]  # the master carries our stamp
    # the master came in the round: no extra read of it, no instances read
    assert graph_requests(sides, "GET", "/instances") == []
    assert graph_requests(sides, "GET", f"/events/{quote(master_id, safe='')}?$expand") != []
    assert writes(await run_at(sides, MONDAY)) == {}
    assert len(meetings(sides)) == 1


async def test_an_edited_occurrence_updates_the_meeting_only_when_it_is_the_next(
    sides: Sides,
) -> None:
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY, JobKind.PUSH)
    # a later occurrence edited: the meeting still stands for today's, nothing to write
    edit_occurrence(sides, master_id, "2030-01-21", {"subject": "Quarterly special"})
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert writes(counts) == {} and len(meetings(sides)) == 1, counts
    # today's occurrence moved to 10:00 and renamed: the meeting follows it
    edit_occurrence(
        sides,
        master_id,
        "2030-01-07",
        {
            "subject": "Weekly sync (moved)",
            "start": wall("2030-01-07T10:00:00"),
            "end": wall("2030-01-07T10:45:00"),
        },
    )
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("workbooks_update") == 1 and "workbooks_create" not in counts, counts
    meeting = await the_meeting(sides)
    assert meeting["name"] == "Weekly sync (moved)"
    assert meeting["start"].startswith("2030-01-07T10:00:00")
    assert meeting["finish"].startswith("2030-01-07T10:45:00")
    assert len(await sides.links(Stream.EVENTS)) == 1


async def test_a_cancelled_tracked_occurrence_moves_the_meeting_to_the_following_one(
    sides: Sides,
) -> None:
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY, JobKind.PUSH)
    cancel_occurrence(sides, master_id, "2030-01-07")
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("workbooks_update") == 1 and "workbooks_delete" not in counts, counts
    meeting = await the_meeting(sides)
    assert meeting["start"].startswith("2030-01-14T09:00:00")
    # a cancelled occurrence that is not the tracked one changes nothing
    cancel_occurrence(sides, master_id, "2030-01-28")
    assert writes(await run_at(sides, MONDAY, JobKind.PUSH)) == {}


async def test_a_rescheduled_series_updates_its_one_meeting(sides: Sides) -> None:
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY, JobKind.PUSH)
    tuesdays = weekly()["recurrence"]
    tuesdays["pattern"]["daysOfWeek"] = ["tuesday"]
    tuesdays["range"] = {"type": "endDate", "startDate": "2030-01-08", "endDate": "2030-03-26"}
    # new occurrence ids; the old ones are never reported removed (graph.md §2.4)
    sides.outlook_update(
        "event",
        master_id,
        {
            "start": wall("2030-01-08T14:00:00"),
            "end": wall("2030-01-08T15:00:00"),
            "recurrence": tuesdays,
        },
    )
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("workbooks_update") == 1 and "workbooks_create" not in counts, counts
    meeting = await the_meeting(sides)
    assert meeting["start"].startswith("2030-01-08T14:00:00")
    assert meeting["finish"].startswith("2030-01-08T15:00:00")
    assert "Every week on Tuesday, from 2030-01-08 until 2030-03-26." in meeting["description"]
    (link,) = await sides.links(Stream.EVENTS)
    assert link.outlook_id == master_id
    assert writes(await run_at(sides, MONDAY)) == {}


@pytest.mark.parametrize("occurrences_reported", [False, True])
async def test_deleting_the_series_deletes_the_meeting_the_service_created(
    sides: Sides, occurrences_reported: bool
) -> None:
    sides.sb.config.series_delete_reports_occurrences = occurrences_reported
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY, JobKind.PUSH)
    (row,) = meetings(sides)
    sides.outlook_delete("event", master_id)
    counts = await run_at(sides, MONDAY, JobKind.PUSH)  # default outlook_delete: unlink
    assert counts.get("workbooks_delete") == 1, counts
    assert sides.wb_record(MEETINGS, int(row["id"])).get("is_deleted")
    assert await sides.links(Stream.EVENTS) == []


async def test_a_series_made_from_a_workbooks_meeting_is_the_users_and_follows_outlook_delete(
    sides: Sides,
) -> None:
    mid = sides.wb_create(
        MEETINGS,
        {
            "name": "Account review",
            "start": "2030-01-07T09:00:00.000Z,1,UTC",
            "finish": "2030-01-07T10:00:00.000Z,1,UTC",
        },
    )
    await run_at(sides, MONDAY)
    ((event_id, _event),) = sides.outlook_items("event").items()
    # the user makes the service's event a weekly series in Outlook
    sides.outlook_update(
        "event",
        event_id,
        {
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                "range": {"type": "noEnd", "startDate": "2030-01-07"},
            }
        },
    )
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("workbooks_update") == 1, counts  # the recurrence line is added
    assert "Every week on Monday" in (await sides.wb_get(MEETINGS, mid))["description"]
    # a Workbooks change of that meeting never reaches the series
    sides.advance_clock()
    sides.wb_edit(MEETINGS, mid, {"start": "2030-01-07T15:00:00.000Z,1,UTC"})
    counts = await run_at(sides, MONDAY)
    assert counts.get("series_not_written") == 1 and "outlook_update" not in counts, counts
    assert graph_requests(sides, "PATCH", quote(event_id, safe="")) == []
    # the series is deleted in Outlook: the meeting was the user's, so it is only unlinked
    sides.outlook_delete("event", event_id)
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("unlink") == 1 and "workbooks_delete" not in counts, counts
    assert not sides.wb_record(MEETINGS, mid).get("is_deleted")
    assert await sides.links(Stream.EVENTS) == []


async def test_a_workbooks_edit_never_rewrites_the_series_and_its_times_come_back(
    sides: Sides,
) -> None:
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY)
    meeting = await the_meeting(sides)
    mid = int(meeting["id"])
    before = dict(series_master(sides, master_id)[1].data)
    patches = len(graph_requests(sides, "PATCH", quote(master_id, safe="")))
    sides.advance_clock()
    notes = "<p>Pipeline review</p><p>Ann will send the figures.</p>"
    sides.wb_edit(
        MEETINGS,
        mid,
        {
            "name": "Renamed in Workbooks",
            "start": "2030-01-07T15:00:00.000Z,1,UTC",
            "finish": "2030-01-07T16:00:00.000Z,1,UTC",
            "description": notes + f"<p>{NOTE_PREFIX}Every week on Monday, from 2029-12-24.</p>",
        },
    )
    counts = await run_at(sides, MONDAY)
    assert counts.get("series_not_written") == 1, counts
    assert "outlook_update" not in counts and "outlook_delete" not in counts
    assert len(graph_requests(sides, "PATCH", quote(master_id, safe=""))) == patches
    after = series_master(sides, master_id)[1].data
    for name in ("subject", "start", "end", "recurrence", "body", "location"):
        assert after.get(name) == before.get(name), name
    # the next read of the series (the next day's window) puts its subject and time back and
    # keeps the notes written in Workbooks
    counts = await run_at(sides, MONDAY + timedelta(hours=20))
    assert counts.get("workbooks_update") == 1, counts
    meeting = await sides.wb_get(MEETINGS, mid)
    assert meeting["name"] == "Weekly sync"
    assert meeting["start"].startswith("2030-01-14T09:00:00")
    assert "Ann will send the figures." in meeting["description"]
    assert (
        f"{NOTE_PREFIX}Every week on Monday, from 2029-12-24, 10 times." in (meeting["description"])
    )
    assert writes(await run_at(sides, MONDAY + timedelta(hours=21))) == {}


async def test_the_series_subject_follows_but_its_body_is_copied_only_once(sides: Sides) -> None:
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY, JobKind.PUSH)
    sides.outlook_update(
        "event",
        master_id,
        {
            "subject": "Weekly sync (EMEA)",
            "location": {"displayName": "Room 7"},
            "body": {"contentType": "html", "content": "<p>New agenda</p>"},
        },
    )
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("workbooks_update") == 1, counts
    meeting = await the_meeting(sides)
    assert meeting["name"] == "Weekly sync (EMEA)" and meeting["location"] == "Room 7"
    assert "Pipeline review" in meeting["description"]  # the description is Workbooks' now
    assert "New agenda" not in meeting["description"]
    assert writes(await run_at(sides, MONDAY)) == {}


async def test_unsharing_a_series_unlinks_its_meeting(sides: Sides) -> None:
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY, JobKind.PUSH)
    sides.outlook_update("event", master_id, {"categories": []})
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("unlink") == 1 and "workbooks_delete" not in counts, counts
    assert len(meetings(sides)) == 1 and await sides.links(Stream.EVENTS) == []


async def test_as_time_passes_the_meeting_moves_to_the_next_occurrence(sides: Sides) -> None:
    sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY)
    assert writes(await run_at(sides, MONDAY + timedelta(minutes=30))) == {}  # the stamp's echo
    # later the same day (same window, no change in Outlook): today's occurrence is over
    counts = await run_at(sides, MONDAY + timedelta(hours=2))
    assert counts.get("series_read_again") == 1 and counts.get("workbooks_update") == 1, counts
    assert (await the_meeting(sides))["start"].startswith("2030-01-14T09:00:00")
    reads = len(graph_requests(sides, "GET", "/instances"))
    assert reads >= 1
    # nothing more to do until that occurrence passes: no write, no read of the series
    counts = await run_at(sides, MONDAY + timedelta(hours=3))
    assert writes(counts) == {} and "series_read_again" not in counts, counts
    assert len(graph_requests(sides, "GET", "/instances")) == reads
    # a week later (a new window, so a full round): the one after
    counts = await run_at(sides, MONDAY + timedelta(days=7, hours=2))
    assert counts.get("workbooks_update") == 1, counts
    assert (await the_meeting(sides))["start"].startswith("2030-01-21T09:00:00")
    assert writes(await run_at(sides, MONDAY + timedelta(days=7, hours=3))) == {}
    assert len(meetings(sides)) == 1 and len(await sides.links(Stream.EVENTS)) == 1


async def test_after_its_last_occurrence_the_meeting_stays_on_it(sides: Sides) -> None:
    short = weekly()
    short["recurrence"]["range"]["numberOfOccurrences"] = 3  # ends 2030-01-07
    sides.outlook_create("event", short)
    await run_at(sides, MONDAY)
    assert writes(await run_at(sides, MONDAY + timedelta(minutes=30))) == {}  # the stamp's echo
    counts = await run_at(sides, MONDAY + timedelta(hours=2))
    assert counts.get("series_read_again") == 1 and writes(counts) == {}, counts
    assert (await the_meeting(sides))["start"].startswith("2030-01-07T09:00:00")
    counts = await run_at(sides, MONDAY + timedelta(hours=3))
    assert "series_read_again" not in counts and writes(counts) == {}


async def test_an_unshared_series_creates_nothing(sides: Sides) -> None:
    sides.outlook_create("event", weekly(shared=False))
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert writes(counts) == {} and meetings(sides) == []
    assert counts.get("skipped_not_shared") == 1, counts  # the series, not each occurrence


async def test_a_series_without_end_stays_one_pair_over_a_year(sides: Sides) -> None:
    daily = weekly("Stand-up")
    daily["recurrence"] = {
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "noEnd", "startDate": "2029-12-24"},
    }
    master_id = sides.outlook_create("event", daily)
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("workbooks_create") == 1, counts
    view = sides.sb.state.find(sides.box(), "event", master_id)
    assert view is not None
    for days in (1, 2, 30):
        await run_at(sides, MONDAY + timedelta(days=days))
    meeting = await the_meeting(sides)
    assert meeting["start"].startswith("2030-02-06T09:00:00")
    assert "Every day, from 2029-12-24, no end date." in meeting["description"]
    assert len(await sides.links(Stream.EVENTS)) == 1


async def test_the_brake_stops_mass_deletion_of_series(sides: Sides) -> None:
    ids = [sides.outlook_create("event", weekly(f"Series {n}")) for n in range(12)]
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("workbooks_create") == 12, counts
    for master_id in ids:
        sides.outlook_delete("event", master_id)
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("brake_stopped") == 1 and "workbooks_delete" not in counts, counts
    assert len(meetings(sides)) == 12 and len(await sides.links(Stream.EVENTS)) == 12
    counts = await run_at(sides, MONDAY, JobKind.MANUAL, force="1")
    assert counts.get("workbooks_delete") == 12, counts
    assert meetings(sides) == [] and await sides.links(Stream.EVENTS) == []


async def test_a_series_moved_beyond_the_window_is_only_unlinked(sides: Sides) -> None:
    await sides.world.set_policy(UPN, calendar_future_days=60)
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY, JobKind.PUSH)
    later = weekly()["recurrence"]
    later["range"] = {"type": "numbered", "startDate": "2030-06-03", "numberOfOccurrences": 4}
    sides.outlook_update(
        "event",
        master_id,
        {
            "start": wall("2030-06-03T09:00:00"),
            "end": wall("2030-06-03T09:30:00"),
            "recurrence": later,
        },
    )
    counts = await run_at(sides, MONDAY, JobKind.PUSH)
    assert counts.get("unlink") == 1 and "workbooks_delete" not in counts, counts
    assert len(meetings(sides)) == 1 and await sides.links(Stream.EVENTS) == []


async def test_skip_policy_syncs_no_series_and_unlinks_one_linked_before(sides: Sides) -> None:
    sides.outlook_create("event", weekly("Linked first"))
    await run_at(sides, MONDAY, JobKind.PUSH)
    await sides.world.set_policy(UPN, recurring_events="skip")
    sides.outlook_create("event", weekly("Never synced"))
    counts = await run_at(sides, MONDAY, JobKind.RESYNC)
    assert "workbooks_create" not in counts and counts.get("unlink") == 1, counts
    assert [m["name"] for m in meetings(sides)] == ["Linked first"]
    assert await sides.links(Stream.EVENTS) == []


def single(subject: str, day: int) -> dict[str, Any]:
    """A shared one-off meeting on 2030-01-<day> 14:00-15:00 UTC."""
    return {
        "subject": subject,
        "categories": [CATEGORY],
        "start": wall(f"2030-01-{day:02d}T14:00:00"),
        "end": wall(f"2030-01-{day:02d}T15:00:00"),
    }


async def test_a_calendar_run_reads_the_links_of_due_series_only(sides: Sides) -> None:
    """The summary names each linked series with the time its tracked occurrence ends, so an
    incremental run checks them for time passing without reading every link."""
    master_id = sides.outlook_create("event", weekly())
    for day in range(8, 28):  # enough links that one point read beats reading them all
        sides.outlook_create("event", single(f"Call {day}", day))
    first = await run_at(sides, MONDAY)
    assert first.get("links_read_whole") == 1 and len(await sides.links(Stream.EVENTS)) == 21
    store = sides.world.services.store.links
    summary = await store.summary(UPN, Stream.EVENTS)
    assert summary is not None and summary.series == {master_id: "2030-01-07T09:30:00Z"}
    assert writes(await run_at(sides, MONDAY + timedelta(minutes=30))) == {}  # the echo
    quiet = await run_at(sides, MONDAY + timedelta(minutes=45))  # no change, nothing due
    assert quiet.get("links_read_by_id") == 1 and "link_reads" not in quiet, quiet
    counts = await run_at(sides, MONDAY + timedelta(hours=2))  # today's occurrence is over
    assert counts.get("links_read_by_id") == 1 and "links_read_whole" not in counts, counts
    assert counts.get("link_reads") == 1 and counts.get("series_read_again") == 1, counts
    assert (await the_meeting_of(sides, master_id))["start"].startswith("2030-01-14T09:00:00")
    summary = await store.summary(UPN, Stream.EVENTS)
    assert summary is not None and summary.series == {master_id: "2030-01-14T09:30:00Z"}


async def test_a_summary_that_does_not_name_series_makes_the_run_read_every_link(
    sides: Sides,
) -> None:
    """A summary written before series were kept in it: the calendar reads its links whole
    once, and writes the summary with them."""
    master_id = sides.outlook_create("event", weekly())
    await run_at(sides, MONDAY)
    assert writes(await run_at(sides, MONDAY + timedelta(minutes=30))) == {}  # the echo
    store = sides.world.services.store.links
    old = await store.summary(UPN, Stream.EVENTS)
    assert old is not None
    old.series = None
    await store.write_summary(UPN, Stream.EVENTS, old)
    counts = await run_at(sides, MONDAY + timedelta(hours=2))
    assert counts.get("links_read_whole") == 1 and counts.get("series_read_again") == 1, counts
    summary = await store.summary(UPN, Stream.EVENTS)
    assert summary is not None and summary.series == {master_id: "2030-01-14T09:30:00Z"}


async def test_a_series_time_left_stale_by_a_stopped_run_is_corrected(sides: Sides) -> None:
    """A run stopped after writing a series' link but before its summary (and its cursor):
    the summary still holds the passed occurrence.  The next run looks that link up, finds it
    moved on, and writes the summary as the link is, so the series is checked again when its
    new occurrence passes, not only at the next full round."""
    master_id = sides.outlook_create("event", weekly())
    for day in range(8, 28):  # enough links that the run reads them by id, not all
        sides.outlook_create("event", single(f"Call {day}", day))
    await run_at(sides, MONDAY)
    store = sides.world.services.store
    await run_at(sides, MONDAY + timedelta(minutes=30))  # the stamps' echo
    await run_at(sides, MONDAY + timedelta(hours=2))  # moved on to 2030-01-14
    await run_at(sides, MONDAY + timedelta(hours=2, minutes=5))  # that update's echo
    stale = await store.links.summary(UPN, Stream.EVENTS)
    assert stale is not None and stale.series is not None
    stale.series[master_id] = "2030-01-07T09:30:00Z"  # its update lost with the run

    def cut(c: Cursor) -> Cursor:  # nor did that run advance its cursor
        return c.model_copy(update={"extra": {**c.extra, "series_at": MONDAY.isoformat()}})

    await store.links.write_summary(UPN, Stream.EVENTS, stale)
    await store.cursors.update(UPN, Stream.EVENTS, cut)
    counts = await run_at(sides, MONDAY + timedelta(hours=3))
    assert counts.get("series_summary_corrected") == 1 and writes(counts) == {}, counts
    assert "links_read_whole" not in counts, counts
    assert "series_read_again" not in counts  # its link says 2030-01-14: not due
    summary = await store.links.summary(UPN, Stream.EVENTS)
    assert summary is not None and summary.series == {master_id: "2030-01-14T09:30:00Z"}
    assert (await the_meeting_of(sides, master_id))["start"].startswith("2030-01-14T09:00:00")


async def the_meeting_of(sides: Sides, master_id: str) -> dict[str, Any]:
    link = next(x for x in await sides.links(Stream.EVENTS) if x.outlook_id == master_id)
    return await sides.wb_get(MEETINGS, link.workbooks_id)
