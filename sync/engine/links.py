"""A two-way run's links, read as far as the run needs them.

A stream may hold 10,000 links; a run that touches three items should not read them all (a
To Do poll every five minutes would spend most of its time doing so).  ``RunLinks`` starts
from the stream's ``LinkSummary`` (one row: which records are linked, their count for the
mass-change brake, the unsettled ones) and reads the links of the ids the run looks at: by
Outlook id (a point read each, or all of them once the run asks for many), by Workbooks id
(only those the summary names: any other record is known to be unlinked without a read).

Runs that need every link read them all (``load_all``): a new Outlook round (a linked item it
does not return was deleted), a full Workbooks read (a linked record it does not return left
the scope), and a stream with no summary yet (which the full read writes).  The calendar
checks every linked series for time passing: the summary names them with the time each one's
tracked occurrence ends (``series_ends``), and only a calendar whose summary does not (written
before it did, or more series than it keeps) is read whole.

A lookup of an id the run did not read raises ``LinkNotLoaded`` instead of answering "not
linked": that answer would make the planner create a second record or item.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

from sync.concurrency import gather_bounded
from sync.core import series
from sync.core.reconcile import LinkIndex
from sync.core.state_models import Link
from sync.state.store import LinkStore, LinkSummary

K = TypeVar("K")
READ_CONCURRENCY = 16  # point reads of links in flight
# Ids to read at once above which every link is read instead: one range read of a page per
# 1,000 links beats this many point reads (or a tenth of the links, for a small stream).
LOAD_ALL_ABOVE = 200
LOAD_ALL_SHARE = 0.1


class LinkNotLoaded(RuntimeError):
    """A run asked about a link it never read: a bug in the run (it would plan a duplicate)."""


class _Looked(dict[K, Link]):
    """One side of a ``RunLinks``: only ids looked up (found or known absent) may be asked
    about until ``whole`` (every link read)."""

    def __init__(self) -> None:
        super().__init__()
        self.looked: set[K] = set()
        self.whole = False

    def _check(self, key: object) -> None:
        if not self.whole and key not in self.looked:
            raise LinkNotLoaded(f"the run asked about the link of {key!r} without reading it")

    def get(self, key: K, default: Any = None) -> Any:
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._check(key)
        return super().__contains__(key)

    def __getitem__(self, key: K) -> Link:
        self._check(key)
        return super().__getitem__(key)

    def __setitem__(self, key: K, value: Link) -> None:
        self.looked.add(key)
        super().__setitem__(key, value)

    def _all(self) -> None:
        if not self.whole:
            raise LinkNotLoaded("the run went through every link without reading them all")

    def __iter__(self) -> Iterator[K]:
        self._all()
        return super().__iter__()

    def __len__(self) -> int:
        self._all()
        return super().__len__()

    def keys(self) -> Any:
        self._all()
        return super().keys()

    def values(self) -> Any:
        self._all()
        return super().values()

    def items(self) -> Any:
        self._all()
        return super().items()


class RunLinks(LinkIndex):
    """The links of one (mailbox, stream) for one run (see the module docstring)."""

    def __init__(self, store: LinkStore, mailbox: str, stream: str, summary: LinkSummary) -> None:
        super().__init__()
        self._outlook: _Looked[str] = _Looked()
        self._workbooks: _Looked[int] = _Looked()
        self.by_outlook = self._outlook
        self.by_workbooks = self._workbooks
        self.store, self.mailbox, self.stream = store, mailbox, stream
        self.summary = summary  # as the run found it (lookups); ``persisted`` is written
        self.persisted = summary.copy()
        self.reads = 0  # point reads of links this run made

    @classmethod
    async def open(
        cls, store: LinkStore, mailbox: str, stream: str, *, whole: bool, series: bool = False
    ) -> RunLinks:
        """The stream's links for a run; every one of them read when ``whole``, when the
        stream has no summary yet, or when the run needs the linked ``series`` and the summary
        does not name them."""
        summary = await store.summary(mailbox, stream)
        links = cls(store, mailbox, stream, summary or LinkSummary())
        if whole or summary is None or (series and summary.series is None):
            await links.load_all(write=summary is None)
        return links

    @property
    def whole(self) -> bool:
        return self._outlook.whole

    def read_by_outlook(self) -> dict[str, Link]:
        """The links this run has read or made so far, by Outlook id."""
        return dict(dict.items(self._outlook))

    def __len__(self) -> int:
        """The links the stream had when the run began (the brake's base)."""
        return len(self._outlook) if self.whole else self.summary.count

    def linked_ids(self, workbooks_type: str) -> list[int]:
        """The linked records of this type (a superset while links are written)."""
        if self.whole:
            return sorted(
                w for w, x in self._workbooks.items() if x.workbooks_type == workbooks_type
            )
        return self.summary.of_type(workbooks_type)

    def unsettled(self) -> set[int]:
        if self.whole:
            return {w for w, x in self._workbooks.items() if x.unsettled}
        return set(self.summary.unsettled)

    async def load_all(self, *, write: bool = False) -> None:
        """Read every link; the summary is written when it is not exact (none yet, or a
        superset a stopped run left) or ``write``."""
        links = [x async for x in self.store.list(self.mailbox, self.stream)]
        for link in links:
            self.add(link)
        self._outlook.whole = self._workbooks.whole = True
        exact = LinkSummary.of(links)
        if write or exact != self.summary:
            await self.store.write_summary(self.mailbox, self.stream, exact)
        self.summary, self.persisted = exact, exact.copy()

    def _cheaper_whole(self, n: int) -> bool:
        return n > LOAD_ALL_ABOVE or n >= max(1.0, LOAD_ALL_SHARE * self.summary.count)

    async def outlook(self, ids: Iterable[str]) -> None:
        """Read the links of these Outlook items (those not read yet)."""
        todo = [] if self.whole else sorted({i for i in ids} - self._outlook.looked)
        if not todo:
            return
        if self._cheaper_whole(len(todo)):
            await self.load_all()
            return
        found = await gather_bounded(
            (self.store.by_outlook(self.mailbox, self.stream, i) for i in todo), READ_CONCURRENCY
        )
        self.reads += len(todo)
        for oid, link in zip(todo, found, strict=True):
            self._outlook.looked.add(oid)
            if link is not None:
                self.add(link)

    async def workbooks(self, ids: Iterable[int]) -> None:
        """Read the links of these records (those not read yet): a record the summary does not
        name is not linked, without a read."""
        todo = [] if self.whole else sorted({i for i in ids} - self._workbooks.looked)
        named = [i for i in todo if i in self.summary.ids]
        self._workbooks.looked.update(i for i in todo if i not in self.summary.ids)
        if not named:
            return
        if self._cheaper_whole(len(named)):
            await self.load_all()
            return
        found = await gather_bounded(
            (
                self.store.by_workbooks(self.mailbox, self.stream, self.summary.ids[i], i)
                for i in named
            ),
            READ_CONCURRENCY,
        )
        self.reads += len(named)
        for wid, link in zip(named, found, strict=True):
            self._workbooks.looked.add(wid)
            if link is not None:
                self.add(link)


def series_ends(links: LinkIndex) -> dict[str, str]:
    """Linked series -> the time their tracked occurrence ends (``series.tracked_text``): from
    the links when every one was read, else from the summary (a superset: look a series up
    before trusting it)."""
    if not isinstance(links, RunLinks) or links.whole:
        found = links.by_outlook.items()
        out: dict[str, str] = {}
    elif links.summary.series is None:
        raise LinkNotLoaded("the run went through the linked series without reading them")
    else:
        found = links.read_by_outlook().items()  # read or made by this run: as they are
        out = dict(links.summary.series)
    for oid, link in found:
        text = series.series_time(link.snapshot)
        if text is None:
            out.pop(oid, None)
        else:
            out[oid] = text
    return out


async def correct_series(links: LinkIndex, named: Mapping[str, str]) -> int:
    """The summary named these series with these times; where their links (looked up) say
    otherwise (a run stopped between writing a link and its summary), the summary is written
    as the links are, so no series waits for the next full read to move on.  Returns how many
    were corrected."""
    if not isinstance(links, RunLinks) or links.whole or links.persisted.series is None:
        return 0
    wrong: dict[str, str | None] = {}
    for oid, text in named.items():
        link = links.by_outlook.get(oid)
        actual = None if link is None else series.series_time(link.snapshot)
        if actual != text:
            wrong[oid] = actual
    if not wrong:
        return 0
    for summary in (links.summary, links.persisted):
        if summary.series is None:
            continue
        for oid, actual in wrong.items():
            if actual is None:
                summary.series.pop(oid, None)
            else:
                summary.series[oid] = actual
    await links.store.write_summary(links.mailbox, links.stream, links.persisted)
    return len(wrong)


async def look_up(
    links: LinkIndex, *, outlook: Iterable[str] = (), workbooks: Iterable[int] = ()
) -> None:
    """Make these ids safe to ask ``links`` about (a plain ``LinkIndex`` holds every link)."""
    if isinstance(links, RunLinks):
        await links.outlook(outlook)
        await links.workbooks(workbooks)
