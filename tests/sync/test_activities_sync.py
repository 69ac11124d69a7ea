"""Scenario tests: Workbooks tasks / phone calls <-> To Do, meetings <-> calendar events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync.core.jobs import Job, JobKind, Stream
from sync.engine.activities import run_events
from sync.engine.registry import RunContext
from tests.sync.conftest import CATEGORY, UPN, Sides, writes

TASKS, MEETINGS = "activity/tasks", "activity/meetings"


def soon(days: int = 3, hour: int = 9) -> datetime:
    base = datetime.now(UTC).replace(hour=hour, minute=30, second=0, microsecond=0)
    return base + timedelta(days=days)


def hour_meeting(name: str, start: datetime) -> dict[str, str]:
    """A Workbooks meeting from ``start`` (UTC) for an hour."""
    stamp = "%Y-%m-%dT%H:%M:%S.000Z,1,UTC"
    finish = start + timedelta(hours=1)
    return {"name": name, "start": start.strftime(stamp), "finish": finish.strftime(stamp)}


async def test_phone_call_to_todo_and_completion_back(sides: Sides) -> None:
    await sides.world.set_policy(UPN, time_zone="America/New_York")
    due = "2030-03-10T04:30:00.000Z,1,America/New_York"  # 23:30 on the 9th in New York
    tid = sides.wb_create(
        TASKS,
        {
            "name": "Call Ann",
            "activity_type": "Phone call",
            "activity_status": "New",
            "activity_priority": "High",
            "description": "<p>About renewal</p>",
            "due": due,
        },
    )
    sides.wb_create(TASKS, {"name": "Old one", "activity_status": "Complete"})
    run = await sides.run(Stream.TODO)
    assert run.counts.get("outlook_create") == 1, run.counts  # the completed one is left out
    ((task_id, task),) = sides.outlook_items("task").items()
    assert task["title"] == "Call Ann" and task["importance"] == "high"
    assert task["status"] == "notStarted" and task["body"]["content"] == "About renewal"
    assert task["dueDateTime"]["dateTime"].startswith("2030-03-09")
    assert task["_linked"][0]["externalId"] == str(tid)
    assert CATEGORY in task["categories"]
    assert writes((await sides.run(Stream.TODO)).counts) == {}
    # completed in To Do -> Workbooks on the next push; stays linked, not removed
    sides.outlook_update(
        "task",
        task_id,
        {
            "status": "completed",
            "completedDateTime": {"dateTime": "2030-03-09T15:00:00.0000000", "timeZone": "UTC"},
        },
    )
    run = await sides.run(Stream.TODO, JobKind.PUSH)
    assert run.counts.get("workbooks_update") == 1
    row = await sides.wb_get(TASKS, tid)
    assert row["activity_status"] == "Complete"
    assert row["completed"].startswith("2030-03-09T15:00:00")
    sides.advance_clock()
    assert writes((await sides.run(Stream.TODO)).counts) == {}
    assert task_id in sides.outlook_items("task")


async def test_shared_todo_task_creates_workbooks_task(sides: Sides) -> None:
    await sides.run(Stream.TODO)  # creates the list, baseline
    list_id = next(
        c.key.split(":", 1)[1] for c in sides.box().containers.values() if c.kind == "task"
    )
    task_id = sides.outlook_create(
        "task",
        {
            "title": "Send quote",
            "importance": "low",
            "status": "inProgress",
            "dueDateTime": {"dateTime": "2030-01-15T00:00:00.0000000", "timeZone": "UTC"},
            "categories": [CATEGORY],
        },
    )
    run = await sides.run(Stream.TODO, JobKind.PUSH)
    assert run.counts.get("workbooks_create") == 1 and run.counts.get("outlook_stamp") == 1
    (row,) = [r for r in sides.wb_rows(TASKS) if r.get("name") == "Send quote"]
    full = await sides.wb_get(TASKS, int(row["id"]))
    assert full["activity_status"] == "In progress" and full["activity_priority"] == "Low"
    assert full["activity_type"] == "To-do" and full["due"].startswith("2030-01-15")
    assert sides.outlook_items("task")[task_id]["_linked"][0]["externalId"] == str(row["id"])
    assert list_id
    assert writes((await sides.run(Stream.TODO)).counts) == {}


async def test_meeting_to_event_across_dst_and_back(sides: Sides) -> None:
    await sides.world.set_policy(UPN, time_zone="Europe/London", calendar_future_days=3650)
    # London clocks go back on 2030-10-27: a meeting at 00:30-01:30 UTC spans the change
    mid = sides.wb_create(
        MEETINGS,
        {
            "name": "Review",
            "description": "Agenda",
            "location": "Room 4",
            "start": "2030-10-27T00:30:00.000Z,1,Europe/London",
            "finish": "2030-10-27T01:30:00.000Z,1,Europe/London",
        },
    )
    run = await sides.run(Stream.EVENTS)
    assert run.counts.get("outlook_create") == 1, run.counts
    ((eid, event),) = sides.outlook_items("event").items()
    assert event["subject"] == "Review" and event["location"]["displayName"] == "Room 4"
    assert "attendees" not in event  # never an invitation
    assert event["isAllDay"] is False
    assert writes((await sides.run(Stream.EVENTS)).counts) == {}
    # moved in Outlook by an hour (wall time in New York): Workbooks follows
    sides.outlook_update(
        "event",
        eid,
        {
            "start": {"dateTime": "2030-10-26T21:30:00.0000000", "timeZone": "America/New_York"},
            "end": {"dateTime": "2030-10-26T22:30:00.0000000", "timeZone": "America/New_York"},
        },
    )
    run = await sides.run(Stream.EVENTS, JobKind.PUSH)
    assert run.counts.get("workbooks_update") == 1
    row = await sides.wb_get(MEETINGS, mid)
    assert row["start"].startswith("2030-10-27T01:30:00")  # 21:30 EDT = 01:30 UTC
    assert row["finish"].startswith("2030-10-27T02:30:00")
    sides.advance_clock()
    assert writes((await sides.run(Stream.EVENTS)).counts) == {}


async def test_all_day_meeting_and_window(sides: Sides) -> None:
    await sides.world.set_policy(
        UPN, time_zone="America/New_York", calendar_past_days=10, calendar_future_days=30
    )
    day = soon(5).date()
    sides.wb_create(
        MEETINGS,
        {
            "name": "Offsite",
            "all_day": True,
            "start": f"{day.isoformat()},0,America/New_York",
            "finish": f"{(day + timedelta(days=1)).isoformat()},0,America/New_York",
        },
    )
    far = soon(400)
    sides.wb_create(MEETINGS, hour_meeting("Far away", far))
    run = await sides.run(Stream.EVENTS)
    assert run.counts.get("outlook_create") == 1, run.counts
    ((_, event),) = sides.outlook_items("event").items()
    assert event["subject"] == "Offsite" and event["isAllDay"] is True
    assert event["start"]["dateTime"].startswith(day.isoformat())
    assert event["end"]["dateTime"].startswith((day + timedelta(days=2)).isoformat())


async def test_window_slides_rebaselines_and_unlinks(sides: Sides) -> None:
    await sides.world.set_policy(UPN, calendar_past_days=1, calendar_future_days=5)
    start = soon(2)
    sides.wb_create(MEETINGS, hour_meeting("Soon", start))
    later = soon(8)
    sides.wb_create(MEETINGS, hour_meeting("Later", later))
    mailbox = await sides.world.services.store.mailboxes.get(UPN)
    assert mailbox is not None

    async def run_at(now: datetime) -> RunContext:
        job = Job(mailbox=UPN, stream=Stream.EVENTS, kind=JobKind.RECONCILE)
        ctx = RunContext(job=job, mailbox=mailbox, lease=None, services=sides.world.services)
        await run_events(ctx, now=now)
        return ctx

    ctx = await run_at(datetime.now(UTC))
    assert ctx.counts.get("outlook_create") == 1
    # six days later the window covers "Later" and no longer "Soon"
    ctx = await run_at(datetime.now(UTC) + timedelta(days=6))
    assert ctx.counts.get("window_rebaselined") == 1
    assert ctx.counts.get("outlook_create") == 1, ctx.counts
    assert ctx.counts.get("unlink") == 1 and "workbooks_delete" not in ctx.counts
    subjects = sorted(e["subject"] for e in sides.outlook_items("event").values())
    assert subjects == ["Later", "Soon"]  # "Soon" left the window: unlinked, not deleted
    links = await sides.links(Stream.EVENTS)
    assert [link.snapshot["subject"] for link in links] == ["Later"]


async def test_todo_updates_and_deletes_both_sides(sides: Sides) -> None:
    keep = sides.wb_create(TASKS, {"name": "Keep me", "activity_status": "New"})
    drop = sides.wb_create(TASKS, {"name": "Drop me", "activity_status": "New"})
    await sides.run(Stream.TODO)
    by_title = {t["title"]: oid for oid, t in sides.outlook_items("task").items()}
    sides.advance_clock()
    sides.wb_edit(TASKS, keep, {"name": "Keep me (renamed)", "activity_priority": "Low"})
    await sides.wb_delete(TASKS, drop)
    run = await sides.run(Stream.TODO)
    assert run.counts.get("outlook_update") == 1 and run.counts.get("outlook_delete") == 1
    task = sides.outlook_items("task")[by_title["Keep me"]]
    assert task["title"] == "Keep me (renamed)" and task["importance"] == "low"
    assert by_title["Drop me"] not in sides.outlook_items("task")
    # deleted in To Do: unlinked by default, the Workbooks task stays
    sides.outlook_delete("task", by_title["Keep me"])
    run = await sides.run(Stream.TODO, JobKind.PUSH)
    assert run.counts.get("unlink") == 1
    assert not sides.wb_record(TASKS, keep).get("is_deleted")
    assert await sides.links(Stream.TODO) == []


async def test_events_created_in_outlook_edited_and_deleted(sides: Sides) -> None:
    await sides.world.set_policy(UPN, time_zone="Europe/London", outlook_delete="delete")
    start = soon(4)
    eid = sides.outlook_create(
        "event",
        {
            "subject": "Lunch with Ann",
            "isAllDay": False,
            "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"},
            "end": {
                "dateTime": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.0000000"),
                "timeZone": "UTC",
            },
            "location": {"displayName": "Cafe"},
            "body": {
                "contentType": "html",
                "content": "<html><body><p>Bring deck</p></body></html>",
            },
            "categories": [CATEGORY],
        },
    )
    run = await sides.run(Stream.EVENTS, JobKind.PUSH)
    assert run.counts.get("workbooks_create") == 1 and run.counts.get("outlook_stamp") == 1
    (row,) = [r for r in sides.wb_rows(MEETINGS) if r.get("name") == "Lunch with Ann"]
    mid = int(row["id"])
    full = await sides.wb_get(MEETINGS, mid)
    assert full["location"] == "Cafe" and "Bring deck" in full["description"]
    assert full["start"].startswith(start.strftime("%Y-%m-%dT%H:%M:%S"))
    assert writes((await sides.run(Stream.EVENTS)).counts) == {}
    sides.advance_clock()
    sides.wb_edit(MEETINGS, mid, {"location": "Canteen"})
    run = await sides.run(Stream.EVENTS)
    assert run.counts.get("outlook_update") == 1
    assert sides.outlook_items("event")[eid]["location"]["displayName"] == "Canteen"
    # deleted in Outlook with outlook_delete = delete: the meeting goes too
    sides.outlook_delete("event", eid)
    run = await sides.run(Stream.EVENTS, JobKind.PUSH)
    assert run.counts.get("workbooks_delete") == 1
    assert sides.wb_record(MEETINGS, mid).get("is_deleted")


async def test_activity_filter_scope_change_removes_service_created_task(sides: Sides) -> None:
    from sync.core.state_models import FilterRule

    await sides.world.set_policy(
        UPN, activity_filters=[FilterRule(field="activity_priority", value="High")]
    )
    hot = sides.wb_create(TASKS, {"name": "Hot", "activity_priority": "High"})
    sides.wb_create(TASKS, {"name": "Cold", "activity_priority": "Low"})
    run = await sides.run(Stream.TODO)
    assert [t["title"] for t in sides.outlook_items("task").values()] == ["Hot"], run.counts
    sides.advance_clock()
    sides.wb_edit(TASKS, hot, {"activity_priority": "Low"})
    run = await sides.run(Stream.TODO)
    assert run.counts.get("outlook_delete") == 1
    assert sides.outlook_items("task") == {}
    assert not sides.wb_record(TASKS, hot).get("is_deleted")  # never deleted in Workbooks
