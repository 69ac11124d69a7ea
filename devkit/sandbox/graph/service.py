"""The sandbox's behaviour behind the routes: mutations that notify subscribers, delta rounds,
throttling and fault injection.  Routes (`server.py`) and controls (`control.py`) call it; tests
may call it directly through the handle the runner yields."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multidict import CIMultiDict

from devkit.sandbox.graph.config import SandboxConfig
from devkit.sandbox.graph.notify import Notifier
from devkit.sandbox.graph.state import (
    CALENDAR,
    Container,
    DeltaState,
    GraphState,
    Item,
    Mailbox,
    Tombstone,
    utcnow,
)


@dataclass
class Fault:
    """One injected fault: answer `status` (or only wait `delay`) for the next `count` matches."""

    status: int | None = 503
    count: int = 1
    path: str = ""  # substring of the request path; "" matches all /v1.0 requests
    method: str = ""  # "" matches every method
    retry_after: int | None = None
    delay: float = 0.0
    code: str = ""

    def matches(self, method: str, path: str) -> bool:
        if self.count <= 0:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return self.path.lower() in path.lower()


@dataclass
class Throttle:
    """Graph's per app+mailbox limits (graph.md §3.1): requests per window and concurrency."""

    config: SandboxConfig
    history: dict[str, deque[float]] = field(default_factory=dict)
    inflight: dict[str, int] = field(default_factory=dict)

    def enter(self, mailbox: str) -> int | None:
        """Admit a request (return None) or give the Retry-After seconds of a 429."""
        now = time.monotonic()
        hist = self.history.setdefault(mailbox, deque())
        while hist and hist[0] <= now - self.config.throttle_window_seconds:
            hist.popleft()
        if len(hist) >= self.config.throttle_requests:
            wait = hist[0] + self.config.throttle_window_seconds - now
            return max(1, math.ceil(wait))
        if self.inflight.get(mailbox, 0) >= self.config.throttle_concurrency:
            return self.config.concurrency_retry_after
        hist.append(now)
        self.inflight[mailbox] = self.inflight.get(mailbox, 0) + 1
        return None

    def leave(self, mailbox: str) -> None:
        self.inflight[mailbox] = max(0, self.inflight.get(mailbox, 0) - 1)


def _parse_dt(value: Any) -> datetime | None:
    if not isinstance(value, dict) or not value.get("dateTime"):
        return None
    text = str(value["dateTime"]).rstrip("Z")
    try:
        parsed = datetime.fromisoformat(text[:26])
    except ValueError:
        return None
    # The sandbox stores event times in UTC (outlook.timezone is not applied on write).
    return parsed.replace(tzinfo=UTC)


def in_window(data: dict[str, Any], params: dict[str, str]) -> bool:
    """calendarView semantics: the event overlaps [startDateTime, endDateTime)."""
    start, end = _parse_dt(data.get("start")), _parse_dt(data.get("end"))
    lo = datetime.fromisoformat(params["startDateTime"].replace("Z", "+00:00"))
    hi = datetime.fromisoformat(params["endDateTime"].replace("Z", "+00:00"))
    if start is None:
        return False
    return start < hi and (end or start) >= lo


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.state = GraphState(config.tenant_id)
        self.notifier = Notifier(config=config, tenant_id=self.state.tenant_id)
        self.throttle = Throttle(config)
        self.faults: list[Fault] = []
        self.throttled = 0  # 429s answered by the per-mailbox throttle
        self.requests: list[tuple[str, str, CIMultiDict[str]]] = []  # method, path_qs, headers

    # --- user actions (notify subscribers) ----------------------------------------------------
    def create_item(self, box: Mailbox, cont: Container, data: dict[str, Any]) -> Item:
        item = self.state.create(cont, data)
        self._notify(box, cont, item, "created")
        return item

    def update_item(self, box: Mailbox, cont: Container, item: Item, data: dict[str, Any]) -> Item:
        self.state.update(item, data)
        self._notify(box, cont, item, "updated")
        return item

    def delete_item(self, box: Mailbox, cont: Container, item: Item) -> None:
        self.state.delete(cont, item)
        self._notify(box, cont, item, "deleted")

    def move_item(self, box: Mailbox, src: Container, item: Item, dst: Container) -> Item:
        old = Item(item.kind, item.immutable_id, item.rest_id, src.key, {}, change_key="")
        self.state.move(src, item, dst)
        self._notify(box, src, old, "deleted")
        self._notify(box, dst, item, "created")
        return item

    def _notify(self, box: Mailbox, cont: Container, item: Item, change_type: str) -> None:
        now = utcnow()
        for sub in list(self.state.subscriptions.values()):
            if sub.mailbox != box.user_id or sub.kind != cont.kind or sub.expires <= now:
                continue
            if sub.container not in ("*", cont.key):
                continue
            if change_type not in [c.strip() for c in sub.change_type.split(",")]:
                continue
            item_id = item.immutable_id if sub.immutable_ids else item.rest_id
            self.notifier.change(sub, change_type, item_id, f'W/"{item.change_key}"')

    # --- delta ----------------------------------------------------------------------------
    def start_round(
        self,
        box: Mailbox,
        cont: Container,
        since: int,
        params: dict[str, str],
        *,
        initial: bool,
    ) -> str:
        """Freeze the list of changes after `since`; returns the skip token of its first page.
        An initial round lists what exists; a follow-up round also reports removals."""
        upto = self.state.seq
        pending: list[tuple[str, str]] = []
        gone: dict[str, Tombstone] = {}
        for item in cont.items.values():
            if item.seq <= since:
                continue
            if cont.key == f"event:{CALENDAR}" and not in_window(item.data, params):
                if not initial:  # an event that left the window reads as removed (graph.md §2.4)
                    gone[item.rest_id] = Tombstone(item.rest_id, item.immutable_id, item.seq)
                    pending.append(("gone", item.rest_id))
                continue
            pending.append(("item", item.immutable_id))
        if not initial:
            for tomb in cont.tombstones:
                if tomb.seq > since:
                    gone[tomb.rest_id] = tomb
                    pending.append(("gone", tomb.rest_id))
        state = DeltaState(box.user_id, cont.key, since, upto, params, pending, gone)
        return self.state.new_token(state)

    def page(
        self, token: str, size: int
    ) -> tuple[list[tuple[str, Item | Tombstone]], str | None, str | None]:
        """Serve one page of a round: (entries, next skip token, delta token)."""
        st = self.state.tokens[token]
        box = self.state.mailboxes[st.mailbox]
        cont = box.containers[st.container]
        pending = list(st.pending or [])
        taken, rest = pending[:size], pending[size:]
        entries: list[tuple[str, Item | Tombstone]] = []
        for kind, key in taken:
            if kind == "item" and key in cont.items:
                entries.append(("item", cont.items[key]))
            elif kind == "item":  # deleted or moved while the round was being read
                entries.append(("gone", Tombstone(key, key, 0)))
            else:
                entries.append(("gone", st.gone[key]))
        if rest:
            if self.config.delta_duplicates and taken:
                rest.insert(0, taken[-1])  # Graph may repeat an item across pages (§2.1)
            nxt = DeltaState(st.mailbox, st.container, st.since, st.upto, st.params, rest, st.gone)
            return entries, self.state.new_token(nxt), None
        final = DeltaState(st.mailbox, st.container, st.upto, st.upto, st.params)
        return entries, None, self.state.new_token(final)

    # --- faults ---------------------------------------------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.count -= 1
                return fault
        return None
