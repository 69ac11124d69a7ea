"""The planner: every decision of the issue's rules, without I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from sync.core.identity import Candidate
from sync.core.reconcile import (
    ActionKind,
    Direction,
    Identity,
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


# ------------------------------------------------------------------ identity before creation

EMAILS = ("email", "email2", "email3")


def cand(n: int, *, mine: bool = True, lock: int = 3, **f: str) -> Candidate:
    return Candidate(n, PERSON, lock, fields(**f), mine, f.get("email", "ann@x.test"), "main")


def matched(
    links: list[Link],
    items: Sequence[OutlookItem],
    matches: dict[str, list[Candidate]],
    *,
    direction: Direction = BOTH,
    removed: frozenset[int] = frozenset(),
    issues: frozenset[str] = frozenset(),
    **policy: Any,
) -> Plan:
    return plan(
        outlook_items=items,
        links=LinkIndex(links),
        policy=SyncPolicy(**policy),
        direction=direction,
        workbooks_type=PERSON,
        ident=Identity(matches=matches, slots=EMAILS, removed=removed, issues=issues),
    )


def test_a_shared_item_whose_address_one_record_holds_is_linked_not_created() -> None:
    new = item("new", name="Walt", email="ann@x.test", job_title="Chemist")
    found = cand(5, name="Walter White", email="ann@x.test")
    p = matched([], [new], {"new": [found]})
    (a,) = p.actions
    assert a.kind == ActionKind.UPDATE and a.workbooks_id == 5 and a.outlook_id == "new"
    assert a.stamp_outlook and not a.created_by_service and a.lock_version == 3
    assert a.fields["display_name"] == "Walter White"  # Workbooks' value stands
    assert a.to_workbooks == {"job_title"} and a.to_outlook == {"display_name"}
    assert p.count(ActionKind.CREATE_WORKBOOKS) == 0 and p.issues == ()


def test_a_push_links_but_leaves_outlook_alone_until_a_two_way_run() -> None:
    new = item("new", name="Walt", job_title="Chemist")
    p = matched([], [new], {"new": [cand(5, name="Walter White")]}, direction=PUSH)
    (a,) = p.actions
    assert a.to_outlook == frozenset() and a.to_workbooks == {"job_title"} and a.stamp_outlook
    assert a.unsettled and a.fields["display_name"] == "Walt"  # what Outlook still holds
    # the next two-way run reads the record and settles the pair
    pair = link(5, name="Walt", job_title="Chemist").model_copy(
        update={"unsettled": True, "outlook_id": "new", "workbooks_lock_version": 4}
    )
    p = run([pair], records=[record(5, lock=4, name="Walter White", job_title="Chemist")])
    (b,) = p.actions
    assert b.kind == ActionKind.UPDATE and b.to_outlook == {"display_name"} and not b.unsettled
    # nothing else to write: the pair is still rewritten once, settled
    p = run([pair], records=[record(5, lock=4, name="Walt", job_title="Chemist")])
    (c,) = p.actions
    assert c.kind == ActionKind.LINK and not c.unsettled and not c.writes


def test_settling_first_links_is_not_a_mass_change() -> None:
    pairs = [link(n, name="Outlook name").model_copy(update={"unsettled": True}) for n in range(20)]
    p = run(pairs, records=[record(n, name="Workbooks name") for n in range(20)])
    assert not p.stopped and p.count(ActionKind.UPDATE) == 20
    settled = [pair.model_copy(update={"unsettled": False}) for pair in pairs]
    assert run(settled, records=[record(n, name="Workbooks name") for n in range(20)]).stopped


def test_several_records_with_the_address_are_ambiguous_and_nothing_is_written() -> None:
    p = matched([], [item("new")], {"new": [cand(5), cand(6)]})
    assert p.actions == () and p.skipped == {"ambiguous": 1}
    (issue,) = p.issues
    assert issue.kind == "ambiguous" and [c.workbooks_id for c in issue.candidates] == [5, 6]


def test_one_record_in_scope_wins_over_others_elsewhere() -> None:
    p = matched([], [item("new")], {"new": [cand(5, mine=False), cand(6), cand(7, mine=False)]})
    (a,) = p.actions
    assert a.workbooks_id == 6 and p.issues == ()


def test_a_record_out_of_scope_is_linked_when_it_is_the_only_one() -> None:
    p = matched([], [item("new")], {"new": [cand(5, mine=False)]})
    (a,) = p.actions
    assert a.workbooks_id == 5 and a.kind == ActionKind.LINK and a.stamp_outlook


def test_no_record_or_no_address_creates() -> None:
    p = matched([], [item("new")], {"new": []})
    assert kinds(p) == [ActionKind.CREATE_WORKBOOKS]
    p = matched([], [item("bare", email="")], {"bare": []})
    assert kinds(p) == [ActionKind.CREATE_WORKBOOKS] and "no address" in p.actions[0].reason


def test_a_second_item_for_a_linked_record_is_a_duplicate_by_address() -> None:
    # "Walter": the service created o5 for Person 5; the user shares their own copy
    p = matched([link(5, created=True)], [item("walter2")], {"walter2": [cand(5)]})
    assert p.actions == () and p.skipped == {"duplicate_email": 1}
    (issue,) = p.issues
    assert (issue.kind, issue.workbooks_id, issue.linked_outlook_id) == ("duplicate", 5, "o5")


def test_two_new_items_with_one_address_create_one_record() -> None:
    p = matched([], [item("a"), item("b")], {"a": [], "b": []})
    assert kinds(p) == [ActionKind.CREATE_WORKBOOKS] and p.actions[0].outlook_id == "a"
    (issue,) = p.issues
    assert issue.outlook_id == "b" and issue.linked_outlook_id == "a"
    assert issue.workbooks_id is None


def test_two_new_items_matching_one_record_link_once() -> None:
    p = matched([], [item("a"), item("b")], {"a": [cand(5)], "b": [cand(5)]})
    assert [a.outlook_id for a in p.actions] == ["a"]
    assert [(i.outlook_id, i.linked_outlook_id) for i in p.issues] == [("b", "a")]


def test_a_copy_with_our_stamp_is_reported_with_the_item_that_holds_the_record() -> None:
    p = run([link(1)], items=[item("copy", stamp=1)])
    (issue,) = p.issues
    assert (issue.kind, issue.matched_by, issue.linked_outlook_id) == ("duplicate", "stamp", "o1")
    found = OutlookItem("copy2", fields(), stamped_id=1, found_by="reference")
    p = run([link(1)], items=[found])
    assert p.skipped == {"duplicate_reference": 1} and p.issues[0].matched_by == "reference"


def test_the_linked_item_keeps_its_record_whatever_the_delta_order() -> None:
    p = run([link(1)], items=[item("copy", stamp=1), item(1, stamp=1, name="new")])
    assert [a.outlook_id for a in p.actions] == ["o1"]
    assert [i.outlook_id for i in p.issues] == ["copy"]


def test_deleting_the_linked_item_frees_the_record_for_the_users_copy() -> None:
    p = run([link(1)], items=[item("copy", stamp=1)], removals=[OutlookRemoval("o1")])
    assert kinds(p) == [ActionKind.UNLINK, ActionKind.LINK]
    assert p.actions[1].outlook_id == "copy" and p.issues == ()
    assert p.actions[0].remember is None  # the record is in Outlook again: nothing to keep out


# ------------------------------------------------------------------ removals remembered


@pytest.mark.parametrize(
    ("switch", "expected", "remember"),
    [
        ("unlink", ActionKind.UNLINK, "deleted"),
        ("restore", ActionKind.UNLINK, None),
        ("delete", ActionKind.DELETE_WORKBOOKS, None),
    ],
)
def test_a_delete_in_outlook_is_remembered_only_under_unlink(
    switch: str, expected: ActionKind, remember: str | None
) -> None:
    p = run([link(1)], removals=[OutlookRemoval("o1")], outlook_delete=switch, direction=PUSH)
    (a,) = p.actions
    assert a.kind == expected and a.remember == remember


def test_delete_never_deletes_a_record_outside_the_users_scope() -> None:
    p = run(
        [link(1)],
        removals=[OutlookRemoval("o1")],
        records=[record(1, in_scope=False)],
        outlook_delete="delete",
        direction=PUSH,
    )
    (a,) = p.actions
    assert (
        a.kind == ActionKind.UNLINK and a.remember == "deleted" and "not in your scope" in a.reason
    )


def test_leaving_the_view_and_deleted_records_are_not_the_users_removals() -> None:
    p = run([link(1)], removals=[OutlookRemoval("o1", deleted=False)])
    assert p.actions[0].remember is None
    p = run([link(1)], removals=[OutlookRemoval("o1")], records=[record(1, deleted=True)])
    assert p.actions[0].remember is None


@pytest.mark.parametrize("switch", ["unlink", "restore", "delete"])
def test_unsharing_unlinks_and_is_remembered_under_every_policy(switch: str) -> None:
    p = run([link(1, created=True)], items=[item(1, shared=False)], outlook_delete=switch)
    (a,) = p.actions
    assert a.kind == ActionKind.UNLINK and a.remember == "unshared" and not a.writes


def test_a_removed_record_gets_no_new_outlook_item() -> None:
    p = plan(
        workbooks_records=[record(1), record(2), record(3, deleted=True)],
        links=LinkIndex([]),
        policy=SyncPolicy(),
        direction=BOTH,
        workbooks_type=PERSON,
        ident=Identity(removed=frozenset({1, 3})),
    )
    assert [(a.kind, a.workbooks_id) for a in p.actions] == [(ActionKind.CREATE_OUTLOOK, 2)]
    assert p.skipped == {"removed_by_user": 1, "out_of_scope": 1}
    assert p.forget == (3,)  # deleted in Workbooks: nothing left to keep out


def test_sharing_the_item_again_links_the_removed_record() -> None:
    p = plan(
        outlook_items=[item("again", stamp=1)],
        workbooks_records=[record(1)],
        links=LinkIndex([]),
        policy=SyncPolicy(),
        direction=BOTH,
        workbooks_type=PERSON,
        ident=Identity(removed=frozenset({1})),
    )
    assert kinds(p) == [ActionKind.LINK] and p.actions[0].outlook_id == "again"


def test_a_stamped_item_whose_record_is_gone_gets_nothing() -> None:
    p = run([], items=[item("x", stamp=1)], records=[record(1, deleted=True)])
    assert p.actions == () and p.skipped == {"stamped_record_deleted": 1}
    # out of scope is not gone: the user shared it
    p = run([], items=[item("x", stamp=1)], records=[record(1, in_scope=False)])
    assert kinds(p) == [ActionKind.LINK]


def test_issues_no_longer_holding_are_cleared() -> None:
    known = frozenset({"amb", "dup", "other"})
    p = matched(
        [link(1)],
        [item("amb"), item("dup", shared=False)],
        {"amb": [cand(5)]},
        issues=known,
    )
    assert set(p.cleared) == {"amb", "dup"}  # linked now / unshared; "other" was not seen
    p = matched([], [item("amb")], {"amb": [cand(5), cand(6)]}, issues=known)
    assert p.cleared == () and len(p.issues) == 1
