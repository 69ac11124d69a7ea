"""Workbooks activities <-> canonical fields <-> Graph To Do tasks and events.

Tasks and phone calls (``activity/tasks``; a phone call is a Task whose ``activity_type`` is
"Phone call") map to To Do tasks; meetings (``activity/meetings``) map to calendar events.

| canonical (task) | Workbooks                      | To Do task                          |
|------------------|--------------------------------|-------------------------------------|
| title            | name                           | title                               |
| notes            | description (HTML)             | body.content (text)                 |
| status           | activity_status                | status                              |
| importance       | activity_priority              | importance                          |
| due              | due (date in the user's zone)  | dueDateTime (midnight, user's zone) |
| completed        | completed (instant)            | completedDateTime                   |

| canonical (event) | Workbooks                     | Graph event                          |
|-------------------|-------------------------------|--------------------------------------|
| subject           | name                          | subject                              |
| body              | description (HTML)            | body (HTML)                          |
| location          | location                      | location.displayName                 |
| all_day           | all_day                       | isAllDay                             |
| start             | start                         | start                                |
| end               | finish (all-day: last day)    | end (all-day: day after, exclusive)  |
| recurrence        | description's last line       | recurrence (in words; never written) |

A recurring series is one pair, keyed by its master (``sync.core.series``): its fields are those
of the occurrence it stands for, and ``recurrence`` describes the pattern ("" for a single
event).  Workbooks has no recurrence field, so it is kept as the description's last line,
after ``series.NOTE_PREFIX``.  Nothing is ever written to a series from Workbooks.

Times: timed values are canonical UTC instants; all-day values and To Do due dates are
canonical dates.  To Do due dates are dates (the To Do UI has no due time), read in the
mailbox's zone; a Workbooks due *time* is reduced to its day in the record's zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sync.core import series
from sync.core.graph_models import WORKBOOKS_APPLICATION_NAME
from sync.core.mapping import times
from sync.core.mapping.text import clean, html_to_text, text_to_html

Fields = dict[str, Any]

TASK_TYPE = "Private::Activity::Task"
MEETING_TYPE = "Private::Activity::Meeting"
PHONE_CALL = "Phone call"
DEFAULT_TASK_ACTIVITY_TYPE = "To-do"
DEFAULT_MEETING_LENGTH = timedelta(hours=1)

TASK_FIELDS = ("title", "notes", "status", "importance", "due", "completed")
EVENT_FIELDS = ("subject", "body", "location", "all_day", "start", "end", "recurrence")
# What a Graph write may carry for a single event (``recurrence`` is never written).
EVENT_WRITABLE = ("subject", "body", "location", "all_day", "start", "end")

TASK_COLUMNS = (
    "name",
    "activity_type",
    "activity_status",
    "activity_priority",
    "description",
    "due",
    "completed",
)
MEETING_COLUMNS = (
    "name",
    "activity_type",
    "activity_status",
    "description",
    "location",
    "all_day",
    "start",
    "finish",
    "duration",
)

# Workbooks activity_status <-> canonical status ("Completed" is a customer variant, §4.7).
STATUS_FROM_WORKBOOKS = {
    "new": "not_started",
    "not started": "not_started",
    "in progress": "in_progress",
    "complete": "completed",
    "completed": "completed",
}
STATUS_TO_WORKBOOKS = {"not_started": "New", "in_progress": "In progress", "completed": "Complete"}
STATUS_FROM_GRAPH = {
    "notStarted": "not_started",
    "inProgress": "in_progress",
    "completed": "completed",
    "waitingOnOthers": "in_progress",
    "deferred": "not_started",
}
STATUS_TO_GRAPH = {
    "not_started": "notStarted",
    "in_progress": "inProgress",
    "completed": "completed",
}
IMPORTANCE_FROM_WORKBOOKS = {"high": "high", "medium": "normal", "normal": "normal", "low": "low"}
IMPORTANCE_TO_WORKBOOKS = {"high": "High", "normal": "Medium", "low": "Low"}


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return _text(value).lower() in ("true", "t", "on", "1", "yes", "y")


def status_from_workbooks(value: Any) -> str:
    return STATUS_FROM_WORKBOOKS.get(_text(value).lower(), "not_started")


def importance_from_workbooks(value: Any) -> str:
    return IMPORTANCE_FROM_WORKBOOKS.get(_text(value).lower(), "normal")


def is_completed(row: Mapping[str, Any]) -> bool:
    """A Workbooks activity whose status means done (used by the activity scope)."""
    return status_from_workbooks(row.get("activity_status")) == "completed"


def is_phone_call(row: Mapping[str, Any]) -> bool:
    return _text(row.get("activity_type")).lower() == PHONE_CALL.lower()


# ----------------------------------------------------------------- tasks


def task_from_workbooks(row: Mapping[str, Any], tz: str) -> Fields:
    """A Workbooks task or phone call row -> canonical task fields (``tz``: the mailbox zone,
    used for naive values)."""
    status = status_from_workbooks(row.get("activity_status"))
    due = times.parse_var_date_time(row.get("due"), tz)
    completed = times.parse_var_date_time(row.get("completed"), tz)
    return {
        "title": _text(row.get("name")),
        "notes": html_to_text(row.get("description")),
        "status": status,
        "importance": importance_from_workbooks(row.get("activity_priority")),
        "due": "" if due is None else _day(due, tz),
        "completed": "" if completed is None or status != "completed" else _moment(completed),
    }


def _day(value: times.VarDateTime, tz: str) -> str:
    return value.value if not value.has_time else times.instant_to_date(value.value, tz)


def _moment(value: times.VarDateTime) -> str:
    return value.value if value.has_time else times.date_start_instant(value.value, value.tz)


def task_to_workbooks(
    fields: Mapping[str, Any], tz: str, changed: Iterable[str] | None = None
) -> Fields:
    """Canonical task fields -> Workbooks columns (explicit var_date_time, never naive)."""
    wanted = set(TASK_FIELDS if changed is None else changed)
    row: Fields = {}
    if "title" in wanted:
        row["name"] = _text(fields.get("title")) or "(no title)"
    if "notes" in wanted:
        row["description"] = text_to_html(fields.get("notes"))
    if "status" in wanted:
        row["activity_status"] = STATUS_TO_WORKBOOKS.get(str(fields.get("status")), "New")
    if "importance" in wanted:
        row["activity_priority"] = IMPORTANCE_TO_WORKBOOKS.get(
            str(fields.get("importance")), "Medium"
        )
    if "due" in wanted:
        due = _text(fields.get("due"))
        row["due"] = times.format_var_date_time(due, tz) if due else None
    if "completed" in wanted or "status" in wanted:
        done = _text(fields.get("completed"))
        row["completed"] = times.format_var_date_time(done, tz) if done else None
    return row


def _body_text(item: Mapping[str, Any]) -> str:
    """A Graph item's ``body`` (HTML or text) as canonical plain text."""
    body = item.get("body") or {}
    content = body.get("content")
    if _text(body.get("contentType")).lower() == "html":
        return html_to_text(content)
    return clean(content)


