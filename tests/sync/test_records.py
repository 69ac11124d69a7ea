"""The Workbooks queries of the two-way sync (``sync.workbooks.records``) against the sandbox."""

from __future__ import annotations

from sync.workbooks import WriteOp, records
from sync.workbooks.reads import Watermark
from tests.sync.conftest import Sides

PEOPLE = records.PEOPLE.endpoint


async def test_record_types_name_their_endpoint_type_and_queue(sides: Sides) -> None:
    client = await sides.client()
    login = await client.ensure_login()
    for record in (records.PEOPLE, records.TASKS, records.MEETINGS):
        # the user's personal queue of the type is in the login's my_queues
        assert await records.own_queue(client, record) == login.my_queues[record.queue_class]
        assert await records.my_queues(client, record, [7, 7]) == [
            login.my_queues[record.queue_class],
            7,
        ]
    assert not records.PEOPLE.activity and records.TASKS.activity and records.MEETINGS.activity


async def test_created_from_finds_records_by_their_outlook_reference(sides: Sides) -> None:
    client = await sides.client()
    (made,) = await records.write(
        client,
        records.PEOPLE,
        [WriteOp.create({"name": "From Outlook", records.REFERENCE: records.reference_to("AAx")})],
    )
    assert made.ok and made.id
    sides.wb_create(PEOPLE, {"name": "Typed in Workbooks"})
    found = await records.created_from(client, records.PEOPLE, ["AAx", "AAy"])
    assert found == {"AAx": int(made.id)}
    assert records.reference_to("x" * 300) == "OL:" + "x" * 252  # the column's 255 characters


async def test_by_ids_leaves_out_deleted_records(sides: Sides) -> None:
    kept = sides.wb_create(PEOPLE, {"name": "Kept"})
    gone = sides.wb_create(PEOPLE, {"name": "Gone"})
    await sides.wb_delete(PEOPLE, gone)
    client = await sides.client()
    rows = [r async for r in records.by_ids(client, records.PEOPLE, [kept, gone], ["name"])]
    assert [int(r["id"]) for r in rows] == [kept]


async def test_reads_follow_the_users_scope_and_links_not_every_change(
    sides: Sides,
) -> None:
    client = await sides.client()
    queue = await records.own_queue(client, records.PEOPLE)
    assert queue is not None
    mine = sides.wb_create(PEOPLE, {"name": "Mine", "assigned_to": str(queue)})
    other = sides.wb_create(PEOPLE, {"name": "Other", "assigned_to": "3"})
    shared = sides.wb_create(PEOPLE, {"name": "A colleague's, shared by me", "assigned_to": "3"})
    first = [
        (row, mark)
        async for row, mark in records.changes(
            client, records.PEOPLE, Watermark(), ["name"], [queue], [shared]
        )
    ]
    # a full read: mine or watched, and what the user links (not the colleague's other one)
    assert [int(row["id"]) for row, _ in first] == [mine, shared]
    _, mark = first[-1]

    async def later(linked: list[int]) -> list[int]:
        return [
            int(row["id"])
            async for row, _ in records.changes(
                client, records.PEOPLE, mark, ["name"], [queue], linked
            )
        ]

    sides.advance_clock()
    sides.wb_edit(PEOPLE, other, {"name": "Other, edited"})
    sides.wb_edit(PEOPLE, shared, {"name": "Shared, edited"})
    # a colleague's record nothing links is not read; the one the user shared is
    assert await later([mine, shared]) == [shared]
    sides.advance_clock()
    sides.wb_edit(PEOPLE, mine, {"assigned_to": "3"})  # reassigned to a colleague
    assert await later([mine, shared]) == [shared, mine]  # seen leaving the scope
    sides.advance_clock()
    await sides.wb_delete(PEOPLE, shared)
    assert shared in await later([mine, shared])  # deleted: seen too
    # past the id limit every change is read again, as before
    many = [mine, shared, *range(10**6, 10**6 + records.MAX_SCOPED_IDS)]
    assert {mine, other, shared} <= set(await later(many))
