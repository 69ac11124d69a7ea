"""Reads as async iterators: plain paging, and the changed-since reader with its watermark
(workbooks-api.md §2.1, §2.6, §2.7)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sync.core.errors import InvalidRequest, ResyncRequired

from . import errors
from .client import WorkbooksClient
from .wire import Cond, Filter, FormPairs, all_of, any_of, encode_filter, format_criterion
from .wire import parse_datetime as parse_wb_datetime

Record = dict[str, Any]
ALWAYS = ("id", "lock_version")


def read_params(
    columns: Sequence[str],
    where: Filter | None,
    start: int,
    limit: int,
    sort: Sequence[tuple[str, str]] = (("id", "ASC"),),
    *,
    count_total: bool = False,
) -> FormPairs:
    """One page request.  ``_start`` is always sent: without it ``_limit`` is ignored (§2.1)."""
    pairs: FormPairs = [("_start", str(start)), ("_limit", str(limit))]
    if not count_total:  # counting is expensive for the service (§2.4)
        pairs += [("__skip_total_rows", "true"), ("_skip_total_rows", "true")]
    for name, direction in sort:
        pairs += [("_sort[]", name), ("_dir[]", direction)]
    pairs += encode_filter(where)
    selected = list(dict.fromkeys([*ALWAYS, *columns]))
    return pairs + [("_select_columns[]", c) for c in selected]


async def read_page(client: WorkbooksClient, endpoint: str, params: FormPairs) -> list[Record]:
    return (await _read(client, endpoint, params))[0]


async def _read(
    client: WorkbooksClient, endpoint: str, params: FormPairs
) -> tuple[list[Record], int | None]:
    body = await client.get(endpoint, params)
    if body.get("success") is False or not isinstance(body.get("data"), list):
        raise errors.classify_texts(errors.failure_texts(body), f"GET {endpoint} failed")
    total = body.get("total")
    rows = [row for row in body["data"] if isinstance(row, dict)]
    return rows, total if isinstance(total, int) else None


async def iter_records(
    client: WorkbooksClient,
    endpoint: str,
    columns: Sequence[str],
    where: Filter | None = None,
    *,
    page_size: int | None = None,
    sort: Sequence[tuple[str, str]] = (("id", "ASC"),),
    count_total: bool = False,
) -> AsyncIterator[Record]:
    """Every matching record, page by page, until a short page (§2.4).

    ``count_total`` asks for ``total`` so that a result of exactly one full page costs one call,
    not two; worth it for small, selective lookups (IN-lists), not for big scans.
    Offset paging: fine for stable sets (queues, lookups).  For data that changes while it is
    read, use ``changed_since``, which pages by watermark instead.
    """
    size = page_size or client.config.page_size
    start = 0
    while True:
        params = read_params(columns, where, start, size, sort, count_total=count_total)
        page, total = await _read(client, endpoint, params)
        for row in page:
            yield row
        start += len(page)
        if len(page) < size or (count_total and total is not None and start >= total):
            return


# ---------------------------------------------------------------- changed since


Seen = tuple[int, int, bool]  # (id, lock_version, is_deleted) as processed


@dataclass(frozen=True)
class Watermark:
    """Where a changed-since read stopped: the last ``updated_at`` second and the records already
    processed in that second (updated_at has one-second resolution, §2.7).

    Each seen record keeps its ``lock_version`` and deleted flag too, so a record changed *again*
    within the same second (or deleted in it) is read again rather than skipped.
    """

    updated_at: datetime | None = None
    seen: frozenset[Seen] = field(default_factory=frozenset)

    @property
    def seen_ids(self) -> frozenset[int]:
        return frozenset(entry[0] for entry in self.seen)

    @staticmethod
    def _entry(row: Record) -> Seen:
        return int(row["id"]), int(row.get("lock_version") or 0), bool(row.get("is_deleted"))

    def after(self, row: Record, updated_at: datetime) -> Watermark:
        entry = self._entry(row)
        if updated_at == self.updated_at:
            kept = {e for e in self.seen if e[0] != entry[0]}
            return Watermark(updated_at, frozenset(kept | {entry}))
        return Watermark(updated_at, frozenset({entry}))

    def has_seen(self, row: Record, updated_at: datetime) -> bool:
        return updated_at == self.updated_at and self._entry(row) in self.seen

    def to_json(self) -> str:
        stamp = None if self.updated_at is None else format_criterion(self.updated_at)
        return json.dumps({"v": 1, "updated_at": stamp, "seen": sorted(self.seen)})

    @classmethod
    def from_json(cls, text: str | None) -> Watermark:
        """Parse a stored watermark; an unknown format version means a full resync."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            if data.get("v") != 1:
                raise ValueError(f"watermark version {data.get('v')!r}")
            stamp = parse_wb_datetime(data.get("updated_at"))
            seen = frozenset((int(i), int(v), bool(d)) for i, v, d in data.get("seen", []))
            return cls(stamp, seen)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ResyncRequired(
                f"stored Workbooks watermark unusable: {exc}", source=errors.SOURCE
            ) from None