def task_from_graph(task: Mapping[str, Any], tz: str) -> Fields:
    """A Graph todoTask (wire JSON) -> canonical task fields."""
    status = STATUS_FROM_GRAPH.get(_text(task.get("status")), "not_started")
    return {
        "title": _text(task.get("title")),
        "notes": _body_text(task),
        "status": status,
        "importance": _text(task.get("importance")) or "normal",
        "due": times.graph_to_date(task.get("dueDateTime"), tz),
        "completed": times.graph_to_instant(task.get("completedDateTime"))
        if status == "completed"
        else "",
    }


def task_to_graph(
    fields: Mapping[str, Any], tz: str, changed: Iterable[str] | None = None
) -> Fields:
    """Canonical task fields -> todoTask JSON (the whole task, or the ``changed`` parts)."""
    wanted = set(TASK_FIELDS if changed is None else changed)
    body: Fields = {}
    if "title" in wanted:
        body["title"] = _text(fields.get("title")) or "(no title)"
    if "notes" in wanted:
        body["body"] = {"content": clean(fields.get("notes")), "contentType": "text"}
    if "status" in wanted:
        body["status"] = STATUS_TO_GRAPH.get(str(fields.get("status")), "notStarted")
    if "importance" in wanted:
        body["importance"] = _text(fields.get("importance")) or "normal"
    if "due" in wanted:
        due = _text(fields.get("due"))
        body["dueDateTime"] = times.date_to_graph(due, tz) if due else None
    if ("completed" in wanted or "status" in wanted) and fields.get("status") == "completed":
        done = _text(fields.get("completed"))
        if done:
            body["completedDateTime"] = times.instant_to_graph(done, "UTC")
    return body


