"""In-memory model of the Graph tenant the sandbox serves: mailboxes, items, change log, tokens.

Delta is modelled the way Exchange behaves from the outside: every change stamps the item with
a new global sequence number; a delta round returns what changed in one container (folder,
calendar, To Do list) after the sequence number saved in its token.  Items that leave a
container (deleted or moved away) leave a tombstone there, which a later round reports as
``@removed``.  Every item has two ids: an immutable id (never changes) and a REST id that is
regenerated on every move, so clients that do not send ``Prefer: IdType="ImmutableId"`` see
ids change on move, as in Exchange.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

Kind = Literal["message", "contact", "event", "task"]

# Well-known mail folders (graph.md §1.1); the sandbox uses the names as folder ids too.
WELL_KNOWN_FOLDERS = ("inbox", "sentitems", "drafts", "deleteditems", "archive", "junkemail")
DEFAULT_CONTACT_FOLDER = "contacts"
CALENDAR = "calendar"
DEFAULT_TODO_LIST = "Tasks"

ODATA_TYPES: dict[Kind, str] = {
    "message": "#microsoft.graph.message",
    "contact": "#microsoft.graph.contact",
    "event": "#microsoft.graph.event",
    "task": "#microsoft.graph.todoTask",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id(prefix: str) -> str:
    # Real ids are long base64-ish strings that may contain '-' and '_'; keep them URL-safe.
    return f"{prefix}{secrets.token_urlsafe(18)}"


@dataclass
class Series:
    """What makes an event a series master beyond its `recurrence`: edited occurrences
    (exceptions, by original date: only the fields the user changed) and cancelled ones.
    Exchange keeps both inside the master item, so any change here is a change of the master
    (one changeKey, one notification, one delta unit)."""

    exceptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)

    def copy(self) -> Series:
        return Series({k: dict(v) for k, v in self.exceptions.items()}, set(self.cancelled))


@dataclass
class Item:
    kind: Kind
    immutable_id: str
    rest_id: str
    container: str
    data: dict[str, Any]
    ext: dict[str, str] = field(default_factory=dict)  # single-value extended properties
    linked: list[dict[str, Any]] = field(default_factory=list)  # todoTask linkedResources
    seq: int = 0
    change_key: str = ""
    created: datetime = field(default_factory=utcnow)
    modified: datetime = field(default_factory=utcnow)
    series: Series | None = None  # events with a recurrence (series masters)


@dataclass
class Tombstone:
    rest_id: str
    immutable_id: str
    seq: int
    reason: str = "deleted"
    data: dict[str, Any] = field(default_factory=dict)  # last state (events: window filtering)
    series: Series | None = None  # a deleted series master's last exceptions/cancellations


@dataclass
class Container:
    key: str  # "<kind>:<container id>"
    kind: Kind
    items: dict[str, Item] = field(default_factory=dict)  # by immutable id
    tombstones: list[Tombstone] = field(default_factory=list)
    display_name: str = ""
    wellknown: str = "none"  # To Do lists: wellknownListName ("defaultList" for "Tasks")


@dataclass
class Mailbox:
    user_id: str  # GUID
    upn: str
    containers: dict[str, Container] = field(default_factory=dict)
    categories: list[dict[str, str]] = field(default_factory=list)
    time_zone: str = "UTC"  # mailboxSettings.timeZone: a Windows zone id or an IANA name


@dataclass
class DeltaState:
    """What a delta/skip token stands for. ``pending`` is the rest of a round (skip tokens)."""

    mailbox: str
    container: str
    since: int
    upto: int
    params: dict[str, str]
    pending: list[tuple[str, str]] | None = None  # ("item", immutable id) | ("gone", rest id)
    gone: dict[str, Tombstone] = field(default_factory=dict)
    expired: bool = False
    round_id: str = ""  # the round a skip token belongs to
    generation: int = 0  # its place in the round (Exchange's sync-state generation)
    stale: bool = False  # a skip token Exchange no longer knows (SyncStateNotFound)


@dataclass
class Subscription:
    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None = field(repr=False)  # shared secret of the subscriber
    expires: datetime
    mailbox: str
    container: str
    kind: Kind
    immutable_ids: bool
    created: datetime = field(default_factory=utcnow)


class GraphState:
    """All data of the sandbox tenant. Mutations return the item so callers can notify."""

    def __init__(self, tenant_id: str = "", *, seed_default_todo_list: bool = False) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        # Real mailboxes always have the To Do list "Tasks" (wellknownListName defaultList).
        self.seed_default_todo_list = seed_default_todo_list
        self.mailboxes: dict[str, Mailbox] = {}  # by user id
        self.by_upn: dict[str, str] = {}
        self.seq = 0
        self.tokens: dict[str, DeltaState] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.access_tokens: dict[str, datetime] = {}
        self.token_roles: dict[str, frozenset[str]] = {}  # the `roles` each token was issued
        self.rest_index: dict[str, str] = {}  # rest id -> immutable id

    # --- mailboxes -----------------------------------------------------------------------
    def add_mailbox(self, upn: str, user_id: str | None = None) -> Mailbox:
        key = upn.lower()
        if key in self.by_upn:
            return self.mailboxes[self.by_upn[key]]
        box = Mailbox(user_id=user_id or str(uuid.uuid4()), upn=key)
        for name in WELL_KNOWN_FOLDERS:
            self._container(box, "message", name)
        self._container(box, "contact", DEFAULT_CONTACT_FOLDER)
        self._container(box, "event", CALENDAR)
        if self.seed_default_todo_list:
            self.add_container(box, "task", DEFAULT_TODO_LIST).wellknown = "defaultList"
        self.mailboxes[box.user_id] = box
        self.by_upn[key] = box.user_id
        return box

    def mailbox(self, user: str) -> Mailbox | None:
        if user in self.mailboxes:
            return self.mailboxes[user]
        uid = self.by_upn.get(user.lower())
        return self.mailboxes.get(uid) if uid else None

    @staticmethod
    def _container(box: Mailbox, kind: Kind, cid: str, name: str = "") -> Container:
        key = f"{kind}:{cid}"
        if key not in box.containers:
            box.containers[key] = Container(key=key, kind=kind, display_name=name or cid)
        return box.containers[key]

    def add_container(self, box: Mailbox, kind: Kind, name: str) -> Container:
        cid = new_id("L") if kind == "task" else new_id("F")
        return self._container(box, kind, cid, name)

    def container(self, box: Mailbox, kind: Kind, cid: str) -> Container | None:
        return box.containers.get(f"{kind}:{cid}")

    # --- items ---------------------------------------------------------------------------
    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def find(self, box: Mailbox, kind: Kind, item_id: str) -> tuple[Container, Item] | None:
        imm = self.rest_index.get(item_id, item_id)
        for cont in box.containers.values():
            if cont.kind == kind and imm in cont.items:
                return cont, cont.items[imm]
        return None

    def create(self, cont: Container, data: dict[str, Any]) -> Item:
        item = Item(
            kind=cont.kind,
            immutable_id=new_id("I"),
            rest_id=new_id("R"),
            container=cont.key,
            data={},
        )
        self.rest_index[item.rest_id] = item.immutable_id
        cont.items[item.immutable_id] = item
        self.update(item, data)
        return item

    def update(self, item: Item, data: dict[str, Any]) -> Item:
        for key, value in data.items():
            if key in ("id", "@odata.type", "@odata.etag", "changeKey"):
                continue
            if key == "singleValueExtendedProperties":
                for prop in value or []:
                    item.ext[str(prop["id"]).lower()] = str(prop.get("value", ""))
                continue
            if key == "linkedResources":
                for res in value or []:
                    item.linked.append({"id": new_id("K"), **res})
                continue
            item.data[key] = value
        self.touch(item)
        return item

    def touch(self, item: Item) -> None:
        """A new version: next sequence number, new change key, modified now."""
        item.seq = self.next_seq()
        item.change_key = secrets.token_urlsafe(12)
        item.modified = utcnow()

    def delete(self, cont: Container, item: Item) -> None:
        del cont.items[item.immutable_id]
        self.rest_index.pop(item.rest_id, None)
        series = item.series.copy() if item.series else None
        cont.tombstones.append(
            Tombstone(
                item.rest_id,
                item.immutable_id,
                self.next_seq(),
                data=dict(item.data),
                series=series,
            )
        )

    def move(self, src: Container, item: Item, dst: Container) -> Item:
        """Move keeps the immutable id and issues a new REST id (graph.md §4.1)."""
        del src.items[item.immutable_id]
        src.tombstones.append(Tombstone(item.rest_id, item.immutable_id, self.next_seq()))
        self.rest_index.pop(item.rest_id, None)
        item.rest_id = new_id("R")
        self.rest_index[item.rest_id] = item.immutable_id
        item.container = dst.key
        dst.items[item.immutable_id] = item
        self.touch(item)
        return item

    # --- delta tokens ----------------------------------------------------------------------
    def new_token(self, state: DeltaState) -> str:
        token = secrets.token_urlsafe(24)
        self.tokens[token] = state
        return token

    def expire_tokens(self, mailbox: str | None = None) -> int:
        count = 0
        for state in self.tokens.values():
            if mailbox is None or state.mailbox == mailbox:
                state.expired = True
                count += 1
        return count

    def stale_next_links(self, mailbox: str | None = None) -> int:
        """Forget every outstanding skip token (nextLink), keeping delta links: what Exchange
        does when it drops older sync-state generations of a round."""
        count = 0
        for state in self.tokens.values():
            if state.pending is not None and (mailbox is None or state.mailbox == mailbox):
                state.stale = True
                count += 1
        return count

    # --- dump ----------------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "tenantId": self.tenant_id,
            "seq": self.seq,
            "mailboxes": {
                box.upn: {
                    "id": box.user_id,
                    "containers": {
                        key: {
                            "displayName": cont.display_name,
                            "wellknownListName": cont.wellknown,
                            "items": [
                                {
                                    "id": it.immutable_id,
                                    "restId": it.rest_id,
                                    "seq": it.seq,
                                    **it.data,
                                    "ext": it.ext,
                                    "linkedResources": it.linked,
                                    **(
                                        {
                                            "series": {
                                                "exceptions": it.series.exceptions,
                                                "cancelled": sorted(it.series.cancelled),
                                            }
                                        }
                                        if it.series
                                        else {}
                                    ),
                                }
                                for it in cont.items.values()
                            ],
                            "tombstones": len(cont.tombstones),
                        }
                        for key, cont in box.containers.items()
                    },
                    "categories": box.categories,
                }
                for box in self.mailboxes.values()
            },
            "subscriptions": [
                {
                    "id": s.id,
                    "resource": s.resource,
                    "expirationDateTime": iso(s.expires),
                    "notificationUrl": s.notification_url,
                }
                for s in self.subscriptions.values()
            ],
            "deltaTokens": len(self.tokens),
        }