MAX_SEEN_FILTERS = 100


def changed_filter(
    mark: Watermark, scope: Filter | None, max_seen: int = MAX_SEEN_FILTERS
) -> Filter | None:
    """``updated_at`` window + deleted-or-not (§2.6) + the caller's scope.

    Rows in the watermark's own second are re-read except those already seen in exactly their
    current state: a record updated later *in the same second* (lower id, or changed again) must
    not be skipped.  Past ``max_seen`` seen records (a bulk import in one second) the same second
    continues by ``id gt`` the highest seen id instead; a lower-id record changed in that very
    second could then be missed (possible only while it is the server's current second).
    """
    deleted_too = any_of(Cond("is_deleted", "true"), Cond("is_deleted", "false"))
    if mark.updated_at is None:
        return all_of(deleted_too, scope)
    stamp = format_criterion(mark.updated_at)
    window: Filter | None = Cond("updated_at", "ge", stamp)
    if mark.seen:
        if len(mark.seen) <= max_seen:
            unseen = [
                any_of(
                    Cond("id", "ne", str(i)),
                    Cond("lock_version", "ne", str(v)),
                    Cond("is_deleted", "ne", "1" if d else "0"),
                )
                for i, v, d in sorted(mark.seen)
            ]
        else:
            unseen = [Cond("id", "gt", str(max(mark.seen_ids)))]
        same_second_unseen = all_of(Cond("updated_at", "eq", stamp), *unseen)
        window = all_of(window, any_of(Cond("updated_at", "gt", stamp), same_second_unseen))
    return all_of(window, deleted_too, scope)


async def changed_since(
    client: WorkbooksClient,
    endpoint: str,
    mark: Watermark,
    columns: Sequence[str],
    scope: Filter | None = None,
    *,
    page_size: int | None = None,
) -> AsyncIterator[tuple[Record, Watermark]]:
    """Records changed at or after ``mark`` (deletions included, ``is_deleted`` true), oldest
    first, each with the watermark to store once that record is safely processed.

    Every page is re-queried from ``_start=0`` with the advanced watermark (§2.7): offset paging
    over changing data skips or repeats rows.
    """
    size = page_size or client.config.page_size
    wanted = [*columns, "updated_at", "is_deleted", "lock_version"]
    sort = (("updated_at", "ASC"), ("id", "ASC"))
    while True:
        params = read_params(wanted, changed_filter(mark, scope), 0, size, sort)
        page = await read_page(client, endpoint, params)
        fresh = 0
        for row in page:
            stamp = parse_wb_datetime(row.get("updated_at"))
            if stamp is None:
                raise InvalidRequest(
                    f"{endpoint} row {row.get('id')} has no updated_at", source=errors.SOURCE
                )
            if mark.has_seen(row, stamp):
                continue  # the server ignored our id filters; never repeat a record
            mark = mark.after(row, stamp)
            fresh += 1
            yield row, mark
        if len(page) < size or fresh == 0:
            return