def task_linked_resource(workbooks_id: int, title: str, web_url: str | None = None) -> Fields:
    """The linkedResource that points a To Do task back at its Workbooks record (graph.md §4.4);
    its ``externalId`` is the stamp that re-matches tasks on a resync."""
    resource: Fields = {
        "applicationName": WORKBOOKS_APPLICATION_NAME,
        "externalId": str(workbooks_id),
        "displayName": title or "Workbooks",
    }
    if web_url:
        resource["webUrl"] = web_url
    return resource


def task_stamped_id(task: Mapping[str, Any]) -> int | None:
    for res in task.get("linkedResources") or []:
        if res.get("applicationName") == WORKBOOKS_APPLICATION_NAME and res.get("externalId"):
            try:
                return int(str(res["externalId"]).strip())
            except ValueError:
                return None
    return None


# ----------------------------------------------------------------- meetings / events


def event_from_workbooks(row: Mapping[str, Any], tz: str) -> Fields:
    """A Workbooks meeting row -> canonical event fields.

    All-day meetings keep their dates; Workbooks ``finish`` is the last day (inclusive), the
    canonical ``end`` is the day after it, as Graph counts.  A timed meeting without a finish
    lasts ``duration`` seconds, or an hour."""
    all_day = _flag(row.get("all_day"))
    start = times.parse_var_date_time(row.get("start"), tz)
    finish = times.parse_var_date_time(row.get("finish"), tz)
    body, recurrence = series.split_note(html_to_text(row.get("description")))
    fields: Fields = {
        "subject": _text(row.get("name")),
        "body": body,
        "location": _text(row.get("location")),
        "all_day": all_day,
        "start": "",
        "end": "",
        "recurrence": recurrence,
    }
    if start is None:
        return fields
    if all_day:
        first = _day(start, start.tz)
        last = _day(finish, finish.tz) if finish is not None else first
        fields["start"], fields["end"] = first, times.add_days(max(first, last), 1)
        return fields
    begin = _moment(start)
    if finish is not None:
        end = _moment(finish)
    else:
        seconds = int(_text(row.get("duration")) or 0) or DEFAULT_MEETING_LENGTH.seconds
        end = times.instant(times.parse_instant(begin) + timedelta(seconds=seconds))
    fields["start"], fields["end"] = begin, max(begin, end)
    return fields


def event_to_workbooks(
    fields: Mapping[str, Any], tz: str, changed: Iterable[str] | None = None
) -> Fields:
    """Canonical event fields -> Workbooks meeting columns (the description carries the
    recurrence line of a series-backed meeting)."""
    wanted = set(EVENT_FIELDS if changed is None else changed)
    row: Fields = {}
    if "subject" in wanted:
        row["name"] = _text(fields.get("subject")) or "(no subject)"
    if wanted & {"body", "recurrence"}:
        text = series.with_note(clean(fields.get("body")), _text(fields.get("recurrence")))
        row["description"] = text_to_html(text)
    if "location" in wanted:
        row["location"] = _text(fields.get("location"))
    if wanted & {"all_day", "start", "end"}:
        row.update(_workbooks_times(fields, tz))
    return row


