"""JSON bodies for Graph writes, built from our models.  Pure: no SDK, no HTTP.

Rules carried here so every write obeys them:
- the Workbooks id is stamped as a single-value extended property on contacts and events and
  as a `linkedResource.externalId` on To Do tasks (graph.md §4.4, §4.5);
- items we create carry the sharing category; on update the category is added only when the
  caller sends `categories` (otherwise the item's categories are left alone);
- events never carry attendees: writing attendees makes Exchange send invitations, which a sync
  must never do as a side effect.  Read-only fields are never sent.
"""

from __future__ import annotations

from typing import Any

from sync.core.graph_models import (
    WORKBOOKS_APPLICATION_NAME,
    WORKBOOKS_ID_PROPERTY,
    Contact,
    Event,
    GraphModel,
    TodoTask,
)

_READ_ONLY = {
    "id",
    "change_key",
    "created_date_time",
    "last_modified_date_time",
    "parent_folder_id",
    "single_value_extended_properties",
}
_EVENT_READ_ONLY = _READ_ONLY | {"i_cal_uid", "type", "series_master_id", "organizer"}
_TASK_READ_ONLY = _READ_ONLY | {"linked_resources"}


def _fields(model: GraphModel, exclude: set[str], *, partial: bool) -> dict[str, Any]:
    return model.model_dump(
        mode="json", by_alias=True, exclude=exclude, exclude_unset=partial, exclude_none=True
    )


def with_category(body: dict[str, Any], category: str) -> dict[str, Any]:
    cats = list(body.get("categories", []))
    if category and category not in cats:
        cats.append(category)
    return {**body, "categories": cats}


def stamp(body: dict[str, Any], workbooks_id: str | int | None) -> dict[str, Any]:
    if workbooks_id is None:
        return body
    prop = {"id": WORKBOOKS_ID_PROPERTY, "value": str(workbooks_id)}
    return {**body, "singleValueExtendedProperties": [prop]}


def contact_body(
    contact: Contact, *, workbooks_id: str | int | None, category: str, partial: bool
) -> dict[str, Any]:
    body = _fields(contact, _READ_ONLY, partial=partial)
    if not partial or "categories" in contact.model_fields_set:
        body = with_category(body, category)
    return stamp(body, workbooks_id)


def event_body(
    event: Event,
    *,
    workbooks_id: str | int | None,
    category: str,
    partial: bool,
    transaction_id: str | None = None,
) -> dict[str, Any]:
    body = _fields(event, _EVENT_READ_ONLY, partial=partial)
    body.pop("attendees", None)  # never invite anyone (see module docstring)
    if not partial or "categories" in event.model_fields_set:
        body = with_category(body, category)
    if transaction_id:  # makes event creation idempotent on client retries (graph.md §4.3)
        body["transactionId"] = transaction_id
    return stamp(body, workbooks_id)


def task_body(task: TodoTask, *, category: str, partial: bool) -> dict[str, Any]:
    body = _fields(task, _TASK_READ_ONLY, partial=partial)
    if not partial or "categories" in task.model_fields_set:
        body = with_category(body, category)
    return body


def linked_resource(
    workbooks_id: str | int, *, display_name: str, web_url: str | None = None
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "applicationName": WORKBOOKS_APPLICATION_NAME,
        "displayName": display_name,
        "externalId": str(workbooks_id),
    }
    if web_url:
        res["webUrl"] = web_url
    return res


def ext_expand() -> str:
    """`$expand` that returns our stamp with a single GET."""
    return f"singleValueExtendedProperties($filter=id eq '{WORKBOOKS_ID_PROPERTY}')"
