"""Sent mail as the sync needs it: small pydantic models parsed from raw delta pages, and the
names of our stamps on Outlook items.

Why not the SDK's models: deserialising one `Message` through kiota costs milliseconds (and
~1 s on first use, graph.md §6.6), while `json` + these models cost microseconds.  Only the
fields listed in graph.md §4 are kept; unknown fields are ignored.  Contacts, events and To Do
tasks are not modelled: the two-way streams map their raw JSON (``sync.core.mapping``).
Pure: no HTTP, no SDK.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# The named property that stamps the Workbooks id on contacts and events (graph.md §4.5).
# A fixed GUID for this application: named properties are a per-mailbox quota, so never vary it.
WORKBOOKS_PROPERTY_SET = "{6f2d4c1e-8b7a-4e53-9a0f-2c5d8e1b7a44}"
WORKBOOKS_ID_PROPERTY = f"String {WORKBOOKS_PROPERTY_SET} Name WorkbooksId"
WORKBOOKS_APPLICATION_NAME = "Workbooks"  # linkedResource.applicationName on To Do tasks


class GraphModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class EmailAddress(GraphModel):
    name: str | None = None
    address: str | None = None


class Recipient(GraphModel):
    email_address: EmailAddress = Field(default_factory=EmailAddress)


class ItemBody(GraphModel):
    content_type: str = "text"
    content: str = ""


class OutlookItem(GraphModel):
    """Fields every Outlook item has.  `id` is an immutable id when requested (we always do)."""

    id: str
    change_key: str | None = None
    categories: list[str] = Field(default_factory=list)
    last_modified_date_time: datetime | None = None
    created_date_time: datetime | None = None


class Message(OutlookItem):
    subject: str | None = None
    internet_message_id: str | None = None
    conversation_id: str | None = None
    sent_date_time: datetime | None = None
    received_date_time: datetime | None = None
    from_: Recipient | None = Field(default=None, alias="from")
    sender: Recipient | None = None
    to_recipients: list[Recipient] = Field(default_factory=list)
    cc_recipients: list[Recipient] = Field(default_factory=list)
    bcc_recipients: list[Recipient] = Field(default_factory=list)
    is_draft: bool | None = None
    body_preview: str | None = None
    # Selected in the Sent Items delta so creating the Workbooks copy needs no extra GET.
    body: ItemBody | None = None
    parent_folder_id: str | None = None
    web_link: str | None = None


class Removal(GraphModel):
    """`{"id": ..., "@removed": {"reason": "deleted"|"changed"}}` from a delta page."""

    id: str
    reason: str = "deleted"


T = TypeVar("T", bound=OutlookItem)


@dataclass(frozen=True)
class DeltaPage(Generic[T]):
    items: list[T] = field(default_factory=list)
    removed: list[Removal] = field(default_factory=list)
    next_link: str | None = None
    delta_link: str | None = None


def page_from_payload(payload: dict[str, Any], validate: Callable[[Any], T]) -> DeltaPage[T]:
    """One delta page (its JSON) -> items, removals and the link to follow."""
    items: list[T] = []
    removed: list[Removal] = []
    for entry in payload.get("value", []):
        gone = entry.get("@removed")
        if gone is not None:
            removed.append(Removal(id=entry["id"], reason=str(gone.get("reason", "deleted"))))
        else:
            items.append(validate(entry))
    return DeltaPage(
        items=items,
        removed=removed,
        next_link=payload.get("@odata.nextLink"),
        delta_link=payload.get("@odata.deltaLink"),
    )
