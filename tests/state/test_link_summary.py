"""The links' one-row summary (``LinkSummary``): packed so that a stream of a few hundred
thousand linked records still fits Table Storage's 1 MiB entity, read back exactly, and a row
it cannot read is rebuilt rather than trusted.  Packing rules pure; rows against Azurite."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.core.state_models import Link
from sync.state.limits import (
    MAX_BINARY_BYTES,
    EntityTooLarge,
    check_entity,
    pack_bytes,
    pack_ints,
    pack_json,
    unpack_bytes,
    unpack_ints,
)
from sync.state.store import MAX_SUMMARY_SERIES, SUMMARY_KEY, LinkSummary, StateStore

UPN = "ann@example.com"
PERSON, ORG = "Private::Crm::Person", "Private::Crm::Organisation"


@given(st.sets(st.integers(min_value=0, max_value=2**63)), st.binary(max_size=8))
def test_packed_ints_come_back_sorted_and_whole(values: set[int], tail: bytes) -> None:
    packed = pack_ints(values)
    found, end = unpack_ints(packed + tail, len(values))
    assert found == sorted(values) and end == len(packed)


def test_packing_refuses_negative_ids_and_short_data() -> None:
    with pytest.raises(ValueError, match="negative"):
        pack_ints([3, -1])
    with pytest.raises(ValueError, match="end early"):
        unpack_ints(pack_ints([1, 2, 300]), 4)
    assert len(pack_ints(range(1000, 2000))) == 2 + 999  # neighbours cost a byte each


@pytest.mark.parametrize("size", [0, 1, MAX_BINARY_BYTES, MAX_BINARY_BYTES + 1, 200_000])
def test_bytes_are_split_into_properties_the_service_accepts(size: int) -> None:
    data = random.Random(size).randbytes(size)
    row = {"PartitionKey": "p", "RowKey": "r", **pack_bytes("b", data)}
    check_entity(row)
    assert unpack_bytes("b", row) == data
    assert row["b__n"] == max(1, -(-size // MAX_BINARY_BYTES))


def test_a_binary_property_over_64_kib_is_refused() -> None:
    with pytest.raises(EntityTooLarge, match="64 KiB"):
        check_entity({"PartitionKey": "p", "RowKey": "r", "b": b"x" * (MAX_BINARY_BYTES + 1)})


def _big(count: int, *, spread: int, seed: int = 7) -> LinkSummary:
    ids = random.Random(seed).sample(range(1, count * spread), count)
    return LinkSummary({i: ORG if i % 5 == 0 else PERSON for i in ids}, set(ids[:300]))


@pytest.mark.parametrize(
    ("count", "spread"),
    [(300_000, 3), (150_000, 10_000)],  # ids close together; ids scattered over 1.5 billion
)
def test_a_few_hundred_thousand_links_fit_one_row(count: int, spread: int) -> None:
    summary = _big(count, spread=spread)
    row = summary.to_row("pk")
    check_entity(row)  # the first layout (all JSON) broke the 1 MiB limit at about 75,000
    assert LinkSummary.from_row(row) == summary


def test_the_first_layout_is_still_read() -> None:
    row = {"PartitionKey": "pk", "RowKey": SUMMARY_KEY, "data_kind": "summary"}
    row.update(pack_json("data", {"v": 1, "types": {PERSON: [5, 9], ORG: [7]}, "unsettled": [9]}))
    # It predates the series: they are not known (a calendar run reads its links whole once).
    assert LinkSummary.from_row(row) == LinkSummary({5: PERSON, 9: PERSON, 7: ORG}, {9}, None)


@pytest.mark.parametrize(
    "damage",
    [
        lambda row: row.update(ids=row["ids"][:-1]),  # cut short
        lambda row: row.update(ids=row["ids"] + b"\x01"),  # bytes no count accounts for
        lambda row: row.update(pack_json("data", {"v": 2, "types": {PERSON: "x"}})),
        lambda row: row.update(pack_json("data", {"v": 3})),  # a layout from the future
        lambda row: row.update(data="{not json"),
    ],
)
def test_a_row_that_cannot_be_read_is_not_trusted(damage: Any) -> None:
    row = LinkSummary({5: PERSON, 9: PERSON, 700: ORG}, {9}).to_row("pk")
    damage(row)
    assert LinkSummary.from_row(row) is None  # the next full read of the links writes it


async def test_a_large_summary_survives_storage_and_transactions(store: Any) -> None:
    s: StateStore = store
    big = _big(200_000, spread=20)
    await s.links.write_summary(UPN, "contacts", big)
    assert await s.links.summary(UPN, "contacts") == big
    # Written in an entity-group transaction with the links it grows by.
    link = Link(
        mailbox=UPN,
        stream="contacts",
        outlook_id="AA/new",
        workbooks_type=PERSON,
        workbooks_id=9_999_999,
        unsettled=True,
    )
    await s.links.put_many([link], summary=big)
    stored = await s.links.summary(UPN, "contacts")
    assert stored is not None and stored.count == 200_001
    assert stored.ids[9_999_999] == PERSON and 9_999_999 in stored.unsettled
    assert stored == big  # the caller's copy was kept in step


MEETING = "Private::Activity::Meeting"


def meeting(oid: str, wid: int, end: str | None = "2030-01-07T09:30:00Z") -> Link:
    """A calendar link; a series when ``end`` is given (its snapshot has a recurrence)."""
    snapshot: dict[str, Any] = {"subject": "x", "start": "2030-01-07T09:00:00Z"}
    if end is not None:
        snapshot |= {"recurrence": "Every week on Monday.", "end": end}
    return Link(
        mailbox=UPN,
        stream="events",
        outlook_id=oid,
        workbooks_type=MEETING,
        workbooks_id=wid,
        snapshot=snapshot,
    )


def test_the_summary_names_linked_series_with_their_tracked_end() -> None:
    summary = LinkSummary.of([meeting("A", 1), meeting("B", 2, end=None), meeting("C", 3, "")])
    # C has no end: its start is what its occurrence is tracked by
    assert summary.series == {"A": "2030-01-07T09:30:00Z", "C": "2030-01-07T09:00:00Z"}
    assert LinkSummary.from_row(summary.to_row("pk")) == summary
    bare = LinkSummary({1: MEETING}).to_row("pk")  # a row written before series were kept
    bare.update(pack_json("data", {"v": 2, "types": {MEETING: 1}, "unsettled": 0}))
    found = LinkSummary.from_row(bare)
    assert found is not None and found.series is None and found.ids == {1: MEETING}


def test_more_series_than_a_summary_keeps_are_not_known() -> None:
    many = [meeting(f"S{i}", i) for i in range(MAX_SUMMARY_SERIES + 1)]
    summary = LinkSummary.of(many)
    assert summary.series is None and summary.count == MAX_SUMMARY_SERIES + 1
    assert LinkSummary.from_row(summary.to_row("pk")) == summary
    growing = LinkSummary.of(many[:-1])
    assert growing.series is not None and len(growing.series) == MAX_SUMMARY_SERIES
    growing.add([many[-1]])
    assert growing.series is None  # a calendar run reads the links whole from then on


def test_a_series_enters_before_its_rows_and_changes_or_leaves_after_them() -> None:
    """Never one too few: a new series is named before its link is written; a changed time, a
    series that is one no more, or a removed link, only once the rows are written."""
    summary = LinkSummary.of([meeting("A", 1), meeting("B", 2), meeting("C", 3)])
    later = summary.add(
        [meeting("A", 1, "2030-01-14T09:30:00Z"), meeting("B", 2, end=None), meeting("N", 4)]
    )
    assert summary.series == {
        "A": "2030-01-07T09:30:00Z",  # the old time until the new one is stored
        "B": "2030-01-07T09:30:00Z",
        "C": "2030-01-07T09:30:00Z",
        "N": "2030-01-07T09:30:00Z",  # new: named at once
    }
    assert later == {"A": "2030-01-14T09:30:00Z", "B": None}
    done = summary.settle(
        [meeting("A", 1, "2030-01-14T09:30:00Z"), meeting("B", 2, end=None), meeting("N", 4)],
        [meeting("C", 3)],
        later,
    )
    assert done.series == {"A": "2030-01-14T09:30:00Z", "N": "2030-01-07T09:30:00Z"}
    assert done.ids == {1: MEETING, 2: MEETING, 4: MEETING}


async def test_series_are_kept_in_step_with_the_links_written(store: Any) -> None:
    s: StateStore = store
    await s.links.put_many([meeting("A", 1), meeting("B", 2, end=None)])
    stored = await s.links.summary(UPN, "events")
    assert stored is not None and stored.series == {"A": "2030-01-07T09:30:00Z"}
    await s.links.put_many([meeting("A", 1, "2030-01-14T09:30:00Z"), meeting("B", 2, "2030-02")])
    stored = await s.links.summary(UPN, "events")
    assert stored is not None
    assert stored.series == {"A": "2030-01-14T09:30:00Z", "B": "2030-02"}
    await s.links.put_many([meeting("B", 2, end=None)], removed=[meeting("A", 1)])
    stored = await s.links.summary(UPN, "events")
    assert stored is not None and stored.series == {} and stored.ids == {2: MEETING}