def _workbooks_times(fields: Mapping[str, Any], tz: str) -> Fields:
    start, end = _text(fields.get("start")), _text(fields.get("end"))
    if not start:
        return {}
    if fields.get("all_day"):
        last = times.add_days(end, -1) if end and end > start else start
        return {
            "all_day": True,
            "start": times.format_var_date_time(start, tz),
            "finish": times.format_var_date_time(last, tz),
        }
    return {
        "all_day": False,
        "start": times.format_var_date_time(start, tz),
        "finish": times.format_var_date_time(end or start, tz),
    }


def event_from_graph(event: Mapping[str, Any], tz: str) -> Fields:
    """A Graph event (wire JSON) -> canonical event fields.  A series arrives folded
    (``sync.core.series``): the master's row with its tracked occurrence's times."""
    all_day = bool(event.get("isAllDay"))
    recurrence = series.describe(event.get("recurrence"))
    if not recurrence and event.get("type") == series.MASTER:
        recurrence = "Repeats."
    location = (event.get("location") or {}).get("displayName")
    if all_day:
        start = times.graph_to_date(event.get("start"), tz)
        end = times.graph_to_date(event.get("end"), tz)
    else:
        start = times.graph_to_instant(event.get("start"))
        end = times.graph_to_instant(event.get("end"))
    return {
        "subject": _text(event.get("subject")),
        "body": _body_text(event),
        "location": _text(location),
        "all_day": all_day,
        "start": start,
        "end": end,
        "recurrence": recurrence,
    }


def event_to_graph(
    fields: Mapping[str, Any], tz: str, changed: Iterable[str] | None = None
) -> Fields:
    """Canonical event fields -> Graph event JSON.  Never carries ``attendees``: the service
    must never send invitations, so it only writes the organiser's own calendar item.  Never
    carries ``recurrence``, and an update of a series-backed pair is empty: a Workbooks change
    must not rewrite a series (its pattern, its times, or a body that may hold the meeting's
    online-join details) nor send its attendees an update."""
    if changed is not None and series.is_series(fields):
        return {}
    wanted = set(EVENT_WRITABLE if changed is None else changed)
    body: Fields = {}
    if "subject" in wanted:
        body["subject"] = _text(fields.get("subject"))
    if "body" in wanted:
        body["body"] = {"contentType": "text", "content": clean(fields.get("body"))}
    if "location" in wanted:
        body["location"] = {"displayName": _text(fields.get("location"))}
    if wanted & {"all_day", "start", "end"}:
        body.update(_graph_times(fields, tz))
    return body


def _graph_times(fields: Mapping[str, Any], tz: str) -> Fields:
    start, end = _text(fields.get("start")), _text(fields.get("end"))
    if not start:
        return {}
    if fields.get("all_day"):
        end = end if end and end > start else times.add_days(start, 1)
        return {
            "isAllDay": True,
            "start": times.date_to_graph(start, tz),
            "end": times.date_to_graph(end, tz),
        }
    return {
        "isAllDay": False,
        "start": times.instant_to_graph(start, tz),
        "end": times.instant_to_graph(end or start, tz),
    }


def event_bounds(fields: Mapping[str, Any], tz: str) -> tuple[datetime, datetime] | None:
    """The UTC span an event covers (all-day dates read in ``tz``), for window checks."""
    start, end = _text(fields.get("start")), _text(fields.get("end"))
    if not start:
        return None
    if times.is_date(start):
        lo = times.date_start_instant(start, tz)
        hi = times.date_start_instant(end if end and times.is_date(end) else start, tz)
        return times.parse_instant(lo), times.parse_instant(hi)
    return times.parse_instant(start), times.parse_instant(end or start)


def in_window(fields: Mapping[str, Any], tz: str, lo: datetime, hi: datetime) -> bool:
    """True when the event overlaps the calendar window [lo, hi)."""
    span = event_bounds(fields, tz)
    if span is None:
        return False
    return span[0] < hi and span[1] >= lo
