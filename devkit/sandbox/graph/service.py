"""The sandbox's behaviour behind the routes: mutations that notify subscribers, delta rounds,
throttling and fault injection.  Routes (`server.py`) and controls (`control.py`) call it; tests
may call it directly through the handle the runner yields."""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from multidict import CIMultiDict

from devkit.sandbox.graph import calendar
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

Entry = tuple[str, Item | Tombstone]


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


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.state = GraphState(
            config.tenant_id, seed_default_todo_list=config.seed_default_todo_list
        )
        self.rounds: dict[str, int] = {}  # delta round -> newest generation handed out
        self.notifier = Notifier(config=config, tenant_id=self.state.tenant_id)
        self.throttle = Throttle(config)
        self.faults: list[Fault] = []
        self.throttled = 0  # 429s answered by the per-mailbox throttle
        self.requests: list[tuple[str, str, CIMultiDict[str]]] = []  # method, path_qs, headers

    # --- user actions (notify subscribers) ----------------------------------------------------
    # `strict`: validate as the Graph API does (routes); controls and tests may seed loosely.
    def create_item(
        self, box: Mailbox, cont: Container, data: dict[str, Any], *, strict: bool = False
    ) -> Item:
        if cont.kind == "event":
            data = calendar.prepare_write(data, None, strict=strict)
            calendar.check_result({}, data)
        item = self.state.create(cont, data)
        if cont.kind == "event":
            calendar.settle(item, None)
        self._notify(box, cont, item, "created")
        return item

    def update_item(
        self,
        box: Mailbox,
        cont: Container,
        item: Item,
        data: dict[str, Any],
        *,
        strict: bool = False,
    ) -> Item:
        if item.kind == "event":
            data = calendar.prepare_write(data, item, strict=strict)
            calendar.check_result(item.data, data)
            before = calendar.signature(item)
            self.state.update(item, data)
            calendar.settle(item, before)
        else:
            self.state.update(item, data)
        self._notify(box, cont, item, "updated")
        return item

    def delete_item(self, box: Mailbox, cont: Container, item: Item) -> None:
        self.state.delete(cont, item)
        self._notify(box, cont, item, "deleted")

    def edit_occurrence(
        self,
        box: Mailbox,
        cont: Container,
        master: Item,
        key: str,
        data: dict[str, Any],
        *,
        strict: bool = False,
    ) -> calendar.Instance:
        """One occurrence edited: an exception, stored in (and notified as) the master."""
        inst = calendar.edit_occurrence(master, key, data, strict=strict)
        self.state.touch(master)
        self._notify(box, cont, master, "updated")
        return inst

    def cancel_occurrence(self, box: Mailbox, cont: Container, master: Item, key: str) -> None:
        """One occurrence deleted: the master changes; the occurrence is never reported."""
        calendar.cancel_occurrence(master, key)
        self.state.touch(master)
        self._notify(box, cont, master, "updated")

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
        window = calendar.parse_window(params) if cont.key == f"event:{CALENDAR}" else None
        for item in cont.items.values():
            if item.seq <= since:
                continue
            if window is not None and not calendar.in_view(item, *window):
                if not initial:  # an event that left the window reads as removed (graph.md §2.4)
                    gone[item.rest_id] = Tombstone(item.rest_id, item.immutable_id, item.seq)
                    pending.append(("gone", item.rest_id))
                continue
            pending.append(("item", item.immutable_id))
        if not initial:
            for tomb in cont.tombstones:
                if tomb.seq > since:
                    for entry in self._removals(cont, tomb, window):
                        gone[entry.rest_id] = entry
                        pending.append(("gone", entry.rest_id))
        cap = params.get("$top", "")
        if cap.isdigit():  # message delta: the round stops there; its delta link is past the rest
            pending = pending[: int(cap)]
        state = DeltaState(box.user_id, cont.key, since, upto, params, pending, gone)
        state.round_id = secrets.token_hex(8)
        self.rounds[state.round_id] = 0
        return self.state.new_token(state)

    def _removals(
        self, cont: Container, tomb: Tombstone, window: tuple[datetime, datetime] | None
    ) -> list[Tombstone]:
        """A deleted item's `@removed` entries: the item itself, plus (only when configured:
        unconfirmed for Graph) the instances a deleted series had in the window."""
        out = [tomb]
        if (
            tomb.series is None
            or window is None
            or not self.config.series_delete_reports_occurrences
        ):
            return out
        ghost = Item(
            "event", tomb.immutable_id, tomb.rest_id, cont.key, tomb.data, series=tomb.series
        )
        for inst in calendar.instances(ghost, *window):
            rest = calendar.occurrence_id(tomb.rest_id, inst.key)
            imm = calendar.occurrence_id(tomb.immutable_id, inst.key)
            out.append(Tombstone(rest, imm, tomb.seq))
        return out

    def page(self, token: str, size: int) -> tuple[list[Entry], str | None, str | None]:
        """Serve one page of a round: (entries, next skip token, delta token).  A series (master
        and its instances) is one unit and never split, so a page may exceed `size` rows."""
        st = self.state.tokens[token]
        box = self.state.mailboxes[st.mailbox]
        cont = box.containers[st.container]
        weigh = self._weigher(cont, st.params)
        pending = list(st.pending or [])
        entries: list[Entry] = []
        rows = taken = 0
        for kind, key in pending:
            if kind == "item" and key in cont.items:
                entry: Entry = ("item", cont.items[key])
            elif kind == "item":  # deleted or moved while the round was being read
                entry = ("gone", Tombstone(key, key, 0))
            else:
                entry = ("gone", st.gone[key])
            weight = weigh(entry)
            if taken and rows + weight > size:
                break
            entries.append(entry)
            rows += weight
            taken += 1
        rest = pending[taken:]
        if rest:
            if self.config.delta_duplicates and taken:
                rest.insert(0, pending[taken - 1])  # Graph may repeat an item across pages (§2.1)
            nxt = DeltaState(st.mailbox, st.container, st.since, st.upto, st.params, rest, st.gone)
            nxt.round_id, nxt.generation = st.round_id, st.generation + 1
            self.rounds[st.round_id] = max(self.rounds.get(st.round_id, 0), nxt.generation)
            return entries, self.state.new_token(nxt), None
        final = DeltaState(st.mailbox, st.container, st.upto, st.upto, st.params)
        return entries, None, self.state.new_token(final)

    def _weigher(self, cont: Container, params: dict[str, str]) -> Callable[[Entry], int]:
        if cont.key != f"event:{CALENDAR}":
            return lambda _entry: 1
        window = calendar.parse_window(params)

        def weigh(entry: Entry) -> int:
            item = entry[1]
            if isinstance(item, Item) and item.series is not None:
                return 1 + len(calendar.instances(item, *window))
            return 1

        return weigh

    def stale_skip_token(self, st: DeltaState) -> bool:
        """A nextLink Exchange no longer serves: invalidated on request, or older than the
        generations it keeps (`delta_generations_kept`, 0 = all)."""
        if st.pending is None:
            return False
        if st.stale:
            return True
        keep = self.config.delta_generations_kept
        newest = self.rounds.get(st.round_id, st.generation)
        return keep > 0 and st.generation <= newest - keep

    # --- faults ---------------------------------------------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.count -= 1
                return fault
        return None
