"""The planner: every decision of the issue's rules, without I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from sync.core.reconcile import (
    ActionKind,
    Direction,
    LinkIndex,
    OutlookItem,
    OutlookRemoval,
    Plan,
    SyncPolicy,
    WorkbooksRecord,
    plan,
)
from sync.core.state_models import Link, MailboxPolicy

PERSON = "Private::Crm::Person"
BOTH, PUSH = Direction.BOTH, Direction.OUTLOOK_TO_WORKBOOKS
T1, T2 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)


def fields(name: str = "Ann", email: str = "ann@x.test", **more: str) -> dict[str, str]:
    return {"display_name": name, "email": email, **more}


def link(n: int, *, created: bool = False, lock: int = 1, **snap: str) -> Link:
    return Link(
        mailbox="u@x.test",
        stream="contacts",
        outlook_id=f"o{n}",
        workbooks_type=PERSON,
        workbooks_id=n,
        workbooks_lock_version=lock,
        snapshot=fields(**snap),
        created_by_service=created,
    )


def record(
    n: int,
    *,
    lock: int = 1,
    deleted: bool = False,
    in_scope: bool = True,
    modified: datetime | None = None,
    **f: str,
) -> WorkbooksRecord:
    return WorkbooksRecord(
        n, PERSON, lock, fields(**f), deleted=deleted, in_scope=in_scope, modified=modified
    )


def item(
    n: int | str,
    *,
    shared: bool = True,
    stamp: int | None = None,
    modified: datetime | None = None,
    **f: str,
) -> OutlookItem:
    oid = n if isinstance(n, str) else f"o{n}"
    return OutlookItem(
        oid, fields(**f), shared=shared, stamped_id=stamp, change_key="ck", modified=modified
    )


def run(
    links: list[Link],
    *,
    items: Sequence[OutlookItem] = (),
    removals: Sequence[OutlookRemoval] = (),
    records: Sequence[WorkbooksRecord] = (),
    direction: Direction = BOTH,
    **policy: Any,
) -> Plan:
    return plan(
        outlook_items=items,
        outlook_removals=removals,
        workbooks_records=records,
        links=LinkIndex(links),
        policy=SyncPolicy(**policy),
        direction=direction,
        workbooks_type=PERSON,
    )


def kinds(p: Plan) -> list[ActionKind]:
    return [a.kind for a in p.actions]


# ------------------------------------------------------------------ creates


def test_new_workbooks_record_creates_outlook_item() -> None:
    p = run([], records=[record(1)])
    (a,) = p.actions
    assert a.kind == ActionKind.CREATE_OUTLOOK and a.created_by_service and a.workbooks_id == 1
    assert a.fields == fields()


def test_new_shared_outlook_item_creates_workbooks_record_and_stamps() -> None:
    p = run([], items=[item("new")], direction=PUSH)
    (a,) = p.actions
    assert a.kind == ActionKind.CREATE_WORKBOOKS and a.stamp_outlook and not a.created_by_service


def test_create_from_outlook_switch_off() -> None:
    p = run([], items=[item("new")], create_from_outlook=False)
    assert p.actions == () and p.skipped == {"create_from_outlook_off": 1}


def test_unshared_outlook_items_are_ignored() -> None:
    assert run([], items=[item("x", shared=False)]).actions == ()


def test_out_of_scope_unlinked_record_ignored() -> None:
    p = run([], records=[record(1, in_scope=False), record(2, deleted=True)])
    assert p.actions == () and p.skipped == {"out_of_scope": 2}


# ------------------------------------------------------------------ updates


def test_unchanged_items_write_nothing() -> None:
    p = run([link(1)], items=[item(1)], records=[record(1)])
    assert p.actions == () and p.skipped == {"unchanged": 1}


def test_outlook_update_goes_to_workbooks_in_push() -> None:
    p = run([link(1)], items=[item(1, name="Ann B")], direction=PUSH)
    (a,) = p.actions
    assert a.kind == ActionKind.UPDATE and a.to_workbooks == {"display_name"}
    assert a.to_outlook == frozenset() and a.fields["display_name"] == "Ann B"
    assert a.lock_version == 1


def test_push_merges_fresh_record_without_writing_outlook() -> None:
    # a stale write in a push re-reads the record: Outlook's change goes over with the new
    # lock_version; the Workbooks change is kept for the next two-way run
    p = run(
        [link(1)],
        items=[item(1, name="OL")],
        records=[record(1, lock=7, email="wb@x")],
        direction=PUSH,
    )
    (a,) = p.actions
    assert a.to_workbooks == {"display_name"} and a.to_outlook == frozenset()
    assert a.lock_version == 7
    assert a.fields == {"display_name": "OL", "email": "ann@x.test"}  # snapshot keeps base
    gone = run(
        [link(1)], items=[item(1, name="OL")], records=[record(1, deleted=True)], direction=PUSH
    )
    assert gone.actions == () and gone.skipped == {"left_for_reconcile": 1}


def test_push_ignores_workbooks_records() -> None:
    p = run([link(1)], records=[record(1, name="WB")], direction=PUSH)
    assert p.actions == ()


def test_workbooks_update_goes_to_outlook() -> None:
    p = run([link(1)], records=[record(1, lock=2, email="new@x.test")])
    (a,) = p.actions
    assert a.to_outlook == {"email"} and a.to_workbooks == frozenset() and a.lock_version == 2


def test_both_sides_edited_different_fields_merge() -> None:
    p = run([link(1)], items=[item(1, name="OL name")], records=[record(1, lock=2, email="wb@x")])
    (a,) = p.actions
    assert a.fields == {"display_name": "OL name", "email": "wb@x"}
    assert a.to_workbooks == {"display_name"} and a.to_outlook == {"email"}
    assert p.conflicts == ()


@pytest.mark.parametrize(("policy", "winner"), [("latest", "outlook"), ("workbooks", "workbooks")])
def test_true_conflict_recorded_and_resolved(policy: str, winner: str) -> None:
    p = run(
        [link(1)],
        items=[item(1, name="OL", modified=T2)],
        records=[record(1, name="WB", modified=T1)],
        conflict_policy=policy,
    )
    (a,) = p.actions
    assert a.fields["display_name"] == ("OL" if winner == "outlook" else "WB")
    (c,) = p.conflicts
    assert c.conflict.field == "display_name" and c.conflict.winner == winner
    assert "display_name" in c.describe()


def test_lock_version_only_change_refreshes_link() -> None:
    p = run([link(1, lock=1)], records=[record(1, lock=5)])
    (a,) = p.actions
    assert a.kind == ActionKind.LINK and a.lock_version == 5 and not a.writes


# ------------------------------------------------------------------ deletes


@pytest.mark.parametrize(
    ("created", "expected"), [(True, ActionKind.DELETE_OUTLOOK), (False, ActionKind.UNLINK)]
)
def test_deleted_in_workbooks(created: bool, expected: ActionKind) -> None:
    p = run([link(1, created=created)], records=[record(1, deleted=True, lock=4)])
    assert kinds(p) == [expected]


def test_leaving_scope_removes_the_service_created_item_never_the_record() -> None:
    p = run([link(1, created=True)], records=[record(1, in_scope=False)])
    assert kinds(p) == [ActionKind.DELETE_OUTLOOK]
    assert p.actions[0].reason == "left the Workbooks scope"


def test_an_item_the_user_shared_stays_linked_out_of_scope_and_keeps_syncing() -> None:
    # The user's share is the pair's scope: leaving My People neither unlinks nor deletes it.
    p = run([link(1)], records=[record(1, in_scope=False)])
    assert p.actions == () and p.skipped == {"unchanged": 1}
    p = run([link(1)], records=[record(1, in_scope=False, lock=2, email="new@x.test")])
    (a,) = p.actions
    assert a.kind == ActionKind.UPDATE and a.to_outlook == {"email"}
    # deleted in Workbooks still ends it
    assert kinds(run([link(1)], records=[record(1, deleted=True)])) == [ActionKind.UNLINK]


@pytest.mark.parametrize(
    ("switch", "expected"), [("unlink", ActionKind.UNLINK), ("delete", ActionKind.DELETE_WORKBOOKS)]
)
def test_deleted_in_outlook_follows_switch(switch: str, expected: ActionKind) -> None:
    p = run([link(1)], removals=[OutlookRemoval("o1")], outlook_delete=switch, direction=PUSH)
    assert kinds(p) == [expected]
    assert p.actions[0].workbooks_id == 1


def test_outlook_removal_not_a_delete_only_unlinks() -> None:
    p = run([link(1)], removals=[OutlookRemoval("o1", deleted=False)], outlook_delete="delete")
    assert kinds(p) == [ActionKind.UNLINK]


def test_deleted_on_both_sides_just_unlinks() -> None:
    p = run(
        [link(1, created=True)],
        removals=[OutlookRemoval("o1")],
        records=[record(1, deleted=True)],
        outlook_delete="delete",
    )
    assert kinds(p) == [ActionKind.UNLINK]


def test_removal_of_unknown_item_ignored() -> None:
    assert run([], removals=[OutlookRemoval("zz")]).actions == ()


def test_category_removed_unlinks() -> None:
    p = run([link(1)], items=[item(1, shared=False)])
    assert kinds(p) == [ActionKind.UNLINK]


def test_window_exit_only_unlinks_even_if_service_created() -> None:
    r = WorkbooksRecord(1, PERSON, 1, fields(), in_window=False)
    p = run([link(1, created=True)], records=[r])
    assert kinds(p) == [ActionKind.UNLINK]
    assert run([], records=[r]).actions == ()


# ------------------------------------------------------------------ identity / resync


def test_resync_rematches_by_stamp_without_duplicates() -> None:
    # links lost; a full enumeration returns the stamped item and the record
    p = run([], items=[item("new-id", stamp=1)], records=[record(1)])
    (a,) = p.actions
    assert a.kind == ActionKind.LINK and a.outlook_id == "new-id" and a.workbooks_id == 1


def test_rematch_with_differences_takes_workbooks_as_base() -> None:
    p = run([], items=[item("x", stamp=1, name="old")], records=[record(1, name="WB")])
    (a,) = p.actions
    assert a.kind == ActionKind.UPDATE and a.to_outlook == {"display_name"}
    assert a.fields["display_name"] == "WB"


def test_rematch_in_push_links_only() -> None:
    p = run([], items=[item("x", stamp=1)], direction=PUSH)
    assert kinds(p) == [ActionKind.LINK]


def test_copied_item_with_taken_stamp_is_skipped() -> None:
    p = run([link(1)], items=[item("copy", stamp=1)])
    assert p.actions == () and p.skipped == {"duplicate_stamp": 1}


def test_full_resync_of_linked_items_writes_nothing() -> None:
    links = [link(n) for n in range(1, 6)]
    p = run(
        links,
        items=[item(n, stamp=n) for n in range(1, 6)],
        records=[record(n) for n in range(1, 6)],
    )
    assert p.actions == () and p.skipped == {"unchanged": 5}


def test_repeated_delta_entries_last_wins() -> None:
    p = run([link(1)], items=[item(1, name="first"), item(1, name="second")], direction=PUSH)
    (a,) = p.actions
    assert a.fields["display_name"] == "second"


# ------------------------------------------------------------------ brake


def test_mass_change_brake_stops_and_explains() -> None:
    links = [link(n, created=True) for n in range(100)]
    p = run(links, records=[record(n, deleted=True) for n in range(25)])
    assert p.stopped and p.brake is not None
    assert p.brake.affected == 25 and p.brake.total == 100
    assert "25 of 100" in p.brake.reason


def test_brake_not_triggered_under_share_or_min_items() -> None:
    links = [link(n, created=True) for n in range(100)]
    assert not run(links, records=[record(n, deleted=True) for n in range(20)]).stopped
    # unlinking (nothing deleted or changed) never trips the brake
    plain = [link(n) for n in range(100)]
    assert not run(plain, records=[record(n, deleted=True) for n in range(100)]).stopped
    small = [link(n, created=True) for n in range(5)]
    assert not run(small, records=[record(n, deleted=True) for n in range(5)]).stopped
    assert run(
        small, records=[record(n, deleted=True) for n in range(5)], mass_change_min_items=2
    ).stopped


def test_brake_ignores_creates_and_unlinks_and_force() -> None:
    links = [link(n) for n in range(10)]
    p = run(links, records=[record(n) for n in range(100, 200)], mass_change_min_items=1)
    assert not p.stopped and p.count(ActionKind.CREATE_OUTLOOK) == 100
    p = run(links, records=[record(n, name="new") for n in range(10)], mass_change_min_items=1)
    assert p.stopped
    p = plan(
        workbooks_records=[record(n, name="new") for n in range(10)],
        links=LinkIndex(links),
        policy=SyncPolicy(mass_change_min_items=1),
        direction=BOTH,
        workbooks_type=PERSON,
        force=True,
    )
    assert not p.stopped and p.write_count == 10


def test_policy_from_mailbox() -> None:
    mp = MailboxPolicy(outlook_delete="delete", conflict_policy="outlook", mass_change_share=0.5)
    sp = SyncPolicy.from_mailbox(mp)
    assert (sp.outlook_delete, sp.conflict_policy, sp.mass_change_share) == (
        "delete",
        "outlook",
        0.5,
    )
    assert sp.create_from_outlook and sp.mass_change_min_items == 10
